//! A project's database: an existing one reached by URL, or a fresh one on the selected backend
//! with the project's roles and its migrations applied as its admin role; and the checks of
//! `rlsgate.toml` against its catalog.

use std::collections::BTreeMap;

use tokio_postgres::{Client, Config};

use super::ProjectConfig;
use crate::config::Settings;
use crate::database::Database;
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::migrations::origin::{self, Origins};
use crate::provision::{Credentials, Server};
use crate::scratch::{Placement, ScratchCopy};
use crate::secret::redact_url;
use crate::sql::quote_ident;
use crate::target::Target;

/// Where a project's schema is. `Debug` masks the passwords of its URLs.
#[derive(Clone, Default)]
pub struct Source {
    /// A superuser URL of an existing database (else the project's migrations are applied
    /// into a fresh database on the backend `settings` select).
    pub database_url: Option<String>,
    /// The runtime's login URL for an existing database (else `roles.runtime_url_env`).
    pub runtime_url: Option<String>,
    /// Check an existing database itself instead of a scratch copy of it: only what rolls back
    /// runs (`--in-place`).
    pub in_place: bool,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = |u: &Option<String>| u.as_deref().map(redact_url);
        f.debug_struct("Source")
            .field("database_url", &url(&self.database_url))
            .field("runtime_url", &url(&self.runtime_url))
            .field("in_place", &self.in_place)
            .finish()
    }
}

/// A project's database and its logins.
pub(crate) struct ProjectDatabase {
    /// A superuser login.
    pub(crate) oracle: Config,
    /// The runtime's login, when known.
    pub(crate) runtime: Option<Config>,
    /// The backend it runs on (`external` for an existing database).
    pub(crate) backend: String,
    /// A database rlsgate built (dropped, with its server handle, when this drops); `None` for
    /// an existing database, which rlsgate must leave as it found it.
    pub(crate) database: Option<Database>,
    /// How the database is treated.
    pub(crate) placement: Placement,
    /// The scratch copy of an existing database the checks run on.
    pub(crate) scratch: Option<ScratchCopy>,
    /// Where the migrations created each object (empty for an existing database).
    pub(crate) origins: Origins,
}

/// Build or reach the project's database, as `source` says.
///
/// # Errors
/// A config error for a bad URL or a runtime URL of another role, or no migrations and no URL;
/// a migration error when a migration fails (the database is dropped); a harness error when
/// the server cannot be reached.
pub(crate) async fn prepare(
    settings: &Settings,
    project: &ProjectConfig,
    source: &Source,
) -> Result<ProjectDatabase> {
    match &source.database_url {
        Some(url) => reach(url, source, project).await,
        None => build(settings, project).await,
    }
}

/// An existing database: the superuser `url`, and the runtime's login from `source` or the
/// variable `roles.runtime_url_env` names; a scratch copy of it unless `source.in_place`.
async fn reach(url: &str, source: &Source, project: &ProjectConfig) -> Result<ProjectDatabase> {
    let runtime_url = source.runtime_url.clone().or_else(|| {
        project
            .roles
            .runtime_url_env
            .as_deref()
            .and_then(crate::config::env_var)
    });
    let existing = crate::target::existing(
        url,
        "--database-url",
        runtime_url.as_deref(),
        Some(&project.roles.runtime),
        source.in_place,
    )
    .await?;
    let Target::Existing { oracle, runtime } = existing.target else {
        unreachable!("an existing database is a Target::Existing");
    };
    Ok(ProjectDatabase {
        oracle,
        runtime,
        backend: "external".into(),
        database: None,
        placement: existing.placement,
        scratch: existing.scratch,
        origins: Origins::default(),
    })
}

