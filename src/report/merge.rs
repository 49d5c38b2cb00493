//! Merging the reports of a campaign's shards (`rlsgate merge`) into the one report of the
//! whole campaign; pure, from the reports alone.
//!
//! The reports must belong together: the same mode, seed, cases, variants, server, catalog
//! evidence and project, and the same number of shards, each shard once. What the cases counted
//! adds up (cases run, shrinking runs, tasks, faults, fault coverage, each invariant's per-case
//! checks); what every shard ran alike (the static checks and the once-per-run probes) counts
//! once, from the shard whose per-run part is the worst (they agree unless a shard's cases left
//! a table no probe decided). The verdict is the worst; the counterexample is the one of the
//! shard whose first failing case is the lowest (the case the unsharded run fails at first).

use std::collections::BTreeMap;

use crate::catalog::privileges::ObjectKind;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, KEPT_PER_INVARIANT, Observation, Tally};
use crate::report::shard::{CaseCounts, ShardRun, Shards};
use crate::report::{InvariantResult, Report, StaticEvidence, TaskCounts, Verdict, problems};

/// A shard's report and what names it in errors (its directory).
pub struct Part {
    /// Where the report was read from.
    pub name: String,
    /// The report.
    pub report: Report,
}

/// Merge `parts` into one report. With `partial`, missing shards are allowed and the verdict
/// cannot be pass.
///
/// # Errors
/// A configuration error naming the report at fault: no report, one that is not a shard's,
/// one interrupted (unless `partial`: then its shard is missing), reports that do not belong together (naming what differs), a shard given
/// twice, or shards missing without `partial`.
pub fn merge(parts: Vec<Part>, partial: bool) -> Result<Report> {
    if parts.is_empty() {
        return Err(Error::config(
            "rlsgate merge needs the directories of the shards' reports",
        ));
    }
    // A partial merge goes without the shards a signal (a job's timeout) stopped.
    let parts: Vec<Part> = parts
        .into_iter()
        .filter(|p| !partial || p.report.verdict != Verdict::Interrupted)
        .collect();
    let Some(first) = parts.first() else {
        return Err(Error::config(
            "every shard's report is of an interrupted run: run the shards again",
        ));
    };
    let count = shard_count(first)?;
    for p in &parts[1..] {
        belongs(first, p, count)?;
    }
    let runs = shard_runs(&parts)?;
    let missing: Vec<u32> = (1..=count).filter(|k| !runs.contains_key(k)).collect();
    if !missing.is_empty() && !partial {
        return Err(Error::config(format!(
            "shard(s) {} of {count} missing: give every shard's directory, or --partial to merge \
             what there is (the verdict then cannot be pass)",
            list(&missing)
        )));
    }
    let mut parts = parts;
    parts.sort_by_key(|p| lowest_shard(&p.report));
    let mut merged = frame(&parts);
    merged.invariants = invariants(&parts)?;
    merged.verdict = verdict(&parts, &merged.invariants, !missing.is_empty());
    merged.problems = problems(&merged);
    merged.shards = Some(Shards {
        count,
        ran: runs.into_values().collect(),
        missing,
    });
    Ok(merged)
}

/// `N` of a shard's report.
fn shard_count(p: &Part) -> Result<u32> {
    if p.report.verdict == Verdict::Interrupted {
        return Err(Error::config(format!(
            "{} is the report of an interrupted run: run that shard again",
            p.name
        )));
    }
    p.report.shards.as_ref().map(|s| s.count).ok_or_else(|| {
        Error::config(format!(
            "{} is not a shard's report (it has no shards): merge the reports of runs with --shard K/N",
            p.name
        ))
    })
}

