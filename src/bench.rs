//! `rlsgate bench`: how fast rlsgate proves things and how its cost grows, measured as medians
//! and spreads of repetitions, with ratios against the usual ways (re-applying migrations per
//! test, as `#[sqlx::test]` does). Targets are reported, never asserted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::campaign::{self, CampaignOptions};
use crate::config::{BackendChoice, Settings};
use crate::error::Result;
use crate::migrations::MigrationSet;
use crate::pgbench::Pgbench;
use crate::provision::{self, Server};
use crate::roles::{MIGRATION_OWNER, Role};
use crate::system::{Outcome, TaskMessage, TaskName, Variant, Worker, WorkerConfig};
use crate::workload::WorkloadShape;

/// How much to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Repetitions of each timing.
    pub repetitions: usize,
    /// How long the worker, and then pgbench, run per repetition of a throughput measurement.
    pub duration: Duration,
    /// Measure only the worker against pgbench (no server start, isolation, campaigns, growth
    /// or detection).
    pub worker_only: bool,
    /// Concurrency levels of the throughput measurements.
    pub concurrency: Vec<usize>,
    /// Tasks per case for the growth measurement.
    pub growth_tasks: Vec<usize>,
    /// Tenants per case for the growth measurement.
    pub growth_tenants: Vec<usize>,
    /// Seeds of the time-to-detection measurement.
    pub seeds: Vec<u64>,
    /// Cases of each campaign.
    pub cases: u32,
    /// The variants whose time to detection is measured.
    pub variants: Vec<Variant>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            repetitions: 5,
            duration: Duration::from_secs(3),
            worker_only: false,
            concurrency: vec![1, 4, 16],
            growth_tasks: vec![10, 100, 1000],
            growth_tenants: vec![2, 8, 32],
            seeds: vec![1, 2, 3],
            cases: 32,
            variants: Variant::ALL.to_vec(),
        }
    }
}

impl BenchOptions {
    /// The smallest configuration: one repetition of everything, tiny sizes (for the tests).
    pub fn tiny() -> Self {
        Self {
            repetitions: 1,
            duration: Duration::from_secs(1),
            worker_only: false,
            concurrency: vec![1, 4],
            growth_tasks: vec![5, 10],
            growth_tenants: vec![2, 4],
            seeds: vec![1],
            cases: 4,
            variants: vec![Variant::SessionContext],
        }
    }
}

/// Median and spread of repeated timings, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Repetitions.
    pub n: usize,
    /// The median.
    pub median_ms: f64,
    /// The fastest.
    pub min_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl Stat {
    /// The statistics of `samples` (milliseconds).
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        Self {
            n,
            median_ms: median,
            min_ms: samples[0],
            max_ms: samples[n - 1],
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Throughput at one concurrency level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Deliveries at once (and pool size; pgbench's clients).
    pub concurrency: usize,
    /// Tasks per second of the worker alone, no faults, committed tasks only (median of the
    /// repetitions).
    pub tasks_per_second: f64,
    /// Tasks of the worker's measurement that did not commit (none is expected without faults).
    pub tasks_not_committed: usize,
    /// pgbench running the worker's statements as the worker's login on the same database,
    /// for as long, alternating with the worker: transactions per second (median), or `None`
    /// without pgbench ([`BenchReport::pgbench`] says why).
    pub pgbench_tps: Option<f64>,
    /// `tasks_per_second / pgbench_tps`.
    pub worker_to_pgbench: Option<f64>,
    /// A campaign with the default fault mix at this concurrency: tasks per second (`None`
    /// when only the worker was measured).
    pub campaign_tasks_per_second: Option<f64>,
    /// The same campaign: cases per second (cases, probes and checks included).
    pub campaign_cases_per_second: Option<f64>,
}

/// The pgbench the worker is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgbenchComparison {
    /// The program and its version, when found.
    pub program: Option<String>,
    /// Why there is no comparison (pgbench missing), when there is none.
    pub unavailable: Option<String>,
    /// The command line of one run (the login is in the environment).
    pub command: Option<String>,
    /// Seconds per run of the worker and of pgbench.
    pub seconds: u64,
}

/// Time per case at one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Growth {
    /// Tasks in the case.
    pub tasks: usize,
    /// Tenants in the case.
    pub tenants: usize,
    /// Time to execute the tasks, per case.
    pub case: Stat,
}

