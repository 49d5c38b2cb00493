//! `access.html`: the access matrix a reviewer looks at. One row per tenant relation, one
//! column per command in each acting context (the tenant's own rows, tenant A's context on
//! B's rows, no context); each cell allowed, blocked, leak or inconclusive, from the probes'
//! outcomes ([`crate::invariants::access`]) and, where no probe looked, the privilege matrix.
//! One self-contained file: inline CSS, no script, no external URL, everything escaped, and
//! redacted as `evidence.md` is (the same seed renders the same page).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::catalog::privileges::ObjectKind;
use crate::invariants::access::{AccessContext, AccessOutcome, COMMANDS};
use crate::report::Report;

/// A rendered cell: its class (an outcome, or `none` when nothing looked), text and title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) class: &'static str,
    pub(crate) text: &'static str,
    pub(crate) title: String,
    /// The probes that looked.
    pub(crate) probes: Vec<String>,
}

impl Shown {
    fn of(outcome: AccessOutcome, title: String, probes: Vec<String>) -> Self {
        Self {
            class: outcome.as_str(),
            text: outcome.as_str(),
            title,
            probes,
        }
    }
}

/// The relations of the matrix: the tenant relations of the policy catalogue (leaf partitions
/// are judged through their parent) and any other relation a probe looked at, by name.
pub(crate) fn relations(report: &Report) -> Vec<String> {
    let mut out: BTreeSet<String> = report
        .evidence
        .policies
        .iter()
        .filter(|p| p.partition_of.is_none())
        .map(|p| p.relation.clone())
        .collect();
    out.extend(report.access.cells.iter().map(|c| c.relation.clone()));
    out.into_iter().collect()
}

/// Whether the runtime holds `command` on `relation`, and whether it is declared: from the
/// privilege matrix, else the policy catalogue (declared unknown then).
fn privilege(report: &Report, relation: &str, command: &str) -> (bool, Option<bool>) {
    if let Some(e) = report
        .evidence
        .privileges
        .get(ObjectKind::Relation, relation, command)
    {
        return (e.granted, Some(e.expected));
    }
    let granted = report
        .evidence
        .policies
        .iter()
        .any(|p| p.relation == relation && p.runtime_can(command));
    (granted, None)
}

/// The cell of `relation`, `context`, `command`.
pub(crate) fn cell(
    report: &Report,
    relation: &str,
    context: AccessContext,
    command: &str,
) -> Shown {
    let (granted, declared) = privilege(report, relation, command);
    let probed = report.access.cell(relation, context, command);
    if let Some(c) = probed {
        let probes = c.probes.clone();
        let title = match (c.outcome, &c.detail) {
            (AccessOutcome::Leak | AccessOutcome::Inconclusive, Some(d)) => d.clone(),
            (AccessOutcome::Allowed, _) => {
                format!("went through, as designed ({})", probes_n(c.held))
            }
            (_, _) => format!("refused ({})", probes_n(c.held)),
        };
        let undeclared = context == AccessContext::OwnTenant && granted && declared == Some(false);
        if c.outcome == AccessOutcome::Allowed && undeclared {
            return Shown::of(AccessOutcome::Leak, undeclared_title(command), probes);
        }
        return Shown::of(c.outcome, title, probes);
    }
    match (context, granted, declared) {
        (AccessContext::OwnTenant, true, Some(false)) => {
            Shown::of(AccessOutcome::Leak, undeclared_title(command), Vec::new())
        }
        (AccessContext::OwnTenant, true, _) => Shown::of(
            AccessOutcome::Allowed,
            format!("the runtime holds {command} (the privilege matrix); no probe ran it"),
            Vec::new(),
        ),
        (_, false, Some(true)) => Shown::of(
            AccessOutcome::Blocked,
            format!("no {command} privilege (declared, but not granted: least-privilege)"),
            Vec::new(),
        ),
        (_, false, _) => Shown::of(
            AccessOutcome::Blocked,
            format!("no {command} privilege: refused before any policy"),
            Vec::new(),
        ),
        (_, true, _) => Shown {
            class: "none",
            text: "\u{2014}",
            title: "no probe tried it".into(),
            probes: Vec::new(),
        },
    }
}

fn probes_n(n: u64) -> String {
    format!("{n} probe{}", if n == 1 { "" } else { "s" })
}

fn undeclared_title(command: &str) -> String {
    format!("the runtime holds {command}, which is not declared (least-privilege)")
}

/// What a context's columns are headed with.
fn heading(context: AccessContext) -> &'static str {
    match context {
        AccessContext::OwnTenant => "own tenant's rows (the runtime's privilege)",
        AccessContext::OtherTenant => "tenant A's context on tenant B's rows",
        AccessContext::NoContext => "no tenant context",
    }
}

