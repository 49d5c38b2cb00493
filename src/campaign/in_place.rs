//! An in-place check (`--in-place`): the existing database itself, so nothing may commit.
//!
//! The probes run on the tenants already there (the two with the most rows), every write in a
//! savepoint of a transaction that is rolled back; no function that may change something
//! (VOLATILE) is called; the pool's probes follow read-only tasks (`BEGIN READ ONLY`, which
//! PostgreSQL keeps from writing any table or sequence). What commits (the built-in worker's
//! workloads, a project's DML property and DLQ write) is skipped, and the invariants only it
//! decides are inconclusive, never "holds".
//!
//! Rolled-back writes still fire triggers, and a sequence a trigger or default advances stays
//! advanced (PostgreSQL never takes a sequence value back): the scratch copy, the default,
//! leaves even that untouched.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use tokio_postgres::Client;

use super::{Kind, Prepared, Run, probes};
use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::invariants::{Observation, Undecided};
use crate::probe::{ProbeSession, set_context_on};
use crate::subject::Subject;
use crate::workload::tenant_label;

/// Record what `kind` skips in place: each skipped invariant inconclusive. Returns the skipped
/// checks in words, for the report.
pub(super) fn skip<K: Kind>(run: &mut Run<'_>, kind: &K) -> Vec<String> {
    let mut out = Vec::new();
    for (what, invariants) in kind.skipped_in_place() {
        for id in invariants {
            run.ledger.record(Observation::inconclusive(
                id,
                Undecided::SkippedInPlace,
                "in-place",
                format!(
                    "not checked in place: {what} commits; check a scratch copy (drop --in-place)"
                ),
            ));
        }
        out.push(what.to_string());
    }
    out
}

/// The probes, on the existing tenants, as the runtime; then the pool's probes after
/// read-only tasks; then the coverage of the probes.
///
/// # Errors
/// A harness error when a probe cannot run at all.
pub(super) async fn exercise(p: &Prepared, run: &mut Run<'_>) -> Result<()> {
    let Some(runtime) = super::runtime_login(p, run).await? else {
        return Ok(());
    };
    let tenants = existing_tenants(&run.oracle, &run.relations).await?;
    let mut session = ProbeSession::open(&runtime, &run.subject).await?;
    run.ledger.record_all(
        probes::tenant_probes(
            &mut session,
            &runtime,
            &run.oracle,
            &run.subject,
            &run.relations,
            &tenants,
            false,
        )
        .await?,
    );
    let pool = super::pool(&runtime, 2)?;
    read_only_tasks(&pool, &run.subject, &run.relations, &tenants).await?;
    let first = tenants.first().map(|t| t.0.as_str());
    run.ledger.record_all(
        probes::pool_probes(
            &pool,
            &run.oracle,
            &mut session,
            &run.subject,
            &run.relations,
            first,
        )
        .await?,
    );
    let uncovered = probes::coverage(&run.ledger, &run.relations, &run.keys, &|_| false);
    run.ledger.record_all(uncovered);
    Ok(())
}

/// The two tenants with the most rows across the tenant tables (ties by id), labelled A and B.
async fn existing_tenants(
    oracle: &Client,
    relations: &[Relation],
) -> Result<Vec<(String, String)>> {
    let mut rows: BTreeMap<String, i64> = BTreeMap::new();
    for rel in relations
        .iter()
        .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p') && !r.is_partition)
    {
        let column = rel.tenant_column_sql();
        let sql = format!(
            "SELECT {column}::text, count(*) FROM {} WHERE {column} IS NOT NULL GROUP BY 1",
            rel.name
        );
        for row in oracle
            .query(&sql, &[])
            .await
            .map_err(|e| Error::database(format!("counting the tenants of {}", rel.name), e))?
        {
            *rows.entry(row.get(0)).or_default() += row.get::<_, i64>(1);
        }
    }
    let mut ranked: Vec<(String, i64)> = rows.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(ranked
        .into_iter()
        .take(2)
        .enumerate()
        .map(|(i, (id, _))| (id, tenant_label(i)))
        .collect())
}

/// What an application's read does on each of `tenants`, on connections of `pool`: set the
/// context as the application does and read every tenant table, in a read-only transaction
/// that commits (so a context set for the session stays, as it would). A statement that fails
/// (a context statement that writes) ends its transaction; the pool's probes still run.
async fn read_only_tasks(
    pool: &Pool,
    subject: &Subject,
    relations: &[Relation],
    tenants: &[(String, String)],
) -> Result<()> {
    for (tenant, _) in tenants {
        let client = pool.get().await.map_err(|e| {
            Error::provisioning(format!("getting a pooled runtime connection: {e}"))
        })?;
        client
            .batch_execute("BEGIN READ ONLY")
            .await
            .map_err(|e| Error::database("opening a read-only task", e))?;
        let mut failed = set_context_on(&**client, subject, tenant).await.is_err();
        for rel in relations
            .iter()
            .filter(|r| r.is_tenant_relation() && r.runtime_can_select)
        {
            if !failed {
                let sql = format!("SELECT count(*) FROM {}", rel.name);
                failed = client.query_one(&sql, &[]).await.is_err();
            }
        }
        client
            .batch_execute(if failed { "ROLLBACK" } else { "COMMIT" })
            .await
            .map_err(|e| Error::database("ending a read-only task", e))?;
    }
    Ok(())
}
