//! Migrations: `NNNN_description.sql` files applied in order as the admin role.
//!
//! Each file runs in a transaction of its own and is recorded, with the SHA-256 of its text and
//! the role that applied it, in the ledger `public.rlsgate_migrations`. A failing file leaves
//! nothing behind and the error names the file, the statement and its line. A file edited after
//! it was applied is refused. Running again applies only the new files.
//!
//! The ledger lives in `public`, where every rlsgate release has kept it (so a database migrated
//! by an older one is read as it is), and is always named schema-qualified: a file that changes
//! `search_path` (`SET search_path = app;`, or pg_dump's
//! `SELECT pg_catalog.set_config('search_path', '', false);`) cannot move it. Nor does session
//! state leak from one file into the next: after each file the session's settings are put back
//! to what they were before the first (`RESET ALL`, then the caller's own `SET`s again), its role
//! too, and its temporary tables are dropped.

pub mod script;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::error::{Error, Result, describe_db_error};
use crate::sql::quote_ident;

/// The table that records applied migrations.
pub const TABLE: &str = "rlsgate_migrations";

/// The schema of [`TABLE`]: `public`, as in every database an earlier rlsgate migrated.
pub const SCHEMA: &str = "public";

/// The ledger, schema-qualified and quoted: `"public"."rlsgate_migrations"`.
fn ledger() -> String {
    format!("{}.{}", quote_ident(SCHEMA), quote_ident(TABLE))
}

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number before the first underscore.
    pub version: i32,
    /// The file name, e.g. `0002_llm_audit.sql`.
    pub name: String,
    /// The file's text.
    pub sql: String,
    /// Hex SHA-256 of the text.
    pub checksum: String,
}

impl Migration {
    /// A migration named `name` (which must be `NNNN_description.sql`) with text `sql`.
    ///
    /// # Errors
    /// A migration error naming the file when the name is malformed, the SQL cannot be split
    /// into statements, or it contains transaction control.
    pub fn new(name: &str, sql: impl Into<String>) -> Result<Self> {
        let sql = sql.into();
        let version = parse_name(name)?;
        let statements = script::split(&sql)
            .map_err(|e| Error::migration(format!("migration {name} is malformed: {e}")))?;
        if let Some(s) = statements.iter().find(|s| s.is_transaction_control()) {
            return Err(Error::migration(format!(
                "migration {name} line {}: `{}` controls the transaction, but rlsgate runs each \
                 migration in a transaction of its own; remove it",
                s.line,
                s.summary()
            )));
        }
        let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
        Ok(Self {
            version,
            name: name.to_string(),
            sql,
            checksum,
        })
    }
}

fn parse_name(name: &str) -> Result<i32> {
    let bad = || {
        Error::migration(format!(
            "migration file name '{name}' is not of the form NNNN_description.sql \
             (e.g. 0006_add_index.sql); rename it"
        ))
    };
    let stem = name.strip_suffix(".sql").ok_or_else(bad)?;
    let (digits, description) = stem.split_once('_').ok_or_else(bad)?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || description.is_empty() {
        return Err(bad());
    }
    digits.parse().map_err(|_| bad())
}

/// An ordered set of migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
    origin: String,
}

/// What [`MigrationSet::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files applied by this call, in order.
    pub applied: Vec<String>,
    /// Files that were already applied and unchanged.
    pub unchanged: Vec<String>,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied.is_empty() {
            write!(
                f,
                "no new migrations ({} already applied)",
                self.unchanged.len()
            )
        } else {
            write!(
                f,
                "applied {} migration(s): {} ({} already applied)",
                self.applied.len(),
                self.applied.join(", "),
                self.unchanged.len()
            )
        }
    }
}

impl MigrationSet {
    /// The reference system's migrations, embedded from `migrations/` at build time.
    pub fn reference() -> Self {
        let files: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/reference_migrations.rs"));
        let migrations = files
            .iter()
            .map(|(name, sql)| Migration::new(name, *sql).expect("reference migrations are valid"))
            .collect();
        Self::from_migrations(migrations, "built-in reference migrations")
            .expect("reference migrations are valid")
    }

