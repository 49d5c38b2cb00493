//! `tenant-isolation`: in tenant X's context, every row visible in every tenant relation
//! belongs to X; every row X committed is visible to X. Probe READ, as the runtime.

use tokio_postgres::Client;

use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::probe::ProbeSession;
use crate::probe::{Decision, oracle_counts, probe_count, set_context};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::TenantIsolation;

/// READ: for each of `tenants` (UUID text and label), count in its context the rows of every
/// tenant relation the runtime can read that belong to others, and compare the rows that
/// belong to it with the oracle's count.
///
/// # Errors
/// A database error when a transaction cannot be opened or the oracle cannot count.
pub async fn check(
    session: &mut ProbeSession,
    oracle: &Client,
    subject: &Subject,
    relations: &[Relation],
    tenants: &[(String, String)],
) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    for (tenant, label) in tenants {
        for rel in relations
            .iter()
            .filter(|r| r.is_tenant_relation() && r.runtime_can_select)
        {
            let column = rel.tenant_column_sql();
            let truth = oracle_counts(oracle, rel, tenant).await?;
            let bypass = session.bypass(&rel.name);
            let role = session.role().to_string();
            let tx = session
                .client_mut()
                .transaction()
                .await
                .map_err(|e| Error::database("opening a READ probe", e))?;
            set_context(&tx, subject, tenant).await?;
            let sql = format!(
                "SELECT count(*) FILTER (WHERE {column}::text IS DISTINCT FROM $1),
                        count(*) FILTER (WHERE {column} IS NULL),
                        count(*) FILTER (WHERE {column}::text = $1)
                 FROM {}",
                rel.name
            );
            let counted = probe_count(&tx, &sql, &[tenant]).await?;
            tx.rollback()
                .await
                .map_err(|e| Error::database("ending a READ probe", e))?;
            // With no other tenant's row in the relation no leak can show: only the tenant's
            // own rows are judged (READ-OWN), and a relation never READ with something to
            // leak is inconclusive at the end of the run (`campaign::probes::coverage`).
            let probe = if truth.others > 0 { "READ" } else { "OWN-ROWS" };
            let observation = match counted {
                Err(p) => Observation::inconclusive(
                    ID,
                    if p.decide(&rel.name) == Decision::Interrupted {
                        Undecided::Interrupted
                    } else {
                        Undecided::FailedOtherwise
                    },
                    probe,
                    format!("in tenant {label}'s context the read failed: {p}"),
                )
                .with_sqlstate(p.sqlstate()),
                Ok(c) if bypass.is_some() => Observation::inconclusive(
                    ID,
                    Undecided::Bypass,
                    probe,
                    format!(
                        "the probe ran as {role}, which {} (saw {} foreign rows in tenant {label}'s context)",
                        bypass.unwrap(),
                        c[0]
                    ),
                ),
                Ok(c) if c[0] > 0 => Observation::violated(
                    ID,
                    probe,
                    format!(
                        "in tenant {label}'s context {} shows {} rows of other tenants ({} with a NULL tenant)",
                        rel.name, c[0], c[1]
                    ),
                ),
                Ok(c) if c[2] < truth.own => Observation::violated(
                    ID,
                    probe,
                    format!(
                        "tenant {label} sees {} of its {} rows in {}",
                        c[2], truth.own, rel.name
                    ),
                ),
                Ok(_) if truth.others == 0 && truth.own == 0 => continue,
                Ok(_) => Observation::holds(ID, probe),
            };
            out.push(observation.on(rel.name.clone()).with_statement(sql));
        }
    }
    Ok(out)
}

/// READ-FN: every set-returning function of the subject's schemas that the runtime can call
/// without arguments and that returns a tenant column is called in each tenant's context; a
/// row of another tenant is a violation (a SECURITY DEFINER function reads with its owner's
/// privileges, so policies may not filter it). Unless `volatile`, functions that may change
/// something (VOLATILE) are left out (an in-place check calls nothing that may write).
///
/// # Errors
/// A database error when the catalog cannot be read or a transaction cannot be opened.
pub async fn check_functions(
    session: &mut ProbeSession,
    subject: &Subject,
    tenants: &[(String, String)],
    volatile: bool,
) -> Result<Vec<Observation>> {
    let functions: Vec<String> = session
        .client()
        .query(
            "SELECT format('%I.%I', n.nspname, p.proname)
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = ANY($1) AND p.pronargs = 0 AND p.prokind = 'f' AND p.proretset
               AND has_function_privilege(p.oid, 'EXECUTE') AND ($2 OR p.provolatile <> 'v')
             ORDER BY 1",
            &[&subject.schemas, &volatile],
        )
        .await
        .map_err(|e| Error::database("listing the functions the runtime can call", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for function in functions {
        let statement = match session
            .client()
            .prepare(&format!("SELECT * FROM {function}()"))
            .await
        {
            Ok(statement) => statement,
            Err(e) => {
                out.push(
                    Observation::inconclusive(
                        ID,
                        Undecided::FailedOtherwise,
                        "READ-FN",
                        format!(
                            "the call cannot be prepared, so what it returns is unknown: {}",
                            crate::error::describe_db_error(&e)
                        ),
                    )
                    .on(format!("{function}()")),
                );
                continue;
            }
        };
        let Some(column) = subject.tenant_columns.iter().find(|c| {
            statement
                .columns()
                .iter()
                .any(|col| col.name() == c.as_str())
        }) else {
            continue;
        };
        let column = crate::sql::quote_ident(column);
        let bypass = session.bypass("");
        let role = session.role().to_string();
        for (tenant, label) in tenants {
            let tx = session
                .client_mut()
                .transaction()
                .await
                .map_err(|e| Error::database("opening a READ-FN probe", e))?;
            set_context(&tx, subject, tenant).await?;
            let sql = format!(
                "SELECT count(*) FILTER (WHERE {column}::text IS DISTINCT FROM $1) FROM {function}() AS f"
            );
            let counted = probe_count(&tx, &sql, &[tenant]).await?;
            tx.rollback()
                .await
                .map_err(|e| Error::database("ending a READ-FN probe", e))?;
            let observation = match counted {
                Err(p) => Observation::inconclusive(
                    ID,
                    Undecided::FailedOtherwise,
                    "READ-FN",
                    format!("in tenant {label}'s context the call failed: {p}"),
                )
                .with_sqlstate(p.sqlstate()),
                Ok(c) if bypass.is_some() => Observation::inconclusive(
                    ID,
                    Undecided::Bypass,
                    "READ-FN",
                    format!(
                        "the probe ran as {role}, which {} (saw {} foreign rows in tenant {label}'s context)",
                        bypass.clone().unwrap(),
                        c[0]
                    ),
                ),
                Ok(c) => Observation::expect(
                    ID,
                    c[0] == 0,
                    "READ-FN",
                    format!(
                        "in tenant {label}'s context {function}() returns {} rows of other tenants",
                        c[0]
                    ),
                ),
            };
            out.push(observation.on(format!("{function}()")).with_statement(sql));
        }
    }
    Ok(out)
}
