//! The campaign driver: one way through every mode.
//!
//! `rlsgate run` (the built-in system in a database rlsgate builds), `rlsgate check
//! --database-url` (the built-in schema in an existing database) and `rlsgate check --config`
//! (a project's schema) walk the same stages, and differ only in the *workload kind* they plug
//! in (a `Kind`):
//!
//! 1. **prepare** the target: build or reach the database and its logins ([`run`], [`check`],
//!    [`check_project`]);
//! 2. **discover**: the relations of the subject's schemas, and what the kind declares;
//! 3. **check statically**: the catalog evidence and the static invariants (`probes`);
//! 4. **seed** what the probes need;
//! 5. **probe** as the runtime: `runtime-lacks-ddl`, then the kind's exercise, which runs the
//!    shared tenant and pool probes (`probes`) and
//! 6. **the property** over proptest's seeded runner (`property`), shrinking a failure to a
//!    minimal counterexample;
//! 7. **report**; the scratch copy an existing database was checked on is dropped.
//!
//! An in-place check (`--in-place`) seeds nothing and runs no property: the probes run on the
//! existing tenants (`in_place`), and what commits is skipped.

mod in_place;
pub(crate) mod probes;
mod project;
mod property;
mod reference;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config};

pub use crate::project::Source;
pub use project::check_project;
pub use reference::{check, run};

use crate::catalog::{self, Relation};
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Ledger, no_runtime_login, runtime_lacks_ddl};
use crate::provision::Server;
use crate::report::{Performance, Placement, Report, Shard, StaticEvidence, TaskCounts, Verdict};
use crate::roles::Role;
use crate::scratch::ScratchCopy;
use crate::subject::Subject;
use crate::system::Variant;
use crate::target::Target;
use crate::workload::WorkloadShape;

/// Set once a stop was asked for ([`request_stop`]).
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ask every campaign of this process to stop at the next case boundary: the case in flight
/// finishes, nothing more runs, what was written is cleaned up, and the campaign returns an
/// [`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted) error. For signal handlers.
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

/// The default number of cases of a campaign.
pub const DEFAULT_CASES: u32 = 32;
/// The default seed: a campaign is reproducible unless asked otherwise.
pub const DEFAULT_SEED: u64 = 1;

/// How a campaign shows its progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing.
    Off,
    /// One line rewritten in place (a terminal): cases done, tasks per second, faults landed.
    Terminal,
    /// Plain lines, every tenth case, on failures and at the end (CI logs).
    Lines,
}

/// How a campaign against the built-in system runs.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// Cases to generate (shrinking runs more).
    pub cases: u32,
    /// The seed of proptest's generator.
    pub seed: u64,
    /// Broken variants to switch on (built-in system only).
    pub variants: BTreeSet<Variant>,
    /// Bounds of the generated workloads.
    pub shape: WorkloadShape,
    /// The longest shrinking may take.
    pub max_shrink_time: Duration,
    /// The most shrinking steps (0: report the first failing case as it is).
    pub max_shrink_iters: u32,
    /// Connections in the worker's pool.
    pub pool_size: usize,
    /// Where proptest saves failing seeds (a `proptest-regressions` file), if anywhere.
    pub regressions: Option<&'static str>,
    /// How progress is shown on stderr.
    pub progress: Progress,
    /// Run only this shard of the cases (`--shard K/N`; `None`: all of them).
    pub shard: Option<Shard>,
}

impl Default for CampaignOptions {
    fn default() -> Self {
        Self {
            cases: DEFAULT_CASES,
            seed: DEFAULT_SEED,
            variants: BTreeSet::new(),
            shape: WorkloadShape::default(),
            max_shrink_time: Duration::from_secs(20),
            max_shrink_iters: 512,
            pool_size: 4,
            regressions: None,
            progress: Progress::Off,
            shard: None,
        }
    }
}

/// How a project check runs.
#[derive(Debug, Clone)]
pub struct ProjectOptions {
    /// DML sequences to generate.
    pub cases: u32,
    /// The most actions in one sequence.
    pub max_actions: usize,
    /// The seed of proptest's generator.
    pub seed: u64,
    /// The longest shrinking may take.
    pub max_shrink_time: Duration,
    /// Connections in the runtime's pool.
    pub pool_size: usize,
    /// Print progress lines on stderr.
    pub progress: bool,
    /// Run only this shard of the DML sequences (`--shard K/N`; `None`: all of them).
    pub shard: Option<Shard>,
}

impl Default for ProjectOptions {
    fn default() -> Self {
        Self {
            cases: 16,
            max_actions: 8,
            seed: DEFAULT_SEED,
            max_shrink_time: Duration::from_secs(20),
            pool_size: 2,
            progress: false,
            shard: None,
        }
    }
}

