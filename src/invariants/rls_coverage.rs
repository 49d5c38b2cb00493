//! `rls-coverage`: every tenant relation is covered by row-level security that binds the tenant
//! context.
//!
//! A *tenant relation* is a relation of the subject's schemas with the tenant column (relations
//! without it are [`least_privilege`](super::least_privilege)'s business). Read as the oracle,
//! about the runtime role:
//! - tables and partitioned tables: RLS enabled and forced; at least one permissive policy that
//!   applies to the runtime; every permissive policy's USING and WITH CHECK (USING where WITH
//!   CHECK is absent) reads the tenant setting and the tenant column, is not trivially true and
//!   is not widened by an OR branch that ignores the context; every command the runtime holds
//!   (SELECT, INSERT, UPDATE, DELETE) is governed by such a policy. A leaf partition the runtime
//!   cannot touch directly is governed by its parent's policies;
//! - views the runtime can read: `security_invoker` (PostgreSQL 15+), else they read their base
//!   tables with their owner's privileges;
//! - materialized views and foreign tables the runtime can read: violated, neither carries RLS;
//! - SECURITY DEFINER functions the runtime can execute: violated when their owner bypasses RLS
//!   on a tenant relation (superuser, BYPASSRLS, or owner of a relation whose RLS is not
//!   forced), or when they do not pin `search_path`.
//!
//! [`catalogue`] returns what was read, per tenant relation, for the evidence pack.
use tokio_postgres::Client;

use crate::catalog;
use crate::catalog::policies::{Policy, PolicyEntry, PolicyMode, RelationKind, catalogue};
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Status, Undecided};
use crate::policy_expression::{Binding, classify_expression};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::RlsCoverage;

/// Check that every tenant relation of the subject is covered by row-level security that binds
/// the tenant context (see the module docs). Inconclusive when the subject's schemas hold no
/// relation with the tenant column.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn check(oracle: &Client, subject: &Subject) -> Result<Vec<Observation>> {
    let entries = catalogue(oracle, subject).await?;
    if entries.is_empty() {
        return Ok(vec![Observation::inconclusive(
            ID,
            Undecided::NothingToCheck,
            "catalog:tenant-relations",
            format!(
                "no relation in {} has the tenant column {}: nothing to cover, or the subject names the wrong column",
                subject.schemas.join(", "),
                subject.tenant_columns_text()
            ),
        )]);
    }
    let version = catalog::server_version_num(oracle).await?;
    let mut out: Vec<Observation> = entries
        .iter()
        .flat_map(|e| check_entry(e, subject, version))
        .collect();
    out.extend(check_definers(oracle, subject, &entries).await?);
    Ok(out)
}

/// SECURITY DEFINER functions the runtime can execute run with their owner's privileges: the
/// owner must not bypass RLS on a tenant relation, and `search_path` must be pinned.
async fn check_definers(
    oracle: &Client,
    subject: &Subject,
    entries: &[PolicyEntry],
) -> Result<Vec<Observation>> {
    let rows = oracle
        .query(
            &format!(
                "SELECT {}, pg_get_userbyid(p.proowner)::text,
                    o.rolsuper OR o.rolbypassrls,
                    coalesce(array_to_string(p.proconfig, ',') ~ '(^|,)search_path=', false),
                    ARRAY(SELECT format('%I.%I', cn.nspname, c.relname)::text
                          FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
                          WHERE cn.nspname = ANY($1) AND NOT c.relforcerowsecurity
                            AND pg_has_role(p.proowner, c.relowner, 'USAGE'))
             FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             JOIN pg_roles o ON o.oid = p.proowner
             JOIN pg_roles r ON r.rolname = $2
             WHERE n.nspname = ANY($1) AND p.prosecdef
               AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
             ORDER BY 1",
                catalog::function_name_sql("p")
            ),
            &[&subject.schemas, &subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("reading the SECURITY DEFINER functions", e))?;
    let tenant: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e.relation.as_str()).collect();
    let runtime = &subject.runtime_role;
    let mut out = Vec::new();
    for r in rows {
        let function: String = r.get(0);
        let owner: String = r.get(1);
        let privileged: bool = r.get(2);
        let pinned: bool = r.get(3);
        let unforced: Vec<String> = r.get(4);
        let bypassed: Vec<&String> = unforced
            .iter()
            .filter(|n| tenant.contains(n.as_str()))
            .collect();
        let probe = "catalog:security-definer";
        out.push(
            if privileged {
                Observation::violated(
                    ID,
                    probe,
                    format!(
                        "SECURITY DEFINER function {function}, executable by {runtime}, runs as {owner},                          a superuser or BYPASSRLS role: no policy filters what it reads"
                    ),
                )
            } else if let Some(rel) = bypassed.first() {
                Observation::violated(
                    ID,
                    probe,
                    format!(
                        "SECURITY DEFINER function {function}, executable by {runtime}, runs as {owner},                          which owns {rel} without FORCE ROW LEVEL SECURITY: it reads every tenant's rows there"
                    ),
                )
            } else {
                Observation::new(
                    ID,
                    Status::Holds,
                    probe,
                    format!(
                        "SECURITY DEFINER function {function} runs as {owner}, which is filtered by the policies"
                    ),
                )
            }
            .on(function.clone()),
        );
        out.push(
            Observation::expect(
                ID,
                pinned,
                "catalog:security-definer-search-path",
                format!(
                    "SECURITY DEFINER function {function} does not pin search_path:                      an object {runtime} creates earlier on the path (pg_temp) can hijack it"
                ),
            )
            .on(function),
        );
    }
    Ok(out)
}

