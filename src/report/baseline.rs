//! Baselines: the findings a team knows about, so the gate fails only on new ones.
//!
//! A baseline is read from the `report.json` of an earlier run, or from a baseline file
//! (`rlsgate baseline --from report.json --out rlsgate-baseline.json`: a small sorted list of
//! [`Finding`]s, each with one detail as seen, meant to be checked in). A run given one
//! (`--baseline FILE`) counts a violation that matches a baseline finding as *known*: it is
//! listed in every artifact, and it does not fail the gate. An inconclusive check is never
//! known. A baseline finding no violation matched is *fixed* when the check that found it
//! decided again in this run (so the baseline can be tightened), and *unchecked* when it did
//! not (it may still be there).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::invariants::{Finding, Ledger, Status};
use crate::report::Report;

/// The version of the baseline file's format.
pub const FORMAT_VERSION: u32 = 1;

pub use crate::invariants::finding::Entry;

/// The findings a baseline knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The format's version ([`FORMAT_VERSION`]).
    pub rlsgate_baseline: u32,
    /// The findings, sorted, each once.
    pub findings: Vec<Entry>,
    /// Violations the report counted but did not keep in full (so not in the baseline): they
    /// will show as new.
    #[serde(skip)]
    pub left_out: u64,
    /// The file it was read from (empty when made from a report in memory).
    #[serde(skip)]
    pub file: String,
}

/// What a run made of its baseline: `report.json`'s `baseline`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineOutcome {
    /// The baseline file, as given.
    pub file: String,
    /// Violations the baseline knows (listed, not failing the gate).
    pub known_findings: u64,
    /// Violations the baseline does not know (these fail the gate).
    pub new_findings: u64,
    /// Baseline findings no violation matched although their check decided again: fixed, so
    /// the baseline can drop them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<Entry>,
    /// Baseline findings no violation matched and whose check did not decide in this run
    /// (inconclusive, or not run): neither seen nor shown fixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked: Vec<Entry>,
}

impl Baseline {
    /// The baseline of `report`: every distinct finding among its violations (an accepted one
    /// is accepted already; a known one stays known), each once. A report written before it
    /// listed its distinct findings gives those of the violations it keeps in full, and counts
    /// the others in [`Baseline::left_out`].
    ///
    /// # Errors
    /// A config error when the report decided nothing (an interrupted run).
    pub fn from_report(report: &Report) -> Result<Self> {
        if report.invariants.is_empty() {
            return Err(Error::config(format!(
                "the report's verdict is {} and it has no results: make a baseline from the report of a finished run",
                report.verdict.as_str()
            )));
        }
        let mut findings: Vec<Entry> = Vec::new();
        let mut left_out = 0;
        for r in &report.invariants {
            findings.extend(r.findings.iter().cloned());
            let kept = r.violations.iter().chain(&r.known);
            findings.extend(kept.filter(|o| o.status == Status::Violated).map(Entry::of));
            if r.findings.is_empty() {
                left_out += r.violation_count.saturating_sub(r.violations.len() as u64)
                    + r.known_count.saturating_sub(r.known.len() as u64);
            }
        }
        findings.sort();
        findings.dedup_by(|a, b| a.finding == b.finding);
        Ok(Self {
            rlsgate_baseline: FORMAT_VERSION,
            findings,
            left_out,
            file: String::new(),
        })
    }

    /// Read `path`: a baseline file, or the `report.json` of an earlier run.
    ///
    /// # Errors
    /// A config error naming the file when it cannot be read or is neither.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "reading the baseline {}: {e}; give a report.json of an earlier run or a file `rlsgate baseline` wrote",
                path.display()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::config(format!("the baseline {} is not JSON: {e}", path.display()))
        })?;
        let invalid =
            |e: serde_json::Error| Error::config(format!("the baseline {}: {e}", path.display()));
        if value.get("rlsgate_baseline").is_some() {
            let mut baseline: Self = serde_json::from_value(value).map_err(invalid)?;
            baseline.file = path.display().to_string();
            if baseline.rlsgate_baseline != FORMAT_VERSION {
                return Err(Error::config(format!(
                    "the baseline {} has format version {}; this rlsgate reads version {FORMAT_VERSION}: write it again with `rlsgate baseline`",
                    path.display(),
                    baseline.rlsgate_baseline
                )));
            }
            return Ok(baseline);
        }
        if value.get("invariants").is_some() && value.get("verdict").is_some() {
            let report: Report = serde_json::from_value(value).map_err(invalid)?;
            let mut baseline = Self::from_report(&report)?;
            baseline.file = path.display().to_string();
            return Ok(baseline);
        }
        Err(Error::config(format!(
            "{} is neither a report.json nor a baseline file: give the report.json of an earlier run, or write a baseline with `rlsgate baseline --from report.json --out FILE`",
            path.display()
        )))
    }

    /// The file's text: pretty JSON, one finding per object, sorted.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a baseline serializes") + "\n"
    }

    /// The findings, for [`Ledger::knowing`].
    pub fn known(&self) -> impl Iterator<Item = Finding> + '_ {
        self.findings.iter().map(|e| e.finding.clone())
    }

    /// What the run `ledger` recorded made of this baseline.
    pub fn outcome(&self, ledger: &Ledger) -> BaselineOutcome {
        let mut outcome = BaselineOutcome {
            file: self.file.clone(),
            ..BaselineOutcome::default()
        };
        for (_, tally) in ledger.tallies() {
            outcome.known_findings += tally.known;
            outcome.new_findings += tally.violations;
        }
        let matched: std::collections::BTreeMap<&Finding, u64> = ledger.known_matches().collect();
        for entry in &self.findings {
            if matched.get(&entry.finding).copied().unwrap_or(0) > 0 {
                continue;
            }
            if decided_again(&entry.finding, ledger) {
                outcome.fixed.push(entry.clone());
            } else {
                outcome.unchecked.push(entry.clone());
            }
        }
        outcome
    }
}

