//! The report of a campaign: `report.json`'s schema, the verdict, the counterexample
//! transcript, and the problems its violations make ([`problem`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::catalog::identity::RuntimeIdentity;
use crate::catalog::policies::PolicyEntry;
use crate::catalog::privileges::PrivilegeMatrix;
use crate::history::History;
use crate::invariants::access::Access;
use crate::invariants::expected_outcome::outcome_summary;
use crate::invariants::{InvariantId, Ledger, Observation, Status};
pub use crate::scratch::Placement;
use crate::system::Outcome;
use crate::workload::{Plan, TenantSpec, Workload, model, tenant_label};

pub mod merge;
pub mod problem;
pub mod shard;

pub use merge::merge;
pub use problem::{Problem, problems};
pub use shard::{Shard, Shards};

/// The verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every invariant holds.
    Pass,
    /// Some invariant is violated.
    Fail,
    /// Nothing is violated, but some invariant could not be decided.
    Inconclusive,
    /// The run was stopped by a signal before it decided anything.
    Interrupted,
}

impl Verdict {
    /// The verdict's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
            Self::Interrupted => "interrupted",
        }
    }

    /// The process exit code: 0 pass, 1 fail or inconclusive, 130 interrupted.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Pass => 0,
            Self::Fail | Self::Inconclusive => 1,
            Self::Interrupted => 130,
        }
    }
}

/// One invariant's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantResult {
    /// The stable id.
    pub id: InvariantId,
    /// What it states.
    pub statement: String,
    /// Holds, violated or inconclusive.
    pub status: Status,
    /// Checks made.
    pub checks: u64,
    /// How many checks found a violation.
    pub violation_count: u64,
    /// The first violations, in full.
    pub violations: Vec<Observation>,
    /// How many checks could not decide.
    pub inconclusive_count: u64,
    /// The first inconclusive checks, in full.
    pub inconclusive: Vec<Observation>,
    /// How many violations the project accepts (not counted as violations).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub accepted_count: u64,
    /// The first accepted violations, each with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<Observation>,
    /// The first notes: what a reviewer should know that decides nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Observation>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Deliveries by final outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// Every delivery.
    pub total: u64,
    /// Committed.
    pub committed: u64,
    /// Replayed a committed request.
    pub replayed: u64,
    /// Failed and recorded in the DLQ.
    pub failed_recorded: u64,
    /// Failed and not recorded.
    pub failed_unrecorded: u64,
    /// Unknown (before redelivery resolved it).
    pub unknown: u64,
}

impl TaskCounts {
    /// Count the deliveries of `history`.
    pub fn add(&mut self, history: &History) {
        for d in &history.deliveries {
            self.total += 1;
            match &d.outcome {
                Outcome::Committed { .. } => self.committed += 1,
                Outcome::Replayed { .. } => self.replayed += 1,
                Outcome::FailedRecorded { .. } => self.failed_recorded += 1,
                Outcome::FailedUnrecorded { .. } => self.failed_unrecorded += 1,
                Outcome::Unknown { .. } => self.unknown += 1,
            }
        }
    }
}

/// The minimal failing case found by shrinking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counterexample {
    /// Why proptest failed the case (the first violation).
    pub reason: String,
    /// The minimal workload.
    pub workload: Workload,
    /// The violations it produced.
    pub violations: Vec<Observation>,
    /// A readable transcript: tenants, deliveries and outcomes, faults, violations.
    pub transcript: String,
}

/// Throughput of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Server start (or connect) to ready, in milliseconds.
    pub server_ready_ms: u64,
    /// The whole run, in milliseconds.
    pub elapsed_ms: u64,
    /// Time spent executing cases (workloads, probes, checks), in milliseconds.
    pub cases_ms: u64,
    /// Deliveries per second of case time.
    pub tasks_per_second: f64,
    /// Cases per second of case time.
    pub cases_per_second: f64,
    /// From the start of the run (server start included) to the first violation seen: after
    /// the static checks, or at the end of the first failing case.
    pub first_violation_ms: Option<u64>,
}

/// What the catalog says about the runtime, read once per campaign: the evidence of the
/// static checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticEvidence {
    /// The runtime role's attributes, memberships and ownership.
    pub identity: RuntimeIdentity,
    /// The effective privilege matrix beside the declared one.
    pub privileges: PrivilegeMatrix,
    /// The policy catalogue of every tenant relation.
    pub policies: Vec<PolicyEntry>,
}

