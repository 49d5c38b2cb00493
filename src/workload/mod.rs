//! Workloads: a whole multi-tenant case as one generated value.
//!
//! A [`Workload`] names its tenants (some that exist, some that do not, some malformed or
//! missing), the task messages, how they are delivered in steps (duplicates included), the
//! concurrency, and a fault schedule. Faults are part of the value, so shrinking drops the
//! faults and tenants that do not matter. Identifiers come from the value: [`Workload::plan`]
//! turns it into concrete task messages under a namespace, so the same value (and seed) replays
//! the same case.
//!
//! Submodules: [`strategy`] generates workloads with proptest; [`model`] says what each
//! delivery is expected to end as.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::system::{TaskFaults, TaskMessage, TaskName};

pub mod model;
pub mod strategy;

pub use model::Expect;
pub use strategy::{WorkloadShape, workload};

/// A tenant as the envelopes of a workload carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TenantSpec {
    /// A tenant created before the case runs.
    Existing,
    /// A well-formed UUID that names no tenant: the claim violates the foreign key (23503).
    Unknown,
    /// A tenant id that is not a UUID.
    Malformed {
        /// The raw value.
        raw: String,
    },
    /// No tenant id in the envelope at all.
    Missing,
}

impl TenantSpec {
    /// Whether the tenant exists when the case runs.
    pub fn exists(&self) -> bool {
        matches!(self, Self::Existing)
    }
}

/// One task message of a workload (it may be delivered several times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSpec {
    /// Which tenant (an index into [`Workload::tenants`], taken modulo their number).
    pub tenant: usize,
    /// Which task.
    pub task: TaskName,
    /// Correlation seed: few values, so default request ids collide within a tenant.
    pub correlation: u8,
    /// An explicit request id `req-<n>` from a few values, so ids collide within and across
    /// tenants; `None` uses the default (SHA-256) request id.
    pub request: Option<u8>,
    /// Raise an application error after the claim, on every attempt.
    pub fail_after_claim: bool,
    /// How many DLQ write attempts fail before one succeeds (a transient DLQ fault).
    pub dlq_write_failures: u8,
}

/// A fault aimed at one step of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepFault {
    /// Crash the server (immediate stop) right after the step's deliveries, and restart it.
    ServerCrash,
    /// Another session holds the target's claim key locked; the target's lock_timeout fires.
    LockTimeout {
        /// The targeted delivery (an index into the step's deliveries, modulo their number).
        target: usize,
    },
    /// As [`StepFault::LockTimeout`], with a statement_timeout instead.
    StatementTimeout {
        /// The targeted delivery.
        target: usize,
    },
    /// The target blocks on a held claim key, and its backend is terminated mid-transaction
    /// with `pg_terminate_backend`.
    TerminateBackend {
        /// The targeted delivery.
        target: usize,
    },
    /// The target's connection is cut right after the server committed its transaction: the
    /// reply to its COMMIT never reaches the worker.
    CommitReplyLost {
        /// The targeted delivery.
        target: usize,
    },
    /// The target's connection is cut as it sends COMMIT: the server never receives it and rolls
    /// the transaction back.
    CommitRequestLost {
        /// The targeted delivery.
        target: usize,
    },
    /// The server crashes (immediate stop) while the target is mid-transaction, its claim
    /// written and uncommitted, and restarts; the worker rides the restart out.
    CrashMidTransaction {
        /// The targeted delivery.
        target: usize,
    },
}

impl StepFault {
    /// The fault's kind.
    pub fn kind(self) -> FaultKind {
        match self {
            Self::ServerCrash => FaultKind::ServerCrash,
            Self::LockTimeout { .. } => FaultKind::LockTimeout,
            Self::StatementTimeout { .. } => FaultKind::StatementTimeout,
            Self::TerminateBackend { .. } => FaultKind::TerminateBackend,
            Self::CommitReplyLost { .. } => FaultKind::CommitReplyLost,
            Self::CommitRequestLost { .. } => FaultKind::CommitRequestLost,
            Self::CrashMidTransaction { .. } => FaultKind::CrashMidTransaction,
        }
    }

    /// The targeted delivery's position in a step of `len` deliveries, if the fault has one.
    pub fn target(self, len: usize) -> Option<usize> {
        match self {
            Self::ServerCrash => None,
            Self::LockTimeout { target }
            | Self::StatementTimeout { target }
            | Self::TerminateBackend { target }
            | Self::CommitReplyLost { target }
            | Self::CommitRequestLost { target }
            | Self::CrashMidTransaction { target } => (len > 0).then(|| target % len),
        }
    }

