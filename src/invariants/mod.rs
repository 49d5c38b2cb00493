//! The invariants of docs/system.md section 6, each in its own module under its stable id.
//!
//! A check produces [`Observation`]s: one per thing it looked at, each saying whether the
//! invariant held there, was violated, or could not be decided (inconclusive). Findings are
//! data, never `Err`: an `Err` from a check means the harness itself could not look.
//!
//! Three kinds of check:
//! - **static** checks read the catalog as the oracle (the superuser) about the runtime role:
//!   [`runtime_identity`], [`least_privilege`], [`rls_coverage`];
//! - **probes** run as the runtime role over real login connections: [`runtime_lacks_ddl`],
//!   [`tenant_isolation`], [`write_check`], [`no_context_closed`], [`context_hygiene`]. A probe
//!   that ran as a role that bypasses row-level security is inconclusive, never "holds";
//! - **history** checks compare what the executor saw with what the database holds:
//!   [`dlq_completeness`], [`exactly_once`], [`atomicity`], [`rollup_consistency`],
//!   [`expected_outcome`], [`durability`].
//!
//! Nothing here starts servers or renders evidence.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::truth::Truth;

pub mod access;
pub mod atomicity;
pub mod context_hygiene;
pub mod dlq_completeness;
pub mod durability;
pub mod exactly_once;
pub mod expected_outcome;
pub mod least_privilege;
pub mod no_context_closed;
pub mod rls_coverage;
pub mod rollup_consistency;
pub mod runtime_identity;
pub mod runtime_lacks_ddl;
pub mod side_channels;
pub mod tenant_isolation;
pub mod write_check;

/// The stable id of an invariant (docs/system.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvariantId {
    /// `tenant-isolation`
    TenantIsolation,
    /// `write-check`
    WriteCheck,
    /// `no-context-closed`
    NoContextClosed,
    /// `context-hygiene`
    ContextHygiene,
    /// `runtime-identity`
    RuntimeIdentity,
    /// `least-privilege`
    LeastPrivilege,
    /// `runtime-lacks-ddl`
    RuntimeLacksDdl,
    /// `rls-coverage`
    RlsCoverage,
    /// `dlq-completeness`
    DlqCompleteness,
    /// `exactly-once`
    ExactlyOnce,
    /// `atomicity`
    Atomicity,
    /// `rollup-consistency`
    RollupConsistency,
    /// `expected-outcome`
    ExpectedOutcome,
    /// `durability`
    Durability,
    /// `side-channels`
    SideChannels,
}

impl InvariantId {
    /// Every invariant, in the order of docs/system.md section 6.
    pub const ALL: [InvariantId; 15] = [
        Self::TenantIsolation,
        Self::WriteCheck,
        Self::NoContextClosed,
        Self::ContextHygiene,
        Self::RuntimeIdentity,
        Self::LeastPrivilege,
        Self::RuntimeLacksDdl,
        Self::RlsCoverage,
        Self::DlqCompleteness,
        Self::ExactlyOnce,
        Self::Atomicity,
        Self::RollupConsistency,
        Self::ExpectedOutcome,
        Self::Durability,
        Self::SideChannels,
    ];

