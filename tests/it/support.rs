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

/// The binary with `args`: its exit code (-1 when a signal ended it), stdout and stderr.
pub fn rlsgate(args: &[&str]) -> (i32, String, String) {
    output(std::process::Command::new(env!("CARGO_BIN_EXE_rlsgate")).args(args))
}

/// [`rlsgate`] with the environment's URLs unset, so only the flags name databases.
pub fn rlsgate_without_urls(args: &[&str]) -> (i32, String, String) {
    output(
        std::process::Command::new(env!("CARGO_BIN_EXE_rlsgate"))
            .args(args)
            .env_remove("RLSGATE_DATABASE_URL")
            .env_remove("RLSGATE_RUNTIME_URL"),
    )
}

fn output(command: &mut std::process::Command) -> (i32, String, String) {
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A campaign of 8 cases against the built-in system whose counts and evidence are
/// reproducible (one delivery at a time: with more, the interleaving is real and counts may
/// differ from run to run; seed 11), with `variants` switched on, as `shard` (all cases: `None`).
pub async fn reproducible_campaign(
    variants: &[rlsgate::system::Variant],
    shard: Option<rlsgate::report::Shard>,
) -> rlsgate::report::Report {
    let options = rlsgate::campaign::CampaignOptions {
        cases: 8,
        seed: 11,
        variants: variants.iter().copied().collect(),
        shape: rlsgate::workload::WorkloadShape {
            max_concurrency: 1,
            ..rlsgate::workload::WorkloadShape::default()
        },
        shard,
        ..rlsgate::campaign::CampaignOptions::default()
    };
    rlsgate::campaign::run(&settings(), &options).await.unwrap()
}
