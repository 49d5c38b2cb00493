//! The `rlsgate` command line: a thin layer over the library.
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rlsgate::provision::external::ServerUrl;
use rlsgate::roles::{self, Credentials, Existing, RoleSet};
use rlsgate::system::Variant;
use rlsgate::{BackendChoice, MigrationSet, Role, Server, Settings};

/// Prove that a multi-tenant PostgreSQL persistence layer keeps tenants apart, records every
/// failure, and runs with least privilege.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision PostgreSQL, apply the reference migrations as migration_owner, and verify the
    /// runtime identity against the built-in system.
    Run {
        /// auto, container, local or external (default: RLSGATE_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Container image NAME:TAG (default: RLSGATE_PG_IMAGE).
        #[arg(long)]
        image: Option<String>,
        /// Superuser URL of an existing server; implies --backend external.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Stand the reference system up in a server of your own: create the roles and the database
    /// named in the URL (if missing) and apply the migrations as migration_owner. Idempotent.
    Setup {
        /// Superuser URL whose path names the database to create, e.g.
        /// postgres://postgres:secret@localhost:5432/llm_audit
        #[arg(long)]
        database_url: String,
    },
    /// Remove servers and containers left by killed runs and those kept for post-mortem.
    Clean,
    /// List the broken variants (negative controls): the name, then what it breaks.
    Variants,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                backend,
                image,
                database_url,
            } => run(backend, image, database_url).await,
            Command::Setup { database_url } => setup(&database_url).await,
            Command::Clean => clean().await,
            Command::Variants => {
                for v in Variant::ALL {
                    println!("{:<30} {}", v.name(), v.description());
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rlsgate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn settings(
    backend: Option<String>,
    image: Option<String>,
    url: Option<String>,
) -> anyhow::Result<Settings> {
    let mut settings = Settings::from_env()?;
    if let Some(url) = url {
        settings.database_url = Some(url);
        settings.backend = BackendChoice::External;
    }
    if let Some(b) = backend {
        settings.backend = b.parse().context("--backend")?;
    }
    if let Some(i) = image {
        settings.image = i.parse()?;
    }
    Ok(settings)
}

async fn run(
    backend: Option<String>,
    image: Option<String>,
    url: Option<String>,
) -> anyhow::Result<ExitCode> {
    let settings = settings(backend, image, url)?;
    let started = std::time::Instant::now();
    let server = Server::start(&settings).await?;
    eprintln!(
        "rlsgate: server {} ready in {:.2?}",
        server.version().await?,
        started.elapsed()
    );
    let db = server.fresh_database().await?;
    eprintln!(
        "rlsgate: migrated the template as migration_owner and cloned it into {}",
        db.name()
    );
    let runtime = db.connect(Role::Runtime).await?;
    let row = runtime
        .query_one(
            "SELECT current_user::text, r.rolsuper, r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let (user, is_super, bypass): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let admin = db.connect(Role::MigrationOwner).await?;
    let foreign_owned: Vec<String> = admin
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r','p','v','m','S')
               AND pg_get_userbyid(c.relowner) <> 'migration_owner' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let applied = rlsgate::migrations::applied_by(&admin).await?;
    let checks = [
        ("runtime connection is app_user", user == roles::APP_USER),
        (
            "runtime is neither superuser nor BYPASSRLS",
            !is_super && !bypass,
        ),
        (
            "every relation is owned by migration_owner",
            foreign_owned.is_empty(),
        ),
        (
            "every migration was applied by migration_owner",
            !applied.is_empty() && applied.values().all(|r| r == roles::MIGRATION_OWNER),
        ),
    ];
    let mut all = true;
    for (what, ok) in checks {
        println!("{:<6} {what}", if ok { "holds" } else { "FAILS" });
        all &= ok;
    }
    println!("verdict: {}", if all { "pass" } else { "fail" });
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn setup(url: &str) -> anyhow::Result<ExitCode> {
    let target = ServerUrl::parse(url, "--database-url")?;
    anyhow::ensure!(
        target.database != "postgres",
        "--database-url must name the database to create in its path (e.g. .../llm_audit); \
         rlsgate will not install the reference system into the maintenance database 'postgres'"
    );
    let mut maintenance: tokio_postgres::Config = url.parse()?;
    maintenance.dbname("postgres");
    let su = Server::connect_with(&maintenance).await?;
    let roles = RoleSet {
        migration_owner: Credentials::random(roles::MIGRATION_OWNER),
        app_user: Credentials::random(roles::APP_USER),
    };
    let boot = roles::bootstrap(&su, &roles, Existing::Keep).await?;
    let mut changed = false;
    for name in &boot.created {
        changed = true;
        let password = match name.as_str() {
            roles::MIGRATION_OWNER => Some(&roles.migration_owner.password),
            roles::APP_USER => Some(&roles.app_user.password),
            _ => None,
        };
        match password {
            Some(p) => {
                println!("created login role {name} with password {p} (shown once; store it)")
            }
            None => println!("created role {name}"),
        }
    }
    let exists = su
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&target.database],
        )
        .await?
        .is_some();
    if !exists {
        changed = true;
        let quoted = format!("\"{}\"", target.database.replace('"', "\"\""));
        // CREATE DATABASE refuses to run in a multi-statement batch: a call of its own.
        su.batch_execute(&format!("CREATE DATABASE {quoted} OWNER migration_owner"))
            .await?;
        su.batch_execute(&format!(
            "REVOKE ALL ON DATABASE {quoted} FROM PUBLIC; GRANT CONNECT ON DATABASE {quoted} TO app_user"
        ))
        .await?;
        println!(
            "created database {} owned by migration_owner",
            target.database
        );
    }
    let mut inside = Server::connect_with(&url.parse()?).await?;
    if !exists {
        inside
            .batch_execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            .await?;
    }
    // The superuser becomes migration_owner for the migrations: everything they create is owned
    // by it, and rlsgate_migrations records it as the role that applied them.
    inside.batch_execute("SET ROLE migration_owner").await?;
    let applied = MigrationSet::reference()
        .apply(&mut inside, roles::MIGRATION_OWNER)
        .await?;
    changed |= !applied.applied.is_empty();
    println!("{applied}");
    if !changed {
        println!("nothing to do: the roles, the database and every migration are already in place");
    }
    Ok(ExitCode::SUCCESS)
}

async fn clean() -> anyhow::Result<ExitCode> {
    let report = rlsgate::provision::clean_all(&Settings::from_env()?).await;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
