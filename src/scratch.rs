//! A scratch copy of an existing database: `rlsgate check --database-url` checks a copy made on
//! the same server with `CREATE DATABASE ... TEMPLATE <theirs>`, with the original's owner,
//! access privileges and per-database settings, and drops it afterwards, so nothing it writes
//! (tenants, sentinel rows, the DML property's commits, a trigger's audit rows, a sequence's
//! next value) ever reaches the user's database.
//!
//! PostgreSQL copies a database only while no other session is connected to it; when the copy
//! cannot be made the error names the cause and the two ways out (free the database, or check
//! it in place with `--in-place`).

use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use crate::error::{Error, Result, describe_db_error};
use crate::provision::Server;
use crate::sql::{quote_ident, quote_literal};

/// How rlsgate treats the database it checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// A database rlsgate built (and drops).
    #[default]
    Built,
    /// A scratch copy of an existing database (`CREATE DATABASE ... TEMPLATE`), dropped
    /// afterwards: the existing database is never written.
    ScratchCopy,
    /// The existing database itself (`--in-place`): only probes whose every write is rolled
    /// back run; what commits is skipped.
    InPlace,
}

impl Placement {
    /// Whether rlsgate built the database.
    pub fn is_built(&self) -> bool {
        *self == Self::Built
    }

    /// In words, for the evidence.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Built => "built by rlsgate, dropped afterwards",
            Self::ScratchCopy => {
                "a scratch copy of the existing database (CREATE DATABASE ... TEMPLATE), dropped afterwards: the existing database was never written"
            }
            Self::InPlace => {
                "the existing database itself (--in-place): every probe's writes were rolled back, and what commits was skipped"
            }
        }
    }
}

/// What `--in-place` does, for the messages that offer it.
pub(crate) const IN_PLACE: &str = "check the database itself with --in-place (probes only, every \
     write rolled back; the DML property and the history checks are skipped)";

/// A copy of an existing database, dropped by [`ScratchCopy::remove`] (or, failing that, when
/// it drops).
pub(crate) struct ScratchCopy {
    /// A superuser login to a maintenance database of the same server.
    maintenance: Config,
    /// The copy's name (`rlsgate_<run>_scratch0`).
    name: String,
    /// The original's name.
    original: String,
    removed: bool,
}

impl std::fmt::Debug for ScratchCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchCopy")
            .field("name", &self.name)
            .field("original", &self.original)
            .finish()
    }
}

impl ScratchCopy {
    /// Copy the database `oracle` (a superuser login) names, on its server.
    ///
    /// # Errors
    /// A config error naming the cause and the ways out when the copy cannot be made (other
    /// sessions connected, no space, no maintenance database to connect to); nothing is left
    /// behind.
    pub(crate) async fn of(oracle: &Config) -> Result<Self> {
        let original = oracle.get_dbname().unwrap_or("postgres").to_string();
        let (maintenance, client) = maintenance(oracle, &original).await?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let copy = Self {
            maintenance,
            name: format!("rlsgate_{}_scratch0", &run[..8]),
            original,
            removed: false,
        };
        let statement = format!(
            "CREATE DATABASE {} TEMPLATE {} OWNER {}",
            quote_ident(&copy.name),
            quote_ident(&copy.original),
            quote_ident(&owner(&client, &copy.original).await?)
        );
        if let Err(e) = client.batch_execute(&statement).await {
            return Err(copy.refused(&client, &e).await);
        }
        // From here on, a failure drops the copy (`Drop`).
        copy.copy_access(&client).await?;
        Ok(copy)
    }

    /// `login` (a login to the original), on the copy.
    pub(crate) fn login(&self, login: &Config) -> Config {
        let mut config = login.clone();
        config.dbname(&self.name);
        config
    }