/// Time to detect one broken variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The variant.
    pub variant: String,
    /// Whether every seed found a violation.
    pub detected: bool,
    /// Median cases until the first failing one.
    pub median_cases: f64,
    /// Seconds from the start of the run (server start included) to the first violation seen
    /// (a static check, or the end of the first failing case), median over the seeds.
    pub median_seconds: f64,
}

/// `bench.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Backend of the throughput, isolation, growth and detection measurements.
    pub backend: String,
    /// Server start to first successful query, per backend that could run.
    pub server_ready: BTreeMap<String, Stat>,
    /// Per-case isolation: `migrations` (a fresh database with the migrations re-applied),
    /// `template_clone` (a clone of the migrated template), `fresh_tenants` (a shared database
    /// with new tenants).
    pub isolation: BTreeMap<String, Stat>,
    /// `migrations / template_clone` and `template_clone / fresh_tenants`, by medians.
    pub isolation_ratios: BTreeMap<String, f64>,
    /// Throughput per concurrency level.
    pub throughput: Vec<Throughput>,
    /// The pgbench the worker's throughput is compared with.
    pub pgbench: PgbenchComparison,
    /// Time per case as tasks grow (at the smallest tenant count) and as tenants grow (at the
    /// largest task count).
    pub growth: Vec<Growth>,
    /// Time to detection per broken variant.
    pub detection: Vec<Detection>,
    /// Peak resident memory of this process, in KiB (`getrusage`).
    pub peak_rss_kib: i64,
}

