//! `rlsgate.toml`: how rlsgate reaches a project's schema and what it expects of it.
//!
//! The file is parsed strictly (an unknown key is an error naming the key) and validated before
//! anything connects: names must be plausible identifiers, a migrations directory must exist,
//! privileges must be ones PostgreSQL knows. Checks that need the catalog (the roles and the
//! tenant columns exist) run when the project is checked (`project::target::validate`). `docs/project.md` documents every key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::privileges::{
    DATABASE_PRIVILEGES, FUNCTION_PRIVILEGES, RELATION_PRIVILEGES, SCHEMA_PRIVILEGES,
    SEQUENCE_PRIVILEGES,
};
use crate::error::{Error, Result};
use crate::migrations::Format;

/// The file name rlsgate looks for.
pub const FILE_NAME: &str = "rlsgate.toml";

/// A parsed, validated `rlsgate.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Where the schema comes from and which relations are checked.
    #[serde(default)]
    pub schema: SchemaSection,
    /// The admin and runtime roles.
    pub roles: RolesSection,
    /// How tenants are told apart.
    pub tenant: TenantSection,
    /// The runtime's expected privileges.
    #[serde(default)]
    pub privileges: PrivilegesSection,
    /// The dead-letter queue, if the project has one.
    #[serde(default)]
    pub dlq: Option<DlqSection>,
    /// Findings the project accepts (`[[accept]]`), each with a written reason.
    #[serde(default)]
    pub accept: Vec<AcceptEntry>,
    /// The directory the file was read from (relative paths are relative to it).
    #[serde(skip)]
    pub base: PathBuf,
}

/// `[[accept]]`: a finding the project accepts. It is shown as accepted in every artifact and
/// does not fail the gate; an entry that matches no finding is an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptEntry {
    /// The invariant's id (`side-channels`, `rls-coverage`, ...).
    pub invariant: String,
    /// The relation or function the finding is about (`public.users`); any when absent.
    #[serde(default)]
    pub relation: Option<String>,
    /// The probe, or the start of its name (`UNIQUE:users_email_key`, `UNIQUE`); any when absent.
    #[serde(default)]
    pub probe: Option<String>,
    /// Why the finding is accepted: shown beside it.
    pub reason: String,
}

