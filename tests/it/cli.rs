//! The binary: `setup` stands the reference system up idempotently, `run` prints a verdict, and
//! bad arguments exit 2 with a message.
use std::process::Command;

fn rlsgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rlsgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
fn run_provisions_migrates_and_prints_a_passing_verdict() {
    let (code, out, err) = rlsgate(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("rlsgate: backend "), "{err}");
    assert!(out.ends_with("verdict: pass\n"), "{out}");
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