/// Run every measurement on the backend `settings` select (and both local and container for
/// server start, where they can run); with [`BenchOptions::worker_only`], only the worker
/// against pgbench.
///
/// # Errors
/// A harness error when a server, database, campaign or pgbench fails.
pub async fn run(settings: &Settings, options: &BenchOptions) -> Result<BenchReport> {
    let server_ready = if options.worker_only {
        BTreeMap::new()
    } else {
        server_ready(settings, options.repetitions).await?
    };
    let server = Server::start(settings).await?;
    let backend = server.backend().to_string();
    let (isolation, isolation_ratios) = if options.worker_only {
        (BTreeMap::new(), BTreeMap::new())
    } else {
        let isolation = isolation(&server, options.repetitions).await?;
        let ratios = isolation_ratios(&isolation);
        (isolation, ratios)
    };
    let pgbench = Pgbench::find(settings);
    let seconds = options.duration.as_secs().max(1);
    let mut throughput = Vec::new();
    for &c in &options.concurrency {
        let mut t = worker_against_pgbench(&server, options, c, pgbench.as_ref().ok()).await?;
        if !options.worker_only {
            let campaign = campaign::run(
                settings,
                &CampaignOptions {
                    cases: options.cases,
                    pool_size: c,
                    shape: WorkloadShape {
                        max_concurrency: c,
                        ..WorkloadShape::default()
                    }
                    .without_crashes(),
                    ..CampaignOptions::default()
                },
            )
            .await?;
            t.campaign_tasks_per_second = Some(campaign.performance.tasks_per_second);
            t.campaign_cases_per_second = Some(campaign.performance.cases_per_second);
        }
        throughput.push(t);
    }
    let (growth, detection) = if options.worker_only {
        (Vec::new(), Vec::new())
    } else {
        (
            growth(&server, options).await?,
            detection(settings, options).await?,
        )
    };
    let top = options.concurrency.last().copied().unwrap_or(1);
    Ok(BenchReport {
        backend,
        server_ready,
        isolation,
        isolation_ratios,
        throughput,
        pgbench: PgbenchComparison {
            program: pgbench.as_ref().ok().map(Pgbench::describe),
            unavailable: pgbench.as_ref().err().cloned(),
            command: pgbench.as_ref().ok().map(|p| p.command(top, seconds)),
            seconds,
        },
        growth,
        detection,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// Server start to first successful query, per backend that can run here.
async fn server_ready(settings: &Settings, repetitions: usize) -> Result<BTreeMap<String, Stat>> {
    let mut server_ready = BTreeMap::new();
    for backend in [BackendChoice::Local, BackendChoice::Container] {
        let mut s = settings.clone();
        s.backend = backend;
        let Ok(selection) = provision::select(&s).await else {
            continue;
        };
        let mut samples = Vec::new();
        for _ in 0..repetitions {
            let started = Instant::now();
            let server = Server::start_selected(&s, selection.clone()).await?;
            server.version().await?;
            samples.push(ms(started.elapsed()));
            drop(server);
        }
        server_ready.insert(backend.to_string(), Stat::of(samples));
    }
    Ok(server_ready)
}

fn isolation_ratios(isolation: &BTreeMap<String, Stat>) -> BTreeMap<String, f64> {
    let ratio = |a: &str, b: &str| isolation[a].median_ms / isolation[b].median_ms.max(1e-9);
    [
        (
            "migrations/template_clone".to_string(),
            ratio("migrations", "template_clone"),
        ),
        (
            "template_clone/fresh_tenants".to_string(),
            ratio("template_clone", "fresh_tenants"),
        ),
    ]
    .into()
}

/// The worker alone at `concurrency` (its pool that size), then pgbench with as many clients
/// on the same database, tenant and login, for the same time, alternating per repetition.
async fn worker_against_pgbench(
    server: &Server,
    options: &BenchOptions,
    concurrency: usize,
    pgbench: Option<&Pgbench>,
) -> Result<Throughput> {
    let db = server.fresh_database().await?;
    let tenant = Uuid::new_v4();
    crate::system::create_tenant(&db, tenant, "bench").await?;
    let config = WorkerConfig {
        pool_size: concurrency,
        ..WorkerConfig::default()
    };
    let login = db.config(Worker::role_for(&config)).await?;
    let worker = Arc::new(Worker::connect_with(login.clone(), config)?);
    // Open the pool's logins first: pgbench leaves its connection time out too.
    run_worker(&worker, tenant, usize::MAX, concurrency, Duration::ZERO).await;
    let seconds = options.duration.as_secs().max(1);
    let (mut rates, mut tps, mut not_committed) = (Vec::new(), Vec::new(), 0);
    for rep in 0..options.repetitions {
        let duration = Duration::from_secs(seconds);
        let (committed, others) = run_worker(&worker, tenant, rep, concurrency, duration).await;
        rates.push(committed as f64 / duration.as_secs_f64());
        not_committed += others;
        if let Some(pgbench) = pgbench {
            tps.push(pgbench.run(&login, tenant, concurrency, seconds).await?);
        }
    }
    let tasks_per_second = Stat::of(rates).median_ms;
    let pgbench_tps = pgbench.map(|_| Stat::of(tps).median_ms);
    Ok(Throughput {
        concurrency,
        tasks_per_second,
        tasks_not_committed: not_committed,
        pgbench_tps,
        worker_to_pgbench: pgbench_tps.map(|p| tasks_per_second / p.max(1e-9)),
        campaign_tasks_per_second: None,
        campaign_cases_per_second: None,
    })
}

/// `concurrency` deliveries at once, each executing tasks one after another (cycling through
/// the task kinds) until `duration` is up (at least one task each); committed tasks and the
/// others.
async fn run_worker(
    worker: &Arc<Worker>,
    tenant: Uuid,
    rep: usize,
    concurrency: usize,
    duration: Duration,
) -> (usize, usize) {
    let deadline = Instant::now() + duration;
    let mut set = tokio::task::JoinSet::new();
    for client in 0..concurrency.max(1) {
        let worker = Arc::clone(worker);
        set.spawn(async move {
            let (mut committed, mut others) = (0, 0);
            for i in 0.. {
                let id = format!("bench-{rep}-{client}-{i}");
                let task = TaskMessage::new(id, TaskName::ALL[i % 4], tenant, Uuid::new_v4());
                match worker.execute(&task).await {
                    Outcome::Committed { .. } => committed += 1,
                    _ => others += 1,
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            (committed, others)
        });
    }
    let mut totals = (0, 0);
    while let Some(done) = set.join_next().await {
        let (c, o) = done.unwrap_or((0, 1));
        totals = (totals.0 + c, totals.1 + o);
    }
    totals
}

/// Time per case as tasks grow (at the smallest tenant count) and as tenants grow (at the
/// largest task count).
async fn growth(server: &Server, options: &BenchOptions) -> Result<Vec<Growth>> {
    let mut growth = Vec::new();
    let first_tenants = options.growth_tenants.first().copied().unwrap_or(2);
    let last_tasks = options.growth_tasks.last().copied().unwrap_or(10);
    let sizes: Vec<(usize, usize)> = options
        .growth_tasks
        .iter()
        .map(|&t| (t, first_tenants))
        .chain(
            options
                .growth_tenants
                .iter()
                .skip(1)
                .map(|&n| (last_tasks, n)),
        )
        .collect();
    for (tasks, tenants) in sizes {
        let db = server.fresh_database().await?;
        let ids: Vec<Uuid> = (0..tenants).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            crate::system::create_tenant(&db, *id, "bench").await?;
        }
        let mut samples = Vec::new();
        for rep in 0..options.repetitions {
            // A case builds its pool, so the time includes the logins.
            let started = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            let worker = Arc::new(Worker::connect(&db, WorkerConfig::default()).await?);
            for i in 0..tasks {
                let w = Arc::clone(&worker);
                let t = ids[i % ids.len()];
                set.spawn(async move { w.execute(&message(t, rep, i)).await });
            }
            while set.join_next().await.is_some() {}
            samples.push(ms(started.elapsed()));
        }
        growth.push(Growth {
            tasks,
            tenants,
            case: Stat::of(samples),
        });
    }
    Ok(growth)
}

/// Time to detection of each variant, over the seeds.
async fn detection(settings: &Settings, options: &BenchOptions) -> Result<Vec<Detection>> {
    let mut detection = Vec::new();
    for &v in &options.variants {
        let mut cases = Vec::new();
        let mut secs = Vec::new();
        let mut detected = true;
        for &seed in &options.seeds {
            let report = campaign::run(
                settings,
                &CampaignOptions {
                    cases: options.cases,
                    seed,
                    variants: [v].into(),
                    max_shrink_iters: 0,
                    ..CampaignOptions::default()
                },
            )
            .await?;
            detected &= report.counterexample.is_some() || !report.violated().is_empty();
            cases.push(report.cases_run as f64);
            secs.push(
                report
                    .performance
                    .first_violation_ms
                    .map_or(f64::NAN, |t| t as f64 / 1000.0),
            );
        }
        detection.push(Detection {
            variant: v.to_string(),
            detected,
            median_cases: Stat::of(cases).median_ms,
            median_seconds: Stat::of(secs).median_ms,
        });
    }
    Ok(detection)
}

fn message(tenant: Uuid, rep: usize, i: usize) -> TaskMessage {
    TaskMessage::new(
        format!("bench-{rep}-{i}"),
        TaskName::ALL[i % 4],
        tenant,
        Uuid::new_v4(),
    )
}

/// The three ways to isolate a test case, each timed `repetitions` times.
async fn isolation(server: &Server, repetitions: usize) -> Result<BTreeMap<String, Stat>> {
    let migrations = MigrationSet::reference();
    let (mut fresh, mut clone, mut tenants) = (Vec::new(), Vec::new(), Vec::new());
    let shared = server.fresh_database().await?;
    // As a campaign does: new tenants over a connection it already holds.
    let oracle = shared.connect(Role::Superuser).await?;
    for _ in 0..repetitions {
        let started = Instant::now();
        let db = server.empty_database().await?;
        let mut admin = db.connect(Role::MigrationOwner).await?;
        migrations.apply(&mut admin, MIGRATION_OWNER).await?;
        fresh.push(ms(started.elapsed()));
        drop(admin);
        drop(db);

        let started = Instant::now();
        let db = server.fresh_database().await?;
        clone.push(ms(started.elapsed()));
        drop(db);

        let started = Instant::now();
        for _ in 0..2 {
            oracle
                .execute(
                    "INSERT INTO tenants (id, name) VALUES ($1, 'bench')",
                    &[&Uuid::new_v4()],
                )
                .await
                .map_err(|e| crate::error::Error::database("creating a bench tenant", e))?;
        }
        tenants.push(ms(started.elapsed()));
    }
    Ok([
        ("migrations".to_string(), Stat::of(fresh)),
        ("template_clone".to_string(), Stat::of(clone)),
        ("fresh_tenants".to_string(), Stat::of(tenants)),
    ]
    .into())
}

/// Peak resident set size of this process, in KiB.
pub fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
        usage.ru_maxrss
    } else {
        -1
    }
}

impl BenchReport {
    /// The table printed by `rlsgate bench`.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let stat = |s: &Stat| {
            format!(
                "{:>9.1} ms (min {:.1}, max {:.1}, n {})",
                s.median_ms, s.min_ms, s.max_ms, s.n
            )
        };
        if !self.server_ready.is_empty() {
            let _ = writeln!(out, "server start to first query");
        }
        for (b, s) in &self.server_ready {
            let _ = writeln!(out, "  {b:<28} {}", stat(s));
        }
        if !self.isolation.is_empty() {
            let _ = writeln!(out, "per-case isolation ({})", self.backend);
        }
        for (k, s) in &self.isolation {
            let _ = writeln!(out, "  {k:<28} {}", stat(s));
        }
        for (k, r) in &self.isolation_ratios {
            let _ = writeln!(out, "  ratio {k:<22} {r:>9.1}x");
        }
        out.push_str(&self.throughput_table());
        if !self.growth.is_empty() {
            let _ = writeln!(out, "growth (time per case)");
        }
        for g in &self.growth {
            let _ = writeln!(
                out,
                "  {:>5} tasks, {:>3} tenants    {}",
                g.tasks,
                g.tenants,
                stat(&g.case)
            );
        }
        if !self.detection.is_empty() {
            let _ = writeln!(out, "time to detection (median over seeds, no shrinking)");
        }
        for d in &self.detection {
            let _ = writeln!(
                out,
                "  {:<28} {} in {:.0} cases, {:.2} s",
                d.variant,
                if d.detected { "detected" } else { "MISSED  " },
                d.median_cases,
                d.median_seconds
            );
        }
        let _ = writeln!(
            out,
            "peak memory                    {} KiB",
            self.peak_rss_kib
        );
        out
    }

    /// The throughput lines: the worker against pgbench, and the campaigns.
    fn throughput_table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "throughput (worker alone, no faults, {} s runs | pgbench, same SQL, same login | campaign with faults)",
            self.pgbench.seconds
        );
        for t in &self.throughput {
            let pgbench = match (t.pgbench_tps, t.worker_to_pgbench) {
                (Some(tps), Some(ratio)) => format!("{tps:.0} tps, worker {:.0}%", ratio * 100.0),
                _ => "no pgbench".into(),
            };
            let campaign = match (t.campaign_tasks_per_second, t.campaign_cases_per_second) {
                (Some(tasks), Some(cases)) => format!(" | {tasks:.0} tasks/s, {cases:.1} cases/s"),
                _ => String::new(),
            };
            let failed = if t.tasks_not_committed > 0 {
                format!(" ({} not committed)", t.tasks_not_committed)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  concurrency {:<16} {:>9.0} tasks/s{failed} | {pgbench}{campaign}",
                t.concurrency, t.tasks_per_second,
            );
        }
        if let Some(reason) = &self.pgbench.unavailable {
            let _ = writeln!(out, "  no pgbench comparison: {reason}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pgbench: PgbenchComparison, pgbench_tps: Option<f64>) -> BenchReport {
        BenchReport {
            backend: "local".into(),
            server_ready: BTreeMap::new(),
            isolation: BTreeMap::new(),
            isolation_ratios: BTreeMap::new(),
            throughput: vec![Throughput {
                concurrency: 4,
                tasks_per_second: 900.0,
                tasks_not_committed: 0,
                pgbench_tps,
                worker_to_pgbench: pgbench_tps.map(|p| 900.0 / p),
                campaign_tasks_per_second: None,
                campaign_cases_per_second: None,
            }],
            pgbench,
            growth: Vec::new(),
            detection: Vec::new(),
            peak_rss_kib: 1,
        }
    }

    #[test]
    fn the_table_gives_the_ratio_to_pgbench_or_says_why_there_is_none() {
        let found = report(
            PgbenchComparison {
                program: Some("pgbench".into()),
                unavailable: None,
                command: Some("pgbench -c 4".into()),
                seconds: 3,
            },
            Some(1000.0),
        );
        assert!(found.table().contains("900 tasks/s | 1000 tps, worker 90%"));
        let missing = report(
            PgbenchComparison {
                program: None,
                unavailable: Some("pgbench is not installed".into()),
                command: None,
                seconds: 3,
            },
            None,
        );
        let table = missing.table();
        assert!(table.contains("900 tasks/s | no pgbench"), "{table}");
        assert!(table.contains("no pgbench comparison: pgbench is not installed"));
        let json = serde_json::to_value(&missing).unwrap();
        assert!(json["throughput"][0]["pgbench_tps"].is_null());
        assert!(json["throughput"][0]["worker_to_pgbench"].is_null());
        assert_eq!(json["pgbench"]["unavailable"], "pgbench is not installed");
    }
}
