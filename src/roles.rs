//! The roles of the system under test (SYSTEM.md section 1) and their bootstrap.
//!
//! Roles are cluster-wide, so they are created once per server by the bootstrap superuser. Login
//! roles get random passwords, stored by the server as SCRAM verifiers.

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// The admin role: owns the database, the schema objects and the tables; applies migrations.
pub const MIGRATION_OWNER: &str = "migration_owner";
/// The runtime role of every worker connection, the DLQ writer included.
pub const APP_USER: &str = "app_user";
/// Privilege container for the runtime's writes.
pub const APP_RW: &str = "app_rw";
/// Privilege container for the runtime's reads.
pub const APP_RO: &str = "app_ro";

/// The comment that marks a role as created by rlsgate (and so safe to take over or drop).
pub(crate) const MARKER: &str = "managed by rlsgate";

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

/// A login: user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The role name to log in as.
    pub user: String,
    /// Its password (never printed by `Debug`).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// A login for `user` with a fresh random password.
    pub fn random(user: &str) -> Self {
        Self {
            user: user.to_string(),
            password: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

/// The logins of the two login roles.
#[derive(Debug, Clone)]
pub struct RoleSet {
    /// `migration_owner`'s login.
    pub migration_owner: Credentials,
    /// `app_user`'s login.
    pub app_user: Credentials,
}

/// What the bootstrap did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bootstrap {
    /// Roles created by this bootstrap.
    pub created: Vec<String>,
    /// Roles that rlsgate had created earlier and this bootstrap reset.
    pub reset: Vec<String>,
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

/// Create the roles of SYSTEM.md section 1 as the connected superuser.
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
            Ensured::Reset => report.reset.push(name.to_string()),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// It did not exist and was created.
    Created,
    /// rlsgate had created it earlier; its attributes (and password) were reset.
    Reset,
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
            "SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .map_err(|e| Error::database(format!("looking up role {name}"), e))?;
    let password = password
        .map(|p| format!(" PASSWORD {}", quote_literal(p)))
        .unwrap_or_default();
    let ident = quote_ident(name);
    let (statement, ensured) = match (row, existing) {
        (None, _) => (
            format!("CREATE ROLE {ident} {attributes}{password}"),
            Ensured::Created,
        ),
        (Some(_), Existing::Keep) => return Ok(Ensured::Kept),
        (Some(row), Existing::TakeOver) => {
            let comment: String = row.get(0);
            if comment != MARKER {
                return Err(Error::provisioning(format!(
                    "role {name} already exists on this server and was not created by rlsgate; \
                     use a server where it is free (RLSGATE_BACKEND=local or container), or drop the role"
                )));
            }
            (
                format!("ALTER ROLE {ident} {attributes}{password}"),
                Ensured::Reset,
            )
        }
    };
    superuser
        .batch_execute(&format!(
            "{statement}; COMMENT ON ROLE {ident} IS {}",
            quote_literal(MARKER)
        ))
        .await
        .map_err(|e| Error::database(format!("creating role {name}"), e))?;
    Ok(ensured)
}

/// Drop the roles rlsgate created, after every database that references them is gone.
///
/// # Errors
/// A database error when a role cannot be dropped (for example a kept database still uses it).
pub async fn drop_all(superuser: &Client) -> Result<()> {
    for name in [APP_USER, APP_RW, APP_RO, MIGRATION_OWNER] {
        superuser
            .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
            .await
            .map_err(|e| Error::database(format!("dropping role {name}"), e))?;
    }
    Ok(())
}

/// Quote `value` as an SQL string literal.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quote `name` as an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials::random(APP_USER);
        assert!(!format!("{c:?}").contains(&c.password));
        assert_eq!(c.password.len(), 32);
    }
}
