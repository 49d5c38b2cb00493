//! The campaign runner: one tokio runtime driving proptest's `TestRunner` over generated
//! workloads against a [`Target`], checking every invariant after each case, shrinking a
//! failure (bounded in time) to a minimal counterexample, and assembling the [`Report`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, RngAlgorithm, TestCaseError, TestError,
    TestRng, TestRunner,
};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::history::History;
use crate::invariants::catalog::{self, Relation};
use crate::invariants::{
    Case, InvariantId, Ledger, Observation, ProbeSession, Status, Subject, Truth, context_hygiene,
    identity, least_privilege, no_context_closed, rls_coverage, runtime_identity,
    runtime_lacks_ddl, tenant_isolation, write_check,
};
use crate::provision::Server;
use crate::report::{
    Counterexample, Performance, Report, StaticEvidence, TaskCounts, Verdict, transcript,
};
use crate::roles::Role;
use crate::system::{Outcome, Variant, WorkerConfig};
use crate::target::Target;
use crate::workload::{FaultKind, Plan, Workload, WorkloadShape, workload};

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

/// How a campaign runs.
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
        }
    }
}

/// Run a campaign against the built-in system on the backend `settings` select: start the
/// server, clone the migrated template, apply the schema of `options.variants`, and run.
///
/// # Errors
/// A harness error (no backend, the server does not start, a migration fails, the oracle
/// cannot read); findings are in the report, never an `Err`.
pub async fn run(settings: &Settings, options: &CampaignOptions) -> Result<Report> {
    let started = Instant::now();
    let server = Server::start(settings).await?;
    let ready = started.elapsed();
    let db = server.fresh_database().await?;
    for v in &options.variants {
        v.apply_schema(&db).await?;
    }
    let backend = server.backend().to_string();
    let target = Target::Built(db);
    let mut report = campaign(&target, options, "run", &backend, started, ready).await?;
    report.reproduce = reproduce("run", options);
    Ok(report)
}

/// Run the campaign's checks against an existing database holding the reference schema:
/// `oracle_url` is a superuser login, `runtime_url` the runtime's (without it, every probe is
/// inconclusive). Uses fresh tenants of its own and removes them at the end; never changes the
/// schema or roles.
///
/// # Errors
/// A configuration error for a bad URL or a non-superuser oracle; a harness error as [`run`].
pub async fn check(
    oracle_url: &str,
    runtime_url: Option<&str>,
    options: &CampaignOptions,
) -> Result<Report> {
    let started = Instant::now();
    let runtime = match runtime_url {
        None => None,
        Some(url) => Some(url.parse::<tokio_postgres::Config>().map_err(|e| {
            Error::config(format!(
                "--runtime-url is not a valid PostgreSQL URL ({e}); use postgres://app_user:PASSWORD@HOST:PORT/DB"
            ))
        })?),
    };
    let (oracle, _) = crate::provision::external::oracle(oracle_url, "--database-url").await?;
    if !options.variants.is_empty() {
        return Err(Error::config(
            "--variant applies to the built-in system only; rlsgate check never changes a database",
        ));
    }
    let ready = started.elapsed();
    let target = Target::Existing { oracle, runtime };
    let mut report = campaign(&target, options, "check", "external", started, ready).await?;
    report.reproduce = reproduce("check", options);
    Ok(report)
}

fn reproduce(mode: &str, options: &CampaignOptions) -> String {
    let mut cmd = format!(
        "rlsgate {mode} --cases {} --seed {}",
        options.cases, options.seed
    );
    for v in &options.variants {
        cmd.push_str(&format!(" --variant {v}"));
    }
    if mode == "check" {
        cmd.push_str(" --database-url URL --runtime-url URL");
    }
    cmd
}

/// Mutable state of a campaign, shared by the cases.
struct State<'t> {
    executor: Executor<'t>,
    oracle: Client,
    session: Option<ProbeSession>,
    ledger: Ledger,
    tasks: TaskCounts,
    faults: BTreeMap<FaultKind, u64>,
    coverage: BTreeMap<FaultKind, BTreeMap<InvariantId, u64>>,
    executions: u64,
    first_failure: Option<u64>,
    first_violation: Option<Duration>,
    case_time: Duration,
    created_tenants: Vec<Uuid>,
    created_dlq: Vec<Uuid>,
    failures: Vec<(Workload, Vec<Observation>, String)>,
    aborted: Option<Error>,
}

