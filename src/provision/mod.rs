//! Provisioning: one PostgreSQL [`Server`] concept, three backends.
//!
//! - [`Backend::Container`]: testcontainers, the default where Docker works;
//! - [`Backend::Local`]: local server binaries in a temporary directory;
//! - [`Backend::External`]: an existing server given by a superuser URL.
//!
//! A [`Server`] is a cheap handle; the server stops (and its directory or container is removed)
//! when the last handle drops. [`Server::shared`] hands every caller of a process the same running
//! server through a weak registry, never through a `static` that would never be dropped.

pub(crate) mod container;
pub mod external;
pub(crate) mod local;
pub(crate) use local::program_candidates;
pub(crate) mod owner;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::config::{BackendChoice, KeepPolicy, Settings};
use crate::error::{Error, Result};
use crate::sql::quote_ident;

/// A login: user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The role name to log in as.
    pub user: String,
    /// Its password (never printed by `Debug`).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// A resolved backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// A testcontainers-managed container.
    Container,
    /// Local server binaries.
    Local,
    /// An existing server.
    External,
}

impl Backend {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Local => "local",
            Self::External => "external",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// A connection configuration for `login` on database `dbname` at this endpoint.
    pub fn config(&self, login: &Credentials, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&login.user)
            .dbname(dbname)
            .application_name("rlsgate")
            .connect_timeout(Duration::from_secs(10));
        if !login.password.is_empty() {
            config.password(&login.password);
        }
        config
    }
}

/// The backend chosen for a run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The backend.
    pub backend: Backend,
    /// Why it was chosen, for the run's first line.
    pub reason: String,
}

/// Choose the backend `settings` ask for, checking that it can work.
///
/// # Errors
/// A provisioning or config error naming the fix when the asked-for backend cannot work (or, for
/// `auto`, when neither container nor local can).
pub async fn select(settings: &Settings) -> Result<Selection> {
    choose(settings, true).await
}

/// The backend [`select`] would choose, and why, without pulling a missing image (a missing
/// image is said to be pulled at the first run): what `rlsgate doctor` reports.
///
/// # Errors
/// As [`select`], except that a missing image is no error.
pub async fn preview(settings: &Settings) -> Result<Selection> {
    choose(settings, false).await
}

