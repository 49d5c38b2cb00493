//! This crate's row-level security, checked by rlsgate from its own `cargo test`: the schema of
//! `rlsgate.toml` (migrations applied into a fresh database on the backend the environment
//! selects), under `#[tokio::test]`, a plain `#[test]` and rstest, with the reviewed evidence
//! snapshotted so a changed privilege or policy shows up in the pull request.
use std::path::PathBuf;

use rlsgate::Project;
use rlsgate::report::Verdict;

fn config(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[tokio::test]
async fn invoices_stay_in_their_organisation() {
    let report = Project::from_config(config("rlsgate.toml"))
        .unwrap()
        .cases(6)
        .check()
        .await
        .unwrap();
    report.assert_holds();
    insta::assert_snapshot!("billing-evidence", rlsgate::evidence::review(&report));
}

#[test]
fn a_plain_test_checks_too() {
    let report = Project::from_config(config("rlsgate.toml"))
        .unwrap()
        .cases(2)
        .check_blocking()
        .unwrap();
    report.assert_holds();
}

#[rstest::rstest]
#[case::seed_1(1)]
#[case::seed_2(2)]
#[tokio::test]
async fn any_seed_holds(#[case] seed: u64) {
    Project::from_config(config("rlsgate.toml"))
        .unwrap()
        .cases(2)
        .seed(seed)
        .check()
        .await
        .unwrap()
        .assert_holds();
}

#[tokio::test]
async fn the_broken_copy_fails_with_its_problems_and_how_to_reproduce_them() {
    let report = Project::from_config(config("broken/rlsgate.toml"))
        .unwrap()
        .cases(4)
        .check()
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Fail);
    let message = report.failure_message();
    for expected in ["write-check", "billing.invoices", "reproduce"] {
        assert!(
            message.contains(expected),
            "{expected} missing in:\n{message}"
        );
    }
    let panic = std::panic::catch_unwind(|| report.assert_holds()).unwrap_err();
    assert_eq!(panic.downcast_ref::<String>(), Some(&message));
}