    /// Whether the fault needs its target to reach COMMIT with a claim of its own: a target
    /// that fails after its claim never does.
    pub fn needs_a_commit(self) -> bool {
        matches!(
            self,
            Self::CommitReplyLost { .. }
                | Self::CommitRequestLost { .. }
                | Self::CrashMidTransaction { .. }
        )
    }
}

/// A step: deliveries that run concurrently, and an optional fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Messages delivered in this step (indices into [`Workload::messages`], modulo their
    /// number); an index seen before is a duplicate delivery.
    pub deliveries: Vec<usize>,
    /// The fault aimed at this step.
    pub fault: Option<StepFault>,
}

/// A whole case: tenants, messages, steps of deliveries, concurrency and faults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// The tenants (labelled A, B, C, ... in transcripts).
    pub tenants: Vec<TenantSpec>,
    /// The task messages.
    pub messages: Vec<MessageSpec>,
    /// The steps, run one after the other.
    pub steps: Vec<Step>,
    /// How many deliveries of a step run at once.
    pub concurrency: usize,
}

/// The kinds of fault a workload can inject (docs/system.md section 7), for counting and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A tenant id that is not a UUID.
    MalformedTenant,
    /// No tenant id.
    MissingTenant,
    /// A tenant that does not exist (foreign-key violation).
    UnknownTenant,
    /// An application error after the claim.
    FailAfterClaim,
    /// A statement timeout while blocked on a lock held by another session.
    StatementTimeout,
    /// A lock timeout on a lock held by another session.
    LockTimeout,
    /// `pg_terminate_backend` of the worker's backend mid-transaction.
    TerminateBackend,
    /// Server crash (immediate stop) and restart mid-workload.
    ServerCrash,
    /// The connection dies after the server committed, before the worker read the reply.
    CommitReplyLost,
    /// The connection dies as COMMIT is sent; the server rolls back.
    CommitRequestLost,
    /// Server crash while a transaction is open, its claim written; the worker rides out the
    /// restart.
    CrashMidTransaction,
    /// A fault in the DLQ write path.
    DlqWriteFault,
    /// The same message delivered again.
    DuplicateDelivery,
    /// Deliveries with the same claim key in one step (concurrent same request id).
    ConcurrentSameRequest,
}

impl FaultKind {
    /// Every kind, in a stable order.
    pub const ALL: [FaultKind; 14] = [
        Self::MalformedTenant,
        Self::MissingTenant,
        Self::UnknownTenant,
        Self::FailAfterClaim,
        Self::StatementTimeout,
        Self::LockTimeout,
        Self::TerminateBackend,
        Self::ServerCrash,
        Self::CommitReplyLost,
        Self::CommitRequestLost,
        Self::CrashMidTransaction,
        Self::DlqWriteFault,
        Self::DuplicateDelivery,
        Self::ConcurrentSameRequest,
    ];

    /// The kind's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedTenant => "malformed-tenant",
            Self::MissingTenant => "missing-tenant",
            Self::UnknownTenant => "unknown-tenant",
            Self::FailAfterClaim => "fail-after-claim",
            Self::StatementTimeout => "statement-timeout",
            Self::LockTimeout => "lock-timeout",
            Self::TerminateBackend => "terminate-backend",
            Self::ServerCrash => "server-crash",
            Self::CommitReplyLost => "commit-reply-lost",
            Self::CommitRequestLost => "commit-request-lost",
            Self::CrashMidTransaction => "crash-mid-transaction",
            Self::DlqWriteFault => "dlq-write-fault",
            Self::DuplicateDelivery => "duplicate-delivery",
            Self::ConcurrentSameRequest => "concurrent-same-request",
        }
    }
}

impl FaultKind {
    /// Whether the kind is a step fault (the executor injects it and records whether it
    /// landed), rather than part of a message, a tenant or the delivery pattern.
    pub fn is_step_fault(self) -> bool {
        matches!(
            self,
            Self::StatementTimeout
                | Self::LockTimeout
                | Self::TerminateBackend
                | Self::ServerCrash
                | Self::CommitReplyLost
                | Self::CommitRequestLost
                | Self::CrashMidTransaction
        )
    }

