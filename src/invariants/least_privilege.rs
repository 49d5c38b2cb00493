//! `least-privilege`: the runtime's effective privileges equal the declared matrix exactly.
//!
//! Read as the oracle about the runtime role, never as it. The [`PrivilegeMatrix`] holds the
//! runtime's *effective* privileges (`has_*_privilege`, so grants through role membership and to
//! PUBLIC count) on every relation, sequence, function and schema of the subject's schemas and on
//! the current database, next to what [`ExpectedPrivileges`](crate::invariants::ExpectedPrivileges)
//! declares. [`check`] turns every row into an observation and adds what the matrix cannot show:
//! column-level grants, default privileges that would hand future objects to the runtime, role
//! attributes, memberships (predefined roles such as `pg_read_all_data` included) and ownership.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Status, Subject};

const ID: InvariantId = InvariantId::LeastPrivilege;

/// The privileges checked on tables, views, materialized views and foreign tables.
pub const RELATION_PRIVILEGES: [&str; 7] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];
/// The privileges checked on sequences.
pub const SEQUENCE_PRIVILEGES: [&str; 3] = ["USAGE", "SELECT", "UPDATE"];
/// The privileges checked on functions and procedures.
pub const FUNCTION_PRIVILEGES: [&str; 1] = ["EXECUTE"];
/// The privileges checked on schemas.
pub const SCHEMA_PRIVILEGES: [&str; 2] = ["USAGE", "CREATE"];
/// The privileges checked on the database.
pub const DATABASE_PRIVILEGES: [&str; 3] = ["CONNECT", "CREATE", "TEMPORARY"];

/// The kind of object a privilege is held on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A table, partitioned table, view, materialized view or foreign table.
    Relation,
    /// A sequence.
    Sequence,
    /// A function or procedure.
    Function,
    /// A schema.
    Schema,
    /// The database.
    Database,
}

