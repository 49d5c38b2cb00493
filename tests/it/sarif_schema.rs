// The official SARIF 2.1.0 schema and a validator over it, for the SARIF tests: the unit tests
// of `src/evidence/sarif.rs` include this file too (`include!`), so both validate alike.
use serde_json::Value;

/// The official SARIF 2.1.0 schema, from the serde-sarif crate's sources (the version
/// Cargo.lock pins, found through `cargo metadata`).
pub(crate) fn schema() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "serde-sarif")
        .expect("serde-sarif is a dev-dependency")["manifest_path"]
        .as_str()
        .unwrap()
        .to_string();
    let path = std::path::Path::new(&manifest).with_file_name("src/schema.json");
    // The published schema's `language` patterns end in an unescaped `]`, a literal in
    // ECMA-262 that draft-07's `regex` format rejects: escaped, same meaning.
    let text = std::fs::read_to_string(&path).unwrap();
    let erratum = r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$""#;
    assert!(text.contains(erratum), "{} has changed", path.display());
    let text = text.replace(erratum, r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\\]?$""#);
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        schema["$id"],
        "https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json",
        "{} is the OASIS SARIF 2.1.0 schema",
        path.display()
    );
    schema
}

/// Every schema error of `sarif`, as text.
pub(crate) fn schema_errors(sarif: &str) -> Vec<String> {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema())
        .expect("the SARIF schema compiles");
    let instance: Value = serde_json::from_str(sarif).expect("results.sarif is JSON");
    validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}
