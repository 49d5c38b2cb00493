//! `no-context-closed`: with no tenant context, tenant tables show no rows and accept no
//! writes. Probe NOCTX on a fresh login, twice: with the context never set, and set-then-ended
//! (a transaction-local setting leaves `''` behind).
//!
//! A read holds when it shows no tenant row or a privilege or policy refuses it; a write holds
//! when a privilege or policy refuses it. A policy may also fail closed by raising (a
//! `current_setting(name)` without `missing_ok`, a cast of `''`): such a failure counts as the
//! refusal only when a control, the same statement in a tenant's context on another session,
//! gets past the policies. Every other failure is inconclusive, never "holds".

use tokio_postgres::{Client, Config};

use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::probe::{
    Decision, ProbeSession, Probed, oracle_counts, passes_in_context, probe_count, probe_statement,
    sample_row,
};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::NoContextClosed;

/// One no-context probe's frame: the relation, the phase, the tenant whose row and context the
/// control uses, and the role the probe runs as (and what it bypasses).
struct Frame<'a> {
    rel: &'a Relation,
    phase: &'static str,
    tenant: &'a (String, String),
    role: String,
    bypass: Option<String>,
}

/// Probe reads and writes without a tenant context, as the runtime logging in with `runtime`.
/// `tenant` (id text, label) supplies a row to try to write, and the context of the controls
/// run on `control` (a runtime session of its own).
///
/// # Errors
/// A database error when the login or a probe transaction fails.
pub async fn check(
    runtime: &Config,
    control: &mut ProbeSession,
    oracle: &Client,
    subject: &Subject,
    relations: &[Relation],
    tenant: &(String, String),
) -> Result<Vec<Observation>> {
    let mut session = ProbeSession::open(runtime, subject).await?;
    let tables: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p'))
        .collect();
    let mut known = Vec::new();
    for rel in &tables {
        let rows = oracle_counts(oracle, rel, &tenant.0).await?.with_tenant;
        known.push((rows, sample_row(oracle, rel, &tenant.0).await?));
    }
    let mut out = Vec::new();
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
        for (rel, (rows, sample)) in tables.iter().zip(&known) {
            let frame = Frame {
                rel,
                phase,
                tenant,
                role: session.role().to_string(),
                bypass: session.bypass(&rel.name).map(|b| b.to_string()),
            };
            let tx = session
                .client_mut()
                .transaction()
                .await
                .map_err(|e| Error::database("opening a NOCTX probe", e))?;
            if rel.runtime_can_select && *rows > 0 {
                out.push(read(&tx, control, subject, &frame).await?);
            }
            if let (true, Some((json, _))) = (rel.runtime_can_insert, sample) {
                out.push(write(&tx, control, subject, &frame, json).await?);
            }
            tx.rollback()
                .await
                .map_err(|e| Error::database("ending a NOCTX probe", e))?;
        }
    }
    Ok(out)
}

/// NOCTX read: count the tenant rows visible with no context.
async fn read(
    tx: &tokio_postgres::Transaction<'_>,
    control: &mut ProbeSession,
    subject: &Subject,
    f: &Frame<'_>,
) -> Result<Observation> {
    let probe = format!("NOCTX-{}", f.phase);
    let (rel, phase) = (f.rel, f.phase);
    let sql = format!(
        "SELECT count(*) FILTER (WHERE {} IS NOT NULL) FROM {}",
        rel.tenant_column_sql(),
        rel.name
    );
    let o = match (probe_count(tx, &sql, &[]).await?, &f.bypass) {
        (counted, Some(why)) => Observation::inconclusive(
            ID,
            Undecided::Bypass,
            &probe,
            format!(
                "{}; the probe ran as {}, which {why}",
                counted.map_or_else(|p| p.to_string(), |c| format!("{} tenant rows", c[0])),
                f.role
            ),
        ),
        (Ok(c), None) => Observation::expect(
            ID,
            c[0] == 0,
            &probe,
            format!(
                "with the context {phase}, {} shows {} tenant rows",
                rel.name, c[0]
            ),
        ),
        (Err(failed), None) => {
            judge_failure(control, subject, f, &probe, &sql, &[], &failed).await?
        }
    };
    Ok(o.on(rel.name.clone()).with_statement(sql))
}

/// NOCTX write: insert a copy of the tenant's row with no context.
async fn write(
    tx: &tokio_postgres::Transaction<'_>,
    control: &mut ProbeSession,
    subject: &Subject,
    f: &Frame<'_>,
    json: &String,
) -> Result<Observation> {
    let probe = format!("NOCTX-{}-write", f.phase);
    let rel = f.rel;
    let sql = rel.copy_row_sql();
    let result = probe_statement(tx, &sql, &[json]).await?;
    let o = match (&f.bypass, result.decide(&rel.name), &result) {
        (Some(why), _, _) => Observation::inconclusive(
            ID,
            Undecided::Bypass,
            &probe,
            format!("{result}; the probe ran as {}, which {why}", f.role),
        ),
        (None, Decision::LetThrough, Probed::Rows(_)) => Observation::violated(
            ID,
            &probe,
            format!(
                "with the context {}, {} accepted a row for tenant {}",
                f.phase, rel.name, f.tenant.1
            ),
        ),
        (None, Decision::LetThrough, Probed::Error(m)) => Observation::violated(
            ID,
            &probe,
            format!(
                "with the context {}, the row policy of {} let a write through; only a unique key stopped it ({m})",
                f.phase, rel.name
            ),
        ),
        (None, Decision::Refused, Probed::Error(_)) => Observation::holds(ID, &probe),
        // No row and no error: a rule or trigger may swallow every insert, context or not.
        (None, _, _) => judge_failure(control, subject, f, &probe, &sql, &[json], &result).await?,
    };
    Ok(o.on(rel.name.clone())
        .with_sqlstate(result.sqlstate())
        .with_statement(sql))
}

/// A no-context probe that neither went through nor was refused by a privilege or policy:
/// interrupted, or failed. It holds only when the control in the tenant's context gets past
/// the policies, so the missing context made it fail (a policy that fails closed by raising).
async fn judge_failure(
    control: &mut ProbeSession,
    subject: &Subject,
    f: &Frame<'_>,
    probe: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ended: &Probed,
) -> Result<Observation> {
    let relation = &f.rel.name;
    if ended.decide(relation) == Decision::Interrupted {
        return Ok(Observation::inconclusive(
            ID,
            Undecided::Interrupted,
            probe,
            format!("interrupted: {ended}"),
        ));
    }
    let fails_closed =
        passes_in_context(control, subject, relation, &f.tenant.0, sql, params).await?;
    Ok(if fails_closed {
        Observation::new(
            ID,
            crate::invariants::Status::Holds,
            probe,
            format!(
                "with the context {}, refused by the missing context ({ended}); in tenant {}'s context it goes through",
                f.phase, f.tenant.1
            ),
        )
    } else {
        Observation::inconclusive(
            ID,
            Undecided::FailedOtherwise,
            probe,
            format!(
                "with the context {}, failed for a reason of its own, not the policy ({ended}): it fails in tenant {}'s context too",
                f.phase, f.tenant.1
            ),
        )
    }
    .with_sqlstate(ended.sqlstate()))
}
