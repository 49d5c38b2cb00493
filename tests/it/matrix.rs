//! The access matrix and the pgTAP suite, end to end: `rlsgate check --database-url ...
//! --emit-pgtap DIR` on the saas example's migrations with two tenants' rows writes an
//! access.html a real headless browser parses into the full table (no leak), and a suite that
//! `pg_prove` runs green against that database and red against a copy broken as
//! `examples/saas/broken` breaks it; the broken example's own access.html shows its leaks.
//!
//! The browser (Debian's `chromium`) and `pg_prove` (`libtap-parser-sourcehandler-pgtap-perl`,
//! with `postgresql-15-pgtap` for the extension) are required: a test fails naming the package
//! when one is missing, unless RLSGATE_SKIP_BROWSER=1 or RLSGATE_SKIP_PGTAP=1 says to skip (and
//! the test prints why).
use std::path::{Path, PathBuf};
use std::process::Command;

use rlsgate::{BackendChoice, Database, Role, Server};

const TENANT_A: &str = "00000000-0000-4000-8000-00000000000a";
const TENANT_B: &str = "00000000-0000-4000-8000-00000000000b";

fn example(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path)
}

/// A tool the tests need: its path, or `None` (after saying why) when `skip` is set; panics
/// naming the package to install otherwise.
fn tool(names: &[&str], package: &str, skip: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let why = format!("{} not found: apt-get install {package}", names[0]);
        assert!(
            std::env::var(skip).is_ok_and(|v| v == "1"),
            "{why} (or set {skip}=1 to skip this test)"
        );
        eprintln!("skipping: {why}, and {skip}=1");
    }
    found
}

fn browser() -> Option<PathBuf> {
    tool(
        &["chromium", "chromium-browser", "google-chrome"],
        "chromium",
        "RLSGATE_SKIP_BROWSER",
    )
}

