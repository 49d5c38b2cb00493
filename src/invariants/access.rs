//! The access matrix: what the probes saw, per relation × command × acting context, folded
//! from the observations the ledger records. Not an invariant of its own: the same findings,
//! arranged as a reviewer looks for them (can tenant A's context touch B's rows? can a
//! connection with no context?). The evidence renders it with the privilege matrix beside it
//! (`access.html`) and emits the cells that held as a pgTAP suite.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::invariants::{InvariantId, Observation, Status};
use crate::subject::Subject;

/// Who acts: always the runtime role, in one of these contexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessContext {
    /// In a tenant's context, on its own rows: what the design allows.
    OwnTenant,
    /// In tenant A's context, on tenant B's rows: what must be refused.
    OtherTenant,
    /// With no tenant context (never set, or set and ended): what must be refused.
    NoContext,
}

impl AccessContext {
    /// Every context, in the matrix's order.
    pub const ALL: [AccessContext; 3] = [Self::OwnTenant, Self::OtherTenant, Self::NoContext];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OwnTenant => "own-tenant",
            Self::OtherTenant => "other-tenant",
            Self::NoContext => "no-context",
        }
    }
}

impl fmt::Display for AccessContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The commands of the matrix.
pub const COMMANDS: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

/// What a cell says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessOutcome {
    /// The design allows it (the tenant's own rows, a declared privilege).
    Allowed,
    /// Refused, as it should be.
    Blocked,
    /// A violation: it went through (or a privilege is held that is not declared).
    Leak,
    /// Nothing could decide it (the probe bypassed RLS, failed otherwise, never ran).
    Inconclusive,
}

impl AccessOutcome {
    /// The stable name (also the HTML class).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Blocked => "blocked",
            Self::Leak => "leak",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// One cell the probes decided (or tried to): a relation, a command, a context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCell {
    /// The relation, schema-qualified.
    pub relation: String,
    /// `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub command: String,
    /// The acting context.
    pub context: AccessContext,
    /// What the probes say, the worst first: leak, then inconclusive, then held.
    pub outcome: AccessOutcome,
    /// How many probes held.
    pub held: u64,
    /// How many found a violation (accepted ones included).
    pub violated: u64,
    /// How many could not decide.
    pub inconclusive: u64,
    /// The probes that looked, by name.
    pub probes: Vec<String>,
    /// For a leak, the first violation; for an inconclusive cell, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The SQLSTATEs the probes that held were refused with (`42501`, or the error of a policy
    /// that fails closed by raising).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
    /// The first statement of a probe that held (the INSERT of a copied row, for the pgTAP
    /// suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

/// The probes' access outcomes of a run and what acting as the runtime takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The runtime role the probes ran as.
    pub runtime_role: String,
    /// The GUC that carries the tenant context.
    pub tenant_setting: String,
    /// The statement that sets the context in a transaction (`$1`: the tenant id as text).
    pub context_statement: String,
    /// The cells, by relation, context, then command in [`COMMANDS`] order.
    pub cells: Vec<AccessCell>,
}

impl Access {
    /// Whether no probe placed anything (a report from before the matrix, or no runtime login).
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Add what `other` saw (another shard of the same campaign): counts summed, probes and
    /// refusals joined, each cell's outcome the worst of the two (a leak anywhere is a leak).
    pub fn merge(&mut self, other: &Access) {
        if self.is_empty() {
            *self = other.clone();
            return;
        }
        for cell in &other.cells {
            let Some(into) = self.cells.iter_mut().find(|c| {
                c.relation == cell.relation
                    && c.context == cell.context
                    && c.command == cell.command
            }) else {
                self.cells.push(cell.clone());
                continue;
            };
            into.held += cell.held;
            into.violated += cell.violated;
            into.inconclusive += cell.inconclusive;
            let joined = |a: &[String], b: &[String]| -> Vec<String> {
                a.iter()
                    .chain(b)
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            };
            into.probes = joined(&into.probes, &cell.probes);
            into.refusals = joined(&into.refusals, &cell.refusals);
            let rank = |o: AccessOutcome| match o {
                AccessOutcome::Leak => 2,
                AccessOutcome::Inconclusive => 1,
                AccessOutcome::Allowed | AccessOutcome::Blocked => 0,
            };
            if rank(cell.outcome) > rank(into.outcome) {
                into.outcome = cell.outcome;
                into.detail = cell.detail.clone();
            }
            if into.statement.is_none() {
                into.statement = cell.statement.clone();
            }
        }
        let command = |c: &str| COMMANDS.iter().position(|x| *x == c);
        self.cells.sort_by(|a, b| {
            (&a.relation, a.context, command(&a.command)).cmp(&(
                &b.relation,
                b.context,
                command(&b.command),
            ))
        });
    }