/// [`select`], pulling a missing image when `pull` (else saying it would be pulled).
async fn choose(settings: &Settings, pull: bool) -> Result<Selection> {
    let image = |docker| async move {
        if pull {
            container::ensure_image(&docker, &settings.image).await
        } else if container::image_present(&docker, &settings.image).await {
            Ok("present")
        } else {
            Ok("not present (pulled at the first run)")
        }
    };
    match settings.backend {
        BackendChoice::Container => {
            let docker = container::docker(settings).await?;
            let how = image(docker).await?;
            Ok(Selection {
                backend: Backend::Container,
                reason: format!("asked for; image {} is {how}", settings.image),
            })
        }
        BackendChoice::Local => {
            let bindir = local::find_bindir(settings)?;
            Ok(Selection {
                backend: Backend::Local,
                reason: format!("asked for; server binaries in {}", bindir.display()),
            })
        }
        BackendChoice::External => {
            let url = settings.database_url.as_deref().ok_or_else(|| {
                Error::config(
                    "the external backend needs a superuser URL; set RLSGATE_DATABASE_URL or pass --database-url",
                )
            })?;
            let url = external::ServerUrl::parse(url, "RLSGATE_DATABASE_URL")?;
            Ok(Selection {
                backend: Backend::External,
                reason: format!(
                    "asked for; server at {}:{}",
                    url.endpoint.host, url.endpoint.port
                ),
            })
        }
        BackendChoice::Auto => {
            let docker_says = match container::docker(settings).await {
                Ok(docker) => match image(docker).await {
                    Ok(how) => {
                        let mut reason =
                            format!("docker is reachable and image {} is {how}", settings.image);
                        if !pull
                            && how != "present"
                            && let Ok(bindir) = local::find_bindir(settings)
                        {
                            reason.push_str(&format!(
                                "; if the pull fails, local (server binaries in {})",
                                bindir.display()
                            ));
                        }
                        return Ok(Selection {
                            backend: Backend::Container,
                            reason,
                        });
                    }
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            match local::find_bindir(settings) {
                Ok(bindir) => Ok(Selection {
                    backend: Backend::Local,
                    reason: format!(
                        "container unavailable ({}); server binaries in {}",
                        first_clause(&docker_says),
                        bindir.display()
                    ),
                }),
                Err(local) => Err(Error::provisioning(format!(
                    "no backend can run: container: {docker_says}; local: {local}"
                ))),
            }
        }
    }
}

fn first_clause(message: &str) -> &str {
    message.split(';').next().unwrap_or(message)
}

/// A handle to a running PostgreSQL server. Clones share the server; the last drop stops it.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("backend", &self.inner.backend)
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

enum Instance {
    Local(Arc<local::LocalInstance>),
    Container(Box<container::ContainerInstance>),
    External,
}

struct Inner {
    backend: Backend,
    reason: String,
    endpoint: Mutex<Endpoint>,
    superuser: Credentials,
    maintenance_db: String,
    instance: Instance,
    /// State the layers above keep per server (its roles, its migrated template), one value
    /// per type: see [`Server::extension`].
    extensions: Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
    /// Roles created on this server, dropped (newest first) with an external server.
    created_roles: Mutex<Vec<String>>,
    /// Statements that put back what a run changed on an external server (roles it took over).
    restore: Mutex<Vec<String>>,
    run_id: String,
    next_database: AtomicU64,
    keep: KeepPolicy,
    kept: AtomicBool,
}

type Registry = BTreeMap<String, Weak<Inner>>;
static SHARED: tokio::sync::Mutex<Registry> = tokio::sync::Mutex::const_new(BTreeMap::new());

impl Server {
    /// Select a backend as `settings` say, print the choice and the reason, and start it.
    ///
    /// # Errors
    /// As [`select`], or a provisioning error when the server does not come up.
    pub async fn start(settings: &Settings) -> Result<Self> {
        let selection = select(settings).await?;
        eprintln!(
            "rlsgate: backend {} ({})",
            selection.backend, selection.reason
        );
        Self::start_selected(settings, selection).await
    }

    /// The server every caller in this process with the same settings shares, started on first
    /// use and stopped when the last handle drops.
    ///
    /// # Errors
    /// As [`Server::start`].
    pub async fn shared(settings: &Settings) -> Result<Self> {
        let key = format!(
            "{}|{}|{}",
            settings.backend,
            settings.image,
            settings.database_url.as_deref().unwrap_or("")
        );
        let mut registry = SHARED.lock().await;
        if let Some(inner) = registry.get(&key).and_then(Weak::upgrade) {
            return Ok(Self { inner });
        }
        let server = Self::start(settings).await?;
        registry.insert(key, Arc::downgrade(&server.inner));
        Ok(server)
    }

    /// Start the backend of `selection`.
    ///
    /// # Errors
    /// A provisioning error when the server does not come up.
    pub async fn start_selected(settings: &Settings, selection: Selection) -> Result<Self> {
        let password = Credentials::random("postgres").password;
        let (instance, endpoint, superuser, maintenance_db) = match selection.backend {
            Backend::Local => {
                let settings = settings.clone();
                let pw = password.clone();
                let (instance, endpoint) = tokio::task::spawn_blocking(move || {
                    local::LocalInstance::start(&settings, &pw)
                })
                .await
                .map_err(|e| Error::provisioning(format!("starting the local server: {e}")))??;
                (
                    Instance::Local(Arc::new(instance)),
                    endpoint,
                    Credentials {
                        user: "postgres".into(),
                        password,
                    },
                    "postgres".to_string(),
                )
            }
            Backend::Container => {
                let (instance, endpoint) =
                    container::ContainerInstance::start(settings, &password).await?;
                (
                    Instance::Container(Box::new(instance)),
                    endpoint,
                    Credentials {
                        user: "postgres".into(),
                        password,
                    },
                    "postgres".to_string(),
                )
            }
            Backend::External => {
                let url = settings.database_url.as_deref().unwrap_or_default();
                let url = external::ServerUrl::parse(url, "RLSGATE_DATABASE_URL")?;
                (
                    Instance::External,
                    url.endpoint,
                    url.superuser,
                    url.database,
                )
            }
        };
        let server = Self {
            inner: Arc::new(Inner {
                backend: selection.backend,
                reason: selection.reason,
                endpoint: Mutex::new(endpoint),
                superuser,
                maintenance_db,
                instance,
                extensions: Mutex::new(Vec::new()),
                created_roles: Mutex::new(Vec::new()),
                restore: Mutex::new(Vec::new()),
                run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
                next_database: AtomicU64::new(0),
                keep: settings.keep,
                kept: AtomicBool::new(false),
            }),
        };
        let client = server.wait_ready(Duration::from_secs(60)).await?;
        if server.backend() == Backend::External {
            external::check_superuser(&client, &server.inner.superuser.user).await?;
        }
        Ok(server)
    }

    /// Connect as the superuser until it works: readiness is a successful query, not a log line.
    async fn wait_ready(&self, patience: Duration) -> Result<Client> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let attempt = self.superuser().await;
            match attempt {
                Ok(client) if client.simple_query("SELECT 1").await.is_ok() => return Ok(client),
                Ok(_) => {}
                Err(e)
                    if self.backend() == Backend::External
                        || tokio::time::Instant::now() > deadline =>
                {
                    let Endpoint { host, port } = self.endpoint();
                    return Err(Error::provisioning(format!(
                        "cannot connect to the {} server at {host}:{port}: {}; check that it is running and \
                         that the URL's user and password are right",
                        self.backend(),
                        e.message()
                    )));
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The backend this server runs on.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Why the backend was chosen.
    pub fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// Where the server answers now.
    pub fn endpoint(&self) -> Endpoint {
        self.inner.endpoint.lock().unwrap().clone()
    }

    /// A connection configuration for `login` on database `dbname`.
    pub fn config(&self, login: &Credentials, dbname: &str) -> tokio_postgres::Config {
        self.endpoint().config(login, dbname)
    }

    /// A URL for `login` on `dbname`, for people (printed when a database is kept).
    pub fn url(&self, login: &Credentials, dbname: &str) -> String {
        let Endpoint { host, port } = self.endpoint();
        format!(
            "postgresql://{}:{}@{host}:{port}/{dbname}",
            login.user, login.password
        )
    }

    /// Write the URL of `login` on `dbname` into a file only the owner may read, for a kept
    /// database, and return the file and the URL with its password masked: rlsgate never
    /// prints a password. `rlsgate clean` removes the files.
    pub fn kept_url(&self, login: &Credentials, dbname: &str) -> (Option<PathBuf>, String) {
        let url = self.url(login, dbname);
        let masked = crate::secret::redact_url(&url);
        let dir = kept_urls_dir();
        let file = dir.join(format!("{dbname}.url"));
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&file)?
                .write_all(url.as_bytes())
        });
        (written.ok().map(|()| file), masked)
    }

    /// Connect with `config`, driving the connection on the current runtime.
    ///
    /// # Errors
    /// A database error naming the user and database when the connection fails.
    pub async fn connect_with(config: &tokio_postgres::Config) -> Result<Client> {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            Error::database(
                format!(
                    "connecting as {} to database {}",
                    config.get_user().unwrap_or("?"),
                    config.get_dbname().unwrap_or("?")
                ),
                e,
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A superuser connection to the maintenance database.
    ///
    /// # Errors
    /// A database error when the connection fails.
    pub async fn superuser(&self) -> Result<Client> {
        Self::connect_with(&self.config(&self.inner.superuser, &self.inner.maintenance_db)).await
    }

    /// A superuser connection to `dbname`.
    ///
    /// # Errors
    /// A database error when the connection fails.
    pub async fn superuser_on(&self, dbname: &str) -> Result<Client> {
        Self::connect_with(&self.config(&self.inner.superuser, dbname)).await
    }

    /// The superuser's login.
    pub fn superuser_login(&self) -> &Credentials {
        &self.inner.superuser
    }

    /// The server's version string (`SHOW server_version`).
    ///
    /// # Errors
    /// A database error when the query fails.
    pub async fn version(&self) -> Result<String> {
        let client = self.superuser().await?;
        let row = client
            .query_one("SELECT current_setting('server_version')", &[])
            .await
            .map_err(|e| Error::database("reading server_version", e))?;
        Ok(row.get(0))
    }

    /// The value of type `T` this server keeps for a higher layer (created on first use and
    /// shared by every handle): how the schema layer caches the roles and the migrated template
    /// per server without this module knowing them.
    pub(crate) fn extension<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut extensions = self.inner.extensions.lock().unwrap();
        if let Some(found) = extensions
            .iter()
            .find_map(|e| Arc::clone(e).downcast::<T>().ok())
        {
            return found;
        }
        let created = Arc::new(T::default());
        extensions.push(Arc::clone(&created) as Arc<dyn Any + Send + Sync>);
        created
    }

    /// Remember that role `name` was created on this server: an external server drops it
    /// when its last handle drops (after the databases), newest first.
    pub(crate) fn created_role(&self, name: &str) {
        let mut roles = self.inner.created_roles.lock().unwrap();
        if !roles.iter().any(|r| r == name) {
            roles.push(name.to_string());
        }
    }

    /// Run `statement` on an external server when its last handle drops, after its databases
    /// are dropped and before the roles it created are: how a layer above puts back what it
    /// changed (a role it took over gets its password and attributes back).
    pub(crate) fn restore_at_end(&self, statement: String) {
        self.inner.restore.lock().unwrap().push(statement);
    }

    /// A new database name, unique to this server handle's run (`rlsgate_<run>_<what><n>`):
    /// an external server drops every database with its run's prefix when its last handle drops.
    pub(crate) fn database_name(&self, what: &str) -> String {
        let n = self.inner.next_database.fetch_add(1, Ordering::SeqCst);
        format!("rlsgate_{}_{what}{n}", self.inner.run_id)
    }

    /// Whether `name` has the form of the names a run gives its databases
    /// (`rlsgate_<run>_<what><n>`): a database some run of rlsgate created (`rlsgate clean
    /// --database-url` drops only these).
    pub fn is_run_database(name: &str) -> bool {
        let Some(rest) = name.strip_prefix("rlsgate_") else {
            return false;
        };
        let Some((run, what)) = rest.split_once('_') else {
            return false;
        };
        let kind = what.trim_end_matches(|c: char| c.is_ascii_digit());
        run.len() == 8
            && run
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && ["empty", "project", "template", "db", "scratch"].contains(&kind)
            && kind.len() < what.len()
    }

    /// Crash the server (immediate stop, no shutdown checkpoint) and start it again. The endpoint
    /// may change (a container's host port does): read it again afterwards.
    ///
    /// # Errors
    /// A provisioning error on the external backend (rlsgate does not crash servers it does not
    /// own) or when the restart fails.
    pub async fn crash_and_restart(&self) -> Result<()> {
        match &self.inner.instance {
            Instance::Local(local) => {
                let local = Arc::clone(local);
                tokio::task::spawn_blocking(move || local.crash_and_restart())
                    .await
                    .map_err(|e| {
                        Error::provisioning(format!("restarting the local server: {e}"))
                    })??;
            }
            Instance::Container(c) => {
                let endpoint = c.crash_and_restart().await?;
                *self.inner.endpoint.lock().unwrap() = endpoint;
            }
            Instance::External => {
                return Err(Error::provisioning(
                    "crash faults need a server rlsgate owns; use RLSGATE_BACKEND=local or container",
                ));
            }
        }
        self.wait_ready(Duration::from_secs(60)).await.map(drop)
    }

    /// Keep the server (and so every database on it) running after the last handle drops.
    pub fn keep(&self) {
        self.inner.kept.store(true, Ordering::SeqCst);
    }

    pub(crate) fn keep_policy(&self) -> KeepPolicy {
        self.inner.keep
    }

    /// A short description of where the server lives, for messages.
    pub fn location(&self) -> String {
        match &self.inner.instance {
            Instance::Local(l) => format!("local server in {}", l.dir().display()),
            Instance::Container(c) => format!("container {}", &c.id()[..12]),
            Instance::External => {
                let Endpoint { host, port } = self.endpoint();
                format!("external server {host}:{port}")
            }
        }
    }
}

/// Run `future` to completion on a runtime of its own, on another thread: for cleanup in `Drop`,
/// which may run inside or outside a runtime.
pub(crate) fn run_detached<F>(future: F) -> Option<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
            .map(|rt| rt.block_on(future))
    })
    .join()
    .ok()
    .flatten()
}