    /// Check that `login` (a login to the original, of `what`) can log in to the copy too.
    ///
    /// # Errors
    /// A config error naming the fix (pg_hba.conf rules written per database name) when it
    /// cannot.
    pub(crate) async fn check_login(&self, login: &Config, what: &str) -> Result<()> {
        match self.login(login).connect(tokio_postgres::NoTls).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::config(format!(
                "{what} {} cannot log in to the scratch copy {} of database {}: {}; pg_hba.conf may \
                 allow it into {} only: allow it into databases named rlsgate_*, or {IN_PLACE}",
                login.get_user().unwrap_or("?"),
                self.name,
                self.original,
                describe_db_error(&e),
                self.original
            ))),
        }
    }

    /// Drop the copy (its sessions ended first).
    ///
    /// # Errors
    /// A database error when the maintenance database cannot be reached or the drop fails; the
    /// message names `rlsgate clean --database-url`, which removes it later.
    pub(crate) async fn remove(mut self) -> Result<()> {
        self.removed = true;
        drop_database(&self.maintenance, &self.name).await
    }

    /// Give the copy what `CREATE DATABASE` does not copy: the original's access privileges
    /// (CONNECT, TEMPORARY, CREATE) and its per-database and per-role-in-database settings.
    async fn copy_access(&self, client: &Client) -> Result<()> {
        let (copy, original) = (quote_literal(&self.name), quote_literal(&self.original));
        client
            .batch_execute(&format!(
                "UPDATE pg_database SET datacl = (SELECT datacl FROM pg_database WHERE datname = {original})
                 WHERE datname = {copy};
                 INSERT INTO pg_db_role_setting (setdatabase, setrole, setconfig)
                 SELECT (SELECT oid FROM pg_database WHERE datname = {copy}), setrole, setconfig
                 FROM pg_db_role_setting
                 WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = {original})"
            ))
            .await
            .map_err(|e| {
                Error::database(
                    format!("giving the scratch copy {} the access and settings of {}", self.name, self.original),
                    e,
                )
            })
    }

    /// The error for a copy the server refused: who is connected when that is the cause.
    async fn refused(&self, client: &Client, e: &tokio_postgres::Error) -> Error {
        let why = describe_db_error(e);
        if e.code() != Some(&SqlState::OBJECT_IN_USE) {
            return Error::config(format!(
                "cannot make a scratch copy of database {} to check ({why}); mend the cause (disk \
                 space, the superuser's rights) and run again, or {IN_PLACE}",
                self.original
            ));
        }
        let sessions: Vec<String> = client
            .query(
                "SELECT format('%s (%s)', usename, coalesce(nullif(application_name, ''), 'no application name'))
                 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY 1",
                &[&self.original],
            )
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        Error::config(format!(
            "cannot make a scratch copy of database {} to check: PostgreSQL copies a database only \
             while no other session is connected to it, and {} connected ({}); disconnect them \
             (stop the application, close psql) and run again, or {IN_PLACE}",
            self.original,
            match sessions.len() {
                0 | 1 => "one is".to_string(),
                n => format!("{n} are"),
            },
            if sessions.is_empty() {
                why
            } else {
                sessions.join(", ")
            }
        ))
    }
}

impl Drop for ScratchCopy {
    /// A copy not removed (an error or a panic on the way) is dropped on a thread of its own.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (maintenance, name) = (self.maintenance.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(drop_database(&maintenance, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("rlsgate: {e}");
        }
    }
}

/// A superuser connection to a maintenance database of `oracle`'s server (`postgres`, else
/// `template1`): a database cannot be copied from a session connected to it.
async fn maintenance(oracle: &Config, original: &str) -> Result<(Config, Client)> {
    let mut last = String::new();
    for name in ["postgres", "template1"] {
        if name == original {
            continue;
        }
        let mut config = oracle.clone();
        config.dbname(name);
        match Server::connect_with(&config).await {
            Ok(client) => return Ok((config, client)),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Error::config(format!(
        "cannot make a scratch copy of database {original}: the superuser cannot connect to a \
         maintenance database (postgres, template1) to copy it from ({last}); allow it to, or {IN_PLACE}"
    )))
}

/// The owner of database `name`.
async fn owner(client: &Client, name: &str) -> Result<String> {
    client
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::database(format!("reading the owner of database {name}"), e))
}

/// Drop database `name`, ending its sessions first.
async fn drop_database(maintenance: &Config, name: &str) -> Result<()> {
    let fix = |e: Error| {
        Error::config(format!(
            "dropping the scratch copy {name}: {e}; `rlsgate clean --database-url URL` removes it"
        ))
    };
    let client = Server::connect_with(maintenance).await.map_err(fix)?;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await
        .map_err(|e| fix(Error::database("DROP DATABASE", e)))
}
