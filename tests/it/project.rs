//! Bring your own schema (`rlsgate check --config`): the reference system through the generic
//! path gives the campaign's verdicts; every example project under `examples/` holds, with its
//! findings snapshotted; each broken copy is caught by the expected invariants; an existing
//! database is checked and left as it was; bad configs fail with errors that name the fix.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rlsgate::campaign::{self, CampaignOptions};
use rlsgate::campaign::{ProjectOptions, Source};
use rlsgate::invariants::{InvariantId, Undecided};
use rlsgate::project::ProjectConfig;
use rlsgate::report::{Report, Verdict};
use rlsgate::workload::WorkloadShape;
use rlsgate::{Role, Settings};

use crate::support::shared_server;

fn example(path: &str) -> ProjectConfig {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path);
    ProjectConfig::load(&dir).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn options() -> ProjectOptions {
    ProjectOptions {
        cases: 12,
        seed: 7,
        ..ProjectOptions::default()
    }
}

async fn check(path: &str) -> Report {
    let settings = Settings::from_env().unwrap();
    // Keep the shared server up across the project's own start.
    let _server = shared_server().await;
    rlsgate::campaign::check_project(&settings, &example(path), &Source::default(), &options())
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What a reviewer needs of a project's run, without what depends on timing: the library's
/// review text, the one a project snapshots in its own tests.
fn findings(report: &Report) -> String {
    rlsgate::evidence::review(report)
}

fn snapshot(name: &str, report: &Report) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(format!("project-{name}"), findings(report)));
}

