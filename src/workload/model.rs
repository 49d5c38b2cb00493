//! The workload model: what each delivery of a plan is expected to end as. Pure logic.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::system::{ErrorClass, Outcome};
use crate::workload::{Plan, StepFault, TenantSpec};

/// What the model expects a delivery to end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "expect", rename_all = "snake_case")]
pub enum Expect {
    /// Commits, or replays a request committed before: valid work must not be rejected.
    Succeed,
    /// Fails with `class` (and `sqlstate`, when given).
    Fail {
        /// The expected error class.
        class: ErrorClass,
        /// The expected SQLSTATE, when the model knows it.
        sqlstate: Option<&'static str>,
    },
    /// Fails with `class`, or replays because another delivery committed the request first
    /// (a replay never reaches the faulty step).
    FailOrReplay {
        /// The expected error class.
        class: ErrorClass,
    },
    /// A timeout fault was armed on the delivery but did not land as planned (the held key was
    /// released before the delivery ended): what it would do without the fault, or a timeout
    /// (it runs with the short timeout and may meet another delivery's claim of its key).
    ArmedNotLanded {
        /// The message fails after its claim (else it commits or replays).
        fails_after_claim: bool,
    },
    /// The connection died during the delivery's COMMIT: the worker cannot know whether it
    /// committed, so it reports `unknown` (neither retried nor sent to the DLQ), and the
    /// redelivery resolves it: a replay when the server had committed (`committed`), else a
    /// commit, or a replay of a request another delivery committed meanwhile.
    Unknown {
        /// The server committed before the connection died.
        committed: bool,
    },
}

impl Expect {
    /// Whether the model holds the delivery's request to end committed: valid work with no
    /// fault that can fail it (a lost COMMIT is resolved by the redelivery).
    pub fn must_succeed(self) -> bool {
        matches!(self, Self::Succeed | Self::Unknown { .. })
    }

    /// Whether a delivery that ended as `outcome`, and was `redelivered` with that outcome when
    /// it was unknown, is one this expectation admits. [`Expect::Unknown`] judges both;
    /// every other expectation judges the final outcome (the redelivery's, if there was one).
    pub fn admits_delivery(self, outcome: &Outcome, redelivered: Option<&Outcome>) -> bool {
        match self {
            Self::Unknown { committed } => {
                matches!(outcome, Outcome::Unknown { .. })
                    && match redelivered {
                        Some(Outcome::Replayed { .. }) => true,
                        Some(Outcome::Committed { .. }) => !committed,
                        _ => false,
                    }
            }
            other => other.admits(redelivered.unwrap_or(outcome)),
        }
    }

    /// Whether `outcome` is one this expectation admits as a final outcome. `Unknown` is never
    /// admitted: the executor redelivers such a task and the redelivery's outcome is the one
    /// judged; [`Expect::Unknown`] admits no single outcome (see [`Expect::admits_delivery`]).
    pub fn admits(self, outcome: &Outcome) -> bool {
        let failed = |class: ErrorClass, sqlstate: Option<&str>| match outcome {
            Outcome::FailedRecorded { failure, .. } | Outcome::FailedUnrecorded { failure, .. } => {
                failure.class == class
                    && sqlstate.is_none_or(|s| failure.sqlstate.as_deref() == Some(s))
            }
            _ => false,
        };
        let succeeded = matches!(
            outcome,
            Outcome::Committed { .. } | Outcome::Replayed { .. }
        );
        match self {
            Self::Succeed => succeeded,
            Self::Fail { class, sqlstate } => failed(class, sqlstate),
            Self::FailOrReplay { class } => {
                failed(class, None) || matches!(outcome, Outcome::Replayed { .. })
            }
            Self::ArmedNotLanded { fails_after_claim } => {
                failed(ErrorClass::Timeout, None)
                    || if fails_after_claim {
                        Self::FailOrReplay {
                            class: ErrorClass::Application,
                        }
                        .admits(outcome)
                    } else {
                        succeeded
                    }
            }
            Self::Unknown { .. } => false,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeed => f.write_str("commit or replay"),
            Self::Fail {
                class,
                sqlstate: Some(s),
            } => write!(f, "fail with {class} ({s})"),
            Self::Fail {
                class,
                sqlstate: None,
            } => write!(f, "fail with {class}"),
            Self::FailOrReplay { class } => write!(f, "fail with {class}, or replay"),
            Self::ArmedNotLanded { fails_after_claim } => write!(
                f,
                "{}, or fail with {} (its timeout fault was armed but did not land)",
                if *fails_after_claim {
                    "fail with application_error, or replay"
                } else {
                    "commit or replay"
                },
                ErrorClass::Timeout
            ),
            Self::Unknown { committed: true } => f.write_str(
                "end unknown (the server committed; the reply to COMMIT was lost), then replay when redelivered",
            ),
            Self::Unknown { committed: false } => f.write_str(
                "end unknown (the COMMIT was lost before the server got it), then commit or replay when redelivered",
            ),
        }
    }
}

