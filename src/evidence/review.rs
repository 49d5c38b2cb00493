//! The review text: what a pull request's reviewer diffs when a project snapshots its evidence
//! (insta, in the project's own `snapshots/`). It holds what rlsgate decided and why, and none
//! of what varies between runs of the same schema (counts that depend on timing, generated ids,
//! ports, versions): a changed privilege, policy or finding is a snapshot change to review, and
//! nothing else is.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

use super::{redact, text};
use crate::invariants::Observation;
use crate::report::Report;

/// Values rlsgate generates for seeded rows (`rlsgate-1a2b3c-title`).
static GENERATED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"rlsgate-[0-9a-f]{6}-[a-z0-9]+").expect("a valid regex"));

/// The review text of `report`: each invariant's status; the problems (root causes, most
/// severe first, with their proof and what confirms them); each distinct finding (invariant,
/// probe, object, SQLSTATE); what the project accepts and the notes; the privilege matrix and
/// the policy catalogue; and, for a project, what was discovered and seeded. Redacted.
///
/// # Example
///
/// ```no_run
/// # fn example(report: &rlsgate::report::Report) {
/// // In the project's test, after a check: the evidence reviewed in the pull request.
/// let review = rlsgate::evidence::review(report);
/// // insta::assert_snapshot!("rls-evidence", review);
/// # let _ = review; }
/// ```
pub fn review(report: &Report) -> String {
    let mut out = format!("verdict: {}\n", report.verdict.as_str());
    for r in &report.invariants {
        let _ = writeln!(out, "{:<18} {}", r.id.id(), r.status.as_str());
    }
    problems(report, &mut out);
    let findings = distinct(
        report
            .invariants
            .iter()
            .flat_map(|r| r.violations.iter().chain(&r.inconclusive)),
        |o| {
            format!(
                "{} {} [{}] on {}{}",
                o.invariant,
                o.status,
                o.probe,
                o.relation.as_deref().unwrap_or("-"),
                o.sqlstate
                    .as_deref()
                    .map(|s| format!(" (SQLSTATE {s})"))
                    .unwrap_or_default()
            )
        },
    );
    section(&mut out, "findings", &findings, true);
    let with_detail = |o: &Observation| {
        format!(
            "{} [{}] on {}: {}",
            o.invariant,
            o.probe,
            o.relation.as_deref().unwrap_or("-"),
            o.accepted.as_deref().unwrap_or(&o.detail)
        )
    };
    let accepted = distinct(
        report.invariants.iter().flat_map(|r| &r.accepted),
        with_detail,
    );
    section(&mut out, "accepted", &accepted, false);
    let notes = distinct(report.invariants.iter().flat_map(|r| &r.notes), with_detail);
    section(&mut out, "notes", &notes, false);
    let _ = write!(
        out,
        "\nprivileges:\n{}\npolicies:\n{}",
        text::privileges(&report.evidence),
        text::policies(&report.evidence)
    );
    if report.project.is_some() {
        out.push_str("\ndiscovered:\n");
        out.push_str(&text::discovery(report));
    }
    redact(&GENERATED.replace_all(&out, "[generated]"))
}

fn problems(report: &Report, out: &mut String) {
    if !report.problems.is_empty() {
        out.push_str("\nproblems:\n");
    }
    for (i, p) in report.problems.iter().enumerate() {
        let _ = writeln!(out, "  P{} [{}] {}", i + 1, p.effect.as_str(), p.summary);
        let _ = writeln!(
            out,
            "     proof: {} [{}] on {}",
            p.proof.invariant,
            p.proof.probe,
            p.proof.relation.as_deref().unwrap_or("-")
        );
        if !p.confirmed_by.is_empty() {
            let _ = writeln!(out, "     confirmed by: {}", p.confirmed_by.join(", "));
        }
    }
}

fn distinct<'o>(
    observations: impl Iterator<Item = &'o Observation>,
    line: impl Fn(&Observation) -> String,
) -> BTreeSet<String> {
    observations.map(line).collect()
}

/// `lines` under `title`; an empty section is written only when `always`.
fn section(out: &mut String, title: &str, lines: &BTreeSet<String>, always: bool) {
    if lines.is_empty() && !always {
        return;
    }
    let _ = writeln!(out, "\n{title}:");
    for l in lines {
        let _ = writeln!(out, "  {l}");
    }
}