/// Refuse `p` unless it belongs with `first`, naming what differs.
fn belongs(first: &Part, p: &Part, count: u32) -> Result<()> {
    let (a, b) = (&first.report, &p.report);
    let other = shard_count(p)?;
    let project = |r: &Report| {
        r.project.clone().map(|mut d| {
            d.reproduction = None;
            d
        })
    };
    let differs = [
        (
            "mode",
            a.mode != b.mode,
            format!("{} vs {}", a.mode, b.mode),
        ),
        (
            "seed",
            a.seed != b.seed,
            format!("{} vs {}", a.seed, b.seed),
        ),
        (
            "cases",
            a.cases != b.cases,
            format!("{} vs {}", a.cases, b.cases),
        ),
        (
            "variants",
            a.variants != b.variants,
            format!("{:?} vs {:?}", a.variants, b.variants),
        ),
        ("shard count", count != other, format!("{count} vs {other}")),
        (
            "server",
            a.server_version != b.server_version,
            format!("{:?} vs {:?}", a.server_version, b.server_version),
        ),
        (
            "project",
            project(a) != project(b),
            "the discovered relations, functions or tenants differ".into(),
        ),
        (
            "catalog evidence",
            comparable(&a.evidence) != comparable(&b.evidence),
            "the runtime's identity, privileges or policies differ".into(),
        ),
    ];
    match differs.into_iter().find(|(_, d, _)| *d) {
        None => Ok(()),
        Some((what, _, how)) => Err(Error::config(format!(
            "{} does not belong with {}: different {what} ({how}); merge only the shards of one campaign",
            p.name, first.name
        ))),
    }
}

/// `evidence` without the database's name: every shard checks a database of its own.
fn comparable(evidence: &StaticEvidence) -> StaticEvidence {
    let mut e = evidence.clone();
    for entry in &mut e.privileges.entries {
        if entry.object_kind == ObjectKind::Database {
            entry.object.clear();
        }
    }
    e
}

/// Every shard's run, by index; a shard given twice is an error.
fn shard_runs(parts: &[Part]) -> Result<BTreeMap<u32, ShardRun>> {
    let mut runs: BTreeMap<u32, (String, ShardRun)> = BTreeMap::new();
    for p in parts {
        for run in p.report.shards.iter().flat_map(|s| &s.ran) {
            if let Some((seen, _)) = runs.get(&run.index) {
                return Err(Error::config(format!(
                    "shard {} is given twice ({seen} and {}): give each shard's directory once",
                    run.index, p.name
                )));
            }
            runs.insert(run.index, (p.name.clone(), run.clone()));
        }
    }
    Ok(runs.into_iter().map(|(k, (_, r))| (k, r)).collect())
}

fn lowest_shard(r: &Report) -> u32 {
    r.shards
        .iter()
        .flat_map(|s| &s.ran)
        .map(|r| r.index)
        .min()
        .unwrap_or(u32::MAX)
}

fn list(ns: &[u32]) -> String {
    ns.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// The shard whose first failing case is the lowest, with that case.
fn first_failing(parts: &[Part]) -> Option<(&Part, u64)> {
    parts
        .iter()
        .filter_map(|p| {
            let first = p.report.shards.iter().flat_map(|s| &s.ran);
            first.filter_map(|r| r.first_failure).min().map(|n| (p, n))
        })
        .min_by_key(|(_, n)| *n)
}

/// Everything but the invariants and the verdict: the first report's frame, the sums of what
/// the cases counted, the counterexample of the lowest failing case.
fn frame(parts: &[Part]) -> Report {
    let mut merged = parts[0].report.clone();
    merged.cases_run = parts.iter().map(|p| p.report.cases_run).sum();
    merged.shrink_runs = parts.iter().map(|p| p.report.shrink_runs).sum();
    merged.faults = sum_faults(parts.iter().map(|p| &p.report.faults));
    merged.fault_coverage = BTreeMap::new();
    for p in parts {
        for (kind, row) in &p.report.fault_coverage {
            let into = merged.fault_coverage.entry(kind.clone()).or_default();
            for (id, n) in row {
                *into.entry(id.clone()).or_default() += n;
            }
        }
    }
    merged.tasks = parts.iter().fold(TaskCounts::default(), |mut t, p| {
        let r = &p.report.tasks;
        t.total += r.total;
        t.committed += r.committed;
        t.replayed += r.replayed;
        t.failed_recorded += r.failed_recorded;
        t.failed_unrecorded += r.failed_unrecorded;
        t.unknown += r.unknown;
        t
    });
    merged.performance = performance(parts);
    for p in &parts[1..] {
        merged.access.merge(&p.report.access);
    }
    let failing = first_failing(parts);
    merged.counterexample = failing.and_then(|(p, _)| p.report.counterexample.clone());
    if let Some(d) = &mut merged.project {
        d.reproduction = failing.and_then(|(p, _)| p.report.project.as_ref()?.reproduction.clone());
    }
    merged.reproduce = match failing {
        Some((p, _)) => p.report.reproduce.clone(),
        None => unsharded(&merged.reproduce),
    };
    merged
}

fn sum_faults<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, n) in m {
            *out.entry(k.clone()).or_default() += n;
        }
    }
    out
}

