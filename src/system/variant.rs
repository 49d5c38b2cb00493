//! Broken variants: named switches that put the worker or the schema into a known-broken form.
//!
//! Each is a negative control: a form of the system that some invariant must report as violated.
//! A variant is a value chosen at run time, never a compile-time feature.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::database::Database;
use crate::error::{Error, Result};
use crate::roles::Role;

/// A known-broken form of the system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Variant {
    /// The original's session-scoped tenant context (`set_config(.., false)`) on pooled
    /// connections: the next task on the connection inherits the tenant.
    SessionContext,
    /// The DLQ row is written inside the failed transaction and rolled back with it.
    DlqInFailedTransaction,
    /// The DLQ transaction does not set the tenant context: the write is rejected by RLS.
    DlqWithoutContext,
    /// The original DLQ policy: NULL-tenant rows visible to every tenant, RLS not forced.
    DlqPolicyOriginal,
    /// The rollup reads the month's row then writes it back: concurrent tasks lose increments.
    ReadThenWriteRollup,
    /// Every attempt mints a new request id: a retry after a lost commit duplicates the audit row.
    RequestIdPerAttempt,
    /// The worker connects as `migration_owner` (the owner) instead of `app_user`.
    WorkerAsOwner,
    /// RLS is not forced and the runtime owns the tenant tables: the owner bypasses RLS.
    RlsNotForcedRuntimeOwner,
    /// The tenant tables' policies check writes with `WITH CHECK (true)`.
    WithCheckTrue,
    /// `app_user` has no privilege on `llm_api_calls` (the seed's H-P4-BLOCK-1).
    MissingGrant,
    /// The tenant policies fail open: `coalesce(<context>, tenant_id)` matches every row when
    /// no context is set.
    FailOpenContext,
    /// The claim commits in a transaction of its own before the rest of the task: a failure
    /// after the claim leaves the audit row behind.
    ClaimCommittedEarly,
    /// The worker commits with `synchronous_commit = off`: a crash loses acknowledged commits.
    AsyncCommit,
    /// A task's retries run on the connection its failed attempt ran on, never checked, and a
    /// failure at BEGIN counts as an attempt: after its backend is terminated, every retry
    /// fails at BEGIN instead of running on a live connection.
    StaleConnection,
    /// A COMMIT that got no answer is taken for a commit: the task is acknowledged although
    /// the server may have rolled it back.
    LostCommitAcknowledged,
    /// A COMMIT that got no answer is taken for the task's failure: no retry, a DLQ row,
    /// although the server may have committed it.
    LostCommitAsFailure,
    /// A COMMIT that got no answer is retried at once under a new request id: if the server had
    /// committed, the request is now recorded twice.
    LostCommitNewRequestId,
}

impl Variant {
    /// Every variant, in a stable order.
    pub const ALL: [Variant; 17] = [
        Self::SessionContext,
        Self::DlqInFailedTransaction,
        Self::DlqWithoutContext,
        Self::DlqPolicyOriginal,
        Self::ReadThenWriteRollup,
        Self::RequestIdPerAttempt,
        Self::WorkerAsOwner,
        Self::RlsNotForcedRuntimeOwner,
        Self::WithCheckTrue,
        Self::MissingGrant,
        Self::FailOpenContext,
        Self::ClaimCommittedEarly,
        Self::AsyncCommit,
        Self::StaleConnection,
        Self::LostCommitAcknowledged,
        Self::LostCommitAsFailure,
        Self::LostCommitNewRequestId,
    ];