    /// The stable id.
    pub fn id(self) -> &'static str {
        match self {
            Self::TenantIsolation => "tenant-isolation",
            Self::WriteCheck => "write-check",
            Self::NoContextClosed => "no-context-closed",
            Self::ContextHygiene => "context-hygiene",
            Self::RuntimeIdentity => "runtime-identity",
            Self::LeastPrivilege => "least-privilege",
            Self::RuntimeLacksDdl => "runtime-lacks-ddl",
            Self::RlsCoverage => "rls-coverage",
            Self::DlqCompleteness => "dlq-completeness",
            Self::ExactlyOnce => "exactly-once",
            Self::Atomicity => "atomicity",
            Self::RollupConsistency => "rollup-consistency",
            Self::ExpectedOutcome => "expected-outcome",
            Self::Durability => "durability",
            Self::SideChannels => "side-channels",
        }
    }

    /// The invariant's statement, as docs/system.md section 6 words it.
    pub fn statement(self) -> &'static str {
        match self {
            Self::TenantIsolation => {
                "in tenant X's context, every row visible in every tenant relation belongs to X; every row X committed is visible to X"
            }
            Self::WriteCheck => {
                "as the runtime, inserting or updating a row into another tenant is rejected (42501); updating or deleting another tenant's rows affects 0 rows"
            }
            Self::NoContextClosed => {
                "with no tenant context, tenant tables show no rows and accept no writes"
            }
            Self::ContextHygiene => {
                "a pooled connection handed to the next task carries no tenant context (after success, error, rollback, cancellation)"
            }
            Self::RuntimeIdentity => {
                "every worker connection (DLQ writer included) is the runtime role; migrations ran as the admin role"
            }
            Self::LeastPrivilege => {
                "the runtime's effective privileges equal the declared matrix exactly"
            }
            Self::RuntimeLacksDdl => "as the runtime, every DDL and escalation probe fails",
            Self::RlsCoverage => {
                "every tenant table has RLS enabled and forced and policies that bind the tenant context; no permissive policy is trivially true; no readable view or materialized view bypasses RLS"
            }
            Self::DlqCompleteness => {
                "every task whose final outcome is failure has exactly one DLQ row with the right task, tenant, error_type and retry count; no success has one"
            }
            Self::ExactlyOnce => {
                "at most one audit row per (tenant, request_id, endpoint); replays and retries add nothing"
            }
            Self::Atomicity => "a failed task leaves no audit, job or rollup rows",
            Self::RollupConsistency => {
                "per (tenant, month): total_calls and total_cost_cents equal the count and sum of the tenant's audit rows in that UTC month, and model_breakdown sums to the totals"
            }
            Self::ExpectedOutcome => {
                "every task the model expects to succeed commits exactly once; every task it expects to fail fails with the expected error class"
            }
            Self::Durability => {
                "after injected crashes, kills and timeouts: every task seen to commit is there once; every failure is in the DLQ; an unknown commit resolves to exactly once"
            }
            Self::SideChannels => {
                "no error tells a tenant what another holds: no unique key of a tenant table it can write collides across tenants"
            }
        }
    }
}

impl fmt::Display for InvariantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for InvariantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|i| i.id() == s.trim())
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown invariant '{s}'; the ids are: {}",
                    Self::ALL.map(InvariantId::id).join(", ")
                ))
            })
    }
}

/// The invariants only probes as the runtime can check.
pub const PROBED: [InvariantId; 5] = [
    InvariantId::RuntimeLacksDdl,
    InvariantId::TenantIsolation,
    InvariantId::WriteCheck,
    InvariantId::NoContextClosed,
    InvariantId::ContextHygiene,
];

/// One inconclusive observation per [`PROBED`] invariant: no login for the runtime role was
/// given (`how` says how to give one), so no probe ran as it.
pub fn no_runtime_login(how: &str) -> Vec<Observation> {
    PROBED
        .into_iter()
        .map(|id| {
            Observation::inconclusive(
                id,
                Undecided::NoRuntimeLogin,
                "no-runtime-login",
                format!("no login for the runtime role was given ({how}): no probe ran as it"),
            )
        })
        .collect()
}

/// What one check saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The invariant held where the check looked.
    Holds,
    /// The invariant was violated.
    Violated,
    /// The check could not decide (for example, it ran as a role that bypasses RLS).
    Inconclusive,
    /// Something a reviewer should know that decides nothing by itself (a risk the runtime
    /// cannot reach, an expression static reading cannot judge and the probes decide): shown in
    /// the evidence, never counted as a check.
    Note,
}

impl Status {
    /// The lower-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::Violated => "violated",
            Self::Inconclusive => "inconclusive",
            Self::Note => "note",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check could not decide: what the tests and the evidence match on, never the detail
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Undecided {
    /// The probe ran as a role that bypasses row-level security (superuser, BYPASSRLS, or the
    /// owner of a relation whose RLS is not forced): whatever it saw proves nothing.
    Bypass,
    /// The statement failed for a reason of its own, not the policy or privilege under test.
    FailedOtherwise,
    /// Timing or a lost connection ended the statement before it said anything.
    Interrupted,
    /// No login for the runtime role was given, so no probe ran as it.
    NoRuntimeLogin,
    /// There was nothing to check: no tenant relation, no worker connection, no migration
    /// ledger, no tenant column.
    NothingToCheck,
    /// rlsgate could not create the rows or values the check needs.
    NotSeeded,
    /// The check commits, and an in-place check (`--in-place`) runs nothing that commits.
    SkippedInPlace,
}

/// One check of one invariant at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The invariant checked.
    pub invariant: InvariantId,
    /// What the check saw.
    pub status: Status,
    /// The probe or check that looked (`READ`, `INS`, `catalog:relforcerowsecurity`, ...).
    pub probe: String,
    /// The relation (or other object) it looked at, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// What was seen, in words; for a violation, what is wrong.
    pub detail: String,
    /// The SQLSTATE the statement ended with, when it raised one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// The statement that exposed a violation, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Why an inconclusive check could not decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undecided: Option<Undecided>,
    /// For a violation the project accepts: its written reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
}

