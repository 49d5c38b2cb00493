//! The roles of the system under test (docs/system.md section 1) and their bootstrap.
//!
//! Roles are cluster-wide, so they are created once per server by the bootstrap superuser. Login
//! roles get random passwords, stored by the server as SCRAM verifiers.

use std::collections::BTreeMap;

use tokio::sync::{Mutex, OnceCell};
use tokio_postgres::Client;

use crate::error::{Error, Result};
pub use crate::provision::Credentials;
use crate::provision::Server;
use crate::secret::scram_verifier;
use crate::sql::{quote_ident, quote_literal};

/// The admin role: owns the database, the schema objects and the tables; applies migrations.
pub const MIGRATION_OWNER: &str = "migration_owner";
/// The runtime role of every worker connection, the DLQ writer included.
pub const APP_USER: &str = "app_user";
/// Privilege container for the runtime's writes.
pub const APP_RW: &str = "app_rw";
/// Privilege container for the runtime's reads.
pub const APP_RO: &str = "app_ro";

/// The comment that marks a role a run created (safe to take over, and to drop at its end or
/// with `rlsgate clean --database-url`).
pub(crate) const MARKER: &str = "managed by rlsgate";
/// The comment that marks a role `rlsgate setup` created: a run may log in as it (and restores
/// its password and attributes at the end), but nothing drops it.
pub(crate) const SETUP_MARKER: &str = "created by rlsgate setup";

/// Which identity a connection authenticates as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The bootstrap superuser of the server.
    Superuser,
    /// `migration_owner`.
    MigrationOwner,
    /// `app_user`.
    Runtime,
}

/// The logins of the two login roles.
#[derive(Debug, Clone)]
pub struct RoleSet {
    /// `migration_owner`'s login.
    pub migration_owner: Credentials,
    /// `app_user`'s login.
    pub app_user: Credentials,
}

/// The roles rlsgate created on one server, kept per server ([`Server::extension`]).
#[derive(Default)]
struct ServerRoles {
    reference: OnceCell<RoleSet>,
    projects: Mutex<BTreeMap<String, Option<Credentials>>>,
}

impl Server {
    /// The roles of the system under test, created on first use.
    ///
    /// # Errors
    /// A provisioning error when a role exists that rlsgate did not create, or a database error.
    pub async fn roles(&self) -> Result<RoleSet> {
        let state = self.extension::<ServerRoles>();
        state
            .reference
            .get_or_try_init(|| async {
                let roles = RoleSet {
                    migration_owner: Credentials::random(MIGRATION_OWNER),
                    app_user: Credentials::random(APP_USER),
                };
                let client = self.superuser().await?;
                let boot = bootstrap(&client, &roles, Existing::TakeOver).await?;
                // Dropped newest first: app_user, app_rw, app_ro, migration_owner. Only what
                // this run created; a role taken over is put back as it was.
                for name in &boot.created {
                    self.created_role(name);
                }
                for statement in boot.restore {
                    self.restore_at_end(statement);
                }
                Ok(roles)
            })
            .await
            .cloned()
    }

    /// The login of a project's role `name` on this server, created (or taken over, when
    /// rlsgate created it earlier) once per server with a random password; `login: false`
    /// makes a NOLOGIN group and returns `None`. The reference roles keep their own logins.
    /// Roles are cluster-wide, so every project on this server shares them.
    ///
    /// # Errors
    /// A provisioning error when the role exists and rlsgate did not create it; a database error.
    pub async fn project_role(&self, name: &str, login: bool) -> Result<Option<Credentials>> {
        if login {
            let reference = self.roles().await?;
            for c in [reference.migration_owner, reference.app_user] {
                if c.user == name {
                    return Ok(Some(c));
                }
            }
        } else if [APP_RW, APP_RO].contains(&name) {
            self.roles().await?;
            return Ok(None);
        }
        let state = self.extension::<ServerRoles>();
        let mut known = state.projects.lock().await;
        if let Some(c) = known.get(name) {
            return Ok(c.clone());
        }
        let credentials = login.then(|| Credentials::random(name));
        let attributes = if login {
            "LOGIN INHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"
        } else {
            "NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"
        };
        let su = self.superuser().await?;
        match ensure(
            &su,
            name,
            attributes,
            credentials.as_ref().map(|c| c.password.as_str()),
            Existing::TakeOver,
        )
        .await?
        {
            Ensured::Created => self.created_role(name),
            Ensured::Reset { restore } => self.restore_at_end(restore),
            Ensured::Kept => {}
        }
        known.insert(name.to_string(), credentials.clone());
        Ok(credentials)
    }
}

