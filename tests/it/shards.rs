//! Sharded deep runs: shards 1/2 and 2/2 of a campaign, merged, equal the unsharded run's
//! cases, tasks, faults and verdict, and its per-invariant checks (those a case's probes make
//! on the rows earlier cases left aside); a broken variant merged is violated by the same
//! invariant; `rlsgate merge` refuses reports that do not belong together; bad `--shard` values
//! get clear errors before anything starts.
use std::path::Path;

use rlsgate::Settings;
use rlsgate::campaign::{self, ProjectOptions, Source};
use rlsgate::invariants::InvariantId;
use rlsgate::report::merge::Part;
use rlsgate::report::{Report, Shard, Verdict, merge};
use rlsgate::system::Variant;

use crate::support::{reproducible_campaign, rlsgate, shared_server};

/// Shards 1/2 and 2/2 of `variants`' campaign, merged, and the unsharded run.
async fn sharded_and_not(variants: &[Variant]) -> (Report, Report, Report, Report) {
    let _server = shared_server().await;
    let one = reproducible_campaign(variants, Some(Shard::new(1, 2).unwrap())).await;
    let two = reproducible_campaign(variants, Some(Shard::new(2, 2).unwrap())).await;
    let parts = vec![
        Part {
            name: "shard-2".into(),
            report: two.clone(),
        },
        Part {
            name: "shard-1".into(),
            report: one.clone(),
        },
    ];
    let merged = merge(parts, false).unwrap();
    let unsharded = reproducible_campaign(variants, None).await;
    (one, two, merged, unsharded)
}

