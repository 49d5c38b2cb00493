//! The policy-expression classifier: does an expression, as `pg_get_expr` prints it, bind the
//! tenant setting to the tenant column? A small tokenizer (string literals, words, quoted
//! identifiers, parentheses) so that literals never count as references and top-level OR
//! branches can be told apart.
//!
//! The setting may be read directly (`current_setting('app.tenant_id', true)`, with any casts,
//! `nullif` or `coalesce` around it) or through helper functions, in any schema and nested to any
//! depth ([`ContextReaders`], worked out from the functions' SQL and PL/pgSQL bodies). An
//! expression whose only way to the context is a function rlsgate cannot read (C, another
//! language) cannot be judged statically ([`Binding::CannotTell`]): the probes decide.

use std::collections::BTreeSet;

use crate::catalog::policies::FunctionSource;

/// The functions that read the tenant setting, directly or through other functions, and those
/// whose bodies cannot be read, by every name an expression may call them by (`schema.name` and
/// `name`, as the catalog stores them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextReaders {
    /// Functions that read the setting.
    pub reading: BTreeSet<String>,
    /// Functions whose bodies cannot be read.
    pub opaque: BTreeSet<String>,
}

impl ContextReaders {
    /// Which of `functions` read `setting`: those whose body does, then, until nothing changes,
    /// those whose body calls one that does.
    pub fn resolve(functions: &[FunctionSource], setting: &str) -> Self {
        // As stored: an unquoted name is stored in lower case, which is how `calls` reads it.
        let names = |f: &FunctionSource| [format!("{}.{}", f.schema, f.name), f.name.clone()];
        let mut out = Self::default();
        let mut bodies = Vec::new();
        for f in functions {
            match &f.definition {
                None => out.opaque.extend(names(f)),
                Some(body) if reads_setting_directly(body, setting) => out.reading.extend(names(f)),
                Some(body) => bodies.push((names(f), calls(body))),
            }
        }
        loop {
            let (now, later): (Vec<_>, Vec<_>) = bodies
                .into_iter()
                .partition(|(_, called)| called.iter().any(|c| out.reading.contains(c)));
            if now.is_empty() {
                return out;
            }
            for (names, _) in now {
                out.reading.extend(names);
            }
            bodies = later;
        }
    }

    /// Whether `text` reads `setting`, directly or through a reading function.
    pub(crate) fn reads(&self, text: &str, setting: &str) -> bool {
        reads_setting_directly(text, setting)
            || calls(text).iter().any(|c| self.reading.contains(c))
    }

    /// A function `text` calls whose body cannot be read, if any.
    fn opaque_call(&self, text: &str) -> Option<String> {
        calls(text).into_iter().find(|c| self.opaque.contains(c))
    }
}

/// How a policy expression relates to the tenant context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// It reads the tenant setting and the tenant column, and no top-level OR branch escapes
    /// the context.
    BindsContext,
    /// There is no expression: the policy matches no row for this command.
    Absent,
    /// It is always true (`true`, `1 = 1`, ...); the expression.
    TriviallyTrue(String),
    /// It does not reference the tenant column; the expression.
    NoTenantColumn(String),
    /// It does not read the tenant setting; the expression.
    NoTenantContext(String),
    /// A top-level OR branch does not read the tenant setting, so it admits rows whatever the
    /// context.
    Widened {
        /// The whole expression.
        expression: String,
        /// The branch that ignores the context.
        branch: String,
    },
    /// Whether it reads the context depends on a function whose body cannot be read: the
    /// probes decide.
    CannotTell {
        /// The whole expression.
        expression: String,
        /// The function.
        function: String,
    },
}

impl Binding {
    /// True when the expression binds the tenant context.
    pub fn binds(&self) -> bool {
        *self == Self::BindsContext
    }
}

/// Classify a policy expression as `pg_get_expr` prints it: does it bind `setting` (read with
/// `current_setting('<setting>'`) to `column`? Case-insensitive and tolerant to whitespace;
/// string literals never count as references.
///
/// # Example
///
/// ```
/// use rlsgate::policy_expression::{Binding, classify_expression};
///
/// let using = "(tenant_id = (current_setting('app.current_tenant_id'::text, true))::uuid)";
/// assert!(classify_expression(Some(using), "app.current_tenant_id", "tenant_id").binds());
/// assert_eq!(
///     classify_expression(Some("(1 = 1)"), "app.current_tenant_id", "tenant_id"),
///     Binding::TriviallyTrue("(1 = 1)".into())
/// );
/// ```
pub fn classify_expression(expression: Option<&str>, setting: &str, column: &str) -> Binding {
    classify_with(expression, setting, column, &ContextReaders::default())
}