/// Escape `s` for HTML text and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1b1b}
table{border-collapse:collapse;margin:1rem 0}
th,td{border:1px solid #999;padding:.3rem .5rem;text-align:center}
th[scope=row]{text-align:left;font-family:monospace}
td.allowed{background:#dcefff}
td.blocked{background:#d8f5d8}
td.leak{background:#ffb3b3;font-weight:bold}
td.inconclusive{background:#fff2b3}
td.none{background:#f2f2f2;color:#777}
td a{color:inherit}
.legend td{text-align:left}
li{margin:.3rem 0}";

/// Render `access.html` of `report`.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>rlsgate access matrix</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n\
         <h1>Access matrix</h1>\n<p>Verdict <strong>{}</strong> ({}). Every cell acts as the \
         runtime role <code>{}</code>; the probes' outcomes first, the privilege matrix where \
         no probe looked.</p>\n",
        escape(report.verdict.as_str()),
        escape(&report.mode),
        escape(&report.evidence.identity.role),
    );
    if report.access.is_empty() {
        out.push_str(
            "<p>No probe ran as the runtime (no login for it, or a report from before the \
             matrix): the cells come from the catalog alone.</p>\n",
        );
    }
    legend(&mut out);
    let (leaks, undecided) = table(report, &mut out);
    details(&mut out, "leaks", "Leaks", &leaks);
    details(&mut out, "inconclusive", "Inconclusive", &undecided);
    out.push_str("</body>\n</html>\n");
    super::redact(&out)
}

fn legend(out: &mut String) {
    out.push_str("<table class=\"legend\">\n<caption>Legend</caption>\n");
    for (class, what) in [
        (
            "allowed",
            "the design allows it: the tenant's own rows, a declared privilege",
        ),
        (
            "blocked",
            "refused, as it should be (a policy, or no privilege)",
        ),
        (
            "leak",
            "a violation: it went through; the link leads to the detail",
        ),
        ("inconclusive", "nothing could decide it; the link says why"),
        ("none", "no probe tried it (\u{2014})"),
    ] {
        let _ = writeln!(
            out,
            "<tr><td class=\"{class}\">{class}</td><td>{}</td></tr>",
            escape(what)
        );
    }
    out.push_str("</table>\n");
}

/// The table; returns the leaks and the inconclusive cells, each (anchor, what, why).
fn table(report: &Report, out: &mut String) -> (Vec<[String; 3]>, Vec<[String; 3]>) {
    out.push_str("<table class=\"matrix\">\n<thead>\n<tr><th rowspan=\"2\">relation</th>");
    for context in AccessContext::ALL {
        let _ = write!(
            out,
            "<th colspan=\"{}\">{}</th>",
            COMMANDS.len(),
            escape(heading(context))
        );
    }
    out.push_str("</tr>\n<tr>");
    for _ in AccessContext::ALL {
        for command in COMMANDS {
            let _ = write!(out, "<th>{command}</th>");
        }
    }
    out.push_str("</tr>\n</thead>\n<tbody>\n");
    let (mut leaks, mut undecided) = (Vec::new(), Vec::new());
    for relation in relations(report) {
        let _ = write!(out, "<tr><th scope=\"row\">{}</th>", escape(&relation));
        for context in AccessContext::ALL {
            for command in COMMANDS {
                let shown = cell(report, &relation, context, command);
                let list = match shown.class {
                    "leak" => Some(("leak", &mut leaks)),
                    "inconclusive" => Some(("inconclusive", &mut undecided)),
                    _ => None,
                };
                let text = match list {
                    Some((prefix, list)) => {
                        let anchor = format!("{prefix}-{}", list.len() + 1);
                        let what = format!("{relation}, {context}, {command}");
                        let probes = if shown.probes.is_empty() {
                            String::new()
                        } else {
                            format!(" (probes: {})", shown.probes.join(", "))
                        };
                        list.push([anchor.clone(), what, format!("{}{probes}", shown.title)]);
                        format!("<a href=\"#{anchor}\">{}</a>", shown.text)
                    }
                    None => shown.text.to_string(),
                };
                let _ = write!(
                    out,
                    "<td class=\"{}\" data-relation=\"{}\" data-context=\"{context}\" \
                     data-command=\"{command}\" title=\"{}\">{text}</td>",
                    shown.class,
                    escape(&relation),
                    escape(&shown.title),
                );
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    (leaks, undecided)
}

fn details(out: &mut String, id: &str, heading: &str, items: &[[String; 3]]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "<h2 id=\"{id}\">{heading}</h2>\n<ol>");
    for [anchor, what, why] in items {
        let _ = writeln!(
            out,
            "<li id=\"{anchor}\"><strong>{}</strong>: {}</li>",
            escape(what),
            escape(why)
        );
    }
    out.push_str("</ol>\n");
}

/// A small report for the renderings' tests: two tenant relations, one leak (with markup in
/// its detail), one inconclusive cell, blocked cells, an undeclared privilege.
#[cfg(test)]
pub(crate) fn small_report() -> Report {
    use crate::catalog::policies::{PolicyEntry, RelationKind};
    use crate::catalog::privileges::PrivilegeEntry;
    use crate::invariants::{InvariantId, Ledger, Observation, Undecided};
    use crate::subject::Subject;

    let entry = |relation: &str, kind, privileges: &[&str]| PolicyEntry {
        relation: relation.into(),
        kind,
        tenant_column: "tenant_id".into(),
        rls_enabled: true,
        rls_forced: true,
        owner: "migration_owner".into(),
        runtime_has_owner_privileges: false,
        partition_of: None,
        security_invoker: true,
        runtime_privileges: privileges.iter().map(|p| p.to_string()).collect(),
        policies: Vec::new(),
    };
    let privilege = |object: &str, privilege: &str, granted, expected| PrivilegeEntry {
        object_kind: ObjectKind::Relation,
        object: object.into(),
        privilege: privilege.into(),
        granted,
        grantable: false,
        expected,
    };
    let (w, t, n) = (
        InvariantId::WriteCheck,
        InvariantId::TenantIsolation,
        InvariantId::NoContextClosed,
    );
    let mut ledger = Ledger::default();
    let copy = "INSERT INTO public.notes (id, tenant_id, body) SELECT id, tenant_id, body FROM json_populate_record(NULL::public.notes, $1::text::json)";
    for o in [
        Observation::holds(t, "READ").on("public.notes"),
        Observation::holds(w, "INS")
            .on("public.notes")
            .with_sqlstate(Some("42501".into()))
            .with_statement(copy),
        Observation::holds(w, "XDML-UPDATE").on("public.notes"),
        Observation::violated(
            w,
            "XDML-DELETE",
            "in tenant A's context, deleted a row of another tenant (0b5c6a1e-1111-4222-8333-444455556666): <script>alert(\"x\")</script> & more",
        )
        .on("public.notes"),
        Observation::holds(n, "NOCTX-never-set").on("public.notes"),
        Observation::holds(n, "NOCTX-set-then-ended-write")
            .on("public.notes")
            .with_sqlstate(Some("42501".into()))
            .with_statement(copy),
        Observation::holds(t, "READ").on("public.note_view"),
        Observation::inconclusive(
            n,
            Undecided::Bypass,
            "NOCTX-never-set",
            "the probe ran as app_owner, which owns public.note_view",
        )
        .on("public.note_view"),
    ] {
        ledger.record(o);
    }
    let mut report = Report::interrupted("check", "rlsgate check".into());
    (report.verdict, report.invariants) = Report::results(&ledger);
    report.access = ledger.access(&Subject::reference());
    report.evidence.identity.role = "app_user".into();
    report.evidence.identity.attributes =
        vec![("SUPERUSER".into(), false), ("BYPASSRLS".into(), false)];
    report.evidence.policies = vec![
        entry("public.note_view", RelationKind::View, &["SELECT"]),
        entry(
            "public.notes",
            RelationKind::Table,
            &["SELECT", "INSERT", "UPDATE", "DELETE"],
        ),
    ];
    report.evidence.privileges.entries = vec![
        privilege("public.note_view", "SELECT", true, true),
        privilege("public.notes", "SELECT", true, true),
        privilege("public.notes", "INSERT", true, true),
        privilege("public.notes", "UPDATE", true, true),
        privilege("public.notes", "DELETE", true, false),
        privilege("public.notes", "TRUNCATE", false, false),
    ];
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_report_renders_one_escaped_self_contained_page() {
        let html = render(&small_report());
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("0b5c6a1e-1111"), "UUIDs are redacted");
        assert_eq!(html.matches("<td class=\"leak\"").count(), 1 + 2);
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| insta::assert_snapshot!("access-html-small", html));
    }

    #[test]
    fn a_cell_no_probe_looked_at_comes_from_the_privilege_matrix() {
        let report = small_report();
        let shown = |rel, context, command| cell(&report, rel, context, command).class;
        use AccessContext::*;
        assert_eq!(shown("public.notes", OwnTenant, "SELECT"), "allowed");
        // DELETE is held but not declared.
        assert_eq!(shown("public.notes", OwnTenant, "DELETE"), "leak");
        assert_eq!(shown("public.notes", OtherTenant, "DELETE"), "leak");
        assert_eq!(shown("public.notes", NoContext, "UPDATE"), "none");
        assert_eq!(shown("public.note_view", OtherTenant, "INSERT"), "blocked");
        assert_eq!(
            shown("public.note_view", NoContext, "SELECT"),
            "inconclusive"
        );
    }
}
