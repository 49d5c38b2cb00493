//! `rls-coverage`: every tenant relation is covered by row-level security that binds the tenant
//! context.
//!
//! A *tenant relation* is a relation of the subject's schemas with the tenant column (relations
//! without it are [`least_privilege`](super::least_privilege)'s business). Read as the oracle,
//! about the runtime role:
//! - tables and partitioned tables: RLS enabled and forced; every permissive policy that
//!   applies to the runtime reads the tenant setting (directly or through helper functions,
//!   [`ContextReaders`]) and the tenant column in its USING and WITH CHECK (USING where WITH
//!   CHECK is absent), is not trivially true and is not widened by an OR branch that ignores
//!   the context, unless RESTRICTIVE policies that bind the context narrow every command it
//!   governs; every command the runtime is declared to use is governed by such a policy. A
//!   leaf partition the runtime cannot touch directly is governed by its parent's policies;
//! - a risk the runtime cannot reach is a note, not a violation: RLS not enabled on a table it
//!   cannot reach, not forced where it cannot act as the owner (unless the subject requires
//!   forced RLS), deny-all (no policy) where it declares nothing, a command it holds but does
//!   not declare and no policy opens, an expression whose reading of the context depends on a
//!   function rlsgate cannot read (the probes decide);
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
use crate::catalog::policies::PolicyCommand;
use crate::catalog::policies::{Policy, PolicyEntry, PolicyMode, RelationKind, catalogue};
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Status, Undecided};
use crate::policy_expression::{Binding, ContextReaders, classify_with};
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
    let readers = ContextReaders::resolve(
        &catalog::policies::function_sources(oracle).await?,
        &subject.tenant_setting,
    );
    let mut out: Vec<Observation> = entries
        .iter()
        .flat_map(|e| check_entry(e, subject, version, &readers))
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

/// The observations about one tenant relation (pure: no database). `readers` tells which
/// functions read the tenant context.
fn check_entry(
    e: &PolicyEntry,
    subject: &Subject,
    server_version_num: i32,
    readers: &ContextReaders,
) -> Vec<Observation> {
    let runtime = &subject.runtime_role;
    let name = &e.relation;
    if let Some(o) = not_a_table(e, subject, server_version_num) {
        return vec![o];
    }
    if let Some(parent) = &e.partition_of
        && e.runtime_privileges.is_empty()
    {
        return vec![Observation::new(
            ID,
            Status::Holds,
            "catalog:partition",
            format!(
                "leaf partition {name} of {parent} is not accessible to {runtime} directly: the parent's policies govern it"
            ),
        )
        .on(name.clone())];
    }
    let mut out = enablement(e, subject);
    let applicable: Vec<&Policy> = e
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Permissive && p.applies_to_runtime)
        .collect();
    out.push(presence(e, subject, &applicable));
    out.extend(bindings(e, subject, readers));
    out.extend(commands(e, subject, &applicable));
    out.into_iter().map(|o| o.on(name.clone())).collect()
}

