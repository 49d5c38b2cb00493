//! Each backend starts, serves a query as app_user over a real login, and leaves nothing behind.
use std::path::PathBuf;

use rlsgate::provision::Backend;
use rlsgate::{BackendChoice, Role, Server, Settings};

use crate::support::{is, selected, shared_server};

async fn serves_app_user(server: &Server) {
    let db = server.fresh_database().await.expect("a fresh database");
    let client = db.connect(Role::Runtime).await.expect("app_user logs in");
    let row = client
        .query_one("SELECT current_user::text, session_user::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("app_user".into(), "app_user".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_serves_app_user_and_removes_its_directory() {
    let Some((settings, selection)) = selected(BackendChoice::Local).await else {
        return;
    };
    let server = Server::start_selected(&settings, selection).await.unwrap();
    let location = server.location();
    serves_app_user(&server).await;
    let dir = PathBuf::from(location.trim_start_matches("local server in "));
    assert!(dir.exists(), "{location}");
    drop(server);
    assert!(
        !dir.exists(),
        "the local server's directory {} is left behind",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_backend_serves_app_user_on_loopback_and_removes_its_container() {
    let Some((settings, selection)) = selected(BackendChoice::Container).await else {
        return;
    };
    assert!(is(&selection, Backend::Container));
    let server = Server::start_selected(&settings, selection).await.unwrap();
    assert_eq!(server.endpoint().host, "127.0.0.1");
    serves_app_user(&server).await;
    let id = server
        .location()
        .trim_start_matches("container ")
        .to_string();
    let published = std::process::Command::new("docker")
        .args(["port", &id, "5432"])
        .output()
        .unwrap();
    let published = String::from_utf8_lossy(&published.stdout);
    assert!(
        published.lines().all(|l| l.starts_with("127.0.0.1:")),
        "the port is published beyond loopback: {published}"
    );
    drop(server);
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("id={id}")])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "container {id} is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_backend_creates_its_own_database_and_roles_and_removes_them() {
    // The "existing server" is a local one started for the purpose, reached only by URL.
    let Some((host_settings, selection)) = selected(BackendChoice::Local).await else {
        return;
    };
    let host = Server::start_selected(&host_settings, selection)
        .await
        .unwrap();
    let url = host.url(host.superuser_login(), "postgres");
    let settings = Settings {
        backend: BackendChoice::External,
        database_url: Some(url),
        ..host_settings.clone()
    };
    let selection = rlsgate::provision::select(&settings).await.unwrap();
    let external = Server::start_selected(&settings, selection).await.unwrap();
    serves_app_user(&external).await;
    drop(external);
    let su = host.superuser().await.unwrap();
    let leftovers: i64 = su
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE 'rlsgate\\_%')
                  + (SELECT count(*) FROM pg_roles WHERE rolname IN ('app_user','app_rw','app_ro','migration_owner'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        leftovers, 0,
        "the external backend left databases or roles behind"
    );
}

/// A committed row survives an immediate stop and restart; old connections do not, and new ones
/// find the server where it now answers (a container's host port may change).
async fn survives_a_crash_and_restart(backend: BackendChoice) {
    let Some((settings, selection)) = selected(backend).await else {
        return;
    };
    let server = Server::start_selected(&settings, selection).await.unwrap();
    let db = server.fresh_database().await.unwrap();
    let owner = db.connect(Role::MigrationOwner).await.unwrap();
    owner
        .batch_execute("INSERT INTO tenants (name) VALUES ('before the crash')")
        .await
        .unwrap();
    server.crash_and_restart().await.unwrap();
    assert!(
        owner.simple_query("SELECT 1").await.is_err(),
        "the old connection survived a crash"
    );
    let owner = db.connect(Role::MigrationOwner).await.unwrap();
    let n: i64 = owner
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "a committed row was lost in the crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_survives_a_crash_and_restart() {
    survives_a_crash_and_restart(BackendChoice::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_survives_a_crash_and_restart_and_the_port_is_read_again() {
    survives_a_crash_and_restart(BackendChoice::Container).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_server_is_one_server_until_its_last_handle_drops() {
    let a = crate::support::shared_server().await;
    let b = crate::support::shared_server().await;
    assert_eq!(a.endpoint(), b.endpoint());
}

/// A pid no process can have (above the kernel's pid_max), standing in for a killed run.
const DEAD_PID: &str = "2147483646";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_server_directory_left_by_a_killed_run_is_swept_at_the_next_start() {
    let Some((settings, selection)) = selected(BackendChoice::Local).await else {
        return;
    };
    let leftover = std::env::temp_dir().join(format!("rlsgate-pg-{DEAD_PID}-leftover"));
    std::fs::create_dir_all(leftover.join("data")).unwrap();
    std::fs::write(leftover.join("rlsgate-owner"), DEAD_PID).unwrap();
    let _server = Server::start_selected(&settings, selection).await.unwrap();
    assert!(
        !leftover.exists(),
        "the leftover {} was not swept",
        leftover.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_left_by_a_killed_run_is_swept_at_the_next_start() {
    let Some((settings, selection)) = selected(BackendChoice::Container).await else {
        return;
    };
    let created = std::process::Command::new("docker")
        .args(["create", "--label", "rlsgate.managed=true", "--label"])
        .arg(format!("rlsgate.pid={DEAD_PID}"))
        .arg(settings.image.to_string())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let _server = Server::start_selected(&settings, selection).await.unwrap();
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "the leftover container {id} was not swept"
    );
}

/// The role passwords of every role in `names`, as pg_authid stores them.
async fn verifiers(host: &Server, names: &[&str]) -> Vec<(String, Option<String>)> {
    let su = host.superuser().await.unwrap();
    su.query(
        "SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname = ANY($1) ORDER BY 1",
        &[&names],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_a_server_where_setup_ran_leaves_its_roles_as_they_were() {
    let Some((host_settings, selection)) = selected(BackendChoice::Local).await else {
        return;
    };
    let host = Server::start_selected(&host_settings, selection)
        .await
        .unwrap();
    let names = ["app_user", "migration_owner", "app_rw", "app_ro"];
    let setup_url = host.url(host.superuser_login(), "llm_audit");
    rlsgate::setup::setup(&setup_url).await.unwrap();
    let before = verifiers(&host, &names).await;
    assert_eq!(before.len(), 4, "setup made the four roles");

    let settings = Settings {
        backend: BackendChoice::External,
        database_url: Some(host.url(host.superuser_login(), "postgres")),
        ..host_settings.clone()
    };
    let selection = rlsgate::provision::select(&settings).await.unwrap();
    let external = Server::start_selected(&settings, selection).await.unwrap();
    serves_app_user(&external).await;
    assert_ne!(
        verifiers(&host, &names).await,
        before,
        "the run logs in with passwords of its own"
    );
    drop(external);
    assert_eq!(
        verifiers(&host, &names).await,
        before,
        "the run dropped or changed a role setup made"
    );

    // clean --database-url: a database a run left goes, the user's databases and setup's
    // roles stay.
    let su = host.superuser().await.unwrap();
    su.batch_execute("CREATE DATABASE rlsgate_0badcafe_db3")
        .await
        .unwrap();
    su.batch_execute("CREATE DATABASE rlsgate_demo")
        .await
        .unwrap();
    let cleaned = rlsgate::database::clean_external(&host.url(host.superuser_login(), "postgres"))
        .await
        .unwrap();
    assert_eq!(cleaned.databases, vec!["rlsgate_0badcafe_db3".to_string()]);
    assert!(cleaned.roles.is_empty(), "{cleaned}");
    let left: Vec<String> = su
        .query(
            "SELECT datname::text FROM pg_database WHERE datname IN ('rlsgate_demo', 'llm_audit', 'rlsgate_0badcafe_db3') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["llm_audit", "rlsgate_demo"]);
    assert_eq!(verifiers(&host, &names).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_passwords_reach_the_server_as_scram_verifiers() {
    // A plaintext password would be stored as the session's password_encryption says (md5
    // here); a verifier sent by the client is stored as it is.
    let server = shared_server().await;
    let su = server.superuser().await.unwrap();
    su.batch_execute("SET password_encryption = 'md5'")
        .await
        .unwrap();
    rlsgate::roles::ensure(
        &su,
        "rlsgate_scram_probe",
        "LOGIN NOSUPERUSER",
        Some("not sent in the clear"),
        rlsgate::roles::Existing::TakeOver,
    )
    .await
    .unwrap();
    let stored: String = su
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'rlsgate_scram_probe'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    su.batch_execute("DROP ROLE rlsgate_scram_probe")
        .await
        .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
}
