//! `--emit-pgtap DIR`: the probes that held, as a pgTAP suite a team keeps (`pg_prove`,
//! `supabase test db`). One file per tenant relation, plus `runtime.sql` for the role and the
//! privileges it must not hold; each file runs inside `BEGIN ... ROLLBACK` and leaves nothing.
//!
//! The tests act as the runtime (`SET LOCAL ROLE` and the project's context statement) and
//! never depend on rows rlsgate seeded: tenant A is the tenant of a row present when the suite
//! runs, B's row one of another tenant, read by the connecting role (a superuser or BYPASSRLS
//! role). A test that needs rows of two tenants is skipped (pgTAP `skip`) when there are none,
//! so the suite holds for any data and checks more the more tenants have rows. Each probe runs
//! in a `DO` block whose outcome (rows seen or affected, or the SQLSTATE) is handed to the
//! assertion, made after `RESET ROLE`, through a transaction-local setting.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::catalog::policies::{PolicyEntry, RelationKind};
use crate::catalog::privileges::ObjectKind;
use crate::error::{Error, Result};
use crate::invariants::access::{AccessCell, AccessContext, AccessOutcome};
use crate::report::Report;
use crate::sql::{quote_ident, quote_literal};

/// The prefix of the settings the tests hand values through.
const SETTING: &str = "rlsgate_pgtap";

/// One emitted file: its name and its SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgtapFile {
    /// The file name (`public.projects.sql`, `runtime.sql`).
    pub name: String,
    /// The SQL.
    pub sql: String,
}

/// The suite of `report`: a file per tenant relation with a probe that held, and
/// `runtime.sql`; empty when no probe ran as the runtime.
pub fn render(report: &Report) -> Vec<PgtapFile> {
    let mut files = Vec::new();
    if report.access.is_empty() {
        return files;
    }
    for entry in report
        .evidence
        .policies
        .iter()
        .filter(|p| p.partition_of.is_none() && !p.tenant_column.is_empty())
    {
        let tests = relation_tests(report, entry);
        if tests.iter().any(|t| t.probe) {
            files.push(file(
                report,
                &entry.relation,
                &relation_header(entry),
                &tests,
            ));
        }
    }
    let tests = runtime_tests(report);
    if !tests.is_empty() {
        files.push(PgtapFile {
            name: "runtime.sql".into(),
            sql: frame(report, RUNTIME_HEADER, &tests),
        });
    }
    files
}

/// Write the suite of `report` into `dir` (created if missing); the paths written.
///
/// # Errors
/// An I/O error naming the file or directory.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut written = Vec::new();
    for f in render(report) {
        let path = dir.join(&f.name);
        std::fs::write(&path, f.sql)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}

/// One test: its SQL (ending with one assertion) and whether it is a probe (not a catalog
/// fact).
struct Test {
    sql: String,
    probe: bool,
}

/// A file name for `relation`: its name without quotes, other characters than letters, digits,
/// `_`, `-` and `.` as `_`.
fn file_name(relation: &str) -> String {
    let name: String = relation
        .chars()
        .filter(|c| *c != '"')
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}.sql")
}

fn file(report: &Report, relation: &str, header: &str, tests: &[Test]) -> PgtapFile {
    PgtapFile {
        name: file_name(relation),
        sql: frame(report, header, tests),
    }
}

/// The header every file shares, the plan, the tests, the end.
fn frame(report: &Report, header: &str, tests: &[Test]) -> String {
    let role = &report.access.runtime_role;
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "-- {line}");
    }
    let _ = writeln!(
        out,
        "--\n-- Needs: the pgtap extension (CREATE EXTENSION pgtap), the runtime role {role}, and a\n\
         -- connection as a superuser or a BYPASSRLS role that can SET ROLE {role} (pg_prove's).\n\
         -- The tenant context is set as the project sets it: {}\n\
         -- Emitted by rlsgate from a run whose verdict was {}; it leaves nothing behind (ROLLBACK).\n",
        crate::report::one_line(&report.access.context_statement),
        report.verdict.as_str()
    );
    let _ = writeln!(out, "BEGIN;\nSELECT plan({});\n", tests.len());
    for t in tests {
        out.push_str(&t.sql);
        out.push('\n');
    }
    out.push_str("SELECT * FROM finish();\nROLLBACK;\n");
    out
}

