//! Where a project's objects come from: the migration file and line of the statement that
//! created each relation, policy and function, enabled or forced row-level security, granted
//! on each object, or last altered a relation. Read from the SQL text alone, in the order the
//! migrations are applied, so the evidence (`results.sarif`) can point a finding at a line.
//!
//! Names are written as `format('%I.%I', schema, name)` writes them, as the catalog and the
//! findings name objects: unquoted identifiers folded to lower case, quoted ones kept, an
//! unqualified name in the first schema of the file's `SET search_path` (else `public`).
//! `CREATE OR REPLACE` and every `GRANT` and `ALTER` replace an earlier origin (the last one
//! wins); `CREATE ... IF NOT EXISTS` keeps one (the later statement does nothing); `DROP`
//! forgets it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::migrations::script::Statement;

/// A statement in a migration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The file, relative to the project's directory (the directory of `rlsgate.toml`), with
    /// `/` between components.
    pub file: String,
    /// The 1-based line the statement starts on.
    pub line: usize,
}

/// What each object's origin is, by key: `relation public.t` (created), `rls public.t`
/// (row-level security last switched: enabled, disabled, forced, not forced), `policy public.t
/// name`, `rows public.t` (the last change of its row security: a policy created, altered or
/// dropped, or `rls`), `function public.f`,
/// `grant public.t`, `grant function public.f`, `grant schema public`, `grant all-tables
/// public` (`ON ALL TABLES IN SCHEMA`), `altered public.t` (the last `CREATE` or `ALTER` of
/// the relation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origins {
    /// The project's directory relative to the root of the repository that holds it (`""` at
    /// the root), when it is in one: what turns a file into a path code scanning can show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Origins by key.
    pub objects: BTreeMap<String, Origin>,
}

impl Origins {
    /// True when nothing was recorded (an existing database, or the built-in system).
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The origin of `key`.
    pub fn get(&self, key: &str) -> Option<&Origin> {
        self.objects.get(key)
    }

    /// `file` as a path from the repository's root, when the project is in a repository;
    /// else as it is (relative to the project).
    pub fn repository_path(&self, file: &str) -> String {
        match &self.root {
            Some(root) => normalize(&Path::new(root).join(file)),
            None => file.to_string(),
        }
    }

    /// Record the objects `statements` (one file's, at `file`) create, in order.
    pub fn record(&mut self, file: &str, statements: &[Statement]) {
        let mut schema = "public".to_string();
        for s in statements {
            let tokens = tokens(s.code());
            if let Some(first) = search_path(&tokens) {
                schema = first;
                continue;
            }
            let at = Origin {
                file: file.to_string(),
                line: s.line,
            };
            for effect in effects(&tokens, &schema) {
                match effect {
                    Effect::Set(key) => {
                        self.objects.insert(key, at.clone());
                    }
                    Effect::Keep(key) => {
                        self.objects.entry(key).or_insert_with(|| at.clone());
                    }
                    Effect::Forget(prefix) => self.objects.retain(|k, _| !is_of(k, &prefix)),
                }
            }
        }
    }
}

/// True when `key` is `prefix` or an object under it (`policy public.t p` under `public.t`).
fn is_of(key: &str, prefix: &str) -> bool {
    key == prefix || key.starts_with(&format!("{prefix} "))
}

/// The directory `base` relative to the root of the git repository holding it, when there is
/// one (a `.git` directory or file in it or above it).
pub fn repository_root(base: &Path) -> Option<String> {
    let base = base.canonicalize().ok()?;
    let root = base.ancestors().find(|d| d.join(".git").exists())?;
    Some(normalize(base.strip_prefix(root).ok()?))
}

/// `path` relative to `base` when it is under it (lexically: `dir/../x` is `x`), else as it is,
/// with `/` between components.
pub fn relative(path: &Path, base: &Path) -> String {
    let (p, b) = (normalize(path), normalize(base));
    let (p, b) = (Path::new(&p), Path::new(&b));
    match p.strip_prefix(b) {
        Ok(rest) => normalize(rest),
        Err(_) => {
            // A sibling of the project (`../migrations`): climb out of `base` first.
            let common = p
                .components()
                .zip(b.components())
                .take_while(|(x, y)| x == y)
                .count();
            if common == 0 {
                return normalize(p);
            }
            let mut out = PathBuf::new();
            for _ in b.components().skip(common) {
                out.push("..");
            }
            out.extend(p.components().skip(common));
            normalize(&out)
        }
    }
}