/// The roles rlsgate's runs created on the connected server (marked [`MARKER`]), newest first
/// (members before the groups they belong to): what `rlsgate clean --database-url` may drop.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub(crate) async fn left_by_runs(superuser: &Client) -> Result<Vec<String>> {
    let rows = superuser
        .query(
            "SELECT rolname FROM pg_roles
             WHERE shobj_description(oid, 'pg_authid') = $1
             ORDER BY oid DESC",
            &[&MARKER],
        )
        .await
        .map_err(|e| Error::database("listing the roles rlsgate's runs created", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What the bootstrap did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bootstrap {
    /// Roles created by this bootstrap.
    pub created: Vec<String>,
    /// Roles that rlsgate had created earlier and this bootstrap reset.
    pub reset: Vec<String>,
    /// The statements that put the reset roles back as they were (password verifier,
    /// attributes, comment), for the end of the run.
    pub restore: Vec<String>,
    /// Roles that existed and were left exactly as they were.
    pub kept: Vec<String>,
}

/// How to treat roles that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// The harness needs to log in: take over roles rlsgate created earlier (new password,
    /// attributes reset), refuse roles it did not create.
    TakeOver,
    /// `rlsgate setup`: leave existing roles untouched (idempotent).
    Keep,
}

/// Create the roles of docs/system.md section 1 as the connected superuser.
///
/// # Errors
/// A provisioning error when a role exists that rlsgate did not create and `existing` is
/// [`Existing::TakeOver`], or a database error when a statement fails.
pub async fn bootstrap(
    superuser: &Client,
    roles: &RoleSet,
    existing: Existing,
) -> Result<Bootstrap> {
    let mut report = Bootstrap::default();
    let specs: [(&str, Option<&Credentials>, &str); 4] = [
        (
            MIGRATION_OWNER,
            Some(&roles.migration_owner),
            "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT",
        ),
        (
            APP_RW,
            None,
            "NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION",
        ),
        (
            APP_RO,
            None,
            "NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION",
        ),
        (
            APP_USER,
            Some(&roles.app_user),
            "LOGIN INHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION",
        ),
    ];
    for (name, login, attributes) in specs {
        let password = login.map(|c| c.password.as_str());
        match ensure(superuser, name, attributes, password, existing).await? {
            Ensured::Created => report.created.push(name.to_string()),
            Ensured::Reset { restore } => {
                report.reset.push(name.to_string());
                report.restore.push(restore);
            }
            Ensured::Kept => report.kept.push(name.to_string()),
        }
    }
    if !report.created.is_empty() || !report.reset.is_empty() {
        superuser
            .batch_execute(&format!("GRANT {APP_RW}, {APP_RO} TO {APP_USER}"))
            .await
            .map_err(|e| Error::database("granting app_rw and app_ro to app_user", e))?;
    }
    Ok(report)
}

/// What [`ensure`] did to a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// It did not exist and was created.
    Created,
    /// rlsgate had created it earlier; its attributes (and password) were reset, and
    /// `restore` puts them back.
    Reset {
        /// The statement that restores the role's password verifier, attributes and comment.
        restore: String,
    },
    /// It existed and was left as it was ([`Existing::Keep`]).
    Kept,
}

