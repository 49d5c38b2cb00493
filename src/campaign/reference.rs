//! The built-in system's workload kind: proptest generates multi-tenant workloads with faults,
//! each case runs through the worker over its pool of runtime logins ([`Executor`]), and after
//! every case the history invariants are checked against the ground truth and the shared probes
//! run in the case's tenants' contexts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use tokio_postgres::Config;
use uuid::Uuid;

use super::property::{self, Judged, PropertyRun};
use super::{CampaignOptions, Kind, Prepared, Progress, Run, Source, drive, probes};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::history::History;
use crate::invariants::{Case, InvariantId, Observation};
use crate::probe::ProbeSession;
use crate::provision::Server;
use crate::report::shard::{self, CaseCounts};
use crate::report::{Counterexample, Placement, Report, Shards, TaskCounts, transcript};
use crate::roles::Role;
use crate::subject::Subject;
use crate::system::{Outcome, WorkerConfig};
use crate::target::Target;
use crate::truth::Truth;
use crate::workload::{FaultKind, Plan, Workload, tenant_label, workload};

/// Run a campaign against the built-in system on the backend `settings` select: start the
/// server, clone the migrated template, apply the schema of `options.variants`, and run.
///
/// # Errors
/// A harness error (no backend, the server does not start, a migration fails, the oracle
/// cannot read); findings are in the report, never an `Err`.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> rlsgate::Result<()> {
/// use rlsgate::campaign::{self, CampaignOptions};
/// use rlsgate::report::Verdict;
///
/// let options = CampaignOptions { cases: 8, seed: 42, ..CampaignOptions::default() };
/// let report = campaign::run(&rlsgate::Settings::from_env()?, &options).await?;
/// assert_eq!(report.verdict, Verdict::Pass, "{:?}", report.violated());
/// # Ok(()) }
/// ```
pub async fn run(settings: &Settings, options: &CampaignOptions) -> Result<Report> {
    let started = Instant::now();
    let shard_flag = super::check_shard(options.shard, options.cases, false)?;
    let server = Server::start(settings).await?;
    let ready = started.elapsed();
    let db = server.fresh_database().await?;
    for v in &options.variants {
        v.apply_schema(&db).await?;
    }
    let backend = server.backend().to_string();
    let mut prepared = prepared(Target::Built(db), "run", backend, options, started, ready);
    prepared.reproduce.push_str(&shard_flag);
    drive(prepared, Reference::new(options)).await
}

/// Run the campaign's checks against an existing database holding the reference schema, given
/// by `source`: `database_url` is a superuser login, `runtime_url` the runtime's (without it,
/// every probe is inconclusive). The checks run on a scratch copy of the database, dropped
/// afterwards, unless `source.in_place` (then only what rolls back runs, and the worker's
/// workloads are skipped); the database itself is never written.
///
/// # Errors
/// A configuration error for a missing or bad URL, a non-superuser oracle, or a copy that
/// cannot be made (naming the cause and the ways out); a harness error as [`run`].
///
/// # Example
///
/// ```no_run
/// # async fn example() -> rlsgate::Result<()> {
/// use rlsgate::campaign::{self, CampaignOptions, Source};
///
/// let source = Source {
///     database_url: Some("postgres://postgres:secret@127.0.0.1:5432/app".into()),
///     runtime_url: Some("postgres://app_user:secret@127.0.0.1:5432/app".into()),
///     in_place: false,
/// };
/// let report = campaign::check(&source, &CampaignOptions::default()).await?;
/// println!("{:?}: {:?}", report.verdict, report.violated());
/// # Ok(()) }
/// ```
pub async fn check(source: &Source, options: &CampaignOptions) -> Result<Report> {
    let started = Instant::now();
    let shard_flag = super::check_shard(options.shard, options.cases, source.in_place)?;
    if !options.variants.is_empty() {
        return Err(Error::config(
            "--variant applies to the built-in system only; rlsgate check never changes a database",
        ));
    }
    let url = source.database_url.as_deref().ok_or_else(|| {
        Error::config(
            "rlsgate check needs --database-url URL (or RLSGATE_DATABASE_URL) naming a database with the reference schema",
        )
    })?;
    let existing = crate::target::existing(
        url,
        "--database-url",
        source.runtime_url.as_deref(),
        None,
        source.in_place,
    )
    .await?;
    let ready = started.elapsed();
    let mut prepared = prepared(
        existing.target,
        "check",
        "external".into(),
        options,
        started,
        ready,
    );
    prepared.placement = existing.placement;
    prepared.scratch = existing.scratch;
    if source.in_place {
        prepared.reproduce.push_str(" --in-place");
    }
    prepared.reproduce.push_str(&shard_flag);
    drive(prepared, Reference::new(options)).await
}

