//! `results.sarif`: `check --config` on a broken example writes SARIF that validates against the
//! official SARIF 2.1.0 schema and points each violation at the migration statement behind it;
//! `run` on the built-in system writes valid SARIF whose findings are logical locations.
use std::path::Path;

use serde_json::Value;

use crate::sarif_schema::schema_errors;
use crate::support::rlsgate;

/// `dir/results.sarif`, asserted valid against the SARIF 2.1.0 schema.
fn valid_sarif(dir: &Path) -> (String, Value) {
    let text = std::fs::read_to_string(dir.join("results.sarif")).unwrap();
    let instance: Value = serde_json::from_str(&text).unwrap();
    let errors = schema_errors(&text);
    assert!(errors.is_empty(), "{errors:#?}\n{text}");
    (text, instance)
}

fn results(sarif: &Value) -> &Vec<Value> {
    sarif["runs"][0]["results"].as_array().unwrap()
}

/// The file and line `rule`'s result about `object` points at.
fn points_at(sarif: &Value, rule: &str, object: &str) -> (String, u64) {
    let r = results(sarif)
        .iter()
        .find(|r| {
            r["ruleId"] == rule
                && r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == object
        })
        .unwrap_or_else(|| panic!("a result of {rule} on {object}"));
    let physical = &r["locations"][0]["physicalLocation"];
    (
        physical["artifactLocation"]["uri"].as_str().unwrap().into(),
        physical["region"]["startLine"].as_u64().unwrap(),
    )
}

/// `check --config examples/<name>/broken` into `out`: it fails, and its SARIF validates.
fn check_broken(name: &str, out: &Path) -> (String, Value) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .join("broken");
    let (code, stdout, err) = rlsgate(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--cases",
        "8",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{err}");
    valid_sarif(out)
}

#[test]
fn check_config_of_a_broken_example_points_each_violation_at_its_migration_line() {
    let out = tempfile::tempdir().unwrap();
    let (text, sarif) = check_broken("saas", out.path());
    let broken = "examples/saas/broken/break/0100_break.sql";
    for (rule, object, line) in [
        // The permissive policy the broken copy adds, and what it lets through.
        ("rls-coverage/catalog:policy-using", "public.projects", 10),
        ("tenant-isolation/READ", "public.projects", 10),
        // The view made to read as its owner.
        (
            "rls-coverage/catalog:view-security-invoker",
            "public.open_tasks",
            6,
        ),
        // The grants the runtime should not have.
        ("runtime-lacks-ddl/DDL:TRUNCATE", "public.tasks", 15),
        (
            "least-privilege/catalog:has_table_privilege",
            "public.failed_jobs",
            19,
        ),
    ] {
        assert_eq!(
            points_at(&sarif, rule, object),
            (broken.to_string(), line),
            "{rule} on {object}"
        );
    }
    assert!(
        results(&sarif)
            .iter()
            .all(|r| r["level"] == "error" || r["level"] == "warning" || r["level"] == "note"),
        "{text}"
    );
    // `evidence --from` renders the same SARIF from report.json alone.
    let again = tempfile::tempdir().unwrap();
    let report = out.path().join("report.json");
    let (code, _, err) = rlsgate(&[
        "evidence",
        "--from",
        report.to_str().unwrap(),
        "--out",
        again.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(again.path().join("results.sarif")).unwrap(),
        text
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(
        r#""semanticVersion": "[^"]+""#,
        r#""semanticVersion": "[version]""#,
    );
    settings.add_filter(r"rlsgate-[0-9a-f]{6}-[a-z0-9]+", "[generated]");
    settings.bind(|| insta::assert_snapshot!("project-saas-broken-results.sarif", text));
}

#[test]
fn run_of_the_built_in_system_writes_valid_sarif_with_logical_locations() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, err) = rlsgate(&[
        "run",
        "--cases",
        "2",
        "--seed",
        "3",
        "--variant",
        "missing-grant",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{err}");
    let (text, sarif) = valid_sarif(out.path());
    let located: Vec<&Value> = results(&sarif)
        .iter()
        .filter(|r| r.get("locations").is_some())
        .collect();
    assert!(!located.is_empty(), "{text}");
    for r in located {
        let location = &r["locations"][0];
        assert!(
            location.get("physicalLocation").is_none(),
            "the built-in system has no project files: {text}"
        );
        assert!(
            location["logicalLocations"][0]["fullyQualifiedName"].is_string(),
            "{text}"
        );
    }
    assert!(
        results(&sarif).iter().any(|r| r["level"] == "error"),
        "{text}"
    );
}

#[test]
fn a_disabled_row_security_and_a_schema_grant_point_at_their_statements() {
    let out = tempfile::tempdir().unwrap();
    let (_, sarif) = check_broken("flyway-billing", out.path());
    let broken = "examples/flyway-billing/broken/break/V100__break.sql".to_string();
    for (rule, object, line) in [
        // ALTER TABLE ... DISABLE ROW LEVEL SECURITY, and the leak it opens.
        (
            "rls-coverage/catalog:relrowsecurity",
            "public.invoice_lines",
            6,
        ),
        ("tenant-isolation/READ", "public.invoice_lines", 6),
        (
            "runtime-lacks-ddl/BYPASS:row_security=off",
            "public.invoice_lines",
            6,
        ),
        // GRANT CREATE ON SCHEMA public.
        ("least-privilege/catalog:has_schema_privilege", "public", 9),
    ] {
        assert_eq!(
            points_at(&sarif, rule, object),
            (broken.clone(), line),
            "{rule} on {object}"
        );
    }
    // What the broken copy leaves alone stays where the project's migrations made it.
    assert_eq!(
        points_at(&sarif, "context-hygiene/POOL-read", "public.invoice_lines").0,
        "examples/flyway-billing/migrations/V2__invoices.sql"
    );
}
