//! `rlsgate doctor`: what in the environment keeps a run or check from working, and the fix.
//!
//! It looks at Docker and the image, the local server binaries, the backend `auto` would pick
//! ([`crate::provision::preview`]: the same selection a run makes, without pulling), the
//! superuser and runtime URLs (parsed, reached, who they log in as, the server's version), the
//! roles of an `rlsgate.toml` on that server, and its migration directories. Each finding is
//! one [`Check`]: ok, warn or fail, with the fix. It only reads: every query is a catalog read,
//! and nothing is written to any database. [`Diagnosis`] is `doctor.json`, for bug reports;
//! URLs in it are masked ([`crate::secret::redact_url`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::config::{BackendChoice, Settings};
use crate::error::Error;
use crate::migrations::MigrationSet;
use crate::project::ProjectConfig;
use crate::provision::external::ServerUrl;
use crate::provision::{Server, container, local};
use crate::secret::redact_url;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Nothing to fix.
    Ok,
    /// A run may still work, or will report what this says: read the fix.
    Warn,
    /// A run cannot work until this is fixed.
    Fail,
}

impl Level {
    /// `ok`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One thing the doctor looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was looked at (`docker`, `image`, `local`, `backend`, `database-url`, ...).
    pub area: String,
    /// How it came out.
    pub level: Level,
    /// What was seen.
    pub message: String,
    /// What to do about it (for a warning or a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What the doctor is asked to look at besides the environment.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// An `rlsgate.toml` (or a directory holding one).
    pub config: Option<PathBuf>,
    /// A superuser URL (else `RLSGATE_DATABASE_URL`).
    pub database_url: Option<String>,
    /// The runtime's login URL (else the variable `roles.runtime_url_env` names, else
    /// `RLSGATE_RUNTIME_URL`).
    pub runtime_url: Option<String>,
}

/// Everything the doctor saw: `doctor.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// rlsgate's version.
    pub rlsgate_version: String,
    /// The backend asked for (`RLSGATE_BACKEND`).
    pub backend: String,
    /// Each check, in the order made.
    pub checks: Vec<Check>,
}

impl Diagnosis {
    /// Whether some check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.level == Level::Fail)
    }

    /// One line per check (`ok   area  message`), its fix below it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let _ = writeln!(out, "{:<5}{:<14}{}", c.level.as_str(), c.area, c.message);
            if let Some(fix) = &c.fix {
                let _ = writeln!(out, "{:<19}fix: {fix}", "");
            }
        }
        let count = |l| self.checks.iter().filter(|c| c.level == l).count();
        let _ = writeln!(
            out,
            "{} ok, {} warn, {} fail",
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail)
        );
        out
    }
}

fn check(area: &str, level: Level, message: impl Into<String>, fix: Option<String>) -> Check {
    Check {
        area: area.into(),
        level,
        message: message.into(),
        fix,
    }
}

/// Look at everything (see the module docs). Never fails: what cannot be looked at is a check.
pub async fn diagnose(settings: &Settings, options: &DoctorOptions) -> Diagnosis {
    let mut checks = Vec::new();
    docker(settings, &mut checks).await;
    binaries(settings, &mut checks);
    match crate::provision::preview(settings).await {
        Ok(s) => checks.push(check(
            "backend",
            Level::Ok,
            format!("{} would run: {}", s.backend.name(), s.reason),
            None,
        )),
        Err(e) => checks.push(failure("backend", &e, None)),
    }
    let project = options
        .config
        .as_deref()
        .and_then(|p| config(p, &mut checks));
    let database_url = options
        .database_url
        .clone()
        .or_else(|| settings.database_url.clone());
    let oracle = match database_url {
        Some(url) => superuser(&url, &mut checks).await,
        None => {
            checks.push(check(
                "database-url",
                Level::Ok,
                "none given (needed for an existing database and the external backend)",
                None,
            ));
            None
        }
    };
    if let (Some(project), Some(oracle)) = (&project, &oracle) {
        roles(project, oracle, &mut checks).await;
    }
    let named = project
        .as_ref()
        .and_then(|p| p.roles.runtime_url_env.as_deref())
        .and_then(crate::config::env_var);
    let runtime_url = options
        .runtime_url
        .clone()
        .or(named)
        .or_else(|| settings.runtime_url.clone());
    let runtime_role = project
        .as_ref()
        .map_or(crate::roles::APP_USER, |p| p.roles.runtime.as_str());
    match runtime_url {
        Some(url) => runtime(&url, runtime_role, &mut checks).await,
        None => checks.push(check(
            "runtime-url",
            Level::Ok,
            "none given (a check of an existing database needs it, or every probe is inconclusive)",
            None,
        )),
    }
    Diagnosis {
        rlsgate_version: env!("CARGO_PKG_VERSION").into(),
        backend: settings.backend.name().into(),
        checks,
    }
}

