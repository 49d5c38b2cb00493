//! `junit.xml`: one test case per invariant; a violated invariant is a failure carrying its
//! violations and the counterexample, an inconclusive one a failure of type `inconclusive`
//! (never a pass).

use std::fmt::Write as _;

use crate::evidence::redact::redact;
use crate::invariants::Status;
use crate::report::{Report, Verdict};

/// Escape `text` for XML attributes and text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The known findings of `r`, one line each, with how many in all.
fn known_lines(r: &crate::report::InvariantResult) -> String {
    let mut lines = format!("{} known from the baseline:\n", r.known_count);
    for o in &r.known {
        let _ = writeln!(lines, "- known: {o}");
    }
    lines
}

/// Render `report` as JUnit XML.
pub fn render(report: &Report) -> String {
    let failing = report
        .invariants
        .iter()
        .filter(|r| r.status != Status::Holds)
        .count();
    // A verdict other than pass that no invariant's case shows (an interrupted run) is a failing
    // case of its own: a JUnit file never reads green when the run was not.
    let verdict_case = report.verdict != Verdict::Pass && failing == 0;
    let failures = failing + usize::from(verdict_case);
    let tests = report.invariants.len() + usize::from(verdict_case);
    let skipped = report
        .invariants
        .iter()
        .filter(|r| r.status == Status::Holds && r.known_count > 0)
        .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"rlsgate\" tests=\"{tests}\" failures=\"{failures}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"rlsgate {} seed {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
        escape(&report.mode),
        report.seed,
    );
    if verdict_case {
        let verdict = report.verdict.as_str();
        let _ = writeln!(
            out,
            "    <testcase classname=\"rlsgate.run\" name=\"verdict\">\n      <failure type=\"{verdict}\" message=\"the run's verdict is {verdict}\">reproduce: {}</failure>\n    </testcase>",
            escape(&redact(&report.reproduce))
        );
    }
    for r in &report.invariants {
        let _ = write!(
            out,
            "    <testcase classname=\"rlsgate.invariants\" name=\"{}\" assertions=\"{}\"",
            r.id.id(),
            r.checks
        );
        if r.status == Status::Holds && r.known_count > 0 {
            // Known findings pass the gate, but never as a green case without a trace.
            let _ = writeln!(
                out,
                ">\n      <skipped message=\"{}\">{}</skipped>\n    </testcase>",
                escape(&format!(
                    "{} known finding(s) from the baseline: not failing the gate",
                    r.known_count
                )),
                escape(&redact(&known_lines(r)))
            );
            continue;
        }
        if r.status == Status::Holds {
            if r.accepted.is_empty() {
                out.push_str("/>\n");
            } else {
                let accepted: Vec<String> = r
                    .accepted
                    .iter()
                    .map(|o| {
                        format!(
                            "accepted: {o} (reason: {})",
                            o.accepted.as_deref().unwrap_or_default()
                        )
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    escape(&redact(&accepted.join("\n")))
                );
            }
            continue;
        }
        out.push_str(">\n");
        let (kind, samples, count) = if r.status == Status::Violated {
            ("violated", &r.violations, r.violation_count)
        } else {
            ("inconclusive", &r.inconclusive, r.inconclusive_count)
        };
        let mut body = format!(
            "{}\n{count} check(s) {kind}; the distinct ones first seen:\n",
            r.statement
        );
        let mut seen = std::collections::BTreeSet::new();
        for o in samples.iter().filter(|o| seen.insert(o.to_string())) {
            let _ = writeln!(body, "- {o}");
            if let Some(s) = &o.statement {
                let _ = writeln!(body, "  statement: {}", crate::report::one_line(s));
            }
        }
        if let Some(c) = &report.counterexample
            && r.status == Status::Violated
        {
            let _ = write!(body, "\nminimal counterexample:\n{}", c.transcript);
        }
        if r.known_count > 0 {
            let _ = write!(body, "\n{}", known_lines(r));
        }
        let _ = write!(body, "\nreproduce: {}\n", report.reproduce);
        let first = samples.first().map(|o| o.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "      <failure type=\"{kind}\" message=\"{}\">{}</failure>",
            escape(&redact(&first)),
            escape(&redact(&body))
        );
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