/// The expectation for the delivery at `position` of step `step` of `plan`; `landed_at` is the
/// position the step's fault landed on, if it landed (the executor may move a fault from the
/// planned target to the next delivery it can land on).
///
/// # Panics
/// When `step` or `position` is out of the plan's range.
pub fn expect(plan: &Plan, step: usize, position: usize, landed_at: Option<usize>) -> Expect {
    let (deliveries, fault) = &plan.steps[step];
    let m = deliveries[position];
    match &plan.tenants[plan.message_tenant[m]].0 {
        TenantSpec::Missing | TenantSpec::Malformed { .. } => {
            return Expect::Fail {
                class: ErrorClass::Validation,
                sqlstate: None,
            };
        }
        TenantSpec::Unknown => {
            return Expect::Fail {
                class: ErrorClass::Database,
                sqlstate: Some("23503"),
            };
        }
        TenantSpec::Existing => {}
    }
    let targeted = fault.filter(|_| landed_at == Some(position));
    // A held key blocks the claim, before the point where fail-after-claim raises; the
    // executor gives a timeout target no retries, so it fails once, with the timeout.
    if let Some(StepFault::LockTimeout { .. } | StepFault::StatementTimeout { .. }) = targeted {
        return Expect::Fail {
            class: ErrorClass::Timeout,
            sqlstate: None,
        };
    }
    // A COMMIT cut by the relay: the fault lands only on a transaction that wrote its claim and
    // reached COMMIT, so never on a message that fails after its claim.
    match targeted {
        Some(StepFault::CommitReplyLost { .. }) => return Expect::Unknown { committed: true },
        Some(StepFault::CommitRequestLost { .. }) => return Expect::Unknown { committed: false },
        _ => {}
    }
    if plan.messages[m].faults.fail_after_claim {
        return Expect::FailOrReplay {
            class: ErrorClass::Application,
        };
    }
    // A terminate-backend target was killed while blocked on the claim, before it wrote
    // anything, and a crash-mid-transaction target died with the server while its claim was
    // written but not committed (the crash rolled it back): either way its retry, on a live
    // connection (after the restart), commits.
    Expect::Succeed
}

/// What the executor saw of a step's fault: the position of the delivery it landed on, and of
/// the delivery it was armed on without landing (`History::fault_fate` reads both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultFate {
    /// Where the fault landed.
    pub landed_at: Option<usize>,
    /// Where it was armed without landing: the delivery carried the fault's settings, but the
    /// held key was released before it ended.
    pub armed_not_landed_at: Option<usize>,
}

