//! `runtime-identity`: every worker connection is the runtime role, and the schema was applied
//! and is owned by the admin role.
//!
//! Three checks: [`check_connections`] asks each worker connection who it is;
//! [`check_role`] reads the runtime and admin roles' attributes as the oracle;
//! [`check_migrations`] reads who applied each migration and who owns each relation.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Status, Undecided};
use crate::migrations;
use crate::refusal::{Refusal, Refused};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::RuntimeIdentity;

/// Check that on every connection of `clients` (the worker's pooled connections, the DLQ
/// writer's included) both `current_user` and `session_user` are the runtime role. One
/// observation per connection, about `connection <i>`; inconclusive when `clients` is empty.
///
/// # Errors
/// A database error when a connection cannot answer.
pub async fn check_connections(clients: &[&Client], subject: &Subject) -> Result<Vec<Observation>> {
    let runtime = &subject.runtime_role;
    if clients.is_empty() {
        return Ok(vec![Observation::inconclusive(
            ID,
            Undecided::NothingToCheck,
            "session:current_user",
            "no worker connection to check",
        )]);
    }
    let mut out = Vec::with_capacity(clients.len());
    for (i, client) in clients.iter().enumerate() {
        let row = match client
            .query_one("SELECT current_user::text, session_user::text", &[])
            .await
        {
            Ok(row) => row,
            // Lost under the probe (a fault killed its backend): undecided, the others go on.
            Err(e) if Refused::of(&e).kind == Refusal::LostConnection => {
                out.push(
                    Observation::inconclusive(
                        ID,
                        Undecided::Interrupted,
                        "session:current_user",
                        format!("worker connection {i} was lost before it could answer: {e}"),
                    )
                    .on(format!("connection {i}")),
                );
                continue;
            }
            Err(e) => {
                return Err(Error::database(
                    format!("asking worker connection {i} who it is"),
                    e,
                ));
            }
        };
        let current: String = row.get(0);
        let session: String = row.get(1);
        let observation = if &current == runtime && &session == runtime {
            Observation::new(
                ID,
                Status::Holds,
                "session:current_user",
                format!("worker connection {i} runs as {runtime}"),
            )
        } else if current == session {
            Observation::violated(
                ID,
                "session:current_user",
                format!("worker connection {i} runs as {current}, not {runtime}"),
            )
        } else {
            Observation::violated(
                ID,
                "session:current_user",
                format!(
                    "worker connection {i} runs as {current} (logged in as {session}), not {runtime}"
                ),
            )
        };
        out.push(observation.on(format!("connection {i}")));
    }
    Ok(out)
}

/// The attributes of one role that the identity checks read.
struct RoleRow {
    login: bool,
    superuser: bool,
    bypassrls: bool,
}

async fn role(oracle: &Client, name: &str) -> Result<Option<RoleRow>> {
    let row = oracle
        .query_opt(
            "SELECT rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .map_err(|e| Error::database(format!("reading the attributes of role {name}"), e))?;
    Ok(row.map(|r| RoleRow {
        login: r.get(0),
        superuser: r.get(1),
        bypassrls: r.get(2),
    }))
}

/// Check the two roles: the runtime exists, can log in, is not the admin role, and is neither
/// superuser nor BYPASSRLS; the admin role exists and is neither superuser nor BYPASSRLS
/// (docs/system.md section 1).
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn check_role(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let runtime = subject.runtime_role.as_str();
    let admin = subject.admin_role.as_str();
    let mut out = vec![judge(
        runtime != admin,
        "subject:roles",
        format!("the runtime role {runtime} is not the admin role {admin}"),
        format!("the runtime role is the admin role {admin}: the runtime owns the schema"),
    )];
    match role(oracle, runtime).await? {
        None => out.push(
            Observation::violated(
                ID,
                "catalog:pg_roles",
                format!("the runtime role {runtime} does not exist"),
            )
            .on(runtime),
        ),
        Some(r) => out.extend([
            judge(
                r.login,
                "catalog:pg_roles.rolcanlogin",
                format!("the runtime role {runtime} can LOGIN"),
                format!("the runtime role {runtime} cannot LOGIN: workers must log in as it"),
            )
            .on(runtime),
            judge(
                !r.superuser,
                "catalog:pg_roles.rolsuper",
                format!("the runtime role {runtime} is NOSUPERUSER"),
                format!("the runtime role {runtime} is SUPERUSER"),
            )
            .on(runtime),
            judge(
                !r.bypassrls,
                "catalog:pg_roles.rolbypassrls",
                format!("the runtime role {runtime} is NOBYPASSRLS"),
                format!("the runtime role {runtime} has BYPASSRLS"),
            )
            .on(runtime),
        ]),
    }
    match role(oracle, admin).await? {
        None => out.push(
            Observation::violated(
                ID,
                "catalog:pg_roles",
                format!("the admin role {admin} does not exist"),
            )
            .on(admin),
        ),
        Some(r) => out.extend([
            judge(
                !r.superuser,
                "catalog:pg_roles.rolsuper",
                format!("the admin role {admin} is NOSUPERUSER"),
                format!("the admin role {admin} is SUPERUSER: it should be NOSUPERUSER"),
            )
            .on(admin),
            judge(
                !r.bypassrls,
                "catalog:pg_roles.rolbypassrls",
                format!("the admin role {admin} is NOBYPASSRLS"),
                format!(
                    "the admin role {admin} has BYPASSRLS: it should be NOBYPASSRLS so forced RLS filters it too"
                ),
            )
            .on(admin),
        ]),
    }
    Ok(out)
}

/// Holds with `held` when `ok`, else violated with `broken`.
fn judge(ok: bool, probe: &str, held: String, broken: String) -> Observation {
    if ok {
        Observation::new(ID, Status::Holds, probe, held)
    } else {
        Observation::violated(ID, probe, broken)
    }
}

/// Check that the schema is the admin role's. When `public.rlsgate_migrations` records who
/// applied each migration (rlsgate applied them), every file must have been applied by the
/// admin role. Whether or not it does, the catalog decides who the schema belongs to, as it
/// must for a database some other tool migrated: every relation (sequences included; indexes
/// follow their table) and every function of the subject's schemas is owned by the admin role
/// (an extension's members aside), each subject schema by the admin role or a superuser (or
/// `pg_database_owner` of a database one of them owns), and the runtime holds CREATE on none.
/// One observation per object; inconclusive when there is nothing in the schemas at all.
///
/// # Errors
/// A database error when the ledger or the catalog cannot be read.
pub async fn check_migrations(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let mut out = ledger(oracle, subject).await?;
    let owned = owners(oracle, subject).await?;
    if owned.is_empty() {
        out.push(Observation::inconclusive(
            ID,
            Undecided::NothingToCheck,
            "catalog:owner",
            format!(
                "schema(s) {} hold nothing: cannot tell who the schema belongs to",
                subject.schemas.join(", ")
            ),
        ));
    }
    out.extend(owned);
    out.extend(schemas(oracle, subject).await?);
    Ok(out)
}

/// One observation per migration recorded in rlsgate's ledger (nothing without one: the
/// catalog decides then).
async fn ledger(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let admin = &subject.admin_role;
    let probe = "catalog:rlsgate_migrations.applied_by";
    let ledger = format!("{}.{}", migrations::SCHEMA, migrations::TABLE);
    let exists: bool = oracle
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&ledger])
        .await
        .map_err(|e| Error::database(format!("looking for {ledger}"), e))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    Ok(migrations::applied_by(oracle)
        .await?
        .into_iter()
        .map(|(file, by)| {
            judge(
                &by == admin,
                probe,
                format!("{file} was applied by {admin}"),
                format!("migration {file} was applied by {by}, not by the admin role {admin}"),
            )
            .on(file)
        })
        .collect())
}

