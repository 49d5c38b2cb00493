//! `rls-coverage`: every tenant relation is covered by row-level security that binds the tenant
//! context.
//!
//! A *tenant relation* is a relation of the subject's schemas with the tenant column (relations
//! without it are [`least_privilege`](super::least_privilege)'s business). Read as the oracle,
//! about the runtime role:
//! - tables and partitioned tables: RLS enabled and forced; at least one permissive policy that
//!   applies to the runtime; every permissive policy's USING and WITH CHECK (USING where WITH
//!   CHECK is absent) reads the tenant setting and the tenant column, is not trivially true and
//!   is not widened by an OR branch that ignores the context; every command the runtime holds
//!   (SELECT, INSERT, UPDATE, DELETE) is governed by such a policy. A leaf partition the runtime
//!   cannot touch directly is governed by its parent's policies;
//! - views the runtime can read: `security_invoker` (PostgreSQL 15+), else they read their base
//!   tables with their owner's privileges;
//! - materialized views and foreign tables the runtime can read: violated, neither carries RLS;
//! - SECURITY DEFINER functions the runtime can execute: violated when their owner bypasses RLS
//!   on a tenant relation (superuser, BYPASSRLS, or owner of a relation whose RLS is not
//!   forced), or when they do not pin `search_path`.
//!
//! [`catalogue`] returns what was read, per tenant relation, for the evidence pack.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::invariants::catalog::{self, Relation};
use crate::invariants::{InvariantId, Observation, Status, Subject};

const ID: InvariantId = InvariantId::RlsCoverage;

/// The kind of a tenant relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// A table (`relkind = 'r'`), a leaf partition included.
    Table,
    /// A partitioned table (`p`).
    PartitionedTable,
    /// A view (`v`).
    View,
    /// A materialized view (`m`).
    MaterializedView,
    /// A foreign table (`f`).
    ForeignTable,
}

impl RelationKind {
    fn from_relkind(kind: char) -> Option<Self> {
        Some(match kind {
            'r' => Self::Table,
            'p' => Self::PartitionedTable,
            'v' => Self::View,
            'm' => Self::MaterializedView,
            'f' => Self::ForeignTable,
            _ => return None,
        })
    }

    /// `table`, `partitioned table`, ... for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::PartitionedTable => "partitioned table",
            Self::View => "view",
            Self::MaterializedView => "materialized view",
            Self::ForeignTable => "foreign table",
        }
    }
}

impl fmt::Display for RelationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a policy widens (permissive, OR-ed) or narrows (restrictive, AND-ed) what is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// `AS PERMISSIVE` (the default).
    Permissive,
    /// `AS RESTRICTIVE`.
    Restrictive,
}

/// The command a policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PolicyCommand {
    /// `FOR ALL`.
    All,
    /// `FOR SELECT`.
    Select,
    /// `FOR INSERT`.
    Insert,
    /// `FOR UPDATE`.
    Update,
    /// `FOR DELETE`.
    Delete,
}

impl PolicyCommand {
    fn from_polcmd(polcmd: &str) -> Option<Self> {
        Some(match polcmd {
            "*" => Self::All,
            "r" => Self::Select,
            "a" => Self::Insert,
            "w" => Self::Update,
            "d" => Self::Delete,
            _ => return None,
        })
    }

    /// `ALL`, `SELECT`, ... as in `CREATE POLICY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "ALL",
            Self::Select => "SELECT",
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    /// True when the policy governs `privilege` (`SELECT`, `INSERT`, `UPDATE`, `DELETE`).
    pub fn covers(self, privilege: &str) -> bool {
        self == Self::All || self.as_str() == privilege
    }

    /// True when the policy's USING filters rows for this command.
    fn filters_rows(self) -> bool {
        !matches!(self, Self::Insert)
    }

    /// True when the policy checks new rows for this command (WITH CHECK, else USING).
    fn checks_rows(self) -> bool {
        matches!(self, Self::All | Self::Insert | Self::Update)
    }
}

impl fmt::Display for PolicyCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row-level-security policy, as `pg_policy` and `pg_get_expr` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// Permissive or restrictive.
    pub mode: PolicyMode,
    /// The command it is for.
    pub command: PolicyCommand,
    /// The roles it applies to, by name (`PUBLIC` for everyone), sorted.
    pub roles: Vec<String>,
    /// Whether it applies to the runtime (PUBLIC, or a role whose privileges the runtime has).
    pub applies_to_runtime: bool,
    /// The USING expression, if any.
    pub using: Option<String>,
    /// The WITH CHECK expression, if any (absent: USING checks new rows).
    pub with_check: Option<String>,
}