/// A view, materialized view or foreign table: `None` for a table.
fn not_a_table(e: &PolicyEntry, subject: &Subject, server_version_num: i32) -> Option<Observation> {
    let runtime = &subject.runtime_role;
    let name = &e.relation;
    let readable = e.runtime_can("SELECT");
    let o = match e.kind {
        RelationKind::Table | RelationKind::PartitionedTable => return None,
        RelationKind::View => {
            let probe = "catalog:view-security-invoker";
            if !readable {
                Observation::new(
                    ID,
                    Status::Holds,
                    probe,
                    format!("view {name} is not readable by {runtime}"),
                )
            } else if e.security_invoker {
                Observation::new(
                    ID,
                    Status::Holds,
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
                Observation::violated(ID, probe, detail)
            }
        }
        RelationKind::MaterializedView | RelationKind::ForeignTable => {
            let probe = "catalog:no-rls";
            if readable {
                Observation::violated(
                    ID,
                    probe,
                    format!(
                        "{} {name} holds tenant rows and cannot carry row-level security: {runtime} reads every tenant's rows",
                        e.kind
                    ),
                )
            } else {
                Observation::new(
                    ID,
                    Status::Holds,
                    probe,
                    format!("{} {name} is not readable by {runtime}", e.kind),
                )
            }
        }
    };
    Some(o.on(name.clone()))
}

/// RLS enabled and forced. Each is a risk the runtime can only act on when it can reach the
/// table: RLS not enabled on a table the runtime cannot reach, or not forced on one whose owner
/// the runtime cannot act as (the usual shape of projects whose owner never logs in), is a
/// note, unless the subject requires forced RLS. A SECURITY DEFINER function or a view owned by
/// the owner is judged on its own (`check_definers`, the view's observation, READ-FN, READ).
fn enablement(e: &PolicyEntry, subject: &Subject) -> Vec<Observation> {
    let runtime = &subject.runtime_role;
    let name = &e.relation;
    let reachable = !e.runtime_privileges.is_empty();
    let owner_rights = &e.owner == runtime || e.runtime_has_owner_privileges;
    let enabled = if e.rls_enabled {
        Observation::new(
            ID,
            Status::Holds,
            "catalog:relrowsecurity",
            format!("row-level security is enabled on {name}"),
        )
    } else if reachable {
        Observation::violated(
            ID,
            "catalog:relrowsecurity",
            format!(
                "row-level security is not enabled on {name}: whoever can read it reads every tenant's rows"
            ),
        )
    } else {
        Observation::note(
            ID,
            "catalog:relrowsecurity",
            format!(
                "row-level security is not enabled on {name}, which {runtime} cannot reach: a grant added later would expose every tenant's rows"
            ),
        )
    };
    let forced = if e.rls_forced {
        Observation::new(
            ID,
            Status::Holds,
            "catalog:relforcerowsecurity",
            format!("row-level security is forced on {name}"),
        )
    } else if &e.owner == runtime {
        Observation::violated(
            ID,
            "catalog:relforcerowsecurity",
            format!(
                "row-level security is not forced on {name}: its owner is the runtime {runtime} itself, \
                 which bypasses the policies and reads and writes every tenant's rows"
            ),
        )
    } else if owner_rights {
        Observation::violated(
            ID,
            "catalog:relforcerowsecurity",
            format!(
                "row-level security is not forced on {name}: its owner {} bypasses the policies, and {runtime} \
                 has the owner's privileges, so the runtime reads and writes every tenant's rows",
                e.owner
            ),
        )
    } else if subject.require_forced_rls {
        Observation::violated(
            ID,
            "catalog:relforcerowsecurity",
            format!(
                "row-level security is not forced on {name}: its owner {} bypasses the policies (forced RLS is required here)",
                e.owner
            ),
        )
    } else {
        Observation::note(
            ID,
            "catalog:relforcerowsecurity",
            format!(
                "row-level security is not forced on {name}: its owner {} bypasses the policies; {runtime} cannot act as it \
                 (what runs with the owner's rights, a SECURITY DEFINER function or a view, is judged on its own)",
                e.owner
            ),
        )
    };
    vec![enabled, forced]
}

/// At least one permissive policy applies to the runtime. With none, every row is denied:
/// deny-all is a design (service-only tables), so it is a finding only when the subject
/// declares privileges the runtime is then meant to use.
fn presence(e: &PolicyEntry, subject: &Subject, applicable: &[&Policy]) -> Observation {
    let runtime = &subject.runtime_role;
    let name = &e.relation;
    if !applicable.is_empty() {
        let names: Vec<&str> = applicable.iter().map(|p| p.name.as_str()).collect();
        return Observation::new(
            ID,
            Status::Holds,
            "catalog:pg_policy",
            format!(
                "permissive policies on {name} that apply to {runtime}: {}",
                names.join(", ")
            ),
        );
    }
    let why = if e.policies.is_empty() {
        format!("{name} has no policy: {runtime} sees no row and writes none (default deny)")
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
        format!(
            "no permissive policy on {name} applies to {runtime} ({}): default deny, the runtime sees no row",
            others.join("; ")
        )
    };
    let declared = subject.expected.on_relation(name);
    if e.runtime_privileges.iter().any(|p| declared.contains(p)) {
        Observation::violated(
            ID,
            "catalog:pg_policy",
            format!("{why}, though it is declared to use {name}"),
        )
    } else {
        Observation::note(ID, "catalog:pg_policy", format!("{why}: deny-all"))
    }
}

/// Every permissive policy that applies to the runtime binds the context in its USING and WITH
/// CHECK, unless RESTRICTIVE policies that bind it narrow every command the permissive one
/// governs and the runtime holds (a permissive `USING (true)` beside a restrictive tenant
/// policy is a common correct design).
fn bindings(e: &PolicyEntry, subject: &Subject, readers: &ContextReaders) -> Vec<Observation> {
    let name = &e.relation;
    let classify = |expression: Option<&str>| {
        classify_with(
            expression,
            &subject.tenant_setting,
            &e.tenant_column,
            readers,
        )
    };
    let restrictive: Vec<&Policy> = e
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Restrictive && p.applies_to_runtime)
        .collect();
    // The restrictive policies that bind the context in this clause for every command
    // `command` governs that the runtime holds, if there are such for each.
    let narrowed = |command: PolicyCommand, check: bool| -> Option<String> {
        let mut names = std::collections::BTreeSet::new();
        for c in command
            .commands()
            .into_iter()
            .filter(|c| {
                if check {
                    matches!(*c, "INSERT" | "UPDATE")
                } else {
                    *c != "INSERT"
                }
            })
            .filter(|c| e.runtime_can(c))
        {
            let r = restrictive.iter().find(|r| {
                r.command.covers(c)
                    && if check {
                        classify(r.with_check.as_deref().or(r.using.as_deref())).binds()
                    } else {
                        classify(r.using.as_deref()).binds()
                    }
            })?;
            names.insert(r.name.as_str());
        }
        (!names.is_empty()).then(|| names.into_iter().collect::<Vec<_>>().join(", "))
    };
    let mut out = Vec::new();
    // A permissive policy for roles the runtime does not have (`TO service_role`) admits
    // nothing to it.
    for p in e
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Permissive && p.applies_to_runtime)
    {
        let policy = format!("permissive policy {} ({}) on {name}", p.name, p.command);
        if p.command.filters_rows() {
            let binding = classify(p.using.as_deref());
            let narrow = (!binding.binds())
                .then(|| narrowed(p.command, false))
                .flatten();
            out.push(binding_observation(
                &binding,
                narrow,
                "catalog:policy-using",
                &policy,
                "USING",
                subject,
                e,
            ));
        }
        if p.command.checks_rows() {
            let (expression, clause) = match &p.with_check {
                Some(w) => (Some(w.as_str()), "WITH CHECK".to_string()),
                None => (
                    p.using.as_deref(),
                    "WITH CHECK (absent: USING checks new rows)".to_string(),
                ),
            };
            let binding = classify(expression);
            let narrow = (!binding.binds())
                .then(|| narrowed(p.command, true))
                .flatten();
            out.push(binding_observation(
                &binding,
                narrow,
                "catalog:policy-with-check",
                &policy,
                &clause,
                subject,
                e,
            ));
        }
    }
    out
}

