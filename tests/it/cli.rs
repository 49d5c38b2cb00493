//! The binary: `setup` stands the reference system up idempotently, `run` runs a campaign,
//! prints a verdict table and writes report.json, and bad arguments exit 2 with a message.
use std::process::Command;

use crate::support::rlsgate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_idempotent_and_says_so() {
    // A server of its own: setup creates the cluster-wide roles for good.
    let settings = rlsgate::Settings::from_env().unwrap();
    let server = rlsgate::Server::start(&settings).await.unwrap();
    let url = server.url(server.superuser_login(), "llm_audit");
    let url_arg = url.clone();
    let first =
        tokio::task::spawn_blocking(move || rlsgate(&["setup", "--database-url", &url_arg]))
            .await
            .unwrap();
    assert_eq!(first.0, 0, "{first:?}");
    assert!(
        first
            .1
            .contains("created database llm_audit owned by migration_owner"),
        "{}",
        first.1
    );
    assert!(first.1.contains("applied 5 migration(s)"), "{}", first.1);
    let url_arg = url.clone();
    let second =
        tokio::task::spawn_blocking(move || rlsgate(&["setup", "--database-url", &url_arg]))
            .await
            .unwrap();
    assert_eq!(second.0, 0, "{second:?}");
    assert!(second.1.contains("nothing to do"), "{}", second.1);
    let su = server.superuser_on("llm_audit").await.unwrap();
    let applied_by: Vec<String> = su
        .query("SELECT DISTINCT applied_by FROM rlsgate_migrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(applied_by, ["migration_owner"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_migrates_an_existing_database_the_superuser_owns_and_a_rerun_changes_nothing() {
    // A server of its own: setup creates the cluster-wide roles for good.
    let settings = rlsgate::Settings::from_env().unwrap();
    let server = rlsgate::Server::start(&settings).await.unwrap();
    let superuser = server.superuser_login().user.clone();
    server
        .superuser_on("postgres")
        .await
        .unwrap()
        .batch_execute("CREATE DATABASE existing_db")
        .await
        .unwrap();
    let url = server.url(server.superuser_login(), "existing_db");
    let first = rlsgate::setup::setup(&url).await.unwrap();
    let text = first.to_string();
    assert_eq!(first.created_database, None, "{text}");
    assert_eq!(first.migrations.applied.len(), 5, "{text}");
    let su = server.superuser_on("existing_db").await.unwrap();
    let version: i32 = su
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if version >= 15 {
        // PUBLIC has no CREATE on public since 15: setup granted it to migration_owner alone.
        let granted = first.granted_on_public.as_ref().expect("a grant on public");
        assert_eq!(granted.privileges, ["CREATE"], "{text}");
        assert!(
            text.contains(&format!(
                "granted CREATE ON SCHEMA public TO migration_owner in database existing_db, \
                 which {superuser} owns"
            )),
            "{text}"
        );
    }
    let (owner, applied_by): (String, Vec<String>) = (
        su.query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'existing_db'",
            &[],
        )
        .await
        .unwrap()
        .get(0),
        su.query(
            "SELECT DISTINCT applied_by FROM public.rlsgate_migrations",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect(),
    );
    assert_eq!(owner, superuser, "setup changed the database's owner");
    assert_eq!(applied_by, ["migration_owner"]);
    let second = rlsgate::setup::setup(&url).await.unwrap();
    assert!(!second.changed(), "{second}");
    assert_eq!(second.granted_on_public, None, "{second}");
    assert!(second.to_string().contains("nothing to do"), "{second}");
}

#[test]
fn setup_refuses_the_maintenance_database() {
    let (code, _, err) = rlsgate(&[
        "setup",
        "--database-url",
        "postgres://postgres:x@127.0.0.1:1/postgres",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("must name the database to create"), "{err}");
}

#[test]
fn an_unknown_backend_exits_2_with_the_choices() {
    let (code, _, err) = rlsgate(&["run", "--backend", "podman"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown backend 'podman'; use one of auto, container, local, external"),
        "{err}"
    );
}

#[test]
fn run_prints_progress_a_verdict_table_and_writes_report_json() {
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().to_str().unwrap();
    let (code, out, err) = rlsgate(&["run", "--cases", "4", "--seed", "3", "--out", dir]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("rlsgate: backend "), "{err}");
    assert!(
        err.contains("rlsgate: case 4/4"),
        "progress per case: {err}"
    );
    assert!(out.contains("tasks/s") && out.contains("cases/s"), "{out}");
    assert!(
        out.contains("reproduce: rlsgate run --cases 4 --seed 3"),
        "{out}"
    );
    for file in ["report.json", "evidence.md", "junit.xml"] {
        assert!(out_dir.path().join(file).exists(), "{file} written");
    }
    assert!(out.ends_with("verdict: pass\n"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("report.json")).unwrap())
            .unwrap();
    for field in [
        "verdict",
        "backend",
        "server_version",
        "seed",
        "cases",
        "invariants",
        "faults",
        "tasks",
    ] {
        assert!(report.get(field).is_some(), "report.json lacks {field}");
    }
    assert_eq!(report["verdict"], "pass");
    assert!(
        report.get("problems").is_none(),
        "a passing run has no problems"
    );
    assert_eq!(report["seed"], 3);
    let ids: Vec<&str> = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let every: Vec<&str> = rlsgate::invariants::InvariantId::ALL
        .iter()
        .map(|i| i.id())
        .collect();
    assert_eq!(ids, every);
    for key in [
        "total",
        "committed",
        "replayed",
        "failed_recorded",
        "failed_unrecorded",
        "unknown",
    ] {
        assert!(report["tasks"].get(key).is_some(), "tasks lacks {key}");
    }
}

#[test]
fn run_with_a_broken_variant_exits_1_and_prints_the_counterexample() {
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().to_str().unwrap();
    let (code, out, err) = rlsgate(&[
        "run",
        "--cases",
        "4",
        "--variant",
        "session-context",
        "--out",
        dir,
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("context-hygiene      violated"), "{out}");
    // One root cause, listed before the invariant table.
    let problems = out.find("problems (1, most severe first").expect(&out);
    assert!(
        problems < out.find("context-hygiene      violated").unwrap(),
        "{out}"
    );
    assert!(
        out.contains("P1 the pooled connections: a pooled connection carries a tenant's context"),
        "{out}"
    );
    assert!(out.contains("minimal counterexample:"), "{out}");
    assert!(out.ends_with("verdict: fail\n"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("report.json")).unwrap())
            .unwrap();
    assert!(report["counterexample"]["transcript"].is_string());
    assert_eq!(
        report["problems"][0]["id"],
        "context the pooled connections"
    );
    assert_eq!(report["problems"][0]["effect"], "carried-context");
}

#[test]
fn an_unknown_variant_exits_2_and_lists_the_names() {
    let (code, _, err) = rlsgate(&["run", "--variant", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown variant 'nope'"), "{err}");
    assert!(err.contains("session-context"), "{err}");
}

#[test]
fn check_with_a_bad_runtime_url_exits_2_and_says_how_to_write_it() {
    let (code, _, err) = rlsgate(&[
        "check",
        "--database-url",
        "postgres://postgres:x@127.0.0.1:1/db",
        "--runtime-url",
        "not a url",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--runtime-url is not a valid PostgreSQL URL"),
        "{err}"
    );
    assert!(
        err.contains("postgres://app_user:PASSWORD@HOST:PORT/DB"),
        "{err}"
    );
}

#[test]
fn variants_lists_every_broken_variant_name_first() {
    let (code, out, _) = rlsgate(&["variants"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let expected: Vec<&str> = rlsgate::system::Variant::ALL
        .iter()
        .map(|v| v.name())
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn check_needs_a_config_or_a_database_url() {
    let (code, _, err) = rlsgate(&["check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--config rlsgate.toml"), "{err}");
}

#[test]
fn check_with_a_bad_config_exits_2_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rlsgate.toml"),
        "[roles]\nadmin = \"o\"\nruntime = \"a\"\n[tenant]\ncolumns = [\"tenant_id\"]\n",
    )
    .unwrap();
    let (code, _, err) = rlsgate(&["check", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing field `setting`"), "{err}");
    assert!(err.contains("docs/project.md"), "{err}");
}

#[test]
fn check_config_of_a_broken_example_exits_1_with_evidence_and_a_reproduction() {
    let out = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/saas/broken");
    let (code, stdout, err) = rlsgate(&[
        "check",
        "--config",
        config,
        "--cases",
        "8",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{err}");
    assert!(stdout.contains("minimal reproduction:"), "{stdout}");
    assert!(stdout.contains("verdict: fail"), "{stdout}");
    let evidence = std::fs::read_to_string(out.path().join("evidence.md")).unwrap();
    assert!(evidence.contains("the project described by its rlsgate.toml"));
    assert!(evidence.contains("## 5. Minimal reproduction"));
}

#[test]
fn a_signal_stops_a_run_removes_its_server_and_reports_interrupted() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    let out = tempfile::tempdir().unwrap();
    // A temporary directory of the run's own, so that what it leaves there can be counted; the
    // unprivileged server user must traverse it.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlsgate"))
        .args(["run", "--backend", "local", "--cases", "100000", "--out"])
        .arg(out.path())
        .env("TMPDIR", tmp.path())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the campaign has run cases, reading stderr as it comes.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap_or(0) > 0 {
        seen.push_str(&line);
        if line.contains("case 10/") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("case 10/"), "the run never got going: {seen}");
    let running = std::fs::read_dir(tmp.path()).unwrap().count();
    assert!(running > 0, "the local server lives in the run's TMPDIR");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let signalled = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "stopping took {:?}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    let report = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["verdict"], "interrupted", "{seen}{rest}");
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\""), "{junit}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the run left {left:?}: {seen}{rest}");
}