/// The observations about one tenant relation (pure: no database).
fn check_entry(e: &PolicyEntry, subject: &Subject, server_version_num: i32) -> Vec<Observation> {
    let runtime = &subject.runtime_role;
    let name = &e.relation;
    let holds = |probe: &str, detail: String| {
        Observation::new(ID, Status::Holds, probe, detail).on(name.clone())
    };
    let violated =
        |probe: &str, detail: String| Observation::violated(ID, probe, detail).on(name.clone());
    let readable = e.runtime_can("SELECT");
    match e.kind {
        RelationKind::View => {
            let probe = "catalog:view-security-invoker";
            return vec![if !readable {
                holds(probe, format!("view {name} is not readable by {runtime}"))
            } else if e.security_invoker {
                holds(
                    probe,
                    format!(
                        "view {name} is security_invoker: its base tables' RLS applies to {runtime}"
                    ),
                )
            } else {
                let mut detail = format!(
                    "view {name} exposes the tenant column to {runtime} without security_invoker: \
                     it reads its base tables with the privileges of its owner {}",
                    e.owner
                );
                if server_version_num < 150000 {
                    detail.push_str(&format!(
                        " (security_invoker needs PostgreSQL 15; this server is {server_version_num}: \
                         revoke the runtime's access instead)"
                    ));
                }
                violated(probe, detail)
            }];
        }
        RelationKind::MaterializedView | RelationKind::ForeignTable => {
            let probe = "catalog:no-rls";
            return vec![if readable {
                violated(
                    probe,
                    format!(
                        "{} {name} holds tenant rows and cannot carry row-level security: {runtime} reads every tenant's rows",
                        e.kind
                    ),
                )
            } else {
                holds(
                    probe,
                    format!("{} {name} is not readable by {runtime}", e.kind),
                )
            }];
        }
        RelationKind::Table | RelationKind::PartitionedTable => {}
    }
    if let Some(parent) = &e.partition_of
        && e.runtime_privileges.is_empty()
    {
        return vec![holds(
            "catalog:partition",
            format!(
                "leaf partition {name} of {parent} is not accessible to {runtime} directly: the parent's policies govern it"
            ),
        )];
    }
    let mut out = vec![
        if e.rls_enabled {
            holds(
                "catalog:relrowsecurity",
                format!("row-level security is enabled on {name}"),
            )
        } else {
            violated(
                "catalog:relrowsecurity",
                format!(
                    "row-level security is not enabled on {name}: whoever can read it reads every tenant's rows"
                ),
            )
        },
        if e.rls_forced {
            holds(
                "catalog:relforcerowsecurity",
                format!("row-level security is forced on {name}"),
            )
        } else {
            let detail = if &e.owner == runtime {
                format!(
                    "row-level security is not forced on {name}: its owner is the runtime {runtime} itself, \
                     which bypasses the policies and reads and writes every tenant's rows"
                )
            } else if e.runtime_has_owner_privileges {
                format!(
                    "row-level security is not forced on {name}: its owner {} bypasses the policies, and {runtime} \
                     has the owner's privileges, so the runtime reads and writes every tenant's rows",
                    e.owner
                )
            } else {
                format!(
                    "row-level security is not forced on {name}: its owner {} bypasses the policies",
                    e.owner
                )
            };
            violated("catalog:relforcerowsecurity", detail)
        },
    ];
    let applicable: Vec<&Policy> = e
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Permissive && p.applies_to_runtime)
        .collect();
    out.push(if !applicable.is_empty() {
        let names: Vec<&str> = applicable.iter().map(|p| p.name.as_str()).collect();
        holds(
            "catalog:pg_policy",
            format!("permissive policies on {name} that apply to {runtime}: {}", names.join(", ")),
        )
    } else if e.policies.is_empty() {
        violated(
            "catalog:pg_policy",
            format!("{name} has no policy: {runtime} sees no row and writes none (default deny)"),
        )
    } else {
        let others: Vec<String> = e
            .policies
            .iter()
            .map(|p| {
                let mode = match p.mode {
                    PolicyMode::Permissive => "permissive",
                    PolicyMode::Restrictive => "restrictive",
                };
                format!("{} ({mode}, TO {})", p.name, p.roles.join(", "))
            })
            .collect();
        violated(
            "catalog:pg_policy",
            format!(
                "no permissive policy on {name} applies to {runtime} ({}): default deny, the runtime sees no row",
                others.join("; ")
            ),
        )
    });
    for p in e
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Permissive)
    {
        let policy = format!("permissive policy {} ({}) on {name}", p.name, p.command);
        if p.command.filters_rows() {
            let binding = classify_expression(
                p.using.as_deref(),
                &subject.tenant_setting,
                &e.tenant_column,
            );
            out.push(
                binding_observation(
                    &binding,
                    "catalog:policy-using",
                    &policy,
                    "USING",
                    subject,
                    e,
                )
                .on(name.clone()),
            );
        }
        if p.command.checks_rows() {
            let (expression, clause) = match &p.with_check {
                Some(w) => (Some(w.as_str()), "WITH CHECK".to_string()),
                None => (
                    p.using.as_deref(),
                    "WITH CHECK (absent: USING checks new rows)".to_string(),
                ),
            };
            let binding =
                classify_expression(expression, &subject.tenant_setting, &e.tenant_column);
            out.push(
                binding_observation(
                    &binding,
                    "catalog:policy-with-check",
                    &policy,
                    &clause,
                    subject,
                    e,
                )
                .on(name.clone()),
            );
        }
    }
    for privilege in &e.runtime_privileges {
        let covered = applicable.iter().any(|p| p.command.covers(privilege));
        out.push(if covered {
            holds(
                "catalog:policy-command",
                format!("{runtime}'s {privilege} on {name} is governed by a permissive policy"),
            )
        } else {
            violated(
                "catalog:policy-command",
                format!(
                    "{runtime} holds {privilege} on {name} but no permissive policy for {privilege} applies to it: \
                     the command is governed only by default deny (policy for the wrong command)"
                ),
            )
        });
    }
    out
}

