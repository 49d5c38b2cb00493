//! The ground truth of a case: the rows the database holds for the case's tenants and task
//! messages, read by the oracle (a superuser, so RLS hides nothing). The history checks
//! compare it with what the executor saw.

use std::collections::BTreeSet;

use tokio_postgres::Client;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::workload::Plan;

/// An `llm_api_calls` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    /// Its id.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: Uuid,
    /// Its request id.
    pub request_id: String,
    /// Its endpoint (the task name).
    pub endpoint: String,
    /// The UTC month of `created_at`, `YYYY-MM-DD`.
    pub month: String,
    /// Its cost.
    pub cost_cents: i64,
}

/// A job row (`investigations` or `budget_optimization_jobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// The table.
    pub table: String,
    /// Its id.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: Uuid,
}

/// An `llm_monthly_costs` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRow {
    /// Its tenant.
    pub tenant: Uuid,
    /// The month, `YYYY-MM-DD`.
    pub month: String,
    /// `total_calls`.
    pub total_calls: i64,
    /// `total_cost_cents`.
    pub total_cost_cents: i64,
    /// The sum of `model_breakdown`'s `calls`.
    pub breakdown_calls: i64,
    /// The sum of `model_breakdown`'s `cost_cents`.
    pub breakdown_cost_cents: i64,
}

/// A `worker_failed_jobs` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqRow {
    /// Its id.
    pub id: Uuid,
    /// The task id.
    pub task_id: String,
    /// The task name.
    pub task_name: String,
    /// The tenant (NULL for a missing or malformed tenant).
    pub tenant: Option<Uuid>,
    /// The error class.
    pub error_type: String,
    /// The retry count.
    pub retry_count: i32,
}

/// Everything the database holds for one case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    /// Audit rows of the case's tenants.
    pub calls: Vec<CallRow>,
    /// Job rows of the case's tenants.
    pub jobs: Vec<JobRow>,
    /// Rollup rows of the case's tenants.
    pub rollups: Vec<RollupRow>,
    /// DLQ rows of the case's tenants or messages.
    pub dlq: Vec<DlqRow>,
}

impl Truth {
    /// Read the truth of `plan`'s case as the oracle.
    ///
    /// # Errors
    /// A database error when a read fails.
    pub async fn read(oracle: &Client, plan: &Plan) -> Result<Self> {
        let tenants: Vec<Uuid> = plan.tenants.iter().filter_map(|(_, id)| *id).collect();
        let dlq_ids: Vec<Uuid> = plan.messages.iter().map(|m| m.dlq_id()).collect();
        let err = |what: &str, e| Error::database(format!("reading the case's {what}"), e);
        let calls = oracle
            .query(
                "SELECT id, tenant_id, request_id, endpoint,
                        to_char(date_trunc('month', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD'),
                        cost_cents::bigint
                 FROM llm_api_calls WHERE tenant_id = ANY($1) ORDER BY created_at, id",
                &[&tenants],
            )
            .await
            .map_err(|e| err("audit rows", e))?
            .iter()
            .map(|r| CallRow {
                id: r.get(0),
                tenant: r.get(1),
                request_id: r.get(2),
                endpoint: r.get(3),
                month: r.get(4),
                cost_cents: r.get(5),
            })
            .collect();
        let jobs = oracle
            .query(
                "SELECT 'investigations', id, tenant_id FROM investigations WHERE tenant_id = ANY($1)
                 UNION ALL
                 SELECT 'budget_optimization_jobs', id, tenant_id FROM budget_optimization_jobs
                 WHERE tenant_id = ANY($1) ORDER BY 1, 2",
                &[&tenants],
            )
            .await
            .map_err(|e| err("job rows", e))?
            .iter()
            .map(|r| JobRow {
                table: r.get(0),
                id: r.get(1),
                tenant: r.get(2),
            })
            .collect();
        let rollups = oracle
            .query(
                "SELECT tenant_id, to_char(month, 'YYYY-MM-DD'), total_calls, total_cost_cents,
                        coalesce((SELECT sum((v ->> 'calls')::bigint) FROM jsonb_each(model_breakdown) AS e(k, v)), 0)::bigint,
                        coalesce((SELECT sum((v ->> 'cost_cents')::bigint) FROM jsonb_each(model_breakdown) AS e(k, v)), 0)::bigint
                 FROM llm_monthly_costs WHERE tenant_id = ANY($1) ORDER BY 1, 2",
                &[&tenants],
            )
            .await
            .map_err(|e| err("rollups", e))?
            .iter()
            .map(|r| RollupRow {
                tenant: r.get(0),
                month: r.get(1),
                total_calls: r.get(2),
                total_cost_cents: r.get(3),
                breakdown_calls: r.get(4),
                breakdown_cost_cents: r.get(5),
            })
            .collect();
        let dlq = oracle
            .query(
                "SELECT id, task_id, task_name, tenant_id, error_type, retry_count
                 FROM worker_failed_jobs WHERE id = ANY($1) OR tenant_id = ANY($2) ORDER BY task_id, id",
                &[&dlq_ids, &tenants],
            )
            .await
            .map_err(|e| err("DLQ rows", e))?
            .iter()
            .map(|r| DlqRow {
                id: r.get(0),
                task_id: r.get(1),
                task_name: r.get(2),
                tenant: r.get(3),
                error_type: r.get(4),
                retry_count: r.get(5),
            })
            .collect();
        Ok(Self {
            calls,
            jobs,
            rollups,
            dlq,
        })
    }

    /// Audit row ids.
    pub fn call_ids(&self) -> BTreeSet<Uuid> {
        self.calls.iter().map(|c| c.id).collect()
    }
}