async fn campaign(
    target: &Target,
    options: &CampaignOptions,
    mode: &str,
    backend: &str,
    started: Instant,
    ready: Duration,
) -> Result<Report> {
    let subject = Subject::reference();
    let oracle = Server::connect_with(&target.config(Role::Superuser).await?).await?;
    let server_version: String = oracle
        .query_one("SELECT version()", &[])
        .await
        .map_err(|e| Error::database("reading the server version", e))?
        .get(0);
    let relations = catalog::relations(&oracle, &subject).await?;
    let mut ledger = Ledger::default();
    let evidence = static_checks(&oracle, &subject, &mut ledger).await?;
    let mut report_base = Report {
        verdict: Verdict::Inconclusive,
        mode: mode.into(),
        backend: backend.into(),
        server_version,
        seed: options.seed,
        cases: options.cases,
        cases_run: 0,
        shrink_runs: 0,
        variants: options.variants.iter().map(|v| v.to_string()).collect(),
        invariants: Vec::new(),
        faults: BTreeMap::new(),
        fault_coverage: BTreeMap::new(),
        tasks: TaskCounts::default(),
        counterexample: None,
        performance: Performance::default(),
        reproduce: String::new(),
        evidence,
        project: None,
    };
    if !target.has_login(Role::Runtime) {
        ledger.record_all(crate::invariants::no_runtime_login("--runtime-url"));
        let (verdict, invariants) = Report::results(&ledger);
        report_base.verdict = verdict;
        report_base.invariants = invariants;
        report_base.performance.elapsed_ms = started.elapsed().as_millis() as u64;
        report_base.performance.server_ready_ms = ready.as_millis() as u64;
        return Ok(report_base);
    }
    let runtime_config = target.config(Role::Runtime).await?;
    ledger.record_all(runtime_lacks_ddl::check(&runtime_config, &subject, &relations).await?);
    let static_violation = (!ledger.violated().is_empty()).then(|| started.elapsed());

    let shape = if target.can_crash() {
        options.shape.clone()
    } else {
        options.shape.clone().without(&[FaultKind::ServerCrash])
    };
    let worker_config = WorkerConfig {
        pool_size: options.pool_size,
        variants: options.variants.clone(),
        ..WorkerConfig::default()
    };
    let executor = Executor::new(target, worker_config).await?;
    let session = ProbeSession::open(&runtime_config, &subject).await?;
    let namespace = match target {
        Target::Built(_) => Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("rlsgate-seed:{}", options.seed).as_bytes(),
        ),
        Target::Existing { .. } => Uuid::new_v4(),
    };
    let state = tokio::sync::Mutex::new(State {
        executor,
        oracle,
        session: Some(session),
        ledger,
        tasks: TaskCounts::default(),
        faults: BTreeMap::new(),
        coverage: BTreeMap::new(),
        executions: 0,
        first_failure: None,
        first_violation: static_violation,
        case_time: Duration::ZERO,
        created_tenants: Vec::new(),
        created_dlq: Vec::new(),
        failures: Vec::new(),
        aborted: None,
    });

    let mut runner = seeded_runner(
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
    let strategy = workload(shape);
    let handle = tokio::runtime::Handle::current();
    let total = options.cases;
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |w| {
            handle.block_on(async {
                let mut st = state.lock().await;
                if st.aborted.is_some() {
                    return Ok(());
                }
                match one_case(&mut st, target, &subject, &relations, namespace, &w).await {
                    Err(e) => {
                        st.aborted = Some(e);
                        Ok(())
                    }
                    Ok((plan, history, observations)) => {
                        let violations: Vec<Observation> = observations
                            .iter()
                            .filter(|o| o.status == Status::Violated)
                            .cloned()
                            .collect();
                        let line = progress_line(&st, &plan, &history, violations.len(), total);
                        match options.progress {
                            Progress::Off => {}
                            Progress::Terminal => eprint!("\r\x1b[2K{line}"),
                            Progress::Lines => {
                                // Quiet for logs: every tenth case, failures, and the last.
                                let n = st.executions;
                                if n.is_multiple_of(10)
                                    || !violations.is_empty()
                                    || n == u64::from(total)
                                {
                                    eprintln!("{line}");
                                }
                            }
                        }
                        st.ledger.record_all(observations);
                        if violations.is_empty() {
                            Ok(())
                        } else {
                            let reason = violations[0].to_string();
                            let text = transcript(&plan, &history, &violations);
                            let n = st.executions;
                            st.first_failure.get_or_insert(n);
                            st.first_violation.get_or_insert(started.elapsed());
                            st.failures.push((w.clone(), violations, text));
                            Err(TestCaseError::fail(reason))
                        }
                    }
                }
            })
        })
    });
    if options.progress == Progress::Terminal {
        eprintln!();
    }
    let mut st = state.into_inner();
    cleanup(&st, target).await?;
    if let Some(e) = st.aborted.take() {
        return Err(e);
    }
    let counterexample = match result {
        Ok(()) => None,
        Err(TestError::Fail(reason, minimal)) => {
            minimal_failure(&st.failures, &minimal).map(|(workload, violations, transcript)| {
                Counterexample {
                    reason: reason.to_string(),
                    workload,
                    violations,
                    transcript,
                }
            })
        }
        Err(TestError::Abort(reason)) => {
            return Err(Error::provisioning(format!(
                "the property runner aborted: {reason}"
            )));
        }
    };
    let (verdict, invariants) = Report::results(&st.ledger);
    let case_secs = st.case_time.as_secs_f64().max(1e-9);
    Ok(Report {
        verdict,
        invariants,
        cases_run: st.first_failure.unwrap_or(st.executions),
        shrink_runs: st.executions - st.first_failure.unwrap_or(st.executions),
        faults: st.faults.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        tasks: st.tasks.clone(),
        fault_coverage: st
            .coverage
            .iter()
            .map(|(k, row)| {
                (
                    k.to_string(),
                    row.iter().map(|(i, n)| (i.id().to_string(), *n)).collect(),
                )
            })
            .collect(),
        counterexample,
        performance: Performance {
            server_ready_ms: ready.as_millis() as u64,
            elapsed_ms: started.elapsed().as_millis() as u64,
            cases_ms: st.case_time.as_millis() as u64,
            tasks_per_second: st.tasks.total as f64 / case_secs,
            cases_per_second: st.executions as f64 / case_secs,
            first_violation_ms: st.first_violation.map(|d| d.as_millis() as u64),
        },
        ..report_base
    })
}

