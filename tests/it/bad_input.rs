//! Every bad input gets a clear error that names the fix.
use rlsgate::{BackendChoice, Server, Settings};
use rstest::rstest;

fn settings(backend: BackendChoice) -> Settings {
    Settings {
        backend,
        ..Settings::from_env().unwrap()
    }
}

async fn start_error(settings: Settings) -> rlsgate::Error {
    Server::start(&settings)
        .await
        .expect_err("the server must not start")
}

#[tokio::test]
async fn unreachable_docker_with_the_container_backend_names_the_fix() {
    let mut s = settings(BackendChoice::Container);
    s.docker_host = Some("unix:///nonexistent/docker.sock".into());
    let err = start_error(s).await;
    assert!(err.is_provisioning());
    let text = err.to_string();
    assert!(
        text.starts_with("docker is not reachable at unix:///nonexistent/docker.sock"),
        "{text}"
    );
    assert!(
        text.contains("start the daemon (dockerd) or set RLSGATE_BACKEND=local"),
        "{text}"
    );
}

#[tokio::test]
async fn auto_falls_back_to_local_when_docker_is_unreachable_and_says_why() {
    let mut s = settings(BackendChoice::Auto);
    s.docker_host = Some("unix:///nonexistent/docker.sock".into());
    match rlsgate::provision::select(&s).await {
        Ok(sel) => {
            assert_eq!(sel.backend, rlsgate::Backend::Local);
            assert!(
                sel.reason
                    .starts_with("container unavailable (docker is not reachable"),
                "{}",
                sel.reason
            );
        }
        Err(e) => assert!(
            e.to_string()
                .starts_with("no backend can run: container: docker is not reachable"),
            "{e}"
        ),
    }
}

#[tokio::test]
async fn missing_server_binaries_for_local_name_the_fix() {
    let mut s = settings(BackendChoice::Local);
    s.bindir = Some("/nonexistent/pg/bin".into());
    let err = start_error(s).await;
    assert!(err.is_provisioning());
    assert_eq!(
        err.to_string(),
        "RLSGATE_PG_BINDIR=/nonexistent/pg/bin holds no initdb and postgres; point it at the directory \
         `pg_config --bindir` prints"
    );
}

#[rstest]
#[case::malformed(
    "postgres://u:hunter2@host:notaport/db",
    "RLSGATE_DATABASE_URL is not a valid PostgreSQL URL"
)]
#[case::unreachable(
    "postgres://postgres:hunter2@127.0.0.1:1/postgres",
    "cannot connect to the external server at 127.0.0.1:1"
)]
#[tokio::test]
async fn a_bad_database_url_names_the_problem_without_the_password(
    #[case] url: &str,
    #[case] expected: &str,
) {
    let mut s = settings(BackendChoice::External);
    s.database_url = Some(url.into());
    let text = start_error(s).await.to_string();
    assert!(text.starts_with(expected), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password leaked into: {text}"
    );
}

#[tokio::test]
async fn the_external_backend_without_a_url_names_the_variable() {
    let mut s = settings(BackendChoice::External);
    s.database_url = None;
    let text = start_error(s).await.to_string();
    assert!(
        text.contains("set RLSGATE_DATABASE_URL or pass --database-url"),
        "{text}"
    );
}

#[test]
fn an_unknown_backend_name_lists_the_choices() {
    let err = "podman".parse::<BackendChoice>().unwrap_err();
    assert!(err.is_config());
    assert_eq!(
        err.to_string(),
        "unknown backend 'podman'; use one of auto, container, local, external"
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_found_names_the_build_script() {
    let mut s = settings(BackendChoice::Container);
    s.image = "rlsgate/does-not-exist:0".parse().unwrap();
    let err = start_error(s).await;
    let text = err.to_string();
    if text.starts_with("docker is not reachable") {
        eprintln!("skipping: {text}");
        return;
    }
    assert!(
        text.starts_with("image rlsgate/does-not-exist:0 is not present and cannot be pulled"),
        "{text}"
    );
    assert!(text.contains("scripts/build-postgres-image.sh"), "{text}");
}
