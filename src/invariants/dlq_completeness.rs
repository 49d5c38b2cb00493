//! `dlq-completeness`: every task whose final outcome is failure has exactly one DLQ row with
//! the right task, tenant, error_type and retry count; no success has one.

use std::collections::BTreeSet;

use crate::invariants::{Case, InvariantId, Observation};
use crate::system::Outcome;

const ID: InvariantId = InvariantId::DlqCompleteness;

/// Check the case's history against its DLQ rows.
pub fn check(case: &Case<'_>) -> Vec<Observation> {
    let mut out = Vec::new();
    let delivered: BTreeSet<usize> = case.history.deliveries.iter().map(|d| d.message).collect();
    let mut expected_ids = BTreeSet::new();
    for &m in &delivered {
        let msg = &case.plan.messages[m];
        let what = case.describe(m);
        let dlq_id = msg.dlq_id();
        expected_ids.insert(dlq_id);
        let rows: Vec<_> = case.truth.dlq.iter().filter(|r| r.id == dlq_id).collect();
        let mut failures = Vec::new();
        for d in case.history.of_message(m) {
            match d.final_outcome() {
                Outcome::FailedRecorded {
                    failure, retries, ..
                } => failures.push((failure.class.as_str(), *retries)),
                Outcome::FailedUnrecorded {
                    failure,
                    retries,
                    dlq_error,
                } => {
                    failures.push((failure.class.as_str(), *retries));
                    out.push(Observation::violated(
                        ID,
                        "history:unrecorded",
                        format!("{what} failed ({failure}) and the worker could not record it: {dlq_error}"),
                    ).on("worker_failed_jobs"));
                }
                _ => {}
            }
        }
        if failures.is_empty() {
            out.push(
                Observation::expect(
                    ID,
                    rows.is_empty(),
                    "history:success-has-no-dlq-row",
                    format!("{what} succeeded but has a DLQ row"),
                )
                .on("worker_failed_jobs"),
            );
            continue;
        }
        let Some(row) = rows.first() else {
            out.push(
                Observation::violated(
                    ID,
                    "history:failure-has-dlq-row",
                    format!(
                        "{what} failed ({}) but no DLQ row {dlq_id} exists",
                        failures[0].0
                    ),
                )
                .on("worker_failed_jobs"),
            );
            continue;
        };
        let tenant = msg.tenant().ok();
        let mut wrong = Vec::new();
        if rows.len() > 1 {
            wrong.push(format!("{} rows", rows.len()));
        }
        if row.task_id != msg.task_id || row.task_name != msg.task_name.as_str() {
            wrong.push(format!("task {} {}", row.task_id, row.task_name));
        }
        if row.tenant != tenant {
            wrong.push(format!(
                "tenant {}",
                row.tenant.map_or("NULL".into(), |t| case.tenant_label(t))
            ));
        }
        if !failures.iter().any(|(class, _)| *class == row.error_type) {
            wrong.push(format!(
                "error_type {} (the worker saw {})",
                row.error_type, failures[0].0
            ));
        }
        if !failures
            .iter()
            .any(|(_, r)| i64::from(*r) == i64::from(row.retry_count))
        {
            wrong.push(format!(
                "retry_count {} (the worker made {})",
                row.retry_count, failures[0].1
            ));
        }
        out.push(
            Observation::expect(
                ID,
                wrong.is_empty(),
                "history:dlq-row-matches",
                format!("{what}: the DLQ row has {}", wrong.join(", ")),
            )
            .on("worker_failed_jobs"),
        );
    }
    for row in &case.truth.dlq {
        if !expected_ids.contains(&row.id) {
            out.push(
                Observation::violated(
                    ID,
                    "history:no-stray-dlq-row",
                    format!(
                        "DLQ row {} for task {} of tenant {} matches no failed task of the case",
                        row.id,
                        row.task_id,
                        row.tenant.map_or("NULL".into(), |t| case.tenant_label(t))
                    ),
                )
                .on("worker_failed_jobs"),
            );
        }
    }
    out
}
