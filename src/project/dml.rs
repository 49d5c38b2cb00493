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

use crate::catalog::{self, Relation};
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Status, Undecided};
use crate::probe::{Decision, Probed};
use crate::project::seed::{SeededTenant, Seeder};
use crate::refusal::Refused;
use crate::subject::Subject;

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
    let mut sequence = Sequence::start(pool, oracle, subject, targets, seeder).await?;
    for action in actions {
        let Some(t) = targets.get(action.relation) else {
            continue;
        };
        let client = pool.get().await.map_err(|e| {
            Error::provisioning(format!("getting a pooled runtime connection: {e}"))
        })?;
        let ran = match action.op {
            Op::Insert | Op::InsertForOther => sequence.insert(&client, seeder, t, action).await?,
            Op::UpdateOwn(k) | Op::DeleteOwn(k) | Op::MoveOwn(k) => {
                sequence.write_own(&client, t, action, k).await?
            }
            Op::UpdateOther(k) | Op::DeleteOther(k) => {
                sequence.write_other(&client, t, action, k).await?
            }
        };
        drop(client);
        if ran {
            sequence.check_reads(t, action.relation).await?;
        }
    }
    let mut text = String::new();
    for line in &sequence.transcript.lines {
        let _ = writeln!(text, "{line}");
    }
    Ok((sequence.out, text))
}

/// One sequence in progress: the visibility model (the keys each tenant owns per relation),
/// the rows each tenant inserted, the findings and the transcript.
struct Sequence<'a> {
    pool: &'a Pool,
    oracle: &'a Client,
    subject: &'a Subject,
    tenants: Vec<SeededTenant>,
    /// (relation, tenant) → the keys the tenant owns.
    model: BTreeMap<(usize, usize), BTreeSet<String>>,
    /// (relation, tenant) → the keys the tenant inserted in this sequence.
    inserted: BTreeMap<(usize, usize), Vec<String>>,
    out: Vec<Observation>,
    transcript: Transcript,
}

/// Who acts and who is the other tenant, by index and as seeded.
struct Parties<'s> {
    me: usize,
    other: usize,
    actor: &'s SeededTenant,
    victim: &'s SeededTenant,
}

impl<'a> Sequence<'a> {
    /// The model starts from what the oracle reads: each tenant's rows of each relation.
    async fn start(
        pool: &'a Pool,
        oracle: &'a Client,
        subject: &'a Subject,
        targets: &[Target],
        seeder: &Seeder,
    ) -> Result<Self> {
        let tenants = seeder.tenants.clone();
        let mut model = BTreeMap::new();
        for (ri, t) in targets.iter().enumerate() {
            for (ti, tenant) in tenants.iter().enumerate().take(2) {
                model.insert((ri, ti), owned(oracle, t, tenant).await?);
            }
        }
        Ok(Self {
            pool,
            oracle,
            subject,
            tenants,
            model,
            inserted: BTreeMap::new(),
            out: Vec::new(),
            transcript: Transcript::default(),
        })
    }