/// A tenant relation and its row-level security, for the evidence pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEntry {
    /// Schema-qualified, quoted where needed (`public.llm_api_calls`).
    pub relation: String,
    /// What kind of relation.
    pub kind: RelationKind,
    /// The column that holds the tenant.
    pub tenant_column: String,
    /// Row-level security enabled.
    pub rls_enabled: bool,
    /// Row-level security forced (the owner is filtered too).
    pub rls_forced: bool,
    /// The owner's role name.
    pub owner: String,
    /// Whether the runtime has the owner's privileges (it is the owner or inherits from it).
    pub runtime_has_owner_privileges: bool,
    /// The parent, when this is a leaf partition.
    pub partition_of: Option<String>,
    /// Whether a view is declared `security_invoker`.
    pub security_invoker: bool,
    /// What the runtime may do with it, of SELECT, INSERT, UPDATE, DELETE.
    pub runtime_privileges: Vec<String>,
    /// Its policies, by name.
    pub policies: Vec<Policy>,
}

impl PolicyEntry {
    fn runtime_can(&self, privilege: &str) -> bool {
        self.runtime_privileges.iter().any(|p| p == privilege)
    }
}

/// Every tenant relation with its row-level security, sorted by relation: what
/// [`catalogue`] reads, as one serializable value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCatalogue {
    /// One entry per tenant relation.
    pub entries: Vec<PolicyEntry>,
}

impl From<Vec<PolicyEntry>> for PolicyCatalogue {
    fn from(entries: Vec<PolicyEntry>) -> Self {
        Self { entries }
    }
}

/// Every tenant relation of the subject's schemas (relations with the tenant column) with its
/// row-level security and policies, sorted by relation, policies by name.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn catalogue(oracle: &Client, subject: &Subject) -> Result<Vec<PolicyEntry>> {
    let relations = catalog::relations(oracle, subject).await?;
    let extra: BTreeMap<String, (Option<String>, bool)> = oracle
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname),
                    (SELECT format('%I.%I', pn.nspname, pc.relname)
                     FROM pg_inherits i
                     JOIN pg_class pc ON pc.oid = i.inhparent
                     JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                     WHERE i.inhrelid = c.oid AND c.relispartition),
                    rt.oid IS NOT NULL AND pg_has_role(rt.oid, c.relowner, 'USAGE')
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_roles rt ON rt.rolname = $2
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[&subject.schemas, &subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("reading partitions and owners of the relations", e))?
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let mut policies: BTreeMap<String, Vec<Policy>> = BTreeMap::new();
    let rows = oracle
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), p.polname::text, p.polpermissive,
                    p.polcmd::text,
                    ARRAY(SELECT CASE WHEN r.oid = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r.oid)::text END
                          FROM unnest(p.polroles) AS r(oid) ORDER BY 1),
                    EXISTS (SELECT 1 FROM unnest(p.polroles) AS r(oid)
                            WHERE r.oid = 0
                               OR (rt.oid IS NOT NULL AND pg_has_role(rt.oid, r.oid, 'USAGE'))),
                    pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
             FROM pg_policy p
             JOIN pg_class c ON c.oid = p.polrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_roles rt ON rt.rolname = $2
             WHERE n.nspname = ANY($1)
             ORDER BY 1, 2",
            &[&subject.schemas, &subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("reading the row-level security policies", e))?;
    for r in rows {
        let polcmd: String = r.get(3);
        let Some(command) = PolicyCommand::from_polcmd(&polcmd) else {
            continue;
        };
        policies.entry(r.get(0)).or_default().push(Policy {
            name: r.get(1),
            mode: if r.get(2) {
                PolicyMode::Permissive
            } else {
                PolicyMode::Restrictive
            },
            command,
            roles: r.get(4),
            applies_to_runtime: r.get(5),
            using: r.get(6),
            with_check: r.get(7),
        });
    }
    Ok(relations
        .into_iter()
        .filter(Relation::is_tenant_relation)
        .filter_map(|rel| {
            let kind = RelationKind::from_relkind(rel.kind)?;
            let (partition_of, runtime_has_owner_privileges) =
                extra.get(&rel.name).cloned().unwrap_or((None, false));
            let runtime_privileges = [
                ("SELECT", rel.runtime_can_select),
                ("INSERT", rel.runtime_can_insert),
                ("UPDATE", rel.runtime_can_update),
                ("DELETE", rel.runtime_can_delete),
            ]
            .into_iter()
            .filter(|(_, held)| *held)
            .map(|(p, _)| p.to_string())
            .collect();
            Some(PolicyEntry {
                policies: policies.remove(&rel.name).unwrap_or_default(),
                tenant_column: rel.tenant_column.clone().unwrap_or_default(),
                relation: rel.name,
                kind,
                rls_enabled: rel.rls_enabled,
                rls_forced: rel.rls_forced,
                owner: rel.owner,
                runtime_has_owner_privileges,
                partition_of,
                security_invoker: rel.security_invoker,
                runtime_privileges,
            })
        })
        .collect())
}

