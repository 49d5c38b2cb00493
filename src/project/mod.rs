//! Bring your own schema: rlsgate against a project's migrations or database, described by its
//! `rlsgate.toml` ([`config`]).
//!
//! [`check`] gets a database (applies the project's migrations as its admin role into a fresh
//! database on the selected backend, or uses an existing one by URL), validates the file against
//! the catalog, [`discovery`] lists what the runtime can reach, [`seed`] creates rlsgate's own
//! tenants and a sentinel row of each in every tenant table, then the campaign's static checks
//! and probes run on every discovered relation, [`dml`] runs random DML sequences against a
//! visibility model over a pool of runtime logins, and the result is a [`Report`] with the same
//! evidence and exit codes as `rlsgate run`.

pub mod config;
pub mod discovery;
pub mod dml;
pub mod seed;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

pub use config::{Preset, ProjectConfig};
pub use discovery::Discovery;

use crate::config::Settings;
use crate::database::Database;
use crate::error::{Error, Result};
use crate::invariants::catalog::{self, Relation};
use crate::invariants::{
    ExpectedPrivileges, InvariantId, Ledger, Observation, ProbeSession, Status, Subject,
    context_hygiene, no_context_closed, runtime_identity, runtime_lacks_ddl, tenant_isolation,
    write_check,
};
use crate::migrations::MigrationSet;
use crate::provision::Server;
use crate::report::{Performance, Report, TaskCounts, Verdict};
use crate::roles::quote_ident;

/// The invariants a project is checked against (the history invariants need the built-in
/// worker; `dlq-completeness` needs a `[dlq]` table).
pub const INVARIANTS: [InvariantId; 8] = [
    InvariantId::TenantIsolation,
    InvariantId::WriteCheck,
    InvariantId::NoContextClosed,
    InvariantId::ContextHygiene,
    InvariantId::RuntimeIdentity,
    InvariantId::LeastPrivilege,
    InvariantId::RuntimeLacksDdl,
    InvariantId::RlsCoverage,
];

/// What `dlq-completeness` means for a project, whose worker rlsgate does not drive.
pub const DLQ_STATEMENT: &str = "in every tenant's context the runtime can record a failure in the DLQ table; it cannot alter or erase one";

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
}

impl Default for ProjectOptions {
    fn default() -> Self {
        Self {
            cases: 16,
            max_actions: 8,
            seed: crate::runner::DEFAULT_SEED,
            max_shrink_time: Duration::from_secs(20),
            pool_size: 2,
            progress: false,
        }
    }
}

/// Where the schema is.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// A superuser URL of an existing database (else the project's migrations are applied
    /// into a fresh database on the backend `settings` select).
    pub database_url: Option<String>,
    /// The runtime's login URL for an existing database (else `roles.runtime_url_env`).
    pub runtime_url: Option<String>,
}

/// The database under test and its logins.
struct Prepared {
    oracle: tokio_postgres::Config,
    runtime: Option<tokio_postgres::Config>,
    backend: String,
    /// Keeps a database rlsgate built, and its server, alive (dropped at the end).
    _database: Option<Database>,
    existing: bool,
}

