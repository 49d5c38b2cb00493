//! Evidence: what a reviewer reads. Deterministic rendered text (stable order, redacted), a
//! Markdown evidence pack, and JUnit XML, all from a [`Report`], so `rlsgate evidence --from
//! report.json` renders the same files again.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::report::Report;

pub mod junit;
pub mod markdown;
pub mod matrix;
pub mod pgtap;
pub mod redact;
pub mod review;
pub mod text;

pub use redact::redact;
pub use review::review;

/// Every rendered artifact of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// The runtime identity.
    pub identity: String,
    /// The effective privilege matrix beside the declared one.
    pub privileges: String,
    /// The policy catalogue.
    pub policies: String,
    /// The invariant verdict table.
    pub verdicts: String,
    /// Fault coverage.
    pub faults: String,
    /// The minimal counterexample (or a line saying there is none).
    pub counterexample: String,
    /// `evidence.md`.
    pub markdown: String,
    /// `junit.xml`.
    pub junit: String,
    /// `access.html`, the access matrix.
    pub access: String,
}

impl Artifacts {
    /// Render every artifact of `report`.
    pub fn render(report: &Report) -> Self {
        let identity = text::identity(&report.evidence.identity);
        let privileges = text::privileges(&report.evidence);
        let policies = text::policies(&report.evidence);
        Self {
            markdown: markdown::render(report, &identity, &privileges, &policies),
            junit: junit::render(report),
            access: matrix::render(report),
            identity,
            privileges,
            policies,
            verdicts: text::verdicts(report),
            faults: text::faults(report),
            counterexample: text::counterexample(report),
        }
    }
}

/// The files `write` produces in a directory, in order.
pub const FILES: [&str; 4] = ["report.json", "evidence.md", "junit.xml", "access.html"];

/// Write `report.json`, `evidence.md`, `junit.xml` and `access.html` into `dir` (created if missing).
///
/// # Errors
/// An I/O error naming the file that could not be written.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let artifacts = Artifacts::render(report);
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::config(format!("serializing the report: {e}")))?;
    let mut written = Vec::new();
    for (name, content) in
        FILES
            .iter()
            .zip([json, artifacts.markdown, artifacts.junit, artifacts.access])
    {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}

/// Read a saved `report.json`, its problems computed again from its invariants (a report
/// written before problems existed gets them).
///
/// # Errors
/// An I/O error when the file cannot be read, a configuration error when it is not a report
/// rlsgate wrote.
pub fn read(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("format_version")?.as_u64())
        .unwrap_or(0);
    if version > u64::from(crate::report::FORMAT_VERSION) {
        return Err(Error::config(format!(
            "{} is report.json format {version}, newer than this rlsgate reads ({}): read it with the rlsgate that wrote it, or upgrade",
            path.display(),
            crate::report::FORMAT_VERSION
        )));
    }
    let mut report: Report = serde_json::from_str(&text).map_err(|e| {
        Error::config(format!(
            "{} is not a report.json written by this version of rlsgate: {e}",
            path.display()
        ))
    })?;
    report.problems = crate::report::problems(&report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::{InvariantId, Ledger, Observation};

    #[test]
    fn a_report_of_a_newer_format_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let mut report =
            serde_json::to_value(Report::interrupted("run", "rlsgate run".into())).unwrap();
        assert_eq!(report["format_version"], crate::report::FORMAT_VERSION);
        report["format_version"] = (crate::report::FORMAT_VERSION + 1).into();
        std::fs::write(&path, report.to_string()).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(
            e.to_string().contains("newer than this rlsgate reads"),
            "{e}"
        );
    }

    #[test]
    fn a_report_written_before_problems_existed_reads_with_them_and_renders_them() {
        let mut ledger = Ledger::scoped([InvariantId::TenantIsolation]);
        ledger.record(
            Observation::violated(InvariantId::TenantIsolation, "READ", "1 foreign row")
                .on("public.t"),
        );
        let mut report = Report::interrupted("check", String::new());
        (report.verdict, report.invariants) = Report::results(&ledger);
        let mut old = serde_json::to_value(&report).unwrap();
        assert!(old.get("problems").is_none());
        old["verdict"] = "fail".into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, old.to_string()).unwrap();
        let read = read(&path).unwrap();
        assert_eq!(read.problems.len(), 1);
        assert_eq!(read.problems[0].id, "rows public.t");
        assert!(
            Artifacts::render(&read)
                .markdown
                .contains("### P1. public.t: a tenant reads other tenants' rows")
        );
    }
}
