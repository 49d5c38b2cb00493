//! Adopting rlsgate on a schema with known debt: a baseline makes the gate fail only on new
//! findings (known ones listed, fixed ones reported); the exit codes tell CI why; `rlsgate
//! doctor` says what in the environment to fix.
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Run the binary with `args`, the URL variables of the environment left out.
use crate::support::rlsgate_without_urls as rlsgate;

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `rlsgate check --config CONFIG --cases 4 --out OUT [--baseline FILE]`.
fn check(config: &str, out: &Path, baseline: Option<&Path>) -> (i32, String, String) {
    let out = out.to_str().unwrap();
    let mut args = vec!["check", "--config", config, "--cases", "4", "--out", out];
    if let Some(b) = baseline {
        args.extend(["--baseline", b.to_str().unwrap()]);
    }
    rlsgate(&args)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_baselined_example_passes_with_its_findings_known_and_only_a_new_finding_fails() {
    let dir = tempfile::tempdir().unwrap();
    let broken = example("saas/broken");
    let (code, stdout, err) = check(&broken, &dir.path().join("first"), None);
    assert_eq!(code, 1, "findings exit 1\n{stdout}\n{err}");
    let first = dir.path().join("first/report.json");

    // The report itself as the baseline: the same findings again are all known.
    let (code, stdout, err) = check(&broken, &dir.path().join("known"), Some(&first));
    assert_eq!(
        code, 0,
        "only known findings pass the gate\n{stdout}\n{err}"
    );
    assert!(stdout.contains("verdict: pass (0 new, "), "{stdout}");
    assert!(stdout.contains("[known: in the baseline]"), "{stdout}");
    let report = json(&dir.path().join("known/report.json"));
    let outcome = &report["baseline"];
    assert!(outcome["known_findings"].as_u64().unwrap() > 0, "{outcome}");
    assert_eq!(outcome["new_findings"], 0, "{outcome}");
    let evidence = std::fs::read_to_string(dir.path().join("known/evidence.md")).unwrap();
    assert!(
        evidence.contains("## Known findings (baseline)"),
        "{evidence}"
    );
    assert!(
        evidence.contains("runtime-lacks-ddl violated [DDL:TRUNCATE] on public.tasks"),
        "the known findings are listed in evidence.md"
    );
    let junit = std::fs::read_to_string(dir.path().join("known/junit.xml")).unwrap();
    assert!(
        junit.contains("<skipped message=\"1 known finding(s) from the baseline"),
        "known findings are skipped with a reason in junit, never green: {junit}"
    );
    assert!(!junit.contains("<failure"), "{junit}");

    // A checked-in baseline that lacks one finding: that one is new, named, and fails.
    let file = dir.path().join("rlsgate-baseline.json");
    let (code, stdout, err) = rlsgate(&[
        "baseline",
        "--from",
        first.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{err}");
    let mut baseline = json(&file);
    let findings = baseline["findings"].as_array_mut().unwrap();
    let before = findings.len();
    findings.retain(|f| f["probe"] != "DDL:TRUNCATE");
    assert_eq!(findings.len(), before - 1, "{baseline}");
    std::fs::write(&file, serde_json::to_string_pretty(&baseline).unwrap()).unwrap();
    let (code, stdout, err) = check(&broken, &dir.path().join("new"), Some(&file));
    assert_eq!(code, 1, "a new finding fails the gate\n{stdout}\n{err}");
    assert!(stdout.contains("verdict: fail (1 new, "), "{stdout}");
    assert!(
        stdout.contains("runtime-lacks-ddl violated [DDL:TRUNCATE] on public.tasks")
            && !stdout.contains("[DDL:TRUNCATE] on public.tasks: saas_app can truncate public.tasks, every tenant's rows at once (TRUNCATE ignores RLS): the statement succeeded (rolled back) [known"),
        "the new finding is named, not as known: {stdout}"
    );
    let report = json(&dir.path().join("new/report.json"));
    assert_eq!(
        report["baseline"]["new_findings"], 1,
        "{}",
        report["baseline"]
    );
    let ddl = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "runtime-lacks-ddl")
        .unwrap();
    assert_eq!(ddl["status"], "violated");
    assert_eq!(ddl["violations"][0]["probe"], "DDL:TRUNCATE");

    // The fixed example against the broken one's baseline: every finding is fixed.
    let (code, stdout, err) = check(&example("saas"), &dir.path().join("fixed"), Some(&file));
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(stdout.contains("baseline findings fixed ("), "{stdout}");
    let report = json(&dir.path().join("fixed/report.json"));
    let fixed = report["baseline"]["fixed"].as_array().unwrap();
    assert!(
        fixed
            .iter()
            .any(|f| f["probe"] == "READ" && f["relation"] == "public.projects"),
        "{fixed:?}"
    );
    assert_eq!(report["baseline"]["known_findings"], 0);
}

#[test]
fn a_bad_baseline_is_a_harness_error_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baseline.json");
    std::fs::write(&file, "{\"tenants\": []}").unwrap();
    let (code, _, err) = check(&example("saas"), dir.path(), Some(&file));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("neither a report.json nor a baseline file"),
        "{err}"
    );
    assert!(err.contains("rlsgate baseline --from report.json"), "{err}");
    let (code, _, err) = check(&example("saas"), dir.path(), Some(&dir.path().join("none")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("reading the baseline"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_without_the_runtime_login_is_inconclusive_exit_3() {
    let (db, _runtime) = crate::existing::ledger().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rlsgate.toml"), crate::existing::CONFIG).unwrap();
    let url = db.url(rlsgate::Role::Superuser).await.unwrap();
    let config = dir.path().to_str().unwrap().to_string();
    let out = dir.path().join("out");
    let (code, stdout, err) = tokio::task::spawn_blocking(move || {
        rlsgate(&[
            "check",
            "--config",
            &config,
            "--database-url",
            &url,
            "--cases",
            "2",
            "--out",
            out.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert_eq!(
        code, 3,
        "no probe could run as the runtime\n{stdout}\n{err}"
    );
    assert!(stdout.contains("verdict: inconclusive"), "{stdout}");
    assert!(
        !stdout.contains("nothing could be tested"),
        "the static checks decided: {stdout}"
    );
}

/// `rlsgate doctor ARGS --out DIR` with `RLSGATE_BACKEND=local`: (exit code, stdout, doctor.json).
fn doctor(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rlsgate"))
        .arg("doctor")
        .args(args)
        .args(["--out", dir.to_str().unwrap()])
        .env("RLSGATE_BACKEND", "local")
        .env_remove("RLSGATE_DATABASE_URL")
        .env_remove("RLSGATE_RUNTIME_URL")
        .output()
        .unwrap();
    let json = std::fs::read_to_string(dir.join("doctor.json")).unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        json,
    )
}

#[test]
fn doctor_on_this_machine_finds_the_local_backend_and_fails_a_bad_url_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, json) = doctor(&["--config", &example("saas")], dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok   local "), "{stdout}");
    assert!(
        stdout.contains("ok   backend       local would run"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   migrations    6 migration(s) from") && stdout.contains("(rlsgate)"),
        "{stdout}"
    );
    let diagnosis: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(diagnosis["backend"], "local");

    let (code, stdout, json) = doctor(
        &[
            "--database-url",
            "postgres://postgres:s3cret-pw@127.0.0.1:1/app",
            "--runtime-url",
            "not a url",
        ],
        dir.path(),
    );
    assert_eq!(code, 2, "a failing check exits 2: {stdout}");
    assert!(
        stdout.contains(
            "fail database-url  cannot log in at postgres://postgres:***@127.0.0.1:1/app"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("fix: check the host, port"), "{stdout}");
    assert!(
        stdout.contains("fail runtime-url   the runtime URL is not a valid PostgreSQL URL"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("s3cret-pw") && !json.contains("s3cret-pw"),
        "no password is printed or written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_a_runtime_role_that_does_not_exist_and_one_the_url_does_not_log_in_as() {
    let server = crate::support::shared_server().await;
    let url = server.url(server.superuser_login(), "postgres");
    let dir = tempfile::tempdir().unwrap();
    let config = crate::existing::CONFIG.replace("ledger_app", "no_such_runtime_role");
    std::fs::write(dir.path().join("rlsgate.toml"), config).unwrap();
    let config = dir.path().to_str().unwrap().to_string();
    let out = dir.path().join("out");
    let (code, stdout, json) = tokio::task::spawn_blocking(move || {
        // The superuser's URL as the runtime's: it logs in, as the wrong role.
        doctor(
            &[
                "--config",
                &config,
                "--database-url",
                &url,
                "--runtime-url",
                &url,
            ],
            &out,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("fail role runtime  no_such_runtime_role does not exist on this server"),
        "{stdout}"
    );
    assert!(
        stdout.contains("correct roles.runtime in rlsgate.toml"),
        "{stdout}"
    );
    assert!(
        stdout.contains("logs in as a superuser; PostgreSQL"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not the runtime role no_such_runtime_role"),
        "{stdout}"
    );
    let password = &server.superuser_login().password;
    assert!(
        !password.is_empty() && !json.contains(password.as_str()),
        "{json}"
    );
}

#[test]
fn help_documents_the_exit_codes() {
    for args in [&["--help"][..], &["check", "--help"], &["run", "--help"]] {
        let (code, stdout, _) = rlsgate(args);
        assert_eq!(code, 0);
        for line in [
            "0    pass",
            "1    findings",
            "2    harness error",
            "3    inconclusive",
            "4    nothing could be tested",
            "130  interrupted",
        ] {
            assert!(stdout.contains(line), "{args:?}: {stdout}");
        }
    }
}

#[test]
fn a_broken_variants_campaign_baselined_passes_under_another_seed() {
    // The property goes on past known violations, and a finding is the same whichever tenant
    // or case it shows in: another seed's workloads find the same flaw, known.
    let dir = tempfile::tempdir().unwrap();
    let run = |seed: &str, out: &str, baseline: Option<&Path>| {
        let out = dir.path().join(out);
        let mut args = vec![
            "run",
            "--variant",
            "with-check-true",
            "--cases",
            "4",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if let Some(b) = baseline {
            args.extend(["--baseline".into(), b.to_str().unwrap().into()]);
        }
        rlsgate(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, stdout, err) = run("1", "first", None);
    assert_eq!(code, 1, "{stdout}\n{err}");
    let first = dir.path().join("first/report.json");
    let (code, stdout, err) = run("7", "again", Some(&first));
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(stdout.contains("verdict: pass (0 new, "), "{stdout}");
    let report = json(&dir.path().join("again/report.json"));
    assert!(report["baseline"]["known_findings"].as_u64().unwrap() > 0);
    assert!(
        report["counterexample"].is_null(),
        "no new failure to shrink"
    );
}
