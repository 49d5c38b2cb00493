//! `rlsgate init`: on every example project's migrations the draft parses, its roles, tenant
//! setting, columns, tenant table and key, schemas and DLQ are those of the example's
//! hand-written rlsgate.toml, and `check --config` on it holds; on a broken copy the draft
//! declares the privileges as they are (the other findings stay); an existing database is read
//! without a write; bad input gets an error naming the fix.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rlsgate::campaign::{ProjectOptions, Source};
use rlsgate::invariants::InvariantId;
use rlsgate::project::ProjectConfig;
use rlsgate::project::draft::{self, Draft, InitOptions};
use rlsgate::report::{Report, Verdict};
use rlsgate::{Role, Settings};
use rstest::rstest;

use crate::support::shared_server;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hand_written(name: &str) -> ProjectConfig {
    ProjectConfig::load(&root().join("examples").join(name)).unwrap()
}

/// The draft of `dirs` (relative to the crate), into `out`.
async fn init(
    dirs: &[&str],
    roles: (Option<&str>, Option<&str>),
    out: &Path,
) -> rlsgate::Result<Draft> {
    let _server = shared_server().await;
    let hand_format = dirs
        .first()
        .and_then(|d| d.strip_prefix("examples/"))
        .and_then(|d| d.split('/').next())
        .filter(|n| {
            root()
                .join("examples")
                .join(n)
                .join("rlsgate.toml")
                .is_file()
        })
        .and_then(|n| hand_written(n).schema.format);
    let options = InitOptions {
        migrations: dirs.iter().map(|d| root().join(d)).collect(),
        format: hand_format,
        admin: roles.0.map(str::to_string),
        runtime: roles.1.map(str::to_string),
        out: out.join("rlsgate.toml"),
        ..InitOptions::default()
    };
    draft::draft(&Settings::from_env().unwrap(), &options).await
}

async fn check(config: &ProjectConfig, source: &Source) -> Report {
    let options = ProjectOptions {
        cases: 6,
        seed: 3,
        ..ProjectOptions::default()
    };
    rlsgate::campaign::check_project(&Settings::from_env().unwrap(), config, source, &options)
        .await
        .unwrap()
}

fn violated(report: &Report) -> BTreeSet<InvariantId> {
    report
        .invariants
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| r.id)
        .collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

/// What init guesses, as the hand-written file says it.
fn assert_guessed_as_written(drafted: &ProjectConfig, hand: &ProjectConfig, name: &str) {
    let (d, h) = (drafted, hand);
    assert_eq!(d.roles.admin, h.roles.admin, "{name}: admin");
    assert_eq!(d.roles.runtime, h.roles.runtime, "{name}: runtime");
    assert_eq!(set(&d.roles.groups), set(&h.roles.groups), "{name}: groups");
    assert_eq!(
        set(&d.roles.runtime_member_of),
        set(&h.roles.runtime_member_of),
        "{name}: runtime_member_of"
    );
    assert_eq!(d.tenant.setting, h.tenant.setting, "{name}: setting");
    assert_eq!(d.tenant.columns, h.tenant.columns, "{name}: columns");
    assert_eq!(d.tenant.table, h.tenant.table, "{name}: tenant table");
    assert_eq!(d.tenant.key, h.tenant.key, "{name}: tenant key");
    assert_eq!(d.schema.schemas, h.schema.schemas, "{name}: schemas");
    assert_eq!(
        d.dlq.as_ref().map(|x| &x.table),
        h.dlq.as_ref().map(|x| &x.table),
        "{name}: dlq"
    );
}