    /// The cell of `relation`, `context`, `command`, when a probe looked there.
    pub fn cell(
        &self,
        relation: &str,
        context: AccessContext,
        command: &str,
    ) -> Option<&AccessCell> {
        self.cells
            .iter()
            .find(|c| c.relation == relation && c.context == context && c.command == command)
    }
}

/// Where an observation lands in the matrix: (context, command) pairs, none for a probe that
/// is not about a tenant's rows (catalog checks, keys, functions, the pool).
pub fn place(o: &Observation) -> Vec<(AccessContext, &'static str)> {
    use AccessContext::{NoContext, OtherTenant, OwnTenant};
    if o.relation.is_none() {
        return Vec::new();
    }
    let probe = o.probe.as_str();
    match o.invariant {
        InvariantId::TenantIsolation => match probe {
            "READ" | "READ-coverage" | "DML-READ" => vec![(OtherTenant, "SELECT")],
            "OWN-ROWS" => vec![(OwnTenant, "SELECT")],
            "DML-INSERT" => vec![(OwnTenant, "INSERT")],
            "DML-UPDATE-OWN" => vec![(OwnTenant, "UPDATE")],
            "DML-DELETE-OWN" => vec![(OwnTenant, "DELETE")],
            _ => Vec::new(),
        },
        InvariantId::WriteCheck => match probe {
            "INS" | "DML-INSERT-OTHER" => vec![(OtherTenant, "INSERT")],
            "XDML-UPDATE" | "MOVE" | "MOVE-NO-WHERE" | "DML-MOVE" | "DML-UPDATE-OTHER" => {
                vec![(OtherTenant, "UPDATE")]
            }
            "XDML-DELETE" | "DML-DELETE-OTHER" => vec![(OtherTenant, "DELETE")],
            "-coverage" => vec![
                (OtherTenant, "INSERT"),
                (OtherTenant, "UPDATE"),
                (OtherTenant, "DELETE"),
            ],
            _ => Vec::new(),
        },
        InvariantId::NoContextClosed if probe.starts_with("NOCTX") => {
            if probe.ends_with("-write") {
                vec![(NoContext, "INSERT")]
            } else {
                vec![(NoContext, "SELECT")]
            }
        }
        _ => Vec::new(),
    }
}

/// The running tally of the cells, kept by the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AccessFold {
    cells: BTreeMap<(String, AccessContext, usize), Fold>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fold {
    held: u64,
    violated: u64,
    inconclusive: u64,
    probes: BTreeSet<String>,
    leak: Option<String>,
    undecided: Option<String>,
    refusals: BTreeSet<String>,
    statement: Option<String>,
}

impl AccessFold {
    /// Count `o` in the cells it belongs to.
    pub(crate) fn record(&mut self, o: &Observation) {
        let Some(relation) = &o.relation else {
            return;
        };
        for (context, command) in place(o) {
            let index = COMMANDS.iter().position(|c| *c == command).unwrap_or(0);
            let f = self
                .cells
                .entry((relation.clone(), context, index))
                .or_default();
            f.probes.insert(o.probe.clone());
            match o.status {
                Status::Holds => {
                    f.held += 1;
                    f.refusals.extend(o.sqlstate.clone());
                    if f.statement.is_none() {
                        f.statement.clone_from(&o.statement);
                    }
                }
                Status::Violated => {
                    f.violated += 1;
                    f.leak.get_or_insert_with(|| match &o.accepted {
                        Some(why) => format!("{} (accepted: {why})", o.detail),
                        None => o.detail.clone(),
                    });
                }
                Status::Inconclusive => {
                    f.inconclusive += 1;
                    f.undecided.get_or_insert_with(|| o.detail.clone());
                }
                Status::Note => {}
            }
        }
    }

