//! The DML property: random sequences of inserts, updates, deletes and tenant moves, each in
//! some tenant's context, committed by the runtime over pooled login connections, and after
//! each one every tenant's view of the relation compared with a visibility model.
//!
//! The model: a tenant sees exactly the rows it owns (its sentinels and what it inserted),
//! never another tenant's; a write aimed at another tenant's rows affects nothing; a row cannot
//! be inserted for, or moved to, another tenant. proptest generates the sequences and shrinks a
//! failing one to a minimal reproduction, rendered as the SQL a reviewer can replay.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use deadpool_postgres::Pool;
use proptest::prelude::*;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::invariants::catalog::{self, Relation};
use crate::invariants::{InvariantId, Observation, Status, Subject};
use crate::project::seed::{SeededTenant, Seeder};

/// One operation of a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Insert a row of the acting tenant.
    Insert,
    /// Insert a row of the other tenant (must be rejected).
    InsertForOther,
    /// Update one of the acting tenant's inserted rows (by key).
    UpdateOwn(usize),
    /// Delete one of the acting tenant's inserted rows (by key).
    DeleteOwn(usize),
    /// Move one of the acting tenant's inserted rows to the other tenant (must be rejected).
    MoveOwn(usize),
    /// Update one of the other tenant's rows by key (must affect nothing).
    UpdateOther(usize),
    /// Delete one of the other tenant's rows by key (must affect nothing).
    DeleteOther(usize),
}

/// An operation, the tenant whose context it runs in, and the relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// 0 or 1: tenant A or B.
    pub tenant: usize,
    /// Index into the relations under test.
    pub relation: usize,
    /// What it does.
    pub op: Op,
}

/// Sequences of 1 to `max` actions over `relations` relations.
pub fn sequences(relations: usize, max: usize) -> impl Strategy<Value = Vec<Action>> {
    let op = prop_oneof![
        3 => Just(Op::Insert),
        1 => Just(Op::InsertForOther),
        1 => (0usize..4).prop_map(Op::UpdateOwn),
        1 => (0usize..4).prop_map(Op::DeleteOwn),
        1 => (0usize..4).prop_map(Op::MoveOwn),
        1 => (0usize..4).prop_map(Op::UpdateOther),
        1 => (0usize..4).prop_map(Op::DeleteOther),
    ];
    let action = (0usize..2, 0..relations.max(1), op).prop_map(|(tenant, relation, op)| Action {
        tenant,
        relation,
        op,
    });
    proptest::collection::vec(action, 1..=max.max(1))
}

/// A relation under the DML property, with what the runtime may do to it.
#[derive(Debug, Clone)]
pub struct Target {
    relation: Relation,
    key_sql: String,
    keyed: bool,
    column_type: String,
}

impl Target {
    /// The relations the DML property exercises: seeded tenant tables the runtime can read and
    /// insert into.
    ///
    /// # Errors
    /// A database error when the catalog cannot be read.
    pub async fn all(
        oracle: &Client,
        seeder: &mut Seeder,
        relations: &[Relation],
    ) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        let chosen: Vec<&Relation> = relations
            .iter()
            .filter(|r| {
                r.is_tenant_relation()
                    && matches!(r.kind, 'r' | 'p')
                    && !r.is_partition
                    && r.runtime_can_select
                    && r.runtime_can_insert
                    && seeder.seeded(&r.name)
            })
            .collect();
        for r in chosen {
            let (key_sql, keyed) = seeder.key_sql(oracle, &r.name).await?;
            let column_type = catalog::tenant_column_type(oracle, r).await?;
            out.push(Self {
                relation: r.clone(),
                key_sql,
                keyed,
                column_type,
            });
        }
        Ok(out)
    }
}

/// What one case did, for the reproduction.
#[derive(Debug, Default)]
struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    fn statement(
        &mut self,
        tenant: &SeededTenant,
        subject: &Subject,
        sql: &str,
        param: &str,
        ended: &str,
    ) {
        let set = subject.context_statement();
        self.lines.push(format!(
            "BEGIN; {}; {}; COMMIT;  -- {} ; {}",
            set.replace("$1", &format!("'{}'", tenant.id)),
            sql.replace("$1", &format!("'{param}'")),
            tenant.label,
            ended
        ));
    }
}