/// A check of `level` fail from `e`, whose message names the fix.
fn failure(area: &str, e: &Error, fix: Option<&str>) -> Check {
    check(area, Level::Fail, e.to_string(), fix.map(str::to_string))
}

/// Docker reachable, and the image present.
async fn docker(settings: &Settings, checks: &mut Vec<Check>) {
    // Without Docker the local backend may still work: a failure only when asked for.
    let needed = if settings.backend == BackendChoice::Container {
        Level::Fail
    } else {
        Level::Warn
    };
    let docker = match container::docker(settings).await {
        Ok(d) => d,
        Err(e) => {
            checks.push(check("docker", needed, e.to_string(), None));
            return;
        }
    };
    let host = settings
        .docker_host
        .as_deref()
        .unwrap_or("the default socket");
    checks.push(check(
        "docker",
        Level::Ok,
        format!("reachable at {host}"),
        None,
    ));
    let image = &settings.image;
    if container::image_present(&docker, image).await {
        checks.push(check(
            "image",
            Level::Ok,
            format!("{image} is present"),
            None,
        ));
    } else {
        checks.push(check(
            "image",
            Level::Warn,
            format!("{image} is not present: the first container run pulls it"),
            Some(format!(
                "docker pull {image}; without a registry: scripts/build-postgres-image.sh 15 and RLSGATE_PG_IMAGE=rlsgate/postgres:15"
            )),
        ));
    }
}

/// The local server binaries and their version, and `pg_config`.
fn binaries(settings: &Settings, checks: &mut Vec<Check>) {
    let needed = if settings.backend == BackendChoice::Local {
        Level::Fail
    } else {
        Level::Warn
    };
    match local::find_bindir(settings) {
        Ok(dir) => {
            let version = version_of(&dir.join("postgres"));
            checks.push(check(
                "local",
                Level::Ok,
                format!("initdb and postgres in {} ({version})", dir.display()),
                None,
            ));
        }
        Err(e) => checks.push(check("local", needed, e.to_string(), None)),
    }
    let pg_config = version_of(Path::new("pg_config"));
    let found = !pg_config.starts_with("not runnable");
    checks.push(check(
        "pg_config",
        if found { Level::Ok } else { Level::Warn },
        format!("pg_config: {pg_config}"),
        (!found).then(|| {
            "install the PostgreSQL server package (Debian: postgresql), or set RLSGATE_PG_BINDIR".into()
        }),
    ));
}

/// What `program --version` prints, or why it could not run.
fn version_of(program: &Path) -> String {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => format!("not runnable: exit {}", out.status),
        Err(e) => format!("not runnable: {e}"),
    }
}

/// The project's config, and each migration directory read in its layout.
fn config(path: &Path, checks: &mut Vec<Check>) -> Option<ProjectConfig> {
    let project = match ProjectConfig::load(path) {
        Ok(p) => p,
        Err(e) => {
            checks.push(failure("config", &e, None));
            return None;
        }
    };
    checks.push(check(
        "config",
        Level::Ok,
        format!(
            "{}: admin role {}, runtime role {}",
            path.display(),
            project.roles.admin,
            project.roles.runtime
        ),
        None,
    ));
    for (dir, format) in project.migration_sources() {
        match MigrationSet::load_as(&dir, format) {
            Ok(set) => checks.push(check(
                "migrations",
                Level::Ok,
                format!(
                    "{} migration(s) from {}",
                    set.migrations().len(),
                    set.origin()
                ),
                None,
            )),
            Err(e) => checks.push(failure("migrations", &e, None)),
        }
    }
    Some(project)
}

/// The superuser URL: parsed, reached, a superuser, the server's version and advisories.
async fn superuser(url: &str, checks: &mut Vec<Check>) -> Option<Client> {
    let area = "database-url";
    let target = match ServerUrl::parse(url, "the database URL") {
        Ok(t) => t,
        Err(e) => {
            checks.push(failure(area, &e, None));
            return None;
        }
    };
    let client = reach(area, &target, checks).await?;
    let attributes = attributes(&client, &target.superuser.user).await;
    let version = server_version(&client).await;
    match attributes {
        Some((true, _, _)) => checks.push(check(
            area,
            Level::Ok,
            format!("{} logs in as a superuser; {version}", target.redacted()),
            None,
        )),
        _ => checks.push(check(
            area,
            Level::Fail,
            format!("{} logs in as {}, not a superuser", target.redacted(), target.superuser.user),
            Some("give the URL of a superuser (rlsgate reads the catalog as one, and copies or builds databases with it); the runtime's login goes in --runtime-url".into()),
        )),
    }
    if let Ok(num) = crate::catalog::server_version_num(&client).await {
        for advisory in crate::advisories::affecting(num) {
            checks.push(check(
                "server",
                Level::Warn,
                advisory,
                Some("upgrade the server to the latest minor release".into()),
            ));
        }
    }
    Some(client)
}