fn relation_header(entry: &PolicyEntry) -> String {
    format!(
        "What the runtime must not do with {rel}, as rlsgate's probes found it refused: in tenant\n\
         A's context it sees none of another tenant's rows and cannot insert, update or delete\n\
         them (0 rows, or refused with 42501); with no tenant context (the setting empty) it sees\n\
         and inserts nothing; it holds no privilege on {rel} it is not declared to hold.\n\
         Tenant A is the tenant of a row of {rel} present when the suite runs ({col}); the tests\n\
         that need another tenant's row are skipped when {rel} holds rows of one tenant only.",
        rel = entry.relation,
        col = entry.tenant_column,
    )
}

const RUNTIME_HEADER: &str = "What the runtime role is not and may not do, as rlsgate read it from the catalog: it is\n\
neither a superuser nor BYPASSRLS, and holds none of the privileges below (it is not declared\n\
to hold them).";

/// The probes of `entry` that held, then the relation privileges the runtime lacks.
fn relation_tests(report: &Report, entry: &PolicyEntry) -> Vec<Test> {
    let rel = &entry.relation;
    let mut tests = vec![Test {
        sql: format!(
            "SELECT ok((SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user),\n\
             \x20         'the suite reads {} as a role that sees every row (superuser or BYPASSRLS)');\n\
             {}",
            esc(rel),
            pick(rel, &quote_ident(&entry.tenant_column))
        ),
        probe: false,
    }];
    for probe in probes(entry) {
        let Some(cell) = report
            .access
            .cell(rel, probe.context, probe.command)
            .filter(|c| c.outcome == AccessOutcome::Blocked)
        else {
            continue;
        };
        let body = match probe.body {
            Body::Sql(sql) => sql,
            Body::CopyRow(row) => match copy_row(cell, row) {
                Some(sql) => format!("{sql};\n    GET DIAGNOSTICS n = ROW_COUNT;"),
                None => continue,
            },
        };
        if probe
            .only_after
            .is_some_and(|p| !cell.probes.iter().any(|q| q == p))
        {
            continue;
        }
        tests.push(Test {
            sql: probe_test(report, probe.context, probe.needs, &body, cell, &probe.what),
            probe: true,
        });
    }
    tests.extend(
        lacking(report, ObjectKind::Relation, |o| o == rel).map(|sql| Test { sql, probe: false }),
    );
    tests
}

/// One probe of the suite: the cell whose holding it replays, the hand-over setting it needs
/// (`row_a`, `row_b`), its statement and what it proves.
struct Probe {
    context: AccessContext,
    command: &'static str,
    /// Emitted only when this probe is among the cell's (MOVE).
    only_after: Option<&'static str>,
    needs: &'static str,
    body: Body,
    what: String,
}