/// Check that every tenant relation of the subject is covered by row-level security that binds
/// the tenant context (see the module docs). Inconclusive when the subject's schemas hold no
/// relation with the tenant column.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn check(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let entries = catalogue(oracle, subject).await?;
    if entries.is_empty() {
        return Ok(vec![Observation::inconclusive(
            ID,
            "catalog:tenant-relations",
            format!(
                "no relation in {} has the tenant column {}: nothing to cover, or the subject names the wrong column",
                subject.schemas.join(", "),
                subject.tenant_columns_text()
            ),
        )]);
    }
    let version = catalog::server_version_num(oracle).await?;
    let mut out: Vec<Observation> = entries
        .iter()
        .flat_map(|e| check_entry(e, subject, version))
        .collect();
    out.extend(check_definers(oracle, subject, &entries).await?);
    Ok(out)
}

/// SECURITY DEFINER functions the runtime can execute run with their owner's privileges: the
/// owner must not bypass RLS on a tenant relation, and `search_path` must be pinned.
async fn check_definers(
    oracle: &Client,
    subject: &Subject,
    entries: &[PolicyEntry],
) -> Result<Vec<Observation>> {
    let rows = oracle
        .query(
            &format!(
                "SELECT {}, pg_get_userbyid(p.proowner)::text,
                    o.rolsuper OR o.rolbypassrls,
                    coalesce(array_to_string(p.proconfig, ',') ~ '(^|,)search_path=', false),
                    ARRAY(SELECT format('%I.%I', cn.nspname, c.relname)::text
                          FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
                          WHERE cn.nspname = ANY($1) AND NOT c.relforcerowsecurity
                            AND pg_has_role(p.proowner, c.relowner, 'USAGE'))
             FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             JOIN pg_roles o ON o.oid = p.proowner
             JOIN pg_roles r ON r.rolname = $2
             WHERE n.nspname = ANY($1) AND p.prosecdef
               AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
             ORDER BY 1",
                catalog::function_name_sql("p")
            ),
            &[&subject.schemas, &subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("reading the SECURITY DEFINER functions", e))?;
    let tenant: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e.relation.as_str()).collect();
    let runtime = &subject.runtime_role;
    let mut out = Vec::new();
    for r in rows {
        let function: String = r.get(0);
        let owner: String = r.get(1);
        let privileged: bool = r.get(2);
        let pinned: bool = r.get(3);
        let unforced: Vec<String> = r.get(4);
        let bypassed: Vec<&String> = unforced
            .iter()
            .filter(|n| tenant.contains(n.as_str()))
            .collect();
        let probe = "catalog:security-definer";
        out.push(
            if privileged {
                Observation::violated(
                    ID,
                    probe,
                    format!(
                        "SECURITY DEFINER function {function}, executable by {runtime}, runs as {owner},                          a superuser or BYPASSRLS role: no policy filters what it reads"
                    ),
                )
            } else if let Some(rel) = bypassed.first() {
                Observation::violated(
                    ID,
                    probe,
                    format!(
                        "SECURITY DEFINER function {function}, executable by {runtime}, runs as {owner},                          which owns {rel} without FORCE ROW LEVEL SECURITY: it reads every tenant's rows there"
                    ),
                )
            } else {
                Observation::new(
                    ID,
                    Status::Holds,
                    probe,
                    format!(
                        "SECURITY DEFINER function {function} runs as {owner}, which is filtered by the policies"
                    ),
                )
            }
            .on(function.clone()),
        );
        out.push(
            Observation::expect(
                ID,
                pinned,
                "catalog:security-definer-search-path",
                format!(
                    "SECURITY DEFINER function {function} does not pin search_path:                      an object {runtime} creates earlier on the path (pg_temp) can hijack it"
                ),
            )
            .on(function),
        );
    }
    Ok(out)
}

