//! `rollup-consistency`: per (tenant, month), `total_calls` and `total_cost_cents` equal the
//! count and sum of the tenant's audit rows in that UTC month, and `model_breakdown` sums to
//! the totals.

use std::collections::BTreeMap;

use crate::invariants::{Case, InvariantId, Observation};

const ID: InvariantId = InvariantId::RollupConsistency;

/// Check every rollup of the case's tenants against their audit rows.
pub fn check(case: &Case<'_>) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut audit: BTreeMap<(uuid::Uuid, String), (i64, i64)> = BTreeMap::new();
    for c in &case.truth.calls {
        let e = audit.entry((c.tenant, c.month.clone())).or_default();
        e.0 += 1;
        e.1 += c.cost_cents;
    }
    for r in &case.truth.rollups {
        let (calls, cost) = audit.remove(&(r.tenant, r.month.clone())).unwrap_or((0, 0));
        let label = case.tenant_label(r.tenant);
        out.push(
            Observation::expect(
                ID,
                r.total_calls == calls && r.total_cost_cents == cost,
                "truth:rollup-equals-audit",
                format!(
                    "tenant {label}, {}: total_calls {} and total_cost_cents {} but the audit rows count {calls} and sum {cost}",
                    r.month, r.total_calls, r.total_cost_cents
                ),
            )
            .on("llm_monthly_costs"),
        );
        out.push(
            Observation::expect(
                ID,
                r.breakdown_calls == r.total_calls && r.breakdown_cost_cents == r.total_cost_cents,
                "truth:breakdown-sums-to-totals",
                format!(
                    "tenant {label}, {}: model_breakdown sums to {} calls / {} cents, the totals are {} / {}",
                    r.month, r.breakdown_calls, r.breakdown_cost_cents, r.total_calls, r.total_cost_cents
                ),
            )
            .on("llm_monthly_costs"),
        );
    }
    // A tenant of the case with no audit rows must have no rollup either.
    for tenant in case.plan.existing_tenants() {
        let has_calls = case.truth.calls.iter().any(|c| c.tenant == tenant);
        if !has_calls {
            let rollups = case
                .truth
                .rollups
                .iter()
                .filter(|r| r.tenant == tenant)
                .count();
            out.push(
                Observation::expect(
                    ID,
                    rollups == 0,
                    "truth:no-calls-no-rollup",
                    format!(
                        "tenant {} has no audit rows but {rollups} rollup rows",
                        case.tenant_label(tenant)
                    ),
                )
                .on("llm_monthly_costs"),
            );
        }
    }
    for ((tenant, month), (calls, _)) in audit {
        out.push(
            Observation::violated(
                ID,
                "truth:month-has-rollup",
                format!(
                    "tenant {} has {calls} audit rows in {month} and no rollup row",
                    case.tenant_label(tenant)
                ),
            )
            .on("llm_monthly_costs"),
        );
    }
    out
}
