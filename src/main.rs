//! The `rlsgate` command line: a thin layer over the library.
use std::process::ExitCode;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rlsgate::campaign::{self, CampaignOptions, Progress};
use rlsgate::report::{Baseline, Report, Shard, Verdict};
use rlsgate::system::Variant;
use rlsgate::{BackendChoice, Settings};

/// Prove that a multi-tenant PostgreSQL persistence layer keeps tenants apart, records every
/// failure, and runs with least privilege.
#[derive(Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The exit codes of `run` and `check`, for `--help`.
const EXIT_CODES: &str = "Exit codes of run and check:
  0    pass: every invariant holds (findings a --baseline knows or [[accept]] accepts aside)
  1    findings: some invariant is violated by a finding that is new (not accepted, not known)
  2    harness error: rlsgate could not run (a bad flag, config, URL or baseline included)
  3    inconclusive: nothing violated, but some invariant could not be decided
  4    nothing could be tested: every invariant is inconclusive
  130  interrupted by SIGINT or SIGTERM
doctor exits 0 when no check fails, 2 otherwise.";

/// Options of a campaign, shared by `run` and `check`.
#[derive(Args, Debug, Clone)]
struct CampaignArgs {
    /// Cases to generate (shrinking a failure runs more).
    #[arg(long, default_value_t = campaign::DEFAULT_CASES)]
    cases: u32,
    /// Seed of the workload generator; the same seed replays the same workloads.
    #[arg(long, default_value_t = campaign::DEFAULT_SEED)]
    seed: u64,
    /// Where report.json goes.
    #[arg(long, default_value = "target/rlsgate")]
    out: PathBuf,
    /// Run shard K of N: every shard generates the same cases from the seed and runs those
    /// numbered n ≡ K (mod N); `rlsgate merge` joins the shards' reports.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Also write the probes that held as a pgTAP suite into DIR (one .sql file per tenant
    /// relation, and runtime.sql), for pg_prove or supabase test db.
    #[arg(long, value_name = "DIR")]
    emit_pgtap: Option<PathBuf>,
    /// Findings known already: a report.json of an earlier run, or a file `rlsgate baseline`
    /// wrote. Its findings are listed as known and do not fail the gate; only new ones do.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse().map_err(|e: rlsgate::Error| e.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// Run a property-based campaign against the built-in system (optionally with broken
    /// variants): random multi-tenant workloads with faults, every invariant checked after each
    /// case. Exit 0 when every invariant holds, 1 on a (new) finding, 2 when the harness
    /// failed, 3 when something is inconclusive, 4 when nothing could be tested (see below).
    #[command(after_help = EXIT_CODES)]
    Run {
        /// auto, container, local or external (default: RLSGATE_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Container image NAME:TAG (default: RLSGATE_PG_IMAGE).
        #[arg(long)]
        image: Option<String>,
        /// Superuser URL of an existing server; implies --backend external (with
        /// RLSGATE_BACKEND=external, RLSGATE_DATABASE_URL gives it instead).
        #[arg(long)]
        database_url: Option<String>,
        /// A broken variant to switch on (repeatable); `rlsgate variants` lists them.
        #[arg(long = "variant")]
        variants: Vec<String>,
        #[command(flatten)]
        campaign: CampaignArgs,
    },
    /// Check a project described by an rlsgate.toml (--config): its migrations applied into a
    /// fresh database on the selected backend, or the existing database of --database-url.
    /// Without --config: an existing database holding the reference schema (as `rlsgate setup`
    /// makes it). An existing database is checked on a scratch copy (CREATE DATABASE ...
    /// TEMPLATE, dropped afterwards) and never written; --in-place checks it itself with probes
    /// that roll back. Exit codes as `run`.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// The project's rlsgate.toml (or a directory holding one); docs/project.md.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Superuser URL of the database to check (default: RLSGATE_DATABASE_URL; required
        /// without --config; with --config, used only when the project has no migrations).
        #[arg(long)]
        database_url: Option<String>,
        /// The runtime's login URL (postgres://app_user:PASSWORD@HOST/DB; default:
        /// RLSGATE_RUNTIME_URL); without it every probe is inconclusive.
        #[arg(long)]
        runtime_url: Option<String>,
        /// auto, container, local or external, for a project's migrations (default:
        /// RLSGATE_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Check the existing database itself instead of a scratch copy (when no copy can be
        /// made, e.g. other sessions are connected): only probes whose writes are rolled back
        /// run; what commits (the DML property, the worker's workloads) is skipped and its
        /// invariants are inconclusive.
        #[arg(long)]
        in_place: bool,
        #[command(flatten)]
        campaign: CampaignArgs,
    },
    /// Draft an rlsgate.toml from a project's migrations (--migrations DIR, applied into a
    /// fresh database) or an existing database (--database-url URL --runtime ROLE, read in a
    /// read-only session): roles, tenant setting, columns, tenant table and key, DLQ, and the
    /// runtime's privileges as the declared matrix, each commented with why. Prints what it
    /// guessed; never overwrites a file (--force does).
    Init {
        /// A migrations directory (repeatable), in its tool's layout.
        #[arg(long = "migrations")]
        migrations: Vec<PathBuf>,
        /// The migrations' layout (rlsgate, sqlx, supabase, flyway, refinery, golang-migrate,
        /// diesel, dbmate; default: detected).
        #[arg(long)]
        format: Option<String>,
        /// An existing database to read (never written) instead of migrations.
        #[arg(long)]
        database_url: Option<String>,
        /// The role the migrations run as / that owns the schema (default: guessed).
        #[arg(long)]
        admin: Option<String>,
        /// The role the application logs in as (required with --database-url; default with
        /// --migrations: guessed from the grants).
        #[arg(long)]
        runtime: Option<String>,
        /// auto, container, local or external, for the migrations (default: RLSGATE_BACKEND).
        #[arg(long)]
        backend: Option<String>,
        /// Where to write the draft: a file, or a directory to hold rlsgate.toml.
        #[arg(long, default_value = "rlsgate.toml")]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Stand the reference system up in a server of your own: create the roles and the database
    /// named in the URL (if missing) and apply the migrations as migration_owner. Idempotent.
    Setup {
        /// Superuser URL whose path names the database to create, e.g.
        /// postgres://postgres:secret@localhost:5432/llm_audit (default: RLSGATE_DATABASE_URL)
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Measure server start, per-case isolation, throughput, growth, time to detection and
    /// peak memory; print a table and write DIR/bench.json.
    Bench {
        /// auto, container, local or external (default: RLSGATE_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Where bench.json goes.
        #[arg(long, default_value = "target/rlsgate")]
        out: PathBuf,
        /// One repetition of everything at tiny sizes (a smoke test, not a measurement).
        #[arg(long)]
        tiny: bool,
        /// Only the worker against pgbench (the throughput of the worker alone, no campaigns).
        #[arg(long)]
        worker_only: bool,
    },
    /// Render evidence.md, junit.xml, results.sarif and access.html again from a saved
    /// report.json (into the report's directory unless --out says otherwise).
    Evidence {
        /// The report.json a run or check wrote.
        #[arg(long)]
        from: PathBuf,
        /// Where to write; default: beside the report.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Remove servers and containers left by killed runs and those kept for post-mortem; with
    /// --database-url (or RLSGATE_DATABASE_URL), also the databases and roles runs left on that
    /// existing server (never those `rlsgate setup` made).
    Clean {
        /// Superuser URL of an existing server to clean too.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// List the broken variants (negative controls): the name, then what it breaks.
    Variants,
    /// Merge the reports of a campaign's shards (runs with --shard K/N) into one report.json,
    /// evidence.md and junit.xml: what the cases counted adds up, the verdict is the worst.
    /// Refuses reports of different campaigns, a shard given twice, and missing shards (unless
    /// --partial). Exit codes as `run`.
    Merge {
        /// The shards' output directories, each holding a report.json.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Where the merged report goes.
        #[arg(long)]
        out: PathBuf,
        /// Merge without some shards (a shard's job failed); the verdict is then not pass.
        #[arg(long)]
        partial: bool,
    },
    /// Check the environment: Docker and the image, the local server binaries, which backend
    /// `auto` would pick and why, the URLs (reached, who they log in as, the server's version),
    /// the roles of an rlsgate.toml on that server, its migrations. Prints ok/warn/fail with
    /// the fix, writes DIR/doctor.json (passwords masked) for bug reports, never writes to a
    /// database. Exit 0 when nothing fails, 2 otherwise.
    Doctor {
        /// An rlsgate.toml (or a directory holding one) whose roles and migrations to check.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A superuser URL (default: RLSGATE_DATABASE_URL).
        #[arg(long)]
        database_url: Option<String>,
        /// The runtime's login URL (default: roles.runtime_url_env's variable, then
        /// RLSGATE_RUNTIME_URL).
        #[arg(long)]
        runtime_url: Option<String>,
        /// Where doctor.json goes.
        #[arg(long, default_value = "target/rlsgate")]
        out: PathBuf,
    },
    /// Write a baseline from a report.json: its findings, sorted, each once, to check in and
    /// pass to `run`/`check --baseline` so the gate fails only on new findings.
    Baseline {
        /// The report.json of a run or check.
        #[arg(long)]
        from: PathBuf,
        /// The baseline file to write.
        #[arg(long, default_value = "rlsgate-baseline.json")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let interrupted_report = cli.command.interrupted_report();
    let result = runtime.block_on(async {
        // The work runs as a task of its own, so that a signal is seen while a campaign's
        // property runner blocks its thread.
        let mut work = tokio::spawn(execute(cli.command));
        tokio::select! {
            joined = &mut work => joined.map_err(|e| anyhow::anyhow!("the run panicked: {e}"))?,
            signal = interrupt() => {
                // A second signal ends the process at once.
                // SAFETY: restoring the default disposition of two signals.
                unsafe {
                    libc::signal(libc::SIGINT, libc::SIG_DFL);
                    libc::signal(libc::SIGTERM, libc::SIG_DFL);
                }
                eprintln!(
                    "rlsgate: {signal}: stopping after the case in flight; cleaning up (a second signal stops at once)"
                );
                rlsgate::campaign::request_stop();
                match tokio::time::timeout(std::time::Duration::from_secs(20), work).await {
                    Ok(Ok(Err(e))) if e.downcast_ref::<rlsgate::Error>()
                        .is_none_or(|e| e.kind() != rlsgate::ErrorKind::Interrupted) =>
                    {
                        eprintln!("rlsgate: error while stopping: {e:#}");
                    }
                    Err(_) => eprintln!("rlsgate: the run did not stop within 20 s; leaving it"),
                    _ => {}
                }
                Ok(interrupted(interrupted_report))
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rlsgate: error: {e:#}");
            ExitCode::from(rlsgate::report::exit::HARNESS_ERROR)
        }
    }
}

/// Write the interrupted report where the command writes its report, and exit by its verdict.
fn interrupted(report: Option<(Report, PathBuf)>) -> ExitCode {
    if let Some((report, out)) = report {
        match rlsgate::evidence::write(&report, &out) {
            Ok(_) => eprintln!(
                "rlsgate: verdict: interrupted; wrote {}",
                out.join("report.json").display()
            ),
            Err(e) => eprintln!("rlsgate: error: writing the interrupted report: {e:#}"),
        }
    }
    ExitCode::from(Verdict::Interrupted.exit_code())
}

/// The first SIGINT or SIGTERM (`None` when signals cannot be watched: run on).
async fn interrupt() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

impl Command {
    /// What a signal leaves behind for a command that writes a report: the interrupted report
    /// and the directory it goes to.
    fn interrupted_report(&self) -> Option<(Report, PathBuf)> {
        let reproduce = std::env::args().collect::<Vec<_>>().join(" ");
        match self {
            Self::Run { campaign, .. } => {
                Some((Report::interrupted("run", reproduce), campaign.out.clone()))
            }
            Self::Check {
                config, campaign, ..
            } => Some((
                Report::interrupted(
                    if config.is_some() { "project" } else { "check" },
                    reproduce,
                ),
                campaign.out.clone(),
            )),
            _ => None,
        }
    }
}

/// Carry out `command`.
async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    {
        match command {
            Command::Run {
                backend,
                image,
                database_url,
                variants,
                campaign,
            } => run(backend, image, database_url, variants, campaign).await,
            Command::Check {
                config: Some(config),
                database_url,
                runtime_url,
                backend,
                in_place,
                campaign,
            } => {
                let source = rlsgate::campaign::Source {
                    database_url,
                    runtime_url,
                    in_place,
                };
                check_project(&config, source, backend, campaign).await
            }
            Command::Check {
                config: None,
                database_url,
                runtime_url,
                backend: _,
                in_place,
                campaign,
            } => {
                let env = Settings::from_env()?;
                let url = database_url.or(env.database_url).ok_or_else(|| {
                    anyhow::anyhow!(
                        "rlsgate check needs --config rlsgate.toml (a project) or --database-url URL \
                         (or RLSGATE_DATABASE_URL) naming a database with the reference schema"
                    )
                })?;
                let source = rlsgate::campaign::Source {
                    database_url: Some(url),
                    runtime_url: runtime_url.or(env.runtime_url),
                    in_place,
                };
                check(&source, campaign).await
            }
            Command::Setup { database_url } => {
                let url = database_url
                    .or(Settings::from_env()?.database_url)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "rlsgate setup needs --database-url postgres://SUPERUSER:PASSWORD@HOST:PORT/DBNAME \
                             (or RLSGATE_DATABASE_URL)"
                        )
                    })?;
                setup(&url).await
            }
            Command::Init {
                migrations,
                format,
                database_url,
                admin,
                runtime,
                backend,
                out,
                force,
            } => {
                let format = format
                    .map(|f| f.parse::<rlsgate::migrations::Format>())
                    .transpose()?;
                let out = if out.is_dir() {
                    out.join(rlsgate::project::config::FILE_NAME)
                } else {
                    out
                };
                let options = rlsgate::project::draft::InitOptions {
                    migrations,
                    format,
                    database_url,
                    admin,
                    runtime,
                    out,
                    force,
                };
                init(backend, options).await
            }
            Command::Bench {
                backend,
                out,
                tiny,
                worker_only,
            } => bench(backend, &out, tiny, worker_only).await,
            Command::Evidence { from, out } => evidence(&from, out.as_deref()),
            Command::Clean { database_url } => clean(database_url).await,
            Command::Merge { dirs, out, partial } => merge(&dirs, &out, partial),
            Command::Baseline { from, out } => baseline(&from, &out),
            Command::Doctor {
                config,
                database_url,
                runtime_url,
                out,
            } => {
                let options = rlsgate::doctor::DoctorOptions {
                    config,
                    database_url,
                    runtime_url,
                };
                doctor(&options, &out).await
            }
            Command::Variants => {
                for v in Variant::ALL {
                    println!("{:<30} {}", v.name(), v.description());
                }
                Ok(ExitCode::SUCCESS)
            }
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

fn options(args: &CampaignArgs, variants: &[String]) -> anyhow::Result<CampaignOptions> {
    let variants = variants
        .iter()
        .map(|v| v.parse::<Variant>())
        .collect::<Result<BTreeSet<_>, _>>()?;
    if args.cases == 0 {
        anyhow::bail!("--cases must be at least 1");
    }
    Ok(CampaignOptions {
        cases: args.cases,
        seed: args.seed,
        variants,
        progress: if std::io::stderr().is_terminal() {
            Progress::Terminal
        } else {
            Progress::Lines
        },
        shard: args.shard,
        baseline: known(args)?,
        ..CampaignOptions::default()
    })
}

async fn run(
    backend: Option<String>,
    image: Option<String>,
    url: Option<String>,
    variants: Vec<String>,
    args: CampaignArgs,
) -> anyhow::Result<ExitCode> {
    let settings = settings(backend, image, url)?;
    let options = options(&args, &variants)?;
    eprintln!(
        "rlsgate: campaign of {} cases, seed {}{}",
        options.cases,
        options.seed,
        if variants.is_empty() {
            String::new()
        } else {
            format!(", variants: {}", variants.join(", "))
        }
    );
    let report = campaign::run(&settings, &options).await?;
    finish(&report, &args.out, args.emit_pgtap.as_deref())
}

async fn check(source: &campaign::Source, args: CampaignArgs) -> anyhow::Result<ExitCode> {
    let options = options(&args, &[])?;
    let report = campaign::check(source, &options).await?;
    finish(&report, &args.out, args.emit_pgtap.as_deref())
}

async fn check_project(
    config: &Path,
    source: campaign::Source,
    backend: Option<String>,
    args: CampaignArgs,
) -> anyhow::Result<ExitCode> {
    let mut project = rlsgate::Project::from_config(config)?
        .settings(settings(backend, None, None)?)
        .cases(args.cases)
        .seed(args.seed)
        .in_place(source.in_place)
        .progress(true);
    if let Some(url) = source.database_url {
        project = project.database_url(url);
    }
    if let Some(url) = source.runtime_url {
        project = project.runtime_url(url);
    }
    if let Some(shard) = args.shard {
        project = project.shard(shard);
    }
    if let Some(baseline) = known(&args)? {
        project = project.baseline(baseline);
    }
    eprintln!(
        "rlsgate: checking the project of {} ({} DML sequences, seed {})",
        config.display(),
        args.cases,
        args.seed
    );
    let report = project.check().await?;
    finish(&report, &args.out, args.emit_pgtap.as_deref())
}

/// Print the verdict table and the counterexample, write report.json, evidence.md, junit.xml,
/// results.sarif and access.html (and the pgTAP suite with --emit-pgtap), and exit by the verdict.
fn finish(report: &Report, out: &Path, pgtap: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut written = rlsgate::evidence::write(report, out)?;
    if let Some(dir) = pgtap {
        written.extend(rlsgate::evidence::pgtap::write(report, dir)?);
    }
    print!("{}", rlsgate::evidence::text::verdicts(report));
    if let Some(c) = &report.counterexample {
        println!("\nminimal counterexample:\n{}", c.transcript);
    }
    if let Some(r) = report
        .project
        .as_ref()
        .and_then(|p| p.reproduction.as_ref())
    {
        println!("\nminimal reproduction:\n{r}");
    }
    let p = &report.performance;
    let shrinking = report.shrink_runs;
    if report.project.is_some() {
        println!(
            "\n{} random DML sequences run; database ready in {:.2} s; {:.1} s in total",
            report.cases_run,
            p.server_ready_ms as f64 / 1000.0,
            p.elapsed_ms as f64 / 1000.0
        );
    } else {
        println!(
            "\n{} cases run{}, {} tasks in {:.1} s of cases: {:.0} tasks/s, {:.1} cases/s; server ready in {:.2} s; {:.1} s in total",
            report.cases_run,
            if shrinking > 0 {
                format!(" and {shrinking} more while shrinking")
            } else {
                String::new()
            },
            report.tasks.total,
            p.cases_ms as f64 / 1000.0,
            p.tasks_per_second,
            p.cases_per_second,
            p.server_ready_ms as f64 / 1000.0,
            p.elapsed_ms as f64 / 1000.0
        );
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    println!("reproduce: {}", report.reproduce);
    println!("verdict: {}", report.verdict_line());
    Ok(ExitCode::from(report.exit_code()))
}

/// The baseline `--baseline` names, read.
fn known(args: &CampaignArgs) -> anyhow::Result<Option<Baseline>> {
    let Some(path) = &args.baseline else {
        return Ok(None);
    };
    let baseline = Baseline::load(path).context("--baseline")?;
    if baseline.left_out > 0 {
        eprintln!(
            "rlsgate: warning: the baseline's report counted {} violations beyond those it keeps in full; they are not in the baseline and count as new",
            baseline.left_out
        );
    }
    Ok(Some(baseline))
}

async fn doctor(options: &rlsgate::doctor::DoctorOptions, out: &Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let diagnosis = rlsgate::doctor::diagnose(&settings, options).await;
    print!("{}", diagnosis.render());
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("doctor.json");
    std::fs::write(&path, serde_json::to_string_pretty(&diagnosis)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(ExitCode::from(if diagnosis.failed() {
        rlsgate::report::exit::HARNESS_ERROR
    } else {
        0
    }))
}

fn baseline(from: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    if from == out {
        anyhow::bail!(
            "--out {} is the --from file itself: name another file",
            out.display()
        );
    }
    let mut baseline = Baseline::load(from).context("--from")?;
    baseline.file.clear();
    std::fs::write(out, baseline.to_json())
        .with_context(|| format!("writing {}", out.display()))?;
    let n = baseline.findings.len();
    println!(
        "wrote {} ({n} finding{})",
        out.display(),
        if n == 1 { "" } else { "s" }
    );
    if baseline.left_out > 0 {
        eprintln!(
            "rlsgate: warning: the report counted {} violations beyond those it keeps in full; they are not in the baseline and will count as new",
            baseline.left_out
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn init(
    backend: Option<String>,
    options: rlsgate::project::draft::InitOptions,
) -> anyhow::Result<ExitCode> {
    let settings = settings(backend, None, None)?;
    let draft = rlsgate::project::draft::draft(&settings, &options).await?;
    eprintln!("rlsgate init: guessed (review each in the draft):");
    for line in &draft.summary {
        eprintln!("  {line}");
    }
    rlsgate::project::draft::write(&draft, &options.out, options.force)?;
    eprintln!(
        "wrote {}; next: rlsgate check --config {}{}",
        options.out.display(),
        options.out.display(),
        if options.database_url.is_some() {
            " --database-url SUPERUSER_URL --runtime-url RUNTIME_URL"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn bench(
    backend: Option<String>,
    out: &Path,
    tiny: bool,
    worker_only: bool,
) -> anyhow::Result<ExitCode> {
    let settings = settings(backend, None, None)?;
    let mut options = if tiny {
        rlsgate::bench::BenchOptions::tiny()
    } else {
        rlsgate::bench::BenchOptions::default()
    };
    options.worker_only = worker_only;
    let report = rlsgate::bench::run(&settings, &options).await?;
    print!("{}", report.table());
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn evidence(from: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let report = rlsgate::evidence::read(from)?;
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => from.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    for path in rlsgate::evidence::write(&report, &dir)? {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `rlsgate merge`: read DIR/report.json of every shard, merge, and finish as a run does.
fn merge(dirs: &[PathBuf], out: &Path, partial: bool) -> anyhow::Result<ExitCode> {
    let parts = dirs
        .iter()
        .map(|dir| {
            let report = rlsgate::evidence::read(&dir.join("report.json"))?;
            Ok(rlsgate::report::merge::Part {
                name: dir.display().to_string(),
                report,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = rlsgate::report::merge(parts, partial)?;
    if let Some(shards) = &report.shards {
        eprintln!("rlsgate: {}", shards.describe());
    }
    finish(&report, out, None)
}

async fn setup(url: &str) -> anyhow::Result<ExitCode> {
    println!("{}", rlsgate::setup::setup(url).await?);
    Ok(ExitCode::SUCCESS)
}

async fn clean(database_url: Option<String>) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let report = rlsgate::provision::clean_all(&settings).await;
    println!("{report}");
    if let Some(url) = database_url.or(settings.database_url) {
        println!("{}", rlsgate::database::clean_external(&url).await?);
    }
    Ok(ExitCode::SUCCESS)
}
