//! A SQL script split into its top-level statements, so a failure can name the statement.
//!
//! The splitter knows enough of PostgreSQL's lexical rules to find the semicolons that end
//! statements: quoted strings (with `''` and `E'\''` escapes), quoted identifiers, line and
//! nested block comments, dollar-quoted bodies (`$$ ... $$`, `$fn$ ... $fn$`), and the
//! SQL-standard bodies of PostgreSQL 14+ (`CREATE FUNCTION ... BEGIN ATOMIC ...; ...; END`), whose
//! inner statements end with semicolons that do not end the `CREATE`: inside one, `CASE` opens a
//! nested `... END` and `END` closes the innermost.

/// One top-level statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// 1-based position among the script's statements.
    pub index: usize,
    /// 1-based line where the statement starts.
    pub line: usize,
    /// The statement's text, without the terminating semicolon.
    pub text: String,
}

impl Statement {
    /// The first keyword, uppercased (`CREATE`, `BEGIN`, ...), if any.
    pub fn keyword(&self) -> String {
        self.code()
            .split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| !w.is_empty())
            .unwrap_or("")
            .to_ascii_uppercase()
    }

    /// The text after any leading comments.
    pub fn code(&self) -> &str {
        let mut rest = self.text.trim_start();
        loop {
            if rest.starts_with("--") {
                rest = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
            } else if rest.starts_with("/*") {
                rest = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
            } else {
                return rest;
            }
        }
    }

    /// True for statements that control the transaction, which a migration must not contain:
    /// rlsgate wraps each migration in a transaction of its own.
    pub fn is_transaction_control(&self) -> bool {
        matches!(
            self.keyword().as_str(),
            "BEGIN" | "COMMIT" | "ROLLBACK" | "START" | "END" | "ABORT"
        )
    }

    /// The first line of the statement, shortened for messages.
    pub fn summary(&self) -> String {
        let first = self.code().lines().next().unwrap_or("").trim();
        if first.chars().count() > 80 {
            format!("{}...", first.chars().take(77).collect::<String>())
        } else {
            first.to_string()
        }
    }
}

