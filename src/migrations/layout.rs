//! Migration layouts: how each migration tool names its files, which of them are applied, and
//! the markers that run a file outside a transaction.
//!
//! A directory holds one layout, named by a [`Format`] or detected from its files:
//!
//! | format | applied | never applied |
//! |---|---|---|
//! | `rlsgate`, `supabase` | `<n>_name.sql` | |
//! | `sqlx` | `<n>_name.sql`, `<n>_name.up.sql` | `<n>_name.down.sql` |
//! | `golang-migrate` | `<n>_name.up.sql` | `<n>_name.down.sql` |
//! | `flyway` | `V<n>__name.sql`, then `R__name.sql` by name | `U<n>__name.sql` (undo) |
//! | `refinery` | `V<n>__name.sql`, `U<n>__name.sql` (unversioned) | |
//! | `diesel` | `<timestamp>_name/up.sql` | `down.sql` |
//! | `dbmate` | the `-- migrate:up` section of `<n>_name.sql` | the `-- migrate:down` section |
//!
//! Detection reads the names (and, for dbmate, the `-- migrate:up` line): `<n>_name.sql` alone
//! is `rlsgate` (Supabase's and sqlx's simple files are the same), `.up.sql`/`.down.sql` is
//! `sqlx` (golang-migrate's are the same), `V<n>__`/`R__` is `flyway`, directories with an
//! `up.sql` are `diesel`. A directory that mixes layouts, a `.sql` file no layout names, and
//! `U<n>__` files (Flyway's undo or refinery's unversioned migrations) without a format are
//! errors that name the file and the fix. Files that are not `.sql` are ignored; Flyway and
//! refinery read subdirectories too, as the tools do.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use super::{Migration, Transaction};
use crate::error::{Error, Result};

/// rlsgate's own marker: on a line of its own before a file's first statement, it runs the
/// file outside a transaction, statement by statement.
pub const NO_TRANSACTION: &str = "-- rlsgate:no-transaction";

/// A migration tool's layout of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `NNNN_name.sql`, rlsgate's own.
    Rlsgate,
    /// sqlx: `<version>_name.sql`, or `.up.sql`/`.down.sql` pairs (up only).
    Sqlx,
    /// The Supabase CLI: `<14-digit timestamp>_name.sql`.
    Supabase,
    /// Flyway: `V<n>__name.sql`, repeatable `R__name.sql`, undo `U<n>__name.sql` (never applied).
    Flyway,
    /// refinery: `V<n>__name.sql` and unversioned `U<n>__name.sql`.
    Refinery,
    /// golang-migrate: `<version>_name.up.sql`/`.down.sql` (up only).
    GolangMigrate,
    /// diesel: `<timestamp>_name/up.sql` directories (`down.sql` never applied).
    Diesel,
    /// dbmate: `<version>_name.sql` with `-- migrate:up` and `-- migrate:down` sections.
    Dbmate,
}

impl Format {
    /// Every format, in the order the documentation lists them.
    pub const ALL: [Format; 8] = [
        Format::Rlsgate,
        Format::Sqlx,
        Format::Supabase,
        Format::Flyway,
        Format::Refinery,
        Format::GolangMigrate,
        Format::Diesel,
        Format::Dbmate,
    ];

    /// The name `[schema] format` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Rlsgate => "rlsgate",
            Format::Sqlx => "sqlx",
            Format::Supabase => "supabase",
            Format::Flyway => "flyway",
            Format::Refinery => "refinery",
            Format::GolangMigrate => "golang-migrate",
            Format::Diesel => "diesel",
            Format::Dbmate => "dbmate",
        }
    }

    /// The file names the format reads, for messages.
    pub fn expects(self) -> &'static str {
        match self {
            Format::Rlsgate => "NNNN_name.sql",
            Format::Supabase => "<timestamp>_name.sql",
            Format::Sqlx => "<version>_name.sql or <version>_name.up.sql/.down.sql",
            Format::GolangMigrate => "<version>_name.up.sql/.down.sql",
            Format::Flyway => "V<n>__name.sql, U<n>__name.sql (undo), R__name.sql",
            Format::Refinery => "V<n>__name.sql or U<n>__name.sql",
            Format::Diesel => "<timestamp>_name/up.sql directories",
            Format::Dbmate => "<version>_name.sql with a `-- migrate:up` section",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown migration format '{s}'; use one of {}",
                    choices()
                ))
            })
    }
}

