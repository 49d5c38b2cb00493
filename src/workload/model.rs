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
}

impl Expect {
    /// Whether the model holds the delivery to succeed (no fault aimed at it).
    pub fn must_succeed(self) -> bool {
        self == Self::Succeed
    }

    /// Whether `outcome` is one this expectation admits. `Unknown` is never admitted: the
    /// executor redelivers such a task and the redelivery's outcome is the one judged.
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
    if plan.messages[m].faults.fail_after_claim {
        return Expect::FailOrReplay {
            class: ErrorClass::Application,
        };
    }
    // A terminate-backend target was killed while blocked on the claim, before it wrote
    // anything: its retry, on a live connection, commits.
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
        let mut w = Workload {
            tenants: vec![TenantSpec::Existing],
            messages: vec![msg(0, true)],
            steps: vec![Step {
                deliveries: vec![0],
                fault: Some(StepFault::StatementTimeout { target: 0 }),
            }],
            concurrency: 1,
        };
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
        let w = Workload {
            tenants: vec![TenantSpec::Existing],
            messages: vec![msg(0, false)],
            steps: vec![Step {
                deliveries: vec![0],
                fault: Some(StepFault::TerminateBackend { target: 0 }),
            }],
            concurrency: 1,
        };
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