/// Run one sequence and judge it. Returns the observations and the transcript.
///
/// # Errors
/// A harness error when a connection cannot be had or the oracle cannot read.
pub async fn run_case(
    pool: &Pool,
    oracle: &Client,
    seeder: &mut Seeder,
    subject: &Subject,
    targets: &[Target],
    actions: &[Action],
) -> Result<(Vec<Observation>, String)> {
    let tenants = seeder.tenants.clone();
    let mut model: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
    let mut inserted: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    for (ri, t) in targets.iter().enumerate() {
        for (ti, tenant) in tenants.iter().enumerate().take(2) {
            model.insert((ri, ti), owned(oracle, t, tenant).await?);
        }
    }
    let mut out = Vec::new();
    let mut transcript = Transcript::default();
    for action in actions {
        let Some(t) = targets.get(action.relation) else {
            continue;
        };
        let me = action.tenant.min(1);
        let other = 1 - me;
        let (actor, victim) = (&tenants[me], &tenants[other]);
        let name = t.relation.name.clone();
        let column = t.relation.tenant_column_sql();
        let client = pool.get().await.map_err(|e| {
            Error::provisioning(format!("getting a pooled runtime connection: {e}"))
        })?;
        match action.op {
            Op::Insert | Op::InsertForOther => {
                let owner = if action.op == Op::Insert {
                    actor
                } else {
                    victim
                };
                let values = match seeder.new_row(oracle, subject, &name, &owner.id).await? {
                    Ok(v) => v,
                    Err(why) => {
                        out.push(
                            Observation::inconclusive(
                                InvariantId::TenantIsolation,
                                "DML-INSERT",
                                format!("no row of {name} could be generated: {why}"),
                            )
                            .on(name.clone()),
                        );
                        continue;
                    }
                };
                let sql = crate::project::seed::insert_statement(&name, &values);
                let param = serde_json::Value::Object(values.clone()).to_string();
                // A row for another tenant is inserted without RETURNING: the SELECT policy
                // would refuse to return it and hide a WITH CHECK that let it in.
                let result = seeder
                    .insert(
                        &client,
                        subject,
                        &name,
                        Some(&actor.id),
                        values,
                        action.op == Op::Insert,
                    )
                    .await?;
                let ended = match &result {
                    Ok(_) => "1 row".to_string(),
                    Err(why) => why.clone(),
                };
                transcript.statement(actor, subject, &sql, &param, &ended);
                if action.op == Op::Insert {
                    match result {
                        Ok((_, key)) => {
                            model
                                .entry((action.relation, me))
                                .or_default()
                                .insert(key.clone());
                            inserted.entry((action.relation, me)).or_default().push(key);
                        }
                        // Refused by the row policy: the tenant cannot write its own rows, which
                        // the probes cannot judge. Refused by a key or check: nothing to model.
                        Err(why) if why.contains("42501") => out.push(
                            Observation::inconclusive(
                                InvariantId::TenantIsolation,
                                "DML-INSERT",
                                format!(
                                    "tenant {}'s own row was refused by the row policy: {why}",
                                    actor.label
                                ),
                            )
                            .on(name.clone())
                            .with_statement(sql),
                        ),
                        Err(_) => {}
                    }
                } else {
                    out.push(match result {
                        Ok(_) => {
                            // The row got in: what the other tenant owns is what the oracle says.
                            model.insert((action.relation, other), owned(oracle, t, victim).await?);
                            Observation::violated(
                                InvariantId::WriteCheck,
                                "DML-INSERT-OTHER",
                                format!(
                                    "in tenant {}'s context, a row for tenant {} was inserted into {name}",
                                    actor.label, victim.label
                                ),
                            )
                        }
                        Err(why) if why.contains("42501") => {
                            Observation::holds(InvariantId::WriteCheck, "DML-INSERT-OTHER")
                        }
                        Err(why) => Observation::inconclusive(
                            InvariantId::WriteCheck,
                            "DML-INSERT-OTHER",
                            format!("rejected for another reason than the row policy: {why}"),
                        ),
                    }
                    .on(name.clone())
                    .with_statement(sql));
                }
            }
            Op::UpdateOwn(k) | Op::DeleteOwn(k) | Op::MoveOwn(k) => {
                let own = inserted
                    .get(&(action.relation, me))
                    .cloned()
                    .unwrap_or_default();
                if !t.keyed || own.is_empty() {
                    continue;
                }
                let key = own[k % own.len()].clone();
                let (sql, probe, allowed) = match action.op {
                    Op::UpdateOwn(_) => (
                        format!(
                            "UPDATE {name} t SET {column} = t.{column} WHERE {} = $1",
                            t.key_sql
                        ),
                        "DML-UPDATE-OWN",
                        t.relation.runtime_can_update,
                    ),
                    Op::DeleteOwn(_) => (
                        format!("DELETE FROM {name} t WHERE {} = $1", t.key_sql),
                        "DML-DELETE-OWN",
                        t.relation.runtime_can_delete,
                    ),
                    _ => (
                        format!(
                            "UPDATE {name} t SET {column} = '{}'::{} WHERE {} = $1",
                            victim.id.replace('\'', "''"),
                            t.column_type,
                            t.key_sql
                        ),
                        "DML-MOVE",
                        t.relation.runtime_can_update,
                    ),
                };
                if !allowed {
                    continue;
                }
                let ended = execute(&client, subject, actor, &sql, &key).await?;
                transcript.statement(actor, subject, &sql, &key, &ended.describe());
                match (action.op, ended) {
                    (Op::MoveOwn(_), Ended::Rows(0)) | (Op::MoveOwn(_), Ended::Error(_, _)) => {
                        out.push(
                            Observation::holds(InvariantId::WriteCheck, probe).on(name.clone()),
                        );
                    }
                    (Op::MoveOwn(_), Ended::Rows(_)) => {
                        model.entry((action.relation, me)).or_default().remove(&key);
                        model.entry((action.relation, other)).or_default().insert(key.clone());
                        inserted.entry((action.relation, me)).or_default().retain(|x| x != &key);
                        out.push(
                            Observation::violated(
                                InvariantId::WriteCheck,
                                probe,
                                format!(
                                    "in tenant {}'s context, its row {key} of {name} was moved to tenant {}",
                                    actor.label, victim.label
                                ),
                            )
                            .on(name.clone())
                            .with_statement(sql),
                        );
                    }
                    (_, Ended::Rows(1)) => {
                        if matches!(action.op, Op::DeleteOwn(_)) {
                            model.entry((action.relation, me)).or_default().remove(&key);
                            inserted.entry((action.relation, me)).or_default().retain(|x| x != &key);
                        }
                        out.push(
                            Observation::holds(InvariantId::TenantIsolation, probe).on(name.clone()),
                        );
                    }
                    (_, ended) => out.push(
                        Observation::violated(
                            InvariantId::TenantIsolation,
                            probe,
                            format!(
                                "tenant {}'s own committed row {key} of {name} is not writable in its context: {}",
                                actor.label,
                                ended.describe()
                            ),
                        )
                        .on(name.clone())
                        .with_sqlstate(ended.sqlstate())
                        .with_statement(sql),
                    ),
                }
            }
            Op::UpdateOther(k) | Op::DeleteOther(k) => {
                let theirs: Vec<String> = model
                    .get(&(action.relation, other))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                let delete = matches!(action.op, Op::DeleteOther(_));
                let allowed = if delete {
                    t.relation.runtime_can_delete
                } else {
                    t.relation.runtime_can_update
                };
                if !t.keyed || theirs.is_empty() || !allowed {
                    continue;
                }
                let key = theirs[k % theirs.len()].clone();
                let (sql, probe) = if delete {
                    (
                        format!("DELETE FROM {name} t WHERE {} = $1", t.key_sql),
                        "DML-DELETE-OTHER",
                    )
                } else {
                    (
                        format!(
                            "UPDATE {name} t SET {column} = t.{column} WHERE {} = $1",
                            t.key_sql
                        ),
                        "DML-UPDATE-OTHER",
                    )
                };
                let ended = execute(&client, subject, actor, &sql, &key).await?;
                transcript.statement(actor, subject, &sql, &key, &ended.describe());
                out.push(
                    match ended {
                        Ended::Rows(n) if n > 0 => {
                            if delete {
                                model
                                    .entry((action.relation, other))
                                    .or_default()
                                    .remove(&key);
                            }
                            Observation::violated(
                            InvariantId::WriteCheck,
                            probe,
                            format!(
                                "in tenant {}'s context, {n} row(s) of tenant {} in {name} were {}",
                                actor.label,
                                victim.label,
                                if delete { "deleted" } else { "updated" }
                            ),
                        )
                        .with_statement(sql)
                        }
                        _ => Observation::holds(InvariantId::WriteCheck, probe),
                    }
                    .on(name.clone()),
                );
            }
        }
        drop(client);
        // Every tenant's view of the relation against the model.
        for (ti, tenant) in tenants.iter().enumerate().take(2) {
            let seen = read(pool, subject, t, tenant).await?;
            let expected = model
                .get(&(action.relation, ti))
                .cloned()
                .unwrap_or_default();
            let judged = judge_read(&seen, &expected, tenant, t);
            if judged.status == Status::Violated {
                transcript.statement(
                    tenant,
                    subject,
                    &read_sql(t),
                    "",
                    &format!("VIOLATION: {}", judged.detail),
                );
            }
            out.push(judged);
        }
    }
    let mut text = String::new();
    for line in &transcript.lines {
        let _ = writeln!(text, "{line}");
    }
    Ok((out, text))
}

