//! The GitHub workflows and the action: every action pinned by a commit, no checkout that keeps
//! its credentials, no `${{ }}` expression of user input expanded inside a script, and every
//! cargo command that resolves dependencies run with `--locked`.
use std::path::{Path, PathBuf};

fn files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.push(root.join("action.yml"));
    files.sort();
    files
}

/// The problems of one workflow or action file, each naming the line.
fn problems(name: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    // The indentation of the `run:` key whose script the line belongs to.
    let mut script: Option<usize> = None;
    let mut checkout: Option<(usize, bool)> = None;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start().trim_start_matches("- ");
        if script.is_some_and(|key| !body.is_empty() && indent <= key) {
            script = None;
        }
        if let Some(rest) = body.strip_prefix("uses: ") {
            let pinned = rest
                .split_once('@')
                .map(|(_, r)| r.split_whitespace().next().unwrap_or(""))
                .is_some_and(|r| r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit()));
            if !pinned {
                found.push(format!("{at}: not pinned by a commit SHA: {rest}"));
            }
            if let Some((_, false)) = checkout.take() {
                found.push(format!(
                    "{at}: a checkout before this keeps its credentials"
                ));
            }
            if rest.starts_with("actions/checkout@") {
                checkout = Some((i, false));
            }
        }
        if body.starts_with("persist-credentials: false")
            && let Some(c) = checkout.as_mut()
        {
            c.1 = true;
        }
        let in_script = script.is_some();
        if let Some(rest) = body.strip_prefix("run:") {
            script = Some(indent + usize::from(line.trim_start().starts_with("- ")) * 2);
            check_script_line(&at, rest, &mut found);
        } else if in_script {
            check_script_line(&at, body, &mut found);
        }
    }
    if let Some((line, false)) = checkout {
        found.push(format!(
            "{name}:{}: the checkout keeps its credentials",
            line + 1
        ));
    }
    found
}

fn check_script_line(at: &str, line: &str, found: &mut Vec<String>) {
    if line.contains("${{") {
        found.push(format!(
            "{at}: an expression expanded inside a script; pass it through env: {line}"
        ));
    }
    let cargo = line.trim_start().starts_with("cargo ");
    let resolves = [
        "build", "test", "clippy", "doc", "install", "package", "run",
    ]
    .iter()
    .any(|c| line.trim_start().starts_with(&format!("cargo {c}")));
    if cargo && resolves && !line.contains("--locked") {
        found.push(format!("{at}: cargo without --locked: {}", line.trim()));
    }
}

#[test]
fn workflows_and_the_action_pin_actions_keep_no_credentials_and_expand_nothing_in_scripts() {
    let mut all = Vec::new();
    for path in files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        all.extend(problems(&name, &text));
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn the_checks_catch_each_kind_of_problem() {
    let bad = "\
jobs:
  a:
    steps:
      - uses: actions/checkout@v4
      - uses: some/action@0123456789abcdef0123456789abcdef01234567 # v1
      - run: |
          echo ${{ github.event.inputs.cases }}
          cargo test
      - name: fine
        env:
          CASES: ${{ inputs.cases }}
        run: cargo test --locked
";
    let found = problems("bad.yml", bad);
    let expect = [
        "bad.yml:4: not pinned",
        "bad.yml:5: a checkout before this keeps its credentials",
        "bad.yml:7: an expression expanded inside a script",
        "bad.yml:8: cargo without --locked",
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for (f, e) in found.iter().zip(expect) {
        assert!(f.starts_with(e), "{f} should start with {e}");
    }
}