/// Create role `name` with `attributes` (and `password`, for a login) as the connected
/// superuser, or treat an existing one as `existing` says. Marks what it creates as rlsgate's.
///
/// # Errors
/// A provisioning error when the role exists, rlsgate did not create it, and `existing` is
/// [`Existing::TakeOver`]; a database error when a statement fails.
pub async fn ensure(
    superuser: &Client,
    name: &str,
    attributes: &str,
    password: Option<&str>,
    existing: Existing,
) -> Result<Ensured> {
    let row = superuser
        .query_opt(
            "SELECT coalesce(shobj_description(oid, 'pg_authid'), ''), rolpassword,
                    concat_ws(' ',
                      CASE WHEN rolsuper THEN 'SUPERUSER' ELSE 'NOSUPERUSER' END,
                      CASE WHEN rolinherit THEN 'INHERIT' ELSE 'NOINHERIT' END,
                      CASE WHEN rolcreaterole THEN 'CREATEROLE' ELSE 'NOCREATEROLE' END,
                      CASE WHEN rolcreatedb THEN 'CREATEDB' ELSE 'NOCREATEDB' END,
                      CASE WHEN rolcanlogin THEN 'LOGIN' ELSE 'NOLOGIN' END,
                      CASE WHEN rolreplication THEN 'REPLICATION' ELSE 'NOREPLICATION' END,
                      CASE WHEN rolbypassrls THEN 'BYPASSRLS' ELSE 'NOBYPASSRLS' END)
             FROM pg_authid WHERE rolname = $1",
            &[&name],
        )
        .await
        .map_err(|e| Error::database(format!("looking up role {name}"), e))?;
    // The server stores a SCRAM verifier as given: the plaintext never leaves rlsgate.
    let password = password
        .map(|p| format!(" PASSWORD {}", quote_literal(&scram_verifier(p))))
        .unwrap_or_default();
    let ident = quote_ident(name);
    let (statement, marker, ensured) = match (row, existing) {
        (None, Existing::TakeOver) => (
            format!("CREATE ROLE {ident} {attributes}{password}"),
            MARKER,
            Ensured::Created,
        ),
        (None, Existing::Keep) => (
            format!("CREATE ROLE {ident} {attributes}{password}"),
            SETUP_MARKER,
            Ensured::Created,
        ),
        (Some(_), Existing::Keep) => return Ok(Ensured::Kept),
        (Some(row), Existing::TakeOver) => {
            let comment: String = row.get(0);
            if comment != MARKER && comment != SETUP_MARKER {
                return Err(Error::provisioning(format!(
                    "role {name} already exists on this server and was not created by rlsgate; \
                     use a server where it is free (RLSGATE_BACKEND=local or container), or drop the role"
                )));
            }
            let verifier: Option<String> = row.get(1);
            let before: String = row.get(2);
            let restore = format!(
                "ALTER ROLE {ident} {before} PASSWORD {}; COMMENT ON ROLE {ident} IS {}",
                verifier.as_deref().map_or("NULL".into(), quote_literal),
                quote_literal(&comment)
            );
            (
                format!("ALTER ROLE {ident} {attributes}{password}"),
                comment_marker(&comment),
                Ensured::Reset { restore },
            )
        }
    };
    superuser
        .batch_execute(&format!(
            "{statement}; COMMENT ON ROLE {ident} IS {}",
            quote_literal(marker)
        ))
        .await
        .map_err(|e| Error::database(format!("creating role {name}"), e))?;
    Ok(ensured)
}

/// The marker a taken-over role keeps: its own (a setup role stays one).
fn comment_marker(comment: &str) -> &'static str {
    if comment == SETUP_MARKER {
        SETUP_MARKER
    } else {
        MARKER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials::random(APP_USER);
        assert!(!format!("{c:?}").contains(&c.password));
        assert_eq!(c.password.len(), 32);
    }
}