/// The version of `report.json`'s format this rlsgate writes: raised when a field changes
/// meaning or goes away (new fields with defaults keep it). A report without the field predates
/// it (read as 0).
pub const FORMAT_VERSION: u32 = 1;

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The version of this format ([`FORMAT_VERSION`] when rlsgate wrote it).
    #[serde(default)]
    pub format_version: u32,
    /// The verdict.
    pub verdict: Verdict,
    /// `run` (the built-in system) or `check` (an existing database).
    pub mode: String,
    /// The backend the server ran on (`container`, `local`, `external`).
    pub backend: String,
    /// The server's version string.
    pub server_version: String,
    /// Known bugs of this server's release that break row-level security
    /// ([`crate::advisories`]): upgrade the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
    /// The proptest seed.
    pub seed: u64,
    /// Cases asked for.
    pub cases: u32,
    /// Generated cases executed (up to and including the first failing one).
    pub cases_run: u64,
    /// Cases executed while shrinking a failure.
    pub shrink_runs: u64,
    /// The broken variants switched on.
    pub variants: Vec<String>,
    /// Every invariant of docs/system.md section 6.
    pub invariants: Vec<InvariantResult>,
    /// Faults injected (landed), per kind.
    pub faults: BTreeMap<String, u64>,
    /// Per fault kind that landed: in how many of the cases it landed in each invariant was
    /// checked afterwards.
    pub fault_coverage: BTreeMap<String, BTreeMap<String, u64>>,
    /// Deliveries by outcome.
    pub tasks: TaskCounts,
    /// The minimal counterexample, when a case failed.
    pub counterexample: Option<Counterexample>,
    /// Throughput.
    pub performance: Performance,
    /// The command that reproduces this run.
    pub reproduce: String,
    /// How the database was treated (absent: rlsgate built it).
    #[serde(default, skip_serializing_if = "Placement::is_built")]
    pub placement: Placement,
    /// The checks that did not run, and why (an in-place check skips what commits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// The catalog evidence of the static checks.
    pub evidence: StaticEvidence,
    /// For a project (`rlsgate check --config`): what was discovered and seeded, and the
    /// minimal DML reproduction when the DML property failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<crate::catalog::discovery::Discovery>,
    /// The violations grouped by root cause, most severe first ([`problems`]): what a reviewer
    /// reads first. Written for whoever reads `report.json`; the renderings compute them again
    /// from `invariants`, so a report written before this field existed renders them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// The shards of the campaign's cases this report covers (absent: all of them, unsharded):
    /// one for a run with `--shard K/N`, several for a merge ([`shard`], [`merge()`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Shards>,
    /// What the probes saw per relation × command × acting context (`access.html`, the pgTAP
    /// suite); empty in a report written before it existed.
    #[serde(default, skip_serializing_if = "Access::is_empty")]
    pub access: Access,
}

impl Report {
    /// The report of a run a signal stopped before it finished: verdict
    /// [`Verdict::Interrupted`] (never a pass), no results, and `reproduce`, the command that
    /// runs it again.
    pub fn interrupted(mode: &str, reproduce: String) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            verdict: Verdict::Interrupted,
            mode: mode.into(),
            backend: String::new(),
            server_version: String::new(),
            advisories: Vec::new(),
            seed: 0,
            cases: 0,
            cases_run: 0,
            shrink_runs: 0,
            variants: Vec::new(),
            invariants: Vec::new(),
            faults: BTreeMap::new(),
            fault_coverage: BTreeMap::new(),
            tasks: TaskCounts::default(),
            counterexample: None,
            performance: Performance::default(),
            reproduce,
            placement: Placement::default(),
            skipped: Vec::new(),
            evidence: StaticEvidence::default(),
            project: None,
            problems: Vec::new(),
            shards: None,
            access: Access::default(),
        }
    }

    /// The results of `ledger`, one per invariant, and the verdict they make.
    pub fn results(ledger: &Ledger) -> (Verdict, Vec<InvariantResult>) {
        let results: Vec<InvariantResult> = ledger
            .tallies()
            .map(|(id, t)| InvariantResult {
                id,
                statement: id.statement().into(),
                status: t.status(),
                checks: t.checks,
                violation_count: t.violations,
                violations: t.violation_samples.clone(),
                inconclusive_count: t.inconclusive,
                inconclusive: t.inconclusive_samples.clone(),
                accepted_count: t.accepted,
                accepted: t.accepted_samples.clone(),
                notes: t.note_samples.clone(),
            })
            .collect();
        let verdict = if results.iter().any(|r| r.status == Status::Violated) {
            Verdict::Fail
        } else if results.iter().any(|r| r.status == Status::Inconclusive) {
            Verdict::Inconclusive
        } else {
            Verdict::Pass
        };
        (verdict, results)
    }

    /// The result of `id`.
    ///
    /// # Panics
    /// Never for a report built by rlsgate: every id has a result.
    pub fn invariant(&self, id: InvariantId) -> &InvariantResult {
        self.invariants
            .iter()
            .find(|r| r.id == id)
            .expect("every invariant has a result")
    }

    /// The ids of the violated invariants.
    pub fn violated(&self) -> Vec<InvariantId> {
        self.invariants
            .iter()
            .filter(|r| r.status == Status::Violated)
            .map(|r| r.id)
            .collect()
    }
}

