//! Migrations: a project's migration files applied in version order as the admin role.
//!
//! The files come in the layout of rlsgate (`NNNN_description.sql`) or of another migration
//! tool (sqlx, Supabase, Flyway, refinery, golang-migrate, diesel, dbmate), named by a
//! [`Format`] or detected from the files ([`layout`]); down and undo migrations are never
//! applied. Versions are 64-bit.
//!
//! Each file runs in a transaction of its own and is recorded, with the SHA-256 of its text and
//! the role that applied it, in the ledger `public.rlsgate_migrations`. A failing file leaves
//! nothing behind and the error names the file, the statement and its line. A file edited after
//! it was applied is refused. Running again applies only the new files. A file marked
//! `-- rlsgate:no-transaction` (or with its tool's own marker) runs outside a transaction,
//! statement by statement, for what PostgreSQL refuses inside one (`CREATE INDEX
//! CONCURRENTLY`): a failure there leaves the statements before it applied.
//!
//! The ledger lives in `public`, where every rlsgate release has kept it (so a database migrated
//! by an older one is read as it is; its `integer` version column is widened to `bigint` when a
//! version needs it), and is always named schema-qualified: a file that changes
//! `search_path` (`SET search_path = app;`, or pg_dump's
//! `SELECT pg_catalog.set_config('search_path', '', false);`) cannot move it. Nor does session
//! state leak from one file into the next: after each file the session's settings are put back
//! to what they were before the first (`RESET ALL`, then the caller's own `SET`s again), its role
//! too, and its temporary tables are dropped.

pub mod layout;
pub mod origin;
pub mod script;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result, describe_db_error};
use crate::sql::quote_ident;
pub use layout::Format;
use script::Statement;

/// The table that records applied migrations.
pub const TABLE: &str = "rlsgate_migrations";

/// The schema of [`TABLE`]: `public`, as in every database an earlier rlsgate migrated.
pub const SCHEMA: &str = "public";

/// The ledger, schema-qualified and quoted: `"public"."rlsgate_migrations"`.
fn ledger() -> String {
    format!("{}.{}", quote_ident(SCHEMA), quote_ident(TABLE))
}

/// How a migration's statements run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// In a transaction of its own, with its ledger row: all of the file or none of it.
    PerFile,
    /// Outside any transaction, one statement at a time, then recorded: a failure leaves the
    /// statements before it applied.
    None {
        /// The marker that asked for it (`-- rlsgate:no-transaction`, or the tool's own).
        marker: &'static str,
    },
}

/// One migration: a file (for dbmate, its up section; for diesel, a directory's `up.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The version its name gives (a repeatable migration's is negative, from its name).
    pub version: i64,
    /// The file's name in its directory, e.g. `0002_llm_audit.sql`, `V3__grants.sql`,
    /// `2024-01-31-120000_users/up.sql`.
    pub name: String,
    /// The text that is applied.
    pub sql: String,
    /// Hex SHA-256 of `sql`.
    pub checksum: String,
    /// How its statements run.
    pub transaction: Transaction,
    /// A Flyway repeatable migration (`R__name.sql`): applied after the versioned ones, in
    /// name order, and again whenever its text changes.
    pub repeatable: bool,
    statements: Vec<Statement>,
}

impl Migration {
    /// A migration in rlsgate's layout: `name` must be `NNNN_description.sql`, `sql` its text.
    ///
    /// # Errors
    /// A migration error naming the file when the name is malformed, the SQL cannot be split
    /// into statements, or it contains transaction control.
    ///
    /// # Example
    /// ```
    /// let m = rlsgate::Migration::new("0001_tenants.sql", "CREATE TABLE tenants (id uuid);")?;
    /// assert_eq!(m.version, 1);
    /// # Ok::<(), rlsgate::Error>(())
    /// ```
    pub fn new(name: &str, sql: impl Into<String>) -> Result<Self> {
        let sql = sql.into();
        let bad = |why: String| {
            Error::migration(format!(
                "migration file name '{name}' is not of the form NNNN_description.sql \
                 (e.g. 0006_add_index.sql){why}; rename it"
            ))
        };
        let version = match layout::classify(name) {
            Ok(Some(layout::Name::Numbered(v))) => v,
            Ok(_) => return Err(bad(String::new())),
            Err(why) => return Err(bad(format!(": {why}"))),
        };
        let marker = layout::sqlx_marker(&sql);
        Self::build(Format::Rlsgate, version, name, &sql, 1, marker, false)
    }