impl Observation {
    /// An observation of `status` for `invariant` by `probe`.
    pub fn new(
        invariant: InvariantId,
        status: Status,
        probe: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            invariant,
            status,
            probe: probe.into(),
            relation: None,
            detail: detail.into(),
            sqlstate: None,
            statement: None,
            undecided: None,
            accepted: None,
        }
    }

    /// The invariant held at `probe`.
    pub fn holds(invariant: InvariantId, probe: impl Into<String>) -> Self {
        Self::new(invariant, Status::Holds, probe, "")
    }

    /// The invariant was violated at `probe`.
    pub fn violated(
        invariant: InvariantId,
        probe: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(invariant, Status::Violated, probe, detail)
    }

    /// The check at `probe` could not decide, for `why`.
    pub fn inconclusive(
        invariant: InvariantId,
        why: Undecided,
        probe: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            undecided: Some(why),
            ..Self::new(invariant, Status::Inconclusive, probe, detail)
        }
    }

    /// A note about `probe`: see [`Status::Note`].
    pub fn note(
        invariant: InvariantId,
        probe: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(invariant, Status::Note, probe, detail)
    }

    /// `holds` when `ok`, else violated with `detail`.
    pub fn expect(
        invariant: InvariantId,
        ok: bool,
        probe: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        if ok {
            Self::holds(invariant, probe)
        } else {
            Self::violated(invariant, probe, detail)
        }
    }

    /// The same observation, about `relation`.
    pub fn on(mut self, relation: impl Into<String>) -> Self {
        self.relation = Some(relation.into());
        self
    }

    /// The same observation, with the SQLSTATE seen.
    pub fn with_sqlstate(mut self, sqlstate: Option<String>) -> Self {
        self.sqlstate = sqlstate;
        self
    }

    /// The same observation, with the statement that exposed it.
    pub fn with_statement(mut self, statement: impl Into<String>) -> Self {
        self.statement = Some(statement.into());
        self
    }
}

impl fmt::Display for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} [{}]", self.invariant, self.status, self.probe)?;
        if let Some(r) = &self.relation {
            write!(f, " on {r}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(s) = &self.sqlstate {
            write!(f, " (SQLSTATE {s})")?;
        }
        Ok(())
    }
}

/// A finding a project accepts, with its reason (`[[accept]]` in rlsgate.toml): a violation of
/// `invariant` on `relation` (any, when `None`) by a probe whose name starts with `probe` (any,
/// when `None`) is shown as accepted and does not fail the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    /// The invariant.
    pub invariant: InvariantId,
    /// The relation (or function) the finding is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// The probe, or the start of its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Why it is accepted.
    pub reason: String,
}

impl Acceptance {
    fn matches(&self, o: &Observation) -> bool {
        o.invariant == self.invariant
            && self
                .relation
                .as_ref()
                .is_none_or(|r| o.relation.as_ref() == Some(r))
            && self
                .probe
                .as_ref()
                .is_none_or(|p| o.probe.starts_with(p.as_str()))
    }

    /// The entry in words, for messages.
    pub fn describe(&self) -> String {
        format!(
            "invariant = \"{}\"{}{}",
            self.invariant,
            self.relation
                .as_ref()
                .map(|r| format!(", relation = \"{r}\""))
                .unwrap_or_default(),
            self.probe
                .as_ref()
                .map(|p| format!(", probe = \"{p}\""))
                .unwrap_or_default()
        )
    }
}

/// How many findings of each status the ledger keeps in full per invariant (the rest are
/// counted).
pub const KEPT_PER_INVARIANT: usize = 20;