/// Check a project: see the module docs.
///
/// # Errors
/// A config error for a bad file, URL, role, setting or column (naming the fix); a migration
/// error when a migration fails (nothing half-applied: the database is dropped); a harness
/// error when the server cannot be reached. Findings are in the report, never an `Err`.
pub async fn check(
    settings: &Settings,
    project: &ProjectConfig,
    source: &Source,
    options: &ProjectOptions,
) -> Result<Report> {
    let started = Instant::now();
    let prepared = prepare(settings, project, source).await?;
    let ready = started.elapsed();
    let oracle = Server::connect_with(&prepared.oracle).await?;
    validate(&oracle, project).await?;
    let mut subject = subject_of(project);
    let relations = catalog::relations(&oracle, &subject).await?;
    subject.expected = expected_privileges(&oracle, project, &relations).await?;
    let server_version: String = oracle
        .query_one("SELECT version()", &[])
        .await
        .map_err(|e| Error::database("reading the server version", e))?
        .get(0);

    let mut scope: Vec<InvariantId> = INVARIANTS.to_vec();
    if project.dlq.is_some() {
        scope.push(InvariantId::DlqCompleteness);
    }
    let mut ledger = Ledger::scoped(scope);
    let mut discovery = discovery::read(&oracle, &subject, &relations).await?;
    let evidence = crate::runner::static_checks(&oracle, &subject, &mut ledger).await?;
    if let Some(dlq) = &project.dlq {
        ledger.record_all(dlq_static(&relations, &dlq.table, &subject));
    }

    let namespace = if prepared.existing {
        Uuid::new_v4()
    } else {
        Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("rlsgate-project-seed:{}", options.seed).as_bytes(),
        )
    };
    let mut seeder = seed::Seeder::new(&relations, namespace);
    let tenant_table = project
        .tenant
        .table
        .as_deref()
        .map(|t| (t, project.tenant.key.as_str()));
    let mut reproduction = None;
    let mut cases_run = 0;
    let result = async {
        seeder
            .create_tenants(&oracle, &subject, tenant_table, 2)
            .await?;
        for r in relations
            .iter()
            .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p') && !r.is_partition)
        {
            seeder.seed_table(&oracle, &subject, &r.name).await?;
        }
        for (table, why) in seeder.failures() {
            ledger.record(
                Observation::inconclusive(
                    InvariantId::TenantIsolation,
                    "SEED",
                    format!("no sentinel rows in {table}, so no probe can judge it: {why}"),
                )
                .on(table.clone()),
            );
        }
        discovery.mark_seeded(&seeder);
        let Some(runtime) = prepared.runtime.clone() else {
            ledger.record_all(crate::invariants::no_runtime_login(
                "--runtime-url or roles.runtime_url_env",
            ));
            return Ok(());
        };
        ledger.record_all(runtime_lacks_ddl::check(&runtime, &subject, &relations).await?);
        // Probes judge only relations with sentinel rows (or whose rows come from them).
        let probed: Vec<Relation> = relations
            .iter()
            .filter(|r| !seeder.failures().contains_key(&r.name))
            .cloned()
            .collect();
        let tenants: Vec<(String, String)> = seeder
            .tenants
            .iter()
            .map(|t| (t.id.clone(), t.label.clone()))
            .collect();
        let mut session = ProbeSession::open(&runtime, &subject).await?;
        ledger.record_all(
            tenant_isolation::check(&mut session, &oracle, &subject, &probed, &tenants).await?,
        );
        ledger
            .record_all(tenant_isolation::check_functions(&mut session, &subject, &tenants).await?);
        ledger.record_all(
            write_check::check(
                &mut session,
                &oracle,
                &subject,
                &probed,
                &tenants[0],
                &tenants[1],
            )
            .await?,
        );
        ledger.record_all(
            no_context_closed::check(&runtime, &oracle, &subject, &probed, &tenants[0]).await?,
        );
        if let Some(dlq) = &project.dlq {
            ledger.record_all(
                dlq_write(
                    &mut session,
                    &oracle,
                    &mut seeder,
                    &subject,
                    &relations,
                    &dlq.table,
                )
                .await?,
            );
        }
        let pool = pool(&runtime, options.pool_size)?;
        let targets = dml::Target::all(&oracle, &mut seeder, &relations).await?;
        if !targets.is_empty() {
            let (observations, repro, runs) =
                dml_property(&pool, &oracle, &mut seeder, &subject, &targets, options).await?;
            ledger.record_all(observations);
            reproduction = repro;
            cases_run = runs;
        }
        let size = pool.status().size;
        let objects = futures_util::future::join_all((0..size).map(|_| pool.get())).await;
        let objects: Vec<_> = objects.into_iter().filter_map(|o| o.ok()).collect();
        let clients: Vec<&Client> = objects.iter().map(|o| &***o).collect();
        if !clients.is_empty() {
            ledger.record_all(context_hygiene::check(&clients, &subject, &probed).await?);
            ledger.record_all(runtime_identity::check_connections(&clients, &subject).await?);
        }
        Ok::<(), Error>(())
    }
    .await;
    if prepared.existing {
        let tables: Vec<&Relation> = relations
            .iter()
            .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p') && !r.is_partition)
            .collect();
        let left = seeder.cleanup(&oracle, &tables, tenant_table).await?;
        if !left.is_empty() {
            eprintln!(
                "rlsgate: could not remove everything this check wrote (tenants {}): {}",
                seeder
                    .tenants
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                left.join("; ")
            );
        }
    }
    result?;
    let (verdict, mut invariants) = Report::results(&ledger);
    for r in &mut invariants {
        if r.id == InvariantId::DlqCompleteness {
            r.statement = DLQ_STATEMENT.into();
        }
    }
    discovery.reproduction = reproduction;
    let elapsed = started.elapsed();
    if verdict == Verdict::Fail && options.progress {
        eprintln!("rlsgate: the project violates: {:?}", ledger.violated());
    }
    Ok(Report {
        verdict,
        mode: "project".into(),
        backend: prepared.backend.clone(),
        server_version,
        seed: options.seed,
        cases: options.cases,
        cases_run,
        shrink_runs: 0,
        variants: Vec::new(),
        invariants,
        faults: BTreeMap::new(),
        fault_coverage: BTreeMap::new(),
        tasks: TaskCounts::default(),
        counterexample: None,
        performance: Performance {
            server_ready_ms: ready.as_millis() as u64,
            elapsed_ms: elapsed.as_millis() as u64,
            ..Performance::default()
        },
        reproduce: reproduce(source, options),
        evidence,
        project: Some(discovery),
    })
}