    /// A migration of `format` from its parts; `first_line` is the line of its file `sql`
    /// starts on, `tool` the marker of its tool that asked for no transaction.
    pub(crate) fn build(
        format: Format,
        version: i64,
        name: &str,
        sql: &str,
        first_line: usize,
        tool: Option<&'static str>,
        repeatable: bool,
    ) -> Result<Self> {
        let mut statements = script::split(sql)
            .map_err(|e| Error::migration(format!("migration {name} is malformed: {e}")))?;
        for s in &mut statements {
            s.line += first_line - 1;
        }
        let transaction = layout::transaction(sql, first_line, tool)
            .map_err(|e| Error::migration(format!("migration {name} {e}")))?;
        // golang-migrate runs a file as it is, so its files often wrap themselves in
        // BEGIN; ... COMMIT;: rlsgate's own transaction stands in for theirs.
        if format == Format::GolangMigrate
            && statements.len() >= 2
            && matches!(statements[0].keyword().as_str(), "BEGIN" | "START")
            && matches!(
                statements[statements.len() - 1].keyword().as_str(),
                "COMMIT" | "END"
            )
        {
            statements.pop();
            statements.remove(0);
        }
        if let Some(s) = statements.iter().find(|s| s.is_transaction_control()) {
            let hint = match format {
                Format::Sqlx => {
                    "; if these are golang-migrate files, which may wrap themselves in \
                     BEGIN; ... COMMIT;, set format = \"golang-migrate\""
                }
                _ => "",
            };
            return Err(Error::migration(format!(
                "migration {name} line {}: `{}` controls the transaction, but rlsgate runs each \
                 migration in a transaction of its own (or, marked {}, each statement on its \
                 own); remove it{hint}",
                s.line,
                s.summary(),
                layout::NO_TRANSACTION
            )));
        }
        let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
        Ok(Self {
            version,
            name: name.to_string(),
            sql: sql.to_string(),
            checksum,
            transaction,
            repeatable,
            statements,
        })
    }

    /// The statements that are applied, in order, with their lines in the file.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }
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

    /// The migrations of `dir`, in the layout detected from its files (see [`layout`]).
    ///
    /// # Errors
    /// As [`MigrationSet::load_as`].
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_as(dir, None)
    }

    /// The migrations of `dir` in `format` (`None`: detected from the files). Files that are
    /// not `.sql` are ignored; down and undo migrations are left out.
    ///
    /// # Errors
    /// A migration error naming the file and the fix when the directory cannot be read, mixes
    /// layouts, holds a `.sql` file the format does not name, two files share a version, or a
    /// file is malformed.
    ///
    /// # Example
    /// ```no_run
    /// use rlsgate::{MigrationSet, migrations::Format};
    /// let set = MigrationSet::load_as("db/migration".as_ref(), Some(Format::Flyway))?;
    /// println!("{} migrations from {}", set.migrations().len(), set.origin());
    /// # Ok::<(), rlsgate::Error>(())
    /// ```
    pub fn load_as(dir: &Path, format: Option<Format>) -> Result<Self> {
        let (format, migrations) = layout::load(dir, format)?;
        Self::from_migrations(migrations, &format!("{} ({format})", dir.display()))
    }

    /// A set from `migrations`, sorted by version, the repeatable ones last by name.
    ///
    /// # Errors
    /// A migration error when two migrations share a version (or two repeatable ones a name).
    pub fn from_migrations(mut migrations: Vec<Migration>, origin: &str) -> Result<Self> {
        // Versioned migrations by version, then the repeatable ones by name.
        let order = |m: &Migration| {
            let version = if m.repeatable { 0 } else { m.version };
            (m.repeatable, version, m.name.clone())
        };
        migrations.sort_by_cached_key(order);
        if let Some(w) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(Error::migration(if w[0].repeatable {
                format!(
                    "two repeatable migrations are named {}; rename one of them",
                    w[0].name
                )
            } else {
                format!(
                    "migrations {} and {} share version {}; renumber one of them",
                    w[0].name, w[1].name, w[0].version
                )
            }));
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
    /// edited or is missing from the set, or a statement fails: the error names the file, the
    /// statement and its line; the failing file is rolled back whole, unless it runs outside a
    /// transaction ([`Transaction::None`]), whose statements before the failing one stay applied.
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
                     version bigint PRIMARY KEY,
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
        self.widen_ledger(client).await?;
        // `::bigint`: a ledger an older rlsgate created has an integer column.
        let recorded: BTreeMap<i64, (String, String)> = client
            .query(
                &format!("SELECT version::bigint, name, checksum FROM {ledger}"),
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
                // A repeatable migration is applied again when its text changes.
                Some(m) if &m.checksum != checksum && !m.repeatable => {
                    return Err(Error::migration(format!(
                        "migration {} was edited after it was applied (recorded checksum {}, file {}); \
                         restore the applied text and put the change in a new migration",
                        m.name,
                        &checksum[..12.min(checksum.len())],
                        &m.checksum[..12]
                    )));
                }
                Some(m) if &m.checksum == checksum => outcome.unchanged.push(m.name.clone()),
                Some(_) => {}
            }
        }
        let pending = self.migrations.iter().filter(|m| {
            recorded
                .get(&m.version)
                .is_none_or(|(_, checksum)| checksum != &m.checksum)
        });
        for m in pending {
            match m.transaction {
                // All of the file and its ledger row, or none of it.
                Transaction::PerFile => {
                    let tx = client
                        .transaction()
                        .await
                        .map_err(|e| Error::database("starting a migration transaction", e))?;
                    for statement in m.statements() {
                        if let Err(e) = tx.batch_execute(&statement.text).await {
                            return Err(failed(m, statement, e, &outcome));
                        }
                    }
                    record(&tx, m).await?;
                    tx.commit().await.map_err(|e| {
                        Error::database(format!("committing migration {}", m.name), e)
                    })?;
                }
                // Each statement on its own, as PostgreSQL runs a lone statement; recorded
                // once they all succeeded.
                Transaction::None { .. } => {
                    for statement in m.statements() {
                        if let Err(e) = client.batch_execute(&statement.text).await {
                            return Err(failed(m, statement, e, &outcome));
                        }
                    }
                    record(&*client, m).await?;
                }
            }
            session.restore(client, &m.name).await?;
            outcome.applied.push(m.name.clone());
        }
        Ok(outcome)
    }

    /// Widen the ledger's `version` to `bigint` when an older rlsgate created it as `integer`
    /// and a version of this set needs 64 bits.
    async fn widen_ledger(&self, client: &Client) -> Result<()> {
        let Some(wide) = self
            .migrations
            .iter()
            .find(|m| i32::try_from(m.version).is_err())
        else {
            return Ok(());
        };
        let ledger = ledger();
        let column: String = client
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
                 WHERE attrelid = $1::text::regclass AND attname = 'version'",
                &[&ledger],
            )
            .await
            .map_err(|e| Error::database(format!("reading {SCHEMA}.{TABLE}"), e))?
            .get(0);
        if column == "integer" {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {ledger} ALTER COLUMN version TYPE bigint"
                ))
                .await
                .map_err(|e| {
                    Error::migration(format!(
                        "{SCHEMA}.{TABLE}.version is an integer (an older rlsgate created it) and \
                         {} needs 64 bits, but widening it failed: {}; run `ALTER TABLE \
                         {SCHEMA}.{TABLE} ALTER COLUMN version TYPE bigint` as the table's owner",
                        wide.name,
                        describe_db_error(&e)
                    ))
                    .with_source(e)
                })?;
        }
        Ok(())
    }
}

