//! The guesses of `rlsgate init`, from catalog facts alone (pure): the tenant setting the
//! policies read (directly or through helper functions), the tenant columns they compare with
//! it, the tenant table and key the tenant columns reference, the admin (the owner of the
//! tenant relations), the schemas, and the dead-letter table. Each guess says why.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::Relation;
use crate::catalog::keys::ColumnReference;
use crate::catalog::policies::{FunctionSource, Policy};
use crate::error::{Error, Result};
use crate::policy_expression::{ContextReaders, references_column, settings_read};

/// A guessed value and why it was guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess<T> {
    /// The value.
    pub value: T,
    /// Why, in a phrase (`read by 12 of 12 policies`).
    pub why: String,
}

/// What the catalog says, read across every schema but the system's.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Every relation (no tenant columns known yet).
    pub relations: Vec<Relation>,
    /// The policies, by relation.
    pub policies: BTreeMap<String, Vec<Policy>>,
    /// The functions policies may call.
    pub functions: Vec<FunctionSource>,
    /// Single-column foreign keys.
    pub references: Vec<ColumnReference>,
}

/// The tenant setting: the custom setting (`prefix.name`) the most policies read.
///
/// # Errors
/// A config error when no policy reads a custom setting.
pub fn setting(facts: &Facts) -> Result<Guess<String>> {
    let total: usize = facts.policies.values().map(Vec::len).sum();
    let mut candidates: BTreeSet<String> = facts
        .functions
        .iter()
        .filter_map(|f| f.definition.as_deref())
        .chain(expressions(facts))
        .flat_map(settings_read)
        .collect();
    candidates.retain(|s| s.contains('.'));
    let mut best: Option<(usize, String)> = None;
    for candidate in candidates {
        let readers = ContextReaders::resolve(&facts.functions, &candidate);
        let count = facts
            .policies
            .values()
            .flatten()
            .filter(|p| reads(p, &candidate, &readers))
            .count();
        if count > best.as_ref().map_or(0, |(n, _)| *n) {
            best = Some((count, candidate));
        }
    }
    let Some((count, value)) = best else {
        return Err(Error::config(format!(
            "no tenant setting found: none of the {total} row-level security policies reads a \
             custom setting with current_setting('prefix.name'), directly or through a SQL or \
             PL/pgSQL function; write rlsgate.toml by hand (docs/project.md) or point init at \
             the schema whose policies carry the tenant context"
        )));
    };
    Ok(Guess {
        value,
        why: format!("read by {count} of {total} policies"),
    })
}

fn expressions(facts: &Facts) -> impl Iterator<Item = &str> {
    facts
        .policies
        .values()
        .flatten()
        .flat_map(|p| [p.using.as_deref(), p.with_check.as_deref()])
        .flatten()
}

fn reads(policy: &Policy, setting: &str, readers: &ContextReaders) -> bool {
    [policy.using.as_deref(), policy.with_check.as_deref()]
        .into_iter()
        .flatten()
        .any(|e| readers.reads(e, setting))
}

/// The tenant columns and the tenant table's key, as the policies that read `setting` show
/// them: per relation, its columns those policies name (in all of them, when they name
/// several); a relation whose column the others' tenant columns reference (the tenant table,
/// `USING (id = current_setting(...))`) is the tenant table, not a tenant relation.
pub fn columns(facts: &Facts, setting: &str) -> Guess<Vec<String>> {
    let readers = ContextReaders::resolve(&facts.functions, setting);
    let mut per_relation: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for rel in &facts.relations {
        let reading: Vec<&Policy> = facts
            .policies
            .get(&rel.name)
            .into_iter()
            .flatten()
            .filter(|p| reads(p, setting, &readers))
            .collect();
        let named = |p: &Policy| -> BTreeSet<String> {
            column_names(rel)
                .into_iter()
                .filter(|c| {
                    [p.using.as_deref(), p.with_check.as_deref()]
                        .into_iter()
                        .flatten()
                        .any(|e| references_column(e, c))
                })
                .collect()
        };
        let Some(first) = reading.first() else {
            continue;
        };
        let all = reading
            .iter()
            .skip(1)
            .fold(named(first), |acc, p| &acc & &named(p));
        if !all.is_empty() {
            per_relation.insert(&rel.name, all);
        }
    }
    let referenced: BTreeSet<(&str, &str)> = facts
        .references
        .iter()
        .filter(|r| {
            per_relation
                .get(r.relation.as_str())
                .is_some_and(|c| c.contains(&r.column))
        })
        .map(|r| (r.referenced.as_str(), r.referenced_column.as_str()))
        .collect();
    per_relation.retain(|rel, cols| {
        !cols
            .iter()
            .any(|c| referenced.contains(&(*rel, c.as_str())))
    });
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for cols in per_relation.values() {
        for c in cols {
            *count.entry(c.clone()).or_default() += 1;
        }
    }
    // A relation naming several keeps the one most relations name.
    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    for cols in per_relation.values() {
        if let Some(c) = cols
            .iter()
            .max_by_key(|c| (count[*c], std::cmp::Reverse(*c)))
        {
            *chosen.entry(c.clone()).or_default() += 1;
        }
    }
    let mut value: Vec<(usize, String)> = chosen.into_iter().map(|(c, n)| (n, c)).collect();
    value.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let why = value
        .iter()
        .map(|(n, c)| format!("{c}: compared with it by the policies of {n} relation(s)"))
        .collect::<Vec<_>>()
        .join("; ");
    Guess {
        value: value.into_iter().map(|(_, c)| c).collect(),
        why,
    }
}