enum Body {
    /// Statements that set `n`.
    Sql(String),
    /// The INSERT of a copy of the row in the hand-over setting named (the cell's statement).
    CopyRow(&'static str),
}

/// The probes of `entry`, in order: reads and writes into another tenant, then with no
/// context; writes only on tables.
fn probes(entry: &PolicyEntry) -> Vec<Probe> {
    use AccessContext::{NoContext, OtherTenant};
    let rel = &entry.relation;
    let col = quote_ident(&entry.tenant_column);
    let a = format!("current_setting('{SETTING}.tenant_a')");
    let rows = "\n    GET DIAGNOSTICS n = ROW_COUNT;";
    let probe = |context, command, needs, body, what: String| Probe {
        context,
        command,
        only_after: None,
        needs,
        body,
        what,
    };
    let mut out = vec![probe(
        OtherTenant,
        "SELECT",
        "row_b",
        Body::Sql(format!(
            "SELECT count(*) INTO n FROM {rel} t WHERE t.{col}::text IS DISTINCT FROM {a};"
        )),
        format!("in tenant A's context, {rel} shows no other tenant's rows"),
    )];
    if !matches!(
        entry.kind,
        RelationKind::View | RelationKind::MaterializedView
    ) {
        out.extend([
            probe(
                OtherTenant,
                "INSERT",
                "row_b",
                Body::CopyRow("row_b"),
                format!("in tenant A's context, a copy of another tenant's row is refused by {rel}"),
            ),
            probe(
                OtherTenant,
                "UPDATE",
                "row_b",
                Body::Sql(format!(
                    "UPDATE {rel} t SET {col} = t.{col} WHERE t.{col}::text IS DISTINCT FROM {a};{rows}"
                )),
                format!("in tenant A's context, no other tenant's row of {rel} can be updated"),
            ),
            Probe {
                only_after: Some("MOVE"),
                ..probe(
                    OtherTenant,
                    "UPDATE",
                    "row_b",
                    Body::Sql(format!(
                        "UPDATE {rel} t SET {col} = (json_populate_record(NULL::{rel}, current_setting('{SETTING}.row_b')::json)).{col}\n      \
                         WHERE t.{col}::text = {a};{rows}"
                    )),
                    format!("in tenant A's context, its rows of {rel} cannot be moved to another tenant"),
                )
            },
            probe(
                OtherTenant,
                "DELETE",
                "row_b",
                Body::Sql(format!(
                    "DELETE FROM {rel} t WHERE t.{col}::text IS DISTINCT FROM {a};{rows}"
                )),
                format!("in tenant A's context, no other tenant's row of {rel} can be deleted"),
            ),
            probe(
                NoContext,
                "INSERT",
                "row_a",
                Body::CopyRow("row_a"),
                format!("with no tenant context, {rel} accepts no row"),
            ),
        ]);
    }
    out.push(probe(
        NoContext,
        "SELECT",
        "row_a",
        Body::Sql(format!(
            "SELECT count(*) INTO n FROM {rel} t WHERE t.{col} IS NOT NULL;"
        )),
        format!("with no tenant context, {rel} shows no tenant's rows"),
    ));
    out
}

/// The INSERT of a copy of the row in the hand-over setting `row`: the statement of the probe
/// that held (rlsgate's copy of a row, its `$1` the row's JSON), when it is one.
fn copy_row(cell: &AccessCell, row: &str) -> Option<String> {
    cell.statement
        .as_deref()
        .filter(|s| s.starts_with("INSERT INTO") && s.contains("$1::text::json"))
        .map(|s| {
            s.replace(
                "$1::text::json",
                &format!("current_setting('{SETTING}.{row}')::json"),
            )
        })
}

/// Pick tenant A (the smallest tenant of a row of `rel`), a row of A, and a row of another
/// tenant, as the connecting role, into the hand-over settings (empty when there is none).
fn pick(rel: &str, col: &str) -> String {
    format!(
        "DO $rlsgate$\nBEGIN\n  \
         PERFORM set_config('{SETTING}.tenant_a', coalesce((SELECT min(t.{col}::text) FROM {rel} t), ''), true);\n  \
         PERFORM set_config('{SETTING}.row_a', coalesce((SELECT row_to_json(t)::text FROM {rel} t\n      \
         WHERE t.{col}::text = current_setting('{SETTING}.tenant_a') ORDER BY t::text LIMIT 1), ''), true);\n  \
         PERFORM set_config('{SETTING}.row_b', coalesce((SELECT row_to_json(t)::text FROM {rel} t\n      \
         WHERE t.{col} IS NOT NULL AND t.{col}::text <> current_setting('{SETTING}.tenant_a') ORDER BY t::text LIMIT 1), ''), true);\n\
         END $rlsgate$;\n"
    )
}

/// A probe as the runtime in `context`, skipped when the setting `needs` names is empty: the
/// body sets `n`; the outcome is `n`, or the SQLSTATE it raised; it passes on 0 or a refusal
/// (42501, or what the probe that held was refused with).
fn probe_test(
    report: &Report,
    context: AccessContext,
    needs: &str,
    body: &str,
    cell: &AccessCell,
    what: &str,
) -> String {
    let access = &report.access;
    let set = match context {
        AccessContext::NoContext => format!(
            "PERFORM set_config({}, '', true);",
            quote_literal(&access.tenant_setting)
        ),
        _ => format!(
            "EXECUTE {} USING current_setting('{SETTING}.tenant_a');",
            quote_literal(&access.context_statement)
        ),
    };
    let mut accepted = vec!["0".to_string(), "42501".to_string()];
    for r in &cell.refusals {
        if !accepted.contains(r) {
            accepted.push(r.clone());
        }
    }
    let accepted = accepted
        .iter()
        .map(|a| quote_literal(a))
        .collect::<Vec<_>>()
        .join(", ");
    let why = match needs {
        "row_b" => format!("no other tenant has a row in {}", cell.relation),
        _ => format!("{} holds no tenant's row", cell.relation),
    };
    format!(
        "SET LOCAL ROLE {role};\n\
         DO $rlsgate$\nDECLARE n bigint;\nBEGIN\n  {set}\n  BEGIN\n    {body}\n    \
         PERFORM set_config('{SETTING}.outcome', n::text, true);\n  \
         EXCEPTION WHEN OTHERS THEN\n    PERFORM set_config('{SETTING}.outcome', SQLSTATE, true);\n  \
         END;\nEND $rlsgate$;\nRESET ROLE;\n\
         SELECT CASE WHEN current_setting('{SETTING}.{needs}') = '' THEN skip({why_lit}, 1)\n  \
         ELSE is(CASE WHEN current_setting('{SETTING}.outcome') IN ({accepted}) THEN 'refused'\n    \
         ELSE current_setting('{SETTING}.outcome') END, 'refused', {what_lit}) END;\n",
        role = quote_ident(&access.runtime_role),
        why_lit = quote_literal(&why),
        what_lit = quote_literal(what),
    )
}

/// `ok(NOT has_*_privilege(...))` for every privilege of `kind` on an object `keep` accepts
/// that the runtime neither holds nor is declared to hold.
fn lacking<'r>(
    report: &'r Report,
    kind: ObjectKind,
    keep: impl Fn(&str) -> bool + 'r,
) -> impl Iterator<Item = String> + 'r {
    let role = quote_literal(&report.access.runtime_role);
    report
        .evidence
        .privileges
        .entries
        .iter()
        .filter(move |e| e.object_kind == kind && !e.granted && !e.expected && keep(&e.object))
        .filter_map(move |e| {
            let (function, object) = match kind {
                ObjectKind::Relation => ("has_table_privilege", quote_literal(&e.object)),
                ObjectKind::Sequence => ("has_sequence_privilege", quote_literal(&e.object)),
                ObjectKind::Function => ("has_function_privilege", quote_literal(&e.object)),
                ObjectKind::Schema => ("has_schema_privilege", quote_literal(&e.object)),
                ObjectKind::Database => ("has_database_privilege", "current_database()".into()),
            };
            let object_text = match kind {
                ObjectKind::Database => "the database".to_string(),
                _ => e.object.clone(),
            };
            e.privilege
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ')
                .then(|| {
                    format!(
                        "SELECT ok(NOT {function}({role}, {object}, '{p}'), {what});\n",
                        p = e.privilege,
                        what = quote_literal(&format!(
                            "the runtime holds no {} on {object_text}",
                            e.privilege
                        )),
                    )
                })
        })
}