/// Record `m` in the ledger (again, for a repeatable migration whose text changed).
async fn record(client: &impl GenericClient, m: &Migration) -> Result<()> {
    client
        .execute(
            &format!(
                "INSERT INTO {} (version, name, checksum) VALUES ($1::bigint, $2, $3)
                 ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name,
                     checksum = EXCLUDED.checksum, applied_by = current_user, applied_at = now()",
                ledger()
            ),
            &[&m.version, &m.name, &m.checksum],
        )
        .await
        .map_err(|e| Error::database(format!("recording migration {}", m.name), e))?;
    Ok(())
}

/// The error of `statement` of `m` failing with `e`, after the files `outcome` applied.
fn failed(
    m: &Migration,
    statement: &Statement,
    e: tokio_postgres::Error,
    outcome: &Applied,
) -> Error {
    let detail = describe_db_error(&e);
    let before = if outcome.applied.is_empty() {
        String::new()
    } else {
        format!(" (applied before it: {})", outcome.applied.join(", "))
    };
    let what = match m.transaction {
        Transaction::PerFile => format!("nothing of {} was applied{before}", m.name),
        Transaction::None { marker } => format!(
            "{} runs outside a transaction ({marker}), so it cannot be rolled back whole: its \
             statements before this one stay applied and it was not recorded{before}; undo them \
             or start from a fresh database",
            m.name
        ),
    };
    let hint = if e.code() == Some(&SqlState::ACTIVE_SQL_TRANSACTION) {
        format!(
            "; a statement PostgreSQL runs only outside a transaction block (CREATE INDEX \
             CONCURRENTLY, ...) needs `{}` on a line of its own at the top of the file",
            layout::NO_TRANSACTION
        )
    } else {
        String::new()
    };
    Error::migration(format!(
        "migration {} failed at statement {} (line {}): {detail}; {what}; fix the statement and \
         run again{hint}\n  statement: {}",
        m.name,
        statement.index,
        statement.line,
        statement.summary()
    ))
    .with_source(e)
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
    fn well_formed_names_give_their_version(#[case] name: &str, #[case] version: i64) {
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