impl Drop for Inner {
    fn drop(&mut self) {
        let kept = self.kept.load(Ordering::SeqCst) || self.keep == KeepPolicy::Always;
        if kept {
            let endpoint = self.endpoint.lock().unwrap().clone();
            eprintln!(
                "rlsgate: kept the {} server at {}:{} for post-mortem; `rlsgate clean` removes it",
                self.backend, endpoint.host, endpoint.port
            );
        }
        match &mut self.instance {
            Instance::Local(local) if kept => local.keep(),
            Instance::Local(_) => {}
            Instance::Container(c) if kept => c.keep(),
            Instance::Container(_) => {}
            Instance::External if kept => {}
            Instance::External => {
                let config = self
                    .endpoint
                    .lock()
                    .unwrap()
                    .config(&self.superuser, &self.maintenance_db);
                let prefix = format!("rlsgate_{}_", self.run_id);
                let created_roles: Vec<String> = self
                    .created_roles
                    .lock()
                    .map(|r| r.iter().rev().cloned().collect())
                    .unwrap_or_default();
                let restore: Vec<String> =
                    self.restore.lock().map(|r| r.clone()).unwrap_or_default();
                run_detached(async move {
                    let Ok(su) = Server::connect_with(&config).await else {
                        return;
                    };
                    let names: Vec<String> = su
                        .query(
                            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                            &[&prefix],
                        )
                        .await
                        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                        .unwrap_or_default();
                    for name in names {
                        let db = quote_ident(&name);
                        // Separate calls: DROP DATABASE refuses to run in a multi-statement batch.
                        let _ = su
                            .batch_execute(&format!("ALTER DATABASE {db} WITH IS_TEMPLATE false"))
                            .await;
                        let _ = su
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                            .await;
                    }
                    for statement in restore {
                        if let Err(e) = su.batch_execute(&statement).await {
                            eprintln!(
                                "rlsgate: could not restore a role this run took over: {}",
                                crate::error::describe_db_error(&e)
                            );
                        }
                    }
                    for name in created_roles {
                        let _ = su
                            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&name)))
                            .await;
                    }
                });
            }
        }
    }
}

