//! The shape of a table as seeding needs it: columns (base types, defaults, lengths, enum
//! labels), foreign keys, CHECK constraints and their literals, partition bounds, primary key.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::sql::quote_ident;

/// A column as seeding needs it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    /// The base type's name (`int4`, `text`, `uuid`, ...; a domain's base type).
    pub(crate) type_name: String,
    /// `pg_type.typcategory` of the base type.
    pub(crate) category: char,
    pub(crate) not_null: bool,
    pub(crate) has_default: bool,
    /// An identity or generated column: never given a value.
    pub(crate) generated: bool,
    /// `varchar(n)` / `char(n)`: n.
    pub(crate) max_len: Option<usize>,
    /// Enum labels, in order.
    pub(crate) labels: Vec<String>,
    /// `numeric(p, s)`: the digits before the point, p - s.
    pub(crate) integer_digits: Option<u32>,
}

/// A foreign key.
#[derive(Debug, Clone)]
pub(crate) struct ForeignKey {
    pub(crate) columns: Vec<String>,
    pub(crate) table: String,
    pub(crate) referenced: Vec<String>,
}

/// A table's shape, read once.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) columns: Vec<Column>,
    pub(crate) foreign_keys: Vec<ForeignKey>,
    /// CHECK constraints (the table's and its columns' domains') by name: columns, literals.
    pub(crate) checks: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// Columns a CHECK holds to a list of values (`IN (...)`, `= ANY (ARRAY[...])`): the values.
    pub(crate) listed: BTreeMap<String, Vec<String>>,
    /// Partition key columns and the literals of the partitions' bounds.
    pub(crate) partitions: Option<(Vec<String>, Vec<String>)>,
    /// Primary key columns (empty: none).
    pub(crate) primary_key: Vec<String>,
}

/// A row's key as SQL over alias `t`: its primary key's values joined by commas, or the whole
/// row's text without a primary key.
pub(crate) fn key_expression(shape: &Shape) -> String {
    if shape.primary_key.is_empty() {
        "t::text".into()
    } else {
        let cols: Vec<String> = shape
            .primary_key
            .iter()
            .map(|c| format!("t.{}::text", quote_ident(c)))
            .collect();
        format!("concat_ws(',', {})", cols.join(", "))
    }
}

/// String and number literals of a constraint or bound expression, in order.
fn literals(expression: &str) -> Vec<String> {
    let re = regex::Regex::new(r"'((?:[^']|'')*)'|(-?\b\d+(?:\.\d+)?\b)").expect("a valid regex");
    re.captures_iter(expression)
        .filter_map(|c| {
            c.get(1)
                .map(|m| m.as_str().replace("''", "'"))
                .or_else(|| c.get(2).map(|m| m.as_str().to_string()))
        })
        .collect()
}

/// The shape of `table`, read from the catalog.
///
/// # Errors
/// A database error naming what could not be read.
pub(crate) async fn read_shape(client: &Client, table: &str) -> Result<Shape> {
    let definitions = checks(client, table).await?;
    Ok(Shape {
        columns: columns(client, table).await?,
        foreign_keys: foreign_keys(client, table).await?,
        listed: definitions
            .iter()
            .filter_map(|(_, (columns, definition))| match columns.as_slice() {
                [column] => lists(definition).map(|values| (column.clone(), values)),
                _ => None,
            })
            .collect(),
        checks: definitions
            .into_iter()
            .map(|(name, (columns, definition))| (name, (columns, literals(&definition))))
            .collect(),
        partitions: partitions(client, table).await?,
        primary_key: primary_key(client, table).await?,
    })
}

fn read_error(table: &str, what: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = format!("reading the {what} of {table}");
    move |e| Error::database(context, e)
}

/// The columns, in order, with their base types, defaults, lengths and enum labels.
async fn columns(client: &Client, table: &str) -> Result<Vec<Column>> {
    Ok(client
        .query(
            "SELECT a.attname::text, coalesce(bt.typname, t.typname)::text,
                    coalesce(bt.typcategory, t.typcategory)::text,
                    a.attnotnull OR coalesce(t.typnotnull, false), a.atthasdef,
                    a.attidentity = 'a' OR a.attgenerated <> '',
                    CASE WHEN a.atttypmod > 4 AND coalesce(bt.typname, t.typname) IN ('varchar', 'bpchar')
                         THEN a.atttypmod - 4 END,
                    ARRAY(SELECT e.enumlabel::text FROM pg_enum e
                          WHERE e.enumtypid = coalesce(bt.oid, t.oid) ORDER BY e.enumsortorder),
                    a.attidentity = 'd',
                    CASE WHEN a.atttypmod > 4 AND coalesce(bt.typname, t.typname) = 'numeric'
                         THEN ((a.atttypmod - 4) >> 16) - ((a.atttypmod - 4) & 65535) END
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&table],
        )
        .await
        .map_err(read_error(table, "columns"))?
        .iter()
        .map(|r| Column {
            name: r.get(0),
            type_name: r.get(1),
            category: r.get::<_, String>(2).chars().next().unwrap_or('X'),
            not_null: r.get(3),
            has_default: r.get::<_, bool>(4) || r.get::<_, bool>(8),
            generated: r.get(5),
            max_len: r.get::<_, Option<i32>>(6).map(|n| n as usize),
            labels: r.get(7),
            integer_digits: r.get::<_, Option<i32>>(9).map(|d| d.max(0) as u32),
        })
        .collect())
}