/// The observations about one tenant relation (pure: no database).
fn check_entry(e: &PolicyEntry, subject: &Subject, server_version_num: i32) -> Vec<Observation> {
    let runtime = &subject.runtime_role;
    let name = &e.relation;
    let holds = |probe: &str, detail: String| {
        Observation::new(ID, Status::Holds, probe, detail).on(name.clone())
    };
    let violated =
        |probe: &str, detail: String| Observation::violated(ID, probe, detail).on(name.clone());
    let readable = e.runtime_can("SELECT");
    match e.kind {
        RelationKind::View => {
            let probe = "catalog:view-security-invoker";
            return vec![if !readable {
                holds(probe, format!("view {name} is not readable by {runtime}"))
            } else if e.security_invoker {
                holds(
                    probe,
                    format!(
                        "view {name} is security_invoker: its base tables' RLS applies to {runtime}"
                    ),
                )
            } else {
                let mut detail = format!(
                    "view {name} exposes the tenant column to {runtime} without security_invoker: \
                     it reads its base tables with the privileges of its owner {}",
                    e.owner
                );
                if server_version_num < 150000 {
                    detail.push_str(&format!(
                        " (security_invoker needs PostgreSQL 15; this server is {server_version_num}: \
                         revoke the runtime's access instead)"
                    ));
                }
                violated(probe, detail)
            }];
        }
        RelationKind::MaterializedView | RelationKind::ForeignTable => {
            let probe = "catalog:no-rls";
            return vec![if readable {
                violated(
                    probe,
                    format!(
                        "{} {name} holds tenant rows and cannot carry row-level security: {runtime} reads every tenant's rows",
                        e.kind
                    ),
                )
            } else {
                holds(
                    probe,
                    format!("{} {name} is not readable by {runtime}", e.kind),
                )
            }];
        }
        RelationKind::Table | RelationKind::PartitionedTable => {}
    }
    if let Some(parent) = &e.partition_of
        && e.runtime_privileges.is_empty()
    {
        return vec![holds(
            "catalog:partition",
            format!(
                "leaf partition {name} of {parent} is not accessible to {runtime} directly: the parent's policies govern it"
            ),
        )];
    }
    let mut out = vec![
        if e.rls_enabled {
            holds(
                "catalog:relrowsecurity",
                format!("row-level security is enabled on {name}"),
            )
        } else {
            violated(
                "catalog:relrowsecurity",
                format!(
                    "row-level security is not enabled on {name}: whoever can read it reads every tenant's rows"
                ),
            )
        },
        if e.rls_forced {
            holds(
                "catalog:relforcerowsecurity",
                format!("row-level security is forced on {name}"),
            )
        } else {
            let detail = if &e.owner == runtime {
                format!(
                    "row-level security is not forced on {name}: its owner is the runtime {runtime} itself, \
                     which bypasses the policies and reads and writes every tenant's rows"
                )
            } else if e.runtime_has_owner_privileges {
                format!(
                    "row-level security is not forced on {name}: its owner {} bypasses the policies, and {runtime} \
                     has the owner's privileges, so the runtime reads and writes every tenant's rows",
                    e.owner
                )
            } else {
                format!(
                    "row-level security is not forced on {name}: its owner {} bypasses the policies",
                    e.owner
                )
            };
            violated("catalog:relforcerowsecurity", detail)
        },
    ];
    let applicable: Vec<&Policy> = e
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Permissive && p.applies_to_runtime)
        .collect();
    out.push(if !applicable.is_empty() {
        let names: Vec<&str> = applicable.iter().map(|p| p.name.as_str()).collect();
        holds(
            "catalog:pg_policy",
            format!("permissive policies on {name} that apply to {runtime}: {}", names.join(", ")),
        )
    } else if e.policies.is_empty() {
        violated(
            "catalog:pg_policy",
            format!("{name} has no policy: {runtime} sees no row and writes none (default deny)"),
        )
    } else {
        let others: Vec<String> = e
            .policies
            .iter()
            .map(|p| {
                let mode = match p.mode {
                    PolicyMode::Permissive => "permissive",
                    PolicyMode::Restrictive => "restrictive",
                };
                format!("{} ({mode}, TO {})", p.name, p.roles.join(", "))
            })
            .collect();
        violated(
            "catalog:pg_policy",
            format!(
                "no permissive policy on {name} applies to {runtime} ({}): default deny, the runtime sees no row",
                others.join("; ")
            ),
        )
    });
    for p in e
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Permissive)
    {
        let policy = format!("permissive policy {} ({}) on {name}", p.name, p.command);
        if p.command.filters_rows() {
            let binding = classify_expression(
                p.using.as_deref(),
                &subject.tenant_setting,
                &e.tenant_column,
            );
            out.push(
                binding_observation(
                    &binding,
                    "catalog:policy-using",
                    &policy,
                    "USING",
                    subject,
                    e,
                )
                .on(name.clone()),
            );
        }
        if p.command.checks_rows() {
            let (expression, clause) = match &p.with_check {
                Some(w) => (Some(w.as_str()), "WITH CHECK".to_string()),
                None => (
                    p.using.as_deref(),
                    "WITH CHECK (absent: USING checks new rows)".to_string(),
                ),
            };
            let binding =
                classify_expression(expression, &subject.tenant_setting, &e.tenant_column);
            out.push(
                binding_observation(
                    &binding,
                    "catalog:policy-with-check",
                    &policy,
                    &clause,
                    subject,
                    e,
                )
                .on(name.clone()),
            );
        }
    }
    for privilege in &e.runtime_privileges {
        let covered = applicable.iter().any(|p| p.command.covers(privilege));
        out.push(if covered {
            holds(
                "catalog:policy-command",
                format!("{runtime}'s {privilege} on {name} is governed by a permissive policy"),
            )
        } else {
            violated(
                "catalog:policy-command",
                format!(
                    "{runtime} holds {privilege} on {name} but no permissive policy for {privilege} applies to it: \
                     the command is governed only by default deny (policy for the wrong command)"
                ),
            )
        });
    }
    out
}