/// A prepared target and what the report says about the run before it starts.
struct Prepared {
    target: Target,
    subject: Subject,
    /// The invariants that apply (`None`: all of them).
    scope: Option<Vec<InvariantId>>,
    /// `run`, `check` or `project`.
    mode: &'static str,
    backend: String,
    seed: u64,
    cases: u32,
    variants: Vec<String>,
    /// The command that reproduces the run.
    reproduce: String,
    /// How a user gives the runtime's login, for the inconclusive findings when none was given.
    runtime_login_hint: &'static str,
    started: Instant,
    ready: Duration,
    /// The findings the project accepts.
    accepted: Vec<crate::invariants::Acceptance>,
    /// How the database is treated.
    placement: Placement,
    /// The scratch copy the target is, dropped when the run ends.
    scratch: Option<ScratchCopy>,
}

/// The run in progress, handed from stage to stage.
pub(crate) struct Run<'t> {
    pub(crate) target: &'t Target,
    pub(crate) subject: Subject,
    /// A superuser connection to the target (reconnected after a crash).
    pub(crate) oracle: Client,
    /// The relations of the subject's schemas.
    pub(crate) relations: Vec<Relation>,
    /// The keys the catalog could not judge, for the probes that can.
    pub(crate) keys: probes::KeyCandidates,
    pub(crate) ledger: Ledger,
    pub(crate) started: Instant,
}

impl Run<'_> {
    /// The oracle, reconnected when a crash or a fault closed it.
    ///
    /// # Errors
    /// A database error when it cannot connect again.
    pub(crate) async fn reopen_oracle(&mut self) -> Result<()> {
        if self.oracle.is_closed() {
            self.oracle = Server::connect_with(&self.target.config(Role::Superuser).await?).await?;
        }
        Ok(())
    }
}

/// A workload kind: what differs between the built-in system and a project. Every other stage
/// is the driver's.
pub(crate) trait Kind {
    /// Complete the subject from the catalog once the relations are known (a project's declared
    /// privileges and discovery).
    async fn discover(&mut self, _run: &mut Run<'_>) -> Result<()> {
        Ok(())
    }