/// The format names, quoted, for messages.
fn choices() -> String {
    Format::ALL
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a `.sql` file's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    /// `<n>_name.sql`: rlsgate, Supabase, sqlx's simple migrations, dbmate.
    Numbered(i64),
    /// `<n>_name.up.sql`: sqlx's and golang-migrate's up half.
    Up(i64),
    /// `<n>_name.down.sql`: their down half.
    Down(i64),
    /// `V<n>__name.sql`: Flyway's and refinery's versioned migrations.
    Versioned(i64),
    /// `U<n>__name.sql`: Flyway's undo, refinery's unversioned migrations.
    Undo(i64),
    /// `R__name.sql`: Flyway's repeatable migrations.
    Repeatable,
}

/// The layouts whose files look alike, for detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Numbered,
    UpDown,
    Flyway,
    Diesel,
}

impl Family {
    fn describe(self) -> &'static str {
        match self {
            Family::Numbered => "a <version>_name.sql file (rlsgate, Supabase, sqlx, dbmate)",
            Family::UpDown => "an up/down file (sqlx, golang-migrate)",
            Family::Flyway => "a V<n>__/U<n>__/R__ file (Flyway, refinery)",
            Family::Diesel => "a diesel migration directory (<timestamp>_name/up.sql)",
        }
    }
}

impl Name {
    fn family(self) -> Family {
        match self {
            Name::Numbered(_) => Family::Numbered,
            Name::Up(_) | Name::Down(_) => Family::UpDown,
            Name::Versioned(_) | Name::Undo(_) | Name::Repeatable => Family::Flyway,
        }
    }
}

/// Parse `digits` as a 64-bit version.
fn version(digits: &str, file: &str) -> std::result::Result<i64, String> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("'{digits}' in {file} is not a version number"));
    }
    digits.parse().map_err(|_| {
        format!(
            "the version {digits} of {file} does not fit in 64 bits (at most {}); shorten it",
            i64::MAX
        )
    })
}

/// What the file name `file` (no directory) says: `Ok(None)` when no layout names files so.
///
/// # Errors
/// A message naming the file when it has a layout's form but an unusable version (one that
/// does not fit in 64 bits, or a Flyway version of several parts).
pub(crate) fn classify(file: &str) -> std::result::Result<Option<Name>, String> {
    let Some(stem) = file.strip_suffix(".sql") else {
        return Ok(None);
    };
    // Flyway and refinery: V<n>__name, U<n>__name, R__name.
    if let Some(prefix @ ('V' | 'U' | 'R')) = stem.chars().next()
        && let Some((v, description)) = stem[1..].split_once("__")
        && !description.is_empty()
    {
        if prefix == 'R' {
            return Ok(v.is_empty().then_some(Name::Repeatable));
        }
        if !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '_')
        {
            if v.contains(['.', '_']) {
                return Err(format!(
                    "{file} has the version {v}, of several parts; rlsgate orders migrations by \
                     one 64-bit number: rename it (e.g. {prefix}{}__{description}.sql), or migrate \
                     with Flyway and check the database with --database-url",
                    v.replace(['.', '_'], "")
                ));
            }
            let n = version(v, file)?;
            return Ok(Some(if prefix == 'V' {
                Name::Versioned(n)
            } else {
                Name::Undo(n)
            }));
        }
        return Ok(None);
    }
    // <n>_name.sql, <n>_name.up.sql, <n>_name.down.sql.
    let Some((digits, rest)) = stem.split_once('_') else {
        return Ok(None);
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    let (description, make): (&str, fn(i64) -> Name) = if let Some(d) = rest.strip_suffix(".up") {
        (d, Name::Up)
    } else if let Some(d) = rest.strip_suffix(".down") {
        (d, Name::Down)
    } else {
        (rest, Name::Numbered)
    };
    if description.is_empty() {
        return Ok(None);
    }
    Ok(Some(make(version(digits, file)?)))
}

