//! The rendered text artifacts: deterministic (stable order, redacted), one per concern, so a
//! change in what rlsgate saw shows up as a snapshot diff.

use std::fmt::Write as _;

use crate::catalog::identity::RuntimeIdentity;
use crate::evidence::redact::redact;
use crate::report::{Report, StaticEvidence, one_line};

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

/// The runtime identity: attributes, memberships, what it can `SET ROLE` to, what it owns.
pub fn identity(identity: &RuntimeIdentity) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "runtime role: {}", identity.role);
    if !identity.exists {
        let _ = writeln!(out, "  the role does not exist");
        return out;
    }
    for (name, has) in &identity.attributes {
        let _ = writeln!(out, "  {name:<12} {}", yes(*has));
    }
    let _ = writeln!(out, "member of:       {}", list(&identity.member_of));
    let _ = writeln!(out, "can SET ROLE to: {}", list(&identity.can_set_role_to));
    let _ = writeln!(out, "owns:            {}", list(&identity.owns));
    out
}

/// What the CLI prints at the end of a run: the verdict, the problems (one line each, most
/// severe first) and what could not be decided, then the invariant table ([`invariants`]).
pub fn verdicts(report: &Report) -> String {
    let mut out = format!("verdict: {}\n", report.verdict_line());
    out.push_str(&problems(report));
    out.push_str(&crate::evidence::baseline::summary(report));
    out.push_str(&undecided(report));
    out.push_str(&invariant_table(report));
    redact(&out)
}

/// The invariant verdict table with the verdict above it: id, status, checks, violations,
/// inconclusive, statement, and the first violations and inconclusive checks of each.
pub fn invariants(report: &Report) -> String {
    redact(&format!(
        "verdict: {}\n{}",
        report.verdict_line(),
        invariant_table(report)
    ))
}

/// The problems of `report` ([`crate::report::problems`]), one line each: the summary, the
/// proof and how many findings it groups. Empty when there are none.
pub fn problems(report: &Report) -> String {
    let problems = crate::report::problems(report);
    if problems.is_empty() {
        return String::new();
    }
    let mut out = format!("problems ({}, most severe first):\n", problems.len());
    for (i, p) in problems.iter().enumerate() {
        let _ = writeln!(
            out,
            "  P{} {} [proof: {} {}; {} finding{}]",
            i + 1,
            p.summary,
            p.proof.invariant,
            p.proof.probe,
            p.findings,
            if p.findings == 1 { "" } else { "s" }
        );
    }
    redact(&out)
}

/// One line naming the invariants with checks that could not decide, and how many: they are
/// no problems, and no pass either. Empty when every check decided.
pub fn undecided(report: &Report) -> String {
    let undecided: Vec<String> = report
        .invariants
        .iter()
        .filter(|r| r.inconclusive_count > 0)
        .map(|r| format!("{} {}", r.id, r.inconclusive_count))
        .collect();
    if undecided.is_empty() {
        return String::new();
    }
    format!(
        "undecided (checks that could not decide; not problems, not a pass): {}\n",
        undecided.join(", ")
    )
}