/// The verdict of one invariant over a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Checks made.
    pub checks: u64,
    /// Checks that found a violation.
    pub violations: u64,
    /// Checks that could not decide.
    pub inconclusive: u64,
    /// The first violations, in full.
    pub violation_samples: Vec<Observation>,
    /// The first inconclusive checks, in full.
    pub inconclusive_samples: Vec<Observation>,
    /// Violations the project accepts (counted as checks, not as violations).
    #[serde(default)]
    pub accepted: u64,
    /// The first accepted violations, in full.
    #[serde(default)]
    pub accepted_samples: Vec<Observation>,
    /// Notes (never counted as checks).
    #[serde(default)]
    pub notes: u64,
    /// The first notes, in full.
    #[serde(default)]
    pub note_samples: Vec<Observation>,
}

impl Tally {
    /// The invariant's status: violated if any check was, else inconclusive if any check was or
    /// nothing was checked at all, else holds.
    pub fn status(&self) -> Status {
        if self.violations > 0 {
            Status::Violated
        } else if self.inconclusive > 0 || self.checks == 0 {
            Status::Inconclusive
        } else {
            Status::Holds
        }
    }
}

/// Observations of a run, tallied per invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    tallies: BTreeMap<InvariantId, Tally>,
    /// (invariant, relation, probe) of every observation that decided something (held or
    /// violated), for [`Ledger::decided`].
    #[serde(skip)]
    decided: BTreeSet<(InvariantId, String, String)>,
    /// What the project accepts, and how many violations each entry matched.
    #[serde(skip)]
    acceptances: Vec<(Acceptance, u64)>,
    /// The probes' outcomes per relation × command × context ([`access`]).
    #[serde(skip)]
    access: access::AccessFold,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::scoped(InvariantId::ALL)
    }
}

impl Ledger {
    /// A ledger of `invariants` only: the others do not apply to what is checked (a project
    /// without the built-in worker has no history invariants), so the report leaves them out.
    pub fn scoped(invariants: impl IntoIterator<Item = InvariantId>) -> Self {
        Self {
            tallies: invariants
                .into_iter()
                .map(|i| (i, Tally::default()))
                .collect(),
            decided: BTreeSet::new(),
            acceptances: Vec::new(),
            access: access::AccessFold::default(),
        }
    }

    /// The same ledger, accepting the violations `acceptances` match.
    pub fn accepting(mut self, acceptances: impl IntoIterator<Item = Acceptance>) -> Self {
        self.acceptances = acceptances.into_iter().map(|a| (a, 0)).collect();
        self
    }

    /// Whether `observation` is a violation that fails the gate (one the project does not
    /// accept).
    pub fn fails(&self, observation: &Observation) -> bool {
        observation.status == Status::Violated
            && !self.acceptances.iter().any(|(a, _)| a.matches(observation))
    }