/// The version of a diesel migration directory `dir` (`2024-01-31-120000_name` or
/// `20240131120000_name`: the part before the first `_`, dashes left out); `Ok(None)` when
/// the name is not of that form.
///
/// # Errors
/// A message when the version does not fit in 64 bits.
pub(crate) fn diesel_version(dir: &str) -> std::result::Result<Option<i64>, String> {
    let Some((stamp, name)) = dir.split_once('_') else {
        return Ok(None);
    };
    let digits: String = stamp.chars().filter(|c| *c != '-').collect();
    if name.is_empty()
        || digits.is_empty()
        || !stamp.starts_with(|c: char| c.is_ascii_digit())
        || !digits.chars().all(|c| c.is_ascii_digit())
    {
        return Ok(None);
    }
    version(&digits, dir).map(Some)
}

/// One entry of a migrations directory that could be a migration.
#[derive(Debug)]
struct Entry {
    /// The name relative to the directory (`V2__x.sql`, `sub/V3__y.sql`, `2024..._x/up.sql`).
    name: String,
    path: PathBuf,
    kind: Kind,
    /// Directly in the directory (not in a subdirectory).
    top: bool,
}

#[derive(Debug)]
enum Kind {
    /// A `.sql` file and what its name says (`None`: no layout names files so).
    File(Option<Name>),
    /// A directory holding `up.sql` or `down.sql` (diesel), with its version when its name has
    /// diesel's form.
    Diesel(Option<i64>),
    /// A name of some layout's form with an unusable version: the message says why.
    Bad(String),
}

impl Entry {
    fn family(&self) -> Option<Family> {
        match &self.kind {
            Kind::File(name) => name.map(Name::family),
            Kind::Diesel(_) => Some(Family::Diesel),
            Kind::Bad(_) => None,
        }
    }
}

