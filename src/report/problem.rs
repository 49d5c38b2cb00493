//! Problems: a report's violations grouped by root cause, so that one flaw reads as one finding.
//!
//! One flaw in a schema is seen by many probes: a policy that lets everything through on
//! `public.comments` shows up as a leaked row (READ), writes into another tenant (INS, XDML),
//! rows without a context (NOCTX), a pooled connection that sees rows (POOL-read) and two
//! catalog facts (rls-coverage). [`problems`] turns those into one [`Problem`] about
//! `public.comments`, proven by the leaked row, with its statement, and the list of what else
//! confirms it. It reads nothing but the report, so the evidence rendered from a `report.json`
//! written before problems existed shows them too.
//!
//! # The grouping rule
//!
//! Every violation the report keeps in full (never an accepted one, a note or an inconclusive
//! check) belongs to exactly one problem, keyed by **what is wrong** and **where**:
//!
//! | what is wrong ([`Cause`]) | its findings | where ([`Problem::object`]) |
//! |---|---|---|
//! | `rows`: the row policy of a relation, or what a function returns | tenant-isolation, write-check (XREF aside), no-context-closed, rls-coverage, context-hygiene `POOL-read` (below), runtime-lacks-ddl `BYPASS:*` | the relation or function |
//! | `key`: one unique or foreign key | side-channels `UNIQUE:<key>`, write-check `XREF:<key>` | the relation, and the key |
//! | `context`: pooled connections carry a tenant context | context-hygiene `POOL-setting` | the pooled connections |
//! | `rights`: what the runtime may do | least-privilege, runtime-identity, runtime-lacks-ddl (`DDL:*`, `ESCALATION:*`), dlq-completeness `catalog:*` and `DLQ-WRITE` | the relation, function or sequence; `schema X`; `the database`; `role R`; the worker's connections; the migrations |
//! | `owned`: an object the runtime owns (below) | its `rows` and `rights` findings together | the relation, function or schema |
//! | `worker`: one history invariant of the built-in worker | dlq-completeness (history), exactly-once, atomicity, rollup-consistency, expected-outcome, durability | the worker, one problem per invariant |
//!
//! Objects are named the same whichever check saw them: least-privilege's `public` (a schema
//! privilege), runtime-identity's `schema public` and runtime-lacks-ddl's `CREATE TABLE` in
//! `public` are all `schema public`; a membership, `SET ROLE`, `CREATE ROLE` or an attribute of
//! the runtime is `role <runtime>`; database privileges, `CREATE SCHEMA` and temporary tables
//! are `the database`.
//!
//! Three rules put a consequence with its cause:
//! - an object the runtime owns (it, or a role whose privileges it has: `owns` of the runtime
//!   identity) has one problem, `owned`, for its `rows` and `rights` findings alike: ownership
//!   explains both, since an owner bypasses policies that are not forced and may alter, drop,
//!   truncate and grant it;
//! - a `BYPASS` read (row_security off) belongs to the runtime role's `rights` when the role is
//!   SUPERUSER or BYPASSRLS;
//! - a `POOL-read` (a task that set no context saw rows on a pooled connection) belongs to the
//!   relation's rows when other findings show them (it shows rows without a context), else to
//!   the pool's `context` when a `POOL-setting` was violated, else to the relation's rows alone.
//!
//! Problems group the violations `report.json` keeps in full (the first
//! [`KEPT_PER_INVARIANT`](crate::invariants::KEPT_PER_INVARIANT) of each invariant); the counts
//! of each invariant say when there were more.
//!
//! # Severity
//!
//! Each finding has an [`Effect`], the harm it proves; the order of [`Effect`] is the order of
//! severity (a leaked row first, a catalog fact last). A problem's effect is the worst of its
//! findings, and problems are ordered by it, then by object. Its proof is its finding of that
//! effect that carries a statement (a single probe before a DML sequence), first seen; a probe
//! that saw rows beats a catalog fact.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalog::privileges::{ObjectKind, PrivilegeEntry};
use crate::invariants::{InvariantId, Observation};
use crate::report::{Report, one_line};

/// The harm a finding proves, most severe first (the derived order is the severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// A tenant saw another tenant's rows: READ, DML-READ, READ-FN, CALL returning another's
    /// data.
    ReadsOtherTenants,
    /// A write reached another tenant's rows: INS, MOVE, XDML, DML-*-OTHER, DML-MOVE, XREF, a
    /// CALL that changed another's rows.
    WritesOtherTenants,
    /// With no tenant context, tenant rows were read or written: NOCTX.
    OpenWithoutContext,
    /// An error told a tenant what another holds: UNIQUE.
    SideChannel,
    /// A tenant context outlived its task or call: POOL, CALL-CONTEXT.
    CarriedContext,
    /// The runtime reads past the row policies: BYPASS (row_security off).
    Unfiltered,
    /// A tenant could not see or write its own rows: OWN-ROWS, DML-*-OWN.
    OwnRowsLost,
    /// Work or its failure record was lost, repeated or wrong: the worker's history
    /// invariants, DLQ-WRITE.
    LostWork,
    /// The runtime changed the schema or escalated (rolled back): runtime-lacks-ddl.
    SchemaChange,
    /// The worker does not connect as the runtime, or the schema is not the admin role's:
    /// runtime-identity.
    WrongIdentity,
    /// The runtime's privileges differ from the declared ones: least-privilege, the DLQ
    /// table's grants.
    PrivilegeMismatch,
    /// The catalog says the policies do not keep tenants apart: rls-coverage.
    PolicyGap,
}