fn prepared(
    target: Target,
    mode: &'static str,
    backend: String,
    options: &CampaignOptions,
    started: Instant,
    ready: Duration,
) -> Prepared {
    let mut reproduce = format!(
        "rlsgate {mode} --cases {} --seed {}",
        options.cases, options.seed
    );
    for v in &options.variants {
        reproduce.push_str(&format!(" --variant {v}"));
    }
    if mode == "check" {
        reproduce.push_str(" --database-url URL --runtime-url URL");
    }
    Prepared {
        target,
        subject: Subject::reference(),
        scope: None,
        mode,
        backend,
        seed: options.seed,
        cases: options.cases,
        variants: options.variants.iter().map(|v| v.to_string()).collect(),
        reproduce,
        runtime_login_hint: "--runtime-url",
        started,
        ready,
        accepted: Vec::new(),
        placement: Placement::Built,
        scratch: None,
    }
}

/// The built-in system's state across the cases of a campaign.
struct Reference<'o> {
    options: &'o CampaignOptions,
    tasks: TaskCounts,
    faults: BTreeMap<FaultKind, u64>,
    coverage: BTreeMap<FaultKind, BTreeMap<InvariantId, u64>>,
    executions: u64,
    first_failure: Option<u64>,
    first_violation: Option<Duration>,
    case_time: Duration,
    property: Option<PropertyRun<Workload>>,
    /// What the property's cases counted per invariant.
    per_case: BTreeMap<InvariantId, CaseCounts>,
}

/// What a case needs besides the run: the worker and the probe session.
struct Exercise<'t> {
    executor: Executor<'t>,
    session: Option<ProbeSession>,
    namespace: Uuid,
}

impl<'o> Reference<'o> {
    fn new(options: &'o CampaignOptions) -> Self {
        Self {
            options,
            tasks: TaskCounts::default(),
            faults: BTreeMap::new(),
            coverage: BTreeMap::new(),
            executions: 0,
            first_failure: None,
            first_violation: None,
            case_time: Duration::ZERO,
            property: None,
            per_case: BTreeMap::new(),
        }
    }

    /// Execute case `n` and run every per-case check; record what it saw.
    async fn case(
        &mut self,
        run: &mut Run<'_>,
        ex: &mut Exercise<'_>,
        n: u64,
        w: &Workload,
    ) -> Result<Judged> {
        self.executions = n;
        let (plan, history, observations) = self.execute(run, ex, w).await?;
        let violations: Vec<Observation> = observations
            .iter()
            .filter(|o| run.ledger.fails(o))
            .cloned()
            .collect();
        self.progress(&plan, &history, violations.len());
        run.ledger.record_all(observations);
        if violations.is_empty() {
            return Ok(Judged::held());
        }
        self.first_failure.get_or_insert(n);
        self.first_violation.get_or_insert(run.started.elapsed());
        Ok(Judged {
            transcript: transcript(&plan, &history, &violations),
            violations,
        })
    }

    /// Create the case's tenants, run its plan, and check the history and the probes.
    async fn execute(
        &mut self,
        run: &mut Run<'_>,
        ex: &mut Exercise<'_>,
        w: &Workload,
    ) -> Result<(Plan, History, Vec<Observation>)> {
        let started = Instant::now();
        let plan = w.plan(Uuid::new_v5(
            &ex.namespace,
            format!("case:{}", self.executions).as_bytes(),
        ));
        run.reopen_oracle().await?;
        self.create_tenants(run, &plan).await?;
        let history = ex.executor.run(&plan).await?;
        // A crash closes every connection, and a container's port changes when it restarts:
        // read the runtime's login again, and open the oracle and the probe session again.
        let runtime = run.target.config(Role::Runtime).await?;
        run.reopen_oracle().await?;
        if ex.session.as_ref().is_none_or(|s| s.client().is_closed()) {
            ex.session = Some(ProbeSession::open(&runtime, &run.subject).await?);
        }
        let truth = Truth::read(&run.oracle, &plan).await?;
        let case = Case {
            plan: &plan,
            history: &history,
            truth: &truth,
        };
        let mut observations = case.check_history();
        let tenants: Vec<(String, String)> = plan
            .tenants
            .iter()
            .enumerate()
            .filter(|(_, (spec, _))| spec.exists())
            .filter_map(|(i, (_, id))| id.map(|u| (u.to_string(), tenant_label(i))))
            .collect();
        let session = ex.session.as_mut().expect("opened above");
        observations.extend(
            probes::tenant_probes(
                session,
                &runtime,
                &run.oracle,
                &run.subject,
                &run.relations,
                &tenants,
                true,
            )
            .await?,
        );
        observations.extend(
            probes::pool_probes(
                ex.executor.worker().pool(),
                &run.oracle,
                session,
                &run.subject,
                &run.relations,
                tenants.first().map(|t| t.0.as_str()),
            )
            .await?,
        );
        self.count(&plan, &history, &observations);
        self.case_time += started.elapsed();
        Ok((plan, history, observations))
    }