/// [`classify_expression`], where a call of one of `readers`' reading functions reads the
/// setting too, and a call of one of its opaque functions makes an expression that does not
/// read it otherwise [`Binding::CannotTell`].
///
/// # Example
///
/// ```
/// use rlsgate::catalog::policies::FunctionSource;
/// use rlsgate::policy_expression::{ContextReaders, classify_with};
///
/// let helper = FunctionSource {
///     schema: "app".into(),
///     name: "current_tenant".into(),
///     definition: Some(
///         "CREATE FUNCTION app.current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$ \
///          SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$".into(),
///     ),
/// };
/// let readers = ContextReaders::resolve(&[helper], "app.tenant_id");
/// let using = "(tenant_id = app.current_tenant())";
/// assert!(classify_with(Some(using), "app.tenant_id", "tenant_id", &readers).binds());
/// ```
pub fn classify_with(
    expression: Option<&str>,
    setting: &str,
    column: &str,
    readers: &ContextReaders,
) -> Binding {
    let Some(expression) = expression else {
        return Binding::Absent;
    };
    let text = expression.trim().to_string();
    if is_trivially_true(&text) {
        return Binding::TriviallyTrue(text);
    }
    if !references_column(&text, column) {
        return Binding::NoTenantColumn(text);
    }
    if !readers.reads(&text, setting) {
        return match readers.opaque_call(&text) {
            Some(function) => Binding::CannotTell {
                expression: text,
                function,
            },
            None => Binding::NoTenantContext(text),
        };
    }
    if let Some(branch) = top_level_or_branches(&text)
        .into_iter()
        .find(|b| !readers.reads(b, setting))
    {
        return match readers.opaque_call(branch) {
            Some(function) => Binding::CannotTell {
                expression: text,
                function,
            },
            None => Binding::Widened {
                branch: branch.to_string(),
                expression: text,
            },
        };
    }
    Binding::BindsContext
}

/// A lexical piece of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// A string literal, quotes included.
    Literal(&'a str),
    /// An unquoted word (identifier or keyword), as written.
    Word(&'a str),
    /// A double-quoted identifier, without its quotes (`""` left doubled).
    Quoted(&'a str),
    /// Any other character.
    Symbol(char),
}

/// Split `text` into tokens with their byte offsets; whitespace is dropped.
fn tokens(text: &str) -> Vec<(usize, Token<'_>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' {
            let start = i;
            i += 1;
            while i < bytes.len() {
                if bytes[i] == c {
                    if bytes.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            let end = i.min(bytes.len());
            i = end + 1;
            out.push((
                start,
                if c == b'\'' {
                    Token::Literal(&text[start..(end + 1).min(text.len())])
                } else {
                    Token::Quoted(&text[start + 1..end])
                },
            ));
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || bytes[i] == b'_'
                    || bytes[i] == b'$'
                    || bytes[i] >= 0x80)
            {
                i += 1;
            }
            out.push((start, Token::Word(&text[start..i])));
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            out.push((i, Token::Symbol(ch)));
            i += ch.len_utf8();
        }
    }
    out
}

/// `text` without whitespace outside string literals, lower-cased outside literals.
fn compact(text: &str) -> String {
    tokens(text)
        .into_iter()
        .map(|(_, t)| match t {
            Token::Literal(l) => l.to_string(),
            Token::Word(w) => w.to_ascii_lowercase(),
            Token::Quoted(q) => format!("\"{q}\""),
            Token::Symbol(c) => c.to_string(),
        })
        .collect()
}

/// `text` without the parentheses that enclose all of it.
fn strip_outer_parens(mut text: &str) -> &str {
    loop {
        text = text.trim();
        if !text.starts_with('(') || !text.ends_with(')') {
            return text;
        }
        let mut depth = 0i32;
        let toks = tokens(text);
        let closes_at_end = toks.iter().all(|(offset, t)| {
            match t {
                Token::Symbol('(') => depth += 1,
                Token::Symbol(')') => depth -= 1,
                _ => {}
            }
            depth > 0 || *offset == text.len() - 1
        });
        if !closes_at_end {
            return text;
        }
        text = &text[1..text.len() - 1];
    }
}

fn is_trivially_true(text: &str) -> bool {
    let c = compact(text);
    matches!(
        strip_outer_parens(&c),
        "true" | "1=1" | "notfalse" | "'t'::boolean" | "'true'::boolean" | "true::boolean"
    )
}

/// Whether `text` names `column` (as an identifier, never inside a literal).
pub(crate) fn references_column(text: &str, column: &str) -> bool {
    let simple = column
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !column.starts_with(|c: char| c.is_ascii_digit());
    let quoted = column.replace('"', "\"\"");
    tokens(text).into_iter().any(|(_, t)| match t {
        Token::Word(w) => simple && w.eq_ignore_ascii_case(column),
        Token::Quoted(q) => q == quoted,
        _ => false,
    })
}

/// The functions `text` calls, by the names they are called by (`schema.name` or `name`;
/// unquoted names in lower case).
fn calls(text: &str) -> Vec<String> {
    let toks = tokens(text);
    let name = |t: &Token<'_>| match t {
        Token::Word(w) => Some(w.to_ascii_lowercase()),
        Token::Quoted(q) => Some(q.replace("\"\"", "\"")),
        _ => None,
    };
    let mut out = Vec::new();
    for (i, (_, t)) in toks.iter().enumerate() {
        let (Some(called), Some((_, Token::Symbol('(')))) = (name(t), toks.get(i + 1)) else {
            continue;
        };
        let schema = match (
            i.checked_sub(2).map(|j| &toks[j].1),
            toks.get(i.wrapping_sub(1)),
        ) {
            (Some(s), Some((_, Token::Symbol('.')))) => name(s),
            _ => None,
        };
        out.push(match schema {
            Some(schema) => format!("{schema}.{called}"),
            None => called,
        });
    }
    out
}

/// The settings `text` reads with `current_setting('<name>'`, in lower case, as written.
///
/// # Example
///
/// ```
/// use rlsgate::policy_expression::settings_read;
///
/// let using = "(org_id = (NULLIF(current_setting('App.Org_Id'::text, true), ''::text))::bigint)";
/// assert_eq!(settings_read(using).into_iter().collect::<Vec<_>>(), ["app.org_id"]);
/// ```
pub fn settings_read(text: &str) -> BTreeSet<String> {
    let compact = compact(text).to_ascii_lowercase();
    let mut out = BTreeSet::new();
    let mut rest = compact.as_str();
    while let Some(at) = rest.find("current_setting('") {
        rest = &rest[at + "current_setting('".len()..];
        let mut name = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\'' {
                name.push(c);
            } else if chars.peek() == Some(&'\'') {
                chars.next();
                name.push(c);
            } else {
                break;
            }
        }
        out.insert(name);
    }
    out
}