/// The catalog evidence of `subject`, and the static checks (runtime identity and migrations,
/// least privilege, RLS coverage) recorded in `ledger`.
///
/// # Errors
/// A database error when the catalog cannot be read; a config error when the runtime role
/// does not exist.
pub(crate) async fn static_checks(
    oracle: &Client,
    subject: &Subject,
    ledger: &mut Ledger,
) -> Result<StaticEvidence> {
    let evidence = StaticEvidence {
        identity: identity::read(oracle, subject).await?,
        privileges: least_privilege::matrix(oracle, subject).await?,
        policies: rls_coverage::catalogue(oracle, subject).await?,
    };
    ledger.record_all(runtime_identity::check_role(oracle, subject).await?);
    ledger.record_all(runtime_identity::check_migrations(oracle, subject).await?);
    ledger.record_all(least_privilege::check(oracle, subject).await?);
    ledger.record_all(rls_coverage::check(oracle, subject).await?);
    Ok(evidence)
}

/// proptest's runner with `config`, its generator seeded by `seed` (the same seed generates the
/// same cases), shrinking bounded by `max_shrink_time`.
pub(crate) fn seeded_runner(
    config: ProptestConfig,
    seed: u64,
    max_shrink_time: Duration,
) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = ProptestConfig {
        // Zero would mean "no limit" to proptest.
        max_shrink_time: u32::try_from(max_shrink_time.as_millis())
            .unwrap_or(u32::MAX)
            .max(1),
        ..config
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// The recorded failure of the `minimal` input proptest shrank to (the last failure, if that
/// input was not recorded): input, violations, transcript.
pub(crate) fn minimal_failure<T: PartialEq + Clone>(
    failures: &[(T, Vec<Observation>, String)],
    minimal: &T,
) -> Option<(T, Vec<Observation>, String)> {
    failures
        .iter()
        .rev()
        .find(|(input, _, _)| input == minimal)
        .or(failures.last())
        .cloned()
}

/// Execute one case and run every per-case check.
async fn one_case(
    st: &mut State<'_>,
    target: &Target,
    subject: &Subject,
    relations: &[Relation],
    namespace: Uuid,
    w: &Workload,
) -> Result<(Plan, History, Vec<Observation>)> {
    let started = Instant::now();
    st.executions += 1;
    let plan = w.plan(Uuid::new_v5(
        &namespace,
        format!("case:{}", st.executions).as_bytes(),
    ));
    if st.oracle.is_closed() {
        st.oracle = Server::connect_with(&target.config(Role::Superuser).await?).await?;
    }
    for (i, (spec, id)) in plan.tenants.iter().enumerate() {
        if let (true, Some(id)) = (spec.exists(), id) {
            st.oracle
                .execute(
                    "INSERT INTO tenants (id, name) VALUES ($1, $2)",
                    &[
                        id,
                        &format!("rlsgate tenant {}", crate::workload::tenant_label(i)),
                    ],
                )
                .await
                .map_err(|e| Error::database("creating a case's tenant", e))?;
            st.created_tenants.push(*id);
        }
    }
    st.created_dlq
        .extend(plan.messages.iter().map(|m| m.dlq_id()));
    let history = st.executor.run(&plan).await?;
    // A crash closes every connection: open the oracle and the probe session again.
    let runtime_config = target.config(Role::Runtime).await?;
    if st.oracle.is_closed() {
        st.oracle = Server::connect_with(&target.config(Role::Superuser).await?).await?;
    }
    if st.session.as_ref().is_none_or(|s| s.client().is_closed()) {
        st.session = Some(ProbeSession::open(&runtime_config, subject).await?);
    }
    let truth = Truth::read(&st.oracle, &plan).await?;
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
        .filter_map(|(i, (_, id))| id.map(|u| (u.to_string(), crate::workload::tenant_label(i))))
        .collect();
    let session = st.session.as_mut().expect("opened above");
    observations
        .extend(tenant_isolation::check(session, &st.oracle, subject, relations, &tenants).await?);
    if let [a, b, ..] = tenants.as_slice() {
        observations
            .extend(write_check::check(session, &st.oracle, subject, relations, a, b).await?);
        observations.extend(
            no_context_closed::check(&runtime_config, &st.oracle, subject, relations, a).await?,
        );
    }
    let objects = st.executor.worker().pooled_connections().await;
    let clients: Vec<&Client> = objects.iter().map(|o| &***o).collect();
    // A case whose deliveries all failed validation never opened a pooled connection.
    if !clients.is_empty() {
        observations.extend(context_hygiene::check(&clients, subject, relations).await?);
        observations.extend(runtime_identity::check_connections(&clients, subject).await?);
    }
    drop(objects);

    st.tasks.add(&history);
    let checked: BTreeSet<InvariantId> = observations.iter().map(|o| o.invariant).collect();
    for (kind, n) in landed_faults(&plan, &history) {
        *st.faults.entry(kind).or_default() += n;
        let row = st.coverage.entry(kind).or_default();
        for id in &checked {
            *row.entry(*id).or_default() += 1;
        }
    }
    st.case_time += started.elapsed();
    Ok((plan, history, observations))
}

/// `rlsgate: case 12/32 · 345 tasks · 120 tasks/s · 9 faults landed · this case: 14 deliveries, faults: lock-timeout`.
fn progress_line(
    st: &State<'_>,
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
    for kind in [
        FaultKind::ServerCrash,
        FaultKind::LockTimeout,
        FaultKind::StatementTimeout,
        FaultKind::TerminateBackend,
        FaultKind::DlqWriteFault,
    ] {
        counts.remove(&kind);
    }
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

/// Remove what the campaign wrote to an existing database: its tenants (their rows cascade)
/// and its DLQ rows. A database rlsgate built is dropped whole instead.
async fn cleanup(st: &State<'_>, target: &Target) -> Result<()> {
    if !matches!(target, Target::Existing { .. }) {
        return Ok(());
    }
    let oracle = Server::connect_with(&target.config(Role::Superuser).await?).await?;
    oracle
        .execute(
            "DELETE FROM worker_failed_jobs WHERE id = ANY($1) OR tenant_id = ANY($2)",
            &[&st.created_dlq, &st.created_tenants],
        )
        .await
        .map_err(|e| Error::database("removing the campaign's DLQ rows", e))?;
    oracle
        .execute(
            "DELETE FROM tenants WHERE id = ANY($1)",
            &[&st.created_tenants],
        )
        .await
        .map_err(|e| Error::database("removing the campaign's tenants", e))?;
    Ok(())
}