fn binding_observation(
    binding: &Binding,
    probe: &str,
    policy: &str,
    clause: &str,
    subject: &Subject,
    entry: &PolicyEntry,
) -> Observation {
    let setting = &subject.tenant_setting;
    let column = &entry.tenant_column;
    let detail = match binding {
        Binding::BindsContext => {
            return Observation::new(
                ID,
                Status::Holds,
                probe,
                format!("{policy}: {clause} binds {setting} to {column}"),
            );
        }
        Binding::Absent => format!(
            "{policy} has no {clause} expression: it matches no row (default deny, a liveness bug)"
        ),
        Binding::TriviallyTrue(e) => format!("{policy}: {clause} is trivially true: `{e}`"),
        Binding::NoTenantColumn(e) => format!(
            "{policy}: {clause} does not reference the tenant column {column}, so it matches rows of every tenant: `{e}`"
        ),
        Binding::NoTenantContext(e) => format!(
            "{policy}: {clause} does not read the tenant context current_setting('{setting}'): `{e}`"
        ),
        Binding::Widened { branch, .. } => format!(
            "{policy}: {clause} is widened by an OR branch that ignores the tenant context: `{branch}`"
        ),
    };
    Observation::violated(ID, probe, detail)
}

/// How a policy expression relates to the tenant context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// It reads the tenant setting and the tenant column, and no top-level OR branch escapes
    /// the context.
    BindsContext,
    /// There is no expression: the policy matches no row for this command.
    Absent,
    /// It is always true (`true`, `1 = 1`, ...); the expression.
    TriviallyTrue(String),
    /// It does not reference the tenant column; the expression.
    NoTenantColumn(String),
    /// It does not read the tenant setting; the expression.
    NoTenantContext(String),
    /// A top-level OR branch does not read the tenant setting, so it admits rows whatever the
    /// context.
    Widened {
        /// The whole expression.
        expression: String,
        /// The branch that ignores the context.
        branch: String,
    },
}

impl Binding {
    /// True when the expression binds the tenant context.
    pub fn binds(&self) -> bool {
        *self == Self::BindsContext
    }
}

