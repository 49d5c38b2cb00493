//! The probes that need rlsgate's sentinel rows to aim at another tenant's keys (ATTACKS F),
//! for the keys the catalog could not judge (`campaign::probes::key_checks`):
//!
//! - **XREF** (`write-check`): for a foreign key into a tenant table that does not carry the
//!   tenant column, in tenant A's context insert a row of A that references tenant B's
//!   sentinel. PostgreSQL checks a foreign key without row-level security, so when it goes in,
//!   A has attached its row to B's (and learns which of B's keys exist).
//! - **UNIQUE** (`side-channels`): for a unique key shared by every tenant, in A's context insert
//!   a row of A carrying B's values of the key. A 23505 on that key tells A that B holds them.
//!
//! Each runs in a savepoint rolled back, beside a **control**: the same row without B's values,
//! which must go in. A probe whose control fails proves nothing and is inconclusive.

use serde_json::{Map, Value};
use tokio_postgres::Client;

use super::seed::{self, SeededTenant, Seeder};
use crate::catalog::keys::{TenantReference, UniqueKey};
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Status, Undecided, side_channels, write_check};
use crate::probe::{Decision, ProbeSession, Probed, probe_statement, set_context};
use crate::subject::Subject;

/// What the probes need: the session, the oracle, the seeder and the two tenants.
pub(crate) struct Aim<'a> {
    pub(crate) session: &'a mut ProbeSession,
    pub(crate) oracle: &'a Client,
    pub(crate) seeder: &'a mut Seeder,
    pub(crate) subject: &'a Subject,
}

impl Aim<'_> {
    /// A and B, when two tenants were seeded.
    fn tenants(&self) -> Option<(SeededTenant, SeededTenant)> {
        match self.seeder.tenants.as_slice() {
            [a, b, ..] => Some((a.clone(), b.clone())),
            _ => None,
        }
    }

    /// Insert `values` into `table` and then `control` in `tenant`'s context, each in a
    /// savepoint rolled back: how the probe and the control ended.
    async fn try_both(
        &mut self,
        table: &str,
        tenant: &str,
        values: &Map<String, Value>,
        control: &Map<String, Value>,
    ) -> Result<(Probed, Probed)> {
        let tx = self
            .session
            .client_mut()
            .transaction()
            .await
            .map_err(|e| Error::database("opening a key probe", e))?;
        set_context(&tx, self.subject, tenant).await?;
        let run = async |row: &Map<String, Value>| {
            let json = Value::Object(row.clone()).to_string();
            probe_statement(&tx, &seed::insert_statement(table, row), &[&json]).await
        };
        let probed = run(values).await?;
        let controlled = run(control).await?;
        tx.rollback()
            .await
            .map_err(|e| Error::database("ending a key probe", e))?;
        Ok((probed, controlled))
    }

    /// A new row of `table` for `tenant`, or why none could be built.
    async fn new_row(
        &mut self,
        table: &str,
        tenant: &str,
    ) -> Result<Result<Map<String, Value>, String>> {
        Ok(self
            .seeder
            .new_row(self.oracle, self.subject, table, tenant)
            .await?
            .map_err(|why| why.to_string()))
    }
}

/// The statement and the row of a probe, for the evidence.
fn reproduction(table: &str, row: &Map<String, Value>) -> String {
    format!(
        "{}  -- $1 = {}",
        seed::insert_statement(table, row),
        Value::Object(row.clone())
    )
}

/// XREF on every candidate foreign key.
///
/// # Errors
/// A harness error when a probe cannot run at all.
pub(crate) async fn references(
    aim: &mut Aim<'_>,
    candidates: &[TenantReference],
) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    let Some((a, b)) = aim.tenants() else {
        return Ok(out);
    };
    for r in candidates {
        let probe = write_check::reference_probe_name(r);
        let undecided = |why: Undecided, detail: String| {
            Observation::inconclusive(InvariantId::WriteCheck, why, &probe, detail)
                .on(r.relation.clone())
        };
        let Some(theirs) = aim.seeder.sentinel_row(&r.referenced, &b.id).cloned() else {
            out.push(undecided(
                Undecided::NotSeeded,
                format!(
                    "{} has no row of tenant {} to aim at",
                    r.referenced, b.label
                ),
            ));
            continue;
        };
        let mine = match aim.new_row(&r.relation, &a.id).await? {
            Ok(row) => row,
            Err(why) => {
                out.push(undecided(
                    Undecided::NotSeeded,
                    format!("no row of {} could be built: {why}", r.relation),
                ));
                continue;
            }
        };
        let mut aimed = mine.clone();
        for (column, target) in r.columns.iter().zip(&r.referenced_columns) {
            aimed.insert(
                column.clone(),
                theirs.get(target).cloned().unwrap_or(Value::Null),
            );
        }
        let (probed, control) = aim.try_both(&r.relation, &a.id, &aimed, &mine).await?;
        let what = format!(
            "in tenant {}'s context, a row of {} referencing tenant {}'s row of {} through {} ({})",
            a.label,
            r.relation,
            b.label,
            r.referenced,
            r.name,
            r.columns.join(", ")
        );
        out.push(
            judge(
                InvariantId::WriteCheck,
                &probe,
                &r.relation,
                &probed,
                &control,
                |_| false,
                &what,
            )
            .on(r.relation.clone())
            .with_statement(reproduction(&r.relation, &aimed)),
        );
    }
    Ok(out)
}