    /// The acceptances that matched no violation.
    pub fn unmatched_acceptances(&self) -> Vec<&Acceptance> {
        self.acceptances
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(a, _)| a)
            .collect()
    }

    /// Count `observation` against its invariant.
    pub fn record(&mut self, mut observation: Observation) {
        if observation.status == Status::Violated {
            let mut reason = None;
            for (a, n) in self.acceptances.iter_mut() {
                if a.matches(&observation) {
                    *n += 1;
                    reason.get_or_insert_with(|| a.reason.clone());
                }
            }
            observation.accepted = reason;
        }
        self.access.record(&observation);
        if let (Status::Holds | Status::Violated, Some(relation)) =
            (observation.status, &observation.relation)
        {
            self.decided.insert((
                observation.invariant,
                relation.clone(),
                observation.probe.clone(),
            ));
        }
        let tally = self.tallies.entry(observation.invariant).or_default();
        if observation.status == Status::Note {
            tally.notes += 1;
            if tally.note_samples.len() < KEPT_PER_INVARIANT {
                tally.note_samples.push(observation);
            }
            return;
        }
        tally.checks += 1;
        if observation.accepted.is_some() {
            tally.accepted += 1;
            if tally.accepted_samples.len() < KEPT_PER_INVARIANT {
                tally.accepted_samples.push(observation);
            }
            return;
        }
        match observation.status {
            Status::Holds => {}
            Status::Violated => {
                tally.violations += 1;
                if tally.violation_samples.len() < KEPT_PER_INVARIANT {
                    tally.violation_samples.push(observation);
                }
            }
            Status::Inconclusive => {
                tally.inconclusive += 1;
                if tally.inconclusive_samples.len() < KEPT_PER_INVARIANT {
                    tally.inconclusive_samples.push(observation);
                }
            }
            Status::Note => unreachable!("notes are kept apart above"),
        }
    }

    /// Count every observation of `observations`.
    pub fn record_all(&mut self, observations: impl IntoIterator<Item = Observation>) {
        for o in observations {
            self.record(o);
        }
    }

    /// The access matrix of the probes recorded so far, acting as `subject`'s runtime.
    pub fn access(&self, subject: &crate::subject::Subject) -> access::Access {
        self.access.access(subject)
    }

    /// The tally of `invariant`.
    pub fn tally(&self, invariant: InvariantId) -> &Tally {
        &self.tallies[&invariant]
    }

    /// Every invariant's tally, in the order of [`InvariantId::ALL`].
    pub fn tallies(&self) -> impl Iterator<Item = (InvariantId, &Tally)> {
        InvariantId::ALL
            .into_iter()
            .filter_map(|i| self.tallies.get(&i).map(|t| (i, t)))
    }

    /// Whether some probe whose name starts with `probe` decided `invariant` (held or was
    /// violated) on `relation`.
    pub fn decided(&self, invariant: InvariantId, relation: &str, probe: &str) -> bool {
        self.decided
            .range((invariant, relation.to_string(), String::new())..)
            .take_while(|(i, r, _)| *i == invariant && r == relation)
            .any(|(_, _, p)| p.starts_with(probe))
    }

    /// The invariants violated so far.
    pub fn violated(&self) -> Vec<InvariantId> {
        self.tallies()
            .filter(|(_, t)| t.violations > 0)
            .map(|(i, _)| i)
            .collect()
    }
}

/// One executed case, as the history checks see it: the plan, what the executor saw, and what
/// the database holds.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    /// The plan that ran.
    pub plan: &'a crate::workload::Plan,
    /// What the executor saw.
    pub history: &'a crate::history::History,
    /// What the database holds.
    pub truth: &'a Truth,
}

impl Case<'_> {
    /// `message 3 (tenant A, app.tasks.llm.route)`, for findings.
    pub fn describe(&self, m: usize) -> String {
        let msg = &self.plan.messages[m];
        format!(
            "message {m} (tenant {}, {})",
            self.plan.tenant_label_of(m),
            msg.task_name
        )
    }

    /// The label of tenant `id` in this case, or its UUID when it is not one of the case's.
    pub fn tenant_label(&self, id: uuid::Uuid) -> String {
        self.plan
            .tenants
            .iter()
            .position(|(_, t)| *t == Some(id))
            .map_or_else(|| id.to_string(), crate::workload::tenant_label)
    }

    /// Every history check of this case.
    pub fn check_history(&self) -> Vec<Observation> {
        let mut all = Vec::new();
        all.extend(dlq_completeness::check(self));
        all.extend(exactly_once::check(self));
        all.extend(atomicity::check(self));
        all.extend(rollup_consistency::check(self));
        all.extend(expected_outcome::check(self));
        all.extend(durability::check(self));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_cover_section_6() {
        assert_eq!(InvariantId::ALL.len(), 15);
        for i in InvariantId::ALL {
            assert_eq!(i.id().parse::<InvariantId>().unwrap(), i);
            assert_eq!(
                serde_json::to_value(i).unwrap(),
                serde_json::json!(i.id()),
                "serde uses the stable id"
            );
        }
        assert!("nope".parse::<InvariantId>().is_err());
    }

    #[test]
    fn an_accepted_violation_is_counted_apart_and_an_unmatched_acceptance_is_reported() {
        let accept = |relation: &str| Acceptance {
            invariant: InvariantId::SideChannels,
            relation: Some(relation.into()),
            probe: Some("UNIQUE".into()),
            reason: "ids are public".into(),
        };
        let mut ledger =
            Ledger::default().accepting([accept("public.posts"), accept("public.none")]);
        let found =
            Observation::violated(InvariantId::SideChannels, "UNIQUE:posts_pkey", "collides")
                .on("public.posts");
        assert!(!ledger.fails(&found));
        ledger.record(found);
        let other =
            Observation::violated(InvariantId::SideChannels, "UNIQUE:users_email", "collides")
                .on("public.users");
        assert!(ledger.fails(&other));
        let tally = ledger.tally(InvariantId::SideChannels);
        assert_eq!((tally.checks, tally.violations, tally.accepted), (1, 0, 1));
        assert_eq!(tally.status(), Status::Holds);
        assert_eq!(
            tally.accepted_samples[0].accepted.as_deref(),
            Some("ids are public")
        );
        let unmatched: Vec<_> = ledger
            .unmatched_acceptances()
            .into_iter()
            .map(Acceptance::describe)
            .collect();
        assert_eq!(
            unmatched,
            ["invariant = \"side-channels\", relation = \"public.none\", probe = \"UNIQUE\""]
        );
    }

    #[test]
    fn a_tally_is_violated_over_inconclusive_over_holds_and_nothing_checked_is_inconclusive() {
        let mut ledger = Ledger::default();
        let id = InvariantId::WriteCheck;
        assert_eq!(ledger.tally(id).status(), Status::Inconclusive);
        ledger.record(Observation::holds(id, "INS"));
        assert_eq!(ledger.tally(id).status(), Status::Holds);
        ledger.record(Observation::inconclusive(
            id,
            Undecided::Bypass,
            "INS",
            "bypasses RLS",
        ));
        assert_eq!(ledger.tally(id).status(), Status::Inconclusive);
        ledger.record(Observation::violated(id, "INS", "accepted"));
        assert_eq!(ledger.tally(id).status(), Status::Violated);
        assert_eq!(ledger.tally(id).checks, 3);
        assert_eq!(ledger.violated(), vec![id]);
    }
}