    /// Whether the kind crashes the server (only on a server rlsgate owns).
    pub fn crashes(self) -> bool {
        matches!(self, Self::ServerCrash | Self::CrashMidTransaction)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The label of tenant `index` in transcripts: A, B, ..., Z, T26, T27, ...
pub fn tenant_label(index: usize) -> String {
    if index < 26 {
        char::from(b'A' + index as u8).to_string()
    } else {
        format!("T{index}")
    }
}

/// A workload made concrete under a namespace: UUIDs, task ids and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The namespace every identifier of the case derives from.
    pub namespace: Uuid,
    /// Per tenant: its spec and, for a well-formed one, its UUID.
    pub tenants: Vec<(TenantSpec, Option<Uuid>)>,
    /// The messages, in the workload's order.
    pub messages: Vec<TaskMessage>,
    /// Per message, its tenant's index.
    pub message_tenant: Vec<usize>,
    /// Per step: the message index of each delivery, and the fault.
    pub steps: Vec<(Vec<usize>, Option<StepFault>)>,
    /// Deliveries of a step that run at once.
    pub concurrency: usize,
}

/// A claim key: (tenant UUID, request id, endpoint).
pub type ClaimKey = (Uuid, String, TaskName);

impl Plan {
    /// The claim key of message `m`, when its tenant is a well-formed UUID.
    pub fn claim_key(&self, m: usize) -> Option<ClaimKey> {
        let msg = &self.messages[m];
        let tenant = msg.tenant().ok()?;
        Some((tenant, msg.request_id_for(tenant), msg.task_name))
    }

    /// The UUIDs of the tenants that exist.
    pub fn existing_tenants(&self) -> Vec<Uuid> {
        self.tenants
            .iter()
            .filter(|(s, _)| s.exists())
            .filter_map(|(_, id)| *id)
            .collect()
    }

    /// The label of message `m`'s tenant.
    pub fn tenant_label_of(&self, m: usize) -> String {
        tenant_label(self.message_tenant[m])
    }
}

impl Workload {
    /// Make the workload concrete under `namespace` (the runner derives one per case execution,
    /// so the same workload run twice in one database uses fresh tenants).
    pub fn plan(&self, namespace: Uuid) -> Plan {
        let derive = |what: String| Uuid::new_v5(&namespace, what.as_bytes());
        let tenants: Vec<(TenantSpec, Option<Uuid>)> = self
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                // A tenant's UUID derives from the namespace and its position.
                let id = match t {
                    TenantSpec::Existing | TenantSpec::Unknown => {
                        Some(derive(format!("tenant:{i}")))
                    }
                    _ => None,
                };
                (t.clone(), id)
            })
            .collect();
        let short = namespace.simple().to_string()[..8].to_string();
        let mut message_tenant = Vec::new();
        let messages = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let t = m.tenant % tenants.len().max(1);
                message_tenant.push(t);
                let tenant_id = match &tenants.get(t) {
                    Some((TenantSpec::Malformed { raw }, _)) => Some(raw.clone()),
                    Some((TenantSpec::Missing, _)) | None => None,
                    Some((_, id)) => id.map(|u| u.to_string()),
                };
                TaskMessage {
                    task_id: format!("c{short}-m{i}"),
                    task_name: m.task,
                    tenant_id,
                    correlation_id: derive(format!("correlation:{}", m.correlation)),
                    request_id: m.request.map(|r| format!("req-{r}")),
                    payload: serde_json::json!({ "message": i }),
                    max_cost_cents: 100,
                    retries: None,
                    faults: TaskFaults {
                        fail_after_claim: m.fail_after_claim,
                        dlq_write_failures: u32::from(m.dlq_write_failures),
                        ..TaskFaults::default()
                    },
                }
            })
            .collect::<Vec<_>>();
        let steps = self
            .steps
            .iter()
            .map(|s| {
                let deliveries = if messages.is_empty() {
                    Vec::new()
                } else {
                    s.deliveries.iter().map(|d| d % messages.len()).collect()
                };
                (deliveries, s.fault)
            })
            .collect();
        Plan {
            namespace,
            tenants,
            messages,
            message_tenant,
            steps,
            concurrency: self.concurrency.max(1),
        }
    }

    /// The faults this workload plans, by kind (what the executor delivers may be fewer).
    pub fn planned_faults(&self) -> BTreeMap<FaultKind, u64> {
        let plan = self.plan(Uuid::nil());
        plan.planned_faults()
    }
}