/// The shards ran side by side: the wall times are the longest, the case times add up.
fn performance(parts: &[Part]) -> crate::report::Performance {
    let each = || parts.iter().map(|p| &p.report.performance);
    let cases_ms: u64 = each().map(|p| p.cases_ms).sum();
    let secs = (cases_ms as f64 / 1000.0).max(1e-9);
    let tasks: u64 = parts.iter().map(|p| p.report.tasks.total).sum();
    let runs: u64 = parts
        .iter()
        .map(|p| p.report.cases_run + p.report.shrink_runs)
        .sum();
    crate::report::Performance {
        server_ready_ms: each().map(|p| p.server_ready_ms).max().unwrap_or(0),
        elapsed_ms: each().map(|p| p.elapsed_ms).max().unwrap_or(0),
        cases_ms,
        tasks_per_second: tasks as f64 / secs,
        cases_per_second: runs as f64 / secs,
        first_violation_ms: each().filter_map(|p| p.first_violation_ms).min(),
    }
}

/// The command without its `--shard K/N`: the unsharded run.
fn unsharded(reproduce: &str) -> String {
    let words: Vec<&str> = reproduce.split(' ').collect();
    let mut out = Vec::new();
    let mut skip = false;
    for w in words {
        if skip {
            skip = false;
        } else if w == "--shard" {
            skip = true;
        } else {
            out.push(w);
        }
    }
    out.join(" ")
}

/// Each invariant's merged result: the worst per-run part, plus every shard's per-case part.
fn invariants(parts: &[Part]) -> Result<Vec<InvariantResult>> {
    let ids = |r: &Report| r.invariants.iter().map(|i| i.id).collect::<Vec<_>>();
    let first = ids(&parts[0].report);
    if let Some(p) = parts.iter().find(|p| ids(&p.report) != first) {
        return Err(Error::config(format!(
            "{} does not belong with {}: different invariants checked; merge only the shards of one campaign",
            p.name, parts[0].name
        )));
    }
    Ok(first.into_iter().map(|id| invariant(parts, id)).collect())
}

fn invariant(parts: &[Part], id: InvariantId) -> InvariantResult {
    let results: Vec<(&InvariantResult, CaseCounts)> = parts
        .iter()
        .map(|p| {
            let per_case = p
                .report
                .shards
                .iter()
                .flat_map(|s| &s.ran)
                .filter_map(|r| r.per_case.get(&id).copied())
                .fold(CaseCounts::default(), CaseCounts::plus);
            (p.report.invariant(id), per_case)
        })
        .collect();
    let total = |r: &InvariantResult| CaseCounts {
        checks: r.checks,
        violations: r.violation_count,
        inconclusive: r.inconclusive_count,
        accepted: r.accepted_count,
    };
    let per_run = results
        .iter()
        .map(|(r, c)| total(r).minus(*c))
        .max_by_key(|c| c.severity())
        .unwrap_or_default();
    let counts = results.iter().fold(per_run, |sum, (_, c)| sum.plus(*c));
    let samples = |pick: fn(&InvariantResult) -> &Vec<Observation>| {
        let mut out: Vec<Observation> = Vec::new();
        for o in results.iter().flat_map(|(r, _)| pick(r)) {
            if out.len() < KEPT_PER_INVARIANT && !out.contains(o) {
                out.push(o.clone());
            }
        }
        out
    };
    let tally = Tally {
        checks: counts.checks,
        violations: counts.violations,
        inconclusive: counts.inconclusive,
        accepted: counts.accepted,
        ..Tally::default()
    };
    InvariantResult {
        id,
        statement: results[0].0.statement.clone(),
        status: tally.status(),
        checks: counts.checks,
        violation_count: counts.violations,
        violations: samples(|r| &r.violations),
        inconclusive_count: counts.inconclusive,
        inconclusive: samples(|r| &r.inconclusive),
        accepted_count: counts.accepted,
        accepted: samples(|r| &r.accepted),
        notes: samples(|r| &r.notes),
    }
}