/// `path` with `.` dropped and `x/..` folded where `x` is a name, `/`-separated.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut absolute = false;
    for c in path.components() {
        match c {
            Component::RootDir => absolute = true,
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if parts.last().is_some_and(|p| p != "..") {
                    parts.pop();
                } else {
                    parts.push("..".into());
                }
            }
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// What a statement does to the origins.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    /// This statement is the key's origin now.
    Set(String),
    /// This statement is the key's origin unless it has one.
    Keep(String),
    /// The object is gone: forget it and what is under it.
    Forget(String),
}

/// One token of a statement: a word (keywords uppercased, names folded), a quoted
/// identifier, or a punctuation character. Strings, comments and dollar-quoted bodies are
/// skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word, as written.
    Word(String),
    /// A quoted identifier, unquoted.
    Quoted(String),
    /// Any other character that is not whitespace.
    Punct(char),
}

impl Token {
    /// True when this is the keyword `kw` (uppercase).
    fn is(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// The identifier this token names, as PostgreSQL reads it.
    fn ident(&self) -> Option<String> {
        match self {
            Token::Word(w) => Some(w.to_lowercase()),
            Token::Quoted(q) => Some(q.clone()),
            Token::Punct(_) => None,
        }
    }
}

/// The tokens of `sql`.
fn tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' || c == '\'' {
            let (text, end) = quoted(&chars, i);
            if c == '"' {
                out.push(Token::Quoted(text));
            }
            i = end;
        } else if c == '$' && dollar_tag(&chars, i).is_some() {
            let tag: Vec<char> = dollar_tag(&chars, i).unwrap_or_default().chars().collect();
            i += tag.len();
            while i < chars.len() && !chars[i..].starts_with(&tag) {
                i += 1;
            }
            i += tag.len();
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                i += 1;
            }
            // A string's prefix (E'..'): the string is skipped next.
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// The text of the quoted string or identifier opened at `start`, and the index after it.
fn quoted(chars: &[char], start: usize) -> (String, usize) {
    let q = chars[start];
    let backslash = q == '\'' && start > 0 && matches!(chars[start - 1], 'E' | 'e');
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if backslash && c == '\\' {
            i += 2;
            continue;
        }
        if c == q {
            if chars.get(i + 1) == Some(&q) {
                text.push(q);
                i += 2;
                continue;
            }
            return (text, i + 1);
        }
        text.push(c);
        i += 1;
    }
    (text, i)
}

/// The dollar-quote tag (`$$`, `$fn$`) opening at `i`, if one does.
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    let tag: String = chars[i..=j.min(chars.len() - 1)].iter().collect();
    let opens = chars.get(j) == Some(&'$') && !chars.get(i + 1).is_some_and(char::is_ascii_digit);
    opens.then_some(tag)
}

/// `name` as `format('%I', name)` writes it: quoted unless it is a plain lower-case
/// identifier.
fn ident_text(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        crate::sql::quote_ident(name)
    }
}

/// The qualified name starting at `tokens[i]`, written as the catalog writes it (`schema`
/// for an unqualified one), and the index after it.
fn name_at(tokens: &[Token], i: usize, schema: &str) -> Option<(String, usize)> {
    let mut parts = vec![tokens.get(i)?.ident()?];
    let mut j = i + 1;
    while tokens.get(j) == Some(&Token::Punct('.')) {
        parts.push(tokens.get(j + 1)?.ident()?);
        j += 2;
    }
    let name = match parts.as_slice() {
        [name] => format!("{}.{}", ident_text(schema), ident_text(name)),
        [.., s, name] => format!("{}.{}", ident_text(s), ident_text(name)),
        [] => return None,
    };
    Some((name, j))
}

