//! Databases of a [`Server`]: the migrated template (created once per server), its clones, empty
//! and project databases, all hardened alike, and connections to them as each [`Role`].
//!
//! A database made by [`Server::fresh_database`] is a clone of the migrated template. It is
//! dropped when its handle drops, unless the test failed (the thread is panicking), the caller
//! asked to [`Database::keep`] it, or `RLSGATE_KEEP=always`: then it stays, with its server, and
//! the way to reach it is printed.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OnceCell;
use tokio_postgres::Client;

use crate::config::KeepPolicy;
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::provision::{Server, run_detached};
use crate::roles::{APP_USER, Credentials, Role};
use crate::sql::quote_ident;

/// A database on a server, and how to connect to it as each role.
#[derive(Debug)]
pub struct Database {
    server: Server,
    name: String,
    owned: bool,
    keep: AtomicBool,
}

impl Database {
    pub(crate) fn new(server: Server, name: String) -> Self {
        Self {
            server,
            name,
            owned: true,
            keep: AtomicBool::new(false),
        }
    }

    pub(crate) fn existing(server: Server, name: String) -> Self {
        Self {
            server,
            name,
            owned: false,
            keep: AtomicBool::new(false),
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server it lives on.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The login of `role`.
    ///
    /// # Errors
    /// As [`Server::roles`].
    pub async fn login(&self, role: Role) -> Result<Credentials> {
        Ok(match role {
            Role::Superuser => self.server.superuser_login().clone(),
            Role::MigrationOwner => self.server.roles().await?.migration_owner.clone(),
            Role::Runtime => self.server.roles().await?.app_user.clone(),
        })
    }

    /// A connection configuration for `role` on this database.
    ///
    /// # Errors
    /// As [`Server::roles`].
    pub async fn config(&self, role: Role) -> Result<tokio_postgres::Config> {
        Ok(self.server.config(&self.login(role).await?, &self.name))
    }

    /// A new login connection as `role`, driven on the current runtime.
    ///
    /// # Errors
    /// A database error when the connection fails.
    pub async fn connect(&self, role: Role) -> Result<Client> {
        Server::connect_with(&self.config(role).await?).await
    }

    /// A URL to reach this database as `role` (contains the password).
    ///
    /// # Errors
    /// As [`Server::roles`].
    pub async fn url(&self, role: Role) -> Result<String> {
        Ok(self.server.url(&self.login(role).await?, &self.name))
    }

    /// Keep this database (and its server) for post-mortem instead of dropping it.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }
}

/// The migrated template of one server, kept per server ([`Server::extension`]).
#[derive(Default)]
struct Template(OnceCell<String>);

impl Server {
    /// A new empty database (no migrations applied), set up like every rlsgate database and
    /// dropped with its handle: for applying migration sets of your own.
    ///
    /// # Errors
    /// A database error when a statement fails.
    pub async fn empty_database(&self) -> Result<Database> {
        let name = self.database_name("empty");
        self.create_database(&name).await?;
        Ok(Database::new(self.clone(), name))
    }

    /// Create an empty database owned by `migration_owner`, with CONNECT for the runtime only and
    /// no CREATE on `public` nor TEMPORARY for anyone else.
    ///
    /// # Errors
    /// A database error when a statement fails.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let roles = self.roles().await?;
        let su = self.superuser().await?;
        su.batch_execute(&format!(
            "CREATE DATABASE {db} OWNER {owner}",
            db = quote_ident(name),
            owner = roles.migration_owner.user
        ))
        .await
        .map_err(|e| Error::database(format!("creating database {name}"), e))?;
        harden_database(&su, name).await?;
        harden_schema(&self.superuser_on(name).await?, name).await
    }

    /// Create an empty database `name` owned by `owner`, with CONNECT for `runtime` only and no
    /// CREATE on `public` nor TEMPORARY for anyone else: [`Server::create_database`] for a
    /// project's roles. Dropped with the returned handle.
    ///
    /// # Errors
    /// A database error when a statement fails.
    pub async fn project_database(&self, owner: &str, runtime: &str) -> Result<Database> {
        let name = self.database_name("project");
        let su = self.superuser().await?;
        su.batch_execute(&format!(
            "CREATE DATABASE {db} OWNER {owner}",
            db = quote_ident(&name),
            owner = quote_ident(owner)
        ))
        .await
        .map_err(|e| Error::database(format!("creating database {name}"), e))?;
        let database = Database::new(self.clone(), name.clone());
        harden_database_for(&su, &name, runtime).await?;
        harden_schema(&self.superuser_on(&name).await?, &name).await?;
        Ok(database)
    }

    /// The name of a database migrated with the reference migrations as `migration_owner`,
    /// created once per server and used as the template of every [`Server::fresh_database`].
    ///
    /// # Errors
    /// A migration error when a reference migration fails, or a database error.
    pub async fn template(&self) -> Result<String> {
        self.extension::<Template>()
            .0
            .get_or_try_init(|| async {
                let name = self.database_name("template");
                self.create_database(&name).await?;
                let roles = self.roles().await?;
                let mut owner =
                    Self::connect_with(&self.config(&roles.migration_owner, &name)).await?;
                MigrationSet::reference()
                    .apply(&mut owner, &roles.migration_owner.user)
                    .await?;
                drop(owner);
                self.superuser()
                    .await?
                    .batch_execute(&format!(
                        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                        quote_ident(&name)
                    ))
                    .await
                    .map_err(|e| Error::database("marking the template", e))?;
                Ok(name)
            })
            .await
            .cloned()
    }

    /// A fresh database cloned from the migrated template. It is dropped when the handle drops,
    /// unless the test failed (then it is kept and how to reach it is printed).
    ///
    /// # Errors
    /// As [`Server::template`], or a database error when the clone fails.
    pub async fn fresh_database(&self) -> Result<Database> {
        let template = self.template().await?;
        let name = self.database_name("db");
        let roles = self.roles().await?;
        let su = self.superuser().await?;
        su.batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {} OWNER {}",
            quote_ident(&name),
            quote_ident(&template),
            roles.migration_owner.user
        ))
        .await
        .map_err(|e| Error::database(format!("cloning the template into {name}"), e))?;
        harden_database(&su, &name).await?;
        Ok(Database::new(self.clone(), name))
    }

    /// A database of this server that already exists, by name (not dropped by the handle).
    pub fn existing_database(&self, name: &str) -> Database {
        Database::existing(self.clone(), name.to_string())
    }
}

