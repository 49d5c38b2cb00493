//! The `rlsgate` command line: a thin layer over the library.
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rlsgate::roles;
use rlsgate::system::Variant;
use rlsgate::{BackendChoice, Role, Server, Settings};

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
    println!("{}", rlsgate::setup::setup(url).await?);
    Ok(ExitCode::SUCCESS)
}

async fn clean() -> anyhow::Result<ExitCode> {
    let report = rlsgate::provision::clean_all(&Settings::from_env()?).await;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
