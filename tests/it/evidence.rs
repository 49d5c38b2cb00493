//! Evidence: every rendered artifact of the reference system and of three broken variants is
//! snapshotted (under `snapshots/`), so a change in what rlsgate sees is a reviewable diff; the
//! Markdown and JUnit carry the counterexample; the same seed renders the same evidence; and
//! `rlsgate evidence --from` reproduces the files.
use std::process::Command;

use rlsgate::evidence::{self, Artifacts};
use rlsgate::report::Report;
use rlsgate::system::Variant;

/// A campaign whose evidence is reproducible byte for byte (`support::reproducible_campaign`).
async fn campaign(variants: &[Variant]) -> Report {
    crate::support::reproducible_campaign(variants, None).await
}

/// Snapshot every artifact of `report` as `<name>-<artifact>`. For a broken variant the
/// numbers of checks and violations depend on how shrinking went (a race in the broken system
/// can make one shrinking step pass or fail), so they are masked; what was violated, how, and
/// the minimal counterexample are not. The reference's numbers are exact.
fn snapshot_all(name: &str, report: &Report) {
    let a = Artifacts::render(report);
    let mut settings = insta::Settings::clone_current();
    if name != "reference" {
        for (pattern, with) in [
            (
                r"(holds|violated|inconclusive)( +)\d+ +\d+ +\d+",
                "$1$2[n] [n] [n]",
            ),
            (
                r"\d+ checks, \d+ violated, \d+ inconclusive",
                "[n] checks, [n] violated, [n] inconclusive",
            ),
            (r"\d+ check\(s\)", "[n] check(s)"),
            (r#"(assertions|tests|failures)="\d+""#, r#"$1="[n]""#),
            (
                r"\d+ asked, \d+ run, \d+ while shrinking",
                "[n] asked, [n] run, [n] while shrinking",
            ),
            (r"\| tasks \|[^\n]*", "| tasks | [counts] |"),
            (r"(?m)^([a-z-]+ +)\d+(  .*)$", "$1[n]$2"),
            // problems: how many findings each groups, how many checks could not decide
            (r"\d+ findings? in all", "[n] findings in all"),
            (r"; \d+ findings?\]", "; [n] findings]"),
            (r"(?m)^(undecided \([^)]*\): ).*$", "$1[counts]"),
            // fault coverage: `exactly-once (3)`
            (
                r"\b([a-z]+-[a-z-]+|atomicity|durability) \(\d+\)",
                "$1 ([n])",
            ),
        ] {
            settings.add_filter(pattern, with);
        }
    }
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    // The backend and the server's major version depend on the machine, not on rlsgate.
    settings.add_filter(r"backend \| \w+", "backend | [backend]");
    settings.add_filter(r"PostgreSQL \d+\.\[minor\]", "PostgreSQL [version]");
    settings.bind(|| {
        for (artifact, text) in [
            ("identity", &a.identity),
            ("privileges", &a.privileges),
            ("policies", &a.policies),
            ("verdicts", &a.verdicts),
            ("faults", &a.faults),
            ("counterexample", &a.counterexample),
            ("evidence.md", &a.markdown),
            ("junit.xml", &a.junit),
        ] {
            insta::assert_snapshot!(format!("{name}-{artifact}"), text);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_systems_evidence() {
    snapshot_all("reference", &campaign(&[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_context_variants_evidence() {
    snapshot_all(
        "session-context",
        &campaign(&[Variant::SessionContext]).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_with_check_true_variants_evidence() {
    snapshot_all(
        "with-check-true",
        &campaign(&[Variant::WithCheckTrue]).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_missing_grant_variants_evidence() {
    snapshot_all("missing-grant", &campaign(&[Variant::MissingGrant]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_and_junit_carry_the_counterexample_of_a_broken_variant() {
    let report = campaign(&[Variant::SessionContext]).await;
    let a = Artifacts::render(&report);
    let c = report.counterexample.as_ref().expect("a counterexample");
    let first = c
        .transcript
        .lines()
        .find(|l| l.contains("message 0"))
        .unwrap();
    let first = evidence::redact(first);
    assert!(a.markdown.contains("## 5. Counterexample"));
    assert!(a.markdown.contains(&first), "{}", a.markdown);
    assert!(
        a.markdown
            .contains("rlsgate run --cases 8 --seed 11 --variant session-context")
    );
    assert!(a.junit.contains(r#"name="context-hygiene""#));
    assert!(a.junit.contains(r#"<failure type="violated""#));
    assert!(a.junit.contains("minimal counterexample:"), "{}", a.junit);
    assert!(
        a.junit.contains(&first.replace('\'', "&apos;")),
        "{}",
        a.junit
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_renders_identical_evidence() {
    let (a, b) = (campaign(&[]).await, campaign(&[]).await);
    assert_eq!(Artifacts::render(&a), Artifacts::render(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_from_a_saved_report_reproduces_the_files() {
    let report = campaign(&[Variant::WithCheckTrue]).await;
    let dir = tempfile::tempdir().unwrap();
    evidence::write(&report, dir.path()).unwrap();
    let again = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rlsgate"))
        .args(["evidence", "--from"])
        .arg(dir.path().join("report.json"))
        .arg("--out")
        .arg(again.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in evidence::FILES {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(file)).unwrap(),
            std::fs::read_to_string(again.path().join(file)).unwrap(),
            "{file} differs"
        );
    }
}

#[test]
fn evidence_from_a_file_that_is_not_a_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    std::fs::write(&path, "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rlsgate"))
        .args(["evidence", "--from"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a report.json written by this version of rlsgate"),
        "{err}"
    );
}