#[cfg(test)]
mod history_checks {
    //! Both polarities of every history check on hand-made histories: no database needed.
    use uuid::Uuid;

    use super::*;
    use crate::history::{DeliveryRecord, History};
    use crate::system::{ErrorClass, Failure, Outcome, TaskName};
    use crate::truth::{CallRow, DlqRow, JobRow, RollupRow};
    use crate::workload::{MessageSpec, Plan, Step, TenantSpec, Workload};

    fn plan() -> Plan {
        let msg = |tenant, task| MessageSpec {
            tenant,
            task,
            correlation: 0,
            request: None,
            fail_after_claim: false,
            dlq_write_failures: 0,
        };
        Workload {
            tenants: vec![
                TenantSpec::Existing,
                TenantSpec::Existing,
                TenantSpec::Malformed { raw: "x".into() },
            ],
            messages: vec![msg(0, TaskName::Investigation), msg(2, TaskName::Route)],
            steps: vec![Step {
                deliveries: vec![0, 1, 0],
                fault: None,
            }],
            concurrency: 2,
        }
        .plan(Uuid::from_u128(1))
    }

    const CALL: Uuid = Uuid::from_u128(10);
    const JOB: Uuid = Uuid::from_u128(11);

    fn history(plan: &Plan) -> History {
        let failed = Outcome::FailedRecorded {
            dlq_id: plan.messages[1].dlq_id(),
            failure: Failure::new(ErrorClass::Validation, "validate", "bad tenant"),
            retries: 0,
        };
        let outcomes = [
            Outcome::Committed {
                call_id: CALL,
                job_id: Some(JOB),
                attempts: 1,
            },
            failed,
            Outcome::Replayed { call_id: CALL },
        ];
        History {
            deliveries: outcomes
                .into_iter()
                .enumerate()
                .map(|(position, outcome)| DeliveryRecord {
                    step: 0,
                    position,
                    message: plan.steps[0].0[position],
                    outcome,
                    redelivered: None,
                })
                .collect(),
            ..History::default()
        }
    }

