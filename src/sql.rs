//! SQL text: quoting identifiers and literals for statements rlsgate builds.

/// Quote `value` as an SQL string literal.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quote `name` as an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The parts of a dotted name as `format('%I.%I', ...)` writes it, unquoted:
/// `public."Odd ""x"""` gives `public` and `Odd "x"`.
pub(crate) fn unquote_qualified(name: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = name.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let part = parts.last_mut().expect("one part at least");
        match (c, quoted) {
            ('"', false) => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            ('"', true) => quoted = false,
            ('.', false) => parts.push(String::new()),
            (c, _) => part.push(c),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_unquote_into_their_parts() {
        assert_eq!(unquote_qualified("public.t"), ["public", "t"]);
        assert_eq!(
            unquote_qualified(r#""My.Schema"."a""b""#),
            ["My.Schema", "a\"b"]
        );
    }

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
