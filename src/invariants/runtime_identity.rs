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

/// Check that the schema is the admin role's: every migration recorded in
/// `public.rlsgate_migrations` was applied by the admin role (one observation per file;
/// inconclusive when there is no ledger or it is empty), and every relation of the subject's
/// schemas is owned by it (one observation per relation, sequences included; indexes follow
/// their table).
///
/// # Errors
/// A database error when the ledger or the catalog cannot be read.
pub async fn check_migrations(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let admin = &subject.admin_role;
    let probe = "catalog:rlsgate_migrations.applied_by";
    let ledger = format!("{}.{}", migrations::SCHEMA, migrations::TABLE);
    let exists: bool = oracle
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&ledger])
        .await
        .map_err(|e| Error::database(format!("looking for {ledger}"), e))?
        .get(0);
    let mut out = Vec::new();
    if !exists {
        out.push(Observation::inconclusive(
            ID,
            Undecided::NothingToCheck,
            probe,
            "no migration ledger: cannot tell who applied the schema",
        ));
    } else {
        let applied = migrations::applied_by(oracle).await?;
        if applied.is_empty() {
            out.push(Observation::inconclusive(
                ID,
                Undecided::NothingToCheck,
                probe,
                format!(
                    "the migration ledger {ledger} is empty: cannot tell who applied the schema"
                ),
            ));
        }
        for (file, by) in applied {
            let observation = if &by == admin {
                Observation::new(
                    ID,
                    Status::Holds,
                    probe,
                    format!("{file} was applied by {admin}"),
                )
            } else {
                Observation::violated(
                    ID,
                    probe,
                    format!("migration {file} was applied by {by}, not by the admin role {admin}"),
                )
            };
            out.push(observation.on(file));
        }
    }
    let rows = oracle
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), pg_get_userbyid(c.relowner)::text,
                    CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                         WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                         WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence' END
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             ORDER BY 1",
            &[&subject.schemas],
        )
        .await
        .map_err(|e| Error::database("reading the owners of the relations", e))?;
    for r in rows {
        let name: String = r.get(0);
        let owner: String = r.get(1);
        let kind: String = r.get(2);
        let observation = if &owner == admin {
            Observation::new(
                ID,
                Status::Holds,
                "catalog:relowner",
                format!("{kind} {name} is owned by {admin}"),
            )
        } else {
            Observation::violated(
                ID,
                "catalog:relowner",
                format!("{kind} {name} is owned by {owner}, not by the admin role {admin}"),
            )
        };
        out.push(observation.on(name));
    }
    Ok(out)
}
