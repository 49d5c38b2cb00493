//! `rlsgate init`: a draft `rlsgate.toml` from a project's migrations (applied into a fresh
//! database on the selected backend, with the roles they name created first) or from an
//! existing database (read in a read-only session, never written). The roles, the tenant
//! setting the policies read, the tenant columns, the tenant table and key, the dead-letter
//! table and the runtime's effective privileges (as the declared matrix) are guessed from the
//! catalog (`guess`) and written with comments that say why (`text`); the draft is parsed
//! before it is written, so `check --config` runs on it at once.

pub(crate) mod guess;
pub(crate) mod mentions;
mod text;

use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use super::config::{
    MigrationsDir, PrivilegesSection, ProjectConfig, RolesSection, SchemaSection, TenantSection,
};
use crate::catalog::{self, identity, keys, policies, privileges};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::migrations::{Format, MigrationSet};
use crate::provision::Server;
use crate::subject::{ExpectedPrivileges, Subject};
use guess::{Facts, Guess};
use mentions::RoleMentions;

/// What `rlsgate init` reads and where the draft goes.
#[derive(Clone, Default)]
pub struct InitOptions {
    /// Migration directories (applied into a fresh database), in order.
    pub migrations: Vec<PathBuf>,
    /// Their layout (`None`: detected from each directory's files).
    pub format: Option<Format>,
    /// A URL of an existing database to read instead (never written).
    pub database_url: Option<String>,
    /// The admin role, when known.
    pub admin: Option<String>,
    /// The runtime role, when known (required with `database_url`).
    pub runtime: Option<String>,
    /// The file to write.
    pub out: PathBuf,
    /// Overwrite `out` if it exists.
    pub force: bool,
}

impl std::fmt::Debug for InitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOptions")
            .field("migrations", &self.migrations)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::secret::redact_url),
            )
            .field("admin", &self.admin)
            .field("runtime", &self.runtime)
            .field("out", &self.out)
            .finish()
    }
}

/// A drafted `rlsgate.toml`.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The file's text.
    pub text: String,
    /// What was guessed and why, a line each (printed to stderr).
    pub summary: Vec<String>,
    /// The draft, parsed as `check --config` reads it.
    pub config: ProjectConfig,
}

/// What the catalog told, for the text.
pub(crate) struct Analysis {
    pub(crate) admin: Guess<String>,
    pub(crate) runtime: Guess<String>,
    pub(crate) groups: Vec<String>,
    pub(crate) runtime_member_of: Guess<Vec<String>>,
    pub(crate) schemas: Guess<Vec<String>>,
    pub(crate) setting: Guess<String>,
    pub(crate) columns: Guess<Vec<String>>,
    pub(crate) tenant_table: Option<Guess<(String, String)>>,
    pub(crate) dlq: Option<Guess<String>>,
    /// Relations of the schemas, with their tenant columns.
    pub(crate) relations: Vec<catalog::Relation>,
    pub(crate) matrix: privileges::PrivilegeMatrix,
    pub(crate) memberships: Vec<String>,
    /// `[schema] migrations` entries, relative to the draft.
    pub(crate) migrations: Vec<MigrationsDir>,
}

/// Draft an `rlsgate.toml` as `options` say.
///
/// # Errors
/// A config error when `out` exists (without `force`), a directory is missing, the roles
/// cannot be told (naming `--admin`/`--runtime`), the runtime role is unknown, or no policy
/// reads a tenant setting; a migration error when a migration fails; a harness error when the
/// server cannot be reached.
pub async fn draft(settings: &Settings, options: &InitOptions) -> Result<Draft> {
    refuse_overwrite(&options.out, options.force)?;
    if options.database_url.is_some() && !options.migrations.is_empty() {
        return Err(Error::config(
            "give --migrations DIR or --database-url URL, not both: init reads one schema",
        ));
    }
    let analysis = match &options.database_url {
        Some(url) => from_database(url, options).await?,
        None => from_migrations(settings, options).await?,
    };
    let text = text::render(&analysis);
    let base = options
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let config = ProjectConfig::parse(&text, base).map_err(|e| {
        Error::config(format!(
            "the draft does not parse ({}); this is a bug in rlsgate init",
            e.message()
        ))
    })?;
    Ok(Draft {
        summary: text::summary(&analysis),
        text,
        config,
    })
}