/// Where the URLs of kept databases are written ([`Server::kept_url`]).
fn kept_urls_dir() -> PathBuf {
    std::env::temp_dir().join("rlsgate-kept-urls")
}

/// Remove every local server directory and container rlsgate left behind, kept ones included,
/// and the files holding the URLs of kept databases. Returns a one-line summary.
pub async fn clean_all(settings: &Settings) -> String {
    let _ = std::fs::remove_dir_all(kept_urls_dir());
    let dirs = tokio::task::spawn_blocking(|| local::sweep_leftovers_with(true))
        .await
        .unwrap_or_default();
    let containers = match container::docker(settings).await {
        Ok(docker) => container::sweep(&docker, true).await.len().to_string(),
        Err(_) => "no (docker not reachable)".into(),
    };
    format!(
        "removed {} local server(s) and {containers} container(s)",
        dirs.len()
    )
}

#[cfg(test)]
mod tests {
    use super::Server;

    #[test]
    fn only_names_a_run_gives_are_run_databases() {
        for name in [
            "rlsgate_0badcafe_db3",
            "rlsgate_12345678_template0",
            "rlsgate_12345678_scratch0",
        ] {
            assert!(Server::is_run_database(name), "{name}");
        }
        for name in [
            "rlsgate_demo",
            "rlsgate_0badcafe_db",
            "rlsgate_0BADCAFE_db1",
            "rlsgate_0badcafe_prod1",
            "rlsgate_abc_db1",
            "app_rlsgate_0badcafe_db1",
        ] {
            assert!(!Server::is_run_database(name), "{name}");
        }
    }
}
