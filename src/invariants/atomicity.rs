//! `atomicity`: a failed task leaves no audit, job or rollup rows.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::invariants::{Case, InvariantId, Observation};
use crate::system::Outcome;

const ID: InvariantId = InvariantId::Atomicity;

/// Check that every row of the case belongs to a committed task.
pub fn check(case: &Case<'_>) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut calls = BTreeSet::new();
    let mut jobs = BTreeSet::new();
    // An unknown outcome that resolved to a replay may have committed after all (unless the
    // harness saw its COMMIT never reach the server): the audit row it found is accepted, and
    // one job row per such delivery may be unattributed (the worker never learned its id).
    let mut unattributed_jobs_allowed = 0usize;
    for d in &case.history.deliveries {
        match (d.final_outcome(), &d.outcome) {
            (
                Outcome::Committed {
                    call_id, job_id, ..
                },
                _,
            ) => {
                calls.insert(*call_id);
                jobs.extend(*job_id);
            }
            (Outcome::Replayed { call_id }, Outcome::Unknown { .. })
                if case.history.commit_seen(d) != Some(false) =>
            {
                calls.insert(*call_id);
                unattributed_jobs_allowed += 1;
            }
            _ => {}
        }
    }
    let commits = case.history.commits(case.plan);
    let mut committed_per_tenant: BTreeMap<Uuid, i64> = BTreeMap::new();
    for ((tenant, _, _), committed) in &commits {
        *committed_per_tenant.entry(*tenant).or_default() += committed.len() as i64;
    }
    for c in &case.truth.calls {
        out.push(
            Observation::expect(
                ID,
                calls.contains(&c.id),
                "truth:audit-row-committed",
                format!(
                    "audit row {} of tenant {} ({}, request {:.16}) belongs to no committed task",
                    c.id,
                    case.tenant_label(c.tenant),
                    c.endpoint,
                    c.request_id
                ),
            )
            .on("llm_api_calls"),
        );
    }
    for j in &case.truth.jobs {
        let attributed = jobs.contains(&j.id);
        if !attributed && unattributed_jobs_allowed > 0 {
            unattributed_jobs_allowed -= 1;
            continue;
        }
        out.push(
            Observation::expect(
                ID,
                attributed,
                "truth:job-row-committed",
                format!(
                    "{} row {} of tenant {} belongs to no committed task",
                    j.table,
                    j.id,
                    case.tenant_label(j.tenant)
                ),
            )
            .on(j.table.clone()),
        );
    }
    // A failed request that nobody committed left no audit row under its key.
    let committed_keys: BTreeSet<_> = commits.into_keys().collect();
    let mut failed_keys = BTreeSet::new();
    for d in &case.history.deliveries {
        if matches!(
            d.final_outcome(),
            Outcome::FailedRecorded { .. } | Outcome::FailedUnrecorded { .. }
        ) && let Some(key) = case.plan.claim_key(d.message)
            && !committed_keys.contains(&key)
        {
            failed_keys.insert(key);
        }
    }
    for (tenant, request_id, task) in failed_keys {
        let left = case
            .truth
            .calls
            .iter()
            .filter(|c| {
                c.tenant == tenant && c.request_id == request_id && c.endpoint == task.as_str()
            })
            .count();
        out.push(
            Observation::expect(
                ID,
                left == 0,
                "truth:failed-request-left-nothing",
                format!(
                    "the failed request ({}, {request_id:.16}, {task}) left {left} audit rows",
                    case.tenant_label(tenant)
                ),
            )
            .on("llm_api_calls"),
        );
    }
    let mut counted: BTreeMap<Uuid, i64> = BTreeMap::new();
    for r in &case.truth.rollups {
        *counted.entry(r.tenant).or_default() += r.total_calls;
    }
    for (tenant, total) in counted {
        let committed = committed_per_tenant.get(&tenant).copied().unwrap_or(0);
        out.push(
            Observation::expect(
                ID,
                total <= committed,
                "truth:rollup-counts-only-commits",
                format!(
                    "tenant {}'s rollups count {total} calls but only {committed} tasks committed",
                    case.tenant_label(tenant)
                ),
            )
            .on("llm_monthly_costs"),
        );
    }
    out
}
