//! The roles a project's migrations name: who receives privileges (`GRANT ... ON ... TO`,
//! `CREATE POLICY ... TO`), which roles are granted to which (`GRANT group TO member`), who
//! owns what (`OWNER TO`, `AUTHORIZATION`), who is switched to (`SET ROLE`), and which roles the
//! migrations create themselves. Read from the SQL text (string literals included, so a `GRANT`
//! a `DO` block builds with `format` counts), comments left out. `rlsgate init` creates the
//! roles the migrations need before applying them.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};

/// What the migrations say about roles. Names are as PostgreSQL stores them (unquoted names in
/// lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMentions {
    /// Roles that receive privileges on objects, or that policies apply to.
    pub receive_privileges: BTreeSet<String>,
    /// Role memberships the migrations grant: group → its members.
    pub members: BTreeMap<String, BTreeSet<String>>,
    /// Roles objects or schemas are given to (`OWNER TO`, `AUTHORIZATION`).
    pub owners: BTreeSet<String>,
    /// Every role named (the above, `SET ROLE`, `REVOKE ... FROM`, `FOR ROLE`), but PUBLIC and
    /// the pseudo-roles.
    pub named: BTreeSet<String>,
    /// Roles the migrations create (`CREATE ROLE`, `CREATE USER`, `CREATE GROUP`).
    pub created: BTreeSet<String>,
}

/// A token of migration SQL: a word (lower case unless it was double-quoted) or a symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Symbol(char),
}

impl RoleMentions {
    /// Read `sql` (one or more migration files) and add what it says to `self`.
    pub fn read(&mut self, sql: &str) {
        let tokens = tokens(sql);
        for (i, t) in tokens.iter().enumerate() {
            let Token::Word(w) = t else { continue };
            let rest = &tokens[i + 1..];
            match w.as_str() {
                "grant" => self.grant(rest),
                "revoke" => self.named.extend(roles_after(rest, "from")),
                "policy" => {
                    let roles = roles_after(statement(rest, &["using", "with"]), "to");
                    self.named.extend(roles.iter().cloned());
                    self.receive_privileges.extend(roles);
                }
                "owner" | "authorization" => {
                    let roles = match (w.as_str(), word(rest.first())) {
                        ("owner", Some("to")) => role_list(&rest[1..]),
                        ("authorization", _) => role_list(rest),
                        _ => continue,
                    };
                    self.named.extend(roles.iter().cloned());
                    self.owners.extend(roles);
                }
                "set" if word(rest.first()) == Some("role") => {
                    self.named.extend(role_list(&rest[1..]));
                }
                "for" if matches!(word(rest.first()), Some("role" | "user")) => {
                    self.named.extend(role_list(&rest[1..]));
                }
                "create" => {
                    if let (Some("role" | "user" | "group"), Some(name)) =
                        (word(rest.first()), role_list(&rest[1..]).into_iter().next())
                    {
                        self.created.insert(name);
                    }
                }
                _ => {}
            }
        }
        for pseudo in PSEUDO_ROLES {
            self.named.remove(pseudo);
            self.receive_privileges.remove(pseudo);
            self.owners.remove(pseudo);
        }
    }

    /// `GRANT ... ON ... TO roles` (privileges) or `GRANT group, ... TO roles` (memberships).
    fn grant(&mut self, rest: &[Token]) {
        let stmt = statement(rest, &["grant", "revoke"]);
        let Some(to) = stmt.iter().position(|t| word(Some(t)) == Some("to")) else {
            return;
        };
        let grantees = role_list(&stmt[to + 1..]);
        self.named.extend(grantees.iter().cloned());
        if stmt[..to].iter().any(|t| word(Some(t)) == Some("on")) {
            self.receive_privileges.extend(grantees);
            return;
        }
        for group in role_list(&stmt[..to]) {
            self.named.insert(group.clone());
            self.members
                .entry(group)
                .or_default()
                .extend(grantees.iter().cloned());
        }
    }

    /// The roles the migrations need and do not create: rlsgate creates them first.
    pub fn needed(&self) -> BTreeSet<String> {
        self.named.difference(&self.created).cloned().collect()
    }
}

/// The roles of a project whose migrations rlsgate applies: who applies them, who the
/// application logs in as, the groups rlsgate creates first, and the runtime's groups; each
/// with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftRoles {
    /// The admin role and why.
    pub admin: (String, String),
    /// The runtime role and why.
    pub runtime: (String, String),
    /// NOLOGIN roles the migrations need (rlsgate creates them first).
    pub groups: Vec<String>,
    /// The groups rlsgate grants to the runtime, and why.
    pub runtime_member_of: (Vec<String>, String),
}

