//! `rlsgate bench`: how fast rlsgate proves things and how its cost grows, measured as medians
//! and spreads of repetitions, with ratios against the usual ways (re-applying migrations per
//! test, as `#[sqlx::test]` does). Targets are reported, never asserted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::campaign::{self, CampaignOptions};
use crate::config::{BackendChoice, Settings};
use crate::error::Result;
use crate::migrations::MigrationSet;
use crate::provision::{self, Server};
use crate::roles::{MIGRATION_OWNER, Role};
use crate::system::{TaskMessage, TaskName, Variant, Worker, WorkerConfig};
use crate::workload::WorkloadShape;

/// How much to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Repetitions of each timing.
    pub repetitions: usize,
    /// Tasks per throughput measurement.
    pub tasks: usize,
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
            tasks: 400,
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
            tasks: 20,
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
    /// Deliveries at once (and pool size).
    pub concurrency: usize,
    /// Tasks per second of the worker alone, no faults (median of the repetitions).
    pub tasks_per_second: f64,
    /// A campaign with the default fault mix at this concurrency: tasks per second.
    pub campaign_tasks_per_second: f64,
    /// The same campaign: cases per second (cases, probes and checks included).
    pub campaign_cases_per_second: f64,
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
    /// Time per case as tasks grow (at the smallest tenant count) and as tenants grow (at the
    /// largest task count).
    pub growth: Vec<Growth>,
    /// Time to detection per broken variant.
    pub detection: Vec<Detection>,
    /// Peak resident memory of this process, in KiB (`getrusage`).
    pub peak_rss_kib: i64,
}

/// Run every measurement on the backend `settings` select (and both local and container for
/// server start, where they can run).
///
/// # Errors
/// A harness error when a server, database or campaign fails.
pub async fn run(settings: &Settings, options: &BenchOptions) -> Result<BenchReport> {
    let mut server_ready = BTreeMap::new();
    for backend in [BackendChoice::Local, BackendChoice::Container] {
        let mut s = settings.clone();
        s.backend = backend;
        let Ok(selection) = provision::select(&s).await else {
            continue;
        };
        let mut samples = Vec::new();
        for _ in 0..options.repetitions {
            let started = Instant::now();
            let server = Server::start_selected(&s, selection.clone()).await?;
            server.version().await?;
            samples.push(ms(started.elapsed()));
            drop(server);
        }
        server_ready.insert(backend.to_string(), Stat::of(samples));
    }

    let server = Server::start(settings).await?;
    let backend = server.backend().to_string();
    let isolation = isolation(&server, options.repetitions).await?;
    let ratio = |a: &str, b: &str| isolation[a].median_ms / isolation[b].median_ms.max(1e-9);
    let isolation_ratios = [
        (
            "migrations/template_clone".to_string(),
            ratio("migrations", "template_clone"),
        ),
        (
            "template_clone/fresh_tenants".to_string(),
            ratio("template_clone", "fresh_tenants"),
        ),
    ]
    .into();

    let mut throughput = Vec::new();
    for &c in &options.concurrency {
        let db = server.fresh_database().await?;
        let tenant = Uuid::new_v4();
        crate::system::create_tenant(&db, tenant, "bench").await?;
        let worker = Worker::connect(
            &db,
            WorkerConfig {
                pool_size: c,
                ..WorkerConfig::default()
            },
        )
        .await?;
        let mut rates = Vec::new();
        for rep in 0..options.repetitions {
            let started = Instant::now();
            run_tasks(&worker, tenant, rep, options.tasks, c).await;
            rates.push(options.tasks as f64 / started.elapsed().as_secs_f64().max(1e-9));
        }
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
        throughput.push(Throughput {
            concurrency: c,
            tasks_per_second: Stat::of(rates).median_ms,
            campaign_tasks_per_second: campaign.performance.tasks_per_second,
            campaign_cases_per_second: campaign.performance.cases_per_second,
        });
    }

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
            let worker = std::sync::Arc::new(Worker::connect(&db, WorkerConfig::default()).await?);
            for i in 0..tasks {
                let w = std::sync::Arc::clone(&worker);
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
    Ok(BenchReport {
        backend,
        server_ready,
        isolation,
        isolation_ratios,
        throughput,
        growth,
        detection,
        peak_rss_kib: peak_rss_kib(),
    })
}

fn message(tenant: Uuid, rep: usize, i: usize) -> TaskMessage {
    TaskMessage::new(
        format!("bench-{rep}-{i}"),
        TaskName::ALL[i % 4],
        tenant,
        Uuid::new_v4(),
    )
}

async fn run_tasks(worker: &Worker, tenant: Uuid, rep: usize, tasks: usize, concurrency: usize) {
    use futures_util::StreamExt;
    futures_util::stream::iter(0..tasks)
        .map(|i| async move { worker.execute(&message(tenant, rep, i)).await })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
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
        let _ = writeln!(out, "server start to first query");
        for (b, s) in &self.server_ready {
            let _ = writeln!(out, "  {b:<28} {}", stat(s));
        }
        let _ = writeln!(out, "per-case isolation ({})", self.backend);
        for (k, s) in &self.isolation {
            let _ = writeln!(out, "  {k:<28} {}", stat(s));
        }
        for (k, r) in &self.isolation_ratios {
            let _ = writeln!(out, "  ratio {k:<22} {r:>9.1}x");
        }
        let _ = writeln!(
            out,
            "throughput (worker alone, no faults | campaign with faults)"
        );
        for t in &self.throughput {
            let _ = writeln!(
                out,
                "  concurrency {:<16} {:>9.0} tasks/s | {:.0} tasks/s, {:.1} cases/s",
                t.concurrency,
                t.tasks_per_second,
                t.campaign_tasks_per_second,
                t.campaign_cases_per_second
            );
        }
        let _ = writeln!(out, "growth (time per case)");
        for g in &self.growth {
            let _ = writeln!(
                out,
                "  {:>5} tasks, {:>3} tenants    {}",
                g.tasks,
                g.tenants,
                stat(&g.case)
            );
        }
        let _ = writeln!(out, "time to detection (median over seeds, no shrinking)");
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
}