fn judge_read(
    seen: &std::result::Result<Vec<(String, String)>, String>,
    expected: &BTreeSet<String>,
    tenant: &SeededTenant,
    t: &Target,
) -> Observation {
    let name = &t.relation.name;
    let id = InvariantId::TenantIsolation;
    let o = match seen {
        Err(why) => Observation::inconclusive(
            id,
            "DML-READ",
            format!("tenant {}'s read of {name} failed: {why}", tenant.label),
        ),
        Ok(rows) => {
            let foreign = rows.iter().filter(|(_, owner)| owner != &tenant.id).count();
            let keys: BTreeSet<String> = rows
                .iter()
                .filter(|(_, owner)| owner == &tenant.id)
                .map(|(k, _)| k.clone())
                .collect();
            let missing: Vec<&String> = expected.difference(&keys).collect();
            let extra: Vec<&String> = keys.difference(expected).collect();
            if foreign > 0 {
                Observation::violated(
                    id,
                    "DML-READ",
                    format!(
                        "in tenant {}'s context {name} shows {foreign} rows of other tenants",
                        tenant.label
                    ),
                )
            } else if !t.keyed {
                Observation::expect(
                    id,
                    keys.len() >= expected.len(),
                    "DML-READ",
                    format!(
                        "tenant {} sees {} of its {} rows in {name}",
                        tenant.label,
                        keys.len(),
                        expected.len()
                    ),
                )
            } else if !missing.is_empty() || !extra.is_empty() {
                Observation::violated(
                    id,
                    "DML-READ",
                    format!(
                        "tenant {}'s view of {name} differs from the model: missing {missing:?}, unexpected {extra:?}",
                        tenant.label
                    ),
                )
            } else {
                Observation::new(id, Status::Holds, "DML-READ", "")
            }
        }
    };
    o.on(name.clone())
}

