//! `expected-outcome`: every task the workload model expects to succeed commits exactly once;
//! every task it expects to fail fails with the expected error class. A system that silently
//! rejects valid work is broken even if nothing leaks.

use std::collections::BTreeMap;

use crate::invariants::{Case, InvariantId, Observation};
use crate::system::Outcome;
use crate::workload::{ClaimKey, model};

const ID: InvariantId = InvariantId::ExpectedOutcome;

/// `committed`, `replayed`, `failed (database_error, 42501)`, ...
pub fn outcome_summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Committed { .. } => "committed".into(),
        Outcome::Replayed { .. } => "replayed".into(),
        Outcome::FailedRecorded { failure, .. } | Outcome::FailedUnrecorded { failure, .. } => {
            match &failure.sqlstate {
                Some(s) => format!("failed ({}, {s}) at {}", failure.class, failure.step),
                None => format!("failed ({}) at {}", failure.class, failure.step),
            }
        }
        Outcome::Unknown { .. } => "unknown".into(),
    }
}

/// Check every delivery against the model, and every request the model expects to succeed
/// for exactly one commit.
pub fn check(case: &Case<'_>) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut keys: BTreeMap<ClaimKey, (bool, usize)> = BTreeMap::new();
    for d in &case.history.deliveries {
        let expect = model::expect_in(
            case.plan,
            case.history.fault_fate(d.step),
            d.step,
            d.position,
        );
        let outcome = d.final_outcome();
        let happened = match &d.redelivered {
            Some(r) => format!(
                "{}, redelivered: {}",
                outcome_summary(&d.outcome),
                outcome_summary(r)
            ),
            None => outcome_summary(outcome),
        };
        let mut o = Observation::expect(
            ID,
            expect.admits_delivery(&d.outcome, d.redelivered.as_ref()),
            "model:delivery",
            format!(
                "{} (step {}) was expected to {expect}, it {happened}",
                case.describe(d.message),
                d.step,
            ),
        );
        if let Outcome::FailedRecorded { failure, .. } | Outcome::FailedUnrecorded { failure, .. } =
            outcome
        {
            o = o.with_sqlstate(failure.sqlstate.clone());
        }
        out.push(o);
        if let Some(key) = case.plan.claim_key(d.message) {
            keys.entry(key).or_default().0 |= expect.must_succeed();
        }
    }
    for (key, committed) in case.history.commits(case.plan) {
        keys.entry(key).or_default().1 = committed.len();
    }
    for ((tenant, request_id, task), (must, commits)) in keys {
        if must {
            out.push(Observation::expect(
                ID,
                commits == 1,
                "model:request-commits-once",
                format!(
                    "request ({}, {request_id:.16}, {task}) should have committed exactly once, it committed {commits} times",
                    case.tenant_label(tenant)
                ),
            ));
        }
    }
    out
}