/// The runtime's attributes it must not have, and the privileges on other objects than
/// relations it must not hold.
fn runtime_tests(report: &Report) -> Vec<Test> {
    let identity = &report.evidence.identity;
    let role = quote_literal(&report.access.runtime_role);
    let mut tests = Vec::new();
    for (attribute, column) in [("SUPERUSER", "rolsuper"), ("BYPASSRLS", "rolbypassrls")] {
        if identity
            .attributes
            .iter()
            .any(|(a, has)| a == attribute && !has)
        {
            tests.push(format!(
                "SELECT ok(NOT (SELECT {column} FROM pg_roles WHERE rolname = {role}), {});\n",
                quote_literal(&format!("the runtime is not {attribute}"))
            ));
        }
    }
    for kind in [
        ObjectKind::Database,
        ObjectKind::Schema,
        ObjectKind::Sequence,
        ObjectKind::Function,
    ] {
        tests.extend(lacking(report, kind, |_| true));
    }
    tests
        .into_iter()
        .map(|sql| Test { sql, probe: false })
        .collect()
}

/// `s` as the inside of a single-quoted literal.
fn esc(s: &str) -> String {
    s.replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_report_emits_the_probes_that_held_per_relation() {
        let report = crate::evidence::matrix::small_report();
        let files = render(&report);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["public.note_view.sql", "public.notes.sql", "runtime.sql"]
        );
        let notes = &files[1].sql;
        // The DELETE leaked: no test claims it holds.
        assert!(!notes.contains("DELETE FROM public.notes"), "{notes}");
        assert!(notes.contains("SELECT plan(7);"), "{notes}");
        assert!(notes.contains("has_table_privilege('app_user', 'public.notes', 'TRUNCATE')"));
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
        settings.set_prepend_module_to_snapshot(false);
        for f in &files {
            settings.bind(|| insta::assert_snapshot!(format!("pgtap-small-{}", f.name), f.sql));
        }
    }

    #[test]
    fn a_report_without_probes_emits_nothing() {
        let report = Report::interrupted("check", String::new());
        assert!(render(&report).is_empty());
    }
}