/// Every command the runtime holds is governed by a permissive policy that applies to it. One
/// it holds with no such policy is denied: a liveness bug when the subject declares the
/// privilege (the application means to use it), else a note (a project that grants broadly and
/// opens commands by policy, as Supabase's default grants do).
fn commands(e: &PolicyEntry, subject: &Subject, applicable: &[&Policy]) -> Vec<Observation> {
    let runtime = &subject.runtime_role;
    let name = &e.relation;
    let declared = subject.expected.on_relation(name);
    e.runtime_privileges
        .iter()
        .map(|privilege| {
            if applicable.iter().any(|p| p.command.covers(privilege)) {
                Observation::new(
                    ID,
                    Status::Holds,
                    "catalog:policy-command",
                    format!("{runtime}'s {privilege} on {name} is governed by a permissive policy"),
                )
            } else {
                let detail = format!(
                    "{runtime} holds {privilege} on {name} but no permissive policy for {privilege} applies to it: \
                     the command is governed only by default deny (policy for the wrong command)"
                );
                if declared.contains(privilege) {
                    Observation::violated(ID, "catalog:policy-command", detail)
                } else {
                    Observation::note(ID, "catalog:policy-command", format!("{detail}; {privilege} is not declared"))
                }
            }
        })
        .collect()
}

