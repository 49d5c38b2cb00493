//! A project's workload kind (`rlsgate check --config`): rlsgate seeds two tenants of its own
//! and a sentinel row of each in every tenant table, the shared probes run once on every
//! discovered relation, and the property is random DML sequences as the runtime over a pool of
//! its logins, judged against a visibility model.

use std::collections::BTreeMap;
use std::time::Instant;

use deadpool_postgres::Pool;
use proptest::test_runner::Config as ProptestConfig;
use tokio_postgres::Config;
use uuid::Uuid;

use super::property::{self, Judged};
use super::{Kind, Prepared, ProjectOptions, Run, drive, probes};
use crate::catalog::Relation;
use crate::catalog::discovery::{self, Discovery};
use crate::config::Settings;
use crate::database::Database;
use crate::error::Result;
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::probe::ProbeSession;
use crate::project::seed::Seeder;
use crate::project::target::{self, Source};
use crate::project::{
    DLQ_STATEMENT, INVARIANTS, ProjectConfig, calls, dlq, dml, privileges, references, subject_of,
};
use crate::report::shard::{self, CaseCounts};
use crate::report::{Report, Shards, Verdict};
use crate::target::Target;

/// Check a project: its database prepared as `source` says, then the campaign's stages with
/// the project's workload kind (see the module docs).
///
/// # Errors
/// A config error for a bad file, URL, role, setting or column (naming the fix); a migration
/// error when a migration fails (nothing half-applied: the database is dropped); a harness
/// error when the server cannot be reached. Findings are in the report, never an `Err`.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> rlsgate::Result<()> {
/// use rlsgate::campaign::{self, ProjectOptions, Source};
/// use rlsgate::project::ProjectConfig;
///
/// let project = ProjectConfig::load(std::path::Path::new("rlsgate.toml"))?;
/// let settings = rlsgate::Settings::from_env()?;
/// let report =
///     campaign::check_project(&settings, &project, &Source::default(), &ProjectOptions::default())
///         .await?;
/// for id in report.violated() {
///     eprintln!("violated: {id}");
/// }
/// # Ok(()) }
/// ```
pub async fn check_project(
    settings: &Settings,
    project: &ProjectConfig,
    source: &Source,
    options: &ProjectOptions,
) -> Result<Report> {
    let started = Instant::now();
    let shard_flag = super::check_shard(options.shard, options.cases, source.in_place)?;
    let database = target::prepare(settings, project, source).await?;
    let ready = started.elapsed();
    let oracle = crate::provision::Server::connect_with(&database.oracle).await?;
    target::validate(&oracle, project).await?;
    drop(oracle);
    let mut scope: Vec<InvariantId> = INVARIANTS.to_vec();
    if project.dlq.is_some() {
        scope.push(InvariantId::DlqCompleteness);
    }
    let mut reproduce = format!(
        "rlsgate check --config rlsgate.toml --cases {} --seed {}",
        options.cases, options.seed
    );
    if source.database_url.is_some() {
        reproduce.push_str(" --database-url URL --runtime-url URL");
    }
    if source.in_place {
        reproduce.push_str(" --in-place");
    }
    reproduce.push_str(&shard_flag);
    let prepared = Prepared {
        target: Target::Existing {
            oracle: database.oracle.clone(),
            runtime: database.runtime.clone(),
        },
        subject: subject_of(project),
        scope: Some(scope),
        mode: "project",
        backend: database.backend.clone(),
        seed: options.seed,
        cases: options.cases,
        variants: Vec::new(),
        reproduce,
        runtime_login_hint: "--runtime-url or roles.runtime_url_env",
        started,
        ready,
        accepted: crate::project::acceptances(project),
        placement: database.placement,
        scratch: database.scratch,
    };
    // Nothing rlsgate generates outlives the check (a scratch copy or a database of its own
    // is dropped; in place nothing is seeded), so the seed fixes every key.
    let namespace = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("rlsgate-project-seed:{}", options.seed).as_bytes(),
    );
    let kind = Project {
        project,
        options,
        _database: database.database,
        namespace,
        seeder: Seeder::new(&[], namespace),
        discovery: Discovery::default(),
        cases_run: 0,
        last_case: 0,
        first_failure: None,
        per_case: BTreeMap::new(),
    };
    drive(prepared, kind).await
}

/// A project's state across the stages.
struct Project<'p> {
    project: &'p ProjectConfig,
    options: &'p ProjectOptions,
    /// Keeps a database rlsgate built, and its server, alive until the report is made.
    _database: Option<Database>,
    /// Where rlsgate's generated keys come from (fixed by the seed for a database it built).
    namespace: Uuid,
    seeder: Seeder,
    discovery: Discovery,
    cases_run: u64,
    /// The last DML sequence the generator reached, and the first that failed.
    last_case: u64,
    first_failure: Option<u64>,
    /// What the DML sequences counted per invariant.
    per_case: BTreeMap<InvariantId, CaseCounts>,
}

