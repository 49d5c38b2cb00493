//! CALL: the functions and procedures with arguments the runtime may EXECUTE (RPC style:
//! `usage_summary(tenant uuid)`, `get_project(id uuid)`), called in tenant A's context with
//! arguments aimed at tenant B (ATTACKS D). A SECURITY DEFINER function that filters by its
//! argument instead of the context, or switches the context to it, leaks with no static sign;
//! only such a call shows it.
//!
//! Arguments come from the sentinel rows: an argument of the tenant key's type gets B's tenant
//! id or the key of one of B's sentinel rows, every other argument a generated value of its
//! type. Each call runs in a transaction of its own; a VOLATILE function's is committed (the
//! database is rlsgate's, or a scratch copy) so that a change to B's rows shows, every other
//! one is rolled back. Judged:
//! - B's data in the result (a value of one of B's sentinel rows that was not an argument):
//!   `tenant-isolation` violated;
//! - one of B's rows changed by the call: `write-check` violated;
//! - the tenant context other than A's after the call (unless the function is the one
//!   `tenant.set_context` calls): `tenant-isolation` violated (`CALL-CONTEXT`).
//!
//! A call that fails with B's keys while the same call with A's own keys (the control) succeeds
//! was refused by the function: it holds. A function whose arguments cannot be built, or that
//! fails with A's keys too, is inconclusive with the reason. Trigger functions are exercised by
//! the writes that fire them; an extension's functions are not the application's.

use std::collections::BTreeSet;

use serde_json::Value;
use tokio_postgres::Client;

use super::seed::{SeededTenant, Seeder};
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Status, Undecided};
use crate::probe::ProbeSession;
use crate::refusal::Refused;
use crate::sql::quote_literal;
use crate::subject::Subject;

/// At most this many argument vectors per function.
const VECTORS: usize = 6;

/// A callable function or procedure with arguments.
#[derive(Debug, Clone)]
struct Callable {
    /// `schema.name(types)` for the evidence.
    signature: String,
    /// `schema.name`, quoted, to call.
    name: String,
    procedure: bool,
    volatile: bool,
    /// Argument types (`format_type`), `pg_type.typname` and category.
    arguments: Vec<(String, String, char)>,
}

/// How one call ended.
#[derive(Debug, Clone)]
enum Called {
    /// It returned these rows (as JSON text), and the context was this afterwards.
    Returned(Vec<String>, Option<String>),
    /// It failed.
    Failed(Refused),
}

/// The functions and procedures with arguments of `subject`'s schemas the runtime may EXECUTE
/// (trigger functions and an extension's aside).
async fn callables(oracle: &Client, subject: &Subject) -> Result<Vec<Callable>> {
    let rows = oracle
        .query(
            &format!(
                "SELECT {}, format('%I.%I', n.nspname, p.proname),
                    p.prokind = 'p', p.provolatile = 'v',
                    ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) WITH ORDINALITY a(t, o) ORDER BY o),
                    ARRAY(SELECT ty.typname::text FROM unnest(p.proargtypes) WITH ORDINALITY a(t, o)
                          JOIN pg_type ty ON ty.oid = a.t ORDER BY o),
                    ARRAY(SELECT ty.typcategory::text FROM unnest(p.proargtypes) WITH ORDINALITY a(t, o)
                          JOIN pg_type ty ON ty.oid = a.t ORDER BY o)
             FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             JOIN pg_roles r ON r.rolname = $2
             WHERE n.nspname = ANY($1) AND p.pronargs > 0 AND p.prokind IN ('f', 'p')
               AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
               AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                               AND d.objid = p.oid AND d.deptype = 'e')
             ORDER BY 1",
                crate::catalog::function_name_sql("p")
            ),
            &[&subject.schemas, &subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("listing the functions the runtime can call", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let types: Vec<String> = r.get(4);
            let names: Vec<String> = r.get(5);
            let categories: Vec<String> = r.get(6);
            Callable {
                signature: r.get(0),
                name: r.get(1),
                procedure: r.get(2),
                volatile: r.get(3),
                arguments: types
                    .into_iter()
                    .zip(names)
                    .zip(categories)
                    .map(|((t, n), c)| (t, n, c.chars().next().unwrap_or('X')))
                    .collect(),
            }
        })
        .collect())
}