/// The expectation for the delivery at `position` of step `step`, following what the step's
/// fault did (`fate`): where it landed, or that it was armed on this delivery without landing.
///
/// # Panics
/// When `step` or `position` is out of the plan's range.
pub fn expect_in(plan: &Plan, fate: FaultFate, step: usize, position: usize) -> Expect {
    let expected = expect(plan, step, position, fate.landed_at);
    let armed = fate.armed_not_landed_at == Some(position)
        && matches!(
            plan.steps[step].1,
            Some(StepFault::LockTimeout { .. } | StepFault::StatementTimeout { .. })
        );
    match expected {
        Expect::Succeed if armed => Expect::ArmedNotLanded {
            fails_after_claim: false,
        },
        Expect::FailOrReplay {
            class: ErrorClass::Application,
        } if armed => Expect::ArmedNotLanded {
            fails_after_claim: true,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::{Failure, TaskName};
    use crate::workload::{MessageSpec, Step, Workload};
    use uuid::Uuid;

    fn msg(tenant: usize, fail_after_claim: bool) -> MessageSpec {
        MessageSpec {
            tenant,
            task: TaskName::Route,
            correlation: 0,
            request: None,
            fail_after_claim,
            dlq_write_failures: 0,
        }
    }

    /// One message of tenant 0 (failing after its claim when `fail_after_claim`), delivered
    /// once in a step with `fault`.
    fn one_delivery(fail_after_claim: bool, fault: StepFault) -> Workload {
        Workload {
            tenants: vec![TenantSpec::Existing],
            messages: vec![msg(0, fail_after_claim)],
            steps: vec![Step {
                deliveries: vec![0],
                fault: Some(fault),
            }],
            concurrency: 1,
        }
    }

    fn plan() -> Plan {
        Workload {
            tenants: vec![
                TenantSpec::Existing,
                TenantSpec::Unknown,
                TenantSpec::Malformed { raw: "x".into() },
                TenantSpec::Missing,
            ],
            messages: vec![
                msg(0, false),
                msg(1, false),
                msg(2, false),
                msg(3, false),
                msg(0, true),
            ],
            steps: vec![Step {
                deliveries: vec![0, 1, 2, 3, 4, 0],
                fault: Some(StepFault::LockTimeout { target: 5 }),
            }],
            concurrency: 2,
        }
        .plan(Uuid::nil())
    }

    fn failed(class: ErrorClass, sqlstate: Option<&str>) -> Outcome {
        Outcome::FailedRecorded {
            dlq_id: Uuid::nil(),
            failure: Failure {
                class,
                sqlstate: sqlstate.map(str::to_string),
                step: "claim".into(),
                message: String::new(),
            },
            retries: 0,
        }
    }

    #[test]
    fn each_tenant_kind_and_fault_has_its_expectation() {
        let p = plan();
        assert_eq!(expect(&p, 0, 0, Some(5)), Expect::Succeed);
        assert_eq!(
            expect(&p, 0, 1, Some(5)),
            Expect::Fail {
                class: ErrorClass::Database,
                sqlstate: Some("23503")
            }
        );
        assert!(matches!(
            expect(&p, 0, 2, Some(5)),
            Expect::Fail {
                class: ErrorClass::Validation,
                ..
            }
        ));
        assert!(matches!(
            expect(&p, 0, 3, Some(5)),
            Expect::Fail {
                class: ErrorClass::Validation,
                ..
            }
        ));
        assert_eq!(
            expect(&p, 0, 4, Some(5)),
            Expect::FailOrReplay {
                class: ErrorClass::Application
            }
        );
        assert_eq!(
            expect(&p, 0, 5, Some(5)),
            Expect::Fail {
                class: ErrorClass::Timeout,
                sqlstate: None
            }
        );
    }

    #[test]
    fn a_fault_that_did_not_land_changes_nothing_and_a_timeout_beats_fail_after_claim() {
        let p = plan();
        assert_eq!(expect(&p, 0, 5, None), Expect::Succeed);
        let mut w = one_delivery(true, StepFault::StatementTimeout { target: 0 });
        assert!(matches!(
            expect(&w.plan(Uuid::nil()), 0, 0, Some(0)),
            Expect::Fail {
                class: ErrorClass::Timeout,
                ..
            }
        ));
        w.steps[0].fault = Some(StepFault::TerminateBackend { target: 0 });
        assert_eq!(
            expect(&w.plan(Uuid::nil()), 0, 0, Some(0)),
            Expect::FailOrReplay {
                class: ErrorClass::Application
            }
        );
    }

    /// The fate of a step's fault aimed at `position`: `armed` on it, `delivered` (landed).
    fn fate(position: usize, armed: bool, delivered: bool) -> FaultFate {
        FaultFate {
            landed_at: delivered.then_some(position),
            armed_not_landed_at: (armed && !delivered).then_some(position),
        }
    }

    #[test]
    fn a_terminated_target_must_commit_its_retry_runs_on_a_live_connection() {
        let w = one_delivery(false, StepFault::TerminateBackend { target: 0 });
        let p = w.plan(Uuid::nil());
        assert_eq!(expect(&p, 0, 0, Some(0)), Expect::Succeed);
        assert!(!Expect::Succeed.admits(&failed(ErrorClass::Connection, None)));
    }

    #[test]
    fn the_expectation_follows_whether_a_timeout_fault_landed() {
        let p = plan();
        // Landed: the target ended while its key was held, so it timed out.
        let landed = fate(5, true, true);
        assert!(matches!(
            expect_in(&p, landed, 0, 5),
            Expect::Fail {
                class: ErrorClass::Timeout,
                ..
            }
        ));
        assert!(!expect_in(&p, landed, 0, 5).admits(&Outcome::Replayed {
            call_id: Uuid::nil()
        }));
        // Armed, not landed: the key was released before the target ended.
        let missed = fate(5, true, false);
        let e = expect_in(&p, missed, 0, 5);
        assert_eq!(
            e,
            Expect::ArmedNotLanded {
                fails_after_claim: false
            }
        );
        assert!(e.admits(&Outcome::Replayed {
            call_id: Uuid::nil()
        }));
        assert!(e.admits(&failed(ErrorClass::Timeout, Some("55P03"))));
        assert!(!e.admits(&failed(ErrorClass::Connection, None)));
        // The other deliveries of the step are unaffected.
        assert_eq!(expect_in(&p, missed, 0, 0), Expect::Succeed);
        // Not armed at all (the request was already committed): nothing changes.
        let never = fate(5, false, false);
        assert_eq!(expect_in(&p, never, 0, 5), Expect::Succeed);
        // A message that fails after its claim keeps that, and may time out.
        let e = expect_in(&p, fate(4, true, false), 0, 4);
        assert!(e.admits(&failed(ErrorClass::Application, None)));
        assert!(e.admits(&failed(ErrorClass::Timeout, None)));
        assert!(!e.admits(&Outcome::Committed {
            call_id: Uuid::nil(),
            job_id: None,
            attempts: 1
        }));
    }

    #[test]
    fn a_lost_commit_is_unknown_then_resolved_as_the_server_left_it() {
        let mut w = one_delivery(false, StepFault::CommitReplyLost { target: 0 });
        let unknown = Outcome::Unknown {
            detail: "the connection failed during COMMIT".into(),
        };
        let committed = Outcome::Committed {
            call_id: Uuid::nil(),
            job_id: None,
            attempts: 1,
        };
        let replayed = Outcome::Replayed {
            call_id: Uuid::nil(),
        };
        let lost = failed(ErrorClass::Connection, None);
        // The server committed: the redelivery must find the row and replay it.
        let e = expect(&w.plan(Uuid::nil()), 0, 0, Some(0));
        assert_eq!(e, Expect::Unknown { committed: true });
        assert!(e.must_succeed());
        assert!(e.admits_delivery(&unknown, Some(&replayed)));
        assert!(
            !e.admits_delivery(&unknown, Some(&committed)),
            "a second commit of a committed request"
        );
        assert!(
            !e.admits_delivery(&committed, None),
            "acknowledged a commit it never heard of"
        );
        assert!(
            !e.admits_delivery(&lost, None),
            "a lost COMMIT taken for a failure"
        );
        assert!(!e.admits_delivery(&unknown, None), "never redelivered");
        assert!(
            !e.admits(&replayed),
            "a final outcome alone says nothing of the unknown"
        );
        // Not landed (the relay never cut it): as without the fault.
        assert_eq!(expect(&w.plan(Uuid::nil()), 0, 0, None), Expect::Succeed);
        // The server never got the COMMIT: the redelivery commits, or replays a request another
        // delivery committed meanwhile.
        w.steps[0].fault = Some(StepFault::CommitRequestLost { target: 0 });
        let e = expect(&w.plan(Uuid::nil()), 0, 0, Some(0));
        assert_eq!(e, Expect::Unknown { committed: false });
        assert!(e.admits_delivery(&unknown, Some(&committed)));
        assert!(e.admits_delivery(&unknown, Some(&replayed)));
        assert!(!e.admits_delivery(&committed, None));
        // A crash mid-transaction: the target rides out the restart and commits.
        w.steps[0].fault = Some(StepFault::CrashMidTransaction { target: 0 });
        let e = expect(&w.plan(Uuid::nil()), 0, 0, Some(0));
        assert_eq!(e, Expect::Succeed);
        assert!(e.admits_delivery(&committed, None));
        assert!(!e.admits_delivery(&lost, None));
        assert!(e.admits_delivery(&unknown, Some(&committed)));
    }

    #[test]
    fn admits_only_the_outcomes_an_expectation_allows() {
        let committed = Outcome::Committed {
            call_id: Uuid::nil(),
            job_id: None,
            attempts: 1,
        };
        let replayed = Outcome::Replayed {
            call_id: Uuid::nil(),
        };
        let unknown = Outcome::Unknown {
            detail: String::new(),
        };
        assert!(Expect::Succeed.admits(&committed) && Expect::Succeed.admits(&replayed));
        assert!(!Expect::Succeed.admits(&failed(ErrorClass::Database, Some("42501"))));
        assert!(!Expect::Succeed.admits(&unknown));
        let fk = Expect::Fail {
            class: ErrorClass::Database,
            sqlstate: Some("23503"),
        };
        assert!(fk.admits(&failed(ErrorClass::Database, Some("23503"))));
        assert!(!fk.admits(&failed(ErrorClass::Database, Some("42501"))));
        assert!(!fk.admits(&committed));
        let timeout = Expect::FailOrReplay {
            class: ErrorClass::Timeout,
        };
        assert!(timeout.admits(&replayed) && !timeout.admits(&committed));
        assert!(!timeout.admits(&failed(ErrorClass::Database, None)));
    }
}
