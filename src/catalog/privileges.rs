//! The runtime's effective privileges, read as the oracle about the runtime role, never as it:
//! the [`PrivilegeMatrix`] holds its privileges (`has_*_privilege`, so grants through role
//! membership and to PUBLIC count) on every relation, sequence, function and schema of the
//! subject's schemas and on the current database, next to what
//! [`ExpectedPrivileges`](crate::subject::ExpectedPrivileges) declares. `least-privilege` judges it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::subject::Subject;

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
    pub(crate) fn describe(self, object: &str) -> String {
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
/// subject's schemas (those an extension owns aside: they are not the application's) and on the
/// current database. Columns: kind, object, privilege, granted, grantable. `$1` is the runtime
/// role, `$2` the schemas.
const MATRIX_SQL: &str = "
WITH rt AS (SELECT oid FROM pg_roles WHERE rolname = $1)
SELECT 'relation', format('%I.%I', n.nspname, c.relname), p.privilege,
       has_table_privilege(rt.oid, c.oid, p.privilege),
       has_table_privilege(rt.oid, c.oid, p.privilege || ' WITH GRANT OPTION')
FROM rt, pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest($3::text[]) AS p(privilege)
WHERE n.nspname = ANY($2) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'sequence', format('%I.%I', n.nspname, c.relname), p.privilege,
       has_sequence_privilege(rt.oid, c.oid, p.privilege),
       has_sequence_privilege(rt.oid, c.oid, p.privilege || ' WITH GRANT OPTION')
FROM rt, pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest($4::text[]) AS p(privilege)
WHERE n.nspname = ANY($2) AND c.relkind = 'S'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
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
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = f.oid AND d.deptype = 'e')
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
pub(crate) fn normalize_privilege(privilege: &str) -> String {
    let p = privilege.trim().to_ascii_uppercase();
    if p == "TEMP" { "TEMPORARY".into() } else { p }
}

pub(crate) fn normalized(set: &BTreeSet<String>) -> BTreeSet<String> {
    set.iter().map(|p| normalize_privilege(p)).collect()
}

/// Merge what the catalog says the runtime holds with what `subject` declares: a row for every
/// privilege held or declared. `database` names the current database.
pub(crate) fn merge(
    held: Vec<PrivilegeEntry>,
    subject: &Subject,
    database: &str,
) -> PrivilegeMatrix {
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
pub(crate) struct Attributes {
    pub(crate) superuser: bool,
    pub(crate) bypassrls: bool,
    pub(crate) createdb: bool,
    pub(crate) createrole: bool,
    pub(crate) replication: bool,
}

pub(crate) async fn runtime_attributes(
    oracle: &Client,
    subject: &Subject,
) -> Result<Option<Attributes>> {
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

/// A matrix row for tests: `privilege` on `object`, granted or not, neither grantable nor
/// declared.
#[cfg(test)]
pub(crate) fn entry(
    kind: ObjectKind,
    object: &str,
    privilege: &str,
    granted: bool,
) -> PrivilegeEntry {
    PrivilegeEntry {
        object_kind: kind,
        object: object.into(),
        privilege: privilege.into(),
        granted,
        grantable: false,
        expected: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn temp_is_spelled_temporary() {
        assert_eq!(normalize_privilege(" temp "), "TEMPORARY");
        assert_eq!(normalize_privilege("select"), "SELECT");
    }
}