/// The directory's entries: `.sql` files directly in it, diesel migration directories, and the
/// `.sql` files of its other subdirectories (which only Flyway and refinery read).
fn scan(dir: &Path) -> Result<Vec<Entry>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<()> {
        let unreadable = |e: std::io::Error| {
            Error::migration(format!(
                "cannot read the migrations directory {}: {e}; pass a directory of migration files",
                dir.display()
            ))
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(unreadable)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for path in paths {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            if file.starts_with('.') {
                continue;
            }
            let name = format!("{prefix}{file}");
            if path.is_dir() {
                if path.join("up.sql").is_file() || path.join("down.sql").is_file() {
                    let kind = diesel_version(&file).map_or_else(Kind::Bad, Kind::Diesel);
                    out.push(Entry {
                        name: format!("{name}/up.sql"),
                        path,
                        kind,
                        top: prefix.is_empty(),
                    });
                } else {
                    walk(&path, &format!("{name}/"), out)?;
                }
            } else if path.extension().is_some_and(|e| e == "sql") {
                let kind = classify(&file).map_or_else(Kind::Bad, Kind::File);
                out.push(Entry {
                    name,
                    path,
                    kind,
                    top: prefix.is_empty(),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::migration(format!("cannot read migration {}: {e}", path.display())))
}

/// The migrations of `dir` in `format`, or in the layout detected from its files; returns the
/// format used too. Down and undo migrations are left out.
///
/// # Errors
/// A migration error naming the file and the fix: a directory that cannot be read, one that
/// mixes layouts, a `.sql` file the format does not name, a malformed file.
pub(crate) fn load(dir: &Path, format: Option<Format>) -> Result<(Format, Vec<Migration>)> {
    let entries = scan(dir)?;
    let format = match format {
        Some(f) => f,
        None => detect(dir, &entries)?,
    };
    let mut migrations = Vec::new();
    for entry in &entries {
        if let Some(m) = migration(dir, format, entry)? {
            migrations.push(m);
        }
    }
    Ok((format, migrations))
}

/// The layout of a directory's `entries`.
fn detect(dir: &Path, entries: &[Entry]) -> Result<Format> {
    // Subdirectories count only when the directory itself holds Flyway files or none.
    let top: Vec<&Entry> = entries.iter().filter(|e| e.top).collect();
    let top_families: BTreeSet<Family> = top.iter().filter_map(|e| e.family()).collect();
    let considered: Vec<&Entry> = if top_families.iter().all(|f| *f == Family::Flyway) {
        entries
            .iter()
            .filter(|e| e.top || e.family() == Some(Family::Flyway))
            .collect()
    } else {
        top
    };
    let mut first: Vec<(Family, &Entry)> = Vec::new();
    for e in &considered {
        if let Some(f) = e.family()
            && !first.iter().any(|(g, _)| *g == f)
        {
            first.push((f, e));
        }
    }
    let families: BTreeSet<Family> = first.iter().map(|(f, _)| *f).collect();
    let mixed = |a: Family, b: Family| {
        let (a, b) = (
            first.iter().find(|(f, _)| *f == a).expect("present").1,
            first.iter().find(|(f, _)| *f == b).expect("present").1,
        );
        Error::migration(format!(
            "{} mixes migration layouts: {} is {}, {} is {}; keep one layout per directory (move \
             one kind into a directory of its own and list both in [schema] migrations)",
            dir.display(),
            a.name,
            a.family().expect("known").describe(),
            b.name,
            b.family().expect("known").describe()
        ))
    };
    for lone in [Family::Flyway, Family::Diesel] {
        if families.contains(&lone)
            && let Some(other) = families.iter().find(|f| **f != lone)
        {
            return Err(mixed(lone.min(*other), lone.max(*other)));
        }
    }
    if families.contains(&Family::Flyway) {
        if let Some(u) = considered
            .iter()
            .find(|e| matches!(e.kind, Kind::File(Some(Name::Undo(_)))))
        {
            return Err(Error::migration(format!(
                "{} in {} is a Flyway undo migration (never applied) or a refinery unversioned \
                 one (applied): set format = \"flyway\" or format = \"refinery\" in [schema]",
                u.name,
                dir.display()
            )));
        }
        return Ok(Format::Flyway);
    }
    if families.contains(&Family::Diesel) {
        return Ok(Format::Diesel);
    }
    if families.contains(&Family::UpDown) {
        return Ok(Format::Sqlx);
    }
    // <n>_name.sql only: dbmate's when one has a `-- migrate:up` line.
    for e in &considered {
        if matches!(e.kind, Kind::File(Some(Name::Numbered(_)))) && dbmate_up(&read(&e.path)?) {
            return Ok(Format::Dbmate);
        }
    }
    Ok(Format::Rlsgate)
}

/// True when `text` has dbmate's `-- migrate:up` directive.
fn dbmate_up(text: &str) -> bool {
    UP.is_match(text)
}

// dbmate's directives: `-- migrate:up` or `-- migrate:down` at the start of a line, then
// nothing or options (`transaction:false`).
static UP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^--[ \t]*migrate:up([ \t\r]*$|[ \t]+\S.*$)").expect("a valid regex")
});
static DOWN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^--[ \t]*migrate:down([ \t\r]*$|[ \t]+\S.*$)").expect("a valid regex")
});
static REFINERY_NO_TRANSACTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^-{2,}\s?refinery:noTransaction\s*$").expect("a valid regex")
});