/// Split `script` into its top-level statements, skipping empty ones.
///
/// # Errors
/// A message naming the line when a quote, comment or dollar quote is never closed.
pub fn split(script: &str) -> Result<Vec<Statement>, String> {
    let chars: Vec<char> = script.chars().collect();
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut start_line: Option<usize> = None;
    let mut line = 1;
    let mut i = 0;
    let mut words = Words::default();
    let mut push = |current: &mut String, start_line: &mut Option<usize>| {
        if let Some(l) = start_line.take() {
            let text = current.trim().to_string();
            statements.push(Statement {
                index: statements.len() + 1,
                line: l,
                text,
            });
        }
        current.clear();
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // Comments: kept out of the statement's start line, copied into its text.
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                current.push(chars[i]);
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let opened = line;
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    return Err(format!(
                        "block comment opened on line {opened} is never closed"
                    ));
                }
                let (a, b) = (chars[i], chars.get(i + 1).copied());
                if a == '/' && b == Some('*') {
                    depth += 1;
                    current.push_str("/*");
                    i += 2;
                } else if a == '*' && b == Some('/') {
                    depth -= 1;
                    current.push_str("*/");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if a == '\n' {
                        line += 1;
                    }
                    current.push(a);
                    i += 1;
                }
            }
            continue;
        }
        if c == ';' {
            if words.in_atomic_body() {
                current.push(c);
                words.punctuation();
            } else {
                push(&mut current, &mut start_line);
                words = Words::default();
            }
            i += 1;
            continue;
        }
        if !c.is_whitespace() && start_line.is_none() {
            start_line = Some(line);
        }
        if is_word_start(&chars, i) {
            let mut j = i;
            while j < chars.len() && is_word_char(chars[j]) {
                j += 1;
            }
            // A string's prefix (E'..', B'..', X'..', N'..') is lexed with its quote below.
            let prefix = j == i + 1
                && chars.get(j) == Some(&'\'')
                && matches!(c.to_ascii_uppercase(), 'E' | 'B' | 'X' | 'N');
            if !prefix {
                let word: String = chars[i..j].iter().collect();
                words.word(&word);
                current.push_str(&word);
                i = j;
                continue;
            }
        }
        if !c.is_whitespace() {
            words.punctuation();
        }
        match c {
            '\'' | '"' => {
                let opened = line;
                let backslash = c == '\''
                    && i > 0
                    && matches!(chars[i - 1], 'E' | 'e')
                    && (i < 2 || !chars[i - 2].is_ascii_alphanumeric() && chars[i - 2] != '_');
                current.push(c);
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else {
                        let what = if c == '"' {
                            "quoted identifier"
                        } else {
                            "string"
                        };
                        return Err(format!("{what} opened on line {opened} is never closed"));
                    };
                    current.push(d);
                    i += 1;
                    if d == '\n' {
                        line += 1;
                    }
                    if backslash && d == '\\' {
                        if let Some(&e) = chars.get(i) {
                            current.push(e);
                            i += 1;
                        }
                    } else if d == c {
                        if chars.get(i) == Some(&c) {
                            current.push(c);
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
                continue;
            }
            '$' => {
                if let Some(tag) = dollar_tag(&chars, i) {
                    let opened = line;
                    let tag_chars: Vec<char> = tag.chars().collect();
                    current.push_str(&tag);
                    i += tag_chars.len();
                    loop {
                        if i >= chars.len() {
                            return Err(format!(
                                "dollar quote {tag} opened on line {opened} is never closed"
                            ));
                        }
                        if chars[i..].starts_with(&tag_chars) {
                            current.push_str(&tag);
                            i += tag_chars.len();
                            break;
                        }
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        current.push(chars[i]);
                        i += 1;
                    }
                    continue;
                }
            }
            '\n' => line += 1,
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    push(&mut current, &mut start_line);
    Ok(statements)
}

/// The words of the statement being split, as far as `BEGIN ATOMIC` bodies need them.
#[derive(Debug, Default)]
struct Words {
    /// The statement's first word, uppercased.
    first: Option<String>,
    /// The previous word, uppercased, when nothing but whitespace and comments followed it.
    previous: Option<String>,
    /// Open `BEGIN ATOMIC` and `CASE` blocks: 0 outside a SQL-standard body.
    depth: usize,
}

impl Words {
    fn in_atomic_body(&self) -> bool {
        self.depth > 0
    }

    fn word(&mut self, word: &str) {
        let word = word.to_ascii_uppercase();
        if self.depth == 0 {
            if word == "ATOMIC"
                && self.previous.as_deref() == Some("BEGIN")
                && self.first.as_deref() == Some("CREATE")
            {
                self.depth = 1;
            }
        } else if word == "CASE" {
            self.depth += 1;
        } else if word == "END" {
            self.depth -= 1;
        }
        self.first.get_or_insert_with(|| word.clone());
        self.previous = Some(word);
    }

    fn punctuation(&mut self) {
        self.previous = None;
    }
}

/// True when an identifier or keyword starts at `i`: a letter or `_` that does not continue a
/// word, a number or a parameter (`$1`).
fn is_word_start(chars: &[char], i: usize) -> bool {
    let c = chars[i];
    (c.is_alphabetic() || c == '_') && (i == 0 || !is_word_char(chars[i - 1]))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// The dollar-quote tag starting at `i` (`$$` or `$name$`), if one starts there. A `$` that
/// follows an identifier character is part of the identifier (`a$b`) or a parameter (`$1`).
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    if i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    let name: String = chars[i + 1..j].iter().collect();
    if chars.get(j) == Some(&'$') && !name.starts_with(|c: char| c.is_ascii_digit()) {
        Some(format!("${name}$"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(script: &str) -> Vec<String> {
        split(script).unwrap().into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let script = "CREATE TABLE a (x text DEFAULT ';');\n\
                      -- a comment; with a semicolon\n\
                      CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n\
                      CREATE FUNCTION g() RETURNS int AS $body$ SELECT $$;$$::text; $body$ LANGUAGE sql;\n\
                      SELECT \"we;ird\" FROM a /* c; /* nested; */ */;\n\
                      SELECT E'it\\'s;';";
        let t = texts(script);
        assert_eq!(t.len(), 5, "{t:#?}");
        assert!(t[1].starts_with("-- a comment; with a semicolon\nCREATE FUNCTION f()"));
        assert!(t[2].ends_with("LANGUAGE sql"));
        assert_eq!(t[4], "SELECT E'it\\'s;'");
    }

    #[test]
    fn statements_carry_their_start_line_and_index() {
        let s = split("\n\n-- header\nSELECT 1;\n\nSELECT\n 2;\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].index, s[0].line), (1, 4));
        assert_eq!((s[1].index, s[1].line), (2, 6));
    }

    #[test]
    fn empty_statements_and_trailing_comments_are_skipped() {
        assert!(split(" ;; -- nothing\n").unwrap().is_empty());
        assert_eq!(texts("SELECT 1 -- trailing"), ["SELECT 1 -- trailing"]);
    }

    #[test]
    fn unterminated_quotes_are_reported_with_their_line() {
        assert_eq!(
            split("SELECT 1;\nSELECT 'oops;").unwrap_err(),
            "string opened on line 2 is never closed"
        );
        assert!(
            split("SELECT $f$ body")
                .unwrap_err()
                .contains("dollar quote $f$")
        );
        assert!(split("/* open").unwrap_err().contains("block comment"));
    }

    #[test]
    fn parameters_and_identifiers_with_dollars_are_not_quotes() {
        assert_eq!(
            texts("SELECT $1, a$b$c FROM t; SELECT 2"),
            ["SELECT $1, a$b$c FROM t", "SELECT 2"]
        );
    }

    #[test]
    fn transaction_control_is_recognised() {
        let s = split("BEGIN; commit; CREATE TABLE t(); -- x\n start transaction").unwrap();
        let flags: Vec<bool> = s.iter().map(Statement::is_transaction_control).collect();
        assert_eq!(flags, [true, true, false, true]);
    }

    #[test]
    fn a_begin_atomic_body_is_one_statement() {
        let t = texts(
            "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\n\
             BEGIN ATOMIC\n  SELECT 1;\n  SELECT a + 1;\nEND;\n\
             SELECT f(1);",
        );
        assert_eq!(t.len(), 2, "{t:#?}");
        assert!(t[0].starts_with("CREATE FUNCTION f"), "{t:#?}");
        assert!(t[0].ends_with("SELECT a + 1;\nEND"), "{t:#?}");
        assert_eq!(t[1], "SELECT f(1)");
    }

    #[test]
    fn case_inside_a_begin_atomic_body_does_not_end_it() {
        let t = texts(
            "CREATE OR REPLACE FUNCTION sign_of(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC\n\
             SELECT CASE WHEN x > 0 THEN 1 WHEN x < 0 THEN CASE WHEN x < -9 THEN -2 ELSE -1 END ELSE 0 END;\n\
             END;\nCREATE TABLE after_it (id int);",
        );
        assert_eq!(t.len(), 2, "{t:#?}");
        assert!(t[0].ends_with("ELSE 0 END;\nEND"), "{t:#?}");
        assert_eq!(t[1], "CREATE TABLE after_it (id int)");
    }

    #[test]
    fn lowercase_procedures_with_begin_atomic_are_one_statement() {
        let t = texts(
            "create procedure p(v int) language sql begin atomic insert into t values (v); \
             update t set n = n + 1; end; call p(1);",
        );
        assert_eq!(t.len(), 2, "{t:#?}");
        assert!(t[0].ends_with("set n = n + 1; end"), "{t:#?}");
        assert_eq!(t[1], "call p(1)");
    }

    #[test]
    fn comments_quotes_and_dollar_quotes_near_begin_atomic_are_respected() {
        let t = texts(
            "CREATE FUNCTION a() RETURNS text AS $$ SELECT 'begin atomic'; $$ LANGUAGE sql;\n\
             CREATE FUNCTION b() RETURNS text LANGUAGE sql BEGIN /* between; */ -- and here\n\
             ATOMIC\n\
               -- end; in a comment\n\
               SELECT 'END;' || \"end\" FROM (SELECT 1 AS \"end\", 2 AS end_date, 3 AS case_id) s;\n\
               /* case */ SELECT $x$ end; $x$;\n\
             END;\n\
             CREATE FUNCTION c() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;",
        );
        assert_eq!(t.len(), 3, "{t:#?}");
        assert!(t[1].starts_with("CREATE FUNCTION b()"), "{t:#?}");
        assert!(t[1].ends_with("$x$ end; $x$;\nEND"), "{t:#?}");
        assert!(t[2].starts_with("CREATE FUNCTION c()"), "{t:#?}");
    }

    #[test]
    fn begin_atomic_outside_a_create_and_return_bodies_split_as_usual() {
        let t = texts(
            "CREATE FUNCTION inc(a int) RETURNS int LANGUAGE sql RETURN a + 1;\n\
             SELECT 'begin' AS begin, 1 AS atomic; SELECT CASE WHEN true THEN 1 END;",
        );
        assert_eq!(t.len(), 3, "{t:#?}");
    }

    #[test]
    fn transaction_control_around_a_begin_atomic_body_is_still_recognised() {
        let s = split(
            "BEGIN;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\n\
             END;\nCOMMIT;",
        )
        .unwrap();
        let flags: Vec<bool> = s.iter().map(Statement::is_transaction_control).collect();
        assert_eq!(flags, [true, false, true, true], "{s:#?}");
        assert_eq!(s[2].line, 3);
    }
}