impl RoleMentions {
    /// Decide the roles: `admin` and `runtime` when given, else from what the migrations say.
    ///
    /// # Errors
    /// A config error naming `--admin` or `--runtime` when the migrations do not decide.
    pub fn roles(&self, admin: Option<&str>, runtime: Option<&str>) -> Result<DraftRoles> {
        let needed = self.needed();
        let admin_named = match admin {
            Some(a) => Some((a.to_string(), "given with --admin".to_string())),
            None => self.owner()?,
        };
        let runtime = match runtime {
            Some(r) => (r.to_string(), "given with --runtime".to_string()),
            None => self.runtime(admin_named.as_ref().map(|(a, _)| a.as_str()))?,
        };
        let admin = admin_named.unwrap_or_else(|| {
            let stem = ["_app", "_user", "_runtime", "_rw", "_api"]
                .iter()
                .find_map(|s| runtime.0.strip_suffix(s))
                .unwrap_or(&runtime.0);
            (
                format!("{stem}_owner"),
                "the migrations name no owner; rlsgate applies them as this role: \
                 rename it to the role yours run as (--admin)"
                    .to_string(),
            )
        });
        let groups: Vec<String> = needed
            .iter()
            .filter(|r| **r != admin.0 && **r != runtime.0)
            .cloned()
            .collect();
        let granted: Vec<String> = groups
            .iter()
            .filter(|g| {
                self.members.get(*g).is_some_and(|m| m.contains(&runtime.0))
                    || (self.receive_privileges.contains(*g) && !self.members.contains_key(*g))
            })
            .cloned()
            .collect();
        let why = "groups granted to the runtime, or granted privileges but to no role: \
                   confirm the runtime is a member of each";
        Ok(DraftRoles {
            admin,
            runtime,
            groups,
            runtime_member_of: (granted, why.into()),
        })
    }

    /// The one role objects are given to, if the migrations name one.
    fn owner(&self) -> Result<Option<(String, String)>> {
        let owners: Vec<&String> = self.owners.difference(&self.created).collect();
        match owners.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((
                one.to_string(),
                "the migrations give objects to it (OWNER TO, AUTHORIZATION)".into(),
            ))),
            many => Err(Error::config(format!(
                "the migrations give objects to several roles ({}); name the one that applies them with --admin ROLE",
                join(many)
            ))),
        }
    }

    /// The one role that receives privileges and is nobody's group.
    fn runtime(&self, admin: Option<&str>) -> Result<(String, String)> {
        let candidates: Vec<&String> = self
            .receive_privileges
            .iter()
            .chain(self.members.values().flatten())
            .filter(|r| !self.members.contains_key(*r) && !self.created.contains(*r))
            .filter(|r| Some(r.as_str()) != admin)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        match candidates.as_slice() {
            [one] => Ok((
                one.to_string(),
                "the one role the migrations grant privileges to that is no group; \
                 if the application logs in as a member of it, pass --runtime ROLE"
                    .into(),
            )),
            [] if self
                .receive_privileges
                .iter()
                .any(|r| self.created.contains(r)) =>
            {
                Err(Error::config(format!(
                    "the migrations create the roles they grant privileges to ({}); roles are \
                     cluster-wide and rlsgate creates them before the migrations: move CREATE \
                     ROLE out of the migrations and name the runtime with --runtime ROLE",
                    join(
                        &self
                            .receive_privileges
                            .intersection(&self.created)
                            .collect::<Vec<_>>()
                    )
                )))
            }
            [] => Err(Error::config(
                "cannot tell the runtime role: the migrations grant privileges to no role; name the role the application logs in as with --runtime ROLE",
            )),
            many => Err(Error::config(format!(
                "cannot tell the runtime role: the migrations grant privileges to {}; name the one the application logs in as with --runtime ROLE (the others become groups)",
                join(many)
            ))),
        }
    }
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names that are not roles a migration needs created.
const PSEUDO_ROLES: [&str; 6] = [
    "public",
    "current_user",
    "session_user",
    "current_role",
    "none",
    "default",
];

/// The tokens of the statement that starts `rest`: up to a `;`, a string's end (a statement
/// built in a literal), or one of `stop` words.
fn statement<'a>(rest: &'a [Token], stop: &[&str]) -> &'a [Token] {
    let end = rest
        .iter()
        .position(|t| match t {
            Token::Symbol(c) => *c == ';' || *c == '\'',
            Token::Word(w) => stop.contains(&w.as_str()),
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The role list after the word `keyword` in the statement that starts `rest`.
fn roles_after(rest: &[Token], keyword: &str) -> Vec<String> {
    let stmt = statement(rest, &[]);
    match stmt.iter().position(|t| word(Some(t)) == Some(keyword)) {
        Some(at) => role_list(&stmt[at + 1..]),
        None => Vec::new(),
    }
}

/// A comma-separated list of role names at the start of `tokens` (`GROUP` and `ROLE` words
/// before a name skipped).
fn role_list(tokens: &[Token]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while matches!(word(tokens.get(i)), Some("group" | "role")) {
            i += 1;
        }
        match tokens.get(i) {
            Some(Token::Word(w)) if !matches!(w.as_str(), "with" | "granted" | "in") => {
                out.push(w.clone())
            }
            _ => return out,
        }
        if tokens.get(i + 1) != Some(&Token::Symbol(',')) {
            return out;
        }
        i += 2;
    }
}

fn word(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token::Word(w)) => Some(w),
        _ => None,
    }
}