    /// The variant's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::SessionContext => "session-context",
            Self::DlqInFailedTransaction => "dlq-in-failed-transaction",
            Self::DlqWithoutContext => "dlq-without-context",
            Self::DlqPolicyOriginal => "dlq-policy-original",
            Self::ReadThenWriteRollup => "read-then-write-rollup",
            Self::RequestIdPerAttempt => "request-id-per-attempt",
            Self::WorkerAsOwner => "worker-as-owner",
            Self::RlsNotForcedRuntimeOwner => "rls-not-forced-runtime-owner",
            Self::WithCheckTrue => "with-check-true",
            Self::MissingGrant => "missing-grant",
            Self::FailOpenContext => "fail-open-context",
            Self::ClaimCommittedEarly => "claim-committed-early",
            Self::AsyncCommit => "async-commit",
            Self::StaleConnection => "stale-connection",
            Self::LostCommitAcknowledged => "lost-commit-acknowledged",
            Self::LostCommitAsFailure => "lost-commit-as-failure",
            Self::LostCommitNewRequestId => "lost-commit-new-request-id",
        }
    }

    /// What the variant breaks, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Self::SessionContext => {
                "tenant context set session-scoped on pooled connections; the next task inherits it"
            }
            Self::DlqInFailedTransaction => {
                "DLQ row written inside the failed transaction and rolled back with it"
            }
            Self::DlqWithoutContext => {
                "DLQ transaction sets no tenant context; RLS rejects the write"
            }
            Self::DlqPolicyOriginal => {
                "DLQ policy shows NULL-tenant rows to every tenant; RLS not forced on the DLQ"
            }
            Self::ReadThenWriteRollup => {
                "rollup reads then writes the month's row; concurrent tasks lose increments"
            }
            Self::RequestIdPerAttempt => {
                "each attempt mints a new request id; retries duplicate audit rows"
            }
            Self::WorkerAsOwner => "worker connects as migration_owner, the table owner",
            Self::RlsNotForcedRuntimeOwner => {
                "RLS not forced and the runtime owns the tenant tables"
            }
            Self::WithCheckTrue => "tenant policies accept any write: WITH CHECK (true)",
            Self::MissingGrant => "app_user holds no privilege on llm_api_calls (H-P4-BLOCK-1)",
            Self::FailOpenContext => {
                "tenant policies fail open: with no context, coalesce(context, tenant_id) matches every row"
            }
            Self::ClaimCommittedEarly => {
                "the claim commits before the rest of the task; a later failure leaves the audit row"
            }
            Self::AsyncCommit => {
                "the worker commits with synchronous_commit = off; a crash loses acknowledged commits"
            }
            Self::StaleConnection => {
                "retries reuse the failed attempt's connection; a terminated backend fails the task at BEGIN"
            }
            Self::LostCommitAcknowledged => {
                "a COMMIT that got no answer counts as committed; a rolled-back task is acknowledged"
            }
            Self::LostCommitAsFailure => {
                "a COMMIT that got no answer counts as a failure: no retry, a DLQ row for work that may have committed"
            }
            Self::LostCommitNewRequestId => {
                "a COMMIT that got no answer is retried under a new request id; a committed request is recorded twice"
            }
        }
    }

    /// True when the variant changes the schema (applied by [`Variant::apply_schema`]).
    pub fn changes_schema(self) -> bool {
        !self.schema_sql().is_empty()
    }

    fn schema_sql(self) -> &'static str {
        match self {
            Self::DlqPolicyOriginal => {
                "DROP POLICY tenant_isolation ON worker_failed_jobs;
                 CREATE POLICY tenant_isolation ON worker_failed_jobs
                   USING (tenant_id IS NULL OR tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
                   WITH CHECK (tenant_id IS NULL OR tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);
                 ALTER TABLE worker_failed_jobs NO FORCE ROW LEVEL SECURITY;"
            }
            Self::RlsNotForcedRuntimeOwner => {
                "ALTER TABLE llm_api_calls NO FORCE ROW LEVEL SECURITY;
                 ALTER TABLE llm_monthly_costs NO FORCE ROW LEVEL SECURITY;
                 ALTER TABLE investigations NO FORCE ROW LEVEL SECURITY;
                 ALTER TABLE budget_optimization_jobs NO FORCE ROW LEVEL SECURITY;
                 ALTER TABLE llm_api_calls OWNER TO app_user;
                 ALTER TABLE llm_monthly_costs OWNER TO app_user;
                 ALTER TABLE investigations OWNER TO app_user;
                 ALTER TABLE budget_optimization_jobs OWNER TO app_user;"
            }
            Self::WithCheckTrue => {
                "ALTER POLICY tenant_isolation ON llm_api_calls WITH CHECK (true);
                 ALTER POLICY tenant_isolation ON llm_monthly_costs WITH CHECK (true);
                 ALTER POLICY tenant_isolation ON investigations WITH CHECK (true);
                 ALTER POLICY tenant_isolation ON budget_optimization_jobs WITH CHECK (true);"
            }
            Self::MissingGrant => "REVOKE ALL ON llm_api_calls FROM app_rw, app_ro, app_user;",
            Self::FailOpenContext => {
                "ALTER POLICY tenant_isolation ON llm_api_calls
                   USING (tenant_id = coalesce(nullif(current_setting('app.current_tenant_id', true), '')::uuid, tenant_id));
                 ALTER POLICY tenant_isolation ON llm_monthly_costs
                   USING (tenant_id = coalesce(nullif(current_setting('app.current_tenant_id', true), '')::uuid, tenant_id));
                 ALTER POLICY tenant_isolation ON investigations
                   USING (tenant_id = coalesce(nullif(current_setting('app.current_tenant_id', true), '')::uuid, tenant_id));
                 ALTER POLICY tenant_isolation ON budget_optimization_jobs
                   USING (tenant_id = coalesce(nullif(current_setting('app.current_tenant_id', true), '')::uuid, tenant_id));"
            }
            _ => "",
        }
    }

    /// Put `db`'s schema into this variant's broken form (as the superuser: giving tables to
    /// the runtime needs it). Worker-only variants change nothing here.
    ///
    /// # Errors
    /// A database error when a statement fails.
    pub async fn apply_schema(self, db: &Database) -> Result<()> {
        if !self.changes_schema() {
            return Ok(());
        }
        let su = db.connect(Role::Superuser).await?;
        su.batch_execute(self.schema_sql())
            .await
            .map_err(|e| Error::database(format!("applying the {} variant", self.name()), e))
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s.trim())
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown variant '{s}'; `rlsgate variants` lists them: {}",
                    Self::ALL.map(Variant::name).join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
        for v in Variant::ALL {
            assert_eq!(v.name().parse::<Variant>().unwrap(), v);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Variant::ALL.len());
    }

    #[test]
    fn an_unknown_variant_lists_the_names() {
        let err = "nope".parse::<Variant>().unwrap_err();
        assert!(err.to_string().contains("session-context"), "{err}");
    }

    #[test]
    fn only_schema_variants_carry_sql() {
        assert!(Variant::MissingGrant.changes_schema());
        assert!(!Variant::SessionContext.changes_schema());
    }
}
