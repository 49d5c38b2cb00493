//! The task message the worker consumes, and the four LLM stub tasks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};

/// The four tasks of the LLM-audit worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskName {
    /// `app.tasks.llm.route`: audit row and rollup only.
    Route,
    /// `app.tasks.llm.explanation`: audit row and rollup only.
    Explanation,
    /// `app.tasks.llm.investigation`: also an `investigations` row.
    Investigation,
    /// `app.tasks.llm.budget_optimization`: also a `budget_optimization_jobs` row.
    BudgetOptimization,
}

impl TaskName {
    /// Every task, in a stable order.
    pub const ALL: [TaskName; 4] = [
        Self::Route,
        Self::Explanation,
        Self::Investigation,
        Self::BudgetOptimization,
    ];

    /// The task's full name, which is also the audit row's `endpoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "app.tasks.llm.route",
            Self::Explanation => "app.tasks.llm.explanation",
            Self::Investigation => "app.tasks.llm.investigation",
            Self::BudgetOptimization => "app.tasks.llm.budget_optimization",
        }
    }

    /// The job table this task writes besides the audit row, if any.
    pub fn job_table(self) -> Option<&'static str> {
        match self {
            Self::Investigation => Some("investigations"),
            Self::BudgetOptimization => Some("budget_optimization_jobs"),
            Self::Route | Self::Explanation => None,
        }
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown task '{s}'; use one of {}",
                    Self::ALL.map(TaskName::as_str).join(", ")
                ))
            })
    }
}

/// Faults aimed at one task (docs/system.md section 7), set by the workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFaults {
    /// Raise an application error after the claim (the whole transaction must roll back).
    pub fail_after_claim: bool,
    /// How many DLQ write attempts for this task fail (a fault in the DLQ write path); the
    /// worker makes [`DLQ_ATTEMPTS`](crate::system::worker::DLQ_ATTEMPTS) attempts, so a value
    /// below that is a transient fault the worker must ride out.
    pub dlq_write_failures: u32,
    /// A `lock_timeout` for this task's transactions, in milliseconds.
    pub lock_timeout_ms: Option<u32>,
    /// A `statement_timeout` for this task's transactions, in milliseconds.
    pub statement_timeout_ms: Option<u32>,
}

/// One task message, as a queue would deliver it. The tenant id is the raw envelope value: it
/// may be missing or malformed, which is bad input the worker must record, not crash on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// The delivery's task id (a duplicate delivery repeats it).
    pub task_id: String,
    /// Which task.
    pub task_name: TaskName,
    /// The tenant, as the envelope carries it.
    pub tenant_id: Option<String>,
    /// Correlation id of the request that caused the task.
    pub correlation_id: Uuid,
    /// Explicit request id; defaults to [`TaskMessage::default_request_id`].
    pub request_id: Option<String>,
    /// The task's JSON payload.
    pub payload: serde_json::Value,
    /// The most the task may cost, in cents.
    pub max_cost_cents: i32,
    /// Retries after the first attempt; `None` uses the worker's default.
    pub retries: Option<u32>,
    /// Injected faults.
    pub faults: TaskFaults,
}

/// A tenant id that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantProblem {
    /// The envelope has no tenant id.
    Missing,
    /// The envelope's tenant id is not a UUID.
    Malformed(String),
}

impl fmt::Display for TenantProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("the task carries no tenant_id"),
            Self::Malformed(v) => write!(f, "tenant_id '{v}' is not a UUID"),
        }
    }
}

impl TaskMessage {
    /// A well-formed message for `tenant` with no explicit request id and no faults.
    pub fn new(
        task_id: impl Into<String>,
        task_name: TaskName,
        tenant: Uuid,
        correlation_id: Uuid,
    ) -> Self {
        Self {
            task_id: task_id.into(),
            task_name,
            tenant_id: Some(tenant.to_string()),
            correlation_id,
            request_id: None,
            payload: serde_json::json!({}),
            max_cost_cents: 100,
            retries: None,
            faults: TaskFaults::default(),
        }
    }

    /// The tenant as a UUID, or why it is not one.
    ///
    /// # Errors
    /// [`TenantProblem`] when the tenant id is missing or malformed.
    pub fn tenant(&self) -> std::result::Result<Uuid, TenantProblem> {
        match &self.tenant_id {
            None => Err(TenantProblem::Missing),
            Some(raw) => {
                Uuid::parse_str(raw.trim()).map_err(|_| TenantProblem::Malformed(raw.clone()))
            }
        }
    }

    /// The hex SHA-256 of `"<tenant>:<endpoint>:<correlation>"`: stable across retries and
    /// redeliveries of the same request.
    pub fn default_request_id(&self, tenant: Uuid) -> String {
        let key = format!(
            "{tenant}:{}:{}",
            self.task_name.as_str(),
            self.correlation_id
        );
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    /// The request id the claim uses: the explicit one, else the default.
    pub fn request_id_for(&self, tenant: Uuid) -> String {
        self.request_id
            .clone()
            .unwrap_or_else(|| self.default_request_id(tenant))
    }

    /// The DLQ row's id: UUIDv5 of `"<task_id>:<task_name>"`, so a DLQ write is idempotent.
    pub fn dlq_id(&self) -> Uuid {
        Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{}:{}", self.task_id, self.task_name).as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> TaskMessage {
        TaskMessage::new(
            "t-1",
            TaskName::Route,
            Uuid::from_u128(1),
            Uuid::from_u128(2),
        )
    }

    #[test]
    fn the_default_request_id_is_the_sha256_of_tenant_endpoint_correlation() {
        let m = message();
        let tenant = m.tenant().unwrap();
        let expected = hex::encode(Sha256::digest(
            format!("{tenant}:app.tasks.llm.route:{}", m.correlation_id).as_bytes(),
        ));
        assert_eq!(m.request_id_for(tenant), expected);
        assert_eq!(m.request_id_for(tenant).len(), 64);
        let explicit = TaskMessage {
            request_id: Some("req-1".into()),
            ..m
        };
        assert_eq!(explicit.request_id_for(tenant), "req-1");
    }

    #[test]
    fn the_dlq_id_is_deterministic_per_task_id_and_name() {
        let a = message();
        assert_eq!(a.dlq_id(), message().dlq_id());
        assert_eq!(a.dlq_id().get_version_num(), 5);
        let other = TaskMessage {
            task_name: TaskName::Explanation,
            ..message()
        };
        assert_ne!(a.dlq_id(), other.dlq_id());
    }

    #[test]
    fn tenants_are_validated_without_panicking() {
        let missing = TaskMessage {
            tenant_id: None,
            ..message()
        };
        assert_eq!(missing.tenant(), Err(TenantProblem::Missing));
        let bad = TaskMessage {
            tenant_id: Some("not-a-uuid".into()),
            ..message()
        };
        assert_eq!(
            bad.tenant().unwrap_err().to_string(),
            "tenant_id 'not-a-uuid' is not a UUID"
        );
    }

    #[test]
    fn task_names_round_trip_and_unknown_names_list_the_choices() {
        for t in TaskName::ALL {
            assert_eq!(t.as_str().parse::<TaskName>().unwrap(), t);
        }
        assert!(
            "app.tasks.llm.nope"
                .parse::<TaskName>()
                .unwrap_err()
                .to_string()
                .contains("app.tasks.llm.route")
        );
    }
}