/// The words and symbols of `sql`, comments left out, quote characters kept as symbols (so a
/// statement inside a string literal reads as one and ends with it).
fn tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            out.push(Token::Word(
                chars[start..i.min(chars.len())].iter().collect(),
            ));
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect();
            out.push(Token::Word(w.to_lowercase()));
        } else {
            if !c.is_whitespace() {
                out.push(Token::Symbol(c));
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> RoleMentions {
        let mut m = RoleMentions::default();
        m.read(sql);
        m
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grants_policies_and_owners_are_read() {
        let m = read(
            "-- GRANT ALL ON t TO commented_out;\n\
             GRANT USAGE ON SCHEMA public TO app_rw, app_ro;\n\
             GRANT SELECT, INSERT ON public.t TO \"App User\" WITH GRANT OPTION;\n\
             CREATE POLICY p ON public.t FOR SELECT TO crm_app USING (tenant_id = 1);\n\
             ALTER TABLE public.t OWNER TO app_owner;\n\
             CREATE SCHEMA app AUTHORIZATION app_owner;\n\
             REVOKE ALL ON public.t FROM PUBLIC;\n\
             REVOKE EXECUTE ON FUNCTION f() FROM legacy;\n\
             /* SET ROLE hidden; */ SET ROLE migrator;",
        );
        assert_eq!(
            m.receive_privileges,
            set(&["app_rw", "app_ro", "App User", "crm_app"])
        );
        assert_eq!(m.owners, set(&["app_owner"]));
        assert_eq!(
            m.needed(),
            set(&[
                "app_rw",
                "app_ro",
                "App User",
                "crm_app",
                "app_owner",
                "legacy",
                "migrator"
            ])
        );
        assert!(m.members.is_empty());
    }

    #[test]
    fn memberships_created_roles_and_grants_built_in_literals() {
        let m = read(
            "CREATE ROLE reporting NOLOGIN;\n\
             GRANT app_rw, reporting TO GROUP app_user;\n\
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO reporting;\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE app_owner GRANT SELECT ON TABLES TO app_ro;\n\
             DO $$ BEGIN EXECUTE format('GRANT SELECT, INSERT ON public.%I TO forum_app', t); END $$;\n\
             CREATE POLICY q ON t TO PUBLIC USING (true);",
        );
        assert_eq!(m.members["app_rw"], set(&["app_user"]));
        assert_eq!(m.members["reporting"], set(&["app_user"]));
        assert_eq!(m.created, set(&["reporting"]));
        assert_eq!(
            m.receive_privileges,
            set(&["reporting", "app_ro", "forum_app"])
        );
        assert_eq!(
            m.needed(),
            set(&["app_rw", "app_user", "app_owner", "app_ro", "forum_app"]),
            "the created role, PUBLIC and the format's arguments are not needed"
        );
    }

    #[test]
    fn roles_are_decided_or_the_error_names_the_flag() {
        let reference = read(
            "GRANT USAGE ON SCHEMA public TO app_rw, app_ro;\n\
             GRANT SELECT ON t TO app_ro; GRANT SELECT, INSERT ON dlq TO app_user;",
        );
        let e = reference.roles(None, None).unwrap_err();
        assert!(
            e.message().contains("app_ro, app_rw, app_user") && e.message().contains("--runtime"),
            "{e}"
        );
        let r = reference.roles(None, Some("app_user")).unwrap();
        assert_eq!(r.runtime.0, "app_user");
        assert_eq!(r.admin.0, "app_owner", "named after the runtime");
        assert_eq!(r.groups, ["app_ro", "app_rw"]);
        assert_eq!(r.runtime_member_of.0, ["app_ro", "app_rw"]);

        let owned = read(
            "ALTER TABLE t OWNER TO crm_owner; GRANT crm_rw TO crm_app;\n\
             GRANT SELECT ON t TO crm_rw; GRANT SELECT ON t TO reporting;\n\
             GRANT reporting TO analyst;",
        );
        let r = owned.roles(None, None).unwrap_err();
        assert!(r.message().contains("analyst, crm_app"), "{r}");
        let r = owned.roles(None, Some("crm_app")).unwrap();
        assert_eq!(r.admin.0, "crm_owner");
        assert_eq!(r.groups, ["analyst", "crm_rw", "reporting"]);
        assert_eq!(
            r.runtime_member_of.0,
            ["crm_rw"],
            "reporting is another role's group"
        );
        let e =
            read("GRANT SELECT ON t TO a; ALTER TABLE t OWNER TO o1; ALTER TABLE u OWNER TO o2;")
                .roles(None, None)
                .unwrap_err();
        assert!(e.message().contains("--admin"), "{e}");
        let e = read("CREATE TABLE t (id int);")
            .roles(None, None)
            .unwrap_err();
        assert!(e.message().contains("--runtime"), "{e}");
        let e = read("CREATE ROLE app LOGIN; GRANT SELECT ON t TO app;")
            .roles(None, None)
            .unwrap_err();
        assert!(e.message().contains("move CREATE ROLE out"), "{e}");
    }
}