/// A fresh database on the backend `settings` select, with the project's migrations applied
/// as its admin role: every directory in its layout, merged into one set in version order.
async fn build(settings: &Settings, project: &ProjectConfig) -> Result<ProjectDatabase> {
    let sources = project.migration_sources();
    if sources.is_empty() {
        return Err(Error::config(
            "rlsgate.toml has no [schema] migrations and no --database-url was given: \
             list the migration directories (migrations = [\"migrations\"]) or pass --database-url",
        ));
    }
    let mut migrations = Vec::new();
    let mut origins = Vec::new();
    // Each migration's file relative to the project, by (version, name).
    let mut files = BTreeMap::new();
    for (dir, format) in &sources {
        let set = MigrationSet::load_as(dir, *format)?;
        for m in set.migrations() {
            let file = origin::relative(&dir.join(&m.name), &project.base);
            files.insert((m.version, m.name.clone()), file);
        }
        migrations.extend(set.migrations().iter().cloned());
        origins.push(set.origin().to_string());
    }
    let origin = origins.join(" + ");
    // One set across the directories, ordered by version (a shared version is an error).
    let set = MigrationSet::from_migrations(migrations, &origin)?;
    let mut objects = Origins {
        root: origin::repository_root(&project.base),
        ..Origins::default()
    };
    for m in set.migrations() {
        objects.record(&files[&(m.version, m.name.clone())], m.statements());
    }
    // Shared with every other check of this process on the same settings (the tests).
    let server = Server::shared(settings).await?;
    let (admin, runtime) = project_roles(&server, project).await?;
    let database = server
        .project_database(&project.roles.admin, &project.roles.runtime)
        .await?;
    let mut owner = Server::connect_with(&server.config(&admin, database.name())).await?;
    set.apply(&mut owner, &admin.user).await?;
    drop(owner);
    Ok(ProjectDatabase {
        oracle: server.config(server.superuser_login(), database.name()),
        runtime: Some(server.config(&runtime, database.name())),
        backend: server.backend().to_string(),
        database: Some(database),
        placement: Placement::Built,
        scratch: None,
        origins: objects,
    })
}

/// The project's roles on `server`: its groups, admin and runtime logins (created once per
/// server), and the runtime's memberships. Returns the admin's and the runtime's logins.
async fn project_roles(
    server: &Server,
    project: &ProjectConfig,
) -> Result<(Credentials, Credentials)> {
    let roles = &project.roles;
    for group in &roles.groups {
        server.project_role(group, false).await?;
    }
    let admin = server
        .project_role(&roles.admin, true)
        .await?
        .expect("a login role has credentials");
    let runtime = server
        .project_role(&roles.runtime, true)
        .await?
        .expect("a login role has credentials");
    if !roles.runtime_member_of.is_empty() {
        let su = server.superuser().await?;
        let groups: Vec<String> = roles
            .runtime_member_of
            .iter()
            .map(|g| quote_ident(g))
            .collect();
        su.batch_execute(&format!(
            "GRANT {} TO {}",
            groups.join(", "),
            quote_ident(&roles.runtime)
        ))
        .await
        .map_err(|e| {
            Error::config(format!(
                "granting roles.runtime_member_of to {}: {}; list each group in roles.groups too",
                roles.runtime,
                crate::error::describe_db_error(&e)
            ))
        })?;
    }
    Ok((admin, runtime))
}

/// Check the file against the catalog: the roles exist, every tenant column is in some
/// relation, the tenant table and its key, and the DLQ table exist.
///
/// # Errors
/// A config error naming what is missing and the fix.
pub(crate) async fn validate(oracle: &Client, project: &ProjectConfig) -> Result<()> {
    let err = |e| Error::database("validating rlsgate.toml against the catalog", e);
    for (key, role) in [
        ("roles.admin", &project.roles.admin),
        ("roles.runtime", &project.roles.runtime),
    ] {
        let exists: bool = oracle
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                &[role],
            )
            .await
            .map_err(err)?
            .get(0);
        if !exists {
            return Err(Error::config(format!(
                "{key} = '{role}': no such role in this database's server; name the role the application uses"
            )));
        }
    }
    let schemas = &project.schema.schemas;
    for column in &project.tenant.columns {
        let found: i64 = oracle
            .query_one(
                "SELECT count(*) FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = ANY($1) AND a.attname = $2 AND a.attnum > 0
                   AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                &[schemas, column],
            )
            .await
            .map_err(err)?
            .get(0);
        if found == 0 {
            return Err(Error::config(format!(
                "tenant.columns: no relation in schema(s) {} has a column '{column}'; name the column that holds the tenant",
                schemas.join(", ")
            )));
        }
    }
    let relation_exists = |name: String| async move {
        oracle
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .map(|r| r.get::<_, bool>(0))
            .map_err(err)
    };
    if let Some(table) = &project.tenant.table {
        if !relation_exists(table.clone()).await? {
            return Err(Error::config(format!(
                "tenant.table = '{table}': no such table; name the table tenants live in, or leave tenant.table out"
            )));
        }
        let key: bool = oracle
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::text::regclass
                                AND attname = $2 AND attnum > 0 AND NOT attisdropped)",
                &[table, &project.tenant.key],
            )
            .await
            .map_err(err)?
            .get(0);
        if !key {
            return Err(Error::config(format!(
                "tenant.key = '{}': {table} has no such column; name its key column",
                project.tenant.key
            )));
        }
    }
    if let Some(dlq) = &project.dlq
        && !relation_exists(dlq.table.clone()).await?
    {
        return Err(Error::config(format!(
            "dlq.table = '{}': no such table; name the dead-letter table or drop [dlq]",
            dlq.table
        )));
    }
    Ok(())
}
