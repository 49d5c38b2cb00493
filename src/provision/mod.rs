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

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

use crate::config::{BackendChoice, KeepPolicy, Settings};
use crate::database::Database;
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::roles::{self, Credentials, Existing, RoleSet, quote_ident};

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
    match settings.backend {
        BackendChoice::Container => {
            let docker = container::docker(settings).await?;
            let how = container::ensure_image(&docker, &settings.image).await?;
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
                Ok(docker) => match container::ensure_image(&docker, &settings.image).await {
                    Ok(how) => {
                        return Ok(Selection {
                            backend: Backend::Container,
                            reason: format!(
                                "docker is reachable and image {} is {how}",
                                settings.image
                            ),
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
    roles: OnceCell<RoleSet>,
    created_roles: AtomicBool,
    project_roles: tokio::sync::Mutex<BTreeMap<String, Option<Credentials>>>,
    template: OnceCell<String>,
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
                roles: OnceCell::new(),
                created_roles: AtomicBool::new(false),
                project_roles: tokio::sync::Mutex::new(BTreeMap::new()),
                template: OnceCell::new(),
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

    /// The roles of the system under test, created on first use.
    ///
    /// # Errors
    /// A provisioning error when a role exists that rlsgate did not create, or a database error.
    pub async fn roles(&self) -> Result<&RoleSet> {
        self.inner
            .roles
            .get_or_try_init(|| async {
                let roles = RoleSet {
                    migration_owner: Credentials::random(roles::MIGRATION_OWNER),
                    app_user: Credentials::random(roles::APP_USER),
                };
                let client = self.superuser().await?;
                roles::bootstrap(&client, &roles, Existing::TakeOver).await?;
                self.inner.created_roles.store(true, Ordering::SeqCst);
                Ok(roles)
            })
            .await
    }

    fn database_name(&self, what: &str) -> String {
        let n = self.inner.next_database.fetch_add(1, Ordering::SeqCst);
        format!("rlsgate_{}_{what}{n}", self.inner.run_id)
    }

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

    /// The login of a project's role `name` on this server, created (or taken over, when
    /// rlsgate created it earlier) once per server with a random password; `login: false`
    /// makes a NOLOGIN group and returns `None`. The reference roles keep their own logins.
    /// Roles are cluster-wide, so every project on this server shares them.
    ///
    /// # Errors
    /// A provisioning error when the role exists and rlsgate did not create it; a database error.
    pub async fn project_role(&self, name: &str, login: bool) -> Result<Option<Credentials>> {
        if login {
            let reference = self.roles().await?;
            for c in [&reference.migration_owner, &reference.app_user] {
                if c.user == name {
                    return Ok(Some(c.clone()));
                }
            }
        } else if [roles::APP_RW, roles::APP_RO].contains(&name) {
            self.roles().await?;
            return Ok(None);
        }
        let mut known = self.inner.project_roles.lock().await;
        if let Some(c) = known.get(name) {
            return Ok(c.clone());
        }
        let credentials = login.then(|| Credentials::random(name));
        let attributes = if login {
            "LOGIN INHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"
        } else {
            "NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"
        };
        let su = self.superuser().await?;
        roles::ensure(
            &su,
            name,
            attributes,
            credentials.as_ref().map(|c| c.password.as_str()),
            Existing::TakeOver,
        )
        .await?;
        known.insert(name.to_string(), credentials.clone());
        Ok(credentials)
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
    pub async fn template(&self) -> Result<&str> {
        self.inner
            .template
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
            .map(String::as_str)
    }

    /// A fresh database cloned from the migrated template. It is dropped when the handle drops,
    /// unless the test failed (then it is kept and how to reach it is printed).
    ///
    /// # Errors
    /// As [`Server::template`], or a database error when the clone fails.
    pub async fn fresh_database(&self) -> Result<Database> {
        let template = self.template().await?.to_string();
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

/// Database-level privileges are not copied from a template: set them on every new database
/// (`su` is a superuser connection to any other database).
pub(crate) async fn harden_database(su: &Client, name: &str) -> Result<()> {
    harden_database_for(su, name, roles::APP_USER).await
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
                let drop_roles = self.created_roles.load(Ordering::SeqCst);
                let project_roles: Vec<String> = self
                    .project_roles
                    .try_lock()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
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
                    for name in project_roles {
                        let _ = su
                            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&name)))
                            .await;
                    }
                    if drop_roles {
                        let _ = roles::drop_all(&su).await;
                    }
                });
            }
        }
    }
}

/// Remove every local server directory and container rlsgate left behind, kept ones included.
/// Returns a one-line summary.
pub async fn clean_all(settings: &Settings) -> String {
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
