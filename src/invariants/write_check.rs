//! `write-check`: as the runtime, inserting or updating a row into another tenant is rejected
//! (42501); updating or deleting another tenant's rows affects 0 rows. Probes INS, MOVE (with
//! and without WHERE) and XDML (update and delete by row), all rolled back.

use tokio_postgres::Client;

use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::probe::ProbeSession;
use crate::probe::{Probed, oracle_count, probe_statement, sample_row, set_context};
use crate::refusal::{Constraint, Refusal};
use crate::subject::Subject;

/// A write into another tenant counts as rejected only when a privilege or a policy refused it.
const BY_PRIVILEGE_OR_POLICY: &[Refusal] = &[Refusal::Privilege, Refusal::Policy];

const ID: InvariantId = InvariantId::WriteCheck;

/// Judge a write aimed at another tenant: rejected (an error, or 0 rows) holds.
fn judge(
    probe: &str,
    result: &Probed,
    what: &str,
    bypass: Option<String>,
    rejected_by: &[Refusal],
) -> Observation {
    let o = match (result, bypass) {
        (Probed::Rows(n), Some(why)) => Observation::inconclusive(
            ID,
            Undecided::Bypass,
            probe,
            format!("{what}: {n} rows; the probe ran as a role that {why}"),
        ),
        (Probed::Error(_), Some(why)) => Observation::inconclusive(
            ID,
            Undecided::Bypass,
            probe,
            format!("{what}: rejected, but the probe ran as a role that {why}"),
        ),
        (Probed::Rows(0), None) => Observation::holds(ID, probe),
        (Probed::Rows(n), None) => {
            Observation::violated(ID, probe, format!("{what}: accepted, {n} rows affected"))
        }
        (Probed::Error(r), None)
            if r.sqlstate.is_some()
                && (rejected_by.is_empty() || rejected_by.contains(&r.kind)) =>
        {
            Observation::holds(ID, probe)
        }
        (Probed::Error(m), None) if m.kind == Refusal::Constraint(Constraint::Unique) => {
            Observation::violated(
                ID,
                probe,
                format!(
                    "{what}: the row policy let it through; only a unique key stopped it ({m})"
                ),
            )
        }
        (Probed::Error(m), None) => Observation::inconclusive(
            ID,
            Undecided::FailedOtherwise,
            probe,
            format!("{what}: failed for another reason than the row policy: {m}"),
        ),
    };
    o.with_sqlstate(result.sqlstate())
}

/// Probe writes from tenant `a` (UUID text, label) into tenant `b` on every tenant table the
/// runtime can write.
///
/// # Errors
/// A database error when a probe transaction cannot be opened or the oracle cannot read.
pub async fn check(
    session: &mut ProbeSession,
    oracle: &Client,
    subject: &Subject,
    relations: &[Relation],
    a: &(String, String),
    b: &(String, String),
) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    let (a_id, a_label) = a;
    let (b_id, b_label) = b;
    for rel in relations.iter().filter(|r| {
        r.is_tenant_relation()
            && matches!(r.kind, 'r' | 'p')
            && (r.runtime_can_insert || r.runtime_can_update || r.runtime_can_delete)
    }) {
        let bypass = session.bypass(&rel.name).map(|b| b.to_string());
        let column = rel.tenant_column_sql();
        let b_row = sample_row(oracle, rel, b_id).await?;
        let a_rows = oracle_count(oracle, rel, a_id).await?;
        let column_type = crate::catalog::tenant_column_type(oracle, rel).await?;
        let tx = session
            .client_mut()
            .transaction()
            .await
            .map_err(|e| Error::database("opening a write probe", e))?;
        set_context(&tx, subject, a_id).await?;
        let mut probes: Vec<(String, String, Vec<String>, &[Refusal])> = Vec::new();
        if let Some((json, text)) = &b_row {
            if rel.runtime_can_insert {
                probes.push((
                    "INS".into(),
                    format!("INSERT INTO {} SELECT * FROM json_populate_record(NULL::{}, $1::text::json)", rel.name, rel.name),
                    vec![json.clone()],
                    BY_PRIVILEGE_OR_POLICY,
                ));
            }
            probes.push((
                "XDML-UPDATE".into(),
                format!(
                    "UPDATE {} t SET {column} = t.{column} WHERE t::text = $1",
                    rel.name
                ),
                vec![text.clone()],
                &[],
            ));
            probes.push((
                "XDML-DELETE".into(),
                format!("DELETE FROM {} t WHERE t::text = $1", rel.name),
                vec![text.clone()],
                &[],
            ));
        }
        if rel.runtime_can_update && a_rows > 0 {
            probes.push((
                "MOVE".into(),
                format!(
                    "UPDATE {} SET {column} = $1::text::{column_type} WHERE {column}::text = $2",
                    rel.name
                ),
                vec![b_id.clone(), a_id.clone()],
                BY_PRIVILEGE_OR_POLICY,
            ));
            probes.push((
                "MOVE-NO-WHERE".into(),
                format!("UPDATE {} SET {column} = $1::text::{column_type}", rel.name),
                vec![b_id.clone()],
                BY_PRIVILEGE_OR_POLICY,
            ));
        }
        for (probe, sql, params, rejected_by) in probes {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as _).collect();
            let result = probe_statement(&tx, &sql, &refs).await?;
            let what = match probe.as_str() {
                "INS" => {
                    format!("in tenant {a_label}'s context, insert a row for tenant {b_label}")
                }
                "MOVE" => {
                    format!("in tenant {a_label}'s context, move its rows to tenant {b_label}")
                }
                "MOVE-NO-WHERE" => format!(
                    "in tenant {a_label}'s context, move every visible row to tenant {b_label}"
                ),
                "XDML-UPDATE" => format!(
                    "in tenant {a_label}'s context, update a row of tenant {b_label} by its content"
                ),
                _ => format!(
                    "in tenant {a_label}'s context, delete a row of tenant {b_label} by its content"
                ),
            };
            out.push(
                judge(&probe, &result, &what, bypass.clone(), rejected_by)
                    .on(rel.name.clone())
                    .with_statement(sql),
            );
        }
        tx.rollback()
            .await
            .map_err(|e| Error::database("ending a write probe", e))?;
    }
    Ok(out)
}
