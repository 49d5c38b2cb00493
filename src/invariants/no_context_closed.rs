//! `no-context-closed`: with no tenant context, tenant tables show no rows and accept no
//! writes. Probe NOCTX on a fresh login, twice: with the context never set, and set-then-ended
//! (a transaction-local setting leaves `''` behind).

use tokio_postgres::{Client, Config};

use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::probe::ProbeSession;
use crate::probe::{Probed, probe_count, probe_statement, sample_row};
use crate::refusal::{Constraint, Refusal};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::NoContextClosed;

/// Probe reads and writes without a tenant context, as the runtime logging in with `runtime`.
/// `tenant` (UUID text, label) supplies a row to try to write.
///
/// # Errors
/// A database error when the login or a probe transaction fails.
pub async fn check(
    runtime: &Config,
    oracle: &Client,
    subject: &Subject,
    relations: &[Relation],
    tenant: &(String, String),
) -> Result<Vec<Observation>> {
    let mut session = ProbeSession::open(runtime, subject).await?;
    let mut out = Vec::new();
    let mut samples = Vec::new();
    for rel in relations
        .iter()
        .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p'))
    {
        samples.push(sample_row(oracle, rel, &tenant.0).await?);
    }
    for phase in ["never-set", "set-then-ended"] {
        if phase == "set-then-ended" {
            let tx = session
                .client_mut()
                .transaction()
                .await
                .map_err(|e| Error::database("opening a NOCTX probe", e))?;
            crate::probe::set_context(&tx, subject, &tenant.0).await?;
            tx.commit()
                .await
                .map_err(|e| Error::database("ending the context for a NOCTX probe", e))?;
        }
        let tables = relations
            .iter()
            .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p'));
        for (rel, sample) in tables.zip(&samples) {
            let bypass = session.bypass(&rel.name).map(|b| b.to_string());
            let role = session.role().to_string();
            let tx = session
                .client_mut()
                .transaction()
                .await
                .map_err(|e| Error::database("opening a NOCTX probe", e))?;
            let probe = format!("NOCTX-{phase}");
            let column = rel.tenant_column_sql();
            if rel.runtime_can_select {
                let sql = format!(
                    "SELECT count(*) FILTER (WHERE {column} IS NOT NULL) FROM {}",
                    rel.name
                );
                let o = match probe_count(&tx, &sql, &[]).await? {
                    Err(p) => Observation::holds(ID, &probe).with_sqlstate(p.sqlstate()),
                    Ok(c) if bypass.is_some() => Observation::inconclusive(
                        ID,
                        Undecided::Bypass,
                        &probe,
                        format!(
                            "{} tenant rows visible; the probe ran as {role}, which {}",
                            c[0],
                            bypass.clone().unwrap_or_default()
                        ),
                    ),
                    Ok(c) => Observation::expect(
                        ID,
                        c[0] == 0,
                        &probe,
                        format!(
                            "with the context {phase}, {} shows {} tenant rows",
                            rel.name, c[0]
                        ),
                    ),
                };
                out.push(o.on(rel.name.clone()).with_statement(sql));
            }
            if let (true, Some((json, _))) = (rel.runtime_can_insert, sample) {
                let sql = format!(
                    "INSERT INTO {} SELECT * FROM json_populate_record(NULL::{}, $1::text::json)",
                    rel.name, rel.name
                );
                let result = probe_statement(&tx, &sql, &[json]).await?;
                let o = match (&result, &bypass) {
                    (Probed::Rows(n), Some(why)) => Observation::inconclusive(
                        ID,
                        Undecided::Bypass,
                        format!("{probe}-write"),
                        format!("accepted {n} rows; the probe ran as {role}, which {why}"),
                    ),
                    (Probed::Rows(n), None) if *n > 0 => Observation::violated(
                        ID,
                        format!("{probe}-write"),
                        format!(
                            "with the context {phase}, {} accepted a row for tenant {}",
                            rel.name, tenant.1
                        ),
                    ),
                    (Probed::Error(m), None)
                        if m.kind == Refusal::Constraint(Constraint::Unique) =>
                    {
                        Observation::violated(
                            ID,
                            format!("{probe}-write"),
                            format!(
                                "with the context {phase}, the row policy of {} let a write through; only a unique key stopped it ({m})",
                                rel.name
                            ),
                        )
                    }
                    _ => Observation::holds(ID, format!("{probe}-write")),
                };
                out.push(
                    o.on(rel.name.clone())
                        .with_sqlstate(result.sqlstate())
                        .with_statement(sql),
                );
            }
            tx.rollback()
                .await
                .map_err(|e| Error::database("ending a NOCTX probe", e))?;
        }
    }
    Ok(out)
}
