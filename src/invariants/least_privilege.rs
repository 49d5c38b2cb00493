//! `least-privilege`: the runtime's effective privileges equal the declared matrix exactly.
//!
//! Read as the oracle about the runtime role, never as it. The [`PrivilegeMatrix`](crate::catalog::privileges::PrivilegeMatrix) holds the
//! runtime's *effective* privileges (`has_*_privilege`, so grants through role membership and to
//! PUBLIC count) on every relation, sequence, function and schema of the subject's schemas and on
//! the current database, next to what [`ExpectedPrivileges`](crate::subject::ExpectedPrivileges)
//! declares. [`check`] turns every row into an observation and adds what the matrix cannot show:
//! column-level grants, default privileges that would hand future objects to the runtime, role
//! attributes, memberships (predefined roles such as `pg_read_all_data` included) and ownership.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use crate::catalog::privileges::{
    Attributes, ObjectKind, PrivilegeEntry, matrix, normalized, runtime_attributes,
};
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Status};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::LeastPrivilege;

/// The observation a matrix row makes about `runtime`.
fn observation(entry: &PrivilegeEntry, runtime: &str) -> Observation {
    let target = entry.object_kind.describe(&entry.object);
    let privilege = &entry.privilege;
    let function = match entry.object_kind {
        ObjectKind::Relation => "table",
        other => other.as_str(),
    };
    let probe = format!("catalog:has_{function}_privilege");
    let detail = match (entry.granted, entry.expected, entry.grantable) {
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
    let status = if entry.matches() {
        Status::Holds
    } else {
        Status::Violated
    };
    Observation::new(ID, status, probe, detail).on(entry.object.clone())
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
        .map(|e| observation(e, runtime))
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
    use crate::catalog::privileges::entry;

    #[test]
    fn rows_read_as_the_reports_say() {
        let mut extra = entry(ObjectKind::Relation, "public.x", "TRUNCATE", true);
        assert_eq!(
            observation(&extra, "app_user").detail,
            "app_user holds TRUNCATE on public.x, not declared"
        );
        extra.expected = true;
        extra.grantable = true;
        assert_eq!(observation(&extra, "app_user").status, Status::Violated);
        let mut missing = entry(
            ObjectKind::Relation,
            "public.llm_api_calls",
            "SELECT",
            false,
        );
        missing.expected = true;
        let o = observation(&missing, "app_user");
        assert_eq!(
            o.detail,
            "declared SELECT on public.llm_api_calls is missing"
        );
        assert_eq!(o.relation.as_deref(), Some("public.llm_api_calls"));
        let schema = entry(ObjectKind::Schema, "public", "CREATE", true);
        assert_eq!(
            observation(&schema, "app_user").detail,
            "app_user holds CREATE on schema public, not declared"
        );
    }

    #[test]
    fn builtin_defaults_restated_are_not_findings() {
        assert!(restates_builtin_default("f", "EXECUTE", "PUBLIC"));
        assert!(!restates_builtin_default("r", "SELECT", "PUBLIC"));
        assert!(!restates_builtin_default("f", "EXECUTE", "app_user"));
    }
}