fn reproduce(source: &Source, options: &ProjectOptions) -> String {
    let mut cmd = format!(
        "rlsgate check --config rlsgate.toml --cases {} --seed {}",
        options.cases, options.seed
    );
    if source.database_url.is_some() {
        cmd.push_str(" --database-url URL --runtime-url URL");
    }
    cmd
}

/// The subject of the checks, from the file (the expected privileges come later, from the
/// catalog).
pub fn subject_of(project: &ProjectConfig) -> Subject {
    Subject {
        runtime_role: project.roles.runtime.clone(),
        admin_role: project.roles.admin.clone(),
        tenant_setting: project.tenant.setting.clone(),
        tenant_columns: project.tenant.columns.clone(),
        set_context: project.tenant.set_context.clone(),
        schemas: project.schema.schemas.clone(),
        exclude: project.schema.exclude.clone(),
        include: project.schema.include.clone(),
        expected: ExpectedPrivileges::default(),
    }
}

/// Build or reach the database.
async fn prepare(
    settings: &Settings,
    project: &ProjectConfig,
    source: &Source,
) -> Result<Prepared> {
    if let Some(url) = &source.database_url {
        let (oracle, _) = crate::provision::external::oracle(url, "--database-url").await?;
        let runtime_url = source.runtime_url.clone().or_else(|| {
            project
                .roles
                .runtime_url_env
                .as_deref()
                .and_then(crate::config::env_var)
        });
        let runtime = match runtime_url {
            None => None,
            Some(u) => Some(u.parse::<tokio_postgres::Config>().map_err(|e| {
                Error::config(format!(
                    "the runtime URL is not a valid PostgreSQL URL ({e}); use postgres://{}:PASSWORD@HOST:PORT/DB",
                    project.roles.runtime
                ))
            })?),
        };
        if let Some(r) = &runtime
            && r.get_user() != Some(project.roles.runtime.as_str())
        {
            return Err(Error::config(format!(
                "the runtime URL logs in as {}, but roles.runtime is {}; give the runtime's own login",
                r.get_user().unwrap_or("(no user)"),
                project.roles.runtime
            )));
        }
        return Ok(Prepared {
            oracle,
            runtime,
            backend: "external".into(),
            _database: None,
            existing: true,
        });
    }
    let dirs = project.migration_dirs();
    if dirs.is_empty() {
        return Err(Error::config(
            "rlsgate.toml has no [schema] migrations and no --database-url was given: \
             list the migration directories (migrations = [\"migrations\"]) or pass --database-url",
        ));
    }
    let mut migrations = Vec::new();
    for dir in &dirs {
        migrations.extend(MigrationSet::load(dir)?.migrations().iter().cloned());
    }
    let origin = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    // One set across the directories, ordered by version (a shared version is an error).
    let set = MigrationSet::from_migrations(migrations, &origin)?;
    // Shared with every other check of this process on the same settings (the tests).
    let server = Server::shared(settings).await?;
    let roles = &project.roles;
    for group in &roles.groups {
        server.project_role(group, false).await?;
    }
    let admin = server
        .project_role(&roles.admin, true)
        .await?
        .expect("a login role has credentials");
    let runtime = server
        .project_role(&roles.runtime, true)
        .await?
        .expect("a login role has credentials");
    if !roles.runtime_member_of.is_empty() {
        let su = server.superuser().await?;
        let groups: Vec<String> = roles
            .runtime_member_of
            .iter()
            .map(|g| quote_ident(g))
            .collect();
        su.batch_execute(&format!(
            "GRANT {} TO {}",
            groups.join(", "),
            quote_ident(&roles.runtime)
        ))
        .await
        .map_err(|e| {
            Error::config(format!(
                "granting roles.runtime_member_of to {}: {}; list each group in roles.groups too",
                roles.runtime,
                crate::error::describe_db_error(&e)
            ))
        })?;
    }
    let database = server
        .project_database(&roles.admin, &roles.runtime)
        .await?;
    let mut owner = Server::connect_with(&server.config(&admin, database.name())).await?;
    set.apply(&mut owner, &admin.user).await?;
    drop(owner);
    Ok(Prepared {
        oracle: server.config(server.superuser_login(), database.name()),
        runtime: Some(server.config(&runtime, database.name())),
        backend: server.backend().to_string(),
        _database: Some(database),
        existing: false,
    })
}