/// Database-level privileges are not copied from a template: set them on every new database
/// (`su` is a superuser connection to any other database).
pub(crate) async fn harden_database(su: &Client, name: &str) -> Result<()> {
    harden_database_for(su, name, APP_USER).await
}

/// No privilege on database `name` for PUBLIC; CONNECT for `runtime`.
async fn harden_database_for(su: &Client, name: &str, runtime: &str) -> Result<()> {
    su.batch_execute(&format!(
        "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {app}",
        db = quote_ident(name),
        app = quote_ident(runtime)
    ))
    .await
    .map_err(|e| Error::database(format!("setting the privileges of database {name}"), e))
}

/// No CREATE on `public` for PUBLIC (`inside` is a superuser connection to database `name`).
/// Schema privileges live inside the database, so a clone inherits them from its template.
pub(crate) async fn harden_schema(inside: &Client, name: &str) -> Result<()> {
    inside
        .batch_execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        .await
        .map_err(|e| Error::database(format!("revoking CREATE on public in {name}"), e))
}

impl Drop for Database {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let policy = self.server.keep_policy();
        let keep = policy == KeepPolicy::Always
            || (policy == KeepPolicy::OnFailure
                && (std::thread::panicking() || self.keep.load(Ordering::SeqCst)));
        let config = self
            .server
            .config(self.server.superuser_login(), "postgres");
        if keep {
            self.server.keep();
            let (file, masked) = self
                .server
                .kept_url(self.server.superuser_login(), &self.name);
            let reach = match file {
                Some(f) => format!("psql \"$(cat {})\" ({masked})", f.display()),
                None => format!("psql '{masked}' (the password is the server's superuser's)"),
            };
            eprintln!(
                "rlsgate: kept database {} on the {} for post-mortem: {reach}",
                self.name,
                self.server.location(),
            );
            return;
        }
        let statement = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        run_detached(async move {
            if let Ok(client) = Server::connect_with(&config).await {
                let _ = client.batch_execute(&statement).await;
            }
        });
    }
}

/// What `rlsgate clean --database-url` removed from an existing server, and what it left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Databases dropped (named as a run names them).
    pub databases: Vec<String>,
    /// Databases left because a session is connected to them (a run may be live).
    pub busy: Vec<String>,
    /// Roles a run created that were dropped.
    pub roles: Vec<String>,
    /// Roles a run created that were left, with why (something still depends on them).
    pub kept_roles: Vec<(String, String)>,
}

impl std::fmt::Display for Cleaned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed {} database(s) and {} role(s) rlsgate left",
            self.databases.len(),
            self.roles.len()
        )?;
        for db in &self.busy {
            write!(
                f,
                "\nleft database {db}: sessions are connected to it (a run may be live); run again when it ends"
            )?;
        }
        for (role, why) in &self.kept_roles {
            write!(f, "\nleft role {role}: {why}")?;
        }
        Ok(())
    }
}

/// Remove what rlsgate's runs left on the existing server of superuser `url`: databases named
/// as a run names them ([`Server::is_run_database`]) with no session connected, then the roles
/// a run created (marked so) that nothing depends on any more. Roles `rlsgate setup` made, its
/// database, and everything else stay exactly as they are.
///
/// # Errors
/// A config error for a malformed or unreachable URL or a role that is not a superuser; a
/// database error when the catalog cannot be read.
pub async fn clean_external(url: &str) -> Result<Cleaned> {
    let (_, su) = crate::provision::external::oracle(url, "--database-url").await?;
    let err = |what: &'static str| move |e| Error::database(what, e);
    let mut cleaned = Cleaned::default();
    let rows = su
        .query(
            "SELECT d.datname, EXISTS (SELECT 1 FROM pg_stat_activity a
                                        WHERE a.datname = d.datname AND a.pid <> pg_backend_pid())
             FROM pg_database d WHERE d.datname <> current_database() ORDER BY 1",
            &[],
        )
        .await
        .map_err(err("listing databases"))?;
    for row in rows {
        let name: String = row.get(0);
        if !Server::is_run_database(&name) {
            continue;
        }
        if row.get::<_, bool>(1) {
            cleaned.busy.push(name);
            continue;
        }
        let db = quote_ident(&name);
        // Separate calls: DROP DATABASE refuses to run in a multi-statement batch.
        su.batch_execute(&format!("ALTER DATABASE {db} WITH IS_TEMPLATE false"))
            .await
            .map_err(err("unmarking a template"))?;
        su.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .map_err(err("dropping a database rlsgate left"))?;
        cleaned.databases.push(name);
    }
    for name in crate::roles::left_by_runs(&su).await? {
        match su
            .batch_execute(&format!("DROP ROLE {}", quote_ident(&name)))
            .await
        {
            Ok(()) => cleaned.roles.push(name),
            Err(e) => cleaned
                .kept_roles
                .push((name, crate::error::describe_db_error(&e))),
        }
    }
    Ok(cleaned)
}