/// A relation's column names, unquoted.
fn column_names(rel: &Relation) -> Vec<String> {
    rel.insertable_columns
        .iter()
        .map(
            |c| match c.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => c.clone(),
            },
        )
        .collect()
}

/// The tenant table and its key: what the tenant columns of the tenant tables reference most.
pub fn tenant_table(facts: &Facts, columns: &[String]) -> Option<Guess<(String, String)>> {
    let tenant: BTreeSet<&str> = tenant_relations(facts, columns).map(|(r, _)| r).collect();
    let mut count: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for r in &facts.references {
        if tenant.contains(r.relation.as_str())
            && tenant_column(facts, &r.relation, columns) == Some(r.column.as_str())
        {
            *count
                .entry((r.referenced.as_str(), r.referenced_column.as_str()))
                .or_default() += 1;
        }
    }
    let ((table, key), n) = count
        .into_iter()
        .max_by_key(|(k, n)| (*n, std::cmp::Reverse(*k)))?;
    Some(Guess {
        value: (table.to_string(), key.to_string()),
        why: format!(
            "referenced by the tenant column of {n} of {} tenant relation(s)",
            tenant.len()
        ),
    })
}

/// The relations with a tenant column (partitions aside), with it.
fn tenant_relations<'a>(
    facts: &'a Facts,
    columns: &'a [String],
) -> impl Iterator<Item = (&'a str, &'a str)> {
    facts
        .relations
        .iter()
        .filter(|r| !r.is_partition)
        .filter_map(|r| Some((r.name.as_str(), tenant_column(facts, &r.name, columns)?)))
}

/// The first of `columns` relation `name` has.
fn tenant_column<'a>(facts: &Facts, name: &str, columns: &'a [String]) -> Option<&'a str> {
    let rel = facts.relations.iter().find(|r| r.name == name)?;
    let names = column_names(rel);
    columns
        .iter()
        .find(|c| names.contains(c))
        .map(String::as_str)
}

/// The admin: the role that owns the most tenant relations.
pub fn admin(facts: &Facts, columns: &[String]) -> Option<Guess<String>> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total = 0;
    for (name, _) in tenant_relations(facts, columns) {
        if let Some(r) = facts.relations.iter().find(|r| r.name == name) {
            *count.entry(r.owner.as_str()).or_default() += 1;
            total += 1;
        }
    }
    let (owner, n) = count
        .into_iter()
        .max_by_key(|(o, n)| (*n, std::cmp::Reverse(*o)))?;
    Some(Guess {
        value: owner.to_string(),
        why: format!("owns {n} of the {total} tenant relation(s)"),
    })
}

/// The schemas: those where `admin` owns a relation (rlsgate's ledger aside).
pub fn schemas(facts: &Facts, admin: &str) -> Guess<Vec<String>> {
    let value: BTreeSet<String> = facts
        .relations
        .iter()
        .filter(|r| r.owner == admin && !r.name.ends_with(".rlsgate_migrations"))
        .filter_map(|r| schema_of(&r.name))
        .collect();
    Guess {
        why: format!("the schema(s) where {admin} owns relations"),
        value: value.into_iter().collect(),
    }
}

/// The schema part of a `format('%I.%I')` name, unquoted.
fn schema_of(name: &str) -> Option<String> {
    match name.strip_prefix('"') {
        Some(rest) => rest
            .find("\".")
            .map(|end| rest[..end].replace("\"\"", "\"")),
        None => name.split('.').next().map(str::to_string),
    }
}

/// The words that mark a dead-letter table's name.
const DLQ_WORDS: [&str; 5] = ["dead_letter", "deadletter", "dlq", "failed_", "failures"];