/// `[schema]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// Directories of migrations applied in version order, as the admin role, into a fresh
    /// database (relative to the file): a path, or `{ path = "...", format = "..." }`.
    /// Empty: the schema comes from `--database-url`.
    #[serde(default)]
    pub migrations: Vec<MigrationsDir>,
    /// The layout of every directory of `migrations` that names none (`None`: detected from
    /// each directory's files).
    #[serde(default)]
    pub format: Option<Format>,
    /// The schemas that hold the application's relations.
    #[serde(default = "default_schemas")]
    pub schemas: Vec<String>,
    /// When not empty, the only relations checked (`schema.name`).
    #[serde(default)]
    pub include: Vec<String>,
    /// Relations left out (`schema.name`).
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl Default for SchemaSection {
    fn default() -> Self {
        Self {
            migrations: Vec::new(),
            format: None,
            schemas: default_schemas(),
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

fn default_schemas() -> Vec<String> {
    vec!["public".into()]
}

/// One entry of `[schema] migrations`: a directory (relative to the file) and its layout.
/// Written as a path, or as `{ path = "db/migration", format = "flyway" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationsDir {
    /// The directory, relative to the file.
    pub path: PathBuf,
    /// Its layout (`None`: `[schema] format`, else detected from its files).
    pub format: Option<Format>,
}

impl<'de> Deserialize<'de> for MigrationsDir {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The table form; a path alone is the string form.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            path: PathBuf,
            #[serde(default)]
            format: Option<Format>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = MigrationsDir;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a directory, or a table { path = \"dir\", format = \"sqlx\" }")
            }

            fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<Self::Value, E> {
                Ok(MigrationsDir {
                    path: PathBuf::from(path),
                    format: None,
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(MigrationsDir {
                    path: t.path,
                    format: t.format,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[roles]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesSection {
    /// The admin role: owns the schema, applies the migrations.
    pub admin: String,
    /// The runtime role the application logs in as.
    pub runtime: String,
    /// NOLOGIN roles rlsgate creates before the migrations run (roles are cluster-wide, so
    /// migrations should not create them).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Groups granted to the runtime role when rlsgate creates it.
    #[serde(default)]
    pub runtime_member_of: Vec<String>,
    /// For an existing database: the environment variable that holds the runtime's login URL
    /// (`--runtime-url` wins).
    #[serde(default)]
    pub runtime_url_env: Option<String>,
}

/// `[tenant]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// The setting (GUC) that carries the tenant context, e.g. `app.current_tenant_id`.
    pub setting: String,
    /// How the application sets it in each transaction: a statement whose `$1` is the tenant id
    /// as text. Default: `SELECT set_config('<setting>', $1, true)`.
    #[serde(default)]
    pub set_context: Option<String>,
    /// The column(s) that hold the tenant; a relation's tenant column is the first it has.
    pub columns: Vec<String>,
    /// The table tenants live in (`schema.name`), so rlsgate can create its own.
    #[serde(default)]
    pub table: Option<String>,
    /// The tenant table's key column (what the tenant columns hold).
    #[serde(default = "default_key")]
    pub key: String,
    /// Require FORCE ROW LEVEL SECURITY on every tenant table. Without it, RLS that is not
    /// forced on a table whose owner the runtime cannot act as is a note (the owner bypasses
    /// the policies, but the runtime cannot be the owner).
    #[serde(default)]
    pub require_forced_rls: bool,
}

fn default_key() -> String {
    "id".into()
}

/// `[privileges]`: the runtime's expected privileges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegesSection {
    /// A starting point; explicit entries replace the preset's for the same object.
    #[serde(default)]
    pub preset: Preset,
    /// Tables, views: SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER.
    #[serde(default)]
    pub relations: BTreeMap<String, Vec<String>>,
    /// Sequences: USAGE, SELECT, UPDATE.
    #[serde(default)]
    pub sequences: BTreeMap<String, Vec<String>>,
    /// Functions by signature (`public.f(uuid)`): EXECUTE.
    #[serde(default)]
    pub functions: BTreeMap<String, Vec<String>>,
    /// Schemas: USAGE, CREATE. Default: USAGE on each schema of `[schema]`.
    #[serde(default)]
    pub schemas: Option<BTreeMap<String, Vec<String>>>,
    /// The database: CONNECT, CREATE, TEMPORARY. Default: CONNECT.
    #[serde(default)]
    pub database: Option<Vec<String>>,
    /// Roles the runtime may be a member of. Default: `roles.runtime_member_of`.
    #[serde(default)]
    pub memberships: Option<Vec<String>>,
}

/// Privilege presets, resolved against the discovered tenant tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Nothing but what is listed.
    #[default]
    None,
    /// SELECT, INSERT, UPDATE, DELETE on every tenant table (partitions aside).
    DmlOnTenantTables,
    /// SELECT on every tenant table (partitions aside).
    ReadOnlyOnTenantTables,
}

/// `[dlq]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqSection {
    /// The dead-letter table (`schema.name`): the runtime must be able to record a failure in
    /// it and must not be able to erase one.
    pub table: String,
}

impl ProjectConfig {
    /// Read and validate `path` (a file, or a directory holding `rlsgate.toml`).
    ///
    /// # Errors
    /// A config error naming the file and the fix: missing file, bad TOML, unknown key, a
    /// missing required key, an implausible name, a missing migrations directory.
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join(FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            Error::config(format!(
                "cannot read {} ({e}); pass --config PATH to an rlsgate.toml (docs/project.md has a complete example)",
                file.display()
            ))
        })?;
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &base)
            .map_err(|e| Error::config(format!("{}: {}", file.display(), e.message())))
    }

    /// Parse and validate `text`; relative paths are relative to `base`.
    ///
    /// # Errors
    /// As [`ProjectConfig::load`].
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let mut config: Self = toml::from_str(text).map_err(|e| {
            Error::config(format!(
                "{} (see docs/project.md for every key)",
                e.to_string().trim().replace('\n', " ")
            ))
        })?;
        config.base = base.to_path_buf();
        config.validate()?;
        Ok(config)
    }

    /// The migration directories, resolved against the file's directory.
    pub fn migration_dirs(&self) -> Vec<PathBuf> {
        self.migration_sources()
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    /// The migration directories, resolved against the file's directory, each with the
    /// format it names or `[schema] format` (`None`: detected from its files).
    pub fn migration_sources(&self) -> Vec<(PathBuf, Option<Format>)> {
        self.schema
            .migrations
            .iter()
            .map(|d| (self.base.join(&d.path), d.format.or(self.schema.format)))
            .collect()
    }

    fn validate(&self) -> Result<()> {
        let name = |what: &str, value: &str| -> Result<()> {
            if value.trim().is_empty() {
                return Err(Error::config(format!("{what} is empty; give a name")));
            }
            if value.contains(['"', ';', '\'', '\0']) || value.chars().any(char::is_whitespace) {
                return Err(Error::config(format!(
                    "{what} = '{value}' is not a plausible PostgreSQL name; write it without quotes or spaces"
                )));
            }
            Ok(())
        };
        name("roles.admin", &self.roles.admin)?;
        name("roles.runtime", &self.roles.runtime)?;
        if self.roles.admin == self.roles.runtime {
            return Err(Error::config(
                "roles.admin and roles.runtime are the same role; the runtime must not own the schema",
            ));
        }
        for g in self
            .roles
            .groups
            .iter()
            .chain(&self.roles.runtime_member_of)
        {
            name("roles.groups", g)?;
        }
        name("tenant.setting", &self.tenant.setting)?;
        if !self.tenant.setting.contains('.') {
            return Err(Error::config(format!(
                "tenant.setting = '{}' has no prefix; a custom setting is named like app.current_tenant_id",
                self.tenant.setting
            )));
        }
        if self.tenant.columns.is_empty() {
            return Err(Error::config(
                "tenant.columns is empty; name the column(s) that hold the tenant, e.g. columns = [\"tenant_id\"]",
            ));
        }
        for c in &self.tenant.columns {
            name("tenant.columns", c)?;
        }
        if let Some(sql) = &self.tenant.set_context
            && !sql.contains("$1")
        {
            return Err(Error::config(format!(
                "tenant.set_context = '{sql}' does not use $1, the tenant id; e.g. SELECT set_config('{}', $1, true)",
                self.tenant.setting
            )));
        }
        if let Some(t) = &self.tenant.table {
            qualified("tenant.table", t)?;
            name("tenant.key", &self.tenant.key)?;
        }
        if self.schema.schemas.is_empty() {
            return Err(Error::config(
                "schema.schemas is empty; name the schemas that hold the application's relations",
            ));
        }
        for s in &self.schema.schemas {
            name("schema.schemas", s)?;
        }
        for r in self.schema.include.iter().chain(&self.schema.exclude) {
            qualified("schema.include/exclude", r)?;
        }
        for (i, a) in self.accept.iter().enumerate() {
            a.invariant
                .parse::<crate::invariants::InvariantId>()
                .map_err(|e| Error::config(format!("accept entry {}: {e}", i + 1)))?;
            if a.reason.trim().is_empty() {
                return Err(Error::config(format!(
                    "accept entry {} has an empty reason; write why the finding is accepted",
                    i + 1
                )));
            }
        }
        for dir in self.migration_dirs() {
            if !dir.is_dir() {
                return Err(Error::config(format!(
                    "schema.migrations: {} is not a directory; paths are relative to the rlsgate.toml",
                    dir.display()
                )));
            }
        }
        if let Some(d) = &self.dlq {
            qualified("dlq.table", &d.table)?;
        }
        let p = &self.privileges;
        known("privileges.relations", &p.relations, &RELATION_PRIVILEGES)?;
        known("privileges.sequences", &p.sequences, &SEQUENCE_PRIVILEGES)?;
        known("privileges.functions", &p.functions, &FUNCTION_PRIVILEGES)?;
        if let Some(s) = &p.schemas {
            known("privileges.schemas", s, &SCHEMA_PRIVILEGES)?;
        }
        if let Some(d) = &p.database {
            known(
                "privileges.database",
                &[("database".to_string(), d.clone())].into(),
                &DATABASE_PRIVILEGES,
            )?;
        }
        for r in p.relations.keys().chain(p.sequences.keys()) {
            qualified("privileges", r)?;
        }
        Ok(())
    }
}