/// Write `draft` to `path`, refusing to replace a file unless `force`.
///
/// # Errors
/// A config error when the file exists; an I/O error.
pub fn write(draft: &Draft, path: &Path, force: bool) -> Result<()> {
    refuse_overwrite(path, force)?;
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if force {
        open.create(true).truncate(true);
    } else {
        open.create_new(true);
    }
    let mut file = open
        .open(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    std::io::Write::write_all(&mut file, draft.text.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn refuse_overwrite(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::config(format!(
            "{} exists; rlsgate init does not overwrite it: pass --out ANOTHER_PATH, or --force \
             to replace it",
            path.display()
        )));
    }
    Ok(())
}

/// Apply the migrations into a fresh database (the roles they name created first) and read it.
async fn from_migrations(settings: &Settings, options: &InitOptions) -> Result<Analysis> {
    if options.migrations.is_empty() {
        return Err(Error::config(
            "rlsgate init needs --migrations DIR (a project's migrations) or --database-url URL \
             --runtime ROLE (an existing database)",
        ));
    }
    let mut mentions = RoleMentions::default();
    let mut dirs = Vec::new();
    for dir in &options.migrations {
        if !dir.is_dir() {
            return Err(Error::config(format!(
                "--migrations {}: no such directory; name the directory that holds the migration files",
                dir.display()
            )));
        }
        let set = MigrationSet::load_as(dir, options.format).map_err(|e| {
            if e.message().contains("format") {
                Error::new(
                    e.kind(),
                    format!("{}; with rlsgate init, pass --format FORMAT", e.message()),
                )
            } else {
                e
            }
        })?;
        for m in set.migrations() {
            mentions.read(&m.sql);
        }
        let absolute = std::path::absolute(dir)
            .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
        dirs.push(MigrationsDir {
            path: absolute,
            format: options.format,
        });
    }
    let roles = mentions.roles(options.admin.as_deref(), options.runtime.as_deref())?;
    let project = provisional(&roles, dirs.clone());
    let database = super::target::prepare(settings, &project, &super::Source::default()).await?;
    let client = Server::connect_with(&database.oracle).await?;
    let known = Known {
        admin: Some(guessed(roles.admin)),
        runtime: guessed(roles.runtime),
        groups: roles.groups,
        runtime_member_of: guessed(roles.runtime_member_of),
    };
    let mut analysis = analyse(&client, known).await?;
    let base = options
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    analysis.migrations = dirs
        .into_iter()
        .map(|d| MigrationsDir {
            path: relative(&d.path, base),
            format: d.format,
        })
        .collect();
    Ok(analysis)
}

fn guessed<T>((value, why): (T, String)) -> Guess<T> {
    Guess { value, why }
}

/// A project of `roles` and `dirs` only, for `target::prepare` to apply the migrations with.
fn provisional(roles: &mentions::DraftRoles, dirs: Vec<MigrationsDir>) -> ProjectConfig {
    ProjectConfig {
        schema: SchemaSection {
            migrations: dirs,
            ..SchemaSection::default()
        },
        roles: RolesSection {
            admin: roles.admin.0.clone(),
            runtime: roles.runtime.0.clone(),
            groups: roles.groups.clone(),
            runtime_member_of: roles.runtime_member_of.0.clone(),
            runtime_url_env: None,
        },
        tenant: TenantSection {
            setting: "rlsgate.init".into(),
            set_context: None,
            columns: Vec::new(),
            table: None,
            key: "id".into(),
            require_forced_rls: false,
        },
        privileges: PrivilegesSection::default(),
        dlq: None,
        accept: Vec::new(),
        base: PathBuf::from("."),
    }
}

/// Read an existing database in a read-only session.
async fn from_database(url: &str, options: &InitOptions) -> Result<Analysis> {
    let Some(runtime) = &options.runtime else {
        return Err(Error::config(
            "rlsgate init --database-url needs --runtime ROLE, the role the application logs in as",
        ));
    };
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        Error::config(format!(
            "--database-url is not a valid PostgreSQL URL ({e}); use postgres://USER:PASSWORD@HOST:PORT/DB"
        ))
    })?;
    let client = Server::connect_with(&config).await?;
    // Every statement of this session runs in a read-only transaction of its own (the catalog
    // readers try what a server release refuses, so one explicit transaction would abort).
    client
        .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await
        .map_err(|e| Error::database("making the session read-only", e))?;
    let known = Known {
        admin: options
            .admin
            .clone()
            .map(|a| guessed((a, "given with --admin".into()))),
        runtime: guessed((runtime.clone(), "given with --runtime".into())),
        groups: Vec::new(),
        runtime_member_of: guessed((Vec::new(), String::new())),
    };
    analyse(&client, known).await
}