impl Project<'_> {
    /// The tenant table and its key, when the project has one.
    fn tenant_table(&self) -> Option<(&str, &str)> {
        let t = &self.project.tenant;
        t.table.as_deref().map(|table| (table, t.key.as_str()))
    }

    /// Refresh every materialized view with a tenant column, so that what it holds of the
    /// sentinel rows shows: it carries no row-level security, so whatever a refresh captured
    /// (here, in tenant B's context, as an application's job would in some tenant's or none)
    /// every reader sees, and READ proves the leak. The database is rlsgate's or a scratch copy.
    /// One that cannot be refreshed is a note.
    async fn refresh_materialized_views(&mut self, run: &mut Run<'_>) -> Result<()> {
        let Some(b) = self.seeder.tenants.get(1).map(|t| t.id.clone()) else {
            return Ok(());
        };
        let views: Vec<String> = run
            .relations
            .iter()
            .filter(|r| r.kind == 'm' && r.is_tenant_relation())
            .map(|r| r.name.clone())
            .collect();
        for view in views {
            let refreshed = async {
                run.oracle.batch_execute("BEGIN").await?;
                crate::probe::set_context_on(&run.oracle, &run.subject, &b).await?;
                run.oracle
                    .batch_execute(&format!("REFRESH MATERIALIZED VIEW {view}; COMMIT"))
                    .await
            }
            .await;
            if let Err(e) = refreshed {
                let _ = run.oracle.batch_execute("ROLLBACK").await;
                run.ledger.record(
                    Observation::note(
                        InvariantId::TenantIsolation,
                        "REFRESH",
                        format!(
                            "materialized view {view} could not be refreshed, so READ sees only what it held: {}",
                            crate::error::describe_db_error(&e)
                        ),
                    )
                    .on(view),
                );
            }
        }
        Ok(())
    }

    /// The DML property: proptest generates action sequences, each runs as the runtime over
    /// `pool` and is judged; a failing one is shrunk, and its violations carry the minimal
    /// reproduction.
    async fn dml_property(&mut self, run: &mut Run<'_>, pool: &Pool) -> Result<()> {
        let targets = dml::Target::all(&run.oracle, &mut self.seeder, &run.relations).await?;
        if targets.is_empty() {
            return Ok(());
        }
        let options = self.options;
        let mut runner = property::seeded_runner(
            ProptestConfig {
                cases: options.cases,
                failure_persistence: None,
                ..ProptestConfig::default()
            },
            options.seed,
            options.max_shrink_time,
        );
        let strategy = dml::sequences(targets.len(), options.max_actions);
        let seeder = &mut self.seeder;
        let before = shard::counts(&run.ledger);
        let result = property::run(&mut runner, &strategy, options.shard, async |n, actions| {
            let (observations, transcript) =
                dml::run_case(pool, &run.oracle, seeder, &run.subject, &targets, actions).await?;
            let violations: Vec<Observation> = observations
                .iter()
                .filter(|o| run.ledger.fails(o))
                .cloned()
                .collect();
            if options.progress && (n.is_multiple_of(4) || !violations.is_empty()) {
                eprintln!(
                    "rlsgate: DML sequence {n} ({} actions){}",
                    actions.len(),
                    if violations.is_empty() {
                        String::new()
                    } else {
                        format!(", {} violations", violations.len())
                    }
                );
            }
            if violations.is_empty() {
                run.ledger.record_all(observations);
            }
            Ok(Judged {
                violations,
                transcript,
            })
        })?;
        self.last_case = result.cases_run();
        self.first_failure = result.first_failure;
        self.cases_run = options
            .shard
            .map_or(self.last_case, |s| s.cases_within(self.last_case));
        if let Some((_, failure)) = result.minimal {
            let script = format!(
                "-- minimal DML sequence ({} action(s)), as the runtime {}:\n{}",
                failure.input.len(),
                run.subject.runtime_role,
                failure.transcript
            );
            for v in failure.violations {
                run.ledger.record(v.with_statement(script.clone()));
            }
            self.discovery.reproduction = Some(script);
        }
        self.per_case = shard::since(&before, &shard::counts(&run.ledger));
        Ok(())
    }
}