/// UNIQUE on every candidate unique key.
///
/// # Errors
/// A harness error when a probe cannot run at all.
pub(crate) async fn unique_keys(
    aim: &mut Aim<'_>,
    candidates: &[UniqueKey],
) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    let Some((a, b)) = aim.tenants() else {
        return Ok(out);
    };
    for key in candidates {
        let probe = side_channels::probe_name(key);
        let undecided = |why: Undecided, detail: String| {
            Observation::inconclusive(InvariantId::SideChannels, why, &probe, detail)
                .on(key.relation.clone())
        };
        let theirs = match aim
            .seeder
            .fill_sentinel(aim.oracle, &key.relation, &b.id, &key.columns)
            .await?
        {
            Ok(row) => row,
            Err(why) => {
                out.push(undecided(
                    Undecided::NotSeeded,
                    format!(
                        "tenant {}'s row of {} has no values of {}: {why}",
                        b.label, key.relation, key.name
                    ),
                ));
                continue;
            }
        };
        let mine = match aim.new_row(&key.relation, &a.id).await? {
            Ok(row) => row,
            Err(why) => {
                out.push(undecided(
                    Undecided::NotSeeded,
                    format!("no row of {} could be built: {why}", key.relation),
                ));
                continue;
            }
        };
        let mut aimed = mine.clone();
        for column in &key.columns {
            aimed.insert(
                column.clone(),
                theirs.get(column).cloned().unwrap_or(Value::Null),
            );
        }
        let (probed, control) = aim.try_both(&key.relation, &a.id, &aimed, &mine).await?;
        let values: Vec<String> = key
            .columns
            .iter()
            .map(|c| format!("{c} = {}", theirs.get(c).cloned().unwrap_or(Value::Null)))
            .collect();
        let what = format!(
            "in tenant {}'s context, a row of {} with tenant {}'s {}",
            a.label,
            key.relation,
            b.label,
            values.join(", ")
        );
        // With the tenant's own row in, any unique violation of the aimed row is B's values.
        let collided = |r: &crate::refusal::Refused| r.stopped_only_by_unique_key_of(&key.relation);
        out.push(
            judge(
                InvariantId::SideChannels,
                &probe,
                &key.relation,
                &probed,
                &control,
                collided,
                &what,
            )
            .on(key.relation.clone())
            .with_statement(reproduction(&key.relation, &aimed)),
        );
    }
    Ok(out)
}

/// Judge a key probe by its control. For XREF, a row that went in is the violation (`leaks`
/// matches nothing); for UNIQUE, the error `leaks` matches is (the key told A that B holds the
/// values). With the control in, any other refusal of the aimed row came from aiming it at B's
/// values: it holds. With the control refused too, nothing is decided.
fn judge(
    invariant: InvariantId,
    probe: &str,
    relation: &str,
    probed: &Probed,
    control: &Probed,
    leaks: impl Fn(&crate::refusal::Refused) -> bool,
    what: &str,
) -> Observation {
    let control_in = matches!(control, Probed::Rows(n) if *n > 0);
    let o = match probed {
        Probed::Error(r) if leaks(r) => Observation::violated(
            invariant,
            probe,
            format!(
                "{what} fails with a unique violation of that key: the tenant learns the other holds these values ({r})"
            ),
        ),
        Probed::Rows(n) if *n > 0 && invariant == InvariantId::WriteCheck => Observation::violated(
            invariant,
            probe,
            format!(
                "{what} went in: the foreign key is checked without row-level security, so the tenant attached its row to the other's"
            ),
        ),
        _ if probed.decide(relation) == Decision::Interrupted => Observation::inconclusive(
            invariant,
            Undecided::Interrupted,
            probe,
            format!("{what}: interrupted: {probed}"),
        ),
        _ if !control_in => Observation::inconclusive(
            invariant,
            Undecided::FailedOtherwise,
            probe,
            format!(
                "{what}: the control row of the tenant's own did not go in either ({control}), so this proves nothing"
            ),
        ),
        _ => Observation::new(
            invariant,
            Status::Holds,
            probe,
            format!("{what}: {probed}, while the tenant's own row goes in"),
        ),
    };
    o.with_sqlstate(probed.sqlstate())
}