    fn truth(plan: &Plan) -> Truth {
        let a = plan.tenants[0].1.unwrap();
        let (_, request_id, task) = plan.claim_key(0).unwrap();
        Truth {
            calls: vec![CallRow {
                id: CALL,
                tenant: a,
                request_id,
                endpoint: task.as_str().into(),
                month: "2026-11-01".into(),
                cost_cents: 0,
            }],
            jobs: vec![JobRow {
                table: "investigations".into(),
                id: JOB,
                tenant: a,
            }],
            rollups: vec![RollupRow {
                tenant: a,
                month: "2026-11-01".into(),
                total_calls: 1,
                total_cost_cents: 0,
                breakdown_calls: 1,
                breakdown_cost_cents: 0,
            }],
            dlq: vec![DlqRow {
                id: plan.messages[1].dlq_id(),
                task_id: plan.messages[1].task_id.clone(),
                task_name: TaskName::Route.as_str().into(),
                tenant: None,
                error_type: "validation_error".into(),
                retry_count: 0,
            }],
        }
    }

    fn violated(plan: &Plan, history: &History, truth: &Truth) -> Vec<InvariantId> {
        let case = Case {
            plan,
            history,
            truth,
        };
        let mut ids: Vec<InvariantId> = case
            .check_history()
            .into_iter()
            .filter(|o| o.status == Status::Violated)
            .map(|o| o.invariant)
            .collect();
        ids.dedup();
        ids
    }

    #[test]
    fn a_consistent_history_holds_every_history_invariant() {
        let p = plan();
        assert_eq!(violated(&p, &history(&p), &truth(&p)), vec![]);
    }

    #[test]
    fn a_recorded_failure_without_its_dlq_row_violates_dlq_completeness() {
        let p = plan();
        let mut t = truth(&p);
        t.dlq.clear();
        assert!(violated(&p, &history(&p), &t).contains(&InvariantId::DlqCompleteness));
    }

    #[test]
    fn a_dlq_row_with_the_wrong_class_violates_dlq_completeness() {
        let p = plan();
        let mut t = truth(&p);
        t.dlq[0].error_type = "database_error".into();
        assert_eq!(
            violated(&p, &history(&p), &t),
            vec![InvariantId::DlqCompleteness]
        );
    }

    #[test]
    fn a_duplicate_delivery_that_commits_again_violates_exactly_once() {
        let p = plan();
        let mut h = history(&p);
        h.deliveries[2].outcome = Outcome::Committed {
            call_id: Uuid::from_u128(12),
            job_id: None,
            attempts: 1,
        };
        let ids = violated(&p, &h, &truth(&p));
        assert!(ids.contains(&InvariantId::ExactlyOnce), "{ids:?}");
        assert!(ids.contains(&InvariantId::ExpectedOutcome), "{ids:?}");
    }

    #[test]
    fn an_audit_row_of_no_committed_task_violates_atomicity() {
        let p = plan();
        let mut t = truth(&p);
        let mut orphan = t.calls[0].clone();
        orphan.id = Uuid::from_u128(13);
        orphan.request_id = "left-by-a-failure".into();
        t.calls.push(orphan);
        let ids = violated(&p, &history(&p), &t);
        assert!(ids.contains(&InvariantId::Atomicity), "{ids:?}");
        assert!(ids.contains(&InvariantId::RollupConsistency), "{ids:?}");
    }

    #[test]
    fn a_lost_increment_violates_rollup_consistency() {
        let p = plan();
        let mut t = truth(&p);
        t.rollups[0].total_calls = 0;
        t.rollups[0].breakdown_calls = 0;
        assert_eq!(
            violated(&p, &history(&p), &t),
            vec![InvariantId::RollupConsistency]
        );
    }

    #[test]
    fn a_valid_task_that_fails_violates_expected_outcome() {
        let p = plan();
        let mut h = history(&p);
        h.deliveries[0].outcome = Outcome::FailedRecorded {
            dlq_id: p.messages[0].dlq_id(),
            failure: Failure::new(ErrorClass::Database, "claim", "permission denied"),
            retries: 3,
        };
        assert!(violated(&p, &h, &truth(&p)).contains(&InvariantId::ExpectedOutcome));
    }

    #[test]
    fn an_acknowledged_commit_missing_after_a_crash_violates_durability() {
        let p = plan();
        let mut t = truth(&p);
        t.calls.clear();
        t.jobs.clear();
        t.rollups.clear();
        assert!(violated(&p, &history(&p), &t).contains(&InvariantId::Durability));
    }

    /// A lost-commit fault of step 0 that landed on the delivery at `position`.
    fn lost_commit(
        kind: crate::workload::FaultKind,
        position: usize,
    ) -> crate::history::FaultRecord {
        crate::history::FaultRecord {
            step: 0,
            kind,
            target: Some(0),
            position: Some(position),
            armed: true,
            delivered: true,
            detail: String::new(),
        }
    }

