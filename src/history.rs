//! The history of one executed case: what every delivery ended as, and which step faults
//! landed. The history checks of [`crate::invariants`] compare it with the database.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::system::Outcome;
use crate::workload::model::FaultFate;
use crate::workload::{ClaimKey, FaultKind, Plan};

/// One delivery of a message and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The step it ran in.
    pub step: usize,
    /// Its position in the step.
    pub position: usize,
    /// The message delivered (an index into the plan's messages).
    pub message: usize,
    /// What the execution ended as.
    pub outcome: Outcome,
    /// When the outcome was unknown (the connection died during COMMIT), the outcome of the
    /// redelivery the executor made at the end of the case, as a queue would.
    pub redelivered: Option<Outcome>,
}

impl DeliveryRecord {
    /// The outcome the invariants judge: the redelivery's, if there was one.
    pub fn final_outcome(&self) -> &Outcome {
        self.redelivered.as_ref().unwrap_or(&self.outcome)
    }
}

/// A step fault and whether it landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The step it was aimed at.
    pub step: usize,
    /// Its kind.
    pub kind: FaultKind,
    /// The targeted delivery's message, if the fault had a target.
    pub target: Option<usize>,
    /// The targeted delivery's position in its step.
    pub position: Option<usize>,
    /// Whether the fault was armed on its target, whether or not it landed: a timeout fault's
    /// timeout (and no retry), the relay's cut of a lost-commit fault, the rollup lock of a
    /// mid-transaction crash.
    #[serde(default)]
    pub armed: bool,
    /// Whether the fault landed as planned (a timeout fault: the target ended while its claim
    /// key was held; a lost-commit fault: the relay cut the target's COMMIT; a mid-transaction
    /// crash: the server crashed while the target was paused mid-transaction).
    pub delivered: bool,
    /// What happened, in words.
    pub detail: String,
}

/// The history of a case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Every delivery, in step order.
    pub deliveries: Vec<DeliveryRecord>,
    /// Every step fault.
    pub faults: Vec<FaultRecord>,
    /// Wall time of the execution.
    pub elapsed: Duration,
}

impl History {
    /// Whether a fault of `kind` landed in this case.
    pub fn saw(&self, kind: FaultKind) -> bool {
        self.faults.iter().any(|f| f.kind == kind && f.delivered)
    }

    /// The position of the delivery the fault of step `step` landed on, if it landed on one.
    pub fn landed_at(&self, step: usize) -> Option<usize> {
        self.faults
            .iter()
            .find(|f| f.step == step && f.delivered)
            .and_then(|f| f.position)
    }

    /// The position of the delivery the fault of step `step` was armed on without landing:
    /// it carried the fault's settings, but the held key was released before it ended.
    pub fn armed_not_landed_at(&self, step: usize) -> Option<usize> {
        self.faults
            .iter()
            .find(|f| f.step == step && f.armed && !f.delivered)
            .and_then(|f| f.position)
    }

    /// What the fault of step `step` did, as the model reads it.
    pub fn fault_fate(&self, step: usize) -> FaultFate {
        FaultFate {
            landed_at: self.landed_at(step),
            armed_not_landed_at: self.armed_not_landed_at(step),
        }
    }

    /// The deliveries of message `m`.
    pub fn of_message(&self, m: usize) -> impl Iterator<Item = &DeliveryRecord> {
        self.deliveries.iter().filter(move |d| d.message == m)
    }

    /// What the harness saw of the COMMIT of `d`, whose outcome the worker could not know: the
    /// relay cut its connection after the server's reply (`Some(true)`: it committed) or before
    /// the server got the COMMIT (`Some(false)`: it rolled back). `None` when `d` did not end
    /// unknown, or nobody saw what became of its COMMIT.
    pub fn commit_seen(&self, d: &DeliveryRecord) -> Option<bool> {
        if !matches!(d.outcome, Outcome::Unknown { .. }) {
            return None;
        }
        self.faults
            .iter()
            .find(|f| f.step == d.step && f.delivered && f.position == Some(d.position))
            .and_then(|f| match f.kind {
                FaultKind::CommitReplyLost => Some(true),
                FaultKind::CommitRequestLost => Some(false),
                _ => None,
            })
    }

