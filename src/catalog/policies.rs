//! The policy catalogue: every tenant relation of the subject's schemas with its row-level
//! security (enabled, forced), its policies (mode, command, roles, USING, WITH CHECK) and what
//! the runtime may do with it, read as the oracle. The evidence pack prints it; `rls-coverage`
//! judges it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::catalog::{self, Relation};
use crate::error::{Error, Result};
use crate::subject::Subject;

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

    /// The commands the policy governs (`ALL`: each of the four).
    pub(crate) fn commands(self) -> Vec<&'static str> {
        match self {
            Self::All => vec!["SELECT", "INSERT", "UPDATE", "DELETE"],
            one => vec![one.as_str()],
        }
    }

    /// True when the policy's USING filters rows for this command.
    pub(crate) fn filters_rows(self) -> bool {
        !matches!(self, Self::Insert)
    }

    /// True when the policy checks new rows for this command (WITH CHECK, else USING).
    pub(crate) fn checks_rows(self) -> bool {
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
    pub(crate) fn runtime_can(&self, privilege: &str) -> bool {
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
    let mut policies = policies(oracle, &subject.schemas, &subject.runtime_role).await?;
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

/// The row-level-security policies of every relation of `schemas`, by relation
/// (schema-qualified, quoted where needed), each relation's by name; `applies_to_runtime` about
/// `runtime_role`.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn policies(
    oracle: &Client,
    schemas: &[String],
    runtime_role: &str,
) -> Result<BTreeMap<String, Vec<Policy>>> {
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
            &[&schemas, &runtime_role],
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
    Ok(policies)
}

/// A function of the database, as the classifier of policy expressions reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSource {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Its definition (`pg_get_functiondef`), for SQL and PL/pgSQL functions; `None` for a
    /// function whose body rlsgate cannot read (C, another language).
    pub definition: Option<String>,
}

/// Every function and procedure outside the system schemas, with the definitions of those
/// written in SQL or PL/pgSQL: what tells a policy that reads the tenant context through a
/// helper function (any schema, any nesting) from one that does not.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn function_sources(oracle: &Client) -> Result<Vec<FunctionSource>> {
    Ok(oracle
        .query(
            "SELECT n.nspname::text, p.proname::text,
                    CASE WHEN l.lanname IN ('sql', 'plpgsql') THEN pg_get_functiondef(p.oid) END
             FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             JOIN pg_language l ON l.oid = p.prolang
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND p.prokind IN ('f', 'p')
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| Error::database("reading the functions policies may call", e))?
        .iter()
        .map(|r| FunctionSource {
            schema: r.get(0),
            name: r.get(1),
            definition: r.get(2),
        })
        .collect())
}