/// `schema.name`, both parts present.
fn qualified(what: &str, value: &str) -> Result<()> {
    match value.split_once('.') {
        Some((s, n)) if !s.is_empty() && !n.is_empty() => Ok(()),
        _ => Err(Error::config(format!(
            "{what}: '{value}' is not schema-qualified; write it as schema.name, e.g. public.{value}"
        ))),
    }
}

fn known(what: &str, entries: &BTreeMap<String, Vec<String>>, allowed: &[&str]) -> Result<()> {
    for (object, privileges) in entries {
        for p in privileges {
            if !allowed.contains(&p.to_uppercase().as_str()) {
                return Err(Error::config(format!(
                    "{what}: '{p}' on {object} is not a privilege of that kind of object; use {}",
                    allowed.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// Upper-cased privilege names.
pub(crate) fn upper(privileges: &[String]) -> BTreeSet<String> {
    privileges.iter().map(|p| p.to_uppercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [roles]
        admin = "owner"
        runtime = "app"
        [tenant]
        setting = "app.tenant"
        columns = ["tenant_id"]
    "#;

    #[test]
    fn a_minimal_file_parses_with_defaults() {
        let c = ProjectConfig::parse(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(c.schema.schemas, ["public"]);
        assert_eq!(c.privileges.preset, Preset::None);
        assert_eq!(c.tenant.key, "id");
        assert!(c.dlq.is_none());
    }

    #[test]
    fn bad_files_name_the_key_and_the_fix() {
        let cases = [
            (MINIMAL.replace("setting = \"app.tenant\"", ""), "setting"),
            (
                MINIMAL.replace("columns = [\"tenant_id\"]", "columns = []"),
                "tenant.columns is empty",
            ),
            (MINIMAL.replace("app.tenant", "tenant"), "has no prefix"),
            (MINIMAL.replace("\"app\"", "\"owner\""), "same role"),
            (format!("{MINIMAL}\ncolour = 1"), "colour"),
            (
                format!("{MINIMAL}\n[privileges.relations]\n\"public.t\" = [\"DROP\"]"),
                "not a privilege",
            ),
            (
                format!("{MINIMAL}\n[dlq]\ntable = \"dlq\""),
                "schema-qualified",
            ),
            (
                MINIMAL.replace("[roles]", "[schema]\nmigrations = [\"nowhere\"]\n[roles]"),
                "not a directory",
            ),
        ];
        for (text, expected) in cases {
            let e = ProjectConfig::parse(&text, Path::new(".")).unwrap_err();
            assert!(e.is_config(), "{e}");
            assert!(e.to_string().contains(expected), "{expected}: {e}");
        }
    }

    #[test]
    fn migration_directories_take_a_format_per_project_or_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a", "b", "c"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let text = MINIMAL.replace(
            "[roles]",
            "[schema]\nformat = \"sqlx\"\nmigrations = [\"a\", { path = \"b\", format = \"flyway\" }, { path = \"c\" }]\n[roles]",
        );
        let c = ProjectConfig::parse(&text, dir.path()).unwrap();
        assert_eq!(
            c.migration_sources(),
            [
                (dir.path().join("a"), Some(Format::Sqlx)),
                (dir.path().join("b"), Some(Format::Flyway)),
                (dir.path().join("c"), Some(Format::Sqlx)),
            ]
        );
        let detected = MINIMAL.replace("[roles]", "[schema]\nmigrations = [\"a\"]\n[roles]");
        let c = ProjectConfig::parse(&detected, dir.path()).unwrap();
        assert_eq!(c.migration_sources(), [(dir.path().join("a"), None)]);
    }

    #[test]
    fn unknown_formats_and_keys_of_a_directory_are_errors_naming_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let cases = [
            (
                "[schema]\nformat = \"flyaway\"\nmigrations = [\"a\"]",
                "`rlsgate`, `sqlx`, `supabase`, `flyway`, `refinery`, `golang-migrate`, `diesel`, `dbmate`",
            ),
            (
                "[schema]\nmigrations = [{ path = \"a\", format = \"liquibase\" }]",
                "liquibase",
            ),
            (
                "[schema]\nmigrations = [{ path = \"a\", layout = \"sqlx\" }]",
                "layout",
            ),
            ("[schema]\nmigrations = [{ format = \"sqlx\" }]", "path"),
            ("[schema]\nmigrations = [1]", "a directory, or a table"),
            (
                "[schema]\nmigrations = [{ path = \"nowhere\", format = \"sqlx\" }]",
                "not a directory",
            ),
        ];
        for (schema, expected) in cases {
            let text = MINIMAL.replace("[roles]", &format!("{schema}\n[roles]"));
            let e = ProjectConfig::parse(&text, dir.path()).unwrap_err();
            assert!(e.is_config(), "{e}");
            assert!(e.to_string().contains(expected), "{expected}: {e}");
        }
    }
}