fn violated(report: &Report) -> BTreeSet<InvariantId> {
    report.violated().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_through_the_generic_path_gives_the_campaigns_verdicts() {
    let generic = check("reference").await;
    let campaign = campaign::run(
        &Settings::from_env().unwrap(),
        &CampaignOptions {
            cases: 4,
            shape: WorkloadShape {
                max_concurrency: 1,
                ..WorkloadShape::default()
            },
            ..CampaignOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(generic.verdict, Verdict::Pass, "{}", findings(&generic));
    assert_eq!(campaign.verdict, Verdict::Pass);
    for r in &generic.invariants {
        assert_eq!(
            r.status,
            campaign.invariant(r.id).status,
            "{} differs between the generic path and the campaign",
            r.id
        );
    }
    let ids: Vec<InvariantId> = generic.invariants.iter().map(|r| r.id).collect();
    assert!(ids.contains(&InvariantId::DlqCompleteness));
    assert!(
        !ids.contains(&InvariantId::ExactlyOnce),
        "history invariants need the worker"
    );
    snapshot("reference", &generic);
}

#[rstest::rstest]
#[case::saas("saas")]
#[case::definer("definer")]
#[case::multitenant_columns("multitenant-columns")]
#[case::helper_functions("helper-functions")]
#[case::references("references")]
#[case::rpc("rpc")]
#[case::sqlx_helpdesk("sqlx-helpdesk")]
#[case::flyway_billing("flyway-billing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_project_holds(#[case] name: &str) {
    let report = check(name).await;
    assert_eq!(report.verdict, Verdict::Pass, "{}", findings(&report));
    assert!(report.problems.is_empty(), "{}", findings(&report));
    let d = report.project.as_ref().unwrap();
    assert!(
        d.relations
            .iter()
            .filter(|r| r.seeding.is_some())
            .all(|r| r.seeding.as_deref() == Some("seeded")),
        "{}",
        findings(&report)
    );
    snapshot(name, &report);
}

#[rstest::rstest]
#[case::saas("saas", &[InvariantId::TenantIsolation, InvariantId::LeastPrivilege, InvariantId::RlsCoverage, InvariantId::DlqCompleteness])]
#[case::definer("definer", &[InvariantId::TenantIsolation, InvariantId::RlsCoverage])]
#[case::multitenant_columns("multitenant-columns", &[InvariantId::TenantIsolation, InvariantId::WriteCheck, InvariantId::LeastPrivilege, InvariantId::RlsCoverage])]
#[case::helper_functions("helper-functions", &[InvariantId::TenantIsolation, InvariantId::WriteCheck, InvariantId::NoContextClosed, InvariantId::ContextHygiene, InvariantId::RlsCoverage])]
#[case::references("references", &[InvariantId::WriteCheck, InvariantId::SideChannels])]
#[case::rpc("rpc", &[InvariantId::TenantIsolation])]
#[case::sqlx_helpdesk("sqlx-helpdesk", &[InvariantId::WriteCheck, InvariantId::NoContextClosed, InvariantId::LeastPrivilege, InvariantId::RlsCoverage])]
#[case::flyway_billing("flyway-billing", &[InvariantId::TenantIsolation, InvariantId::WriteCheck, InvariantId::NoContextClosed, InvariantId::RuntimeIdentity, InvariantId::LeastPrivilege, InvariantId::RuntimeLacksDdl, InvariantId::RlsCoverage])]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broken_copy_is_caught(#[case] name: &str, #[case] expected: &[InvariantId]) {
    let report = check(&format!("{name}/broken")).await;
    assert_eq!(report.verdict, Verdict::Fail, "{}", findings(&report));
    assert!(!report.problems.is_empty(), "{}", findings(&report));
    let violated = violated(&report);
    for id in expected {
        assert!(
            violated.contains(id),
            "{name}: {id} not violated:\n{}",
            findings(&report)
        );
    }
    // Every finding names the relation (or function) and the probe.
    for r in &report.invariants {
        for o in &r.violations {
            assert!(
                o.relation.is_some() || o.probe.starts_with("catalog:"),
                "{o}"
            );
        }
    }
    snapshot(&format!("{name}-broken"), &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_copy_found_by_random_dml_has_a_minimal_reproduction() {
    let report = check("saas/broken").await;
    let reproduction = report
        .project
        .as_ref()
        .and_then(|p| p.reproduction.clone())
        .unwrap_or_else(|| panic!("no DML reproduction:\n{}", findings(&report)));
    assert!(
        reproduction.contains("BEGIN; SELECT set_config('app.tenant_id'"),
        "{reproduction}"
    );
    let dml: Vec<_> = report
        .invariant(InvariantId::TenantIsolation)
        .violations
        .iter()
        .filter(|o| o.probe.starts_with("DML-"))
        .collect();
    assert!(!dml.is_empty(), "{}", findings(&report));
    assert!(
        dml.iter()
            .all(|o| o.statement.as_deref() == Some(reproduction.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_is_checked_and_left_as_it_was() {
    let server = shared_server().await;
    let db = server.fresh_database().await.unwrap();
    // A connection of its own each time: a database is copied only while nobody is connected.
    let counts = || async {
        let oracle = db.connect(Role::Superuser).await.unwrap();
        let mut all = Vec::new();
        for t in [
            "tenants",
            "llm_api_calls",
            "llm_monthly_costs",
            "worker_failed_jobs",
        ] {
            let n: i64 = oracle
                .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .unwrap()
                .get(0);
            all.push(n);
        }
        all
    };
    let before = counts().await;
    let source = Source {
        database_url: Some(db.url(Role::Superuser).await.unwrap()),
        runtime_url: Some(db.url(Role::Runtime).await.unwrap()),
        in_place: false,
    };
    let report = rlsgate::campaign::check_project(
        &Settings::from_env().unwrap(),
        &example("reference"),
        &source,
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(report.backend, "external");
    // Without the migration ledger rlsgate wrote itself it could still tell who applied the
    // schema; here the ledger is there (the template was migrated by rlsgate).
    assert_eq!(report.verdict, Verdict::Pass, "{}", findings(&report));
    assert_eq!(counts().await, before, "the check left rows behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_fail_with_errors_that_name_the_fix() {
    let server = shared_server().await;
    let db = server.fresh_database().await.unwrap();
    let url = db.url(Role::Superuser).await.unwrap();
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reference/rlsgate.toml"),
    )
    .unwrap()
    .replace("migrations = [\"../../migrations\"]\n", "");
    let settings = Settings::from_env().unwrap();
    let existing = Source {
        database_url: Some(url.clone()),
        runtime_url: None,
        in_place: false,
    };
    let cases: [(String, Source, &str); 5] = [
        (
            base.replace("runtime = \"app_user\"", "runtime = \"no_such_role\""),
            existing.clone(),
            "roles.runtime = 'no_such_role': no such role",
        ),
        (
            base.replace("columns = [\"tenant_id\"]", "columns = [\"org_id\"]"),
            existing.clone(),
            "no relation in schema(s) public has a column 'org_id'",
        ),
        (
            base.replace("table = \"public.tenants\"", "table = \"public.orgs\""),
            existing.clone(),
            "tenant.table = 'public.orgs': no such table",
        ),
        (
            base.clone(),
            Source {
                database_url: Some("postgres://postgres:pw@127.0.0.1:1/db".into()),
                runtime_url: None,
                in_place: false,
            },
            "cannot reach the database of --database-url (postgres://postgres:***@127.0.0.1:1/db)",
        ),
        (base.clone(), Source::default(), "no [schema] migrations"),
    ];
    for (text, source, expected) in cases {
        let config = ProjectConfig::parse(&text, Path::new(".")).unwrap();
        let e = rlsgate::campaign::check_project(&settings, &config, &source, &options())
            .await
            .expect_err(expected);
        assert!(e.to_string().contains(expected), "{expected}: {e}");
    }
    // A missing setting name is caught before anything connects.
    let e = ProjectConfig::parse(
        &base.replace("setting = \"app.current_tenant_id\"\n", ""),
        Path::new("."),
    )
    .unwrap_err();
    assert!(e.is_config() && e.to_string().contains("setting"), "{e}");
    // The database was not touched: no tenant of rlsgate's was left.
    let oracle = db.connect(Role::Superuser).await.unwrap();
    let n: i64 = oracle
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_migration_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_t.sql"),
        "CREATE TABLE t (tenant_id uuid);",
    )
    .unwrap();
    std::fs::write(migrations.join("0002_bad.sql"), "CREATE TABLE u (id int;").unwrap();
    std::fs::write(
        dir.path().join("rlsgate.toml"),
        "[schema]\nmigrations = [\"migrations\"]\n[roles]\nadmin = \"bad_owner\"\nruntime = \"bad_app\"\n\
         [tenant]\nsetting = \"app.t\"\ncolumns = [\"tenant_id\"]\n",
    )
    .unwrap();
    let config = ProjectConfig::load(dir.path()).unwrap();
    let _server = shared_server().await;
    let e = rlsgate::campaign::check_project(
        &Settings::from_env().unwrap(),
        &config,
        &Source::default(),
        &options(),
    )
    .await
    .unwrap_err();
    assert!(e.is_migration(), "{e}");
    assert!(e.to_string().contains("0002_bad.sql"), "{e}");
}

#[test]
fn every_example_parses_and_names_existing_migration_directories() {
    for name in [
        "reference",
        "saas",
        "saas/broken",
        "definer",
        "definer/broken",
        "multitenant-columns",
        "multitenant-columns/broken",
        "helper-functions",
        "helper-functions/broken",
        "references",
        "references/broken",
        "rpc",
        "rpc/broken",
        "sqlx-helpdesk",
        "sqlx-helpdesk/broken",
        "flyway-billing",
        "flyway-billing/broken",
    ] {
        let c = example(name);
        assert!(!c.migration_dirs().is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_satisfies_constraints_and_reports_what_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_schema.sql"),
        "CREATE TABLE public.t (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid NOT NULL,
           status text NOT NULL CHECK (status IN ('open', 'closed')),
           prio int NOT NULL CHECK (prio BETWEEN 1 AND 5),
           currency char(3) NOT NULL CHECK (currency IN ('EUR', 'USD')));
         CREATE TABLE public.p (tenant_id uuid NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE public.p2030 PARTITION OF public.p FOR VALUES FROM ('2030-01-01') TO ('2031-01-01');
         CREATE TABLE public.r (tenant_id uuid NOT NULL, code text NOT NULL CHECK (code ~ '^[A-Z]{3}$'));
         DO $$ DECLARE t text; BEGIN FOREACH t IN ARRAY ARRAY['t', 'p', 'r'] LOOP
           EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', t);
           EXECUTE format('CREATE POLICY iso ON public.%I USING (tenant_id = nullif(current_setting(''app.t'', true), '''')::uuid)', t);
           EXECUTE format('GRANT SELECT, INSERT ON public.%I TO seed_app', t);
         END LOOP; END $$;",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rlsgate.toml"),
        "[schema]\nmigrations = [\"migrations\"]\n[roles]\nadmin = \"seed_owner\"\nruntime = \"seed_app\"\n\
         [tenant]\nsetting = \"app.t\"\ncolumns = [\"tenant_id\"]\n\
         [privileges.relations]\n\"public.t\" = [\"SELECT\", \"INSERT\"]\n\"public.p\" = [\"SELECT\", \"INSERT\"]\n\"public.r\" = [\"SELECT\", \"INSERT\"]\n",
    )
    .unwrap();
    let config = ProjectConfig::load(dir.path()).unwrap();
    let _server = shared_server().await;
    let report = rlsgate::campaign::check_project(
        &Settings::from_env().unwrap(),
        &config,
        &Source::default(),
        &options(),
    )
    .await
    .unwrap();
    let seeding = |name: &str| {
        report
            .project
            .as_ref()
            .unwrap()
            .relations
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.seeding.clone())
            .unwrap_or_default()
    };
    assert_eq!(seeding("public.t"), "seeded", "{}", findings(&report));
    assert_eq!(seeding("public.p"), "seeded", "{}", findings(&report));
    assert!(
        seeding("public.r").starts_with("not seeded"),
        "{}",
        findings(&report)
    );
    // What could not be seeded is inconclusive, never a pass.
    assert_eq!(
        report.verdict,
        Verdict::Inconclusive,
        "{}",
        findings(&report)
    );
    let isolation = report.invariant(InvariantId::TenantIsolation);
    assert!(
        isolation
            .inconclusive
            .iter()
            .any(|o| o.undecided == Some(Undecided::NotSeeded)
                && o.relation.as_deref() == Some("public.r")),
        "{}",
        findings(&report)
    );
    assert!(violated(&report).is_empty(), "{}", findings(&report));
}

/// A project of `dirs` (name, files), with `schema` as its `[schema] migrations` line.
fn project(schema: &str, dirs: &[(&str, &[(&str, &str)])]) -> (tempfile::TempDir, ProjectConfig) {
    let dir = tempfile::tempdir().unwrap();
    for (name, files) in dirs {
        for (file, text) in *files {
            let path = dir.path().join(name).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("rlsgate.toml"),
        format!(
            "[schema]\n{schema}\n[roles]\nadmin = \"layouts_owner\"\nruntime = \"layouts_app\"\n\
             [tenant]\nsetting = \"app.t\"\ncolumns = [\"tenant_id\"]\n"
        ),
    )
    .unwrap();
    let config = ProjectConfig::load(dir.path()).unwrap();
    (dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_of_different_layouts_merge_into_one_ordered_set() {
    let (_dir, config) = project(
        "migrations = [\"up\", { path = \"flyway\", format = \"flyway\" }]",
        &[
            (
                "up",
                &[
                    ("1_t.up.sql", "CREATE TABLE t (tenant_id int);"),
                    ("1_t.down.sql", "DROP TABLE t;"),
                    ("3_u.up.sql", "CREATE TABLE u (tenant_id int REFERENCES v);"),
                ],
            ),
            (
                "flyway",
                &[
                    ("V2__v.sql", "CREATE TABLE v (tenant_id int PRIMARY KEY);"),
                    ("U2__v.sql", "DROP TABLE v;"),
                    ("V4__w.sql", "SELECT * FROM no_such_table;"),
                ],
            ),
        ],
    );
    let _server = shared_server().await;
    let e = rlsgate::campaign::check_project(
        &Settings::from_env().unwrap(),
        &config,
        &Source::default(),
        &options(),
    )
    .await
    .unwrap_err();
    // V4 fails last, after the files of both directories in version order.
    assert!(e.is_migration(), "{e}");
    assert!(
        e.to_string()
            .contains("migration V4__w.sql failed at statement 1 (line 1)"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("applied before it: 1_t.up.sql, V2__v.sql, 3_u.up.sql"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_shared_by_two_directories_is_an_error_naming_both_files() {
    let (_dir, config) = project(
        "format = \"sqlx\"\nmigrations = [\"a\", { path = \"b\", format = \"dbmate\" }]",
        &[
            ("a", &[("20240101120000_t.up.sql", "SELECT 1;")]),
            ("b", &[("20240101120000_u.sql", "-- migrate:up\nSELECT 2;")]),
        ],
    );
    let e = rlsgate::campaign::check_project(
        &Settings::from_env().unwrap(),
        &config,
        &Source::default(),
        &options(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains(
            "migrations 20240101120000_t.up.sql and 20240101120000_u.sql share version 20240101120000"
        ),
        "{e}"
    );
}