    /// Every `*.sql` file of `dir`; other files are ignored.
    ///
    /// # Errors
    /// A migration error naming the file when the directory cannot be read, a name is malformed,
    /// two files share a version, or a file is malformed.
    pub fn load(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::migration(format!(
                "cannot read the migrations directory {}: {e}; pass a directory of NNNN_description.sql files",
                dir.display()
            ))
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        paths.sort();
        let migrations = paths
            .iter()
            .map(|path| {
                let sql = std::fs::read_to_string(path).map_err(|e| {
                    Error::migration(format!("cannot read migration {}: {e}", path.display()))
                })?;
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                Migration::new(&name, sql)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_migrations(migrations, &dir.display().to_string())
    }

    /// A set from `migrations`, sorted by version.
    ///
    /// # Errors
    /// A migration error when two migrations share a version.
    pub fn from_migrations(mut migrations: Vec<Migration>, origin: &str) -> Result<Self> {
        migrations.sort_by_key(|m| m.version);
        if let Some(w) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(Error::migration(format!(
                "migrations {} and {} share version {}; renumber one of them",
                w[0].name, w[1].name, w[0].version
            )));
        }
        Ok(Self {
            migrations,
            origin: origin.to_string(),
        })
    }

    /// The migrations, in order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Where the set came from (a directory, or the built-in reference).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Apply the new migrations on `client`, whose `current_user` must be `admin_role`.
    ///
    /// # Errors
    /// A migration error when `current_user` is not `admin_role`, an applied migration was
    /// edited or is missing from the set, or a statement fails (the failing file is rolled back
    /// whole and the error names it, the statement and its line).
    pub async fn apply(&self, client: &mut Client, admin_role: &str) -> Result<Applied> {
        let current: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .map_err(|e| Error::database("reading current_user before migrating", e))?
            .get(0);
        if current != admin_role {
            return Err(Error::migration(format!(
                "migrations must run as the admin role {admin_role}, but this connection is {current}; \
                 connect as {admin_role} (never as the runtime role)"
            )));
        }
        let ledger = ledger();
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {ledger} (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     checksum text NOT NULL,
                     applied_by text NOT NULL DEFAULT current_user,
                     applied_at timestamptz NOT NULL DEFAULT now())"
            ))
            .await
            .map_err(|e| Error::database(format!("creating {SCHEMA}.{TABLE}"), e))?;
        // One migrator at a time per database; the lock ends with the session or below.
        client
            .batch_execute("SELECT pg_advisory_lock(hashtext('rlsgate_migrations'))")
            .await
            .map_err(|e| Error::database("taking the migration lock", e))?;
        let outcome = match Session::save(client, admin_role).await {
            Ok(session) => self.apply_locked(client, &session).await,
            Err(e) => Err(e),
        };
        let unlock = client
            .batch_execute("SELECT pg_advisory_unlock(hashtext('rlsgate_migrations'))")
            .await;
        let outcome = outcome?;
        unlock.map_err(|e| Error::database("releasing the migration lock", e))?;
        Ok(outcome)
    }

    async fn apply_locked(&self, client: &mut Client, session: &Session) -> Result<Applied> {
        let ledger = ledger();
        let recorded: BTreeMap<i32, (String, String)> = client
            .query(
                &format!("SELECT version, name, checksum FROM {ledger}"),
                &[],
            )
            .await
            .map_err(|e| Error::database(format!("reading {SCHEMA}.{TABLE}"), e))?
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        let mut outcome = Applied::default();
        for (version, (name, checksum)) in &recorded {
            match self.migrations.iter().find(|m| m.version == *version) {
                None => {
                    return Err(Error::migration(format!(
                        "migration {name} was applied to this database but is missing from {}; \
                         restore the file (applied migrations are never removed)",
                        self.origin
                    )));
                }
                Some(m) if &m.checksum != checksum => {
                    return Err(Error::migration(format!(
                        "migration {} was edited after it was applied (recorded checksum {}, file {}); \
                         restore the applied text and put the change in a new migration",
                        m.name,
                        &checksum[..12.min(checksum.len())],
                        &m.checksum[..12]
                    )));
                }
                Some(m) => outcome.unchanged.push(m.name.clone()),
            }
        }
        for m in self
            .migrations
            .iter()
            .filter(|m| !recorded.contains_key(&m.version))
        {
            // Each file in a transaction of its own: all of it, or none of it.
            let tx = client
                .transaction()
                .await
                .map_err(|e| Error::database("starting a migration transaction", e))?;
            for statement in script::split(&m.sql).map_err(Error::migration)? {
                if let Err(e) = tx.batch_execute(&statement.text).await {
                    let detail = describe_db_error(&e);
                    let before = if outcome.applied.is_empty() {
                        String::new()
                    } else {
                        format!(" (applied before it: {})", outcome.applied.join(", "))
                    };
                    return Err(Error::migration(format!(
                        "migration {} failed at statement {} (line {}): {detail}; nothing of \
                         {} was applied{before}; fix the statement and run again\n  statement: {}",
                        m.name,
                        statement.index,
                        statement.line,
                        m.name,
                        statement.summary()
                    ))
                    .with_source(e));
                }
            }
            tx.execute(
                &format!("INSERT INTO {ledger} (version, name, checksum) VALUES ($1, $2, $3)"),
                &[&m.version, &m.name, &m.checksum],
            )
            .await
            .map_err(|e| Error::database(format!("recording migration {}", m.name), e))?;
            tx.commit()
                .await
                .map_err(|e| Error::database(format!("committing migration {}", m.name), e))?;
            session.restore(client, &m.name).await?;
            outcome.applied.push(m.name.clone());
        }
        Ok(outcome)
    }
}

