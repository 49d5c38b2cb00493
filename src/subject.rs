//! The subject of the checks: who the runtime and admin roles are, how the tenant context is
//! carried, and the runtime's declared privilege matrix.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::roles;
use crate::system::TENANT_SETTING;

/// What the checks need to know about the system under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The runtime role every worker connection must log in as.
    pub runtime_role: String,
    /// The admin role that owns the schema and applies migrations.
    pub admin_role: String,
    /// The GUC that carries the tenant context.
    pub tenant_setting: String,
    /// The columns that hold the tenant, in order of preference: a relation with any of them
    /// holds tenant data, and the first it has is its tenant column.
    pub tenant_columns: Vec<String>,
    /// How the application sets the context in a transaction: a statement whose `$1` is the
    /// tenant id as text. `None`: `SELECT set_config(<tenant_setting>, $1, true)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_context: Option<String>,
    /// The schemas that hold the application's relations.
    pub schemas: Vec<String>,
    /// Relations (schema-qualified, as `format('%I.%I')` prints them) left out of every check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// When not empty, the only relations checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// The runtime's declared privileges.
    pub expected: ExpectedPrivileges,
    /// Whether RLS must be forced on every tenant table even where the runtime cannot act as
    /// its owner (else that is a note).
    #[serde(default)]
    pub require_forced_rls: bool,
}

impl Subject {
    /// The built-in reference system (docs/system.md sections 1 and 4).
    pub fn reference() -> Self {
        Self {
            runtime_role: roles::APP_USER.into(),
            admin_role: roles::MIGRATION_OWNER.into(),
            tenant_setting: TENANT_SETTING.into(),
            tenant_columns: vec!["tenant_id".into()],
            set_context: None,
            schemas: vec!["public".into()],
            exclude: Vec::new(),
            include: Vec::new(),
            expected: ExpectedPrivileges::reference(),
            require_forced_rls: true,
        }
    }

    /// Whether relation `name` (schema-qualified) is checked: listed in `include` when that is
    /// not empty, and not in `exclude`.
    pub fn covers(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|i| i == name))
            && !self.exclude.iter().any(|e| e == name)
    }

    /// The statement that sets the tenant context in the current transaction, `$1` the tenant
    /// id as text: the application's own, or `SELECT set_config('<setting>', $1, true)`.
    pub fn context_statement(&self) -> String {
        self.set_context.clone().unwrap_or_else(|| {
            format!(
                "SELECT set_config({}, $1, true)",
                crate::sql::quote_literal(&self.tenant_setting)
            )
        })
    }

    /// The tenant columns, for messages (`tenant_id` or `org_id or tenant_id`).
    pub fn tenant_columns_text(&self) -> String {
        self.tenant_columns.join(" or ")
    }
}

/// The runtime's declared privilege matrix. Objects are schema-qualified (`public.tenants`);
/// privileges are upper case, as `has_*_privilege` names them. An object not listed is
/// expected to grant nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedPrivileges {
    /// Tables, views and materialized views: SELECT, INSERT, UPDATE, DELETE, TRUNCATE,
    /// REFERENCES, TRIGGER.
    pub relations: BTreeMap<String, BTreeSet<String>>,
    /// Sequences: USAGE, SELECT, UPDATE.
    pub sequences: BTreeMap<String, BTreeSet<String>>,
    /// Functions and procedures by `regprocedure` text (`public.f(uuid)`): EXECUTE.
    pub functions: BTreeMap<String, BTreeSet<String>>,
    /// Schemas: USAGE, CREATE.
    pub schemas: BTreeMap<String, BTreeSet<String>>,
    /// The database: CONNECT, CREATE, TEMPORARY.
    pub database: BTreeSet<String>,
    /// Roles the runtime is a member of (directly or not), hence may `SET ROLE` to.
    pub memberships: BTreeSet<String>,
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl ExpectedPrivileges {
    /// docs/system.md section 4.
    pub fn reference() -> Self {
        let relations = [
            ("public.llm_api_calls", &["SELECT", "INSERT"][..]),
            (
                "public.llm_monthly_costs",
                &["SELECT", "INSERT", "UPDATE"][..],
            ),
            ("public.investigations", &["SELECT", "INSERT"][..]),
            ("public.budget_optimization_jobs", &["SELECT", "INSERT"][..]),
            ("public.worker_failed_jobs", &["SELECT", "INSERT"][..]),
        ]
        .into_iter()
        .map(|(r, p)| (r.to_string(), set(p)))
        .collect();
        Self {
            relations,
            sequences: BTreeMap::new(),
            functions: BTreeMap::new(),
            schemas: [("public".to_string(), set(&["USAGE"]))].into(),
            database: set(&["CONNECT"]),
            memberships: set(&[roles::APP_RW, roles::APP_RO]),
        }
    }

    /// The privileges expected on relation `name` (schema-qualified).
    pub fn on_relation(&self, name: &str) -> BTreeSet<String> {
        self.relations.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_grants_nothing_on_tenants_and_no_delete_anywhere() {
        let e = ExpectedPrivileges::reference();
        assert!(e.on_relation("public.tenants").is_empty());
        assert!(e.relations.values().all(|p| !p.contains("DELETE")));
        assert_eq!(
            e.on_relation("public.llm_monthly_costs"),
            set(&["INSERT", "SELECT", "UPDATE"])
        );
    }
}
