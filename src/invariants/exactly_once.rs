//! `exactly-once`: at most one audit row per (tenant, request_id, endpoint); replays and
//! retries add nothing.

use std::collections::BTreeMap;

use crate::invariants::{Case, InvariantId, Observation};
use crate::workload::ClaimKey;

const ID: InvariantId = InvariantId::ExactlyOnce;

/// Check that every claim key committed at most once, in the history and in the database.
pub fn check(case: &Case<'_>) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut commits: BTreeMap<ClaimKey, Vec<usize>> = BTreeMap::new();
    for d in &case.history.deliveries {
        if let Some(key) = case.plan.claim_key(d.message) {
            commits.entry(key).or_default();
        }
    }
    for (key, committed) in case.history.commits(case.plan) {
        commits
            .entry(key)
            .or_default()
            .extend(committed.iter().map(|d| d.message));
    }
    for (key, committed) in &commits {
        let (tenant, request_id, task) = key;
        let label = case.tenant_label(*tenant);
        out.push(
            Observation::expect(
                ID,
                committed.len() <= 1,
                "history:one-commit-per-key",
                format!(
                    "request ({label}, {request_id:.16}, {task}) committed {} times (messages {committed:?})",
                    committed.len()
                ),
            )
            .on("llm_api_calls"),
        );
        let rows = case
            .truth
            .calls
            .iter()
            .filter(|c| {
                c.tenant == *tenant && c.request_id == *request_id && c.endpoint == task.as_str()
            })
            .count();
        out.push(
            Observation::expect(
                ID,
                rows <= 1,
                "truth:one-row-per-key",
                format!("request ({label}, {request_id:.16}, {task}) has {rows} audit rows"),
            )
            .on("llm_api_calls"),
        );
    }
    // A delivery whose request was committed must not add a row of its own, under any id.
    let mut per_tenant: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    for c in &case.truth.calls {
        *per_tenant.entry(c.tenant).or_default() += 1;
    }
    for (tenant, rows) in per_tenant {
        let keys = commits.keys().filter(|(t, _, _)| *t == tenant).count();
        out.push(
            Observation::expect(
                ID,
                rows <= keys,
                "truth:rows-within-keys",
                format!(
                    "tenant {} holds {rows} audit rows for {keys} distinct requests",
                    case.tenant_label(tenant)
                ),
            )
            .on("llm_api_calls"),
        );
    }
    out
}