    /// The cells, with what acting as `subject`'s runtime takes.
    pub(crate) fn access(&self, subject: &Subject) -> Access {
        let cells = self
            .cells
            .iter()
            .filter(|(_, f)| f.held + f.violated + f.inconclusive > 0)
            .map(|((relation, context, index), f)| {
                let (outcome, detail) = if f.violated > 0 {
                    (AccessOutcome::Leak, f.leak.clone())
                } else if f.inconclusive > 0 {
                    (AccessOutcome::Inconclusive, f.undecided.clone())
                } else if *context == AccessContext::OwnTenant {
                    (AccessOutcome::Allowed, None)
                } else {
                    (AccessOutcome::Blocked, None)
                };
                AccessCell {
                    relation: relation.clone(),
                    command: COMMANDS[*index].into(),
                    context: *context,
                    outcome,
                    held: f.held,
                    violated: f.violated,
                    inconclusive: f.inconclusive,
                    probes: f.probes.iter().cloned().collect(),
                    detail,
                    refusals: f.refusals.iter().cloned().collect(),
                    statement: f.statement.clone(),
                }
            })
            .collect();
        Access {
            runtime_role: subject.runtime_role.clone(),
            tenant_setting: subject.tenant_setting.clone(),
            context_statement: subject.context_statement(),
            cells,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::Undecided;

    fn cell(relation: &str, command: &str, outcome: AccessOutcome) -> AccessCell {
        AccessCell {
            relation: relation.into(),
            command: command.into(),
            context: AccessContext::OtherTenant,
            outcome,
            held: u64::from(outcome == AccessOutcome::Blocked),
            violated: u64::from(outcome == AccessOutcome::Leak),
            inconclusive: 0,
            probes: vec![
                if outcome == AccessOutcome::Leak {
                    "DML-READ"
                } else {
                    "READ"
                }
                .into(),
            ],
            detail: (outcome == AccessOutcome::Leak).then(|| "saw B's row".into()),
            refusals: Vec::new(),
            statement: None,
        }
    }

    #[test]
    fn shards_merge_cell_by_cell_the_worst_outcome_winning() {
        let access = |cells| Access {
            runtime_role: "app".into(),
            tenant_setting: "app.tenant".into(),
            context_statement: String::new(),
            cells,
        };
        let mut one = access(vec![cell("public.b", "SELECT", AccessOutcome::Blocked)]);
        let two = access(vec![
            cell("public.b", "SELECT", AccessOutcome::Leak),
            cell("public.a", "DELETE", AccessOutcome::Blocked),
        ]);
        one.merge(&two);
        let b = one
            .cell("public.b", AccessContext::OtherTenant, "SELECT")
            .unwrap();
        assert_eq!(b.outcome, AccessOutcome::Leak);
        assert_eq!((b.held, b.violated), (1, 1));
        assert_eq!(b.probes, ["DML-READ", "READ"]);
        assert_eq!(b.detail.as_deref(), Some("saw B's row"));
        assert_eq!(one.cells[0].relation, "public.a", "sorted by relation");
        let mut empty = access(Vec::new());
        empty.merge(&one);
        assert_eq!(empty, one);
    }

    #[test]
    fn observations_fold_into_cells_worst_first_in_a_fixed_order() {
        let mut fold = AccessFold::default();
        let t = InvariantId::TenantIsolation;
        let w = InvariantId::WriteCheck;
        fold.record(&Observation::holds(w, "XDML-UPDATE").on("public.b"));
        fold.record(&Observation::holds(t, "READ").on("public.a"));
        fold.record(
            &Observation::violated(w, "MOVE", "moved a row")
                .on("public.a")
                .with_statement("UPDATE"),
        );
        fold.record(&Observation::holds(w, "XDML-UPDATE").on("public.a"));
        fold.record(
            &Observation::holds(InvariantId::NoContextClosed, "NOCTX-never-set-write")
                .on("public.a")
                .with_sqlstate(Some("42501".into()))
                .with_statement("INSERT INTO public.a"),
        );
        fold.record(
            &Observation::inconclusive(
                InvariantId::NoContextClosed,
                Undecided::Bypass,
                "NOCTX-never-set",
                "ran as the owner",
            )
            .on("public.a"),
        );
        // Not about rows: catalog checks and probes without a relation.
        fold.record(&Observation::holds(InvariantId::RlsCoverage, "catalog").on("public.a"));
        fold.record(&Observation::holds(t, "READ"));
        let access = fold.access(&Subject::reference());
        let got: Vec<_> = access
            .cells
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} {}",
                    c.relation,
                    c.context,
                    c.command,
                    c.outcome.as_str()
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "public.a other-tenant SELECT blocked",
                "public.a other-tenant UPDATE leak",
                "public.a no-context SELECT inconclusive",
                "public.a no-context INSERT blocked",
                "public.b other-tenant UPDATE blocked",
            ]
        );
        let update = access
            .cell("public.a", AccessContext::OtherTenant, "UPDATE")
            .unwrap();
        assert_eq!(update.detail.as_deref(), Some("moved a row"));
        assert_eq!(update.probes, ["MOVE", "XDML-UPDATE"]);
        let insert = access
            .cell("public.a", AccessContext::NoContext, "INSERT")
            .unwrap();
        assert_eq!(insert.refusals, ["42501"]);
        assert_eq!(insert.statement.as_deref(), Some("INSERT INTO public.a"));
        assert_eq!(
            access.context_statement,
            "SELECT set_config('app.current_tenant_id', $1, true)"
        );
    }
}