/// Whether the check that found `finding` decided again: its probe on its object held or was
/// violated (an object-less finding: its invariant was checked with nothing inconclusive).
fn decided_again(finding: &Finding, ledger: &Ledger) -> bool {
    match &finding.relation {
        Some(relation) => ledger.decided_exactly(finding.invariant, relation, &finding.probe),
        None => ledger
            .tallies()
            .find(|(id, _)| *id == finding.invariant)
            .is_some_and(|(_, t)| t.checks > 0 && t.inconclusive == 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::{InvariantId as I, KEPT_PER_INVARIANT, Observation, Undecided};

    fn read(tenant: &str, relation: &str) -> Observation {
        Observation::violated(
            I::TenantIsolation,
            "READ",
            format!("in tenant {tenant}'s context {relation} shows 1 rows of other tenants"),
        )
        .on(relation)
    }

    fn baseline(observations: &[Observation]) -> Baseline {
        let mut ledger = Ledger::default();
        ledger.record_all(observations.iter().cloned());
        let mut report = Report::interrupted("project", String::new());
        (report.verdict, report.invariants) = Report::results(&ledger);
        Baseline::from_report(&report).unwrap()
    }

    #[test]
    fn a_baseline_lists_each_finding_once_sorted_and_round_trips() {
        let b = baseline(&[
            read("A", "public.tasks"),
            read("B", "public.tasks"),
            read("A", "public.projects"),
        ]);
        let relations: Vec<_> = b
            .findings
            .iter()
            .map(|e| e.finding.relation.as_deref().unwrap())
            .collect();
        assert_eq!(relations, ["public.projects", "public.tasks"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rlsgate-baseline.json");
        std::fs::write(&path, b.to_json()).unwrap();
        let loaded = Baseline::load(&path).unwrap();
        assert_eq!(loaded.findings, b.findings);
        assert_eq!(loaded.file, path.display().to_string());
        std::fs::write(&path, "{\"verdict\": 1}").unwrap();
        let e = Baseline::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("neither a report.json nor a baseline file"),
            "{e}"
        );
    }

    #[test]
    fn known_violations_pass_new_ones_fail_and_missing_ones_are_fixed_or_unchecked() {
        let b = baseline(&[
            read("A", "public.projects"),
            read("A", "public.tasks"),
            Observation::violated(I::SideChannels, "UNIQUE:members_email_key", "collides")
                .on("public.members"),
        ]);
        let mut ledger = Ledger::default().knowing(b.known());
        let known = read("B", "public.projects");
        assert!(
            !ledger.fails(&known),
            "a known finding does not fail the gate"
        );
        ledger.record(known);
        let new = read("A", "public.invoices");
        assert!(ledger.fails(&new));
        ledger.record(new);
        ledger.record(Observation::holds(I::TenantIsolation, "READ").on("public.tasks"));
        ledger.record(
            Observation::inconclusive(
                I::SideChannels,
                Undecided::Bypass,
                "UNIQUE:members_email_key",
                "bypass",
            )
            .on("public.members"),
        );
        let (verdict, results) = Report::results(&ledger);
        assert_eq!(verdict, crate::report::Verdict::Fail);
        let isolation = &results[0];
        assert_eq!((isolation.known_count, isolation.violation_count), (1, 1));
        assert!(isolation.known[0].known);
        let outcome = b.outcome(&ledger);
        assert_eq!((outcome.known_findings, outcome.new_findings), (1, 1));
        let relations = |entries: &[Entry]| -> Vec<String> {
            entries
                .iter()
                .map(|e| e.finding.relation.clone().unwrap())
                .collect()
        };
        assert_eq!(relations(&outcome.fixed), ["public.tasks"]);
        assert_eq!(
            relations(&outcome.unchecked),
            ["public.members"],
            "inconclusive is not fixed"
        );
    }

    #[test]
    fn a_baseline_holds_every_distinct_finding_beyond_those_kept_in_full() {
        // The same finding many times first, then others: the samples hold only the first.
        let mut seen: Vec<Observation> = (0..KEPT_PER_INVARIANT + 5)
            .map(|_| read("A", "public.tasks"))
            .collect();
        seen.extend(["public.a", "public.b"].map(|r| read("B", r)));
        let b = baseline(&seen);
        assert_eq!(b.left_out, 0);
        assert_eq!(b.findings.len(), 3, "{:?}", b.findings);
        let mut ledger = Ledger::scoped([I::TenantIsolation]).knowing(b.known());
        ledger.record_all(seen);
        assert_eq!(Report::results(&ledger).0, crate::report::Verdict::Pass);
    }

    #[test]
    fn inconclusive_checks_are_never_baselined_away() {
        let undecided = Observation::inconclusive(
            I::TenantIsolation,
            Undecided::NoRuntimeLogin,
            "no-runtime-login",
            "no login",
        );
        let b = baseline(&[undecided.clone(), read("A", "public.tasks")]);
        assert_eq!(b.findings.len(), 1, "only the violation is a finding");
        let mut ledger = Ledger::default().knowing(b.known());
        ledger.record(undecided);
        ledger.record(read("B", "public.tasks"));
        let (verdict, _) = Report::results(&ledger);
        assert_eq!(verdict, crate::report::Verdict::Inconclusive);
    }
}