impl Effect {
    /// The effect's name in `report.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadsOtherTenants => "reads-other-tenants",
            Self::WritesOtherTenants => "writes-other-tenants",
            Self::OpenWithoutContext => "open-without-context",
            Self::SideChannel => "side-channel",
            Self::CarriedContext => "carried-context",
            Self::Unfiltered => "unfiltered",
            Self::OwnRowsLost => "own-rows-lost",
            Self::LostWork => "lost-work",
            Self::SchemaChange => "schema-change",
            Self::WrongIdentity => "wrong-identity",
            Self::PrivilegeMismatch => "privilege-mismatch",
            Self::PolicyGap => "policy-gap",
        }
    }

    /// The effect `observation` proves (see the table in the module docs).
    pub fn of(observation: &Observation) -> Self {
        use InvariantId as I;
        let probe = observation.probe.as_str();
        match observation.invariant {
            I::TenantIsolation => match probe {
                "OWN-ROWS" | "DML-UPDATE-OWN" | "DML-DELETE-OWN" | "DML-INSERT" => {
                    Self::OwnRowsLost
                }
                "CALL-CONTEXT" => Self::CarriedContext,
                _ => Self::ReadsOtherTenants,
            },
            I::WriteCheck => Self::WritesOtherTenants,
            I::NoContextClosed => Self::OpenWithoutContext,
            I::ContextHygiene => Self::CarriedContext,
            I::SideChannels => Self::SideChannel,
            I::RuntimeLacksDdl if probe.starts_with("BYPASS") => Self::Unfiltered,
            I::RuntimeLacksDdl => Self::SchemaChange,
            I::RuntimeIdentity => Self::WrongIdentity,
            I::LeastPrivilege => Self::PrivilegeMismatch,
            I::RlsCoverage => Self::PolicyGap,
            I::DlqCompleteness if probe.starts_with("catalog:") => Self::PrivilegeMismatch,
            I::DlqCompleteness
            | I::ExactlyOnce
            | I::Atomicity
            | I::RollupConsistency
            | I::ExpectedOutcome
            | I::Durability => Self::LostWork,
        }
    }
}

/// What is wrong: the first half of a problem's key (the object is the second).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The row policy of a relation (or what a function returns).
    Rows,
    /// One unique or foreign key of a relation, by name.
    Key(String),
    /// Pooled connections carry a tenant context into the next task.
    Context,
    /// What the runtime may do: privileges, ownership, attributes, DDL.
    Rights,
    /// An object the runtime owns (or a role whose privileges it has owns): its rows and its
    /// rights are one problem, since an owner bypasses policies that are not forced and may
    /// alter, drop, truncate and grant it.
    Owned,
    /// One history invariant of the built-in worker.
    Worker(InvariantId),
}

impl Cause {
    /// The cause of `observation`, `POOL-read` aside (see [`problems`]).
    fn of(observation: &Observation) -> Self {
        use InvariantId as I;
        let probe = observation.probe.as_str();
        let key = || Self::Key(probe.split_once(':').map_or(probe, |(_, k)| k).to_string());
        match observation.invariant {
            I::SideChannels => key(),
            I::WriteCheck if probe.starts_with("XREF") => key(),
            I::ContextHygiene if observation.relation.is_none() => Self::Context,
            I::TenantIsolation
            | I::WriteCheck
            | I::NoContextClosed
            | I::ContextHygiene
            | I::RlsCoverage => Self::Rows,
            I::RuntimeLacksDdl if probe.starts_with("BYPASS") => Self::Rows,
            I::RuntimeLacksDdl | I::RuntimeIdentity | I::LeastPrivilege => Self::Rights,
            I::DlqCompleteness if probe.starts_with("catalog:") || probe == "DLQ-WRITE" => {
                Self::Rights
            }
            id => Self::Worker(id),
        }
    }

    fn slug(&self) -> String {
        match self {
            Self::Rows => "rows".into(),
            Self::Key(k) => format!("key {k}"),
            Self::Context => "context".into(),
            Self::Rights => "rights".into(),
            Self::Owned => "owned".into(),
            Self::Worker(id) => id.id().into(),
        }
    }
}

/// How to see a problem again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reproduction {
    /// The proof's `statement`, run as the runtime role (for the DML property, the minimal
    /// sequence of statements).
    Statement,
    /// The campaign's minimal counterexample (`counterexample` in report.json), replayed by
    /// `reproduce`.
    Counterexample,
    /// A catalog fact: the static sections of the evidence show it.
    Catalog,
    /// Nothing but the run: the command in `reproduce`.
    Rerun,
}

/// One root cause and every violation that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A stable id: what is wrong and where (`rows public.comments`, `rights schema public`,
    /// `exactly-once the worker`).
    pub id: String,
    /// What is wrong.
    pub cause: Cause,
    /// The relation, function, schema, role or other object it is about.
    pub object: String,
    /// The worst effect of its findings: the problem's severity.
    pub effect: Effect,
    /// The problem in one line, naming the object and the worst effect.
    pub summary: String,
    /// What the catalog says is wrong: the catalog facts among the findings when the proof is
    /// not one, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<String>,
    /// The finding that proves most.
    pub proof: Observation,
    /// How to see it again.
    pub reproduction: Reproduction,
    /// The other findings that show the same problem: per invariant, its probes, each once
    /// (`write-check [INS, XDML-UPDATE]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmed_by: Vec<String>,
    /// Whether the DML property's minimal sequence (`project.reproduction`) shows it too: SQL
    /// to replay as it is, when the proof's statement is a single probe.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dml_sequence: bool,
    /// How many violations (of those the report keeps in full) the problem groups.
    pub findings: usize,
}

/// One violation, with the effect it proves.
struct Finding<'r> {
    observation: &'r Observation,
    effect: Effect,
    /// Order of appearance in the report: invariants in their order, then samples.
    seen: usize,
}