/// The observation for `binding`, the classification of `policy`'s `clause`; `narrowed` names
/// the restrictive policies that bind the context for every command it governs, if they do.
fn binding_observation(
    binding: &Binding,
    narrowed: Option<String>,
    probe: &str,
    policy: &str,
    clause: &str,
    subject: &Subject,
    entry: &PolicyEntry,
) -> Observation {
    let setting = &subject.tenant_setting;
    let column = &entry.tenant_column;
    if let Some(restrictive) = narrowed {
        return Observation::new(
            ID,
            Status::Holds,
            probe,
            format!(
                "{policy}: {clause} does not bind the context itself, but restrictive policy {restrictive} binds {setting} to {column} for every command it governs"
            ),
        );
    }
    let detail = match binding {
        Binding::BindsContext => {
            return Observation::new(
                ID,
                Status::Holds,
                probe,
                format!("{policy}: {clause} binds {setting} to {column}"),
            );
        }
        Binding::CannotTell {
            expression,
            function,
        } => {
            return Observation::note(
                ID,
                probe,
                format!(
                    "{policy}: whether {clause} reads the tenant context depends on {function}(), whose body rlsgate cannot read; the probes decide: `{expression}`"
                ),
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

    /// The reference subject, declaring every command on `public.t`.
    fn subject() -> Subject {
        let mut s = Subject::reference();
        s.expected.relations.insert(
            "public.t".into(),
            ["SELECT", "INSERT", "UPDATE", "DELETE"]
                .map(String::from)
                .into(),
        );
        s
    }

    fn of_status(e: &PolicyEntry, subject: &Subject, status: Status) -> Vec<String> {
        check_entry(e, subject, 150000, &ContextReaders::default())
            .into_iter()
            .filter(|o| o.status == status)
            .map(|o| o.detail)
            .collect()
    }

    fn violations(e: &PolicyEntry) -> Vec<String> {
        of_status(e, &subject(), Status::Violated)
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
        let v = violations(&entry(vec![admin_only], &["SELECT"]));
        assert!(v[0].contains("no permissive policy"), "{v:?}");
    }

    #[test]
    fn risks_the_runtime_cannot_reach_are_notes() {
        // Not forced, owned by a role the runtime cannot act as: a note, unless forced RLS is
        // required (the reference requires it).
        let mut e = entry(
            vec![policy(PolicyCommand::All, Some(REFERENCE), None)],
            &["SELECT"],
        );
        e.rls_forced = false;
        let mut relaxed = subject();
        relaxed.require_forced_rls = false;
        assert!(of_status(&e, &relaxed, Status::Violated).is_empty());
        assert!(of_status(&e, &relaxed, Status::Note)[0].contains("not forced"));
        assert!(violations(&e)[0].contains("forced RLS is required"));
        // Deny-all: RLS with no policy on a table the runtime cannot reach, or does not declare.
        let deny_all = entry(vec![], &[]);
        assert!(violations(&deny_all).is_empty());
        let mut undeclared = entry(vec![], &["SELECT"]);
        undeclared.relation = "public.service_only".into();
        assert!(
            violations(&undeclared).is_empty(),
            "{:?}",
            violations(&undeclared)
        );
        // RLS not enabled on a table the runtime cannot reach.
        let mut off = entry(vec![], &[]);
        off.rls_enabled = false;
        assert!(violations(&off).is_empty());
        assert!(of_status(&off, &subject(), Status::Note)[0].contains("not enabled"));
    }

    #[test]
    fn a_restrictive_policy_that_binds_the_context_narrows_a_permissive_true() {
        let mut tenant = policy(PolicyCommand::All, Some(REFERENCE), Some(REFERENCE));
        tenant.mode = PolicyMode::Restrictive;
        tenant.name = "tenant".into();
        let open = policy(PolicyCommand::All, Some("true"), Some("true"));
        let e = entry(vec![open.clone(), tenant.clone()], &["SELECT", "INSERT"]);
        assert_eq!(violations(&e), Vec::<String>::new());
        // A restrictive policy for SELECT only leaves writes open.
        tenant.command = PolicyCommand::Select;
        let v = violations(&entry(vec![open, tenant], &["SELECT", "INSERT"]));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("WITH CHECK is trivially true"), "{v:?}");
    }

    #[test]
    fn readable_views_need_security_invoker_and_matviews_always_leak() {
        let mut view = entry(vec![], &["SELECT"]);
        view.kind = RelationKind::View;
        assert!(violations(&view)[0].contains("without security_invoker"));
        let old = check_entry(&view, &subject(), 140010, &ContextReaders::default());
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
