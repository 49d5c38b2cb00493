//! `write-check`: as the runtime, inserting or updating a row into another tenant is rejected
//! (42501); updating or deleting another tenant's rows affects 0 rows. Probes INS, MOVE (with
//! and without WHERE) and XDML (update and delete by row), all rolled back.

use tokio_postgres::Client;

use crate::catalog::Relation;
use crate::catalog::keys::TenantReference;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::probe::ProbeSession;
use crate::probe::{
    Decision, Probed, oracle_counts, probe_statement, sample_foreign_row, set_context,
};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::WriteCheck;

/// Judge a write aimed at another tenant on `relation`: refused by a privilege or a policy, or
/// affecting nothing, holds; rows affected (or a unique key of the relation as the only
/// stop) is a violation; anything else decides nothing ([`Probed::decide`]).
fn judge(
    probe: &str,
    relation: &str,
    result: &Probed,
    what: &str,
    bypass: Option<String>,
) -> Observation {
    let o = match (result.decide(relation), result, bypass) {
        (_, _, Some(why)) => Observation::inconclusive(
            ID,
            Undecided::Bypass,
            probe,
            format!("{what}: {result}; the probe ran as a role that {why}"),
        ),
        (Decision::Refused, _, None) => Observation::holds(ID, probe),
        (Decision::LetThrough, Probed::Rows(n), None) => {
            Observation::violated(ID, probe, format!("{what}: accepted, {n} rows affected"))
        }
        (Decision::LetThrough, Probed::Error(m), None) => Observation::violated(
            ID,
            probe,
            format!("{what}: the row policy let it through; only a unique key stopped it ({m})"),
        ),
        (Decision::Interrupted, _, None) => Observation::inconclusive(
            ID,
            Undecided::Interrupted,
            probe,
            format!("{what}: interrupted: {result}"),
        ),
        (Decision::FailedOtherwise, _, None) => Observation::inconclusive(
            ID,
            Undecided::FailedOtherwise,
            probe,
            format!(
                "{what}: failed for another reason than a privilege or the row policy: {result}"
            ),
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
        let b_row = sample_foreign_row(oracle, rel, a_id, b_id).await?;
        let victim = match &b_row {
            Some((_, _, owner)) if owner != b_id => format!("another tenant ({owner})"),
            _ => format!("tenant {b_label}"),
        };
        let a_rows = oracle_counts(oracle, rel, a_id).await?.own;
        let column_type = crate::catalog::tenant_column_type(oracle, rel).await?;
        let tx = session
            .client_mut()
            .transaction()
            .await
            .map_err(|e| Error::database("opening a write probe", e))?;
        set_context(&tx, subject, a_id).await?;
        let mut probes: Vec<(String, String, Vec<String>)> = Vec::new();
        if let Some((json, text, _)) = &b_row {
            if rel.runtime_can_insert {
                probes.push(("INS".into(), rel.copy_row_sql(), vec![json.clone()]));
            }
            probes.push((
                "XDML-UPDATE".into(),
                format!(
                    "UPDATE {} t SET {column} = t.{column} WHERE t::text = $1",
                    rel.name
                ),
                vec![text.clone()],
            ));
            probes.push((
                "XDML-DELETE".into(),
                format!("DELETE FROM {} t WHERE t::text = $1", rel.name),
                vec![text.clone()],
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
            ));
            probes.push((
                "MOVE-NO-WHERE".into(),
                format!("UPDATE {} SET {column} = $1::text::{column_type}", rel.name),
                vec![b_id.clone()],
            ));
        }
        for (probe, sql, params) in probes {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as _).collect();
            let result = probe_statement(&tx, &sql, &refs).await?;
            let what = match probe.as_str() {
                "INS" => format!("in tenant {a_label}'s context, insert a row for {victim}"),
                "MOVE" => {
                    format!("in tenant {a_label}'s context, move its rows to tenant {b_label}")
                }
                "MOVE-NO-WHERE" => format!(
                    "in tenant {a_label}'s context, move every visible row to tenant {b_label}"
                ),
                "XDML-UPDATE" => format!(
                    "in tenant {a_label}'s context, update a row of {victim} by its content"
                ),
                _ => format!(
                    "in tenant {a_label}'s context, delete a row of {victim} by its content"
                ),
            };
            out.push(
                judge(&probe, &rel.name, &result, &what, bypass.clone())
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

/// The probe's name for `reference`: `XREF:<constraint>`.
pub fn reference_probe_name(reference: &TenantReference) -> String {
    format!("XREF:{}", reference.name)
}

/// Judge foreign keys into tenant tables from the catalog: one that carries the tenant column
/// onto the referenced table's keeps a row with its own tenant's rows; one from a table the
/// runtime cannot write gives it nothing to try. The others are returned: the XREF probe
/// decides whether a tenant can attach its row to another tenant's (PostgreSQL checks a foreign
/// key without row-level security).
pub fn judge_references(
    references: &[TenantReference],
    relations: &[Relation],
) -> (Vec<Observation>, Vec<TenantReference>) {
    let mut out = Vec::new();
    let mut candidates = Vec::new();
    for r in references {
        let writable = relations
            .iter()
            .find(|rel| rel.name == r.relation)
            .is_some_and(|rel| rel.runtime_can_insert || rel.runtime_can_update);
        let detail = if r.carries_tenant {
            format!(
                "foreign key {} ({}) references {} with the tenant column: a row refers only to its own tenant's",
                r.name,
                r.columns.join(", "),
                r.referenced
            )
        } else if !writable {
            format!(
                "foreign key {} references {} without the tenant column, but the runtime cannot write {}",
                r.name, r.referenced, r.relation
            )
        } else {
            candidates.push(r.clone());
            continue;
        };
        out.push(
            Observation::new(
                ID,
                crate::invariants::Status::Holds,
                reference_probe_name(r),
                detail,
            )
            .on(r.relation.clone()),
        );
    }
    (out, candidates)
}