fn checks(report: &Report) -> Vec<(InvariantId, u64)> {
    report.invariants.iter().map(|r| (r.id, r.checks)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_merged_equal_the_unsharded_run() {
    let (one, two, merged, unsharded) = sharded_and_not(&[]).await;
    assert_eq!(one.cases_run, 4);
    assert_eq!(two.cases_run, 4);
    assert!(one.reproduce.ends_with("--shard 1/2"), "{}", one.reproduce);
    let rule = &one.shards.as_ref().unwrap().ran[0].rule;
    assert_eq!(rule, "the cases n of 1..=8 with n ≡ 1 (mod 2)");
    assert_eq!(unsharded.verdict, Verdict::Pass);
    assert_eq!(merged.verdict, unsharded.verdict);
    assert_eq!(merged.cases_run, unsharded.cases_run);
    // A case's READ, WRITE and NOCTX probes skip a relation that holds no row at all, and the
    // rows there are are what every earlier case left in the database: a shard's cases see
    // only their shard's, so those three invariants may count fewer checks. Every other
    // invariant's count (static, history, pool) is the unsharded run's.
    let state_dependent = [
        InvariantId::TenantIsolation,
        InvariantId::WriteCheck,
        InvariantId::NoContextClosed,
    ];
    let unsharded_checks = checks(&unsharded);
    for ((id, n), (_, want)) in checks(&merged).into_iter().zip(&unsharded_checks) {
        if state_dependent.contains(&id) {
            assert!(n > 0 && n <= *want, "{id}: {n} checks, unsharded {want}");
        } else {
            assert_eq!(n, *want, "{id}");
        }
        assert_eq!(
            merged.invariant(id).status,
            unsharded.invariant(id).status,
            "{id}"
        );
    }
    assert_eq!(merged.tasks, unsharded.tasks);
    assert_eq!(merged.faults, unsharded.faults);
    assert_eq!(merged.fault_coverage, unsharded.fault_coverage);
    assert_eq!(merged.reproduce, unsharded.reproduce);
    // The unsharded report is as it was: no shards in it.
    assert!(unsharded.shards.is_none());

    // The binary merges the same reports from their directories, and refuses a stranger.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, report: &Report| {
        rlsgate::evidence::write(report, &dir.path().join(name)).unwrap();
        dir.path().join(name).display().to_string()
    };
    let (d1, d2) = (write("shard-1", &one), write("shard-2", &two));
    let out = dir.path().join("merged").display().to_string();
    let (code, stdout, stderr) = rlsgate(&["merge", &d1, &d2, "--out", &out]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("shards 1, 2 of 2 merged"), "{stderr}");
    for file in ["report.json", "evidence.md", "junit.xml"] {
        assert!(Path::new(&out).join(file).exists(), "{file}");
    }
    let md = std::fs::read_to_string(Path::new(&out).join("evidence.md")).unwrap();
    assert!(md.contains("| shards | shards 1, 2 of 2 merged |"), "{md}");
    let read = rlsgate::evidence::read(&Path::new(&out).join("report.json")).unwrap();
    assert_eq!(checks(&read), checks(&merged));
    let mut stranger = two.clone();
    stranger.seed = 12;
    let d3 = write("stranger", &stranger);
    let (code, _, stderr) = rlsgate(&["merge", &d1, &d3, "--out", &out]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("does not belong with") && stderr.contains("different seed (11 vs 12)"),
        "{stderr}"
    );
    let (code, _, stderr) = rlsgate(&["merge", &d1, "--out", &out]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("shard(s) 2 of 2 missing"), "{stderr}");
    let (code, stdout, _) = rlsgate(&["merge", &d1, "--partial", "--out", &out]);
    assert_eq!(
        code, 3,
        "a partial merge is not a pass (inconclusive: 3): {stdout}"
    );
    assert!(stdout.contains("verdict: inconclusive"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_variant_merged_is_violated_by_the_same_invariant() {
    let (_, _, merged, unsharded) = sharded_and_not(&[Variant::WithCheckTrue]).await;
    assert_eq!(unsharded.verdict, Verdict::Fail);
    assert_eq!(merged.verdict, Verdict::Fail);
    assert!(unsharded.violated().contains(&InvariantId::WriteCheck));
    assert_eq!(merged.violated(), unsharded.violated());
    assert!(merged.counterexample.is_some());
    assert!(
        merged.reproduce.contains("--shard 1/2"),
        "case 1 fails: {}",
        merged.reproduce
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_sharded_and_merged_equals_its_unsharded_check() {
    let _server = shared_server().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/saas");
    let project = rlsgate::project::ProjectConfig::load(&dir).unwrap();
    let settings = Settings::from_env().unwrap();
    let check = async |shard| {
        let options = ProjectOptions {
            cases: 6,
            seed: 7,
            shard,
            ..ProjectOptions::default()
        };
        campaign::check_project(&settings, &project, &Source::default(), &options)
            .await
            .unwrap()
    };
    let parts = vec![
        Part {
            name: "1".into(),
            report: check(Some(Shard::new(1, 2).unwrap())).await,
        },
        Part {
            name: "2".into(),
            report: check(Some(Shard::new(2, 2).unwrap())).await,
        },
    ];
    let merged = merge(parts, false).unwrap();
    let unsharded = check(None).await;
    assert_eq!(merged.verdict, unsharded.verdict);
    assert_eq!(merged.cases_run, unsharded.cases_run);
    assert_eq!(checks(&merged), checks(&unsharded));
}

#[test]
fn bad_shard_values_get_clear_errors_before_anything_starts() {
    for (shard, says) in [
        ("0/2", "K counts from 1 to N"),
        ("3/2", "use --shard 1/2 to --shard 2/2"),
        ("x", "is not K/N"),
        ("1/0", "at least one shard"),
    ] {
        let (code, _, stderr) = rlsgate(&["run", "--shard", shard]);
        assert_eq!(code, 2, "--shard {shard}: {stderr}");
        assert!(stderr.contains(says), "--shard {shard}: {stderr}");
    }
    let (code, _, stderr) = rlsgate(&[
        "run",
        "--backend",
        "external",
        "--cases",
        "2",
        "--shard",
        "3/3",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("use at most 2 shards"), "{stderr}");
}