/// Check the file against the catalog: the roles exist, every tenant column is in some
/// relation, the tenant table and its key, and the DLQ table exist.
///
/// # Errors
/// A config error naming what is missing and the fix.
pub async fn validate(oracle: &Client, project: &ProjectConfig) -> Result<()> {
    let err = |e| Error::database("validating rlsgate.toml against the catalog", e);
    for (key, role) in [
        ("roles.admin", &project.roles.admin),
        ("roles.runtime", &project.roles.runtime),
    ] {
        let exists: bool = oracle
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                &[role],
            )
            .await
            .map_err(err)?
            .get(0);
        if !exists {
            return Err(Error::config(format!(
                "{key} = '{role}': no such role in this database's server; name the role the application uses"
            )));
        }
    }
    let schemas = &project.schema.schemas;
    for column in &project.tenant.columns {
        let found: i64 = oracle
            .query_one(
                "SELECT count(*) FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = ANY($1) AND a.attname = $2 AND a.attnum > 0
                   AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                &[schemas, column],
            )
            .await
            .map_err(err)?
            .get(0);
        if found == 0 {
            return Err(Error::config(format!(
                "tenant.columns: no relation in schema(s) {} has a column '{column}'; name the column that holds the tenant",
                schemas.join(", ")
            )));
        }
    }
    let relation_exists = |name: String| async move {
        oracle
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .map(|r| r.get::<_, bool>(0))
            .map_err(err)
    };
    if let Some(table) = &project.tenant.table {
        if !relation_exists(table.clone()).await? {
            return Err(Error::config(format!(
                "tenant.table = '{table}': no such table; name the table tenants live in, or leave tenant.table out"
            )));
        }
        let key: bool = oracle
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::text::regclass
                                AND attname = $2 AND attnum > 0 AND NOT attisdropped)",
                &[table, &project.tenant.key],
            )
            .await
            .map_err(err)?
            .get(0);
        if !key {
            return Err(Error::config(format!(
                "tenant.key = '{}': {table} has no such column; name its key column",
                project.tenant.key
            )));
        }
    }
    if let Some(dlq) = &project.dlq
        && !relation_exists(dlq.table.clone()).await?
    {
        return Err(Error::config(format!(
            "dlq.table = '{}': no such table; name the dead-letter table or drop [dlq]",
            dlq.table
        )));
    }
    Ok(())
}

