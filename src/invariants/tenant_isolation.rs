//! `tenant-isolation`: in tenant X's context, every row visible in every tenant relation
//! belongs to X; every row X committed is visible to X. Probe READ, as the runtime.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::invariants::catalog::Relation;
use crate::invariants::probe::{oracle_count, probe_count, set_context};
use crate::invariants::{InvariantId, Observation, ProbeSession, Subject};
use crate::roles::quote_ident;

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
    let column = quote_ident(&subject.tenant_column);
    for (tenant, label) in tenants {
        for rel in relations
            .iter()
            .filter(|r| r.is_tenant_relation() && r.runtime_can_select)
        {
            let truth = oracle_count(oracle, &rel.name, subject, tenant).await?;
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
            let observation = match counted {
                Err(p) => Observation::inconclusive(
                    ID,
                    "READ",
                    format!("in tenant {label}'s context the read failed: {p:?}"),
                )
                .with_sqlstate(p.sqlstate()),
                Ok(c) if bypass.is_some() => Observation::inconclusive(
                    ID,
                    "READ",
                    format!(
                        "the probe ran as {role}, which {} (saw {} foreign rows in tenant {label}'s context)",
                        bypass.unwrap(),
                        c[0]
                    ),
                ),
                Ok(c) if c[0] > 0 => Observation::violated(
                    ID,
                    "READ",
                    format!(
                        "in tenant {label}'s context {} shows {} rows of other tenants ({} with a NULL tenant)",
                        rel.name, c[0], c[1]
                    ),
                ),
                Ok(c) if c[2] < truth => Observation::violated(
                    ID,
                    "READ",
                    format!(
                        "tenant {label} sees {} of its {truth} rows in {}",
                        c[2], rel.name
                    ),
                ),
                Ok(_) => Observation::holds(ID, "READ"),
            };
            out.push(observation.on(rel.name.clone()).with_statement(sql));
        }
    }
    Ok(out)
}