/// The worst of the shards' verdicts and the merged invariants'; never pass when shards are
/// missing.
fn verdict(parts: &[Part], invariants: &[InvariantResult], missing: bool) -> Verdict {
    use crate::invariants::Status;
    let rank = |v: Verdict| match v {
        Verdict::Pass => 0,
        Verdict::Inconclusive => 1,
        Verdict::Fail => 2,
        Verdict::Interrupted => 3,
    };
    let of_invariants = if invariants.iter().any(|r| r.status == Status::Violated) {
        Verdict::Fail
    } else if invariants.iter().any(|r| r.status == Status::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    let worst = parts
        .iter()
        .map(|p| p.report.verdict)
        .chain([of_invariants])
        .max_by_key(|v| rank(*v))
        .unwrap_or(Verdict::Inconclusive);
    if missing && worst == Verdict::Pass {
        Verdict::Inconclusive
    } else {
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::{Ledger, Status};
    use crate::report::Shard;
    use crate::report::shard::{counts, since};

    /// Shard `k` of `n` of an 8-case campaign: every invariant checked once per run, then
    /// `cases` cases each checking tenant isolation once (the case `failing` violating it).
    fn shard(k: u32, n: u32, cases: &[u64], failing: Option<u64>) -> Part {
        let mut ledger = Ledger::default();
        for id in InvariantId::ALL {
            ledger.record(Observation::holds(id, "STATIC"));
        }
        let before = counts(&ledger);
        for c in cases {
            ledger.record(if Some(*c) == failing {
                Observation::violated(InvariantId::TenantIsolation, "READ", format!("case {c}"))
            } else {
                Observation::holds(InvariantId::TenantIsolation, "READ")
            });
        }
        let per_case = since(&before, &counts(&ledger));
        let (verdict, invariants) = Report::results(&ledger);
        let mut r = Report::interrupted(
            "run",
            format!("rlsgate run --cases 8 --seed 1 --shard {k}/{n}"),
        );
        r.verdict = verdict;
        r.invariants = invariants;
        r.seed = 1;
        r.cases = 8;
        r.cases_run = cases.len() as u64;
        r.tasks.total = 10 * cases.len() as u64;
        r.faults.insert("crash".into(), cases.len() as u64);
        let s = Shard::new(k, n).unwrap();
        let last = failing.unwrap_or(8);
        r.shards = Some(Shards::one(s, 8, last, failing, per_case));
        Part {
            name: format!("shard-{k}"),
            report: r,
        }
    }

    #[test]
    fn merged_shards_count_the_per_run_checks_once_and_add_up_the_cases() {
        let merged = merge(
            vec![
                shard(2, 2, &[2, 4, 6, 8], None),
                shard(1, 2, &[1, 3, 5, 7], None),
            ],
            false,
        )
        .unwrap();
        let unsharded = shard(1, 1, &[1, 2, 3, 4, 5, 6, 7, 8], None).report;
        assert_eq!(merged.verdict, Verdict::Pass);
        assert_eq!(merged.cases_run, 8);
        for id in InvariantId::ALL {
            assert_eq!(
                merged.invariant(id).checks,
                unsharded.invariant(id).checks,
                "{id}"
            );
            assert_eq!(merged.invariant(id).status, Status::Holds);
        }
        assert_eq!(merged.tasks.total, 80);
        assert_eq!(merged.faults["crash"], 8);
        assert_eq!(merged.reproduce, "rlsgate run --cases 8 --seed 1");
        let shards = merged.shards.unwrap();
        assert_eq!(
            shards.ran.iter().map(|r| r.index).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(shards.describe(), "shards 1, 2 of 2 merged");
    }

    #[test]
    fn the_merged_verdict_is_the_worst_and_the_counterexample_the_lowest_failing_case() {
        let mut two = shard(2, 2, &[2, 4], Some(4));
        two.report.reproduce.push_str(" (two)");
        let mut one = shard(1, 2, &[1, 3, 5], Some(5));
        one.report.reproduce.push_str(" (one)");
        let merged = merge(vec![one, two], false).unwrap();
        assert_eq!(merged.verdict, Verdict::Fail);
        assert_eq!(merged.violated(), [InvariantId::TenantIsolation]);
        assert_eq!(
            merged
                .invariant(InvariantId::TenantIsolation)
                .violation_count,
            2
        );
        assert!(
            merged.reproduce.ends_with("--shard 2/2 (two)"),
            "{}",
            merged.reproduce
        );
    }

    #[test]
    fn merge_refuses_reports_that_do_not_belong_together() {
        let err = |parts: Vec<Part>, partial| merge(parts, partial).unwrap_err().to_string();
        let mut other = shard(2, 2, &[2], None);
        other.report.seed = 9;
        let e = err(vec![shard(1, 2, &[1], None), other], false);
        assert!(
            e.contains("shard-2 does not belong with shard-1: different seed (1 vs 9)"),
            "{e}"
        );
        let e = err(
            vec![shard(1, 2, &[1], None), shard(2, 3, &[2], None)],
            false,
        );
        assert!(e.contains("different shard count (2 vs 3)"), "{e}");
        let mut other = shard(2, 2, &[2], None);
        other.report.variants = vec!["no-force-rls".into()];
        let e = err(vec![shard(1, 2, &[1], None), other], false);
        assert!(e.contains("different variants"), "{e}");
        let e = err(
            vec![shard(1, 2, &[1], None), shard(1, 2, &[1], None)],
            false,
        );
        assert!(
            e.contains("shard 1 is given twice (shard-1 and shard-1)"),
            "{e}"
        );
        let e = err(
            vec![shard(1, 3, &[1], None), shard(3, 3, &[3], None)],
            false,
        );
        assert!(
            e.contains("shard(s) 2 of 3 missing") && e.contains("--partial"),
            "{e}"
        );
        let mut unsharded = shard(1, 2, &[1], None);
        unsharded.report.shards = None;
        let e = err(vec![unsharded], false);
        assert!(e.contains("is not a shard's report"), "{e}");
        let mut stopped = shard(2, 2, &[2], None);
        stopped.report.verdict = Verdict::Interrupted;
        let e = err(vec![shard(1, 2, &[1], None), stopped], false);
        assert!(
            e.contains("shard-2 is the report of an interrupted run"),
            "{e}"
        );
        assert!(err(Vec::new(), false).contains("needs the directories"));
    }

    #[test]
    fn a_partial_merge_is_never_a_pass_and_goes_without_interrupted_shards() {
        let merged = merge(vec![shard(1, 3, &[1, 4, 7], None)], true).unwrap();
        assert_eq!(merged.verdict, Verdict::Inconclusive);
        let shards = merged.shards.unwrap();
        assert_eq!(shards.missing, [2, 3]);
        assert!(shards.describe().contains("partial: shard(s) 2, 3 missing"));
        let failed = merge(vec![shard(1, 3, &[1], Some(1))], true).unwrap();
        assert_eq!(failed.verdict, Verdict::Fail);
        let stopped = Part {
            name: "stopped".into(),
            report: Report::interrupted("run", "rlsgate run --shard 2/2".into()),
        };
        let merged = merge(vec![shard(1, 2, &[1], None), stopped], true).unwrap();
        assert_eq!(merged.shards.unwrap().missing, [2]);
        assert_eq!(merged.verdict, Verdict::Inconclusive);
    }
}
