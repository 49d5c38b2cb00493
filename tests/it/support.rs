//! Fixtures shared by the integration tests.
use rlsgate::provision::{Backend, Selection};
use rlsgate::{BackendChoice, Server, Settings};
use rstest::fixture;

/// The settings of the environment.
#[fixture]
pub fn settings() -> Settings {
    Settings::from_env().expect("valid RLSGATE_* settings")
}

/// The server shared by every test of this process (stopped when the last test drops it).
pub async fn shared_server() -> Server {
    Server::shared(&settings())
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"))
}

/// `backend` with the environment's other settings, or `None` (after saying why) when it cannot
/// run here and the environment does not require it.
pub async fn selected(backend: BackendChoice) -> Option<(Settings, Selection)> {
    let mut s = settings();
    s.backend = backend;
    if backend == BackendChoice::External && s.database_url.is_none() {
        let why = "RLSGATE_DATABASE_URL is not set";
        assert!(!s.requires(backend), "{backend} backend required but {why}");
        eprintln!("skipping the {backend} backend: {why}");
        return None;
    }
    match rlsgate::provision::select(&s).await {
        Ok(selection) => Some((s, selection)),
        Err(e) if s.requires(backend) => panic!("{backend} backend required but unusable: {e}"),
        Err(e) => {
            eprintln!("skipping the {backend} backend: {e}");
            None
        }
    }
}

/// True when `backend` is the one the selection resolved to.
pub fn is(selection: &Selection, backend: Backend) -> bool {
    selection.backend == backend
}

/// The verdict and every violation and inconclusive check of `report`, one per line: for
/// assertion messages.
pub fn findings(report: &rlsgate::report::Report) -> String {
    let mut out = format!("verdict {}\n", report.verdict.as_str());
    for r in &report.invariants {
        for o in r.violations.iter().chain(&r.inconclusive) {
            out.push_str(&format!("  {o}\n"));
        }
    }
    out
}