fn invariant_table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<13} {:>7} {:>10} {:>12}  statement",
        "invariant", "status", "checks", "violations", "inconclusive"
    );
    for r in &report.invariants {
        let _ = writeln!(
            out,
            "{:<20} {:<13} {:>7} {:>10} {:>12}  {}",
            r.id.id(),
            if r.status == crate::invariants::Status::Holds && r.known_count > 0 {
                "holds+known"
            } else {
                r.status.as_str()
            },
            r.checks,
            r.violation_count,
            r.inconclusive_count,
            r.statement
        );
    }
    for r in &report.invariants {
        let mut shown: Vec<String> = r
            .violations
            .iter()
            .chain(&r.inconclusive)
            .map(|o| o.to_string())
            .chain(r.accepted.iter().map(|o| {
                format!(
                    "{o} [accepted: {}]",
                    o.accepted.as_deref().unwrap_or_default()
                )
            }))
            .chain(
                r.known
                    .iter()
                    .map(|o| format!("{o} [known: in the baseline]")),
            )
            .collect();
        shown.sort();
        shown.dedup();
        for line in shown.iter().take(5) {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Fault coverage: which fault kinds landed how often, and which invariants were checked (in
/// how many of those cases) after each.
pub fn faults(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>8}  invariants checked after it (cases)",
        "fault", "landed"
    );
    for kind in crate::workload::FaultKind::ALL {
        let landed = report.faults.get(kind.as_str()).copied().unwrap_or(0);
        let after = report
            .fault_coverage
            .get(kind.as_str())
            .map(|row| {
                row.iter()
                    .map(|(id, n)| format!("{id} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "{:<24} {landed:>8}  {after}", kind.as_str());
    }
    out
}

/// The minimal counterexample, or a line saying there is none.
pub fn counterexample(report: &Report) -> String {
    match &report.counterexample {
        None => "no counterexample: no case failed\n".into(),
        Some(c) => redact(&format!(
            "{}\nreproduce: {}\n",
            c.transcript.trim_end(),
            report.reproduce
        )),
    }
}

/// The effective privilege matrix of the runtime beside the declared one; every difference is
/// marked `!!` (an extra privilege, a missing one, or one held WITH GRANT OPTION).
pub fn privileges(evidence: &StaticEvidence) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "role {}: {:<9} {:<40} {:<11} {:<8} {:<9} difference",
        evidence.identity.role, "kind", "object", "privilege", "held", "declared"
    );
    for e in &evidence.privileges.entries {
        let held = match (e.granted, e.grantable) {
            (true, true) => "yes+GO",
            (true, false) => "yes",
            (false, _) => "no",
        };
        let diff = match (e.granted, e.expected, e.grantable) {
            (true, false, _) => "!! extra",
            (false, true, _) => "!! missing",
            (true, true, true) => "!! grant option",
            _ => "",
        };
        let _ = writeln!(
            out,
            "{:<width$} {:<9} {:<40} {:<11} {:<8} {:<9} {diff}",
            "",
            e.object_kind.as_str(),
            redact(&e.object),
            e.privilege,
            held,
            yes(e.expected),
            width = evidence.identity.role.len() + 6
        );
    }
    let differences = evidence
        .privileges
        .entries
        .iter()
        .filter(|e| e.granted != e.expected || (e.granted && e.grantable))
        .count();
    let _ = writeln!(out, "{differences} difference(s) from the declared matrix");
    out
}

/// The policy catalogue: per tenant relation, RLS enabled/forced, the owner, and each policy's
/// mode, command, roles, USING and WITH CHECK.
pub fn policies(evidence: &StaticEvidence) -> String {
    let mut out = String::new();
    for e in &evidence.policies {
        let _ = writeln!(
            out,
            "{} ({}{}, owner {}): RLS {}, {}; runtime may {}",
            e.relation,
            e.kind.as_str(),
            e.partition_of
                .as_ref()
                .map(|p| format!(" partition of {p}"))
                .unwrap_or_default(),
            e.owner,
            if e.rls_enabled { "enabled" } else { "DISABLED" },
            if e.rls_forced { "forced" } else { "NOT forced" },
            if e.runtime_privileges.is_empty() {
                "nothing".to_string()
            } else {
                e.runtime_privileges.join(", ")
            }
        );
        if e.policies.is_empty() {
            let _ = writeln!(out, "  no policy");
        }
        for p in &e.policies {
            let mode = match p.mode {
                crate::catalog::policies::PolicyMode::Permissive => "permissive",
                crate::catalog::policies::PolicyMode::Restrictive => "restrictive",
            };
            let _ = writeln!(
                out,
                "  policy {} {mode} FOR {} TO {}{}",
                p.name,
                p.command.as_str(),
                p.roles.join(", "),
                if p.applies_to_runtime {
                    ""
                } else {
                    " (not the runtime)"
                }
            );
            let _ = writeln!(
                out,
                "    USING      {}",
                p.using.as_deref().map_or("-".into(), one_line)
            );
            let _ = writeln!(
                out,
                "    WITH CHECK {}",
                p.with_check.as_deref().map_or("-".into(), one_line)
            );
        }
    }
    out
}

/// A project's discovery: every relation with its kind, tenant column, what the runtime may do
/// and whether it was seeded; functions; sequences. Empty for a campaign.
pub fn discovery(report: &Report) -> String {
    let Some(d) = &report.project else {
        return String::new();
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<18} {:<16} {:<28} seeding",
        "relation", "kind", "tenant column", "runtime"
    );
    for r in &d.relations {
        let _ = writeln!(
            out,
            "{:<40} {:<18} {:<16} {:<28} {}",
            r.name,
            r.kind,
            r.tenant_column.as_deref().unwrap_or("-"),
            if r.runtime.is_empty() {
                "-".to_string()
            } else {
                r.runtime.join(" ")
            },
            r.seeding.as_deref().unwrap_or("-")
        );
    }
    for f in &d.functions {
        let _ = writeln!(
            out,
            "function {}{}: {}",
            f.signature,
            if f.security_definer {
                " (SECURITY DEFINER)"
            } else {
                ""
            },
            if f.runtime_can_execute {
                "the runtime can execute it"
            } else {
                "not executable by the runtime"
            }
        );
    }
    for s in &d.sequences {
        let _ = writeln!(
            out,
            "sequence {}: {}",
            s.name,
            if s.runtime.is_empty() {
                "-".to_string()
            } else {
                s.runtime.join(" ")
            }
        );
    }
    out
}