/// Whether some invariant has more violations than `report.json` keeps in full, so the problems
/// group only the first of them.
pub fn partial(report: &Report) -> bool {
    report
        .invariants
        .iter()
        .any(|r| r.violation_count > r.violations.len() as u64)
}

/// The problems of `report`, most severe first: its violations grouped by root cause (the
/// module docs give the rule). Accepted findings, notes and inconclusive checks are never
/// problems; a report without violations has none.
pub fn problems(report: &Report) -> Vec<Problem> {
    let identity = &report.evidence.identity;
    let runtime = identity.role.as_str();
    let violations: Vec<&Observation> = report
        .invariants
        .iter()
        .flat_map(|r| &r.violations)
        .filter(|o| o.accepted.is_none())
        .collect();
    // What the runtime owns (or a role whose privileges it has owns), named as objects are.
    let owned: BTreeSet<String> = identity
        .owns
        .iter()
        .filter_map(|o| o.split_once(' '))
        .map(|(kind, name)| match kind {
            "schema" => format!("schema {name}"),
            _ => name.to_string(),
        })
        .collect();
    let bypasses_rls = identity
        .attributes
        .iter()
        .any(|(name, has)| *has && matches!(name.as_str(), "SUPERUSER" | "BYPASSRLS"));
    let keyed: Vec<(Cause, String)> = violations
        .iter()
        .map(|o| {
            let object = object(o, runtime);
            match Cause::of(o) {
                Cause::Rows if bypasses_rls && is_bypass(o) => (Cause::Rights, role(runtime)),
                Cause::Rows | Cause::Rights if owned.contains(&object) => (Cause::Owned, object),
                cause => (cause, object),
            }
        })
        .collect();
    let pool_carried = keyed.iter().any(|(cause, _)| *cause == Cause::Context);
    // Relations whose rows other findings than POOL-read show.
    let rows_shown: BTreeSet<&str> = violations
        .iter()
        .zip(&keyed)
        .filter(|(o, (cause, _))| matches!(cause, Cause::Rows | Cause::Owned) && !is_pool_read(o))
        .map(|(_, (_, object))| object.as_str())
        .collect();
    let mut groups: BTreeMap<(Cause, String), Vec<Finding<'_>>> = BTreeMap::new();
    for (seen, (o, (cause, object))) in violations.iter().zip(&keyed).enumerate() {
        let key = if is_pool_read(o) && pool_carried && !rows_shown.contains(object.as_str()) {
            (Cause::Context, POOL.to_string())
        } else {
            (cause.clone(), object.clone())
        };
        groups.entry(key).or_default().push(Finding {
            observation: o,
            effect: Effect::of(o),
            seen,
        });
    }
    let mut out: Vec<Problem> = groups
        .into_iter()
        .map(|((cause, object), findings)| problem(report, cause, object, findings))
        .collect();
    out.sort_by(|a, b| (a.effect, &a.object, &a.cause).cmp(&(b.effect, &b.object, &b.cause)));
    out
}

/// Whether `o` read a relation with row_security off (BYPASS).
fn is_bypass(o: &Observation) -> bool {
    o.invariant == InvariantId::RuntimeLacksDdl && o.probe.starts_with("BYPASS")
}

/// `role <name>`, or the runtime role when the report does not name it.
fn role(name: &str) -> String {
    if name.is_empty() {
        "the runtime role".to_string()
    } else {
        format!("role {name}")
    }
}

/// The object of the pooled connections.
const POOL: &str = "the pooled connections";

fn is_pool_read(o: &Observation) -> bool {
    o.invariant == InvariantId::ContextHygiene && o.relation.is_some()
}

/// What `o` is about, named the same whichever check saw it (see the module docs).
fn object(o: &Observation, runtime: &str) -> String {
    use InvariantId as I;
    let schema = |name: &str| format!("schema {name}");
    let probe = o.probe.as_str();
    let relation = o.relation.as_deref();
    if let Cause::Worker(_) = Cause::of(o) {
        return "the worker".into();
    }
    match (o.invariant, probe, relation) {
        (I::ContextHygiene, _, None) => POOL.into(),
        (I::LeastPrivilege, "catalog:has_schema_privilege" | "catalog:pg_default_acl", Some(s)) => {
            schema(s)
        }
        (I::LeastPrivilege, "catalog:has_database_privilege" | "catalog:pg_default_acl", _) => {
            DATABASE.into()
        }
        (I::LeastPrivilege, "catalog:pg_has_role", _) => role(runtime),
        (I::LeastPrivilege, "catalog:ownership", Some(name)) if !name.contains('.') => schema(name),
        (I::RuntimeLacksDdl, "DDL:CREATE TABLE" | "DDL:CREATE FUNCTION", Some(s)) => schema(s),
        (I::RuntimeLacksDdl, "DDL:CREATE TEMP TABLE" | "DDL:CREATE SCHEMA", _) => DATABASE.into(),
        (I::RuntimeLacksDdl, "DDL:CREATE ROLE" | "ESCALATION:SET ROLE", _) => role(runtime),
        (I::RuntimeLacksDdl, "ESCALATION:ALTER ROLE BYPASSRLS", _) => role(runtime),
        (I::RuntimeIdentity, "subject:roles", _) => role(runtime),
        (I::RuntimeIdentity, "catalog:rlsgate_migrations.applied_by", _) => "the migrations".into(),
        (I::RuntimeIdentity, _, Some(r)) if r.starts_with("connection ") => {
            "the worker's connections".into()
        }
        (I::RuntimeIdentity | I::LeastPrivilege, p, Some(name))
            if p.starts_with("catalog:pg_roles") =>
        {
            role(name)
        }
        (_, _, Some(r)) => r.to_string(),
        (_, _, None) => DATABASE.into(),
    }
}