/// The dead-letter candidates among `schemas`' tables: named like one (`failed_jobs`,
/// `dead_letters`, `*_dlq`) and open to the runtime's INSERT; the first is the guess.
pub fn dlq(facts: &Facts, schemas: &[String]) -> Option<Guess<String>> {
    let candidates: Vec<&str> = facts
        .relations
        .iter()
        .filter(|r| matches!(r.kind, 'r' | 'p') && !r.is_partition && r.runtime_can_insert)
        .filter(|r| schema_of(&r.name).is_some_and(|s| schemas.contains(&s)))
        .filter(|r| {
            let table = r.name.rsplit('.').next().unwrap_or("").to_lowercase();
            DLQ_WORDS.iter().any(|w| table.contains(w))
        })
        .map(|r| r.name.as_str())
        .collect();
    let first = candidates.first()?;
    Some(Guess {
        value: first.to_string(),
        why: if candidates.len() == 1 {
            "named like a dead-letter table, and the runtime may INSERT into it".into()
        } else {
            format!(
                "named like a dead-letter table, and the runtime may INSERT into it (other candidates: {})",
                candidates[1..].join(", ")
            )
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::policies::{PolicyCommand, PolicyMode};

    fn table(name: &str, owner: &str, columns: &[&str]) -> Relation {
        Relation {
            owner: owner.into(),
            tenant_column: None,
            insertable_columns: columns.iter().map(|c| c.to_string()).collect(),
            ..crate::catalog::test_table(name)
        }
    }

    fn policy(using: &str) -> Policy {
        Policy {
            name: "p".into(),
            mode: PolicyMode::Permissive,
            command: PolicyCommand::All,
            roles: vec!["PUBLIC".into()],
            applies_to_runtime: true,
            using: Some(using.into()),
            with_check: None,
        }
    }

    fn reference(relation: &str, column: &str, referenced: &str, key: &str) -> ColumnReference {
        ColumnReference {
            relation: relation.into(),
            column: column.into(),
            referenced: referenced.into(),
            referenced_column: key.into(),
        }
    }

    /// Workspaces keyed by slug (with a policy of their own on `slug`), contacts and deals
    /// with two tenant column names, a helper function, and a dead-letter table.
    fn facts() -> Facts {
        let helper = FunctionSource {
            schema: "app".into(),
            name: "ws".into(),
            definition: Some("BEGIN RETURN current_setting('app.workspace', true); END".into()),
        };
        let mut failed = table(
            "crm.failed_jobs",
            "crm_owner",
            &["id", "workspace", "error"],
        );
        failed.runtime_can_insert = true;
        Facts {
            relations: vec![
                table("crm.workspaces", "crm_owner", &["slug", "name"]),
                table("crm.contacts", "crm_owner", &["id", "workspace", "name"]),
                table("crm.notes", "crm_owner", &["id", "workspace", "body"]),
                table(
                    "crm.deals",
                    "crm_owner",
                    &["id", "owner_workspace", "contact_id"],
                ),
                failed,
                table("public.settings", "postgres", &["key"]),
            ],
            policies: [
                (
                    "crm.workspaces",
                    "(slug = current_setting('app.workspace'))",
                ),
                ("crm.contacts", "(workspace = app.ws())"),
                ("crm.notes", "((workspace = app.ws()) AND (id IS NOT NULL))"),
                (
                    "crm.deals",
                    "(owner_workspace = current_setting('app.workspace', true))",
                ),
                ("crm.failed_jobs", "(workspace = app.ws())"),
                (
                    "public.settings",
                    "(current_setting('request.jwt.role') = 'admin'::text)",
                ),
            ]
            .into_iter()
            .map(|(r, u)| (r.to_string(), vec![policy(u)]))
            .collect(),
            functions: vec![helper],
            references: vec![
                reference("crm.contacts", "workspace", "crm.workspaces", "slug"),
                reference("crm.deals", "owner_workspace", "crm.workspaces", "slug"),
                reference("crm.notes", "workspace", "crm.workspaces", "slug"),
                reference("crm.deals", "contact_id", "crm.contacts", "id"),
            ],
        }
    }

    #[test]
    fn the_setting_most_policies_read_through_helpers_too_is_the_tenant_setting() {
        let g = setting(&facts()).unwrap();
        assert_eq!(g.value, "app.workspace");
        assert_eq!(g.why, "read by 5 of 6 policies");
        let none = Facts {
            policies: [(
                "public.t".to_string(),
                vec![policy("(owner = CURRENT_USER)")],
            )]
            .into(),
            ..Facts::default()
        };
        let e = setting(&none).unwrap_err();
        assert!(e.message().contains("no tenant setting found"), "{e}");
    }

    #[test]
    fn columns_table_key_admin_schemas_and_dlq_are_guessed() {
        let f = facts();
        let cols = columns(&f, "app.workspace");
        assert_eq!(
            cols.value,
            ["workspace", "owner_workspace"],
            "the tenant table's own policy on slug does not make slug a tenant column; \
             notes' id is named by one policy only beside workspace, which more relations name"
        );
        let t = tenant_table(&f, &cols.value).unwrap();
        assert_eq!(t.value, ("crm.workspaces".into(), "slug".into()));
        assert_eq!(
            t.why,
            "referenced by the tenant column of 3 of 4 tenant relation(s)"
        );
        let a = admin(&f, &cols.value).unwrap();
        assert_eq!(a.value, "crm_owner");
        assert_eq!(schemas(&f, &a.value).value, ["crm"]);
        assert_eq!(dlq(&f, &["crm".into()]).unwrap().value, "crm.failed_jobs");
        assert!(dlq(&f, &["public".into()]).is_none());
    }
}