/// The index after the keywords `kws` when they follow at `i` (all of them), else `i`.
fn skip(tokens: &[Token], i: usize, kws: &[&str]) -> usize {
    let all = kws
        .iter()
        .enumerate()
        .all(|(k, kw)| tokens.get(i + k).is_some_and(|t| t.is(kw)));
    if all { i + kws.len() } else { i }
}

/// The first schema of `SET [SESSION | LOCAL] search_path {TO | =} ...`, when the statement
/// is one.
fn search_path(tokens: &[Token]) -> Option<String> {
    if !tokens.first()?.is("SET") {
        return None;
    }
    let mut i = 1;
    if tokens
        .get(i)
        .is_some_and(|t| t.is("SESSION") || t.is("LOCAL"))
    {
        i += 1;
    }
    if !tokens.get(i)?.is("search_path") {
        return None;
    }
    i += 1;
    if tokens
        .get(i)
        .is_some_and(|t| t.is("TO") || *t == Token::Punct('='))
    {
        i += 1;
    }
    // '$user' is a string (skipped); the first identifier left is the first schema.
    tokens[i..].iter().find_map(Token::ident)
}

/// What the statement of `tokens` does to the origins, unqualified names in `schema`.
fn effects(tokens: &[Token], schema: &str) -> Vec<Effect> {
    let Some(first) = tokens.first() else {
        return Vec::new();
    };
    let result = if first.is("CREATE") {
        create(tokens, schema)
    } else if first.is("ALTER") {
        alter(tokens, schema)
    } else if first.is("GRANT") {
        grant(tokens, schema)
    } else if first.is("DROP") {
        drop(tokens, schema)
    } else {
        None
    };
    result.unwrap_or_default()
}

/// `CREATE [OR REPLACE] [TEMP | UNLOGGED | ...] {TABLE | VIEW | MATERIALIZED VIEW | FOREIGN
/// TABLE | FUNCTION | PROCEDURE | POLICY} ...`.
fn create(tokens: &[Token], schema: &str) -> Option<Vec<Effect>> {
    let mut i = skip(tokens, 1, &["OR", "REPLACE"]);
    let replace = i > 1;
    while tokens.get(i).is_some_and(|t| {
        [
            "TEMP",
            "TEMPORARY",
            "UNLOGGED",
            "GLOBAL",
            "LOCAL",
            "RECURSIVE",
            "FOREIGN",
        ]
        .iter()
        .any(|kw| t.is(kw))
    }) {
        i += 1;
    }
    i = skip(tokens, i, &["MATERIALIZED"]);
    let what = tokens.get(i)?;
    if what.is("POLICY") {
        let (policy, j) = (tokens.get(i + 1)?.ident()?, i + 2);
        if !tokens.get(j)?.is("ON") {
            return None;
        }
        let (table, _) = name_at(tokens, j + 1, schema)?;
        return Some(policy_effects(&table, &policy));
    }
    let function = what.is("FUNCTION") || what.is("PROCEDURE");
    if !(function || what.is("TABLE") || what.is("VIEW")) {
        return None;
    }
    let at = skip(tokens, i + 1, &["IF", "NOT", "EXISTS"]);
    let if_not_exists = at > i + 1;
    let (name, _) = name_at(tokens, at, schema)?;
    if function {
        return Some(vec![Effect::Set(format!("function {name}"))]);
    }
    let created = format!("relation {name}");
    Some(if if_not_exists && !replace {
        vec![
            Effect::Keep(created),
            Effect::Keep(format!("altered {name}")),
        ]
    } else {
        vec![Effect::Set(created), Effect::Set(format!("altered {name}"))]
    })
}

/// A policy created or altered: its own origin, and the last change of `table`'s row security.
fn policy_effects(table: &str, policy: &str) -> Vec<Effect> {
    vec![
        Effect::Set(format!("policy {table} {}", ident_text(policy))),
        Effect::Set(format!("rows {table}")),
    ]
}

