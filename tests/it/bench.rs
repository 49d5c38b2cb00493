//! `rlsgate bench` in its tiny configuration (one repetition of everything), so it cannot rot:
//! it runs end to end and its JSON has every field. The numbers are not asserted.
use std::process::Command;

#[test]
fn bench_runs_tiny_and_writes_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rlsgate"))
        .args(["bench", "--tiny", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("time to detection"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("bench.json")).unwrap())
            .unwrap();
    for field in [
        "backend",
        "server_ready",
        "isolation",
        "isolation_ratios",
        "throughput",
        "pgbench",
        "growth",
        "detection",
        "peak_rss_kib",
    ] {
        assert!(json.get(field).is_some(), "bench.json lacks {field}");
    }
    for way in ["migrations", "template_clone", "fresh_tenants"] {
        assert!(
            json["isolation"][way]["median_ms"].as_f64().unwrap() > 0.0,
            "{way}"
        );
    }
    assert!(!json["server_ready"].as_object().unwrap().is_empty());
    assert_eq!(json["throughput"].as_array().unwrap().len(), 2);
    // pgbench runs beside the worker where it is installed; without it, the fields are null
    // and the report says why.
    let pgbench = &json["pgbench"];
    for t in json["throughput"].as_array().unwrap() {
        assert!(t["tasks_per_second"].as_f64().unwrap() > 0.0, "{t}");
        assert_eq!(t["tasks_not_committed"], 0, "{t}");
        assert_eq!(
            t["pgbench_tps"].is_null(),
            pgbench["program"].is_null(),
            "{t}"
        );
        assert!(
            t["campaign_cases_per_second"].as_f64().unwrap() > 0.0,
            "{t}"
        );
    }
    assert_ne!(
        pgbench["program"].is_null(),
        pgbench["unavailable"].is_null()
    );
    assert_eq!(json["detection"][0]["variant"], "session-context");
    assert_eq!(json["detection"][0]["detected"], true);
    assert!(json["peak_rss_kib"].as_i64().unwrap() > 0);
}
