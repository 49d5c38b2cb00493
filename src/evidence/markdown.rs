//! `evidence.md`: the evidence pack, in the spirit of the hand-made one that started rlsgate
//! (scope, hypotheses with status, static verification, runtime verification, invariant
//! results, counterexample, how to reproduce), written by every run.

use std::fmt::Write as _;

use crate::evidence::redact::redact;
use crate::evidence::text;
use crate::invariants::Status;
use crate::report::problem::Reproduction;
use crate::report::{Report, one_line};

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Holds => "HOLDS",
        Status::Violated => "VIOLATED",
        Status::Inconclusive => "INCONCLUSIVE",
        Status::Note => "NOTE",
    }
}

/// Render the evidence pack of `report`, reusing the rendered static artifacts.
pub fn render(report: &Report, identity: &str, privileges: &str, policies: &str) -> String {
    let mut out = String::new();
    let system = if report.mode == "run" {
        "the built-in reference system (LLM-audit worker, docs/system.md)".to_string()
    } else if report.project.is_some() {
        "the project described by its rlsgate.toml".to_string()
    } else {
        "an existing database holding the reference schema".to_string()
    };
    let _ = writeln!(out, "# rlsgate evidence pack\n");
    let _ = writeln!(
        out,
        "Scope: prove that {system} keeps tenants apart, records every failure and runs with least privilege, \
         under the runtime role `{}` over real login connections through a real pool.\n",
        report.evidence.identity.role
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| verdict | **{}** |", report.verdict.as_str());
    if let Some(b) = &report.baseline {
        let _ = writeln!(
            out,
            "| baseline | `{}`: {} new, {} known, {} fixed, {} not checked again |",
            b.file,
            b.new_findings,
            b.known_findings,
            b.fixed.len(),
            b.unchecked.len()
        );
    }
    let _ = writeln!(out, "| backend | {} |", report.backend);
    let _ = writeln!(out, "| server | {} |", redact(&report.server_version));
    for advisory in &report.advisories {
        let _ = writeln!(out, "| server advisory | {advisory}: upgrade the server |");
    }
    if !report.placement.is_built() {
        let _ = writeln!(out, "| database | {} |", report.placement.describe());
    }
    for skipped in &report.skipped {
        let _ = writeln!(out, "| skipped | {skipped} |");
    }
    if let Some(shards) = &report.shards {
        let _ = writeln!(out, "| shards | {} |", shards.describe());
    }
    let _ = writeln!(
        out,
        "| beside this file | `access.html` (the access matrix: relation × command × context), `results.sarif` (code scanning), `junit.xml`, `report.json` |"
    );
    if report.project.is_some() {
        let _ = writeln!(
            out,
            "| DML sequences | {} asked, {} run (seed {}) |\n",
            report.cases, report.cases_run, report.seed
        );
    } else {
        let variants = if report.variants.is_empty() {
            "none (the reference)".to_string()
        } else {
            report.variants.join(", ")
        };
        let _ = writeln!(out, "| broken variants | {variants} |");
        let _ = writeln!(
            out,
            "| cases | {} asked, {} run, {} while shrinking (seed {}) |",
            report.cases, report.cases_run, report.shrink_runs, report.seed
        );
        let t = &report.tasks;
        let _ = writeln!(
            out,
            "| tasks | {} delivered: {} committed, {} replayed, {} failed and recorded, {} failed and not recorded, {} unknown |\n",
            t.total, t.committed, t.replayed, t.failed_recorded, t.failed_unrecorded, t.unknown
        );
    }

    out.push_str(&problems(report));
    out.push_str(&crate::evidence::baseline::section(report));

    let _ = writeln!(out, "## 1. Hypotheses\n");
    for r in &report.invariants {
        let _ = writeln!(out, "### H-{} ({})", r.id.id(), r.statement);
        let _ = writeln!(
            out,
            "Status: {}. {} checks, {} violated, {} inconclusive.",
            status_word(r.status),
            r.checks,
            r.violation_count,
            r.inconclusive_count
        );
        if r.known_count > 0 {
            let _ = writeln!(
                out,
                "Known from the baseline (they do not fail the gate; see \"Known findings\"): {}.",
                r.known_count
            );
        }
        let shown: Vec<_> = r.violations.iter().chain(&r.inconclusive).take(3).collect();
        if !shown.is_empty() {
            out.push_str("\n```\n");
            for o in shown {
                let _ = writeln!(out, "{o}");
                if let Some(s) = &o.statement {
                    let _ = writeln!(out, "  statement: {}", crate::report::one_line(s));
                }
            }
            out.push_str("```\n");
        }
        if !r.accepted.is_empty() {
            out.push_str("\nAccepted by the project (they do not fail the gate):\n\n");
            for o in &r.accepted {
                let _ = writeln!(
                    out,
                    "- {o} (accepted: {})",
                    o.accepted.as_deref().unwrap_or_default()
                );
            }
        }
        if !r.notes.is_empty() {
            out.push_str("\nNotes (they decide nothing; the probes do):\n\n");
            for o in &r.notes {
                let _ = writeln!(out, "- [{}] {}", o.probe, o.detail);
            }
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## 2. Static verification (catalog)\n");
    let _ = writeln!(out, "### Runtime identity\n\n```\n{}```\n", identity);
    let _ = writeln!(
        out,
        "### Effective privilege matrix (`!!` marks a difference from the declared matrix)\n\n```\n{}```\n",
        privileges
    );
    let _ = writeln!(out, "### Policy catalogue\n\n```\n{}```\n", policies);

    if let Some(project) = &report.project {
        let _ = writeln!(
            out,
            "## 3. Runtime verification (discovery, seeding, probes, random DML)\n"
        );
        let _ = writeln!(out, "```\n{}```\n", text::discovery(report));
        let _ = writeln!(
            out,
            "{} random DML sequences ran against the visibility model.\n",
            report.cases_run
        );
        let _ = writeln!(out, "## 4. Invariant results\n");
        let _ = writeln!(out, "```\n{}```\n", text::invariants(report));
        let _ = writeln!(out, "## 5. Minimal reproduction\n");
        let _ = writeln!(
            out,
            "```\n{}```\n",
            project
                .reproduction
                .as_deref()
                .unwrap_or("no DML sequence broke the visibility model\n")
        );
        let _ = writeln!(out, "## 6. How to reproduce\n");
        let _ = writeln!(out, "```sh\n{}\n```", report.reproduce);
        return redact(&out);
    }
    let _ = writeln!(out, "## 3. Runtime verification (faults injected)\n");
    let _ = writeln!(out, "```\n{}```\n", text::faults(report));

    let _ = writeln!(out, "## 4. Invariant results\n");
    let _ = writeln!(out, "```\n{}```\n", text::invariants(report));

    let _ = writeln!(out, "## 5. Counterexample\n");
    let _ = writeln!(out, "```\n{}```\n", text::counterexample(report));

    let _ = writeln!(out, "## 6. How to reproduce\n");
    let _ = writeln!(
        out,
        "```sh\n{}\n```\n\nThe same seed generates the same workloads; a failing case shrinks to the same minimal counterexample.",
        report.reproduce
    );
    redact(&out)
}

/// How many catalog facts a problem's **why** shows.
const WHYS_SHOWN: usize = 3;

/// The problems section: each root cause with its proof, why (what the catalog says), how to
/// reproduce it and what else confirms it, most severe first; then what could not be decided.
/// Nothing when every invariant holds.
pub(crate) fn problems(report: &Report) -> String {
    let problems = crate::report::problems(report);
    let undecided = text::undecided(report);
    let mut out = String::new();
    if problems.is_empty() && undecided.is_empty() {
        return out;
    }
    let _ = writeln!(out, "## Problems\n");
    if problems.is_empty() {
        let _ = writeln!(out, "No problems: nothing was violated.\n");
    } else {
        let _ = writeln!(
            out,
            "{}. Each groups the violations of one root cause; section 1 lists every invariant's findings.{}\n",
            if problems.len() == 1 {
                "1 problem".to_string()
            } else {
                format!("{} problems, most severe first", problems.len())
            },
            if crate::report::problem::partial(report) {
                format!(
                    " Grouped from the violations the report keeps in full, the first {} of each invariant.",
                    crate::invariants::KEPT_PER_INVARIANT
                )
            } else {
                String::new()
            }
        );
    }
    for (i, p) in problems.iter().enumerate() {
        let _ = writeln!(out, "### P{}. {}\n", i + 1, p.summary);
        let _ = writeln!(
            out,
            "- **proof**: {} [{}]: {}",
            p.proof.invariant,
            p.proof.probe,
            one_line(&p.proof.detail)
        );
        match p.why.as_slice() {
            [] => {}
            [why] => {
                let _ = writeln!(out, "- **why** (catalog): {why}");
            }
            whys => {
                let _ = writeln!(out, "- **why** (catalog):");
                for why in whys.iter().take(WHYS_SHOWN) {
                    let _ = writeln!(out, "  - {why}");
                }
                if whys.len() > WHYS_SHOWN {
                    let _ = writeln!(
                        out,
                        "  - and {} more catalog facts",
                        whys.len() - WHYS_SHOWN
                    );
                }
            }
        }
        match (&p.reproduction, &p.proof.statement) {
            (Reproduction::Statement, Some(sql)) if p.proof.probe.starts_with("DML-") => {
                let _ = writeln!(
                    out,
                    "- **reproduce** (the minimal DML sequence):\n\n  ```sql\n{}\n  ```",
                    sql.trim_end()
                        .lines()
                        .map(|l| format!("  {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            (Reproduction::Statement, Some(sql)) => {
                let _ = writeln!(
                    out,
                    "- **reproduce** (as the runtime role, in the context the proof names):\n\n  ```sql\n  {}\n  ```",
                    one_line(sql)
                );
            }
            (Reproduction::Counterexample, _) => {
                let _ = writeln!(
                    out,
                    "- **reproduce**: the minimal counterexample below, or `{}`",
                    report.reproduce
                );
            }
            (Reproduction::Catalog, _) => {
                let _ = writeln!(out, "- **reproduce**: the catalog, as section 2 shows it");
            }
            (Reproduction::Rerun | Reproduction::Statement, _) => {
                let _ = writeln!(out, "- **reproduce**: `{}`", report.reproduce);
            }
        }
        if p.dml_sequence {
            let _ = writeln!(
                out,
                "- **replay**: the minimal DML sequence (section 5) shows it too, as SQL to run as it is"
            );
        }
        if !p.confirmed_by.is_empty() {
            let _ = writeln!(
                out,
                "- **confirmed by** ({} finding{} in all): {}",
                p.findings,
                if p.findings == 1 { "" } else { "s" },
                p.confirmed_by.join(", ")
            );
        }
        out.push('\n');
    }
    if !undecided.is_empty() {
        let _ = writeln!(out, "{}\n", undecided.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::{InvariantId, Ledger, Observation};

    fn rendered(observations: Vec<Observation>) -> String {
        let mut ledger = Ledger::scoped([InvariantId::TenantIsolation, InvariantId::RlsCoverage]);
        ledger.record_all(observations);
        let mut report = Report::interrupted("check", "rlsgate check --seed 7".into());
        (report.verdict, report.invariants) = Report::results(&ledger);
        render(&report, "", "", "")
    }

    #[test]
    fn the_problems_come_first_and_a_passing_run_has_none() {
        let leak = Observation::violated(InvariantId::TenantIsolation, "READ", "1 foreign row")
            .on("public.t")
            .with_statement("SELECT count(*)\n  FROM public.t");
        let gap = Observation::violated(
            InvariantId::RlsCoverage,
            "catalog:relforcerowsecurity",
            "not forced",
        )
        .on("public.t");
        let md = rendered(vec![leak, gap]);
        let problems = md.find("## Problems").expect("a problems section");
        assert!(problems < md.find("## 1. Hypotheses").unwrap(), "{md}");
        assert!(
            md.contains("### P1. public.t: a tenant reads other tenants' rows\n"),
            "{md}"
        );
        assert!(md.contains("  SELECT count(*) FROM public.t\n"), "{md}");
        assert!(md.contains("- **why** (catalog): not forced\n"), "{md}");
        let holds = vec![
            Observation::holds(InvariantId::TenantIsolation, "READ").on("public.t"),
            Observation::holds(InvariantId::RlsCoverage, "catalog:relforcerowsecurity"),
        ];
        assert!(!rendered(holds).contains("## Problems"));
    }
}