/// The migration `entry` is in `format`, `None` for a down or undo migration.
fn migration(dir: &Path, format: Format, entry: &Entry) -> Result<Option<Migration>> {
    let refuse = |what: &str| {
        Error::migration(format!(
            "{} in {} {what}, but the directory's format is {format} ({}); rename it, move it \
             out of the directory, or set the right format in [schema]",
            entry.name,
            dir.display(),
            format.expects()
        ))
    };
    if !entry.top && !matches!(format, Format::Flyway | Format::Refinery) {
        // Only Flyway and refinery read subdirectories.
        return Ok(None);
    }
    let name = match &entry.kind {
        Kind::Bad(why) => return Err(Error::migration(why.clone())),
        &Kind::Diesel(version) => {
            if format != Format::Diesel {
                return Err(refuse("is a diesel migration directory"));
            }
            let Some(version) = version else {
                return Err(Error::migration(format!(
                    "{} in {} holds up.sql but its name is not <timestamp>_name \
                     (e.g. 2024-01-31-120000_create_users); rename it",
                    entry.name.trim_end_matches("/up.sql"),
                    dir.display()
                )));
            };
            return diesel(entry, version).map(Some);
        }
        Kind::File(None) => {
            return Err(Error::migration(format!(
                "{} in {} is not a migration file of format {format} ({}) nor of any layout \
                 rlsgate reads; rename it, or move it out of the migrations directory",
                entry.name,
                dir.display(),
                format.expects()
            )));
        }
        &Kind::File(Some(name)) => name,
    };
    let text = read(&entry.path)?;
    let file = |version, transaction| {
        Migration::build(format, version, &entry.name, &text, 1, transaction, false).map(Some)
    };
    match (format, name) {
        (Format::Rlsgate | Format::Supabase | Format::Sqlx, Name::Numbered(v))
        | (Format::Sqlx, Name::Up(v)) => file(v, sqlx_marker(&text)),
        (Format::Sqlx | Format::GolangMigrate, Name::Down(_)) => Ok(None),
        (Format::GolangMigrate, Name::Up(v)) => file(v, None),
        (Format::Flyway, Name::Versioned(v)) => file(v, flyway_marker(&entry.path)?),
        (Format::Flyway, Name::Undo(_)) => Ok(None),
        (Format::Flyway, Name::Repeatable) => Migration::build(
            format,
            repeatable_version(&entry.name),
            &entry.name,
            &text,
            1,
            flyway_marker(&entry.path)?,
            true,
        )
        .map(Some),
        (Format::Refinery, Name::Versioned(v) | Name::Undo(v)) => file(
            v,
            REFINERY_NO_TRANSACTION
                .is_match(&text)
                .then_some("-- refinery:noTransaction"),
        ),
        (Format::Refinery, Name::Repeatable) => Err(refuse(
            "is a Flyway repeatable migration, which refinery does not have",
        )),
        (Format::Dbmate, Name::Numbered(v)) => dbmate(entry, v, &text).map(Some),
        (_, name) => Err(refuse(&format!("is {}", name.family().describe()))),
    }
}

/// sqlx's marker: `-- no-transaction` as the file's first line.
pub(crate) fn sqlx_marker(text: &str) -> Option<&'static str> {
    (text.lines().next().map(str::trim_end) == Some("-- no-transaction"))
        .then_some("-- no-transaction")
}

/// Flyway's script configuration `<file>.conf` with `executeInTransaction=false`.
fn flyway_marker(path: &Path) -> Result<Option<&'static str>> {
    let mut conf = path.as_os_str().to_owned();
    conf.push(".conf");
    let conf = PathBuf::from(conf);
    if !conf.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&conf).map_err(|e| {
        Error::migration(format!(
            "cannot read script configuration {}: {e}",
            conf.display()
        ))
    })?;
    let off = text.lines().any(|l| {
        l.split_once('=').is_some_and(|(k, v)| {
            k.trim() == "executeInTransaction" && v.trim().eq_ignore_ascii_case("false")
        })
    });
    Ok(off.then_some("executeInTransaction=false"))
}

/// A Flyway repeatable migration's ledger version: negative (versioned migrations never are),
/// derived from its name so it stays the same as files come and go.
fn repeatable_version(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let bytes: [u8; 8] = digest[..8].try_into().expect("8 bytes");
    -1 - (u64::from_be_bytes(bytes) >> 1) as i64
}

/// A diesel migration directory: its `up.sql`, outside a transaction when its `metadata.toml`
/// says `run_in_transaction = false`.
fn diesel(entry: &Entry, version: i64) -> Result<Migration> {
    let up = entry.path.join("up.sql");
    if !up.is_file() {
        return Err(Error::migration(format!(
            "diesel migration {} has a down.sql but no up.sql; add the up migration",
            entry.path.display()
        )));
    }
    let text = read(&up)?;
    let metadata = entry.path.join("metadata.toml");
    let mut transaction = None;
    if metadata.is_file() {
        #[derive(Deserialize)]
        struct Metadata {
            run_in_transaction: Option<bool>,
        }
        let parsed: Metadata = toml::from_str(&read(&metadata)?).map_err(|e| {
            Error::migration(format!(
                "{} is not valid TOML: {}",
                metadata.display(),
                e.to_string().trim().replace('\n', " ")
            ))
        })?;
        if parsed.run_in_transaction == Some(false) {
            transaction = Some("metadata.toml run_in_transaction = false");
        }
    }
    Migration::build(
        Format::Diesel,
        version,
        &entry.name,
        &text,
        1,
        transaction,
        false,
    )
}