impl Kind for Project<'_> {
    async fn discover(&mut self, run: &mut Run<'_>) -> Result<()> {
        run.subject.expected =
            privileges::expected_privileges(&run.oracle, self.project, &run.relations).await?;
        self.discovery = discovery::read(&run.oracle, &run.subject, &run.relations).await?;
        self.seeder = Seeder::new(&run.relations, self.namespace);
        Ok(())
    }

    fn static_checks(&mut self, run: &mut Run<'_>) {
        if let Some(dlq) = &self.project.dlq {
            run.ledger
                .record_all(dlq::dlq_static(&run.relations, &dlq.table, &run.subject));
        }
    }

    async fn seed(&mut self, run: &mut Run<'_>) -> Result<()> {
        let tenant_table = self
            .tenant_table()
            .map(|(t, k)| (t.to_string(), k.to_string()));
        let tenant_table = tenant_table.as_ref().map(|(t, k)| (t.as_str(), k.as_str()));
        self.seeder
            .create_tenants(&run.oracle, &run.subject, tenant_table, 2)
            .await?;
        for r in seeded_tables(&run.relations) {
            self.seeder
                .seed_table(&run.oracle, &run.subject, &r.name)
                .await?;
        }
        for (table, why) in self.seeder.failures() {
            run.ledger.record(
                Observation::inconclusive(
                    InvariantId::TenantIsolation,
                    Undecided::NotSeeded,
                    "SEED",
                    format!("no sentinel rows in {table}, so no probe can judge it: {why}"),
                )
                .on(table.clone()),
            );
        }
        self.discovery.mark_seeded(self.seeder.failures());
        self.discovery.tenants = self.seeder.tenants.iter().map(|t| t.id.clone()).collect();
        self.refresh_materialized_views(run).await
    }

    async fn exercise(&mut self, run: &mut Run<'_>, runtime: &Config) -> Result<()> {
        // Probes judge only relations with sentinel rows (or whose rows come from them).
        let probed: Vec<Relation> = run
            .relations
            .iter()
            .filter(|r| !self.seeder.failures().contains_key(&r.name))
            .cloned()
            .collect();
        let tenants: Vec<(String, String)> = self
            .seeder
            .tenants
            .iter()
            .map(|t| (t.id.clone(), t.label.clone()))
            .collect();
        let mut session = ProbeSession::open(runtime, &run.subject).await?;
        run.ledger.record_all(
            probes::tenant_probes(
                &mut session,
                runtime,
                &run.oracle,
                &run.subject,
                &probed,
                &tenants,
                true,
            )
            .await?,
        );
        if let Some(dlq) = &self.project.dlq {
            run.ledger.record_all(
                dlq::dlq_write(
                    &mut session,
                    &run.oracle,
                    &mut self.seeder,
                    &run.subject,
                    &run.relations,
                    &dlq.table,
                )
                .await?,
            );
        }
        let mut aim = references::Aim {
            session: &mut session,
            oracle: &run.oracle,
            seeder: &mut self.seeder,
            subject: &run.subject,
        };
        let mut keyed = references::references(&mut aim, &run.keys.references).await?;
        keyed.extend(references::unique_keys(&mut aim, &run.keys.unique).await?);
        run.ledger.record_all(keyed);
        let mut caller = calls::Caller {
            session: &mut session,
            oracle: &run.oracle,
            seeder: &mut self.seeder,
            subject: &run.subject,
            tables: seeded_tables(&run.relations)
                .filter_map(|r| Some((r.name.clone(), r.tenant_column.clone()?)))
                .collect(),
        };
        let called = calls::probe(&mut caller).await?;
        run.ledger.record_all(called);
        let pool = super::pool(runtime, self.options.pool_size)?;
        self.dml_property(run, &pool).await?;
        run.ledger.record_all(
            probes::pool_probes(
                &pool,
                &run.oracle,
                &mut session,
                &run.subject,
                &probed,
                tenants.first().map(|t| t.0.as_str()),
            )
            .await?,
        );
        Ok(())
    }

    fn unjudged(&self, relation: &str) -> bool {
        self.seeder.failures().contains_key(relation)
    }

    fn skipped_in_place(&self) -> Vec<(&'static str, Vec<InvariantId>)> {
        let mut out = vec![(
            "the DML property (random inserts, updates, deletes and moves, committed)",
            Vec::new(),
        )];
        if self.project.dlq.is_some() {
            out.push((
                "the DLQ-WRITE probe (the parent rows of its DLQ row are committed)",
                vec![InvariantId::DlqCompleteness],
            ));
        }
        out
    }

    fn finish(self, report: &mut Report) {
        for r in &mut report.invariants {
            if r.id == InvariantId::DlqCompleteness {
                r.statement = DLQ_STATEMENT.into();
            }
        }
        report.cases_run = self.cases_run;
        report.shards = self.options.shard.map(|s| {
            Shards::one(
                s,
                self.options.cases,
                self.last_case,
                self.first_failure,
                self.per_case.clone(),
            )
        });
        if report.verdict == Verdict::Fail && self.options.progress {
            eprintln!("rlsgate: the project violates: {:?}", report.violated());
        }
        report.project = Some(self.discovery);
    }
}

/// The tables rlsgate seeds: tenant tables and partitioned tables, not their partitions.
fn seeded_tables(relations: &[Relation]) -> impl Iterator<Item = &Relation> {
    relations
        .iter()
        .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p') && !r.is_partition)
}