/// Classify a policy expression as `pg_get_expr` prints it: does it bind `setting` (read with
/// `current_setting('<setting>'`) to `column`? Case-insensitive and tolerant to whitespace;
/// string literals never count as references.
///
/// # Example
///
/// ```
/// use rlsgate::invariants::rls_coverage::{Binding, classify_expression};
///
/// let using = "(tenant_id = (current_setting('app.current_tenant_id'::text, true))::uuid)";
/// assert!(classify_expression(Some(using), "app.current_tenant_id", "tenant_id").binds());
/// assert_eq!(
///     classify_expression(Some("(1 = 1)"), "app.current_tenant_id", "tenant_id"),
///     Binding::TriviallyTrue("(1 = 1)".into())
/// );
/// ```
pub fn classify_expression(expression: Option<&str>, setting: &str, column: &str) -> Binding {
    let Some(expression) = expression else {
        return Binding::Absent;
    };
    let text = expression.trim().to_string();
    if is_trivially_true(&text) {
        return Binding::TriviallyTrue(text);
    }
    if !references_column(&text, column) {
        return Binding::NoTenantColumn(text);
    }
    if !reads_setting(&text, setting) {
        return Binding::NoTenantContext(text);
    }
    if let Some(branch) = top_level_or_branches(&text)
        .into_iter()
        .find(|b| !reads_setting(b, setting))
    {
        return Binding::Widened {
            branch: branch.to_string(),
            expression: text,
        };
    }
    Binding::BindsContext
}