fn binding_observation(
    binding: &Binding,
    probe: &str,
    policy: &str,
    clause: &str,
    subject: &Subject,
    entry: &PolicyEntry,
) -> Observation {
    let setting = &subject.tenant_setting;
    let column = &entry.tenant_column;
    let detail = match binding {
        Binding::BindsContext => {
            return Observation::new(
                ID,
                Status::Holds,
                probe,
                format!("{policy}: {clause} binds {setting} to {column}"),
            );
        }
        Binding::Absent => format!(
            "{policy} has no {clause} expression: it matches no row (default deny, a liveness bug)"
        ),
        Binding::TriviallyTrue(e) => format!("{policy}: {clause} is trivially true: `{e}`"),
        Binding::NoTenantColumn(e) => format!(
            "{policy}: {clause} does not reference the tenant column {column}, so it matches rows of every tenant: `{e}`"
        ),
        Binding::NoTenantContext(e) => format!(
            "{policy}: {clause} does not read the tenant context current_setting('{setting}'): `{e}`"
        ),
        Binding::Widened { branch, .. } => format!(
            "{policy}: {clause} is widened by an OR branch that ignores the tenant context: `{branch}`"
        ),
    };
    Observation::violated(ID, probe, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::policies::PolicyCommand;

    const REFERENCE: &str = "(tenant_id = (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid)";

    fn entry(policies: Vec<Policy>, privileges: &[&str]) -> PolicyEntry {
        PolicyEntry {
            tenant_column: "tenant_id".into(),
            relation: "public.t".into(),
            kind: RelationKind::Table,
            rls_enabled: true,
            rls_forced: true,
            owner: "migration_owner".into(),
            runtime_has_owner_privileges: false,
            partition_of: None,
            security_invoker: false,
            runtime_privileges: privileges.iter().map(|p| p.to_string()).collect(),
            policies,
        }
    }

    fn policy(command: PolicyCommand, using: Option<&str>, with_check: Option<&str>) -> Policy {
        Policy {
            name: "p".into(),
            mode: PolicyMode::Permissive,
            command,
            roles: vec!["PUBLIC".into()],
            applies_to_runtime: true,
            using: using.map(str::to_string),
            with_check: with_check.map(str::to_string),
        }
    }

    fn violations(e: &PolicyEntry) -> Vec<String> {
        check_entry(e, &Subject::reference(), 150000)
            .into_iter()
            .filter(|o| o.status == Status::Violated)
            .map(|o| o.detail)
            .collect()
    }

    #[test]
    fn a_reference_table_holds_everywhere() {
        let e = entry(
            vec![policy(PolicyCommand::All, Some(REFERENCE), Some(REFERENCE))],
            &["SELECT", "INSERT"],
        );
        assert_eq!(violations(&e), Vec::<String>::new());
        let e = entry(
            vec![policy(PolicyCommand::All, Some(REFERENCE), None)],
            &["SELECT"],
        );
        assert_eq!(
            violations(&e),
            Vec::<String>::new(),
            "USING doubles as the check"
        );
    }

    #[test]
    fn with_check_true_and_a_select_only_policy_are_violations() {
        let e = entry(
            vec![policy(PolicyCommand::All, Some(REFERENCE), Some("true"))],
            &["SELECT", "INSERT"],
        );
        let v = violations(&e);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("WITH CHECK is trivially true"), "{v:?}");
        let e = entry(
            vec![policy(PolicyCommand::Select, Some(REFERENCE), None)],
            &["SELECT", "INSERT", "UPDATE"],
        );
        let v = violations(&e);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|d| d.contains("wrong command")), "{v:?}");
    }

    #[test]
    fn unforced_unenabled_and_uncovered_tables_are_violations() {
        let mut e = entry(vec![], &["SELECT"]);
        e.rls_enabled = false;
        e.rls_forced = false;
        e.runtime_has_owner_privileges = true;
        let v = violations(&e);
        assert!(v[0].contains("not enabled"), "{v:?}");
        assert!(
            v[1].contains("not forced") && v[1].contains("owner's privileges"),
            "{v:?}"
        );
        assert!(v[2].contains("has no policy"), "{v:?}");
        let mut admin_only = policy(PolicyCommand::All, Some(REFERENCE), None);
        admin_only.applies_to_runtime = false;
        admin_only.roles = vec!["migration_owner".into()];
        let v = violations(&entry(vec![admin_only], &[]));
        assert!(v[0].contains("no permissive policy"), "{v:?}");
    }

    #[test]
    fn readable_views_need_security_invoker_and_matviews_always_leak() {
        let mut view = entry(vec![], &["SELECT"]);
        view.kind = RelationKind::View;
        assert!(violations(&view)[0].contains("without security_invoker"));
        let old = check_entry(&view, &Subject::reference(), 140010);
        assert!(old[0].detail.contains("needs PostgreSQL 15"));
        view.security_invoker = true;
        assert!(violations(&view).is_empty());
        let mut matview = entry(vec![], &["SELECT"]);
        matview.kind = RelationKind::MaterializedView;
        assert_eq!(violations(&matview).len(), 1);
        matview.runtime_privileges.clear();
        assert!(violations(&matview).is_empty(), "not readable: no leak");
    }

    #[test]
    fn a_leaf_partition_the_runtime_cannot_touch_is_governed_by_its_parent() {
        let mut leaf = entry(vec![], &[]);
        leaf.rls_enabled = false;
        leaf.partition_of = Some("public.parent".into());
        assert!(violations(&leaf).is_empty());
        leaf.runtime_privileges = vec!["SELECT".into()];
        assert!(
            !violations(&leaf).is_empty(),
            "readable directly: must be covered"
        );
    }
}