/// `ALTER {TABLE | VIEW | MATERIALIZED VIEW | FOREIGN TABLE} [IF EXISTS] [ONLY] name ...`:
/// the relation altered, and where row-level security is switched (enabled, disabled, forced,
/// no longer forced); `ALTER POLICY name ON table`.
fn alter(tokens: &[Token], schema: &str) -> Option<Vec<Effect>> {
    let mut i = skip(tokens, 1, &["MATERIALIZED"]);
    i = skip(tokens, i, &["FOREIGN"]);
    let what = tokens.get(i)?;
    if what.is("POLICY") {
        let policy = tokens.get(i + 1)?.ident()?;
        if !tokens.get(i + 2)?.is("ON") {
            return None;
        }
        let (table, _) = name_at(tokens, i + 3, schema)?;
        return Some(policy_effects(&table, &policy));
    }
    if !(what.is("TABLE") || what.is("VIEW")) {
        return None;
    }
    i = skip(tokens, i + 1, &["IF", "EXISTS"]);
    i = skip(tokens, i, &["ONLY"]);
    let (name, rest) = name_at(tokens, i, schema)?;
    let mut out = vec![Effect::Set(format!("altered {name}"))];
    // ENABLE, DISABLE, FORCE or NO FORCE ROW LEVEL SECURITY.
    let rls = (rest..tokens.len()).any(|j| {
        ["ENABLE", "DISABLE", "FORCE"]
            .iter()
            .any(|kw| tokens[j].is(kw))
            && skip(tokens, j + 1, &["ROW", "LEVEL", "SECURITY"]) == j + 4
    });
    if rls {
        out.push(Effect::Set(format!("rls {name}")));
        out.push(Effect::Set(format!("rows {name}")));
    }
    Some(out)
}

/// `GRANT privileges ON [TABLE | SEQUENCE | FUNCTION | PROCEDURE | ROUTINE | SCHEMA] names
/// TO ...` and `GRANT ... ON ALL TABLES IN SCHEMA names TO ...` (a grant of roles, `GRANT r
/// TO u`, has no `ON` and no origin here).
fn grant(tokens: &[Token], schema: &str) -> Option<Vec<Effect>> {
    let on = tokens.iter().position(|t| t.is("ON"))?;
    let mut i = on + 1;
    let kind = if tokens.get(i)?.is("ALL") {
        // ON ALL {TABLES | SEQUENCES | FUNCTIONS} IN SCHEMA s, ...
        i = skip(tokens, i + 2, &["IN", "SCHEMA"]);
        "all-tables"
    } else if ["FUNCTION", "PROCEDURE", "ROUTINE"]
        .iter()
        .any(|kw| tokens[i].is(kw))
    {
        i += 1;
        "function"
    } else if tokens[i].is("SCHEMA") {
        i += 1;
        "schema"
    } else {
        i = skip(tokens, i, &["TABLE"]);
        i = skip(tokens, i, &["SEQUENCE"]);
        "relation"
    };
    let mut out = Vec::new();
    while i < tokens.len() && !tokens[i].is("TO") {
        let key = if matches!(kind, "all-tables" | "schema") {
            let name = ident_text(&tokens[i].ident()?);
            i += 1;
            format!("grant {kind} {name}")
        } else {
            let (name, j) = name_at(tokens, i, schema)?;
            i = skip_arguments(tokens, j);
            match kind {
                "function" => format!("grant function {name}"),
                _ => format!("grant {name}"),
            }
        };
        out.push(Effect::Set(key));
        if tokens.get(i) == Some(&Token::Punct(',')) {
            i += 1;
        }
    }
    Some(out)
}