/// The declared privileges: the preset resolved against the tenant tables, then the explicit
/// entries (which replace the preset's for their object).
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn expected_privileges(
    oracle: &Client,
    project: &ProjectConfig,
    relations: &[Relation],
) -> Result<ExpectedPrivileges> {
    let p = &project.privileges;
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    let mut expected = ExpectedPrivileges::default();
    let preset = match p.preset {
        Preset::None => None,
        Preset::DmlOnTenantTables => Some(set(&["SELECT", "INSERT", "UPDATE", "DELETE"])),
        Preset::ReadOnlyOnTenantTables => Some(set(&["SELECT"])),
    };
    if let Some(privileges) = preset {
        for r in relations
            .iter()
            .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p') && !r.is_partition)
        {
            expected
                .relations
                .insert(r.name.clone(), privileges.clone());
        }
    }
    let upper = config::upper;
    for (name, privileges) in &p.relations {
        expected.relations.insert(name.clone(), upper(privileges));
    }
    for (name, privileges) in &p.sequences {
        expected.sequences.insert(name.clone(), upper(privileges));
    }
    for (name, privileges) in &p.functions {
        // Normalise the signature as regprocedure prints it.
        let normal: Option<String> = oracle
            .query_one(
                &format!(
                    "SELECT (SELECT {} FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                             WHERE p.oid = to_regprocedure($1))",
                    catalog::function_name_sql("p")
                ),
                &[name],
            )
            .await
            .map_err(|e| Error::database("resolving a function signature", e))?
            .get(0);
        let normal = normal.ok_or_else(|| {
            Error::config(format!(
                "privileges.functions: no function {name}; write its signature as regprocedure prints it, e.g. public.f(uuid)"
            ))
        })?;
        expected.functions.insert(normal, upper(privileges));
    }
    expected.schemas = match &p.schemas {
        Some(s) => s.iter().map(|(k, v)| (k.clone(), upper(v))).collect(),
        None => project
            .schema
            .schemas
            .iter()
            .map(|s| (s.clone(), set(&["USAGE"])))
            .collect(),
    };
    expected.database = match &p.database {
        Some(d) => upper(d),
        None => set(&["CONNECT"]),
    };
    expected.memberships = p
        .memberships
        .clone()
        .unwrap_or_else(|| project.roles.runtime_member_of.clone())
        .into_iter()
        .collect();
    Ok(expected)
}