impl Plan {
    /// The faults this plan injects, by kind, counted per delivery.
    pub fn planned_faults(&self) -> BTreeMap<FaultKind, u64> {
        let mut counts = BTreeMap::new();
        let mut bump = |k: FaultKind| *counts.entry(k).or_insert(0) += 1;
        let mut seen = std::collections::BTreeSet::new();
        for (deliveries, fault) in &self.steps {
            if let Some(f) = fault
                && (f.target(deliveries.len()).is_some() || *f == StepFault::ServerCrash)
            {
                bump(f.kind());
            }
            let mut keys = BTreeMap::new();
            for &m in deliveries {
                match &self.tenants[self.message_tenant[m]].0 {
                    TenantSpec::Malformed { .. } => bump(FaultKind::MalformedTenant),
                    TenantSpec::Missing => bump(FaultKind::MissingTenant),
                    TenantSpec::Unknown => bump(FaultKind::UnknownTenant),
                    TenantSpec::Existing => {}
                }
                let faults = &self.messages[m].faults;
                if faults.fail_after_claim {
                    bump(FaultKind::FailAfterClaim);
                }
                if faults.dlq_write_failures > 0 {
                    bump(FaultKind::DlqWriteFault);
                }
                if !seen.insert(m) {
                    bump(FaultKind::DuplicateDelivery);
                }
                if let Some(key) = self.claim_key(m) {
                    *keys.entry(key).or_insert(0u32) += 1;
                }
            }
            for n in keys.values() {
                if *n > 1 {
                    bump(FaultKind::ConcurrentSameRequest);
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Workload {
        Workload {
            tenants: vec![
                TenantSpec::Existing,
                TenantSpec::Malformed { raw: "nope".into() },
            ],
            messages: vec![
                MessageSpec {
                    tenant: 0,
                    task: TaskName::Route,
                    correlation: 0,
                    request: None,
                    fail_after_claim: false,
                    dlq_write_failures: 0,
                },
                MessageSpec {
                    tenant: 3,
                    task: TaskName::Investigation,
                    correlation: 0,
                    request: Some(1),
                    fail_after_claim: true,
                    dlq_write_failures: 1,
                },
            ],
            steps: vec![
                Step {
                    deliveries: vec![0, 0, 1],
                    fault: Some(StepFault::LockTimeout { target: 4 }),
                },
                Step {
                    deliveries: vec![2],
                    fault: Some(StepFault::ServerCrash),
                },
            ],
            concurrency: 2,
        }
    }

    #[test]
    fn a_plan_is_a_pure_function_of_the_workload_and_the_namespace() {
        let w = sample();
        let ns = Uuid::from_u128(7);
        assert_eq!(w.plan(ns), w.plan(ns));
        assert_ne!(
            w.plan(ns).messages[0].tenant_id,
            w.plan(Uuid::from_u128(8)).messages[0].tenant_id
        );
    }

    #[test]
    fn indices_wrap_so_every_shrunk_value_stays_valid() {
        let plan = sample().plan(Uuid::nil());
        // message 1 names tenant 3 of 2: tenant 1, the malformed one.
        assert_eq!(plan.messages[1].tenant_id.as_deref(), Some("nope"));
        assert_eq!(plan.steps[1].0, vec![0]);
        assert_eq!(plan.steps[0].1.unwrap().target(3), Some(1));
    }

    #[test]
    fn planned_faults_count_duplicates_collisions_and_tenant_faults() {
        let counts = sample().planned_faults();
        assert_eq!(counts[&FaultKind::DuplicateDelivery], 2);
        assert_eq!(counts[&FaultKind::ConcurrentSameRequest], 1);
        assert_eq!(counts[&FaultKind::MalformedTenant], 1);
        assert_eq!(counts[&FaultKind::FailAfterClaim], 1);
        assert_eq!(counts[&FaultKind::DlqWriteFault], 1);
        assert_eq!(counts[&FaultKind::LockTimeout], 1);
        assert_eq!(counts[&FaultKind::ServerCrash], 1);
    }

    #[test]
    fn labels_run_a_to_z_then_numbered() {
        assert_eq!(tenant_label(0), "A");
        assert_eq!(tenant_label(25), "Z");
        assert_eq!(tenant_label(26), "T26");
    }
}