/// The owner of every relation and function of the subject's schemas (extension members
/// aside) against the admin role.
async fn owners(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let admin = &subject.admin_role;
    let rows = oracle
        .query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname), pg_get_userbyid(c.relowner)::text,
                        CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                             WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                             WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence' END, 'relowner'
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype = 'e')
                 UNION ALL
                 SELECT {}, pg_get_userbyid(p.proowner)::text,
                        CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END, 'proowner'
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                   AND d.objid = p.oid AND d.deptype = 'e')
                 ORDER BY 4 DESC, 1",
                crate::catalog::function_name_sql("p")
            ),
            &[&subject.schemas],
        )
        .await
        .map_err(|e| Error::database("reading the owners of the schema's objects", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let (name, owner, kind, column): (String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            judge(
                &owner == admin,
                &format!("catalog:{column}"),
                format!("{kind} {name} is owned by {admin}"),
                format!("{kind} {name} is owned by {owner}, not by the admin role {admin}"),
            )
            .on(name)
        })
        .collect())
}

/// Each subject schema: owned by the admin role or a superuser (`pg_database_owner` stands for
/// the database's owner), and the runtime cannot CREATE in it (it could have applied DDL).
async fn schemas(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let (admin, runtime) = (&subject.admin_role, &subject.runtime_role);
    let rows = oracle
        .query(
            "SELECT n.nspname::text, o.rolname::text,
                    CASE WHEN o.rolname = 'pg_database_owner' THEN d.rolname ELSE o.rolname END::text,
                    CASE WHEN o.rolname = 'pg_database_owner' THEN d.rolsuper ELSE o.rolsuper END,
                    coalesce((SELECT has_schema_privilege(r.oid, n.oid, 'CREATE')
                              FROM pg_roles r WHERE r.rolname = $2), false)
             FROM pg_namespace n
             JOIN pg_roles o ON o.oid = n.nspowner
             JOIN pg_database db ON db.datname = current_database()
             JOIN pg_roles d ON d.oid = db.datdba
             WHERE n.nspname = ANY($1) ORDER BY 1",
            &[&subject.schemas, runtime],
        )
        .await
        .map_err(|e| Error::database("reading the owners of the schemas", e))?;
    let mut out = Vec::new();
    for r in rows {
        let (schema, owner, effective, superuser, create): (String, String, String, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let owned_by = if owner == effective {
            owner.clone()
        } else {
            format!("{owner} (the database's owner, {effective})")
        };
        out.push(
            judge(
                (&effective == admin || superuser) && &effective != runtime,
                "catalog:nspowner",
                format!("schema {schema} is owned by {owned_by}"),
                format!("schema {schema} is owned by {owned_by}, neither the admin role {admin} nor a superuser"),
            )
            .on(format!("schema {schema}")),
        );
        out.push(
            judge(
                !create,
                "catalog:schema CREATE",
                format!("the runtime role {runtime} cannot CREATE in schema {schema}"),
                format!("the runtime role {runtime} can CREATE in schema {schema}: it could have applied the schema"),
            )
            .on(format!("schema {schema}")),
        );
    }
    Ok(out)
}