    fn parties<'t>(tenants: &'t [SeededTenant], action: &Action) -> Parties<'t> {
        let me = action.tenant.min(1);
        let other = 1 - me;
        Parties {
            me,
            other,
            actor: &tenants[me],
            victim: &tenants[other],
        }
    }

    /// Insert a row of the acting tenant (must go in) or of the other (must be refused).
    /// False when no row could be generated.
    async fn insert(
        &mut self,
        client: &Client,
        seeder: &mut Seeder,
        t: &Target,
        action: &Action,
    ) -> Result<bool> {
        let tenants = self.tenants.clone();
        let Parties {
            me,
            other,
            actor,
            victim,
        } = Self::parties(&tenants, action);
        let name = t.relation.name.clone();
        let own = action.op == Op::Insert;
        let owner = if own { actor } else { victim };
        let values = match seeder
            .new_row(self.oracle, self.subject, &name, &owner.id)
            .await?
        {
            Ok(v) => v,
            Err(why) => {
                self.out.push(
                    Observation::inconclusive(
                        InvariantId::TenantIsolation,
                        Undecided::NotSeeded,
                        "DML-INSERT",
                        format!("no row of {name} could be generated: {why}"),
                    )
                    .on(name.clone()),
                );
                return Ok(false);
            }
        };
        let sql = crate::project::seed::insert_statement(&name, &values);
        let param = serde_json::Value::Object(values.clone()).to_string();
        // A row for another tenant is inserted without RETURNING: the SELECT policy would
        // refuse to return it and hide a WITH CHECK that let it in.
        let result = seeder
            .insert(client, self.subject, &name, Some(&actor.id), values, own)
            .await?;
        let ended = match &result {
            Ok(_) => "1 row".to_string(),
            Err(why) => why.to_string(),
        };
        self.transcript
            .statement(actor, self.subject, &sql, &param, &ended);
        let relation = action.relation;
        if own {
            match result {
                Ok((_, key)) => {
                    self.model
                        .entry((relation, me))
                        .or_default()
                        .insert(key.clone());
                    self.inserted.entry((relation, me)).or_default().push(key);
                }
                // The tenant's own row did not go in: nothing the sequence goes on to check
                // about it can be judged, so say so (refused by the row policy: the tenant
                // cannot write its own rows; by a key, check or trigger: the generated row).
                Err(why) => self.out.push(
                    Observation::inconclusive(
                        InvariantId::TenantIsolation,
                        Undecided::FailedOtherwise,
                        "DML-INSERT",
                        format!(
                            "tenant {}'s own row was refused{}: {why}",
                            actor.label,
                            if why.refused_by_privilege_or_policy() {
                                " by the row policy"
                            } else {
                                ""
                            }
                        ),
                    )
                    .on(name.clone())
                    .with_statement(sql),
                ),
            }
            return Ok(true);
        }
        let o = match result {
            Ok(_) => {
                // The row got in: what the other tenant owns is what the oracle says.
                self.model
                    .insert((relation, other), owned(self.oracle, t, victim).await?);
                Observation::violated(
                    InvariantId::WriteCheck,
                    "DML-INSERT-OTHER",
                    format!(
                        "in tenant {}'s context, a row for tenant {} was inserted into {name}",
                        actor.label, victim.label
                    ),
                )
            }
            Err(why) if why.refused_by_privilege_or_policy() => {
                Observation::holds(InvariantId::WriteCheck, "DML-INSERT-OTHER")
            }
            Err(why) => Observation::inconclusive(
                InvariantId::WriteCheck,
                Undecided::FailedOtherwise,
                "DML-INSERT-OTHER",
                format!("rejected for another reason than the row policy: {why}"),
            ),
        };
        self.out.push(o.on(name.clone()).with_statement(sql));
        Ok(true)
    }

    /// Update, delete or move (to the other tenant: must be refused) one of the acting
    /// tenant's inserted rows. False when it has none, the relation has no key, or the runtime
    /// may not do it.
    async fn write_own(
        &mut self,
        client: &Client,
        t: &Target,
        action: &Action,
        k: usize,
    ) -> Result<bool> {
        let tenants = self.tenants.clone();
        let Parties {
            me,
            other,
            actor,
            victim,
        } = Self::parties(&tenants, action);
        let relation = action.relation;
        let own = self
            .inserted
            .get(&(relation, me))
            .cloned()
            .unwrap_or_default();
        if !t.keyed || own.is_empty() {
            return Ok(false);
        }
        let name = t.relation.name.clone();
        let column = t.relation.tenant_column_sql();
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
            return Ok(false);
        }
        let ended = execute(client, self.subject, actor, &sql, &key).await?;
        self.transcript
            .statement(actor, self.subject, &sql, &key, &describe(&ended));
        let o = match (action.op, ended.decide(&name), ended) {
            (Op::MoveOwn(_), Decision::Refused, _) => {
                Observation::holds(InvariantId::WriteCheck, probe).on(name.clone())
            }
            (Op::MoveOwn(_), Decision::LetThrough, Probed::Error(m)) => Observation::violated(
                InvariantId::WriteCheck,
                probe,
                format!(
                    "in tenant {}'s context, the row policy let its row {key} of {name} move to tenant {}; only a unique key stopped it ({m})",
                    actor.label, victim.label
                ),
            )
            .on(name.clone())
            .with_statement(sql),
            (Op::MoveOwn(_), Decision::Interrupted | Decision::FailedOtherwise, ended) => {
                Observation::inconclusive(
                    InvariantId::WriteCheck,
                    Undecided::FailedOtherwise,
                    probe,
                    format!(
                        "moving tenant {}'s row {key} of {name} failed for another reason than a privilege or the row policy: {ended}",
                        actor.label
                    ),
                )
                .on(name.clone())
                .with_sqlstate(ended.sqlstate())
                .with_statement(sql)
            }
            (Op::MoveOwn(_), Decision::LetThrough, Probed::Rows(_)) => {
                self.model.entry((relation, me)).or_default().remove(&key);
                self.model
                    .entry((relation, other))
                    .or_default()
                    .insert(key.clone());
                self.inserted
                    .entry((relation, me))
                    .or_default()
                    .retain(|x| x != &key);
                Observation::violated(
                    InvariantId::WriteCheck,
                    probe,
                    format!(
                        "in tenant {}'s context, its row {key} of {name} was moved to tenant {}",
                        actor.label, victim.label
                    ),
                )
                .on(name.clone())
                .with_statement(sql)
            }
            (_, _, Probed::Rows(1)) => {
                if matches!(action.op, Op::DeleteOwn(_)) {
                    self.model.entry((relation, me)).or_default().remove(&key);
                    self.inserted
                        .entry((relation, me))
                        .or_default()
                        .retain(|x| x != &key);
                }
                Observation::holds(InvariantId::TenantIsolation, probe).on(name.clone())
            }
            (_, _, ended) => Observation::violated(
                InvariantId::TenantIsolation,
                probe,
                format!(
                    "tenant {}'s own committed row {key} of {name} is not writable in its context: {}",
                    actor.label,
                    describe(&ended)
                ),
            )
            .on(name.clone())
            .with_sqlstate(ended.sqlstate())
            .with_statement(sql),
        };
        self.out.push(o);
        Ok(true)
    }

    /// Update or delete one of the other tenant's rows by key (must affect nothing). False
    /// when it has none, the relation has no key, or the runtime may not do it.
    async fn write_other(
        &mut self,
        client: &Client,
        t: &Target,
        action: &Action,
        k: usize,
    ) -> Result<bool> {
        let tenants = self.tenants.clone();
        let Parties {
            other,
            actor,
            victim,
            ..
        } = Self::parties(&tenants, action);
        let relation = action.relation;
        let theirs: Vec<String> = self
            .model
            .get(&(relation, other))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let delete = matches!(action.op, Op::DeleteOther(_));
        let allowed = if delete {
            t.relation.runtime_can_delete
        } else {
            t.relation.runtime_can_update
        };
        if !t.keyed || theirs.is_empty() || !allowed {
            return Ok(false);
        }
        let name = t.relation.name.clone();
        let column = t.relation.tenant_column_sql();
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
        let ended = execute(client, self.subject, actor, &sql, &key).await?;
        self.transcript
            .statement(actor, self.subject, &sql, &key, &describe(&ended));
        let o = match (ended.decide(&name), &ended) {
            (Decision::LetThrough, Probed::Rows(n)) => {
                if delete {
                    self.model
                        .entry((relation, other))
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
            (Decision::LetThrough, Probed::Error(m)) => Observation::violated(
                InvariantId::WriteCheck,
                probe,
                format!(
                    "in tenant {}'s context, the row policy let a {} of tenant {}'s row in {name} through; only a unique key stopped it ({m})",
                    actor.label,
                    if delete { "delete" } else { "update" },
                    victim.label
                ),
            )
            .with_statement(sql),
            (Decision::Refused, _) => Observation::holds(InvariantId::WriteCheck, probe),
            (Decision::Interrupted | Decision::FailedOtherwise, _) => Observation::inconclusive(
                InvariantId::WriteCheck,
                Undecided::FailedOtherwise,
                probe,
                format!(
                    "in tenant {}'s context, the write aimed at tenant {}'s row failed for another reason than a privilege or the row policy: {ended}",
                    actor.label, victim.label
                ),
            )
            .with_sqlstate(ended.sqlstate())
            .with_statement(sql),
        };
        self.out.push(o.on(name));
        Ok(true)
    }

    /// Every tenant's view of relation `relation` (`t`) against the model.
    async fn check_reads(&mut self, t: &Target, relation: usize) -> Result<()> {
        for (ti, tenant) in self.tenants.iter().enumerate().take(2) {
            let seen = read(self.pool, self.subject, t, tenant).await?;
            let expected = self.model.get(&(relation, ti)).cloned().unwrap_or_default();
            let judged = judge_read(&seen, &expected, tenant, t);
            if judged.status == Status::Violated {
                self.transcript.statement(
                    tenant,
                    self.subject,
                    &read_sql(t),
                    "",
                    &format!("VIOLATION: {}", judged.detail),
                );
            }
            self.out.push(judged);
        }
        Ok(())
    }
}

fn judge_read(
    seen: &std::result::Result<Vec<(String, String)>, Refused>,
    expected: &BTreeSet<String>,
    tenant: &SeededTenant,
    t: &Target,
) -> Observation {
    let name = &t.relation.name;
    let id = InvariantId::TenantIsolation;
    let o = match seen {
        Err(why) => Observation::inconclusive(
            id,
            Undecided::FailedOtherwise,
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

/// How a statement ended, for the transcript: its rows, or the error and its SQLSTATE.
fn describe(ended: &Probed) -> String {
    match ended {
        Probed::Rows(n) => format!("{n} row(s)"),
        Probed::Error(r) => match &r.sqlstate {
            Some(s) => format!("{} (SQLSTATE {s})", r.described),
            None => r.described.clone(),
        },
    }
}

/// Run `sql` with `$1 = param` in `tenant`'s context, in a transaction that commits.
async fn execute(
    client: &Client,
    subject: &Subject,
    tenant: &SeededTenant,
    sql: &str,
    param: &str,
) -> Result<Probed> {
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
            Ok(Probed::Rows(n))
        }
        Err(e) => {
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| Error::database("rolling a DML statement back", e))?;
            Ok(Probed::Error(Refused::of(&e)))
        }
    }
}

async fn set_context(client: &Client, subject: &Subject, tenant: &str) -> Result<()> {
    let result = crate::probe::set_context_on(client, subject, tenant).await;
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
) -> Result<std::result::Result<Vec<(String, String)>, Refused>> {
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
        .map_err(|e| Refused::of(&e)))
}