/// Render the transcript of a failing case: tenants, each step's deliveries with what the
/// model expected and what happened, the faults, and the violations with their statements.
pub fn transcript(plan: &Plan, history: &History, violations: &[Observation]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "tenants:");
    for (i, (spec, id)) in plan.tenants.iter().enumerate() {
        let what = match spec {
            TenantSpec::Existing => "exists".to_string(),
            TenantSpec::Unknown => "does not exist (foreign-key violation)".into(),
            TenantSpec::Malformed { raw } => format!("malformed tenant_id {raw:?}"),
            TenantSpec::Missing => "no tenant_id in the envelope".into(),
        };
        let id = id.map(|u| format!(" {u}")).unwrap_or_default();
        let _ = writeln!(out, "  {}{id}: {what}", tenant_label(i));
    }
    let _ = writeln!(out, "concurrency: {}", plan.concurrency);
    for (s, (deliveries, fault)) in plan.steps.iter().enumerate() {
        let _ = writeln!(out, "step {s}:");
        for f in history.faults.iter().filter(|f| f.step == s) {
            let target = f
                .target
                .map(|m| format!(" on message {m}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  fault {}{target}: {}",
                f.kind,
                if f.detail.is_empty() { "-" } else { &f.detail }
            );
        }
        if fault.is_some() && !history.faults.iter().any(|f| f.step == s) {
            let _ = writeln!(out, "  fault {fault:?}: not reached");
        }
        for (p, &m) in deliveries.iter().enumerate() {
            let msg = &plan.messages[m];
            let expect = model::expect_in(plan, history.fault_fate(s), s, p);
            let outcome = history
                .deliveries
                .iter()
                .find(|d| d.step == s && d.position == p)
                .map(|d| {
                    let mut o = outcome_summary(&d.outcome);
                    if let Some(r) = &d.redelivered {
                        let _ = write!(o, ", redelivered: {}", outcome_summary(r));
                    }
                    o
                })
                .unwrap_or_else(|| "not run".into());
            let mut extras = Vec::new();
            if let Some(r) = &msg.request_id {
                extras.push(format!("request_id {r}"));
            }
            if msg.faults.fail_after_claim {
                extras.push("fails after the claim".into());
            }
            if msg.faults.dlq_write_failures > 0 {
                extras.push(format!(
                    "{} DLQ write attempts fail",
                    msg.faults.dlq_write_failures
                ));
            }
            let extras = if extras.is_empty() {
                String::new()
            } else {
                format!(" [{}]", extras.join(", "))
            };
            let _ = writeln!(
                out,
                "  message {m} ({}) tenant {} {}{extras}: expected {expect}; {outcome}",
                msg.task_id,
                plan.tenant_label_of(m),
                msg.task_name,
            );
        }
    }
    let _ = writeln!(out, "violations:");
    for v in violations {
        let _ = writeln!(out, "  - {v}");
        if let Some(s) = &v.statement {
            let _ = writeln!(out, "    statement: {}", one_line(s));
        }
    }
    out
}

/// `sql` on one line, runs of whitespace collapsed (for transcripts and reports).
pub fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}