/// Log in to `target`, or say why not.
async fn reach(area: &str, target: &ServerUrl, checks: &mut Vec<Check>) -> Option<Client> {
    let config = target.endpoint.config(&target.superuser, &target.database);
    match Server::connect_with(&config).await {
        Ok(c) => Some(c),
        Err(e) => {
            checks.push(check(
                area,
                Level::Fail,
                format!("cannot log in at {}: {}", target.redacted(), redact_url(&e.to_string())),
                Some("check the host, port, user, password and database, and that the server runs and accepts TCP logins (pg_hba.conf)".into()),
            ));
            None
        }
    }
}

/// `(superuser, bypassrls, login)` of `role`, `None` when it does not exist.
async fn attributes(client: &Client, role: &str) -> Option<(bool, bool, bool)> {
    let row = client
        .query_opt(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .ok()??;
    Some((row.get(0), row.get(1), row.get(2)))
}

async fn server_version(client: &Client) -> String {
    match client.query_one("SHOW server_version", &[]).await {
        Ok(row) => format!("PostgreSQL {}", row.get::<_, String>(0)),
        Err(e) => format!("server version unreadable: {e}"),
    }
}

/// The roles of `project` on the superuser URL's server.
async fn roles(project: &ProjectConfig, oracle: &Client, checks: &mut Vec<Check>) {
    // With migrations, rlsgate creates the roles itself; an existing database needs them.
    let built = !project.migration_dirs().is_empty();
    for (what, role) in [
        ("admin", &project.roles.admin),
        ("runtime", &project.roles.runtime),
    ] {
        let area = format!("role {what}");
        match attributes(oracle, role).await {
            None if built => checks.push(check(&area, Level::Ok, format!("{role} does not exist on this server: a check of the migrations creates it"), None)),
            None => checks.push(check(
                &area,
                Level::Fail,
                format!("{role} does not exist on this server"),
                Some(format!("create the role {role}, or correct roles.{what} in rlsgate.toml")),
            )),
            Some((superuser, bypass, _)) if what == "runtime" && (superuser || bypass) => checks.push(check(
                &area,
                Level::Warn,
                format!("{role} is {}: row-level security does not apply to it, so the check reports runtime-identity violated and its probes inconclusive", if superuser { "a superuser" } else { "BYPASSRLS" }),
                Some(format!("ALTER ROLE {role} NOSUPERUSER NOBYPASSRLS, and give the application this role")),
            )),
            Some((_, _, false)) if what == "runtime" => checks.push(check(
                &area,
                Level::Warn,
                format!("{role} exists but cannot log in (NOLOGIN)"),
                Some(format!("ALTER ROLE {role} LOGIN PASSWORD '...' for an existing database's check, or point roles.runtime at the role the application logs in as")),
            )),
            Some(_) => checks.push(check(&area, Level::Ok, format!("{role} exists"), None)),
        }
    }
}

/// The runtime's URL: parsed, logs in, as `role`, without bypassing row-level security.
async fn runtime(url: &str, role: &str, checks: &mut Vec<Check>) {
    let area = "runtime-url";
    let target = match ServerUrl::parse(url, "the runtime URL") {
        Ok(t) => t,
        Err(e) => {
            checks.push(failure(area, &e, None));
            return;
        }
    };
    let Some(client) = reach(area, &target, checks).await else {
        return;
    };
    let user: Option<String> = client
        .query_one("SELECT current_user::text", &[])
        .await
        .ok()
        .map(|r| r.get(0));
    let user = user.unwrap_or_default();
    if user != role {
        checks.push(check(
            area,
            Level::Fail,
            format!(
                "{} logs in as {user}, not the runtime role {role}",
                target.redacted()
            ),
            Some(if role == crate::roles::APP_USER {
                format!(
                    "give the URL the application logs in with, as {role} (the reference schema's runtime; for a project, add --config rlsgate.toml)"
                )
            } else {
                format!(
                    "give the URL the application logs in with, as {role} (or correct roles.runtime)"
                )
            }),
        ));
        return;
    }
    match attributes(&client, &user).await {
        Some((true, _, _)) | Some((_, true, _)) => checks.push(check(
            area,
            Level::Warn,
            format!(
                "{} logs in as {user}, which bypasses row-level security",
                target.redacted()
            ),
            Some(format!("ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS")),
        )),
        _ => checks.push(check(
            area,
            Level::Ok,
            format!("{} logs in as the runtime role {user}", target.redacted()),
            None,
        )),
    }
}