    // The COMMIT never reached the server, another delivery of the request committed it, and
    // the unknown's redelivery replayed that row: one commit, not two.
    #[test]
    fn an_unknown_that_never_committed_and_replays_anothers_row_is_not_a_second_commit() {
        let p = plan();
        let mut h = history(&p);
        h.faults.push(lost_commit(
            crate::workload::FaultKind::CommitRequestLost,
            0,
        ));
        h.deliveries[0].outcome = Outcome::Unknown {
            detail: "connection lost during COMMIT".into(),
        };
        h.deliveries[0].redelivered = Some(Outcome::Replayed { call_id: CALL });
        h.deliveries[2].outcome = Outcome::Committed {
            call_id: CALL,
            job_id: Some(JOB),
            attempts: 1,
        };
        assert_eq!(violated(&p, &h, &truth(&p)), vec![]);
        // Without the relay's word the same history still holds: the replayed row is the one
        // another delivery committed.
        h.faults.clear();
        assert_eq!(violated(&p, &h, &truth(&p)), vec![]);
    }

    // The server committed, the reply was lost, and the redelivery committed again.
    #[test]
    fn a_redelivery_that_commits_a_request_the_server_had_committed_is_caught() {
        let p = plan();
        let mut h = history(&p);
        h.faults
            .push(lost_commit(crate::workload::FaultKind::CommitReplyLost, 0));
        h.deliveries[0].outcome = Outcome::Unknown {
            detail: "connection lost during COMMIT".into(),
        };
        let again = Uuid::from_u128(12);
        h.deliveries[0].redelivered = Some(Outcome::Committed {
            call_id: again,
            job_id: None,
            attempts: 1,
        });
        let mut t = truth(&p);
        let mut second = t.calls[0].clone();
        second.id = again;
        t.calls.push(second);
        t.rollups[0].total_calls = 2;
        t.rollups[0].breakdown_calls = 2;
        let ids = violated(&p, &h, &t);
        for id in [
            InvariantId::ExactlyOnce,
            InvariantId::ExpectedOutcome,
            InvariantId::Durability,
        ] {
            assert!(ids.contains(&id), "{id}: {ids:?}");
        }
    }

    // The server committed, the reply was lost, and the worker wrote a DLQ row instead of
    // reporting unknown: the committed rows belong to a task the history says failed.
    #[test]
    fn a_lost_reply_taken_for_a_failure_is_caught() {
        let p = plan();
        let mut h = history(&p);
        h.faults
            .push(lost_commit(crate::workload::FaultKind::CommitReplyLost, 0));
        h.deliveries[0].outcome = Outcome::FailedRecorded {
            dlq_id: p.messages[0].dlq_id(),
            failure: Failure::new(ErrorClass::Connection, "commit", "connection closed"),
            retries: 0,
        };
        let mut t = truth(&p);
        t.dlq.push(DlqRow {
            id: p.messages[0].dlq_id(),
            task_id: p.messages[0].task_id.clone(),
            task_name: TaskName::Investigation.as_str().into(),
            tenant: p.tenants[0].1,
            error_type: "connection_error".into(),
            retry_count: 0,
        });
        let ids = violated(&p, &h, &t);
        assert!(ids.contains(&InvariantId::Atomicity), "{ids:?}");
        assert!(ids.contains(&InvariantId::ExpectedOutcome), "{ids:?}");
    }

    #[test]
    fn an_unknown_outcome_must_resolve_to_exactly_one_row() {
        let p = plan();
        let mut h = history(&p);
        h.deliveries[0].outcome = Outcome::Unknown {
            detail: "connection lost during COMMIT".into(),
        };
        h.deliveries[0].redelivered = Some(Outcome::Replayed { call_id: CALL });
        h.deliveries[2].outcome = Outcome::Replayed { call_id: CALL };
        // Resolved: the unknown delivery committed after all, and its redelivery replayed.
        assert_eq!(violated(&p, &h, &truth(&p)), vec![]);
        let mut t = truth(&p);
        t.calls.clear();
        assert!(violated(&p, &h, &t).contains(&InvariantId::Durability));
    }
}