impl ObjectKind {
    /// The lower-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relation => "relation",
            Self::Sequence => "sequence",
            Self::Function => "function",
            Self::Schema => "schema",
            Self::Database => "database",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Relation,
            Self::Sequence,
            Self::Function,
            Self::Schema,
            Self::Database,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// How an object of this kind is named in a sentence: relations bare (`public.x`), the rest
    /// with their kind (`schema public`).
    fn describe(self, object: &str) -> String {
        match self {
            Self::Relation => object.to_string(),
            other => format!("{} {object}", other.as_str()),
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One privilege of the runtime on one object: held, declared, or both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrivilegeEntry {
    /// What kind of object.
    pub object_kind: ObjectKind,
    /// The object, schema-qualified and quoted where needed (`public.llm_api_calls`); functions
    /// as `regprocedure` text (`public.f(uuid,integer)`); schemas and the database by name.
    pub object: String,
    /// The privilege, upper case (`SELECT`, `EXECUTE`, `TEMPORARY`, ...).
    pub privilege: String,
    /// The runtime holds it (directly, through a role it inherits from, or through PUBLIC).
    pub granted: bool,
    /// The runtime holds it WITH GRANT OPTION (or as the owner).
    pub grantable: bool,
    /// The subject declares it.
    pub expected: bool,
}

impl PrivilegeEntry {
    /// True when what is held is what is declared, without grant option.
    pub fn matches(&self) -> bool {
        self.granted == self.expected && !self.grantable
    }

    /// The observation this row makes about `runtime`.
    fn observation(&self, runtime: &str) -> Observation {
        let target = self.object_kind.describe(&self.object);
        let privilege = &self.privilege;
        let function = match self.object_kind {
            ObjectKind::Relation => "table",
            other => other.as_str(),
        };
        let probe = format!("catalog:has_{function}_privilege");
        let detail = match (self.granted, self.expected, self.grantable) {
            (true, true, false) => format!("{runtime} holds {privilege} on {target} as declared"),
            (false, false, _) => format!("{runtime} does not hold {privilege} on {target}"),
            (true, false, false) => {
                format!("{runtime} holds {privilege} on {target}, not declared")
            }
            (true, false, true) => {
                format!("{runtime} holds {privilege} on {target} WITH GRANT OPTION, not declared")
            }
            (true, true, true) => format!(
                "{runtime} holds declared {privilege} on {target} WITH GRANT OPTION: it can pass it on"
            ),
            (false, true, _) => format!("declared {privilege} on {target} is missing"),
        };
        let status = if self.matches() {
            Status::Holds
        } else {
            Status::Violated
        };
        Observation::new(ID, status, probe, detail).on(self.object.clone())
    }
}

/// The runtime's effective privileges next to the declared ones: a row for every privilege that
/// is granted or expected, sorted by kind, object and privilege.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivilegeMatrix {
    /// The rows.
    pub entries: Vec<PrivilegeEntry>,
}

impl PrivilegeMatrix {
    /// The rows where what is held differs from what is declared (or carries a grant option).
    pub fn differences(&self) -> impl Iterator<Item = &PrivilegeEntry> {
        self.entries.iter().filter(|e| !e.matches())
    }

    /// The row of `privilege` on `object` of `kind`, if the matrix has one.
    pub fn get(&self, kind: ObjectKind, object: &str, privilege: &str) -> Option<&PrivilegeEntry> {
        self.entries
            .iter()
            .find(|e| e.object_kind == kind && e.object == object && e.privilege == privilege)
    }
}

/// The runtime's effective privileges, as `has_*_privilege` answers, on every object of the
/// subject's schemas and on the current database. Columns: kind, object, privilege, granted,
/// grantable. `$1` is the runtime role, `$2` the schemas.
const MATRIX_SQL: &str = "
WITH rt AS (SELECT oid FROM pg_roles WHERE rolname = $1)
SELECT 'relation', format('%I.%I', n.nspname, c.relname), p.privilege,
       has_table_privilege(rt.oid, c.oid, p.privilege),
       has_table_privilege(rt.oid, c.oid, p.privilege || ' WITH GRANT OPTION')
FROM rt, pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest($3::text[]) AS p(privilege)
WHERE n.nspname = ANY($2) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT 'sequence', format('%I.%I', n.nspname, c.relname), p.privilege,
       has_sequence_privilege(rt.oid, c.oid, p.privilege),
       has_sequence_privilege(rt.oid, c.oid, p.privilege || ' WITH GRANT OPTION')
FROM rt, pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest($4::text[]) AS p(privilege)
WHERE n.nspname = ANY($2) AND c.relkind = 'S'
UNION ALL
SELECT 'function',
       format('%I.%I(%s)', n.nspname, f.proname,
              coalesce((SELECT string_agg(format_type(a.t, NULL), ',' ORDER BY a.o)
                        FROM unnest(f.proargtypes) WITH ORDINALITY AS a(t, o)), '')),
       'EXECUTE',
       has_function_privilege(rt.oid, f.oid, 'EXECUTE'),
       has_function_privilege(rt.oid, f.oid, 'EXECUTE WITH GRANT OPTION')
FROM rt, pg_proc f
JOIN pg_namespace n ON n.oid = f.pronamespace
WHERE n.nspname = ANY($2)
UNION ALL
SELECT 'schema', format('%I', n.nspname), p.privilege,
       has_schema_privilege(rt.oid, n.oid, p.privilege),
       has_schema_privilege(rt.oid, n.oid, p.privilege || ' WITH GRANT OPTION')
FROM rt, pg_namespace n
CROSS JOIN unnest($5::text[]) AS p(privilege)
WHERE n.nspname = ANY($2)
UNION ALL
SELECT 'database', format('%I', d.datname), p.privilege,
       has_database_privilege(rt.oid, d.oid, p.privilege),
       has_database_privilege(rt.oid, d.oid, p.privilege || ' WITH GRANT OPTION')
FROM rt, pg_database d
CROSS JOIN unnest($6::text[]) AS p(privilege)
WHERE d.datname = current_database()";

/// A privilege name as `has_*_privilege` spells it (`TEMP` is `TEMPORARY`).
fn normalize_privilege(privilege: &str) -> String {
    let p = privilege.trim().to_ascii_uppercase();
    if p == "TEMP" { "TEMPORARY".into() } else { p }
}

fn normalized(set: &BTreeSet<String>) -> BTreeSet<String> {
    set.iter().map(|p| normalize_privilege(p)).collect()
}

/// Merge what the catalog says the runtime holds with what `subject` declares: a row for every
/// privilege held or declared. `database` names the current database.
fn merge(held: Vec<PrivilegeEntry>, subject: &Subject, database: &str) -> PrivilegeMatrix {
    let e = &subject.expected;
    let mut declared: BTreeSet<(ObjectKind, String, String)> = BTreeSet::new();
    let per_object = [
        (ObjectKind::Relation, &e.relations),
        (ObjectKind::Sequence, &e.sequences),
        (ObjectKind::Function, &e.functions),
        (ObjectKind::Schema, &e.schemas),
    ];
    for (kind, map) in per_object {
        for (object, privileges) in map {
            for p in normalized(privileges) {
                declared.insert((kind, object.clone(), p));
            }
        }
    }
    for p in normalized(&e.database) {
        declared.insert((ObjectKind::Database, database.to_string(), p));
    }
    let mut rows: BTreeMap<(ObjectKind, String, String), PrivilegeEntry> = BTreeMap::new();
    for mut entry in held {
        let key = (
            entry.object_kind,
            entry.object.clone(),
            entry.privilege.clone(),
        );
        entry.expected = declared.contains(&key);
        if entry.granted || entry.grantable || entry.expected {
            rows.insert(key, entry);
        }
    }
    for (kind, object, privilege) in declared {
        let key = (kind, object.clone(), privilege.clone());
        rows.entry(key).or_insert(PrivilegeEntry {
            object_kind: kind,
            object,
            privilege,
            granted: false,
            grantable: false,
            expected: true,
        });
    }
    PrivilegeMatrix {
        entries: rows.into_values().collect(),
    }
}

/// The runtime's effective privileges next to the declared ones (see [`PrivilegeMatrix`]).
///
/// Relations (tables, partitioned tables, views, materialized views, foreign tables), sequences,
/// functions and procedures of `subject.schemas`, those schemas, and the current database. PUBLIC's
/// default EXECUTE on functions counts as granted.
///
/// # Errors
/// A config error when the runtime role does not exist, a database error when the catalog
/// cannot be read.
pub async fn matrix(oracle: &Client, subject: &Subject) -> Result<PrivilegeMatrix> {
    if runtime_attributes(oracle, subject).await?.is_none() {
        return Err(Error::config(format!(
            "reading the privilege matrix: the runtime role {} does not exist on this server; \
             create it or name the right role in the subject",
            subject.runtime_role
        )));
    }
    let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let rows = oracle
        .query(
            MATRIX_SQL,
            &[
                &subject.runtime_role,
                &subject.schemas,
                &list(&RELATION_PRIVILEGES),
                &list(&SEQUENCE_PRIVILEGES),
                &list(&SCHEMA_PRIVILEGES),
                &list(&DATABASE_PRIVILEGES),
            ],
        )
        .await
        .map_err(|e| Error::database("reading the runtime's effective privileges", e))?;
    let database: String = oracle
        .query_one("SELECT format('%I', current_database())", &[])
        .await
        .map_err(|e| Error::database("reading the current database", e))?
        .get(0);
    let held = rows
        .iter()
        .filter_map(|r| {
            Some(PrivilegeEntry {
                object_kind: ObjectKind::parse(r.get::<_, &str>(0))?,
                object: r.get(1),
                privilege: r.get(2),
                granted: r.get(3),
                grantable: r.get(4),
                expected: false,
            })
        })
        .collect();
    Ok(merge(held, subject, &database))
}

/// The role attributes a runtime must not have.
#[derive(Debug, Clone, Copy)]
struct Attributes {
    superuser: bool,
    bypassrls: bool,
    createdb: bool,
    createrole: bool,
    replication: bool,
}

async fn runtime_attributes(oracle: &Client, subject: &Subject) -> Result<Option<Attributes>> {
    let row = oracle
        .query_opt(
            "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolreplication
             FROM pg_roles WHERE rolname = $1",
            &[&subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("reading the runtime role's attributes", e))?;
    Ok(row.map(|r| Attributes {
        superuser: r.get(0),
        bypassrls: r.get(1),
        createdb: r.get(2),
        createrole: r.get(3),
        replication: r.get(4),
    }))
}

/// Check that the runtime holds exactly the declared privileges and nothing that would widen
/// them: one observation per [`matrix`] row, then column-level grants, default privileges, role
/// attributes, memberships and ownership. When the runtime role does not exist, the single
/// observation says so.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn check(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let runtime = subject.runtime_role.as_str();
    let Some(attributes) = runtime_attributes(oracle, subject).await? else {
        return Ok(vec![
            Observation::violated(
                ID,
                "catalog:pg_roles",
                format!("the runtime role {runtime} does not exist"),
            )
            .on(runtime),
        ]);
    };
    let mut out: Vec<Observation> = matrix(oracle, subject)
        .await?
        .entries
        .iter()
        .map(|e| e.observation(runtime))
        .collect();
    out.extend(column_privileges(oracle, subject).await?);
    out.extend(default_privileges(oracle, subject).await?);
    out.extend(role_attributes(runtime, attributes));
    out.extend(memberships(oracle, subject).await?);
    out.extend(ownership(oracle, subject).await?);
    Ok(out)
}

/// Column-level grants to the runtime, a role it is a member of, or PUBLIC. A column grant is
/// covered when the same privilege is declared on the whole relation (it then adds nothing).
async fn column_privileges(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let rows = oracle
        .query(
            "WITH rt AS (SELECT oid FROM pg_roles WHERE rolname = $1)
             SELECT format('%I.%I', n.nspname, c.relname), format('%I', a.attname),
                    x.privilege_type, x.is_grantable,
                    CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END
             FROM rt, pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL aclexplode(a.attacl) AS x
             WHERE n.nspname = ANY($2) AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attacl IS NOT NULL
               AND (x.grantee = 0 OR pg_has_role(rt.oid, x.grantee, 'MEMBER'))
             ORDER BY 1, 2, 3, 5",
            &[&subject.runtime_role, &subject.schemas],
        )
        .await
        .map_err(|e| Error::database("reading column-level privileges", e))?;
    let runtime = &subject.runtime_role;
    let mut out = Vec::new();
    for r in rows {
        let relation: String = r.get(0);
        let column: String = r.get(1);
        let privilege: String = r.get(2);
        let grantable: bool = r.get(3);
        let grantee: String = r.get(4);
        let via = if &grantee == runtime {
            String::new()
        } else {
            format!(" through {grantee}")
        };
        let declared = normalized(&subject.expected.on_relation(&relation)).contains(&privilege);
        let detail = if grantable {
            format!(
                "{runtime} holds column-level {privilege} on {relation} ({column}){via} WITH GRANT OPTION"
            )
        } else {
            format!(
                "{runtime} holds column-level {privilege} on {relation} ({column}){via}, not declared"
            )
        };
        out.push(
            Observation::expect(
                ID,
                declared && !grantable,
                "catalog:column_privileges",
                detail,
            )
            .on(relation),
        );
    }
    if out.is_empty() {
        out.push(Observation::new(
            ID,
            Status::Holds,
            "catalog:column_privileges",
            format!("no column-level grant reaches {runtime}"),
        ));
    }
    Ok(out)
}

/// What `pg_default_acl.defaclobjtype` hands out, in words.
fn default_acl_objects(objtype: &str) -> &'static str {
    match objtype {
        "r" => "tables",
        "S" => "sequences",
        "f" => "functions",
        "T" => "types",
        "n" => "schemas",
        _ => "objects",
    }
}

/// True for a default-privilege item that only restates a built-in default (EXECUTE on
/// functions and USAGE on types for PUBLIC): whether an existing function is executable is
/// checked on the function itself.
fn restates_builtin_default(objtype: &str, privilege: &str, grantee: &str) -> bool {
    grantee == "PUBLIC" && matches!((objtype, privilege), ("f", "EXECUTE") | ("T", "USAGE"))
}

/// Default privileges that hand objects created in the future to the runtime, a role it is a
/// member of, or PUBLIC.
async fn default_privileges(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let rows = oracle
        .query(
            "WITH rt AS (SELECT oid FROM pg_roles WHERE rolname = $1)
             SELECT pg_get_userbyid(d.defaclrole)::text, coalesce(format('%I', n.nspname), ''),
                    d.defaclobjtype::text, x.privilege_type, x.is_grantable,
                    CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END
             FROM rt, pg_default_acl d
             LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
             CROSS JOIN LATERAL aclexplode(d.defaclacl) AS x
             WHERE x.grantee = 0 OR pg_has_role(rt.oid, x.grantee, 'MEMBER')
             ORDER BY 1, 2, 3, 6, 4",
            &[&subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("reading default privileges", e))?;
    let runtime = &subject.runtime_role;
    let mut out = Vec::new();
    for r in rows {
        let creator: String = r.get(0);
        let schema: String = r.get(1);
        let objtype: String = r.get(2);
        let privilege: String = r.get(3);
        let grantable: bool = r.get(4);
        let grantee: String = r.get(5);
        if restates_builtin_default(&objtype, &privilege, &grantee) {
            continue;
        }
        let scope = if schema.is_empty() {
            "in every schema".to_string()
        } else {
            format!("in schema {schema}")
        };
        let to = if &grantee == runtime {
            runtime.clone()
        } else {
            format!("{grantee} (and so to {runtime})")
        };
        let option = if grantable { " WITH GRANT OPTION" } else { "" };
        let mut observation = Observation::violated(
            ID,
            "catalog:pg_default_acl",
            format!(
                "default privileges of {creator} {scope} hand {privilege}{option} on future {} to {to}",
                default_acl_objects(&objtype)
            ),
        );
        if !schema.is_empty() {
            observation = observation.on(schema);
        }
        out.push(observation);
    }
    if out.is_empty() {
        out.push(Observation::new(
            ID,
            Status::Holds,
            "catalog:pg_default_acl",
            format!("no default privilege hands future objects to {runtime}"),
        ));
    }
    Ok(out)
}

/// One observation per role attribute the runtime must not have.
fn role_attributes(runtime: &str, a: Attributes) -> Vec<Observation> {
    [
        ("rolsuper", "SUPERUSER", a.superuser),
        ("rolbypassrls", "BYPASSRLS", a.bypassrls),
        ("rolcreatedb", "CREATEDB", a.createdb),
        ("rolcreaterole", "CREATEROLE", a.createrole),
        ("rolreplication", "REPLICATION", a.replication),
    ]
    .into_iter()
    .map(|(column, attribute, set)| {
        let probe = format!("catalog:pg_roles.{column}");
        if set {
            Observation::violated(ID, probe, format!("{runtime} has {attribute}"))
        } else {
            Observation::new(
                ID,
                Status::Holds,
                probe,
                format!("{runtime} is NO{attribute}"),
            )
        }
        .on(runtime)
    })
    .collect()
}

/// Every role the runtime is a member of (directly or not, predefined roles included) must be
/// declared, and every declared membership must be there.
async fn memberships(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let rows = oracle
        .query(
            "SELECT r.rolname::text FROM pg_roles r
             WHERE r.rolname <> $1 AND pg_has_role($1, r.oid, 'MEMBER')
             ORDER BY 1",
            &[&subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("reading the runtime's role memberships", e))?;
    let held: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let declared = &subject.expected.memberships;
    let runtime = &subject.runtime_role;
    let probe = "catalog:pg_has_role";
    let mut out = Vec::new();
    for role in held.union(declared) {
        let observation = match (held.contains(role), declared.contains(role)) {
            (true, true) => Observation::new(
                ID,
                Status::Holds,
                probe,
                format!("{runtime} is a member of {role} as declared"),
            ),
            (true, false) => Observation::violated(
                ID,
                probe,
                format!(
                    "{runtime} is a member of {role}, not declared: it has {role}'s privileges or can SET ROLE to it"
                ),
            ),
            _ => Observation::violated(
                ID,
                probe,
                format!("declared membership of {runtime} in {role} is missing"),
            ),
        };
        out.push(observation.on(role.clone()));
    }
    if out.is_empty() {
        out.push(Observation::new(
            ID,
            Status::Holds,
            probe,
            format!("{runtime} is a member of no role, as declared"),
        ));
    }
    Ok(out)
}

/// The runtime must own nothing in the subject's schemas, neither itself nor through a role
/// whose privileges it has. Indexes and TOAST tables follow their table and are not listed.
async fn ownership(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let rows = oracle
        .query(
            "WITH rt AS (SELECT oid FROM pg_roles WHERE rolname = $1)
             SELECT o.kind, o.name, pg_get_userbyid(o.owner)::text
             FROM rt, (
                 SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                            WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                            WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence'
                            WHEN 'c' THEN 'composite type' ELSE 'relation' END AS kind,
                        format('%I.%I', n.nspname, c.relname) AS name, c.relowner AS owner
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = ANY($2) AND c.relkind NOT IN ('i', 'I', 't')
                 UNION ALL
                 SELECT CASE f.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                            ELSE 'function' END,
                        format('%I.%I(%s)', n.nspname, f.proname,
                               coalesce((SELECT string_agg(format_type(a.t, NULL), ',' ORDER BY a.o)
                                         FROM unnest(f.proargtypes) WITH ORDINALITY AS a(t, o)), '')),
                        f.proowner
                 FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
                 WHERE n.nspname = ANY($2)
                 UNION ALL
                 SELECT 'schema', format('%I', n.nspname), n.nspowner
                 FROM pg_namespace n WHERE n.nspname = ANY($2)
                 UNION ALL
                 SELECT 'type', format('%I.%I', n.nspname, t.typname), t.typowner
                 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname = ANY($2) AND t.typrelid = 0
                   AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
             ) AS o
             WHERE pg_has_role(rt.oid, o.owner, 'USAGE')
             ORDER BY 2, 1",
            &[&subject.runtime_role, &subject.schemas],
        )
        .await
        .map_err(|e| Error::database("reading what the runtime owns", e))?;
    let runtime = &subject.runtime_role;
    let mut out: Vec<Observation> = rows
        .iter()
        .map(|r| {
            let kind: String = r.get(0);
            let name: String = r.get(1);
            let owner: String = r.get(2);
            let detail = if &owner == runtime {
                format!("{runtime} owns {kind} {name}")
            } else {
                format!("{kind} {name} is owned by {owner}, whose privileges {runtime} has")
            };
            Observation::violated(ID, "catalog:ownership", detail).on(name)
        })
        .collect();
    if out.is_empty() {
        out.push(Observation::new(
            ID,
            Status::Holds,
            "catalog:ownership",
            format!(
                "{runtime} owns nothing in {} (nor does any role whose privileges it has)",
                subject.schemas.join(", ")
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: ObjectKind, object: &str, privilege: &str, granted: bool) -> PrivilegeEntry {
        PrivilegeEntry {
            object_kind: kind,
            object: object.into(),
            privilege: privilege.into(),
            granted,
            grantable: false,
            expected: false,
        }
    }

    #[test]
    fn the_merged_matrix_shows_differences_both_ways_and_is_sorted() {
        let subject = Subject::reference();
        let held = vec![
            entry(
                ObjectKind::Relation,
                "public.llm_api_calls",
                "TRUNCATE",
                true,
            ),
            entry(ObjectKind::Relation, "public.llm_api_calls", "INSERT", true),
            entry(ObjectKind::Relation, "public.tenants", "DELETE", false),
            entry(ObjectKind::Database, "db", "CONNECT", true),
            entry(ObjectKind::Schema, "public", "USAGE", true),
        ];
        let m = merge(held, &subject, "db");
        let mut sorted = m.entries.clone();
        sorted.sort();
        assert_eq!(
            m.entries, sorted,
            "rows come sorted by kind, object, privilege"
        );
        assert!(
            m.get(ObjectKind::Relation, "public.tenants", "DELETE")
                .is_none(),
            "neither held nor declared: no row"
        );
        let truncate = m
            .get(ObjectKind::Relation, "public.llm_api_calls", "TRUNCATE")
            .unwrap();
        assert!(truncate.granted && !truncate.expected);
        let select = m
            .get(ObjectKind::Relation, "public.llm_api_calls", "SELECT")
            .unwrap();
        assert!(!select.granted && select.expected, "declared but missing");
        assert!(
            m.get(ObjectKind::Database, "db", "CONNECT")
                .unwrap()
                .matches()
        );
        let differences: Vec<_> = m
            .differences()
            .filter(|e| e.object == "public.llm_api_calls")
            .map(|e| e.privilege.as_str())
            .collect();
        assert_eq!(differences, ["SELECT", "TRUNCATE"]);
    }

    #[test]
    fn rows_read_as_the_reports_say() {
        let mut extra = entry(ObjectKind::Relation, "public.x", "TRUNCATE", true);
        assert_eq!(
            extra.observation("app_user").detail,
            "app_user holds TRUNCATE on public.x, not declared"
        );
        extra.expected = true;
        extra.grantable = true;
        assert_eq!(extra.observation("app_user").status, Status::Violated);
        let mut missing = entry(
            ObjectKind::Relation,
            "public.llm_api_calls",
            "SELECT",
            false,
        );
        missing.expected = true;
        let o = missing.observation("app_user");
        assert_eq!(
            o.detail,
            "declared SELECT on public.llm_api_calls is missing"
        );
        assert_eq!(o.relation.as_deref(), Some("public.llm_api_calls"));
        let schema = entry(ObjectKind::Schema, "public", "CREATE", true);
        assert_eq!(
            schema.observation("app_user").detail,
            "app_user holds CREATE on schema public, not declared"
        );
    }

    #[test]
    fn temp_is_spelled_temporary() {
        assert_eq!(normalize_privilege(" temp "), "TEMPORARY");
        assert_eq!(normalize_privilege("select"), "SELECT");
    }

    #[test]
    fn builtin_defaults_restated_are_not_findings() {
        assert!(restates_builtin_default("f", "EXECUTE", "PUBLIC"));
        assert!(!restates_builtin_default("r", "SELECT", "PUBLIC"));
        assert!(!restates_builtin_default("f", "EXECUTE", "app_user"));
    }
}