/// A dbmate file: its `-- migrate:up` section (the down section is never applied), outside a
/// transaction when the directive says `transaction:false`.
fn dbmate(entry: &Entry, version: i64, text: &str) -> Result<Migration> {
    let bad = |what: &str| {
        Error::migration(format!(
            "dbmate migration {} {what}; dbmate files are `-- migrate:up`, its statements, then \
             `-- migrate:down` and its statements (if the directory is not dbmate's, name its \
             format in [schema])",
            entry.name
        ))
    };
    let Some(up) = UP.find(text) else {
        return Err(bad("has no `-- migrate:up` line"));
    };
    let down = DOWN.find(text);
    if let Some(d) = down
        && d.start() < up.start()
    {
        return Err(bad("has `-- migrate:down` before `-- migrate:up`"));
    }
    let before = &text[..up.start()];
    if before
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
    {
        return Err(bad("has statements before `-- migrate:up`"));
    }
    let options = up.as_str().split_whitespace().skip(1).collect::<Vec<_>>();
    let options = if options.first().is_some_and(|o| o.starts_with("migrate:up")) {
        &options[1..]
    } else {
        &options[..]
    };
    let transaction = options
        .contains(&"transaction:false")
        .then_some("-- migrate:up transaction:false");
    let section = &text[up.start()..down.map_or(text.len(), |d| d.start())];
    let first_line = before.matches('\n').count() + 1;
    Migration::build(
        Format::Dbmate,
        version,
        &entry.name,
        section,
        first_line,
        transaction,
        false,
    )
}