/// `dlq-completeness`, statically: the runtime can record a failure in the DLQ table (INSERT)
/// and cannot erase one (no UPDATE, DELETE; TRUNCATE is least-privilege's).
fn dlq_static(relations: &[Relation], table: &str, subject: &Subject) -> Vec<Observation> {
    let id = InvariantId::DlqCompleteness;
    let runtime = &subject.runtime_role;
    let Some(r) = relations.iter().find(|r| r.name == table) else {
        return vec![Observation::inconclusive(
            id,
            "catalog:dlq",
            format!(
                "the DLQ table {table} is not among the checked relations (schema.include/exclude?)"
            ),
        )];
    };
    vec![
        Observation::expect(
            id,
            r.runtime_can_insert,
            "catalog:dlq-insert",
            format!("{runtime} cannot INSERT into the DLQ table {table}: failures cannot be recorded"),
        )
        .on(table),
        Observation::expect(
            id,
            !r.runtime_can_update && !r.runtime_can_delete,
            "catalog:dlq-append-only",
            format!(
                "{runtime} can {} the DLQ table {table}: a recorded failure can be altered or erased",
                [("UPDATE", r.runtime_can_update), ("DELETE", r.runtime_can_delete)]
                    .iter()
                    .filter(|(_, h)| *h)
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )
        .on(table),
    ]
}

/// DLQ-WRITE: in tenant A's context, the runtime records a failure of A in the DLQ table (in a
/// transaction that is rolled back).
async fn dlq_write(
    session: &mut ProbeSession,
    oracle: &Client,
    seeder: &mut seed::Seeder,
    subject: &Subject,
    relations: &[Relation],
    table: &str,
) -> Result<Vec<Observation>> {
    let id = InvariantId::DlqCompleteness;
    let Some(tenant) = seeder.tenants.first().cloned() else {
        return Ok(Vec::new());
    };
    if !relations
        .iter()
        .any(|r| r.name == table && r.is_tenant_relation())
    {
        return Ok(vec![
            Observation::inconclusive(
                id,
                "DLQ-WRITE",
                format!("the DLQ table {table} has no tenant column: not probed"),
            )
            .on(table),
        ]);
    }
    let values = match seeder.new_row(oracle, subject, table, &tenant.id).await? {
        Ok(v) => v,
        Err(why) => {
            return Ok(vec![
                Observation::inconclusive(
                    id,
                    "DLQ-WRITE",
                    format!("no DLQ row could be generated: {why}"),
                )
                .on(table),
            ]);
        }
    };
    let sql = seed::insert_statement(table, &values);
    let json = serde_json::Value::Object(values).to_string();
    let tx = session
        .client_mut()
        .transaction()
        .await
        .map_err(|e| Error::database("opening a DLQ-WRITE probe", e))?;
    crate::invariants::probe::set_context(&tx, subject, &tenant.id).await?;
    let result = crate::invariants::probe::probe_statement(&tx, &sql, &[&json]).await?;
    tx.rollback()
        .await
        .map_err(|e| Error::database("ending a DLQ-WRITE probe", e))?;
    let o = match &result {
        crate::invariants::probe::Probed::Rows(1) => Observation::holds(id, "DLQ-WRITE"),
        other => Observation::violated(
            id,
            "DLQ-WRITE",
            format!(
                "in tenant {}'s context the runtime cannot record a failure in {table}: {other:?}",
                tenant.label
            ),
        )
        .with_sqlstate(other.sqlstate()),
    };
    Ok(vec![o.on(table).with_statement(sql)])
}

fn pool(runtime: &tokio_postgres::Config, size: usize) -> Result<Pool> {
    let manager = Manager::from_config(
        runtime.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(|e| Error::provisioning(format!("building the runtime's connection pool: {e}")))
}

/// Run the DML property: proptest generates action sequences, each runs and is judged; a
/// failing one is shrunk. Returns every observation, the minimal reproduction (if one failed),
/// and the cases run.
async fn dml_property(
    pool: &Pool,
    oracle: &Client,
    seeder: &mut seed::Seeder,
    subject: &Subject,
    targets: &[dml::Target],
    options: &ProjectOptions,
) -> Result<(Vec<Observation>, Option<String>, u64)> {
    struct State<'a> {
        seeder: &'a mut seed::Seeder,
        observations: Vec<Observation>,
        failures: Vec<(Vec<dml::Action>, Vec<Observation>, String)>,
        runs: u64,
        aborted: Option<Error>,
    }
    let state = tokio::sync::Mutex::new(State {
        seeder,
        observations: Vec::new(),
        failures: Vec::new(),
        runs: 0,
        aborted: None,
    });
    let mut runner = crate::runner::seeded_runner(
        ProptestConfig {
            cases: options.cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        },
        options.seed,
        options.max_shrink_time,
    );
    let strategy = dml::sequences(targets.len(), options.max_actions);
    let handle = tokio::runtime::Handle::current();
    let first_failure = std::sync::Mutex::new(None::<u64>);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |actions| {
            handle.block_on(async {
                let mut st = state.lock().await;
                if st.aborted.is_some() {
                    return Ok(());
                }
                st.runs += 1;
                let outcome =
                    dml::run_case(pool, oracle, st.seeder, subject, targets, &actions).await;
                match outcome {
                    Err(e) => {
                        st.aborted = Some(e);
                        Ok(())
                    }
                    Ok((observations, transcript)) => {
                        let violations: Vec<Observation> = observations
                            .iter()
                            .filter(|o| o.status == Status::Violated)
                            .cloned()
                            .collect();
                        if options.progress && (st.runs.is_multiple_of(4) || !violations.is_empty())
                        {
                            eprintln!(
                                "rlsgate: DML sequence {} ({} actions){}",
                                st.runs,
                                actions.len(),
                                if violations.is_empty() {
                                    String::new()
                                } else {
                                    format!(", {} violations", violations.len())
                                }
                            );
                        }
                        if violations.is_empty() {
                            st.observations.extend(observations);
                            Ok(())
                        } else {
                            let n = st.runs;
                            first_failure.lock().unwrap().get_or_insert(n);
                            let reason = violations[0].to_string();
                            st.failures.push((actions.clone(), violations, transcript));
                            Err(TestCaseError::fail(reason))
                        }
                    }
                }
            })
        })
    });
    let mut st = state.into_inner();
    if let Some(e) = st.aborted.take() {
        return Err(e);
    }
    let mut observations = std::mem::take(&mut st.observations);
    let runs = first_failure.lock().unwrap().unwrap_or(st.runs);
    let reproduction = match result {
        Ok(()) => None,
        Err(TestError::Fail(_, minimal)) => crate::runner::minimal_failure(&st.failures, &minimal)
            .map(|(actions, violations, transcript)| {
                let script = format!(
                    "-- minimal DML sequence ({} action(s)), as the runtime {}:\n{transcript}",
                    actions.len(),
                    subject.runtime_role
                );
                for v in violations {
                    observations.push(v.with_statement(script.clone()));
                }
                script
            }),
        Err(TestError::Abort(reason)) => {
            return Err(Error::provisioning(format!(
                "the property runner aborted: {reason}"
            )));
        }
    };
    Ok((observations, reproduction, runs))
}