fn reads_setting_directly(text: &str, setting: &str) -> bool {
    let pattern = format!(
        "current_setting('{}'",
        setting.to_ascii_lowercase().replace('\'', "''")
    );
    compact(text).to_ascii_lowercase().contains(&pattern)
}

/// The branches of `text`'s top-level OR (after its enclosing parentheses), or `text` itself.
fn top_level_or_branches(text: &str) -> Vec<&str> {
    let inner = strip_outer_parens(text);
    let mut depth = 0i32;
    let mut branches = Vec::new();
    let mut start = 0;
    for (offset, t) in tokens(inner) {
        match t {
            Token::Symbol('(') => depth += 1,
            Token::Symbol(')') => depth -= 1,
            Token::Word(w) if depth == 0 && w.eq_ignore_ascii_case("or") => {
                branches.push(inner[start..offset].trim());
                start = offset + w.len();
            }
            _ => {}
        }
    }
    branches.push(inner[start..].trim());
    branches
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTING: &str = "app.current_tenant_id";
    const COLUMN: &str = "tenant_id";
    const REFERENCE: &str = "(tenant_id = (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid)";
    const DLQ: &str = "\nCASE\n    WHEN (tenant_id IS NULL) THEN (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text) IS NULL)\n    ELSE (tenant_id = (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid)\nEND";

    fn classify(e: &str) -> Binding {
        classify_expression(Some(e), SETTING, COLUMN)
    }

    #[test]
    fn the_reference_policies_bind_the_context() {
        assert!(classify(REFERENCE).binds());
        assert!(classify(DLQ).binds(), "CASE has no top-level OR");
        assert!(
            classify("(  TENANT_ID = current_setting( 'APP.current_tenant_id' )::uuid )").binds(),
            "case and whitespace do not matter"
        );
    }

    #[test]
    fn trivially_true_expressions_are_caught() {
        for e in [
            "true",
            "(true)",
            "((true))",
            "1 = 1",
            "(1 = 1)",
            "'t'::boolean",
        ] {
            assert!(
                matches!(classify(e), Binding::TriviallyTrue(_)),
                "{e}: {:?}",
                classify(e)
            );
        }
    }

    #[test]
    fn expressions_that_miss_the_column_or_the_context_are_caught() {
        assert!(matches!(
            classify("(current_setting('app.current_tenant_id'::text, true) IS NOT NULL)"),
            Binding::NoTenantColumn(_)
        ));
        assert!(matches!(
            classify("(other_tenant_id = (current_setting('app.current_tenant_id'::text))::uuid)"),
            Binding::NoTenantColumn(_)
        ));
        assert!(
            matches!(
                classify(
                    "(id = 'tenant_id'::text AND current_setting('app.current_tenant_id') = 'x')"
                ),
                Binding::NoTenantColumn(_)
            ),
            "a literal is not a column reference"
        );
        assert!(matches!(
            classify("(tenant_id = (current_setting('app.other'::text))::uuid)"),
            Binding::NoTenantContext(_)
        ));
        assert!(matches!(
            classify("(tenant_id IS NOT NULL)"),
            Binding::NoTenantContext(_)
        ));
        assert_eq!(classify_expression(None, SETTING, COLUMN), Binding::Absent);
    }

    #[test]
    fn an_or_branch_that_ignores_the_context_widens_the_policy() {
        let original = "((tenant_id IS NULL) OR (tenant_id = (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid))";
        assert_eq!(
            classify(original),
            Binding::Widened {
                expression: original.into(),
                branch: "(tenant_id IS NULL)".into()
            }
        );
        let or_true = format!("({REFERENCE} OR true)");
        assert!(matches!(classify(&or_true), Binding::Widened { branch, .. } if branch == "true"));
        let nested = format!("(({REFERENCE} OR {REFERENCE}) AND true)");
        assert!(
            classify(&nested).binds(),
            "an OR below the top level is not split"
        );
    }

    fn function(schema: &str, name: &str, body: Option<&str>) -> FunctionSource {
        FunctionSource {
            schema: schema.into(),
            name: name.into(),
            definition: body.map(str::to_string),
        }
    }

    #[test]
    fn helper_functions_read_the_context_through_any_nesting() {
        let readers = ContextReaders::resolve(
            &[
                // PL/pgSQL, two levels down, in another schema.
                function(
                    "app",
                    "tenant_text",
                    Some(
                        "CREATE OR REPLACE FUNCTION app.tenant_text() RETURNS text LANGUAGE plpgsql STABLE AS $function$ BEGIN RETURN current_setting('app.current_tenant_id'); END $function$",
                    ),
                ),
                function(
                    "app",
                    "current_tenant",
                    Some(
                        "CREATE FUNCTION app.current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT nullif(app.tenant_text(), '')::uuid $$",
                    ),
                ),
                function(
                    "public",
                    "Tenant",
                    Some("... RETURN app.current_tenant(); ..."),
                ),
                function("public", "now_ish", Some("... SELECT now() ...")),
                function("ext", "opaque_tenant", None),
            ],
            SETTING,
        );
        let classify = |e: &str| classify_with(Some(e), SETTING, COLUMN, &readers);
        assert!(classify("(tenant_id = app.current_tenant())").binds());
        assert!(classify("(tenant_id = (app.tenant_text())::uuid)").binds());
        assert!(
            classify("(tenant_id = \"Tenant\"())").binds(),
            "quoted names as written"
        );
        assert!(classify("(tenant_id = COALESCE(app.current_tenant(), NULL::uuid))").binds());
        assert!(matches!(
            classify("(tenant_id = public.now_ish())"),
            Binding::NoTenantContext(_)
        ));
        assert!(matches!(
            classify("(tenant_id = ext.opaque_tenant())"),
            Binding::CannotTell { function, .. } if function == "ext.opaque_tenant"
        ));
        assert!(matches!(
            classify("((tenant_id = app.current_tenant()) OR (tenant_id IS NULL))"),
            Binding::Widened { .. }
        ));
        assert!(
            matches!(
                classify("(tenant_id = 'app.current_tenant()'::uuid)"),
                Binding::NoTenantContext(_)
            ),
            "a call inside a literal is no call"
        );
    }

    #[test]
    fn quoted_columns_match_only_quoted() {
        let e = "(\"TenantId\" = (current_setting('app.current_tenant_id'::text))::uuid)";
        assert!(classify_expression(Some(e), SETTING, "TenantId").binds());
        assert!(!classify_expression(Some(e), SETTING, "tenantid").binds());
    }

    #[test]
    fn outer_parentheses_are_stripped_only_when_they_enclose_everything() {
        assert_eq!(strip_outer_parens("((a) OR (b))"), "(a) OR (b)");
        assert_eq!(strip_outer_parens("(a) OR (b)"), "(a) OR (b)");
        assert_eq!(strip_outer_parens("(')(')"), "')('");
        assert_eq!(top_level_or_branches("(a OR 'x or y')"), ["a", "'x or y'"]);
    }
}