/// The DOM a headless browser builds from `file`.
fn dump_dom(browser: &Path, file: &Path) -> String {
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("the browser runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The matrix's cells in a DOM: (class, relation, context, command, text).
fn cells(dom: &str) -> Vec<[String; 5]> {
    let table = dom
        .split("<table class=\"matrix\">")
        .nth(1)
        .expect("the browser parsed the matrix table");
    let table = table.split("</table>").next().unwrap();
    table
        .split("<td ")
        .skip(1)
        .map(|td| {
            let attr = |name: &str| {
                td.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or_default()
                    .to_string()
            };
            let inner = td.split_once('>').unwrap().1.split("</td>").next().unwrap();
            let text = inner
                .split('<')
                .filter_map(|s| s.split_once('>').map(|(_, t)| t).or(Some(s)))
                .collect::<String>();
            [
                attr("class"),
                attr("data-relation"),
                attr("data-context"),
                attr("data-command"),
                text,
            ]
        })
        .collect()
}

/// The binary with `args`: its exit code and everything it printed.
fn rlsgate(args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = crate::support::rlsgate(args);
    (code, format!("{stdout}{stderr}"))
}

/// The local backend's server: the pgTAP extension installs beside the local server binaries
/// (the container image has none), whatever RLSGATE_BACKEND says.
async fn local_server() -> Server {
    let mut settings = crate::support::settings();
    settings.backend = BackendChoice::Local;
    Server::shared(&settings)
        .await
        .unwrap_or_else(|e| panic!("the pgTAP test needs the local backend: {e}"))
}

/// Create the pgtap extension in `db`, or fail naming the package that ships it.
async fn create_pgtap(db: &Database) {
    let su = db.connect(Role::Superuser).await.unwrap();
    let available = su
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pgtap'",
            &[],
        )
        .await
        .unwrap()
        .is_some();
    assert!(
        available,
        "the pgtap extension is not installed for the local server: apt-get install postgresql-15-pgtap (the server's major)"
    );
    su.batch_execute("CREATE EXTENSION IF NOT EXISTS pgtap")
        .await
        .unwrap();
}

/// A database with the saas example's migrations applied as its owner (and `extra`, the
/// broken example's changes, when given) and rows of two tenants in every table. Returns the
/// database and the runtime's URL.
async fn saas(server: &Server, extra: Option<&str>) -> (Database, String) {
    let owner = server.project_role("saas_owner", true).await.unwrap();
    let app = server.project_role("saas_app", true).await.unwrap();
    let (Some(owner), Some(app)) = (owner, app) else {
        panic!("the saas roles exist without a login rlsgate knows");
    };
    let db = server
        .project_database("saas_owner", "saas_app")
        .await
        .unwrap();
    let as_owner = rlsgate::Server::connect_with(&server.config(&owner, db.name()))
        .await
        .unwrap();
    let mut files: Vec<_> = std::fs::read_dir(example("saas/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        as_owner
            .batch_execute(&std::fs::read_to_string(&file).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    if let Some(sql) = extra {
        as_owner.batch_execute(sql).await.unwrap();
    }
    let su = db.connect(Role::Superuser).await.unwrap();
    for (tenant, slug) in [(TENANT_A, "alpha"), (TENANT_B, "beta")] {
        let project = tenant.replace("4000-8000", "4000-9000");
        su.batch_execute(&format!(
            "INSERT INTO public.tenants (id, name) VALUES ('{tenant}', '{slug}');
             INSERT INTO public.projects (id, tenant_id, slug, name, budget_cents)
                 VALUES ('{project}', '{tenant}', '{slug}', '{slug}', 100);
             INSERT INTO public.tasks (tenant_id, project_id, title, priority)
                 VALUES ('{tenant}', '{project}', 'first', 'high');
             INSERT INTO public.events (tenant_id, project_id, kind)
                 VALUES ('{tenant}', '{project}', 'created');
             INSERT INTO public.failed_jobs (tenant_id, job, error)
                 VALUES ('{tenant}', 'sync', 'timeout');"
        ))
        .await
        .unwrap();
    }
    let runtime = server.url(&app, db.name());
    (db, runtime)
}

/// The saas example's rlsgate.toml without its migrations, so that `--database-url` is the
/// database checked.
fn existing_config(dir: &Path) {
    let toml = std::fs::read_to_string(example("saas/rlsgate.toml"))
        .unwrap()
        .replace("migrations = [\"migrations\"]\n", "");
    std::fs::write(dir.join("rlsgate.toml"), toml).unwrap();
}

/// `pg_prove` of every file in `suite` against `url`: whether it passed, and what it said.
fn pg_prove(pg_prove: &Path, url: &str, suite: &Path) -> (bool, String) {
    let mut files: Vec<_> = std::fs::read_dir(suite)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let out = Command::new(pg_prove)
        .arg("--verbose")
        .arg("--dbname")
        .arg(url)
        .args(&files)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emitted_pgtap_suite_passes_on_the_checked_database_and_fails_on_a_broken_copy() {
    let pg_prove_bin = tool(
        &["pg_prove"],
        "libtap-parser-sourcehandler-pgtap-perl postgresql-15-pgtap",
        "RLSGATE_SKIP_PGTAP",
    );
    let server = local_server().await;
    let (db, runtime) = saas(&server, None).await;
    let url = db.url(Role::Superuser).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    existing_config(work.path());
    let (out, suite) = (work.path().join("out"), work.path().join("pgtap"));
    let (code, said) = rlsgate(&[
        "check",
        "--config",
        work.path().to_str().unwrap(),
        "--database-url",
        &url,
        "--runtime-url",
        &runtime,
        "--cases",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--emit-pgtap",
        suite.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{said}");
    let mut names: Vec<String> = std::fs::read_dir(&suite)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "public.events.sql",
            "public.failed_jobs.sql",
            "public.open_tasks.sql",
            "public.projects.sql",
            "public.tasks.sql",
            "runtime.sql"
        ]
    );
    let projects = std::fs::read_to_string(suite.join("public.projects.sql")).unwrap();
    for needle in [
        "BEGIN;",
        "SELECT plan(",
        "SET LOCAL ROLE \"saas_app\";",
        "set_config(''app.tenant_id'', $1, true)",
        "SELECT * FROM finish();\nROLLBACK;",
    ] {
        assert!(projects.contains(needle), "{needle} missing:\n{projects}");
    }
    assert!(!projects.contains(TENANT_A) && !projects.contains(TENANT_B));

    // The browser parses the matrix: five relations, twelve cells each, no leak.
    if let Some(browser) = browser() {
        let dom = dump_dom(&browser, &out.join("access.html"));
        let cells = cells(&dom);
        assert_eq!(cells.len(), 5 * 12, "{dom}");
        assert!(
            cells
                .iter()
                .all(|[class, ..]| { ["allowed", "blocked", "none"].contains(&class.as_str()) })
        );
        let find = |rel: &str, context: &str, command: &str| {
            cells
                .iter()
                .find(|c| c[1] == rel && c[2] == context && c[3] == command)
                .map(|c| (c[0].clone(), c[4].clone()))
                .unwrap()
        };
        assert_eq!(
            find("public.projects", "other-tenant", "SELECT"),
            ("blocked".into(), "blocked".into())
        );
        assert_eq!(
            find("public.projects", "own-tenant", "SELECT"),
            ("allowed".into(), "allowed".into())
        );
    }

    let Some(pg_prove_bin) = pg_prove_bin else {
        return;
    };
    create_pgtap(&db).await;
    let su = db.connect(Role::Superuser).await.unwrap();
    let before: i64 = su
        .query_one("SELECT count(*) FROM public.projects", &[])
        .await
        .unwrap()
        .get(0);
    let (passed, said) = pg_prove(&pg_prove_bin, &url, &suite);
    assert!(passed, "{said}");
    assert!(said.contains("All tests successful"), "{said}");
    assert!(
        !said.contains("skip"),
        "two tenants have rows: nothing is skipped\n{said}"
    );
    let after: i64 = su
        .query_one("SELECT count(*) FROM public.projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after, "the suite rolls back");

    // The same suite against a copy broken as examples/saas/broken breaks it: red.
    let broken = std::fs::read_to_string(example("saas/broken/break/0100_break.sql")).unwrap();
    let (broken_db, _) = saas(&server, Some(&broken)).await;
    let broken_url = broken_db.url(Role::Superuser).await.unwrap();
    create_pgtap(&broken_db).await;
    let (passed, said) = pg_prove(&pg_prove_bin, &broken_url, &suite);
    assert!(!passed, "{said}");
    for failing in [
        "in tenant A's context, public.projects shows no other tenant's rows",
        "with no tenant context, public.projects shows no tenant's rows",
    ] {
        assert!(
            said.lines()
                .any(|l| l.contains("not ok") && l.contains(failing)),
            "{failing} did not fail:\n{said}"
        );
    }
}

#[test]
fn the_broken_example_shows_its_leaks_in_access_html() {
    let Some(browser) = browser() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let (code, said) = rlsgate(&[
        "check",
        "--config",
        example("saas/broken").to_str().unwrap(),
        "--cases",
        "4",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{said}");
    let dom = dump_dom(&browser, &out.path().join("access.html"));
    let cells = cells(&dom);
    assert_eq!(cells.len(), 5 * 12, "{dom}");
    let leaks: Vec<String> = cells
        .iter()
        .filter(|c| c[0] == "leak")
        .map(|c| format!("{} {} {}", c[1], c[2], c[3]))
        .collect();
    for leak in [
        "public.projects other-tenant SELECT",
        "public.projects no-context SELECT",
        "public.failed_jobs own-tenant UPDATE",
        "public.failed_jobs own-tenant DELETE",
    ] {
        assert!(
            leaks.iter().any(|l| l == leak),
            "{leak} not a leak: {leaks:?}"
        );
    }
    // Each leak cell links to its detail, which the browser parsed as a list item.
    assert!(dom.contains("<a href=\"#leak-1\">leak</a>"), "{dom}");
    assert!(dom.contains("<li id=\"leak-1\">"), "{dom}");
    assert!(!dom.contains("<script"));
}