    /// Insert the plan's existing tenants as the oracle.
    async fn create_tenants(&mut self, run: &Run<'_>, plan: &Plan) -> Result<()> {
        for (i, (spec, id)) in plan.tenants.iter().enumerate() {
            if let (true, Some(id)) = (spec.exists(), id) {
                run.oracle
                    .execute(
                        "INSERT INTO tenants (id, name) VALUES ($1, $2)",
                        &[id, &format!("rlsgate tenant {}", tenant_label(i))],
                    )
                    .await
                    .map_err(|e| Error::database("creating a case's tenant", e))?;
            }
        }
        Ok(())
    }

    /// Count the case's tasks, the faults that landed, and which invariants each was checked by.
    fn count(&mut self, plan: &Plan, history: &History, observations: &[Observation]) {
        self.tasks.add(history);
        let checked: BTreeSet<InvariantId> = observations.iter().map(|o| o.invariant).collect();
        for (kind, n) in landed_faults(plan, history) {
            *self.faults.entry(kind).or_default() += n;
            let row = self.coverage.entry(kind).or_default();
            for id in &checked {
                *row.entry(*id).or_default() += 1;
            }
        }
    }

    fn progress(&self, plan: &Plan, history: &History, violations: usize) {
        let total = self.options.cases;
        let line = progress_line(self, plan, history, violations, total);
        match self.options.progress {
            Progress::Off => {}
            Progress::Terminal => eprint!("\r\x1b[2K{line}"),
            Progress::Lines => {
                // Quiet for logs: every tenth case (of a shard's own), failures, and the last.
                let n = self.executions;
                let (nth, last) = match self.options.shard {
                    None => (n, n == u64::from(total)),
                    Some(s) => (s.cases_within(n), n + u64::from(s.count) > u64::from(total)),
                };
                if nth.is_multiple_of(10) || violations > 0 || last {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Kind for Reference<'_> {
    async fn exercise(&mut self, run: &mut Run<'_>, runtime: &Config) -> Result<()> {
        let static_violation = (!run.ledger.violated().is_empty()).then(|| run.started.elapsed());
        self.first_violation = static_violation;
        let options = self.options;
        let shape = if run.target.can_crash() {
            options.shape.clone()
        } else {
            options.shape.clone().without_crashes()
        };
        let worker_config = WorkerConfig {
            pool_size: options.pool_size,
            variants: options.variants.clone(),
            ..WorkerConfig::default()
        };
        let mut ex = Exercise {
            executor: Executor::new(run.target, worker_config).await?,
            session: Some(ProbeSession::open(runtime, &run.subject).await?),
            // Nothing a case writes outlives the run (its database, or the scratch copy of an
            // existing one, is dropped), so the seed fixes every tenant.
            namespace: Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("rlsgate-seed:{}", options.seed).as_bytes(),
            ),
        };
        let mut runner = property::seeded_runner(
            ProptestConfig {
                cases: options.cases,
                max_shrink_iters: options.max_shrink_iters,
                failure_persistence: options
                    .regressions
                    .map(|p| Box::new(FileFailurePersistence::Direct(p)) as _),
                ..ProptestConfig::default()
            },
            options.seed,
            options.max_shrink_time,
        );
        let before = shard::counts(&run.ledger);
        let property = property::run(
            &mut runner,
            &workload(shape),
            options.shard,
            async |n, w| self.case(run, &mut ex, n, w).await,
        );
        if options.progress == Progress::Terminal {
            eprintln!();
        }
        self.property = Some(property?);
        self.per_case = shard::since(&before, &shard::counts(&run.ledger));
        Ok(())
    }

    fn skipped_in_place(&self) -> Vec<(&'static str, Vec<InvariantId>)> {
        vec![(
            "the built-in worker's workloads with faults (tasks commit)",
            vec![
                InvariantId::DlqCompleteness,
                InvariantId::ExactlyOnce,
                InvariantId::Atomicity,
                InvariantId::RollupConsistency,
                InvariantId::ExpectedOutcome,
                InvariantId::Durability,
            ],
        )]
    }

    fn finish(self, report: &mut Report) {
        let (runs, last) = self
            .property
            .as_ref()
            .map_or((0, 0), |p| (p.runs, p.cases_run()));
        let shard = self.options.shard;
        let case_secs = self.case_time.as_secs_f64().max(1e-9);
        report.cases_run = shard.map_or(last, |s| s.cases_within(last));
        report.shrink_runs = runs - last;
        let executed = report.cases_run + report.shrink_runs;
        report.shards = shard.map(|s| {
            let first = self.property.as_ref().and_then(|p| p.first_failure);
            Shards::one(s, self.options.cases, last, first, self.per_case.clone())
        });
        report.faults = self
            .faults
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect();
        report.fault_coverage = self
            .coverage
            .iter()
            .map(|(k, row)| {
                (
                    k.to_string(),
                    row.iter().map(|(i, n)| (i.id().to_string(), *n)).collect(),
                )
            })
            .collect();
        report.counterexample =
            self.property
                .and_then(|p| p.minimal)
                .map(|(reason, f)| Counterexample {
                    reason,
                    workload: f.input,
                    violations: f.violations,
                    transcript: f.transcript,
                });
        let p = &mut report.performance;
        p.cases_ms = self.case_time.as_millis() as u64;
        p.tasks_per_second = self.tasks.total as f64 / case_secs;
        p.cases_per_second = executed as f64 / case_secs;
        p.first_violation_ms = self.first_violation.map(|d| d.as_millis() as u64);
        report.tasks = self.tasks;
    }
}

/// `rlsgate: case 12/32 · 345 tasks · 120 tasks/s · 9 faults landed · this case: 14 deliveries, faults: lock-timeout`.
fn progress_line(
    st: &Reference<'_>,
    plan: &Plan,
    history: &History,
    violations: usize,
    total: u32,
) -> String {
    let secs = st.case_time.as_secs_f64().max(1e-9);
    let landed: u64 = st.faults.values().sum();
    let here: Vec<String> = history
        .faults
        .iter()
        .filter(|f| f.delivered)
        .map(|f| f.kind.to_string())
        .collect();
    let case = match st.first_failure {
        None => format!("case {}/{total}", st.executions),
        Some(first) => format!(
            "case {first} failed; shrinking run {}",
            st.executions - first
        ),
    };
    format!(
        "rlsgate: {case} · {} tasks · {:.0} tasks/s · {landed} faults landed · this case: {} deliveries, {} tenants{}{}",
        st.tasks.total,
        st.tasks.total as f64 / secs,
        history.deliveries.len(),
        plan.tenants.len(),
        if here.is_empty() {
            String::new()
        } else {
            format!(", faults: {}", here.join(" "))
        },
        if violations == 0 {
            String::new()
        } else {
            format!(", {violations} violations")
        },
    )
}

/// Faults that landed in a case: step faults that were delivered, and the message and tenant
/// faults of the plan (a DLQ fault only when its task failed, so the DLQ path ran).
fn landed_faults(plan: &Plan, history: &History) -> BTreeMap<FaultKind, u64> {
    let mut counts = plan.planned_faults();
    counts.retain(|kind, _| !kind.is_step_fault() && *kind != FaultKind::DlqWriteFault);
    for f in history.faults.iter().filter(|f| f.delivered) {
        *counts.entry(f.kind).or_default() += 1;
    }
    let dlq = history
        .deliveries
        .iter()
        .filter(|d| {
            plan.messages[d.message].faults.dlq_write_failures > 0
                && matches!(
                    d.final_outcome(),
                    Outcome::FailedRecorded { .. } | Outcome::FailedUnrecorded { .. }
                )
        })
        .count() as u64;
    if dlq > 0 {
        counts.insert(FaultKind::DlqWriteFault, dlq);
    }
    counts
}
