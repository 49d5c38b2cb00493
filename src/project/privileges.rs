//! The privileges a project declares: a preset resolved against its tenant tables, then the
//! explicit entries of `rlsgate.toml` (which replace the preset's for their object), with
//! function signatures normalised as the catalog prints them.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use super::config::{self, Preset, ProjectConfig};
use crate::catalog::{self, Relation};
use crate::error::{Error, Result};
use crate::subject::ExpectedPrivileges;

/// The declared privileges: the preset resolved against the tenant tables, then the explicit
/// entries (which replace the preset's for their object).
///
/// # Errors
/// A database error when the catalog cannot be read.
pub(crate) async fn expected_privileges(
    oracle: &Client,
    project: &ProjectConfig,
    relations: &[Relation],
) -> Result<ExpectedPrivileges> {
    let p = &project.privileges;
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    let mut expected = ExpectedPrivileges::default();
    let preset = match p.preset {
        Preset::None => None,
        Preset::DmlOnTenantTables => Some(set(&["SELECT", "INSERT", "UPDATE", "DELETE"])),
        Preset::ReadOnlyOnTenantTables => Some(set(&["SELECT"])),
    };
    if let Some(privileges) = preset {
        for r in relations
            .iter()
            .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p') && !r.is_partition)
        {
            expected
                .relations
                .insert(r.name.clone(), privileges.clone());
        }
    }
    let upper = config::upper;
    for (name, privileges) in &p.relations {
        expected.relations.insert(name.clone(), upper(privileges));
    }
    for (name, privileges) in &p.sequences {
        expected.sequences.insert(name.clone(), upper(privileges));
    }
    for (name, privileges) in &p.functions {
        // Normalise the signature as regprocedure prints it.
        let normal: Option<String> = oracle
            .query_one(
                &format!(
                    "SELECT (SELECT {} FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                             WHERE p.oid = to_regprocedure($1))",
                    catalog::function_name_sql("p")
                ),
                &[name],
            )
            .await
            .map_err(|e| Error::database("resolving a function signature", e))?
            .get(0);
        let normal = normal.ok_or_else(|| {
            Error::config(format!(
                "privileges.functions: no function {name}; write its signature as regprocedure prints it, e.g. public.f(uuid)"
            ))
        })?;
        expected.functions.insert(normal, upper(privileges));
    }
    expected.schemas = match &p.schemas {
        Some(s) => s.iter().map(|(k, v)| (k.clone(), upper(v))).collect(),
        None => project
            .schema
            .schemas
            .iter()
            .map(|s| (s.clone(), set(&["USAGE"])))
            .collect(),
    };
    expected.database = match &p.database {
        Some(d) => upper(d),
        None => set(&["CONNECT"]),
    };
    expected.memberships = p
        .memberships
        .clone()
        .unwrap_or_else(|| project.roles.runtime_member_of.clone())
        .into_iter()
        .collect();
    Ok(expected)
}
