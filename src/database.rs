//! A database of a [`Server`] and connections to it as each [`Role`].
//!
//! A database made by [`Server::fresh_database`] is a clone of the migrated template. It is
//! dropped when its handle drops, unless the test failed (the thread is panicking), the caller
//! asked to [`Database::keep`] it, or `RLSGATE_KEEP=always`: then it stays, with its server, and
//! the way to reach it is printed.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::Client;

use crate::config::KeepPolicy;
use crate::error::Result;
use crate::provision::{Server, run_detached};
use crate::roles::{Credentials, Role, quote_ident};

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
            let login = self.server.superuser_login();
            eprintln!(
                "rlsgate: kept database {} on the {} for post-mortem: psql '{}'",
                self.name,
                self.server.location(),
                self.server.url(login, &self.name)
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
