//! `rlsgate setup`: stand the reference system up in a server of your own, idempotently.
//!
//! As the superuser of the URL: create the roles that are missing (existing ones are left as
//! they are), create the URL's database if it is missing (owned by `migration_owner`, hardened
//! like every rlsgate database), then apply the reference migrations as `migration_owner`.
//!
//! A database that already exists is left as it is, owner and privileges included, but for one
//! thing: `migration_owner` must be able to create in schema `public` (the reference tables and
//! the migration ledger `public.rlsgate_migrations` live there). A database it does not own on
//! PostgreSQL 15+ gives it no CREATE there (PUBLIC lost it in 15), so setup grants USAGE and
//! CREATE on `public`, whichever it lacks, to `migration_owner` alone and says so. It never
//! changes the database's owner. A second run finds the grant in place and changes nothing.

use std::fmt;

use tokio_postgres::Client;

use crate::database::{harden_database, harden_schema};
use crate::error::{Error, Result};
use crate::migrations::{Applied, MigrationSet};
use crate::provision::Server;
use crate::provision::external::ServerUrl;
use crate::roles::{self, Credentials, Existing, RoleSet};
use crate::sql::quote_ident;

/// What [`setup`] changed.
#[derive(Debug, Clone, Default)]
pub struct SetupReport {
    /// Roles created, with the password of each login role (shown once).
    pub created_roles: Vec<(String, Option<String>)>,
    /// The database, when this run created it.
    pub created_database: Option<String>,
    /// Privileges this run granted to `migration_owner` on schema `public` of a database it
    /// does not own (`USAGE`, `CREATE`), with the database and its owner.
    pub granted_on_public: Option<Granted>,
    /// The migrations applied.
    pub migrations: Applied,
}

/// Privileges granted on schema `public` so `migration_owner` can migrate a database it does not
/// own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The database.
    pub database: String,
    /// Its owner, left as it was.
    pub owner: String,
    /// The privileges granted, e.g. `["CREATE"]`.
    pub privileges: Vec<String>,
}

impl SetupReport {
    /// True when the run changed anything.
    pub fn changed(&self) -> bool {
        !self.created_roles.is_empty()
            || self.created_database.is_some()
            || self.granted_on_public.is_some()
            || !self.migrations.applied.is_empty()
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, password) in &self.created_roles {
            match password {
                Some(p) => writeln!(
                    f,
                    "created login role {name} with password {p} (shown once; store it)"
                )?,
                None => writeln!(f, "created role {name}")?,
            }
        }
        if let Some(db) = &self.created_database {
            writeln!(
                f,
                "created database {db} owned by {}",
                roles::MIGRATION_OWNER
            )?;
        }
        if let Some(g) = &self.granted_on_public {
            writeln!(
                f,
                "granted {} ON SCHEMA public TO {} in database {}, which {} owns, so the \
                 migrations can create there (its owner and its other privileges are left as \
                 they were)",
                g.privileges.join(", "),
                roles::MIGRATION_OWNER,
                g.database,
                g.owner
            )?;
        }
        write!(f, "{}", self.migrations)?;
        if !self.changed() {
            write!(
                f,
                "\nnothing to do: the roles, the database and every migration are already in place"
            )?;
        }
        Ok(())
    }
}

/// Set the reference system up on the server and database that superuser `url` names.
///
/// # Errors
/// A config error when the URL is malformed or names the maintenance database `postgres`; a
/// database or migration error when a step fails (each migration file is atomic).
pub async fn setup(url: &str) -> Result<SetupReport> {
    let target = ServerUrl::parse(url, "--database-url")?;
    if target.database == "postgres" {
        return Err(Error::config(
            "--database-url must name the database to create in its path (e.g. .../llm_audit); \
             rlsgate will not install the reference system into the maintenance database 'postgres'",
        ));
    }
    let su = Server::connect_with(&target.endpoint.config(&target.superuser, "postgres")).await?;
    let logins = RoleSet {
        migration_owner: Credentials::random(roles::MIGRATION_OWNER),
        app_user: Credentials::random(roles::APP_USER),
    };
    let mut report = SetupReport::default();
    let boot = roles::bootstrap(&su, &logins, Existing::Keep).await?;
    report.created_roles = boot
        .created
        .into_iter()
        .map(|name| {
            let password = [&logins.migration_owner, &logins.app_user]
                .into_iter()
                .find(|l| l.user == name)
                .map(|l| l.password.clone());
            (name, password)
        })
        .collect();
    let db = &target.database;
    let exists = su
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[db])
        .await
        .map_err(|e| Error::database(format!("looking up database {db}"), e))?
        .is_some();
    if !exists {
        su.batch_execute(&format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(db),
            roles::MIGRATION_OWNER
        ))
        .await
        .map_err(|e| Error::database(format!("creating database {db}"), e))?;
        harden_database(&su, db).await?;
        report.created_database = Some(db.clone());
    }
    let mut inside = Server::connect_with(&target.endpoint.config(&target.superuser, db)).await?;
    if !exists {
        harden_schema(&inside, db).await?;
    }
    report.granted_on_public = let_migration_owner_create(&inside, db).await?;
    // The superuser becomes migration_owner for the migrations: everything they create is owned
    // by it, and public.rlsgate_migrations records it as the role that applied them.
    inside
        .batch_execute(&format!("SET ROLE {}", roles::MIGRATION_OWNER))
        .await
        .map_err(|e| Error::database("becoming migration_owner", e))?;
    report.migrations = MigrationSet::reference()
        .apply(&mut inside, roles::MIGRATION_OWNER)
        .await?;
    Ok(report)
}

/// Grant `migration_owner` USAGE and CREATE on schema `public` of database `db`, whichever it
/// lacks (`inside` is a superuser connection to it); `None` when it has both (it owns the
/// database on PostgreSQL 15+, or PUBLIC still has CREATE there).
async fn let_migration_owner_create(inside: &Client, db: &str) -> Result<Option<Granted>> {
    let owner = roles::MIGRATION_OWNER;
    let row = inside
        .query_one(
            "SELECT pg_catalog.has_schema_privilege($1, 'public', 'USAGE'),
                    pg_catalog.has_schema_privilege($1, 'public', 'CREATE'),
                    pg_catalog.pg_get_userbyid(d.datdba)::text
             FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
            &[&owner],
        )
        .await
        .map_err(|e| {
            Error::database(
                format!("reading what {owner} may do in schema public of database {db}"),
                e,
            )
        })?;
    let missing: Vec<String> = [("USAGE", row.get::<_, bool>(0)), ("CREATE", row.get(1))]
        .into_iter()
        .filter(|(_, has)| !has)
        .map(|(privilege, _)| privilege.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    inside
        .batch_execute(&format!(
            "GRANT {} ON SCHEMA public TO {}",
            missing.join(", "),
            quote_ident(owner)
        ))
        .await
        .map_err(|e| {
            Error::database(
                format!(
                    "granting {owner} {} on schema public of database {db}",
                    missing.join(", ")
                ),
                e,
            )
        })?;
    Ok(Some(Granted {
        database: db.to_string(),
        owner: row.get(2),
        privileges: missing,
    }))
}
