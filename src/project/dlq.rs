//! `dlq-completeness` for a project, whose worker rlsgate does not drive: statically, the
//! runtime can record a failure in the DLQ table and cannot erase one; and a probe (DLQ-WRITE)
//! that records one in a tenant's context, rolled back.

use tokio_postgres::Client;

use super::seed::{self, Seeder};
use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::probe::{ProbeSession, Probed, probe_statement, set_context};
use crate::subject::Subject;

/// What `dlq-completeness` means for a project.
pub const DLQ_STATEMENT: &str = "in every tenant's context the runtime can record a failure in the DLQ table; it cannot alter or erase one";

/// `dlq-completeness`, statically: the runtime can record a failure in the DLQ table (INSERT)
/// and cannot erase one (no UPDATE, DELETE; TRUNCATE is least-privilege's).
pub(crate) fn dlq_static(
    relations: &[Relation],
    table: &str,
    subject: &Subject,
) -> Vec<Observation> {
    let id = InvariantId::DlqCompleteness;
    let runtime = &subject.runtime_role;
    let Some(r) = relations.iter().find(|r| r.name == table) else {
        return vec![Observation::inconclusive(
            id,
            Undecided::NothingToCheck,
            "catalog:dlq",
            format!(
                "the DLQ table {table} is not among the checked relations (schema.include/exclude?)"
            ),
        )];
    };
    vec![
        Observation::expect(
            id,
            r.runtime_can_insert,
            "catalog:dlq-insert",
            format!("{runtime} cannot INSERT into the DLQ table {table}: failures cannot be recorded"),
        )
        .on(table),
        Observation::expect(
            id,
            !r.runtime_can_update && !r.runtime_can_delete,
            "catalog:dlq-append-only",
            format!(
                "{runtime} can {} the DLQ table {table}: a recorded failure can be altered or erased",
                [("UPDATE", r.runtime_can_update), ("DELETE", r.runtime_can_delete)]
                    .iter()
                    .filter(|(_, h)| *h)
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )
        .on(table),
    ]
}

/// DLQ-WRITE: in tenant A's context, the runtime records a failure of A in the DLQ table (in a
/// transaction that is rolled back).
pub(crate) async fn dlq_write(
    session: &mut ProbeSession,
    oracle: &Client,
    seeder: &mut Seeder,
    subject: &Subject,
    relations: &[Relation],
    table: &str,
) -> Result<Vec<Observation>> {
    let id = InvariantId::DlqCompleteness;
    let Some(tenant) = seeder.tenants.first().cloned() else {
        return Ok(Vec::new());
    };
    if !relations
        .iter()
        .any(|r| r.name == table && r.is_tenant_relation())
    {
        return Ok(vec![
            Observation::inconclusive(
                id,
                Undecided::NothingToCheck,
                "DLQ-WRITE",
                format!("the DLQ table {table} has no tenant column: not probed"),
            )
            .on(table),
        ]);
    }
    let values = match seeder.new_row(oracle, subject, table, &tenant.id).await? {
        Ok(v) => v,
        Err(why) => {
            return Ok(vec![
                Observation::inconclusive(
                    id,
                    Undecided::NotSeeded,
                    "DLQ-WRITE",
                    format!("no DLQ row could be generated: {why}"),
                )
                .on(table),
            ]);
        }
    };
    let sql = seed::insert_statement(table, &values);
    let json = serde_json::Value::Object(values).to_string();
    let tx = session
        .client_mut()
        .transaction()
        .await
        .map_err(|e| Error::database("opening a DLQ-WRITE probe", e))?;
    set_context(&tx, subject, &tenant.id).await?;
    let result = probe_statement(&tx, &sql, &[&json]).await?;
    tx.rollback()
        .await
        .map_err(|e| Error::database("ending a DLQ-WRITE probe", e))?;
    // Only a privilege or a policy saying no (or a row swallowed) shows that the runtime
    // cannot record a failure; a failure of the probe's own row decides nothing.
    let o = match &result {
        Probed::Rows(1) => Observation::holds(id, "DLQ-WRITE"),
        Probed::Error(r) if r.kind.is_undecided() => Observation::inconclusive(
            id,
            Undecided::Interrupted,
            "DLQ-WRITE",
            format!("the DLQ write was interrupted: {result}"),
        ),
        Probed::Error(r) if !r.by_privilege_or_policy() => Observation::inconclusive(
            id,
            Undecided::FailedOtherwise,
            "DLQ-WRITE",
            format!(
                "the probe's DLQ row was refused for a reason of its own, not a privilege or policy, so it shows nothing: {result}"
            ),
        ),
        _ => Observation::violated(
            id,
            "DLQ-WRITE",
            format!(
                "in tenant {}'s context the runtime cannot record a failure in {table}: {result}",
                tenant.label
            ),
        ),
    }
    .with_sqlstate(result.sqlstate());
    Ok(vec![o.on(table).with_statement(sql)])
}