/// The transaction a migration's text asks for: rlsgate's marker on a line of its own before
/// the first statement, else `tool` (the tool's own marker, if it asked for none).
///
/// # Errors
/// A message naming the line when rlsgate's marker comes after the first statement.
pub(crate) fn transaction(
    sql: &str,
    first_line: usize,
    tool: Option<&'static str>,
) -> std::result::Result<Transaction, String> {
    let is_marker = |line: &str| {
        line.trim()
            .strip_prefix("--")
            .is_some_and(|rest| rest.trim() == "rlsgate:no-transaction")
    };
    let mut leading = true;
    let mut found = false;
    for (i, line) in sql.lines().enumerate() {
        let trimmed = line.trim();
        if leading && !trimmed.is_empty() && !trimmed.starts_with("--") {
            leading = false;
        }
        if is_marker(line) {
            if !leading {
                return Err(format!(
                    "line {}: `{NO_TRANSACTION}` comes after the first statement; move it to a \
                     line of its own at the top of the file",
                    first_line + i
                ));
            }
            found = true;
        }
    }
    Ok(if found {
        Transaction::None {
            marker: NO_TRANSACTION,
        }
    } else if let Some(marker) = tool {
        Transaction::None { marker }
    } else {
        Transaction::PerFile
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("0001_tenants.sql", Name::Numbered(1))]
    #[case("20240131120000_create_users.sql", Name::Numbered(20_240_131_120_000))]
    #[case("20240131120000_create_users.up.sql", Name::Up(20_240_131_120_000))]
    #[case("000042_add.index.down.sql", Name::Down(42))]
    #[case("1_a.up.sql", Name::Up(1))]
    #[case("V1__init.sql", Name::Versioned(1))]
    #[case("V20240131__two_words.sql", Name::Versioned(20_240_131))]
    #[case("U3__undo_it.sql", Name::Undo(3))]
    #[case("R__views.sql", Name::Repeatable)]
    #[case("9223372036854775807_max.sql", Name::Numbered(i64::MAX))]
    fn names_of_every_layout_give_their_version(#[case] file: &str, #[case] name: Name) {
        assert_eq!(classify(file), Ok(Some(name)));
    }

    #[rstest]
    #[case("tenants.sql")]
    #[case("0001.sql")]
    #[case("0001_.sql")]
    #[case("0001_.up.sql")]
    #[case("0001_tenants.txt")]
    #[case("v1_tenants.sql")]
    #[case("v1__lowercase.sql")]
    #[case("V__no_version.sql")]
    #[case("V1_single_underscore.sql")]
    #[case("V1__.sql")]
    #[case("R1__versioned_repeatable.sql")]
    #[case("Vx__letters.sql")]
    #[case("afterMigrate.sql")]
    #[case("up.sql")]
    #[case("seed.sql")]
    fn names_no_layout_uses_match_none(#[case] file: &str) {
        assert_eq!(classify(file), Ok(None), "{file}");
    }

    #[rstest]
    #[case("9223372036854775808_too_big.sql", "does not fit in 64 bits")]
    #[case("V99999999999999999999__big.sql", "does not fit in 64 bits")]
    #[case("V1.1__dotted.sql", "several parts")]
    #[case("V2_1__underscored.sql", "rename it (e.g. V21__underscored.sql)")]
    fn unusable_versions_are_refused_by_name(#[case] file: &str, #[case] expected: &str) {
        let err = classify(file).unwrap_err();
        assert!(err.contains(file) && err.contains(expected), "{err}");
    }

    #[rstest]
    #[case("2024-01-31-120000_create_users", Some(20_240_131_120_000))]
    #[case("20240131120000_create_users", Some(20_240_131_120_000))]
    #[case("00000000000000_diesel_initial_setup", Some(0))]
    #[case("create_users", None)]
    #[case("-2024_x", None)]
    #[case("2024-01-31_", None)]
    #[case("v2024_x", None)]
    fn diesel_directory_names(#[case] dir: &str, #[case] expected: Option<i64>) {
        assert_eq!(diesel_version(dir), Ok(expected));
    }

    #[test]
    fn format_names_round_trip_and_unknown_ones_list_the_choices() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        }
        let err = "flyaway".parse::<Format>().unwrap_err();
        assert!(
            err.to_string()
                .contains("\"rlsgate\", \"sqlx\", \"supabase\", \"flyway\", \"refinery\", \"golang-migrate\", \"diesel\", \"dbmate\""),
            "{err}"
        );
    }

    #[test]
    fn the_marker_counts_only_before_the_first_statement() {
        let none = Transaction::None {
            marker: NO_TRANSACTION,
        };
        assert_eq!(
            transaction(
                "-- header\n-- rlsgate:no-transaction\nCREATE INDEX;",
                1,
                None
            ),
            Ok(none)
        );
        assert_eq!(
            transaction("\n--rlsgate:no-transaction  \n\nSELECT 1;", 1, None),
            Ok(none)
        );
        assert_eq!(
            transaction("SELECT 1;", 1, Some("-- no-transaction")),
            Ok(Transaction::None {
                marker: "-- no-transaction"
            })
        );
        assert_eq!(
            transaction("SELECT 1; -- rlsgate:no-transaction", 1, None),
            Ok(Transaction::PerFile)
        );
        let err = transaction("SELECT 1;\n-- rlsgate:no-transaction\n", 10, None).unwrap_err();
        assert!(err.starts_with("line 11:"), "{err}");
    }

    #[test]
    fn tool_markers() {
        assert_eq!(
            sqlx_marker("-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);"),
            Some("-- no-transaction")
        );
        assert_eq!(sqlx_marker("\n-- no-transaction\n"), None);
        assert!(REFINERY_NO_TRANSACTION.is_match("SELECT 1;\n-- refinery:noTransaction\n"));
        assert!(!REFINERY_NO_TRANSACTION.is_match("-- refinery:noTransactionally\n"));
        assert!(dbmate_up(
            "-- a comment\n-- migrate:up transaction:false\nSELECT 1;"
        ));
        assert!(!dbmate_up("SELECT '-- migrate:up';"));
    }

    #[test]
    fn repeatable_versions_are_negative_and_stable() {
        let v = repeatable_version("R__views.sql");
        assert!(v < 0);
        assert_eq!(v, repeatable_version("R__views.sql"));
        assert_ne!(v, repeatable_version("R__functions.sql"));
    }
}