    /// Per claim key of `plan`, the deliveries that committed it (a delivery twice if it
    /// committed twice): those that ended committed, their redeliveries included, and those
    /// whose COMMIT the harness saw the server acknowledge before the connection died. An
    /// unknown outcome nobody saw through, resolved by a replay, may have committed or found
    /// another delivery's row: one such delivery counts for a key no other delivery committed
    /// (the row it found can only be one of theirs), none for the others.
    pub fn commits(&self, plan: &Plan) -> BTreeMap<ClaimKey, Vec<&DeliveryRecord>> {
        let mut commits: BTreeMap<ClaimKey, Vec<&DeliveryRecord>> = BTreeMap::new();
        let mut unseen: BTreeMap<ClaimKey, &DeliveryRecord> = BTreeMap::new();
        for d in &self.deliveries {
            let Some(key) = plan.claim_key(d.message) else {
                continue;
            };
            let seen = self.commit_seen(d);
            let redelivered_committed = matches!(d.redelivered, Some(Outcome::Committed { .. }));
            let n = match &d.outcome {
                Outcome::Committed { .. } => 1,
                Outcome::Unknown { .. } => {
                    if seen.is_none() && matches!(d.redelivered, Some(Outcome::Replayed { .. })) {
                        unseen.entry(key.clone()).or_insert(d);
                    }
                    usize::from(seen == Some(true)) + usize::from(redelivered_committed)
                }
                _ => 0,
            };
            if n > 0 {
                commits
                    .entry(key)
                    .or_default()
                    .extend(std::iter::repeat_n(d, n));
            }
        }
        for (key, d) in unseen {
            commits.entry(key).or_insert_with(|| vec![d]);
        }
        commits
    }

    /// Whether a delivery recorded so far committed `key` (see [`History::commits`]).
    pub fn committed(&self, plan: &Plan, key: &ClaimKey) -> bool {
        self.commits(plan).get(key).is_some_and(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::system::TaskName;
    use crate::workload::{MessageSpec, Step, StepFault, TenantSpec, Workload};

    /// One message of tenant A, delivered three times in one step.
    fn plan() -> Plan {
        Workload {
            tenants: vec![TenantSpec::Existing, TenantSpec::Existing],
            messages: vec![MessageSpec {
                tenant: 0,
                task: TaskName::Route,
                correlation: 0,
                request: None,
                fail_after_claim: false,
                dlq_write_failures: 0,
            }],
            steps: vec![Step {
                deliveries: vec![0, 0, 0],
                fault: Some(StepFault::CommitReplyLost { target: 0 }),
            }],
            concurrency: 1,
        }
        .plan(Uuid::nil())
    }

    fn delivery(position: usize, outcome: Outcome, redelivered: Option<Outcome>) -> DeliveryRecord {
        DeliveryRecord {
            step: 0,
            position,
            message: 0,
            outcome,
            redelivered,
        }
    }

    fn unknown() -> Outcome {
        Outcome::Unknown {
            detail: String::new(),
        }
    }

    fn replayed() -> Outcome {
        Outcome::Replayed {
            call_id: Uuid::nil(),
        }
    }

    fn committed() -> Outcome {
        Outcome::Committed {
            call_id: Uuid::nil(),
            job_id: None,
            attempts: 1,
        }
    }

    fn cut(kind: FaultKind, delivered: bool) -> FaultRecord {
        FaultRecord {
            step: 0,
            kind,
            target: Some(0),
            position: Some(0),
            armed: true,
            delivered,
            detail: String::new(),
        }
    }

    fn count(h: &History, p: &Plan) -> usize {
        h.commits(p).values().map(Vec::len).sum()
    }

    #[test]
    fn a_commit_the_relay_saw_counts_and_one_it_saw_never_reach_the_server_does_not() {
        let p = plan();
        let mut h = History {
            deliveries: vec![
                delivery(0, unknown(), Some(replayed())),
                delivery(1, replayed(), None),
            ],
            faults: vec![cut(FaultKind::CommitReplyLost, true)],
            ..History::default()
        };
        assert_eq!(h.commit_seen(&h.deliveries[0]), Some(true));
        assert_eq!(count(&h, &p), 1, "the server committed it");
        assert!(h.committed(&p, &p.claim_key(0).unwrap()));
        h.faults = vec![cut(FaultKind::CommitRequestLost, true)];
        h.deliveries[1] = delivery(1, committed(), None);
        assert_eq!(h.commit_seen(&h.deliveries[0]), Some(false));
        assert_eq!(count(&h, &p), 1, "only the other delivery committed");
        // A cut that did not land says nothing.
        h.faults = vec![cut(FaultKind::CommitRequestLost, false)];
        assert_eq!(h.commit_seen(&h.deliveries[0]), None);
    }

    #[test]
    fn unknowns_nobody_saw_through_count_once_and_only_when_nothing_else_committed() {
        let p = plan();
        let mut h = History {
            deliveries: vec![
                delivery(0, unknown(), Some(replayed())),
                delivery(1, unknown(), Some(replayed())),
            ],
            ..History::default()
        };
        assert_eq!(count(&h, &p), 1);
        h.deliveries.push(delivery(2, committed(), None));
        assert_eq!(count(&h, &p), 1);
        // A redelivery that commits is a commit of its own.
        h.deliveries[0].redelivered = Some(committed());
        assert_eq!(count(&h, &p), 2);
    }
}