/// How a statement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Rows(u64),
    Error(Option<String>, String),
}

impl Ended {
    fn describe(&self) -> String {
        match self {
            Self::Rows(n) => format!("{n} row(s)"),
            Self::Error(Some(s), m) => format!("{m} (SQLSTATE {s})"),
            Self::Error(None, m) => m.clone(),
        }
    }

    fn sqlstate(&self) -> Option<String> {
        match self {
            Self::Error(s, _) => s.clone(),
            Self::Rows(_) => None,
        }
    }
}

/// Run `sql` with `$1 = param` in `tenant`'s context, in a transaction that commits.
async fn execute(
    client: &Client,
    subject: &Subject,
    tenant: &SeededTenant,
    sql: &str,
    param: &str,
) -> Result<Ended> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| Error::database("opening a DML transaction", e))?;
    set_context(client, subject, &tenant.id).await?;
    match client.execute(sql, &[&param]).await {
        Ok(n) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| Error::database("committing a DML statement", e))?;
            Ok(Ended::Rows(n))
        }
        Err(e) => {
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| Error::database("rolling a DML statement back", e))?;
            Ok(Ended::Error(
                e.code().map(|c| c.code().to_string()),
                crate::error::describe_db_error(&e),
            ))
        }
    }
}

async fn set_context(client: &Client, subject: &Subject, tenant: &str) -> Result<()> {
    let result = crate::invariants::probe::set_context_on(client, subject, tenant).await;
    result
        .map(drop)
        .map_err(|e| Error::database("setting the tenant context", e))
}

/// The keys of `tenant`'s rows in `t`, as the oracle reads them.
async fn owned(oracle: &Client, t: &Target, tenant: &SeededTenant) -> Result<BTreeSet<String>> {
    let rows = oracle
        .query(
            &format!(
                "SELECT {} FROM {} t WHERE t.{}::text = $1",
                t.key_sql,
                t.relation.name,
                t.relation.tenant_column_sql()
            ),
            &[&tenant.id],
        )
        .await
        .map_err(|e| Error::database("reading the rows the model starts from", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Each row's key and tenant column, as the reads of the model do.
fn read_sql(t: &Target) -> String {
    format!(
        "SELECT {}, coalesce(t.{}::text, '') FROM {} t",
        t.key_sql,
        t.relation.tenant_column_sql(),
        t.relation.name
    )
}

/// What `tenant` sees of `t`: each row's key and tenant, in a read-only transaction.
async fn read(
    pool: &Pool,
    subject: &Subject,
    t: &Target,
    tenant: &SeededTenant,
) -> Result<std::result::Result<Vec<(String, String)>, String>> {
    let client = pool
        .get()
        .await
        .map_err(|e| Error::provisioning(format!("getting a pooled runtime connection: {e}")))?;
    client
        .batch_execute("BEGIN READ ONLY")
        .await
        .map_err(|e| Error::database("opening a DML read", e))?;
    set_context(&client, subject, &tenant.id).await?;
    let rows = client.query(&read_sql(t), &[]).await;
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(|e| Error::database("ending a DML read", e))?;
    Ok(rows
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .map_err(|e| crate::error::describe_db_error(&e)))
}
