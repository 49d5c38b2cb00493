//! `durability`: after injected crashes, kills and timeouts, every task the harness saw commit
//! is there once; every task that failed is in the DLQ; a commit whose outcome was unknown
//! resolves to exactly once.

use crate::invariants::{Case, InvariantId, Observation};
use crate::system::Outcome;
use crate::workload::FaultKind;

const ID: InvariantId = InvariantId::Durability;

/// Check that what the executor saw committed or recorded is still in the database.
pub fn check(case: &Case<'_>) -> Vec<Observation> {
    let mut out = Vec::new();
    let after: Vec<&str> = [
        FaultKind::ServerCrash,
        FaultKind::TerminateBackend,
        FaultKind::LockTimeout,
        FaultKind::StatementTimeout,
        FaultKind::CrashMidTransaction,
        FaultKind::CommitReplyLost,
        FaultKind::CommitRequestLost,
    ]
    .into_iter()
    .filter(|k| case.history.saw(*k))
    .map(FaultKind::as_str)
    .collect();
    let probe = |what: &str| {
        if after.is_empty() {
            format!("history:{what}")
        } else {
            format!("history:{what} after {}", after.join("+"))
        }
    };
    for d in &case.history.deliveries {
        let what = case.describe(d.message);
        match &d.outcome {
            Outcome::Committed { call_id, .. } => {
                let rows = case.truth.calls.iter().filter(|c| c.id == *call_id).count();
                out.push(
                    Observation::expect(
                        ID,
                        rows == 1,
                        probe("commit-survives"),
                        format!("{what} was acknowledged as committed (audit row {call_id}) but the database holds {rows} such rows"),
                    )
                    .on("llm_api_calls"),
                );
            }
            Outcome::FailedRecorded { dlq_id, .. } => {
                let rows = case.truth.dlq.iter().filter(|r| r.id == *dlq_id).count();
                out.push(
                    Observation::expect(
                        ID,
                        rows == 1,
                        probe("dlq-row-survives"),
                        format!("{what} was recorded in the DLQ ({dlq_id}) but the database holds {rows} such rows"),
                    )
                    .on("worker_failed_jobs"),
                );
            }
            Outcome::Unknown { detail } => {
                let resolved = match (&d.redelivered, case.plan.claim_key(d.message)) {
                    (
                        Some(Outcome::Committed { .. } | Outcome::Replayed { .. }),
                        Some((t, r, e)),
                    ) => {
                        case.truth
                            .calls
                            .iter()
                            .filter(|c| {
                                c.tenant == t && c.request_id == r && c.endpoint == e.as_str()
                            })
                            .count()
                            == 1
                    }
                    _ => false,
                };
                out.push(Observation::expect(
                    ID,
                    resolved,
                    probe("unknown-resolves-once"),
                    format!("{what} ended unknown ({detail}) and its redelivery did not resolve it to exactly one audit row"),
                ));
            }
            _ => {}
        }
    }
    out
}