/// The tenant's keys: its id, then the primary-key values of its sentinel rows, as text.
async fn keys_of(
    oracle: &Client,
    seeder: &mut Seeder,
    tenant: &SeededTenant,
) -> Result<Vec<String>> {
    let mut keys = vec![tenant.id.clone()];
    for key in seeder.row_keys(oracle, &tenant.id).await? {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `key` can be an argument of type `type_name`: a uuid for uuid, an integer for the
/// integer types, anything for a string type when the tenant ids themselves are strings.
fn fits(type_name: &str, key: &str, string_keys: bool) -> bool {
    match type_name {
        "uuid" => uuid::Uuid::parse_str(key).is_ok(),
        "int2" | "int4" | "int8" | "numeric" => key.parse::<i64>().is_ok(),
        "text" | "varchar" | "bpchar" | "citext" => string_keys,
        _ => false,
    }
}

/// Argument vectors for `f` aimed at a tenant whose keys are `keys` (its id first): each key in
/// every argument it fits, then the id in the first such argument and each other key in the
/// rest (`f(tenant, project)`); every other argument gets its `filler`. `None` when some
/// argument can be neither.
fn vectors(f: &Callable, keys: &[String], filler: &[Option<String>]) -> Option<Vec<Vec<String>>> {
    let string_keys = keys
        .first()
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_err() && id.parse::<i64>().is_err());
    let build = |pick: &dyn Fn(usize, &str) -> Option<String>| -> Option<Vec<String>> {
        f.arguments
            .iter()
            .enumerate()
            .map(|(i, (_, name, _))| pick(i, name).or_else(|| filler.get(i).cloned().flatten()))
            .collect()
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut push = |args: Option<Vec<String>>| {
        if let Some(a) = args
            && !out.contains(&a)
        {
            out.push(a);
        }
    };
    for key in keys.iter().take(VECTORS) {
        push(build(&|_, name| {
            fits(name, key, string_keys).then(|| key.clone())
        }));
    }
    let first_fit = f
        .arguments
        .iter()
        .position(|(_, name, _)| fits(name, &keys[0], string_keys));
    for key in keys.iter().skip(1).take(VECTORS) {
        push(build(&|i, name| {
            if Some(i) == first_fit {
                Some(keys[0].clone())
            } else {
                fits(name, key, string_keys).then(|| key.clone())
            }
        }));
    }
    (!out.is_empty()).then_some(out)
}

/// Call `f` with `args` in `tenant`'s context, in a transaction committed when `commit`.
async fn call(
    session: &mut ProbeSession,
    subject: &Subject,
    f: &Callable,
    args: &[String],
    tenant: &str,
    commit: bool,
) -> Result<(Called, String)> {
    let list: Vec<String> = f
        .arguments
        .iter()
        .enumerate()
        .map(|(i, (t, _, _))| format!("${}::text::{t}", i + 1))
        .collect();
    let sql = if f.procedure {
        format!("CALL {}({})", f.name, list.join(", "))
    } else {
        format!(
            "SELECT to_jsonb(r)::text FROM {}({}) AS r",
            f.name,
            list.join(", ")
        )
    };
    let shown = args.iter().enumerate().fold(sql.clone(), |s, (i, a)| {
        s.replace(&format!("${}::", i + 1), &format!("{}::", quote_literal(a)))
    });
    let client = session.client();
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| Error::database("opening a CALL probe", e))?;
    crate::probe::set_context_on(client, subject, tenant)
        .await
        .map_err(|e| Error::database("setting the context for a CALL probe", e))?;
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        args.iter().map(|a| a as _).collect();
    let called = match client.query(&sql, &params).await {
        Ok(rows) => {
            let returned = rows
                .iter()
                .filter_map(|r| r.try_get::<_, Option<String>>(0).ok().flatten())
                .collect();
            let context = client
                .query_one(
                    "SELECT current_setting($1, true)",
                    &[&subject.tenant_setting],
                )
                .await
                .ok()
                .and_then(|r| r.get::<_, Option<String>>(0));
            Called::Returned(returned, context)
        }
        Err(e) => Called::Failed(Refused::of(&e)),
    };
    let end = if commit && matches!(called, Called::Returned(..)) {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    client
        .batch_execute(end)
        .await
        .map_err(|e| Error::database("ending a CALL probe", e))?;
    Ok((called, shown))
}

/// A fingerprint of every row of `tenant` in the tenant tables (the oracle's), to tell whether
/// a call changed one.
async fn fingerprint(oracle: &Client, tables: &[(String, String)], tenant: &str) -> Result<String> {
    let mut out = String::new();
    for (table, column) in tables {
        let sql = format!(
            "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t WHERE {}::text = $1",
            crate::sql::quote_ident(column)
        );
        let row = oracle
            .query_one(&sql, &[&tenant])
            .await
            .map_err(|e| Error::database(format!("reading {table} for a CALL probe"), e))?;
        out.push_str(&row.get::<_, String>(0));
    }
    Ok(out)
}

/// Everything the CALL probes need.
pub(crate) struct Caller<'a> {
    pub(crate) session: &'a mut ProbeSession,
    pub(crate) oracle: &'a Client,
    pub(crate) seeder: &'a mut Seeder,
    pub(crate) subject: &'a Subject,
    /// The tenant tables and their tenant columns (for the fingerprints).
    pub(crate) tables: Vec<(String, String)>,
}

/// CALL every function and procedure with arguments the runtime may execute.
///
/// # Errors
/// A harness error when a probe cannot run at all.
pub(crate) async fn probe(c: &mut Caller<'_>) -> Result<Vec<Observation>> {
    let [a, b, ..] = c.seeder.tenants.as_slice() else {
        return Ok(Vec::new());
    };
    let (a, b) = (a.clone(), b.clone());
    let mut out = Vec::new();
    for f in callables(c.oracle, c.subject).await? {
        out.extend(probe_one(c, &f, &a, &b).await?);
    }
    Ok(out)
}

async fn probe_one(
    c: &mut Caller<'_>,
    f: &Callable,
    a: &SeededTenant,
    b: &SeededTenant,
) -> Result<Vec<Observation>> {
    let on = |o: Observation| o.on(f.signature.clone());
    let filler: Vec<Option<String>> = f
        .arguments
        .iter()
        .map(|(_, name, category)| c.seeder.value_of_type(name, *category).map(|v| text(&v)))
        .collect();
    let theirs = keys_of(c.oracle, c.seeder, b).await?;
    let mine = keys_of(c.oracle, c.seeder, a).await?;
    let (Some(aimed), Some(controls)) = (vectors(f, &theirs, &filler), vectors(f, &mine, &filler))
    else {
        return Ok(vec![on(Observation::inconclusive(
            InvariantId::TenantIsolation,
            Undecided::NotSeeded,
            "CALL",
            format!("no argument of {} could be built", f.signature),
        ))]);
    };
    // B's values that could only come from B's rows: long enough not to occur by chance.
    let evidence: BTreeSet<String> = c
        .seeder
        .sentinel_rows_of(&b.id)
        .into_iter()
        .flat_map(|(_, row)| row.values().map(text).collect::<Vec<_>>())
        .chain([b.id.clone()])
        .filter(|v| v.len() >= 8)
        .collect();
    let declared = c
        .subject
        .set_context
        .as_deref()
        .is_some_and(|s| s.contains(f.name.rsplit('.').next().unwrap_or_default()));
    let before = fingerprint(c.oracle, &c.tables, &b.id).await?;
    let mut failures = Vec::new();
    for args in &aimed {
        let (called, shown) = call(c.session, c.subject, f, args, &a.id, f.volatile).await?;
        let leaked = match &called {
            Called::Returned(rows, _) => rows.iter().find_map(|r| {
                evidence
                    .iter()
                    .find(|v| !args.contains(v) && r.contains(v.as_str()))
                    .map(|v| (r.clone(), v.clone()))
            }),
            Called::Failed(_) => None,
        };
        if let Some((row, value)) = leaked {
            return Ok(vec![on(Observation::violated(
                InvariantId::TenantIsolation,
                "CALL",
                format!(
                    "in tenant {}'s context, {} with tenant {}'s keys returns tenant {}'s data ({value} in {row})",
                    a.label, f.signature, b.label, b.label
                ),
            )
            .with_statement(shown))]);
        }
        if let Called::Returned(_, context) = &called
            && !declared
            && context.as_deref() != Some(a.id.as_str())
        {
            return Ok(vec![on(Observation::violated(
                InvariantId::TenantIsolation,
                "CALL-CONTEXT",
                format!(
                    "in tenant {}'s context, {} with tenant {}'s keys left the tenant context {}",
                    a.label,
                    f.signature,
                    b.label,
                    match context.as_deref() {
                        Some(c) if c == b.id => format!("set to tenant {}", b.label),
                        Some(c) => format!("set to '{c}'"),
                        None => "unset".into(),
                    }
                ),
            )
            .with_statement(shown))]);
        }
        if f.volatile && fingerprint(c.oracle, &c.tables, &b.id).await? != before {
            return Ok(vec![on(Observation::violated(
                InvariantId::WriteCheck,
                "CALL",
                format!(
                    "in tenant {}'s context, {} with tenant {}'s keys changed tenant {}'s rows",
                    a.label, f.signature, b.label, b.label
                ),
            )
            .with_statement(shown))]);
        }
        if let Called::Failed(r) = called {
            failures.push(r);
        }
    }
    if failures.len() < aimed.len() {
        return Ok(vec![on(Observation::new(
            InvariantId::TenantIsolation,
            Status::Holds,
            "CALL",
            format!(
                "in tenant {}'s context, {} with tenant {}'s keys returns nothing of tenant {}",
                a.label, f.signature, b.label, b.label
            ),
        ))]);
    }
    // Every aimed call failed: refused, when the tenant's own keys go through.
    let mut control_failure = None;
    for args in &controls {
        match call(c.session, c.subject, f, args, &a.id, false).await?.0 {
            Called::Returned(..) => {
                return Ok(vec![on(Observation::new(
                    InvariantId::TenantIsolation,
                    Status::Holds,
                    "CALL",
                    format!(
                        "{} refuses tenant {}'s keys in tenant {}'s context ({}) and answers for the tenant's own",
                        f.signature, b.label, a.label, failures[0]
                    ),
                ))]);
            }
            Called::Failed(r) => control_failure = Some(r),
        }
    }
    Ok(vec![on(Observation::inconclusive(
        InvariantId::TenantIsolation,
        if failures[0].kind.is_undecided() {
            Undecided::Interrupted
        } else {
            Undecided::FailedOtherwise
        },
        "CALL",
        format!(
            "{} fails with the tenant's own keys too ({}), so its refusal of tenant {}'s proves nothing",
            f.signature,
            control_failure.map_or_else(|| failures[0].to_string(), |r| r.to_string()),
            b.label
        ),
    ))])
}