/// The object of database-level facts.
const DATABASE: &str = "the database";

fn problem(
    report: &Report,
    cause: Cause,
    object: String,
    mut findings: Vec<Finding<'_>>,
) -> Problem {
    // Worst effect first; within it, a finding with a statement, a single probe before a DML
    // sequence, then the first seen.
    findings.sort_by_key(|f| {
        (
            f.effect,
            f.observation.statement.is_none(),
            f.observation.probe.starts_with("DML-"),
            f.seen,
        )
    });
    let proof = findings[0].observation;
    let effect = findings[0].effect;
    let summary = format!(
        "{object}: {}",
        phrase(report, &cause, &object, effect, &findings)
    );
    // What the catalog says about the policies explains most, then who owns what, then the
    // exact privileges.
    let mut catalog: Vec<&Finding<'_>> = findings
        .iter()
        .filter(|f| f.observation.probe.starts_with("catalog:"))
        .collect();
    catalog.sort_by_key(|f| match f.effect {
        Effect::PolicyGap => 0,
        Effect::WrongIdentity => 1,
        _ => 2,
    });
    let mut why: Vec<String> = Vec::new();
    if !proof.probe.starts_with("catalog:") {
        for f in catalog {
            let detail = one_line(&f.observation.detail);
            if !why.contains(&detail) {
                why.push(detail);
            }
        }
    }
    let in_counterexample = report.counterexample.as_ref().is_some_and(|c| {
        c.violations
            .iter()
            .any(|v| v.invariant == proof.invariant && v.probe == proof.probe)
    });
    let reproduction = match &proof.statement {
        Some(_) => Reproduction::Statement,
        None if in_counterexample => Reproduction::Counterexample,
        None if proof.probe.starts_with("catalog:") || proof.probe.starts_with("subject:") => {
            Reproduction::Catalog
        }
        None => Reproduction::Rerun,
    };
    // The other probes, each once, under their invariant, in the order of the findings.
    let mut others: Vec<(InvariantId, Vec<&str>)> = Vec::new();
    for o in findings.iter().map(|f| f.observation) {
        if (o.invariant, &o.probe) == (proof.invariant, &proof.probe) {
            continue;
        }
        match others.iter_mut().find(|(id, _)| *id == o.invariant) {
            Some((_, probes)) if probes.contains(&o.probe.as_str()) => {}
            Some((_, probes)) => probes.push(&o.probe),
            None => others.push((o.invariant, vec![&o.probe])),
        }
    }
    let confirmed_by = others
        .into_iter()
        .map(|(id, probes)| format!("{id} [{}]", probes.join(", ")))
        .collect();
    Problem {
        id: format!("{} {object}", cause.slug()),
        cause,
        object,
        effect,
        summary,
        why,
        proof: proof.clone(),
        reproduction,
        confirmed_by,
        dml_sequence: !proof.probe.starts_with("DML-")
            && findings.iter().any(|f| {
                f.observation.probe.starts_with("DML-") && f.observation.statement.is_some()
            }),
        findings: findings.len(),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// What the problem does, in words: the worst effect, with what its findings prove.
fn phrase(
    report: &Report,
    cause: &Cause,
    object: &str,
    effect: Effect,
    findings: &[Finding<'_>],
) -> String {
    match cause {
        Cause::Key(key) if effect == Effect::SideChannel => format!(
            "unique key {key} is shared by every tenant: a collision tells one tenant what another holds"
        ),
        Cause::Key(key) => format!(
            "through foreign key {key}, a tenant attaches its rows to another tenant's (the key does not carry the tenant)"
        ),
        Cause::Worker(id) => format!("{} ({id})", worker_phrase(*id)),
        Cause::Context => {
            "a pooled connection carries a tenant's context into the next task".into()
        }
        Cause::Owned => match effect {
            Effect::WrongIdentity | Effect::PrivilegeMismatch | Effect::PolicyGap => {
                match policy_gap(findings) {
                    gap if gap.is_empty() => "owned by the runtime".into(),
                    gap => format!("owned by the runtime; {gap}"),
                }
            }
            _ => {
                let what = phrase(report, &Cause::Rows, object, effect, findings);
                match what.strip_prefix("the runtime ") {
                    Some(rest) => format!("owned by the runtime, which {rest}"),
                    None => format!("owned by the runtime: {what}"),
                }
            }
        },
        Cause::Rows | Cause::Rights => match effect {
            Effect::ReadsOtherTenants | Effect::WritesOtherTenants => crossing(object, findings),
            Effect::OpenWithoutContext => {
                let of = |write: bool| {
                    findings.iter().any(|f| {
                        f.effect == Effect::OpenWithoutContext
                            && f.observation.probe.ends_with("-write") == write
                    })
                };
                let what = match (of(false), of(true)) {
                    (true, true) => "shows tenant rows and accepts writes",
                    (true, false) => "shows tenant rows",
                    _ => "accepts writes",
                };
                format!("with no tenant context, it {what}")
            }
            Effect::CarriedContext
                if findings
                    .iter()
                    .any(|f| f.observation.probe == "CALL-CONTEXT") =>
            {
                "a call leaves the session in another tenant's context".into()
            }
            Effect::CarriedContext => {
                "a task that sets no context sees its rows on a pooled connection".into()
            }
            Effect::Unfiltered => {
                "the runtime reads it with row_security off, past its policies".into()
            }
            Effect::OwnRowsLost => "a tenant cannot see or write all of its own rows".into(),
            Effect::LostWork => "a failure cannot be recorded in it".into(),
            Effect::SchemaChange => {
                let mut statements: Vec<String> = Vec::new();
                for f in findings.iter().filter(|f| f.effect == Effect::SchemaChange) {
                    let o = f.observation;
                    let name = o.probe.split_once(':').map_or(o.probe.as_str(), |(_, s)| s);
                    let statement = match (name, o.relation.as_deref()) {
                        ("SET ROLE", Some(target)) => format!("SET ROLE {target}"),
                        _ => name.to_string(),
                    };
                    if !statements.contains(&statement) {
                        statements.push(statement);
                    }
                }
                let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
                format!("the runtime can run {}", join(&statements))
            }
            Effect::PrivilegeMismatch => {
                matrix_differences(report, object).unwrap_or_else(|| details(effect, findings))
            }
            Effect::PolicyGap => policy_gap(findings),
            Effect::SideChannel | Effect::WrongIdentity => details(effect, findings),
        },
    }
}

/// What a tenant does to other tenants' rows through `object`: `a tenant reads, inserts,
/// updates and deletes other tenants' rows`; for a function, what a call returns or changes.
fn crossing(object: &str, findings: &[Finding<'_>]) -> String {
    let crossing: Vec<&Observation> = findings
        .iter()
        .filter(|f| {
            matches!(
                f.effect,
                Effect::ReadsOtherTenants | Effect::WritesOtherTenants
            )
        })
        .map(|f| f.observation)
        .collect();
    let any = |names: &[&str]| crossing.iter().any(|o| names.contains(&o.probe.as_str()));
    let reads = crossing
        .iter()
        .any(|o| Effect::of(o) == Effect::ReadsOtherTenants);
    let writes = crossing
        .iter()
        .any(|o| Effect::of(o) == Effect::WritesOtherTenants);
    if object.ends_with(')') {
        let keys = "called in one tenant's context with another tenant's keys, it";
        return match (any(&["CALL"]), reads, writes) {
            (false, _, _) => "in one tenant's context, it returns other tenants' rows".into(),
            (true, true, true) => format!("{keys} returns that tenant's data and changes its rows"),
            (true, false, _) => format!("{keys} changes that tenant's rows"),
            (true, true, false) => format!("{keys} returns that tenant's data"),
        };
    }
    const INSERTS: [&str; 2] = ["INS", "DML-INSERT-OTHER"];
    const UPDATES: [&str; 2] = ["XDML-UPDATE", "DML-UPDATE-OTHER"];
    const DELETES: [&str; 2] = ["XDML-DELETE", "DML-DELETE-OTHER"];
    const MOVES: [&str; 3] = ["MOVE", "MOVE-NO-WHERE", "DML-MOVE"];
    let mut verbs = Vec::new();
    if reads {
        verbs.push("reads");
    }
    for (names, verb) in [
        (&INSERTS[..], "inserts"),
        (&UPDATES[..], "updates"),
        (&DELETES[..], "deletes"),
    ] {
        if any(names) {
            verbs.push(verb);
        }
    }
    let moves = any(&MOVES);
    let known: Vec<&str> = INSERTS
        .iter()
        .chain(&UPDATES)
        .chain(&DELETES)
        .chain(&MOVES)
        .copied()
        .collect();
    let other_writes = crossing
        .iter()
        .any(|o| Effect::of(o) == Effect::WritesOtherTenants && !known.contains(&o.probe.as_str()));
    if other_writes && !verbs.contains(&"inserts") && !verbs.contains(&"updates") {
        verbs.push("writes");
    }
    match (verbs.is_empty(), moves) {
        (false, false) => format!("a tenant {} other tenants' rows", join(&verbs)),
        (false, true) => format!(
            "a tenant {} other tenants' rows and moves its own rows to another tenant",
            join(&verbs)
        ),
        (true, _) => "a tenant moves its own rows to another tenant".into(),
    }
}

/// What the catalog says is missing from the row-level security of a relation or function,
/// each thing once.
fn policy_gap(findings: &[Finding<'_>]) -> String {
    let probes: BTreeSet<&str> = findings
        .iter()
        .map(|f| f.observation.probe.as_str())
        .collect();
    let both =
        probes.contains("catalog:policy-using") && probes.contains("catalog:policy-with-check");
    let mut phrases: Vec<String> = Vec::new();
    for f in findings.iter().filter(|f| f.effect == Effect::PolicyGap) {
        let phrase = match f.observation.probe.as_str() {
            "catalog:relrowsecurity" => "row-level security is not enabled".to_string(),
            "catalog:relforcerowsecurity" => "row-level security is not forced".into(),
            "catalog:policy-using" | "catalog:policy-with-check" if both => {
                "its policies bind the tenant context in neither USING nor WITH CHECK".into()
            }
            "catalog:policy-using" => "its policies' USING does not bind the tenant context".into(),
            "catalog:policy-with-check" => {
                "its policies' WITH CHECK does not bind the tenant context".into()
            }
            "catalog:policy-command" => {
                "no policy covers a command the runtime holds (default deny)".into()
            }
            "catalog:no-rls" => "it holds tenant rows and cannot carry row-level security".into(),
            "catalog:security-definer" => {
                "it runs with its owner's rights, past the policies".into()
            }
            "catalog:security-definer-search-path" => "it does not pin search_path".into(),
            "catalog:view-security-invoker" => {
                "it reads its base tables with its owner's rights, past the policies".into()
            }
            _ => one_line(&f.observation.detail),
        };
        if !phrases.contains(&phrase) {
            phrases.push(phrase);
        }
    }
    phrases.join("; ")
}

/// The first detail of `effect` among `findings`, on one line, and how many others differ.
fn details(effect: Effect, findings: &[Finding<'_>]) -> String {
    let details: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.effect == effect)
        .map(|f| f.observation.detail.as_str())
        .collect();
    let first = one_line(&findings[0].observation.detail);
    match details.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more)", n - 1),
    }
}

/// How the runtime's privileges on `object` differ from the declared matrix, read from the
/// report's privilege matrix: `the runtime holds UPDATE and DELETE, not declared`. `None` when
/// the matrix shows no difference there.
fn matrix_differences(report: &Report, object: &str) -> Option<String> {
    let entries: Vec<&PrivilegeEntry> = report
        .evidence
        .privileges
        .entries
        .iter()
        .filter(|e| match e.object_kind {
            ObjectKind::Schema => object.strip_prefix("schema ") == Some(e.object.as_str()),
            ObjectKind::Database => object == DATABASE,
            _ => e.object == object,
        })
        .collect();
    let list = |keep: fn(&PrivilegeEntry) -> bool| {
        let names: Vec<&str> = entries
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.privilege.as_str())
            .collect();
        join(&names)
    };
    let mut parts = Vec::new();
    let extra = list(|e| e.granted && !e.expected);
    if !extra.is_empty() {
        parts.push(format!("the runtime holds {extra}, not declared"));
    }
    let missing = list(|e| !e.granted && e.expected);
    if !missing.is_empty() {
        parts.push(format!("the runtime lacks declared {missing}"));
    }
    let passed_on = list(|e| e.granted && e.grantable);
    if !passed_on.is_empty() {
        parts.push(format!("the runtime holds {passed_on} WITH GRANT OPTION"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// What a violated history invariant says the worker did.
fn worker_phrase(id: InvariantId) -> &'static str {
    match id {
        InvariantId::DlqCompleteness => "a failed task's DLQ row is missing or wrong",
        InvariantId::ExactlyOnce => "a request is recorded more than once",
        InvariantId::Atomicity => "a failed task leaves rows behind",
        InvariantId::RollupConsistency => "the monthly rollups disagree with the audit rows",
        InvariantId::ExpectedOutcome => "a task does not end as the model expects",
        InvariantId::Durability => "work seen to commit is lost or repeated after a fault",
        _ => "the worker breaks it",
    }
}

#[cfg(test)]
mod tests {
    //! The grouping on hand-built reports: no database needed.
    use super::*;
    use crate::invariants::{Acceptance, Ledger, Undecided};
    use crate::report::Counterexample;
    use crate::workload::Workload;

    const ROWS: [InvariantId; 6] = [
        InvariantId::TenantIsolation,
        InvariantId::WriteCheck,
        InvariantId::NoContextClosed,
        InvariantId::ContextHygiene,
        InvariantId::RlsCoverage,
        InvariantId::SideChannels,
    ];

    fn violated(id: InvariantId, probe: &str, relation: &str) -> Observation {
        Observation::violated(id, probe, format!("{probe} saw it on {relation}")).on(relation)
    }

    fn probed(id: InvariantId, probe: &str, relation: &str) -> Observation {
        violated(id, probe, relation).with_statement(format!("SELECT '{probe}' FROM {relation}"))
    }

    /// A report of `observations`, recorded in a ledger of every invariant.
    fn report(ledger: Ledger, observations: Vec<Observation>) -> Report {
        let mut ledger = ledger;
        ledger.record_all(observations);
        let mut report = Report::interrupted("check", "rlsgate check --seed 7".into());
        (report.verdict, report.invariants) = Report::results(&ledger);
        report.evidence.identity.role = "app".into();
        report
    }

    /// Every violation the report keeps belongs to exactly one problem.
    fn assert_partition(report: &Report, problems: &[Problem]) {
        let kept: usize = report.invariants.iter().map(|r| r.violations.len()).sum();
        assert_eq!(
            problems.iter().map(|p| p.findings).sum::<usize>(),
            kept,
            "{problems:#?}"
        );
    }

    /// The findings of the helper-functions example's broken copy: one permissive policy that
    /// lets everything through on public.comments.
    fn one_flaw() -> Vec<Observation> {
        use InvariantId as I;
        let r = "public.comments";
        vec![
            probed(I::TenantIsolation, "READ", r),
            probed(I::TenantIsolation, "DML-READ", r),
            probed(I::WriteCheck, "INS", r),
            probed(I::WriteCheck, "XDML-UPDATE", r),
            probed(I::WriteCheck, "XDML-DELETE", r),
            probed(I::NoContextClosed, "NOCTX-never-set", r),
            probed(I::NoContextClosed, "NOCTX-never-set-write", r),
            probed(I::ContextHygiene, "POOL-read", r),
            violated(I::RlsCoverage, "catalog:policy-using", r),
            violated(I::RlsCoverage, "catalog:policy-with-check", r),
        ]
    }

    #[test]
    fn one_flaw_seen_by_six_probes_of_five_invariants_is_one_problem() {
        let report = report(Ledger::default(), one_flaw());
        let problems = problems(&report);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let p = &problems[0];
        assert_eq!(p.object, "public.comments");
        assert_eq!(p.cause, Cause::Rows);
        assert_eq!(p.id, "rows public.comments");
        assert_eq!(p.effect, Effect::ReadsOtherTenants);
        assert_eq!(
            p.summary,
            "public.comments: a tenant reads, inserts, updates and deletes other tenants' rows"
        );
        // The leaked row proves most; its single statement reproduces it.
        assert_eq!(
            (p.proof.invariant, p.proof.probe.as_str()),
            (InvariantId::TenantIsolation, "READ")
        );
        assert_eq!(p.reproduction, Reproduction::Statement);
        assert!(p.dml_sequence, "the DML-READ's sequence replays it too");
        assert_eq!(
            p.why,
            [
                "catalog:policy-using saw it on public.comments",
                "catalog:policy-with-check saw it on public.comments"
            ]
        );
        assert_eq!(
            p.confirmed_by,
            [
                "tenant-isolation [DML-READ]",
                "write-check [INS, XDML-UPDATE, XDML-DELETE]",
                "no-context-closed [NOCTX-never-set, NOCTX-never-set-write]",
                "context-hygiene [POOL-read]",
                "rls-coverage [catalog:policy-using, catalog:policy-with-check]",
            ]
        );
        assert_partition(&report, &problems);
    }

    #[test]
    fn two_relations_make_two_problems_ordered_by_severity_then_name() {
        use InvariantId as I;
        let report = report(
            Ledger::default(),
            vec![
                violated(I::RlsCoverage, "catalog:relforcerowsecurity", "public.a"),
                probed(I::NoContextClosed, "NOCTX-never-set", "public.z"),
                probed(I::WriteCheck, "INS", "public.y"),
                probed(I::WriteCheck, "XDML-DELETE", "public.x"),
            ],
        );
        let problems = problems(&report);
        let order: Vec<(&str, Effect)> = problems
            .iter()
            .map(|p| (p.object.as_str(), p.effect))
            .collect();
        assert_eq!(
            order,
            [
                ("public.x", Effect::WritesOtherTenants),
                ("public.y", Effect::WritesOtherTenants),
                ("public.z", Effect::OpenWithoutContext),
                ("public.a", Effect::PolicyGap),
            ]
        );
        assert_eq!(
            problems[2].summary,
            "public.z: with no tenant context, it shows tenant rows"
        );
        assert_eq!(
            problems[3].summary,
            "public.a: row-level security is not forced"
        );
        assert_eq!(problems[3].reproduction, Reproduction::Catalog);
        assert!(problems[3].why.is_empty(), "a catalog proof is its own why");
        assert_partition(&report, &problems);
    }

    #[test]
    fn accepted_findings_notes_and_inconclusive_checks_are_never_problems() {
        use InvariantId as I;
        let ledger = Ledger::default().accepting([Acceptance {
            invariant: I::SideChannels,
            relation: Some("public.users".into()),
            probe: Some("UNIQUE".into()),
            reason: "emails are unique across tenants by design".into(),
        }]);
        let report = report(
            ledger,
            vec![
                violated(I::SideChannels, "UNIQUE:users_email_key", "public.users"),
                Observation::note(I::RlsCoverage, "catalog:relforcerowsecurity", "not forced")
                    .on("public.users"),
                Observation::inconclusive(I::WriteCheck, Undecided::Bypass, "INS", "bypasses")
                    .on("public.users"),
            ],
        );
        assert_eq!(report.invariant(I::SideChannels).accepted.len(), 1);
        assert!(problems(&report).is_empty());
    }

    #[test]
    fn a_report_without_violations_has_no_problems() {
        let holds = ROWS.map(|id| Observation::holds(id, "READ").on("public.a"));
        assert!(problems(&report(Ledger::scoped(ROWS), holds.to_vec())).is_empty());
        assert!(problems(&Report::interrupted("run", String::new())).is_empty());
    }

    #[test]
    fn a_schema_is_one_object_whichever_check_names_it() {
        use InvariantId as I;
        let report = report(
            Ledger::default(),
            vec![
                violated(I::RuntimeIdentity, "catalog:schema CREATE", "schema public"),
                violated(I::LeastPrivilege, "catalog:has_schema_privilege", "public"),
                probed(I::RuntimeLacksDdl, "DDL:CREATE TABLE", "public"),
                probed(I::RuntimeLacksDdl, "DDL:CREATE FUNCTION", "public"),
                probed(I::RuntimeLacksDdl, "ESCALATION:SET ROLE", "owner"),
                violated(I::LeastPrivilege, "catalog:pg_has_role", "owner"),
            ],
        );
        let problems = problems(&report);
        let objects: Vec<&str> = problems.iter().map(|p| p.object.as_str()).collect();
        assert_eq!(objects, ["role app", "schema public"], "{problems:#?}");
        assert_eq!(
            problems[1].summary,
            "schema public: the runtime can run CREATE TABLE and CREATE FUNCTION"
        );
        assert_eq!(problems[1].proof.probe, "DDL:CREATE TABLE");
        assert_eq!(problems[1].why.len(), 2);
        assert_eq!(
            problems[0].summary,
            "role app: the runtime can run SET ROLE owner"
        );
        assert_partition(&report, &problems);
    }

    #[test]
    fn a_relations_rows_and_its_privileges_are_two_problems() {
        use InvariantId as I;
        let mut report = report(
            Ledger::default(),
            vec![
                probed(I::TenantIsolation, "READ", "public.t"),
                violated(I::LeastPrivilege, "catalog:has_table_privilege", "public.t"),
                probed(I::RuntimeLacksDdl, "BYPASS:row_security=off", "public.t"),
            ],
        );
        report.evidence.privileges.entries = vec![crate::catalog::privileges::PrivilegeEntry {
            object_kind: ObjectKind::Relation,
            object: "public.t".into(),
            privilege: "TRUNCATE".into(),
            granted: true,
            grantable: false,
            expected: false,
        }];
        let problems = problems(&report);
        let ids: Vec<&str> = problems.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["rows public.t", "rights public.t"]);
        assert_eq!(
            problems[0].confirmed_by,
            ["runtime-lacks-ddl [BYPASS:row_security=off]"]
        );
        assert_eq!(
            problems[1].summary,
            "public.t: the runtime holds TRUNCATE, not declared"
        );
    }

    #[test]
    fn what_the_runtime_owns_is_one_problem_of_its_rows_and_rights() {
        use InvariantId as I;
        let t = "public.t";
        let mut report = report(
            Ledger::default(),
            vec![
                violated(I::RuntimeIdentity, "catalog:relowner", t),
                probed(I::RuntimeLacksDdl, "DDL:TRUNCATE", t),
                probed(I::RuntimeLacksDdl, "BYPASS:row_security=off", t),
                violated(I::RlsCoverage, "catalog:relforcerowsecurity", t),
                probed(I::RuntimeLacksDdl, "DDL:TRUNCATE", "public.u"),
            ],
        );
        report.evidence.identity.owns = vec!["table public.t".into()];
        let problems = problems(&report);
        let ids: Vec<&str> = problems.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["owned public.t", "rights public.u"]);
        assert_eq!(
            problems[0].summary,
            "public.t: owned by the runtime, which reads it with row_security off, past its policies"
        );
        assert_eq!(problems[0].findings, 4);
        assert_partition(&report, &problems);
    }

    #[test]
    fn a_bypass_read_follows_a_role_that_bypasses_rls() {
        use InvariantId as I;
        let mut report = report(
            Ledger::default(),
            vec![
                violated(I::LeastPrivilege, "catalog:pg_roles.rolbypassrls", "app"),
                probed(I::RuntimeLacksDdl, "BYPASS:row_security=off", "public.a"),
                probed(I::RuntimeLacksDdl, "BYPASS:row_security=off", "public.b"),
            ],
        );
        report.evidence.identity.attributes = vec![("BYPASSRLS".into(), true)];
        let problems = problems(&report);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].id, "rights role app");
        assert_eq!(problems[0].findings, 3);
    }

    #[test]
    fn a_key_is_its_own_problem_beside_the_relations_rows() {
        use InvariantId as I;
        let report = report(
            Ledger::default(),
            vec![
                probed(I::WriteCheck, "INS", "public.posts"),
                probed(I::WriteCheck, "XREF:posts_author_fkey", "public.posts"),
                probed(I::SideChannels, "UNIQUE:posts_slug_key", "public.posts"),
            ],
        );
        let problems = problems(&report);
        let ids: Vec<&str> = problems.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "rows public.posts",
                "key posts_author_fkey public.posts",
                "key posts_slug_key public.posts"
            ]
        );
        assert_eq!(
            problems[1].summary,
            "public.posts: through foreign key posts_author_fkey, a tenant attaches its rows to another tenant's (the key does not carry the tenant)"
        );
        assert_partition(&report, &problems);
    }

    #[test]
    fn a_pool_read_follows_the_relations_policy_or_else_the_carried_context() {
        use InvariantId as I;
        let setting = Observation::violated(I::ContextHygiene, "POOL-setting", "carries 'A'");
        // The relation shows rows without a context: its policy explains the pooled read.
        let report_a = report(
            Ledger::default(),
            vec![
                setting.clone(),
                probed(I::ContextHygiene, "POOL-read", "public.a"),
                probed(I::NoContextClosed, "NOCTX-never-set", "public.a"),
            ],
        );
        let ids: Vec<String> = problems(&report_a).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["rows public.a", "context the pooled connections"]);
        // Nothing else is wrong with the relation: the carried context explains it.
        let report_b = report(
            Ledger::default(),
            vec![setting, probed(I::ContextHygiene, "POOL-read", "public.a")],
        );
        let problems = problems(&report_b);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(
            problems[0].summary,
            "the pooled connections: a pooled connection carries a tenant's context into the next task"
        );
        assert_eq!(
            problems[0].proof.probe, "POOL-read",
            "the read that saw rows proves most"
        );
    }

    #[test]
    fn the_workers_history_violations_are_one_problem_per_invariant_reproduced_by_the_counterexample()
     {
        use InvariantId as I;
        let dup = |n: u8| {
            Observation::violated(
                I::ExactlyOnce,
                "history:one-commit-per-key",
                format!("dup {n}"),
            )
            .on("llm_api_calls")
        };
        let lost = Observation::violated(I::DlqCompleteness, "history:failure-has-dlq-row", "lost")
            .on("worker_failed_jobs");
        let mut report = report(Ledger::default(), vec![dup(1), dup(2), lost.clone()]);
        report.counterexample = Some(Counterexample {
            reason: "dup 1".into(),
            workload: Workload {
                tenants: Vec::new(),
                messages: Vec::new(),
                steps: Vec::new(),
                concurrency: 1,
            },
            violations: vec![dup(1)],
            transcript: String::new(),
        });
        let problems = problems(&report);
        let summaries: Vec<(&str, &Reproduction)> = problems
            .iter()
            .map(|p| (p.summary.as_str(), &p.reproduction))
            .collect();
        assert_eq!(
            summaries,
            [
                (
                    "the worker: a failed task's DLQ row is missing or wrong (dlq-completeness)",
                    &Reproduction::Rerun
                ),
                (
                    "the worker: a request is recorded more than once (exactly-once)",
                    &Reproduction::Counterexample
                ),
            ]
        );
        assert_eq!(problems[1].findings, 2);
        assert_partition(&report, &problems);
    }

    #[test]
    fn problems_survive_report_json() {
        let report = report(Ledger::default(), one_flaw());
        let mut written = report.clone();
        written.problems = problems(&report);
        let json = serde_json::to_string(&written).unwrap();
        let read: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(read.problems, written.problems);
        // A report of a passing run does not carry the field at all.
        let passing = serde_json::to_value(Report::interrupted("run", String::new())).unwrap();
        assert!(passing.get("problems").is_none());
    }
}