/// The foreign keys (not inherited from a parent), by name.
async fn foreign_keys(client: &Client, table: &str) -> Result<Vec<ForeignKey>> {
    Ok(client
        .query(
            "SELECT ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
                    format('%I.%I', n.nspname, rc.relname),
                    ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
             FROM pg_constraint c
             JOIN pg_class rc ON rc.oid = c.confrelid
             JOIN pg_namespace n ON n.oid = rc.relnamespace
             WHERE c.conrelid = $1::text::regclass AND c.contype = 'f' AND c.conparentid = 0
             ORDER BY c.conname",
            &[&table],
        )
        .await
        .map_err(read_error(table, "foreign keys"))?
        .iter()
        .map(|r| ForeignKey {
            columns: r.get(0),
            table: r.get(1),
            referenced: r.get(2),
        })
        .collect())
}

/// The values a CHECK definition holds its column to, when it is one list of them
/// (`CHECK ((status = ANY (ARRAY['a'::text, 'b'::text])))`, as PostgreSQL prints `IN (...)` too),
/// with no other condition beside it.
fn lists(definition: &str) -> Option<Vec<String>> {
    // The column, maybe cast (`(status)::text`), `= ANY`, the array, maybe cast (`::text[]`).
    let re = regex::Regex::new(
        r"^CHECK \(\(+[^()\s]+\)?(?:::[a-z ]+)? = ANY \(\(?ARRAY\[([^\]]*)\]\)?(?:::[a-z ]+\[\])?\)\)+$",
    )
    .expect("a valid regex");
    let values = literals(re.captures(definition)?.get(1)?.as_str());
    (!values.is_empty()).then_some(values)
}

/// The CHECK constraints of the table and of its columns' domains: name → (columns, definition).
async fn checks(client: &Client, table: &str) -> Result<BTreeMap<String, (Vec<String>, String)>> {
    Ok(client
        .query(
            "SELECT c.conname::text, pg_get_constraintdef(c.oid),
                    ARRAY(SELECT a.attname::text FROM pg_attribute a
                          WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey))
             FROM pg_constraint c
             WHERE c.conrelid = $1::text::regclass AND c.contype = 'c'
             UNION ALL
             SELECT c.conname::text, pg_get_constraintdef(c.oid),
                    ARRAY(SELECT a.attname::text FROM pg_attribute a
                          WHERE a.attrelid = $1::text::regclass AND a.atttypid = c.contypid
                            AND a.attnum > 0 AND NOT a.attisdropped)
             FROM pg_constraint c
             WHERE c.contype = 'c' AND c.contypid IN (
                 SELECT a.atttypid FROM pg_attribute a
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0)",
            &[&table],
        )
        .await
        .map_err(read_error(table, "CHECK constraints"))?
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (r.get::<_, Vec<String>>(2), r.get::<_, String>(1)),
            )
        })
        .collect())
}

/// The partition key columns and the literals of the partitions' bounds, when partitioned.
async fn partitions(client: &Client, table: &str) -> Result<Option<(Vec<String>, Vec<String>)>> {
    Ok(client
        .query_opt(
            "SELECT ARRAY(SELECT a.attname::text FROM pg_attribute a
                          WHERE a.attrelid = p.partrelid AND a.attnum = ANY(p.partattrs::int2[])),
                    ARRAY(SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
                          JOIN pg_class c ON c.oid = i.inhrelid
                          WHERE i.inhparent = p.partrelid ORDER BY c.relname)
             FROM pg_partitioned_table p WHERE p.partrelid = $1::text::regclass",
            &[&table],
        )
        .await
        .map_err(read_error(table, "partitions"))?
        .map(|r| {
            let bounds: Vec<String> = r.get(1);
            (
                r.get::<_, Vec<String>>(0),
                bounds.iter().flat_map(|b| literals(b)).collect(),
            )
        }))
}

/// The primary key columns, in order (empty: none).
async fn primary_key(client: &Client, table: &str) -> Result<Vec<String>> {
    Ok(client
        .query_opt(
            "SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
             FROM pg_index i WHERE i.indrelid = $1::text::regclass AND i.indisprimary",
            &[&table],
        )
        .await
        .map_err(read_error(table, "primary key"))?
        .map(|r| r.get(0))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_checks_that_hold_a_column_to_values_and_nothing_else() {
        let cases = [
            (
                "CHECK ((a = ANY (ARRAY['x'::text, 'y'::text])))",
                Some(vec!["x", "y"]),
            ),
            (
                "CHECK (((b)::text = ANY ((ARRAY['p'::character varying, 'q'::character varying])::text[])))",
                Some(vec!["p", "q"]),
            ),
            (
                "CHECK ((c = ANY (ARRAY['EUR'::bpchar, 'USD'::bpchar])))",
                Some(vec!["EUR", "USD"]),
            ),
            ("CHECK ((e = ANY (ARRAY[1, 2])))", Some(vec!["1", "2"])),
            ("CHECK (((d = 'x'::text) AND (length(d) > 0)))", None),
            ("CHECK ((btrim(name) <> ''::text))", None),
        ];
        for (definition, expected) in cases {
            let expected = expected.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(lists(definition), expected, "{definition}");
        }
    }

    #[test]
    fn literals_come_from_checks_and_partition_bounds() {
        assert_eq!(
            literals("CHECK ((status = ANY (ARRAY['open'::text, 'it''s'::text])))"),
            ["open", "it's"]
        );
        assert_eq!(literals("CHECK ((amount_cents >= 0))"), ["0"]);
        assert_eq!(
            literals("FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')"),
            ["2026-01-01 00:00:00+00", "2027-01-01 00:00:00+00"]
        );
    }
}