/// The roles known before the catalog is read.
struct Known {
    admin: Option<Guess<String>>,
    runtime: Guess<String>,
    groups: Vec<String>,
    runtime_member_of: Guess<Vec<String>>,
}

/// Read the catalog and guess the rest.
async fn analyse(client: &Client, known: Known) -> Result<Analysis> {
    let role = &known.runtime.value;
    let mut subject = Subject {
        runtime_role: role.clone(),
        admin_role: String::new(),
        tenant_setting: String::new(),
        tenant_columns: Vec::new(),
        set_context: None,
        schemas: catalog::user_schemas(client).await?,
        exclude: Vec::new(),
        include: Vec::new(),
        expected: ExpectedPrivileges::default(),
        require_forced_rls: false,
    };
    if privileges::runtime_attributes(client, &subject)
        .await?
        .is_none()
    {
        return Err(Error::config(format!(
            "--runtime {role}: no such role on this server; name the role the application logs in as"
        )));
    }
    let facts = Facts {
        relations: catalog::relations(client, &subject).await?,
        policies: policies::policies(client, &subject.schemas, role).await?,
        functions: policies::function_sources(client).await?,
        references: keys::column_references(client, &subject.schemas).await?,
    };
    let setting = guess::setting(&facts)?;
    let columns = guess::columns(&facts, &setting.value);
    if columns.value.is_empty() {
        return Err(Error::config(format!(
            "no tenant column found: the policies that read {} name no column of their relation; \
             write rlsgate.toml by hand (docs/project.md)",
            setting.value
        )));
    }
    let admin = known
        .admin
        .or_else(|| guess::admin(&facts, &columns.value))
        .ok_or_else(|| Error::config("cannot tell the admin role; name it with --admin ROLE"))?;
    let schemas = guess::schemas(&facts, &admin.value);
    subject.schemas = schemas.value.clone();
    subject.tenant_columns = columns.value.clone();
    subject.admin_role = admin.value.clone();
    subject.tenant_setting = setting.value.clone();
    Ok(Analysis {
        tenant_table: guess::tenant_table(&facts, &columns.value),
        dlq: guess::dlq(&facts, &schemas.value),
        relations: catalog::relations(client, &subject).await?,
        matrix: privileges::matrix(client, &subject).await?,
        memberships: identity::read(client, &subject).await?.member_of,
        admin,
        runtime: known.runtime,
        groups: known.groups,
        runtime_member_of: known.runtime_member_of,
        schemas,
        setting,
        columns,
        migrations: Vec::new(),
    })
}

/// `path` relative to the directory `base` (both made absolute first).
fn relative(path: &Path, base: &Path) -> PathBuf {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (path, base) = (abs(path), abs(base));
    let common = path
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    if common <= 1 {
        // Nothing in common but the root: the absolute path reads better.
        return path;
    }
    let mut out = PathBuf::new();
    for _ in base.components().skip(common) {
        out.push("..");
    }
    for c in path.components().skip(common) {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_paths_are_written_relative_to_the_draft() {
        assert_eq!(
            relative(
                Path::new("/p/examples/saas/migrations"),
                Path::new("/p/examples/saas")
            ),
            PathBuf::from("migrations")
        );
        assert_eq!(
            relative(Path::new("/p/db/migrations"), Path::new("/p/config")),
            PathBuf::from("../db/migrations")
        );
        assert_eq!(
            relative(Path::new("/p"), Path::new("/p")),
            PathBuf::from(".")
        );
        assert_eq!(
            relative(Path::new("/work/db"), Path::new("/tmp/x")),
            PathBuf::from("/work/db")
        );
    }
}