/// The session state a migration file may change, as it was before the first file: the settings
/// the caller `SET` (the rest come back with `RESET ALL`) and the role.
#[derive(Debug)]
struct Session {
    settings: Vec<(String, String)>,
    role: String,
}

impl Session {
    async fn save(client: &Client, role: &str) -> Result<Self> {
        let settings = client
            .query(
                "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'",
                &[],
            )
            .await
            .map_err(|e| Error::database("reading the session's settings before migrating", e))?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(Self {
            settings,
            role: role.to_string(),
        })
    }

    /// Undo what migration `name` left in the session (a committed `SET` outlives its
    /// transaction): settings, role, temporary tables.
    async fn restore(&self, client: &Client, name: &str) -> Result<()> {
        let failed =
            |e| Error::database(format!("resetting the session after migration {name}"), e);
        // RESET ALL leaves the role alone: it is set back below, as `SET ROLE` (the caller may
        // be a superuser acting as the admin role).
        client
            .batch_execute("RESET ALL; DISCARD TEMP")
            .await
            .map_err(failed)?;
        for (setting, value) in &self.settings {
            client
                .execute(
                    "SELECT pg_catalog.set_config($1, $2, false)",
                    &[setting, value],
                )
                .await
                .map_err(failed)?;
        }
        let current: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .map_err(failed)?
            .get(0);
        if current != self.role {
            client
                .batch_execute(&format!("SET ROLE {}", quote_ident(&self.role)))
                .await
                .map_err(failed)?;
        }
        Ok(())
    }
}

/// The role that applied each recorded migration, by file name (read as any role that can
/// read the table).
///
/// # Errors
/// A database error when the table cannot be read.
pub async fn applied_by(client: &Client) -> Result<BTreeMap<String, String>> {
    let rows = client
        .query(
            &format!("SELECT name, applied_by FROM {} ORDER BY version", ledger()),
            &[],
        )
        .await
        .map_err(|e| Error::database(format!("reading {SCHEMA}.{TABLE}"), e))?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("0001_tenants.sql", 1)]
    #[case("0042_add_index_on_x.sql", 42)]
    fn well_formed_names_give_their_version(#[case] name: &str, #[case] version: i32) {
        assert_eq!(Migration::new(name, "SELECT 1").unwrap().version, version);
    }

    #[rstest]
    #[case("tenants.sql")]
    #[case("0001.sql")]
    #[case("0001_tenants.txt")]
    #[case("v1_tenants.sql")]
    fn malformed_names_are_refused_with_the_expected_form(#[case] name: &str) {
        let err = Migration::new(name, "SELECT 1").unwrap_err();
        assert!(err.is_migration());
        assert!(err.to_string().contains("NNNN_description.sql"), "{err}");
    }

    #[test]
    fn transaction_control_inside_a_migration_is_refused() {
        let err = Migration::new("0001_x.sql", "BEGIN;\nCREATE TABLE t();\nCOMMIT;").unwrap_err();
        assert!(err.to_string().contains("line 1: `BEGIN`"), "{err}");
    }

    #[test]
    fn a_sql_standard_function_body_is_not_transaction_control() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\nEND;\n\
                   CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;";
        assert!(Migration::new("0001_f.sql", sql).is_ok());
    }

    #[test]
    fn duplicate_versions_are_refused() {
        let a = Migration::new("0001_a.sql", "SELECT 1").unwrap();
        let b = Migration::new("0001_b.sql", "SELECT 2").unwrap();
        let err = MigrationSet::from_migrations(vec![a, b], "test").unwrap_err();
        assert!(err.to_string().contains("share version 1"), "{err}");
    }

    #[test]
    fn the_reference_set_is_ordered_and_checksummed() {
        let set = MigrationSet::reference();
        let names: Vec<_> = set.migrations().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"0001_tenants.sql"));
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert!(set.migrations().iter().all(|m| m.checksum.len() == 64));
    }
}
