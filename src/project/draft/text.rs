//! The draft's text: `rlsgate.toml` with a comment on every guess (what it was guessed from),
//! the privilege matrix grouped (tenant tables, the dead-letter table, views, other relations,
//! sequences, functions) and marked for confirmation, and the keys rlsgate.toml has beyond
//! these as commented hints; and the summary printed to stderr.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Analysis;
use crate::catalog::privileges::{
    DATABASE_PRIVILEGES, ObjectKind, PrivilegeEntry, RELATION_PRIVILEGES, SCHEMA_PRIVILEGES,
    SEQUENCE_PRIVILEGES,
};

const CONFIRM: &str = "confirm: the runtime holds this today";

/// A TOML string.
fn s(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// A TOML array of strings.
fn list<S: AsRef<str>>(values: &[S]) -> String {
    let items: Vec<String> = values.iter().map(|v| s(v.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// The draft `rlsgate.toml`.
pub(crate) fn render(a: &Analysis) -> String {
    let mut out = String::from(
        "# Drafted by `rlsgate init`. Every value below was guessed from the catalog, and the\n\
         # comments say from what: review each before you rely on the file. Above all review\n\
         # [privileges]: it declares what the runtime holds today, so `rlsgate check` reports no\n\
         # least-privilege difference until you remove what the runtime should not hold.\n\
         # docs/project.md documents every key.\n\n",
    );
    schema(&mut out, a);
    roles(&mut out, a);
    tenant(&mut out, a);
    privileges(&mut out, a);
    if let Some(d) = &a.dlq {
        let _ = writeln!(out, "[dlq]\n# {}\ntable = {}\n", d.why, s(&d.value));
    } else {
        out.push_str("# [dlq]: no table is named like a dead-letter table and open to the runtime's\n# INSERT; name yours if the application records failures:\n# table = \"public.failed_jobs\"\n\n");
    }
    out.push_str(
        "# A finding the project accepts by design, with its reason (docs/project.md):\n\
         # [[accept]]\n# invariant = \"side-channels\"\n# relation = \"public.invitations\"\n\
         # reason = \"invitation codes are long random tokens\"\n",
    );
    wrap_comments(&out)
}

/// `text` with comment lines longer than 100 characters wrapped at words.
fn wrap_comments(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let Some(comment) = line.strip_prefix("# ").filter(|_| line.len() > 100) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let mut current = String::from("#");
        for word in comment.split(' ') {
            if current.len() + 1 + word.len() > 100 && current.len() > 1 {
                out.push_str(&current);
                out.push('\n');
                current = String::from("#");
            }
            current.push(' ');
            current.push_str(word);
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}

fn schema(out: &mut String, a: &Analysis) {
    out.push_str("[schema]\n");
    if !a.migrations.is_empty() {
        let dirs: Vec<String> = a
            .migrations
            .iter()
            .map(|d| {
                let path = s(&d.path.to_string_lossy());
                match d.format {
                    Some(f) => format!("{{ path = {path}, format = {} }}", s(f.as_str())),
                    None => path,
                }
            })
            .collect();
        let _ = writeln!(out, "migrations = [{}]", dirs.join(", "));
    }
    let _ = writeln!(
        out,
        "# {}\nschemas = {}\n# exclude = [\"public.schema_migrations\"]\n",
        a.schemas.why,
        list(&a.schemas.value)
    );
}

fn roles(out: &mut String, a: &Analysis) {
    let _ = writeln!(
        out,
        "[roles]\n# admin: {}\nadmin = {}\n# runtime: {}\nruntime = {}",
        a.admin.why,
        s(&a.admin.value),
        a.runtime.why,
        s(&a.runtime.value)
    );
    if !a.groups.is_empty() {
        let _ = writeln!(
            out,
            "# the other roles the migrations name: rlsgate creates them (NOLOGIN) before applying them\ngroups = {}",
            list(&a.groups)
        );
    }
    if !a.runtime_member_of.value.is_empty() {
        let _ = writeln!(
            out,
            "# {}\nruntime_member_of = {}",
            a.runtime_member_of.why,
            list(&a.runtime_member_of.value)
        );
    }
    if a.migrations.is_empty() {
        out.push_str("# The variable holding the runtime's login URL (else --runtime-url):\n# runtime_url_env = \"APP_RUNTIME_URL\"\n");
    }
    out.push('\n');
}

fn tenant(out: &mut String, a: &Analysis) {
    let _ = writeln!(
        out,
        "[tenant]\n# setting: {}\nsetting = {}\n# How the application sets it in each transaction, if not with set_config:\n# set_context = {}\n# columns: {}\ncolumns = {}",
        a.setting.why,
        s(&a.setting.value),
        s(&format!(
            "SELECT set_config('{}', $1, true)",
            a.setting.value
        )),
        a.columns.why,
        list(&a.columns.value)
    );
    match &a.tenant_table {
        Some(t) => {
            let _ = writeln!(
                out,
                "# table and key: {}\ntable = {}\nkey = {}",
                t.why,
                s(&t.value.0),
                s(&t.value.1)
            );
        }
        None => out.push_str(
            "# No tenant column references a table: name the table tenants live in, if any.\n# table = \"public.tenants\"\n# key = \"id\"\n",
        ),
    }
    let tables: Vec<_> = a
        .relations
        .iter()
        .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p') && !r.is_partition)
        .collect();
    if !tables.is_empty() && tables.iter().all(|r| r.rls_forced) {
        let _ = writeln!(
            out,
            "# every tenant table ({}) forces row-level security today: keep it so\nrequire_forced_rls = true\n",
            tables.len()
        );
    } else {
        out.push_str("# FORCE ROW LEVEL SECURITY required on every tenant table (some do not force it today):\n# require_forced_rls = true\n\n");
    }
}

/// The relations' groups, in the order they are written.
const GROUPS: [&str; 4] = [
    "tenant tables",
    "the dead-letter table",
    "views",
    "other relations",
];

fn group_of(a: &Analysis, name: &str) -> usize {
    if a.dlq.as_ref().is_some_and(|d| d.value == name) {
        return 1;
    }
    match a.relations.iter().find(|r| r.name == name) {
        Some(r) if matches!(r.kind, 'v' | 'm') => 2,
        Some(r) if r.is_tenant_relation() => 0,
        _ => 3,
    }
}

/// The privileges held, by object, of one kind.
fn held(a: &Analysis, kind: ObjectKind) -> BTreeMap<&str, Vec<&PrivilegeEntry>> {
    let mut out: BTreeMap<&str, Vec<&PrivilegeEntry>> = BTreeMap::new();
    for e in a
        .matrix
        .entries
        .iter()
        .filter(|e| e.object_kind == kind && e.granted)
    {
        out.entry(e.object.as_str()).or_default().push(e);
    }
    out
}

/// Privileges in the order PostgreSQL's documentation lists them.
fn ordered(entries: &[&PrivilegeEntry]) -> Vec<String> {
    let order = RELATION_PRIVILEGES
        .iter()
        .chain(&SEQUENCE_PRIVILEGES)
        .chain(&SCHEMA_PRIVILEGES)
        .chain(&DATABASE_PRIVILEGES);
    let mut out: Vec<String> = Vec::new();
    for p in order {
        if entries.iter().any(|e| e.privilege == *p) && !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    }
    for e in entries {
        if !out.contains(&e.privilege) {
            out.push(e.privilege.clone());
        }
    }
    out
}

/// An entry of the matrix, with what a reviewer should look at twice.
fn entry_line(object: &str, entries: &[&PrivilegeEntry], dlq: bool) -> String {
    let privileges = ordered(entries);
    let holds = |p: &str| privileges.iter().any(|h| h == p);
    let mut review = Vec::new();
    if entries.iter().any(|e| e.grantable) {
        review.push(
            "held WITH GRANT OPTION (or as owner): least-privilege flags it whatever is declared",
        );
    }
    if holds("CREATE") {
        review.push("CREATE on a schema lets the runtime create objects (runtime-lacks-ddl)");
    }
    if holds("TRUNCATE") {
        review.push("TRUNCATE ignores row-level security");
    }
    if dlq && (holds("UPDATE") || holds("DELETE")) {
        review.push("with UPDATE or DELETE the runtime can alter or erase recorded failures");
    }
    let line = format!("{} = {}", s(object), list(&privileges));
    if review.is_empty() {
        line
    } else {
        format!("# review: {}\n{line}", review.join("; "))
    }
}

fn privileges(out: &mut String, a: &Analysis) {
    let database: Vec<String> = held(a, ObjectKind::Database)
        .into_values()
        .flat_map(|e| ordered(&e))
        .collect();
    let review = if database.iter().any(|p| p == "TEMPORARY" || p == "CREATE") {
        "# review: TEMPORARY (PUBLIC's default on a database) and CREATE let the runtime create \
         objects, which runtime-lacks-ddl reports whatever is declared; REVOKE them\n"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "[privileges]\n# The runtime's effective privileges today (grants to it, to its groups and to PUBLIC),\n# as the declared matrix; {CONFIRM}, and remove what it should not hold.\nmemberships = {}\n{review}database = {}\n",
        list(&a.memberships),
        list(&database)
    );
    out.push_str("[privileges.schemas]\n");
    for (object, entries) in held(a, ObjectKind::Schema) {
        let _ = writeln!(out, "{}", entry_line(object, &entries, false));
    }
    out.push_str("\n[privileges.relations]\n");
    let relations = held(a, ObjectKind::Relation);
    for (i, group) in GROUPS.iter().enumerate() {
        let rows: Vec<String> = relations
            .iter()
            .filter(|(o, _)| group_of(a, o) == i)
            .map(|(o, e)| entry_line(o, e, i == 1))
            .collect();
        if !rows.is_empty() {
            let _ = writeln!(out, "# {group} ({CONFIRM})\n{}", rows.join("\n"));
        }
    }
    for (kind, title, note) in [
        (ObjectKind::Sequence, "sequences", ""),
        (
            ObjectKind::Function,
            "functions",
            "\n# EXECUTE through PUBLIC's default counts: revoke it from functions the runtime should not call",
        ),
    ] {
        let rows = held(a, kind);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n[privileges.{title}]\n# {CONFIRM}{note}");
        for (o, e) in rows {
            let _ = writeln!(out, "{}", entry_line(o, &e, false));
        }
    }
    out.push('\n');
}

/// What was guessed, a line each, for stderr.
pub(crate) fn summary(a: &Analysis) -> Vec<String> {
    let mut out = vec![
        format!("admin: {} ({})", a.admin.value, a.admin.why),
        format!("runtime: {} ({})", a.runtime.value, a.runtime.why),
    ];
    if !a.runtime_member_of.value.is_empty() {
        out.push(format!(
            "runtime member of: {} ({})",
            a.runtime_member_of.value.join(", "),
            a.runtime_member_of.why
        ));
    }
    out.push(format!(
        "schemas: {} ({})",
        a.schemas.value.join(", "),
        a.schemas.why
    ));
    out.push(format!(
        "tenant setting: {} ({})",
        a.setting.value, a.setting.why
    ));
    out.push(format!(
        "tenant columns: {} ({})",
        a.columns.value.join(", "),
        a.columns.why
    ));
    out.push(match &a.tenant_table {
        Some(t) => format!("tenant table: {} key {} ({})", t.value.0, t.value.1, t.why),
        None => "tenant table: none found (no tenant column references a table)".into(),
    });
    out.push(match &a.dlq {
        Some(d) => format!("dead-letter table: {} ({})", d.value, d.why),
        None => "dead-letter table: none found".into(),
    });
    let count = |k| held(a, k).len();
    out.push(format!(
        "privileges: the runtime's effective privileges on {} relation(s), {} sequence(s) and {} function(s) declared as held today: review them",
        count(ObjectKind::Relation),
        count(ObjectKind::Sequence),
        count(ObjectKind::Function)
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::catalog::privileges::{PrivilegeMatrix, entry};
    use crate::catalog::{Relation, test_table};
    use crate::project::ProjectConfig;
    use crate::project::draft::guess::Guess;

    fn guess<T>(value: T) -> Guess<T> {
        Guess {
            value,
            why: "because".into(),
        }
    }

    /// A schema of quoted names: a tenant table, a dead-letter table the runtime may alter, a
    /// view, a sequence and a function held with grant option.
    fn analysis() -> Analysis {
        let table = |name: &str, kind: char, tenant: bool| Relation {
            kind,
            tenant_column: tenant.then(|| "TenantId".to_string()),
            ..test_table(name)
        };
        let held = |kind, object: &str, privileges: &[&str]| {
            privileges
                .iter()
                .map(|p| entry(kind, object, p, true))
                .collect::<Vec<_>>()
        };
        let mut entries = [
            held(
                ObjectKind::Relation,
                "\"Sales\".\"Orders\"",
                &["DELETE", "SELECT", "TRUNCATE"],
            ),
            held(
                ObjectKind::Relation,
                "\"Sales\".failed_jobs",
                &["INSERT", "UPDATE"],
            ),
            held(ObjectKind::Relation, "\"Sales\".totals", &["SELECT"]),
            held(ObjectKind::Sequence, "\"Sales\".seq", &["USAGE"]),
            held(ObjectKind::Function, "\"Sales\".f(uuid)", &["EXECUTE"]),
            held(ObjectKind::Schema, "Sales", &["USAGE"]),
            held(ObjectKind::Database, "db", &["TEMPORARY", "CONNECT"]),
        ]
        .concat();
        entries
            .iter_mut()
            .find(|e| e.object_kind == ObjectKind::Function)
            .unwrap()
            .grantable = true;
        Analysis {
            admin: guess("sales_owner".into()),
            runtime: guess("sales_app".into()),
            groups: vec!["sales_rw".into()],
            runtime_member_of: guess(vec!["sales_rw".into()]),
            schemas: guess(vec!["Sales".into()]),
            setting: guess("app.tenant".into()),
            columns: guess(vec!["TenantId".into()]),
            tenant_table: Some(guess(("\"Sales\".tenants".into(), "Id".into()))),
            dlq: Some(guess("\"Sales\".failed_jobs".into())),
            relations: vec![
                table("\"Sales\".\"Orders\"", 'r', true),
                table("\"Sales\".failed_jobs", 'r', true),
                table("\"Sales\".totals", 'v', true),
            ],
            matrix: PrivilegeMatrix { entries },
            memberships: vec!["sales_rw".into()],
            migrations: Vec::new(),
        }
    }

    #[test]
    fn the_draft_parses_groups_the_matrix_and_flags_what_to_review() {
        let text = render(&analysis());
        let config =
            ProjectConfig::parse(&text, Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.tenant.table.as_deref(), Some("\"Sales\".tenants"));
        assert_eq!(
            config.privileges.relations["\"Sales\".\"Orders\""],
            ["SELECT", "DELETE", "TRUNCATE"],
            "in the documentation's order"
        );
        assert_eq!(
            config.privileges.database.as_deref(),
            Some(&["CONNECT".to_string(), "TEMPORARY".to_string()][..])
        );
        assert!(
            config.tenant.require_forced_rls,
            "every tenant table forces RLS"
        );
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle}:\n{text}"))
        };
        assert!(
            at("# tenant tables") < at("# the dead-letter table")
                && at("# the dead-letter table") < at("# views")
        );
        for review in [
            "TRUNCATE ignores row-level security",
            "can alter or erase recorded failures",
            "held WITH GRANT OPTION",
            "# setting: because",
            "# review: TEMPORARY (PUBLIC's default",
        ] {
            at(review);
        }
        assert!(
            text.lines().all(|l| l.len() <= 100 || !l.starts_with('#')),
            "{text}"
        );
        let lines = summary(&analysis());
        assert!(
            lines
                .iter()
                .any(|l| l == "tenant setting: app.tenant (because)"),
            "{lines:?}"
        );
    }
}