/// The index after a parenthesized argument list at `i`, if one is there.
fn skip_arguments(tokens: &[Token], i: usize) -> usize {
    if tokens.get(i) != Some(&Token::Punct('(')) {
        return i;
    }
    let mut depth = 0;
    for (j, t) in tokens.iter().enumerate().skip(i) {
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// `DROP {TABLE | VIEW | MATERIALIZED VIEW | FUNCTION | PROCEDURE} [IF EXISTS] names` and
/// `DROP POLICY [IF EXISTS] name ON table`.
fn drop(tokens: &[Token], schema: &str) -> Option<Vec<Effect>> {
    let mut i = skip(tokens, 1, &["MATERIALIZED"]);
    i = skip(tokens, i, &["FOREIGN"]);
    let what = tokens.get(i)?;
    let at = skip(tokens, i + 1, &["IF", "EXISTS"]);
    if what.is("POLICY") {
        let policy = tokens.get(at)?.ident()?;
        let (table, _) = name_at(tokens, at + 2, schema)?;
        return Some(vec![
            Effect::Forget(format!("policy {table} {}", ident_text(&policy))),
            Effect::Set(format!("rows {table}")),
        ]);
    }
    let function = what.is("FUNCTION") || what.is("PROCEDURE");
    if !(function || what.is("TABLE") || what.is("VIEW")) {
        return None;
    }
    let mut out = Vec::new();
    let mut j = at;
    while let Some((name, next)) = name_at(tokens, j, schema) {
        if function {
            out.push(Effect::Forget(format!("function {name}")));
            out.push(Effect::Forget(format!("grant function {name}")));
        } else {
            for kind in ["relation", "altered", "rls", "grant", "rows"] {
                out.push(Effect::Forget(format!("{kind} {name}")));
            }
            out.push(Effect::Forget(format!("policy {name}")));
        }
        j = skip_arguments(tokens, next);
        if tokens.get(j) != Some(&Token::Punct(',')) {
            break;
        }
        j += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::script::split;

    /// The origins of `files` (name, SQL), applied in order.
    fn origins(files: &[(&str, &str)]) -> Origins {
        let mut origins = Origins::default();
        for (file, sql) in files {
            origins.record(file, &split(sql).unwrap());
        }
        origins
    }

    /// `key`'s origin as `file:line`.
    fn at(origins: &Origins, key: &str) -> String {
        origins
            .get(key)
            .map(|o| format!("{}:{}", o.file, o.line))
            .unwrap_or_else(|| format!("no origin for {key} in {:?}", origins.objects.keys()))
    }

    #[test]
    fn each_kind_of_statement_gives_its_objects_origin() {
        let o = origins(&[(
            "m/0001.sql",
            "-- tenants\nCREATE TABLE tenants (id uuid PRIMARY KEY);\n\
             CREATE TABLE IF NOT EXISTS app.Items (\n  id int,\n  note text DEFAULT 'CREATE TABLE x'\n);\n\
             CREATE MATERIALIZED VIEW IF NOT EXISTS app.totals AS SELECT 1;\n\
             CREATE OR REPLACE VIEW \"App\".\"Open Items\" AS SELECT 1;\n\
             CREATE UNLOGGED TABLE scratch (x int);\n\
             CREATE FUNCTION app.touch(a uuid) RETURNS trigger LANGUAGE plpgsql AS $$\n\
             BEGIN GRANT SELECT ON nothing TO nobody; END $$;\n\
             CREATE PROCEDURE app.tidy() LANGUAGE sql AS 'SELECT 1';\n\
             ALTER TABLE ONLY app.items ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;\n\
             CREATE POLICY \"Tenant\" ON app.items USING (true);\n\
             CREATE POLICY items_write ON app.items FOR INSERT WITH CHECK (true);\n\
             GRANT SELECT, INSERT ON TABLE app.items, tenants TO app_user;\n\
             GRANT EXECUTE ON FUNCTION app.touch(uuid), app.tidy() TO app_user;\n\
             GRANT USAGE ON SCHEMA app TO app_user;\n\
             GRANT SELECT ON ALL TABLES IN SCHEMA app TO reader;\n\
             GRANT app_role TO app_user;\n",
        )]);
        for (key, want) in [
            ("relation public.tenants", "m/0001.sql:2"),
            ("relation app.items", "m/0001.sql:3"),
            ("relation app.totals", "m/0001.sql:7"),
            ("relation \"App\".\"Open Items\"", "m/0001.sql:8"),
            ("relation public.scratch", "m/0001.sql:9"),
            ("function app.touch", "m/0001.sql:10"),
            ("function app.tidy", "m/0001.sql:12"),
            ("rls app.items", "m/0001.sql:13"),
            ("altered app.items", "m/0001.sql:13"),
            ("policy app.items \"Tenant\"", "m/0001.sql:14"),
            ("policy app.items items_write", "m/0001.sql:15"),
            ("rows app.items", "m/0001.sql:15"),
            ("grant app.items", "m/0001.sql:16"),
            ("grant public.tenants", "m/0001.sql:16"),
            ("grant function app.touch", "m/0001.sql:17"),
            ("grant function app.tidy", "m/0001.sql:17"),
            ("grant schema app", "m/0001.sql:18"),
            ("grant all-tables app", "m/0001.sql:19"),
        ] {
            assert_eq!(at(&o, key), want, "{key}");
        }
        // Nothing from the string, the function body or the grant of a role.
        assert!(o.get("relation public.x").is_none());
        assert!(o.get("grant public.nothing").is_none());
        assert_eq!(o.objects.len(), 22, "{:?}", o.objects.keys());
    }

    #[test]
    fn or_replace_and_alter_win_if_not_exists_keeps_and_drop_forgets() {
        let o = origins(&[
            (
                "a.sql",
                "CREATE TABLE t (x int);\nCREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql;\n\
                 CREATE VIEW v AS SELECT 1;\nCREATE POLICY p ON t USING (true);\nCREATE TABLE gone (x int);\n\
                 ALTER TABLE gone ENABLE ROW LEVEL SECURITY;",
            ),
            (
                "b.sql",
                "\n\nCREATE TABLE IF NOT EXISTS t (x int);\n\
                 CREATE OR REPLACE FUNCTION public.f() RETURNS int AS 'SELECT 2' LANGUAGE sql;\n\
                 ALTER VIEW v RESET (security_invoker);\nDROP POLICY IF EXISTS p ON t;\n\
                 DROP TABLE IF EXISTS gone, other CASCADE;",
            ),
        ]);
        assert_eq!(at(&o, "relation public.t"), "a.sql:1");
        assert_eq!(at(&o, "function public.f"), "b.sql:4");
        assert_eq!(at(&o, "relation public.v"), "a.sql:3");
        assert_eq!(at(&o, "altered public.v"), "b.sql:5");
        for gone in [
            "policy public.t p",
            "relation public.gone",
            "rls public.gone",
        ] {
            assert!(o.get(gone).is_none(), "{gone} forgotten");
        }
        // Dropping a policy changes what rows a tenant reaches.
        assert_eq!(at(&o, "rows public.t"), "b.sql:6");
    }

    #[test]
    fn disabling_row_level_security_is_the_last_change_of_the_tables_rows() {
        let o = origins(&[
            (
                "V3__rls.sql",
                "ALTER TABLE lines ENABLE ROW LEVEL SECURITY;\nCREATE POLICY p ON lines USING (true);",
            ),
            (
                "break/V100__break.sql",
                "-- broken\nALTER TABLE public.lines NO FORCE ROW LEVEL SECURITY;\n\
                 ALTER TABLE IF EXISTS public.lines DISABLE ROW LEVEL SECURITY;",
            ),
        ]);
        assert_eq!(at(&o, "rls public.lines"), "break/V100__break.sql:3");
        assert_eq!(at(&o, "rows public.lines"), "break/V100__break.sql:3");
        assert_eq!(at(&o, "policy public.lines p"), "V3__rls.sql:2");
    }

    #[test]
    fn unqualified_names_follow_the_files_search_path() {
        let o = origins(&[
            (
                "a.sql",
                "SET search_path TO '$user', billing, public;\nCREATE TABLE invoices (x int);",
            ),
            ("b.sql", "CREATE TABLE invoices (x int);"),
        ]);
        assert_eq!(at(&o, "relation billing.invoices"), "a.sql:2");
        assert_eq!(at(&o, "relation public.invoices"), "b.sql:1");
    }

    #[test]
    fn paths_are_relative_to_the_project_and_to_the_repository() {
        let base = Path::new("/repo/examples/saas/broken");
        assert_eq!(
            relative(&base.join("../migrations/0001_t.sql"), base),
            "../migrations/0001_t.sql"
        );
        assert_eq!(relative(&base.join("./break/x.sql"), base), "break/x.sql");
        let origins = Origins {
            root: Some("examples/saas/broken".into()),
            objects: BTreeMap::new(),
        };
        assert_eq!(
            origins.repository_path("../migrations/0001_t.sql"),
            "examples/saas/migrations/0001_t.sql"
        );
        assert_eq!(
            Origins::default().repository_path("break/x.sql"),
            "break/x.sql"
        );
    }
}