#[rstest]
#[case::saas("saas", "examples/saas/migrations", (None, None))]
#[case::definer("definer", "examples/definer/migrations", (None, Some("docs_app")))]
#[case::multitenant_columns("multitenant-columns", "examples/multitenant-columns/migrations", (None, None))]
#[case::rpc("rpc", "examples/rpc/migrations", (None, None))]
#[case::references("references", "examples/references/migrations", (None, None))]
#[case::helper_functions("helper-functions", "examples/helper-functions/migrations", (None, None))]
#[case::sqlx_helpdesk("sqlx-helpdesk", "examples/sqlx-helpdesk/migrations", (None, None))]
#[case::flyway_billing("flyway-billing", "examples/flyway-billing/migrations", (None, None))]
#[case::reference(
    "reference",
    "migrations",
    (Some("migration_owner"), Some("app_user"))
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_drafts_its_own_file_and_the_draft_holds(
    #[case] name: &str,
    #[case] dir: &str,
    #[case] roles: (Option<&str>, Option<&str>),
) {
    let out = tempfile::tempdir().unwrap();
    let drafted = init(&[dir], roles, out.path()).await.unwrap();
    let path = out.path().join("rlsgate.toml");
    draft::write(&drafted, &path, false).unwrap();
    let config = ProjectConfig::load(&path).unwrap();
    assert_eq!(
        config.roles, drafted.config.roles,
        "the written file parses the same"
    );
    assert_guessed_as_written(&config, &hand_written(name), name);
    let report = check(&config, &Source::default()).await;
    if name == "references" {
        // The one finding its hand-written file accepts by design ([[accept]]): init cannot
        // know it is by design.
        assert_eq!(
            violated(&report),
            [InvariantId::SideChannels].into(),
            "{name}"
        );
    } else {
        assert_eq!(
            report.verdict,
            Verdict::Pass,
            "{name}: {:?}",
            violated(&report)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_copys_draft_declares_the_privileges_it_holds_and_the_rest_is_still_caught() {
    let out = tempfile::tempdir().unwrap();
    let dirs = ["examples/saas/migrations", "examples/saas/broken/break"];
    let drafted = init(&dirs, (None, None), out.path()).await.unwrap();
    let report = check(&drafted.config, &Source::default()).await;
    // The hand-written file's expected findings, but least-privilege: the draft declares the
    // TRUNCATE and the DLQ's UPDATE and DELETE the breaking file granted.
    assert_eq!(
        violated(&report),
        [
            InvariantId::TenantIsolation,
            InvariantId::NoContextClosed,
            InvariantId::RuntimeLacksDdl,
            InvariantId::RlsCoverage,
            InvariantId::DlqCompleteness,
        ]
        .into()
    );
    let text = &drafted.text;
    assert!(
        text.contains("confirm: the runtime holds this today"),
        "{text}"
    );
    for review in ["TRUNCATE ignores row-level security", "can alter or erase"] {
        assert!(
            text.contains(review),
            "the draft flags it for review: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_is_read_without_a_write() {
    let server = shared_server().await;
    let db = server.fresh_database().await.unwrap();
    let url = db.url(Role::Superuser).await.unwrap();
    let oracle = db.connect(Role::Superuser).await.unwrap();
    // What a write would change: the catalog's objects, owners, grants and policies, and rows.
    let fingerprint = || async {
        let r = oracle
            .query_one(
                "SELECT (SELECT md5(string_agg(format('%s %s %s %s', oid, relname, relowner, relacl),
                                               ',' ORDER BY oid)) FROM pg_class),
                        (SELECT md5(string_agg(format('%s %s', polname, pg_get_expr(polqual, polrelid)),
                                               ',' ORDER BY oid)) FROM pg_policy),
                        (SELECT md5(string_agg(rolname, ',' ORDER BY oid)) FROM pg_roles),
                        (SELECT count(*) FROM public.tenants)
                          + (SELECT count(*) FROM public.llm_api_calls)",
                &[],
            )
            .await
            .unwrap();
        let text = |i| r.get::<_, String>(i);
        (text(0), text(1), text(2), r.get::<_, i64>(3))
    };
    let before = fingerprint().await;
    let out = tempfile::tempdir().unwrap();
    let options = InitOptions {
        database_url: Some(url.clone()),
        runtime: Some("app_user".into()),
        out: out.path().join("rlsgate.toml"),
        ..InitOptions::default()
    };
    let drafted = draft::draft(&Settings::from_env().unwrap(), &options)
        .await
        .unwrap();
    assert_eq!(
        fingerprint().await,
        before,
        "init left the database as found"
    );
    let hand = hand_written("reference");
    let d = &drafted.config;
    assert_eq!(
        d.roles.admin, "migration_owner",
        "the owner of the tenant tables"
    );
    assert_eq!(d.tenant.setting, hand.tenant.setting);
    assert_eq!(d.tenant.columns, hand.tenant.columns);
    assert_eq!(d.tenant.table, hand.tenant.table);
    assert_eq!(d.dlq, hand.dlq);
    assert!(d.schema.migrations.is_empty());
    assert_eq!(
        set(d.privileges.memberships.as_deref().unwrap()),
        set(&hand.roles.runtime_member_of)
    );
    let e = draft::draft(
        &Settings::from_env().unwrap(),
        &InitOptions {
            runtime: Some("nobody_here".into()),
            ..options
        },
    )
    .await
    .unwrap_err();
    assert!(
        e.message().contains("no such role") && e.message().contains("--runtime"),
        "{e}"
    );
    // check --config runs on the draft (on a scratch copy: nobody may be connected).
    drop(oracle);
    let source = Source {
        database_url: Some(url),
        runtime_url: Some(db.url(Role::Runtime).await.unwrap()),
        in_place: false,
    };
    let report = check(&drafted.config, &source).await;
    assert_eq!(report.verdict, Verdict::Pass, "{:?}", violated(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_naming_the_fix() {
    let out = tempfile::tempdir().unwrap();
    // An existing file is never overwritten.
    let existing = out.path().join("rlsgate.toml");
    std::fs::write(&existing, "# mine\n").unwrap();
    let e = init(&["examples/saas/migrations"], (None, None), out.path())
        .await
        .unwrap_err();
    assert!(e.message().contains("--force"), "{e}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "# mine\n");
    let other = tempfile::tempdir().unwrap();
    let e = init(&["examples/no-such-dir"], (None, None), other.path())
        .await
        .unwrap_err();
    assert!(e.message().contains("no such directory"), "{e}");
    // The migrations decide no runtime: two roles receive privileges.
    let e = init(&["migrations"], (None, None), other.path())
        .await
        .unwrap_err();
    assert!(
        e.message().contains("--runtime") && e.message().contains("app_rw"),
        "{e}"
    );
    // Policies that read no setting.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE public.t (id int, owner_name text);
         ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own ON public.t USING (owner_name = current_user);
         GRANT SELECT ON public.t TO init_nosetting_app;",
    )
    .unwrap();
    let options = InitOptions {
        migrations: vec![dir.path().to_path_buf()],
        out: other.path().join("rlsgate.toml"),
        ..InitOptions::default()
    };
    let _server = shared_server().await;
    let e = draft::draft(&Settings::from_env().unwrap(), &options)
        .await
        .unwrap_err();
    assert!(e.message().contains("no tenant setting found"), "{e}");
}

#[test]
fn the_command_prints_its_guesses_writes_the_draft_and_never_overwrites_it() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("rlsgate.toml");
    let dir = root().join("examples/rpc/migrations");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rlsgate"))
            .args(["init", "--migrations"])
            .arg(&dir)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap()
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(
        stderr.contains("tenant setting: app.workspace (read by 1 of 1 policies)")
            && stderr.contains("runtime: notes_app")
            && stderr.contains("next: rlsgate check --config"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\"public.get_note(bigint)\" = [\"EXECUTE\"]"),
        "{text}"
    );
    let second = run();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "left as it was"
    );
}