/// A lexical piece of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// A string literal, quotes included.
    Literal(&'a str),
    /// An unquoted word (identifier or keyword), as written.
    Word(&'a str),
    /// A double-quoted identifier, without its quotes (`""` left doubled).
    Quoted(&'a str),
    /// Any other character.
    Symbol(char),
}

/// Split `text` into tokens with their byte offsets; whitespace is dropped.
fn tokens(text: &str) -> Vec<(usize, Token<'_>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' {
            let start = i;
            i += 1;
            while i < bytes.len() {
                if bytes[i] == c {
                    if bytes.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            let end = i.min(bytes.len());
            i = end + 1;
            out.push((
                start,
                if c == b'\'' {
                    Token::Literal(&text[start..(end + 1).min(text.len())])
                } else {
                    Token::Quoted(&text[start + 1..end])
                },
            ));
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || bytes[i] == b'_'
                    || bytes[i] == b'$'
                    || bytes[i] >= 0x80)
            {
                i += 1;
            }
            out.push((start, Token::Word(&text[start..i])));
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            out.push((i, Token::Symbol(ch)));
            i += ch.len_utf8();
        }
    }
    out
}

/// `text` without whitespace outside string literals, lower-cased outside literals.
fn compact(text: &str) -> String {
    tokens(text)
        .into_iter()
        .map(|(_, t)| match t {
            Token::Literal(l) => l.to_string(),
            Token::Word(w) => w.to_ascii_lowercase(),
            Token::Quoted(q) => format!("\"{q}\""),
            Token::Symbol(c) => c.to_string(),
        })
        .collect()
}

/// `text` without the parentheses that enclose all of it.
fn strip_outer_parens(mut text: &str) -> &str {
    loop {
        text = text.trim();
        if !text.starts_with('(') || !text.ends_with(')') {
            return text;
        }
        let mut depth = 0i32;
        let toks = tokens(text);
        let closes_at_end = toks.iter().all(|(offset, t)| {
            match t {
                Token::Symbol('(') => depth += 1,
                Token::Symbol(')') => depth -= 1,
                _ => {}
            }
            depth > 0 || *offset == text.len() - 1
        });
        if !closes_at_end {
            return text;
        }
        text = &text[1..text.len() - 1];
    }
}

fn is_trivially_true(text: &str) -> bool {
    let c = compact(text);
    matches!(
        strip_outer_parens(&c),
        "true" | "1=1" | "notfalse" | "'t'::boolean" | "'true'::boolean" | "true::boolean"
    )
}

fn references_column(text: &str, column: &str) -> bool {
    let simple = column
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !column.starts_with(|c: char| c.is_ascii_digit());
    let quoted = column.replace('"', "\"\"");
    tokens(text).into_iter().any(|(_, t)| match t {
        Token::Word(w) => simple && w.eq_ignore_ascii_case(column),
        Token::Quoted(q) => q == quoted,
        _ => false,
    })
}

fn reads_setting(text: &str, setting: &str) -> bool {
    let pattern = format!(
        "current_setting('{}'",
        setting.to_ascii_lowercase().replace('\'', "''")
    );
    compact(text).to_ascii_lowercase().contains(&pattern)
}

/// The branches of `text`'s top-level OR (after its enclosing parentheses), or `text` itself.
fn top_level_or_branches(text: &str) -> Vec<&str> {
    let inner = strip_outer_parens(text);
    let mut depth = 0i32;
    let mut branches = Vec::new();
    let mut start = 0;
    for (offset, t) in tokens(inner) {
        match t {
            Token::Symbol('(') => depth += 1,
            Token::Symbol(')') => depth -= 1,
            Token::Word(w) if depth == 0 && w.eq_ignore_ascii_case("or") => {
                branches.push(inner[start..offset].trim());
                start = offset + w.len();
            }
            _ => {}
        }
    }
    branches.push(inner[start..].trim());
    branches
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTING: &str = "app.current_tenant_id";
    const COLUMN: &str = "tenant_id";
    const REFERENCE: &str = "(tenant_id = (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid)";
    const DLQ: &str = "\nCASE\n    WHEN (tenant_id IS NULL) THEN (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text) IS NULL)\n    ELSE (tenant_id = (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid)\nEND";

    fn classify(e: &str) -> Binding {
        classify_expression(Some(e), SETTING, COLUMN)
    }

    #[test]
    fn the_reference_policies_bind_the_context() {
        assert!(classify(REFERENCE).binds());
        assert!(classify(DLQ).binds(), "CASE has no top-level OR");
        assert!(
            classify("(  TENANT_ID = current_setting( 'APP.current_tenant_id' )::uuid )").binds(),
            "case and whitespace do not matter"
        );
    }

    #[test]
    fn trivially_true_expressions_are_caught() {
        for e in [
            "true",
            "(true)",
            "((true))",
            "1 = 1",
            "(1 = 1)",
            "'t'::boolean",
        ] {
            assert!(
                matches!(classify(e), Binding::TriviallyTrue(_)),
                "{e}: {:?}",
                classify(e)
            );
        }
    }

    #[test]
    fn expressions_that_miss_the_column_or_the_context_are_caught() {
        assert!(matches!(
            classify("(current_setting('app.current_tenant_id'::text, true) IS NOT NULL)"),
            Binding::NoTenantColumn(_)
        ));
        assert!(matches!(
            classify("(other_tenant_id = (current_setting('app.current_tenant_id'::text))::uuid)"),
            Binding::NoTenantColumn(_)
        ));
        assert!(
            matches!(
                classify(
                    "(id = 'tenant_id'::text AND current_setting('app.current_tenant_id') = 'x')"
                ),
                Binding::NoTenantColumn(_)
            ),
            "a literal is not a column reference"
        );
        assert!(matches!(
            classify("(tenant_id = (current_setting('app.other'::text))::uuid)"),
            Binding::NoTenantContext(_)
        ));
        assert!(matches!(
            classify("(tenant_id IS NOT NULL)"),
            Binding::NoTenantContext(_)
        ));
        assert_eq!(classify_expression(None, SETTING, COLUMN), Binding::Absent);
    }

    #[test]
    fn an_or_branch_that_ignores_the_context_widens_the_policy() {
        let original = "((tenant_id IS NULL) OR (tenant_id = (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid))";
        assert_eq!(
            classify(original),
            Binding::Widened {
                expression: original.into(),
                branch: "(tenant_id IS NULL)".into()
            }
        );
        let or_true = format!("({REFERENCE} OR true)");
        assert!(matches!(classify(&or_true), Binding::Widened { branch, .. } if branch == "true"));
        let nested = format!("(({REFERENCE} OR {REFERENCE}) AND true)");
        assert!(
            classify(&nested).binds(),
            "an OR below the top level is not split"
        );
    }

    #[test]
    fn quoted_columns_match_only_quoted() {
        let e = "(\"TenantId\" = (current_setting('app.current_tenant_id'::text))::uuid)";
        assert!(classify_expression(Some(e), SETTING, "TenantId").binds());
        assert!(!classify_expression(Some(e), SETTING, "tenantid").binds());
    }

    #[test]
    fn outer_parentheses_are_stripped_only_when_they_enclose_everything() {
        assert_eq!(strip_outer_parens("((a) OR (b))"), "(a) OR (b)");
        assert_eq!(strip_outer_parens("(a) OR (b)"), "(a) OR (b)");
        assert_eq!(strip_outer_parens("(')(')"), "')('");
        assert_eq!(top_level_or_branches("(a OR 'x or y')"), ["a", "'x or y'"]);
    }

    fn entry(policies: Vec<Policy>, privileges: &[&str]) -> PolicyEntry {
        PolicyEntry {
            tenant_column: "tenant_id".into(),
            relation: "public.t".into(),
            kind: RelationKind::Table,
            rls_enabled: true,
            rls_forced: true,
            owner: "migration_owner".into(),
            runtime_has_owner_privileges: false,
            partition_of: None,
            security_invoker: false,
            runtime_privileges: privileges.iter().map(|p| p.to_string()).collect(),
            policies,
        }
    }

    fn policy(command: PolicyCommand, using: Option<&str>, with_check: Option<&str>) -> Policy {
        Policy {
            name: "p".into(),
            mode: PolicyMode::Permissive,
            command,
            roles: vec!["PUBLIC".into()],
            applies_to_runtime: true,
            using: using.map(str::to_string),
            with_check: with_check.map(str::to_string),
        }
    }

    fn violations(e: &PolicyEntry) -> Vec<String> {
        check_entry(e, &Subject::reference(), 150000)
            .into_iter()
            .filter(|o| o.status == Status::Violated)
            .map(|o| o.detail)
            .collect()
    }

    #[test]
    fn a_reference_table_holds_everywhere() {
        let e = entry(
            vec![policy(PolicyCommand::All, Some(REFERENCE), Some(REFERENCE))],
            &["SELECT", "INSERT"],
        );
        assert_eq!(violations(&e), Vec::<String>::new());
        let e = entry(
            vec![policy(PolicyCommand::All, Some(REFERENCE), None)],
            &["SELECT"],
        );
        assert_eq!(
            violations(&e),
            Vec::<String>::new(),
            "USING doubles as the check"
        );
    }

    #[test]
    fn with_check_true_and_a_select_only_policy_are_violations() {
        let e = entry(
            vec![policy(PolicyCommand::All, Some(REFERENCE), Some("true"))],
            &["SELECT", "INSERT"],
        );
        let v = violations(&e);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("WITH CHECK is trivially true"), "{v:?}");
        let e = entry(
            vec![policy(PolicyCommand::Select, Some(REFERENCE), None)],
            &["SELECT", "INSERT", "UPDATE"],
        );
        let v = violations(&e);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|d| d.contains("wrong command")), "{v:?}");
    }

    #[test]
    fn unforced_unenabled_and_uncovered_tables_are_violations() {
        let mut e = entry(vec![], &["SELECT"]);
        e.rls_enabled = false;
        e.rls_forced = false;
        e.runtime_has_owner_privileges = true;
        let v = violations(&e);
        assert!(v[0].contains("not enabled"), "{v:?}");
        assert!(
            v[1].contains("not forced") && v[1].contains("owner's privileges"),
            "{v:?}"
        );
        assert!(v[2].contains("has no policy"), "{v:?}");
        let mut admin_only = policy(PolicyCommand::All, Some(REFERENCE), None);
        admin_only.applies_to_runtime = false;
        admin_only.roles = vec!["migration_owner".into()];
        let v = violations(&entry(vec![admin_only], &[]));
        assert!(v[0].contains("no permissive policy"), "{v:?}");
    }

    #[test]
    fn readable_views_need_security_invoker_and_matviews_always_leak() {
        let mut view = entry(vec![], &["SELECT"]);
        view.kind = RelationKind::View;
        assert!(violations(&view)[0].contains("without security_invoker"));
        let old = check_entry(&view, &Subject::reference(), 140010);
        assert!(old[0].detail.contains("needs PostgreSQL 15"));
        view.security_invoker = true;
        assert!(violations(&view).is_empty());
        let mut matview = entry(vec![], &["SELECT"]);
        matview.kind = RelationKind::MaterializedView;
        assert_eq!(violations(&matview).len(), 1);
        matview.runtime_privileges.clear();
        assert!(violations(&matview).is_empty(), "not readable: no leak");
    }

    #[test]
    fn a_leaf_partition_the_runtime_cannot_touch_is_governed_by_its_parent() {
        let mut leaf = entry(vec![], &[]);
        leaf.rls_enabled = false;
        leaf.partition_of = Some("public.parent".into());
        assert!(violations(&leaf).is_empty());
        leaf.runtime_privileges = vec!["SELECT".into()];
        assert!(
            !violations(&leaf).is_empty(),
            "readable directly: must be covered"
        );
    }
}
