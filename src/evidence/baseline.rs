//! The renderings of a run's baseline (`--baseline`): the known findings (never hidden: listed
//! with their detail), the new ones counted, and the baseline's findings that are fixed or were
//! not checked again.

use std::fmt::Write as _;

use crate::evidence::redact::redact;
use crate::invariants::Finding;
use crate::report::Report;
use crate::report::baseline::Entry;

/// The `evidence.md` section "Known findings (baseline)"; empty without a baseline.
pub fn section(report: &Report) -> String {
    let Some(b) = &report.baseline else {
        return String::new();
    };
    let mut out = String::from("## Known findings (baseline)\n\n");
    let _ = writeln!(
        out,
        "The baseline `{}` knows {} of this run's violations: they are listed here and do not fail \
         the gate. New violations (not in the baseline; they fail the gate): {}.\n",
        b.file, b.known_findings, b.new_findings,
    );
    let known = known_findings(report);
    if !known.is_empty() {
        out.push_str("Known (still there), each finding once with how often it was seen:\n\n");
        for (first, seen) in &known {
            let _ = writeln!(out, "- {first} (seen {seen}x)");
        }
        let kept: u64 = report.invariants.iter().map(|r| r.known.len() as u64).sum();
        let counted: u64 = report.invariants.iter().map(|r| r.known_count).sum();
        if counted > kept {
            let _ = writeln!(out, "- ... and {} more not kept in full", counted - kept);
        }
        out.push('\n');
    }
    entries(
        &mut out,
        "Fixed (their check decided again and found nothing: drop them from the baseline):",
        &b.fixed,
    );
    entries(
        &mut out,
        "Not checked again (their check did not decide in this run: neither seen nor fixed):",
        &b.unchecked,
    );
    redact(&out)
}

/// The known violations kept in full, one per finding (the first seen) with how many.
fn known_findings(report: &Report) -> Vec<(String, usize)> {
    let mut order: Vec<(Finding, String, usize)> = Vec::new();
    for o in report.invariants.iter().flat_map(|r| &r.known) {
        let finding = Finding::of(o);
        match order.iter_mut().find(|(f, _, _)| *f == finding) {
            Some((_, _, n)) => *n += 1,
            None => order.push((finding, o.to_string(), 1)),
        }
    }
    order.into_iter().map(|(_, first, n)| (first, n)).collect()
}

fn entries(out: &mut String, title: &str, entries: &[Entry]) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}\n");
    for e in entries {
        let _ = writeln!(out, "- {} (as seen: {})", e.finding, e.detail);
    }
    out.push('\n');
}

/// One line for the verdicts the CLI prints: the baseline's fixed and unchecked findings;
/// empty without a baseline or when there are none.
pub fn summary(report: &Report) -> String {
    let Some(b) = &report.baseline else {
        return String::new();
    };
    let mut out = String::new();
    for (what, list) in [("fixed", &b.fixed), ("not checked again", &b.unchecked)] {
        if !list.is_empty() {
            let names: Vec<String> = list.iter().map(|e| e.finding.to_string()).collect();
            let _ = writeln!(
                out,
                "baseline findings {what} ({}):\n  {}",
                list.len(),
                names.join("\n  ")
            );
        }
    }
    redact(&out)
}