    /// Static checks of the kind's own, after the shared ones.
    fn static_checks(&mut self, _run: &mut Run<'_>) {}

    /// Create what the probes need before the runtime logs in (a project's tenants and
    /// sentinel rows).
    async fn seed(&mut self, _run: &mut Run<'_>) -> Result<()> {
        Ok(())
    }

    /// The probes and the property, as `runtime`.
    async fn exercise(&mut self, run: &mut Run<'_>, runtime: &Config) -> Result<()>;

    /// Whether `relation` is already inconclusive for a reason of the kind's (its rows could
    /// not be seeded), so the probes' coverage leaves it out.
    fn unjudged(&self, _relation: &str) -> bool {
        false
    }

    /// What an in-place check skips because it commits: each check in words, and the
    /// invariants only it decides (inconclusive then).
    fn skipped_in_place(&self) -> Vec<(&'static str, Vec<InvariantId>)>;

    /// Fill in the kind's part of the report.
    fn finish(self, report: &mut Report);
}

/// Walk the stages over the prepared target `p` with `kind`, then drop the scratch copy the
/// target is, if it is one (whatever happened).
///
/// # Errors
/// A harness error from any stage; findings are in the report.
async fn drive<K: Kind>(mut p: Prepared, kind: K) -> Result<Report> {
    let scratch = p.scratch.take();
    let report = walk(&p, kind).await;
    let Some(copy) = scratch else {
        return report;
    };
    match (copy.remove().await, report) {
        (Ok(()), report) => report,
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(first)) => {
            eprintln!("rlsgate: {e}");
            Err(first)
        }
    }
}

/// The stages, in order (see the module docs).
async fn walk<K: Kind>(p: &Prepared, mut kind: K) -> Result<Report> {
    let oracle = Server::connect_with(&p.target.config(Role::Superuser).await?).await?;
    let server_version = server_version(&oracle).await?;
    let mut run = Run {
        target: &p.target,
        relations: catalog::relations(&oracle, &p.subject).await?,
        subject: p.subject.clone(),
        oracle,
        keys: probes::KeyCandidates::default(),
        ledger: p
            .scope
            .clone()
            .map_or_else(Ledger::default, Ledger::scoped)
            .accepting(p.accepted.clone()),
        started: p.started,
    };
    kind.discover(&mut run).await?;
    let evidence = probes::static_checks(&run.oracle, &run.subject, &mut run.ledger).await?;
    run.keys = probes::key_checks(&run.oracle, &run.relations, &mut run.ledger).await?;
    kind.static_checks(&mut run);
    let mut skipped = Vec::new();
    if p.placement == Placement::InPlace {
        skipped = in_place::skip(&mut run, &kind);
        in_place::exercise(p, &mut run).await?;
    } else {
        exercise(p, &mut run, &mut kind).await?;
    }
    if let Some(unmatched) = run.ledger.unmatched_acceptances().first() {
        return Err(Error::config(format!(
            "the [[accept]] entry {} matches no finding: remove it, or correct its relation or probe",
            unmatched.describe()
        )));
    }
    let (verdict, invariants) = Report::results(&run.ledger);
    let mut report = report(p, server_version, evidence);
    report.advisories =
        crate::advisories::affecting(catalog::server_version_num(&run.oracle).await?);
    report.verdict = verdict;
    report.invariants = invariants;
    report.skipped = skipped;
    report.access = run.ledger.access(&run.subject);
    report.performance.elapsed_ms = p.started.elapsed().as_millis() as u64;
    kind.finish(&mut report);
    report.problems = crate::report::problems(&report);
    Ok(report)
}

/// Seed, then everything that runs as the runtime: inconclusive without its login.
async fn exercise<K: Kind>(p: &Prepared, run: &mut Run<'_>, kind: &mut K) -> Result<()> {
    kind.seed(run).await?;
    let Some(runtime) = runtime_login(p, run).await? else {
        return Ok(());
    };
    kind.exercise(run, &runtime).await?;
    let unjudged = |relation: &str| kind.unjudged(relation);
    let uncovered = probes::coverage(&run.ledger, &run.relations, &run.keys, &unjudged);
    run.ledger.record_all(uncovered);
    Ok(())
}

/// The runtime's login, after `runtime-lacks-ddl` ran as it; `None` (every probed invariant
/// inconclusive) when the target has none.
async fn runtime_login(p: &Prepared, run: &mut Run<'_>) -> Result<Option<Config>> {
    if !p.target.has_login(Role::Runtime) {
        run.ledger
            .record_all(no_runtime_login(p.runtime_login_hint));
        return Ok(None);
    }
    let runtime = p.target.config(Role::Runtime).await?;
    run.ledger
        .record_all(runtime_lacks_ddl::check(&runtime, &run.subject, &run.relations).await?);
    Ok(Some(runtime))
}

/// Refuse a shard that cannot run: one that gets none of the `cases`, or any shard of an
/// in-place check (it runs no cases to split). What the reproducing command adds: ` --shard K/N`.
///
/// # Errors
/// A configuration error naming the fix.
fn check_shard(shard: Option<Shard>, cases: u32, in_place: bool) -> Result<String> {
    let Some(shard) = shard else {
        return Ok(String::new());
    };
    if in_place {
        return Err(Error::config(
            "--shard splits a campaign's cases, and an in-place check runs none: drop --shard or --in-place",
        ));
    }
    shard.check_cases(cases)?;
    Ok(format!(" --shard {shard}"))
}

/// A pool of `size` logins of `login`, as an application keeps one.
///
/// # Errors
/// A provisioning error when the pool cannot be built.
pub(crate) fn pool(login: &Config, size: usize) -> Result<deadpool_postgres::Pool> {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
    let manager = Manager::from_config(
        login.clone(),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(|e| Error::provisioning(format!("building the runtime's connection pool: {e}")))
}

async fn server_version(oracle: &Client) -> Result<String> {
    Ok(oracle
        .query_one("SELECT version()", &[])
        .await
        .map_err(|e| Error::database("reading the server version", e))?
        .get(0))
}

/// The report's frame: what `prepared` says about the run, no results yet.
fn report(p: &Prepared, server_version: String, evidence: StaticEvidence) -> Report {
    Report {
        format_version: crate::report::FORMAT_VERSION,
        verdict: Verdict::Inconclusive,
        mode: p.mode.into(),
        backend: p.backend.clone(),
        server_version,
        advisories: Vec::new(),
        seed: p.seed,
        cases: p.cases,
        cases_run: 0,
        shrink_runs: 0,
        variants: p.variants.clone(),
        invariants: Vec::new(),
        faults: BTreeMap::new(),
        fault_coverage: BTreeMap::new(),
        tasks: TaskCounts::default(),
        counterexample: None,
        performance: Performance {
            server_ready_ms: p.ready.as_millis() as u64,
            ..Performance::default()
        },
        reproduce: p.reproduce.clone(),
        placement: p.placement,
        skipped: Vec::new(),
        evidence,
        project: None,
        problems: Vec::new(),
        shards: None,
        access: Default::default(),
    }
}
