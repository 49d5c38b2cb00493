//! A probe session: a real login connection as the runtime role, which knows whether (and
//! where) that role bypasses row-level security, so a probe never reports a false pass.

use std::collections::BTreeSet;

use tokio_postgres::{Client, Config};

use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::provision::Server;
use crate::refusal::Refused;
use crate::subject::Subject;

/// Why a role's view of a relation is not filtered by row-level security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bypass {
    /// The role is a superuser.
    Superuser,
    /// The role has BYPASSRLS.
    RlsBypassAttribute,
    /// The role owns (or has the privileges of the owner of) a relation whose RLS is not forced.
    OwnerWithoutForce,
}

impl std::fmt::Display for Bypass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Superuser => "is a superuser",
            Self::RlsBypassAttribute => "has BYPASSRLS",
            Self::OwnerWithoutForce => "owns the relation and its RLS is not forced",
        })
    }
}

/// A login connection for probes, and the role it runs as.
pub struct ProbeSession {
    client: Client,
    role: String,
    superuser: bool,
    bypassrls: bool,
    owns_unforced: BTreeSet<String>,
}

impl std::fmt::Debug for ProbeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSession")
            .field("role", &self.role)
            .field("superuser", &self.superuser)
            .field("bypassrls", &self.bypassrls)
            .finish()
    }
}

impl ProbeSession {
    /// Log in with `config` and read who the session is and what it bypasses, for the
    /// relations of `subject`'s schemas.
    ///
    /// # Errors
    /// A database error when the login or the catalog read fails.
    pub async fn open(config: &Config, subject: &Subject) -> Result<Self> {
        let client = Server::connect_with(config).await?;
        let row = client
            .query_one(
                "SELECT current_user::text, r.rolsuper, r.rolbypassrls,
                        coalesce((SELECT array_agg(format('%I.%I', n.nspname, c.relname)::text)
                                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                  WHERE n.nspname = ANY($1) AND NOT c.relforcerowsecurity
                                    AND pg_has_role(current_user, c.relowner, 'USAGE')), '{}')
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[&subject.schemas],
            )
            .await
            .map_err(|e| Error::database("reading the probe session's role", e))?;
        Ok(Self {
            client,
            role: row.get(0),
            superuser: row.get(1),
            bypassrls: row.get(2),
            owns_unforced: row.get::<_, Vec<String>>(3).into_iter().collect(),
        })
    }

    /// The connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A mutable connection (for transactions).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The role the session runs as (`current_user`).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Why this session's view of `relation` is not filtered by RLS, if it is not.
    pub fn bypass(&self, relation: &str) -> Option<Bypass> {
        if self.superuser {
            Some(Bypass::Superuser)
        } else if self.bypassrls {
            Some(Bypass::RlsBypassAttribute)
        } else if self.owns_unforced.contains(relation) {
            Some(Bypass::OwnerWithoutForce)
        } else {
            None
        }
    }
}

/// How a probe statement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// It ran and affected (or returned) this many rows.
    Rows(u64),
    /// The database did not run it.
    Error(Refused),
}

impl Probed {
    /// The SQLSTATE, when the statement raised one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Self::Error(r) => r.sqlstate.clone(),
            Self::Rows(_) => None,
        }
    }

    fn from_error(e: &tokio_postgres::Error) -> Self {
        Self::Error(Refused::of(e))
    }

    /// What this outcome of a statement the runtime must not get through (a write aimed at
    /// another tenant's rows, a read or write with no tenant context) says about `relation`'s
    /// privileges and row policies. Only a privilege or a policy saying no, or nothing
    /// affected, is [`Decision::Refused`]; a failure of any other kind decides nothing.
    pub(crate) fn decide(&self, relation: &str) -> Decision {
        match self {
            Self::Rows(0) => Decision::Refused,
            Self::Rows(_) => Decision::LetThrough,
            Self::Error(r) if r.by_privilege_or_policy() => Decision::Refused,
            Self::Error(r) if r.stopped_only_by_unique_key_of(relation) => Decision::LetThrough,
            Self::Error(r) if r.kind.is_undecided() => Decision::Interrupted,
            Self::Error(_) => Decision::FailedOtherwise,
        }
    }
}

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rows(n) => write!(f, "{n} row(s)"),
            Self::Error(r) => write!(f, "{r}"),
        }
    }
}

/// What a probe's outcome says about the thing under test ([`Probed::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A privilege or a row policy refused it (42501), or it affected nothing.
    Refused,
    /// It went through: rows affected, or stopped only by a unique key of the relation itself,
    /// which PostgreSQL checks after the row policies let the row pass.
    LetThrough,
    /// Timing or a lost connection ended it.
    Interrupted,
    /// It failed for a reason of its own (a CHECK or NOT NULL of the probe's row, a trigger, a
    /// generated column, a cast): not the refusal under test, unless a control shows that the
    /// missing tenant context caused it ([`passes_in_context`]).
    FailedOtherwise,
}

/// The control of a probe that ran with no tenant context and failed for a reason that may be
/// its own: `sql` again on `session`, in `tenant`'s context, in a savepoint rolled back. True
/// when it gets past `relation`'s row policies there (rows, or a unique key of the relation):
/// then the probe's failure came from the missing context, a policy (or trigger) that fails
/// closed by raising, such as `current_setting(name)` without `missing_ok`.
///
/// # Errors
/// A database error when the transaction cannot be opened or the context set.
pub(crate) async fn passes_in_context(
    session: &mut ProbeSession,
    subject: &Subject,
    relation: &str,
    tenant: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<bool> {
    let tx = session
        .client_mut()
        .transaction()
        .await
        .map_err(|e| Error::database("opening a probe's control", e))?;
    set_context(&tx, subject, tenant).await?;
    let result = probe_statement(&tx, sql, params).await?;
    tx.rollback()
        .await
        .map_err(|e| Error::database("ending a probe's control", e))?;
    Ok(result.decide(relation) == Decision::LetThrough)
}

/// Run `statement` between a savepoint of `tx` and a rollback to it, whatever it does.
async fn in_savepoint<T>(
    tx: &tokio_postgres::Transaction<'_>,
    statement: impl std::future::Future<Output = T>,
) -> Result<T> {
    tx.batch_execute("SAVEPOINT rlsgate_probe")
        .await
        .map_err(|e| Error::database("making a probe savepoint", e))?;
    let result = statement.await;
    tx.batch_execute("ROLLBACK TO SAVEPOINT rlsgate_probe")
        .await
        .map_err(|e| Error::database("rolling a probe back", e))?;
    Ok(result)
}

/// Run `sql` inside a savepoint of `tx` (rolled back whatever happens), returning the rows it
/// affected or the error it raised.
///
/// # Errors
/// A database error when the savepoint itself cannot be made or rolled back.
pub async fn probe_statement(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Probed> {
    let result = in_savepoint(tx, tx.execute(sql, params)).await?;
    Ok(result.map_or_else(|e| Probed::from_error(&e), Probed::Rows))
}

/// Run a counting query `sql` (one row of bigint columns) in a savepoint of `tx`.
///
/// # Errors
/// As [`probe_statement`].
pub async fn probe_count(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<std::result::Result<Vec<i64>, Probed>> {
    let result = in_savepoint(tx, tx.query_one(sql, params)).await?;
    Ok(result
        .map(|row| (0..row.len()).map(|i| row.get::<_, i64>(i)).collect())
        .map_err(|e| Probed::from_error(&e)))
}

/// Set the tenant context transaction-locally in `tx`.
///
/// # Errors
/// A database error when `set_config` fails.
pub async fn set_context(
    tx: &tokio_postgres::Transaction<'_>,
    subject: &Subject,
    tenant: &str,
) -> Result<()> {
    set_context_on(tx, subject, tenant)
        .await
        .map_err(|e| Error::database("setting the tenant context for a probe", e))
}

/// Set the tenant context as the application does ([`Subject::context_statement`]) on any
/// client or transaction; the database's error, if any, is the caller's to judge.
///
/// # Errors
/// The statement's error.
pub async fn set_context_on(
    client: &impl tokio_postgres::GenericClient,
    subject: &Subject,
    tenant: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    client
        .execute(subject.context_statement().as_str(), &[&tenant])
        .await
        .map(drop)
}

/// One row of `tenant` in `relation`, as the oracle reads it: its JSON (to re-insert a copy)
/// and its text form (to address it with `WHERE t::text = ...`).
///
/// # Errors
/// A database error when the read fails.
pub async fn sample_row(
    oracle: &Client,
    relation: &Relation,
    tenant: &str,
) -> Result<Option<(String, String)>> {
    let sql = format!(
        "SELECT row_to_json(t)::text, t::text FROM {} t WHERE {}::text = $1 LIMIT 1",
        relation.name,
        relation.tenant_column_sql()
    );
    let row = oracle
        .query_opt(&sql, &[&tenant])
        .await
        .map_err(|e| Error::database(format!("sampling a row of {}", relation.name), e))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// A row of some tenant other than `a` in `relation`, as the oracle reads it, `b`'s first:
/// its JSON, its text form (as [`sample_row`] gives them) and its tenant. Rows of tenants
/// other than the probe's pair (earlier cases' tenants) let a write probe run on a relation
/// where `b` has no row yet.
///
/// # Errors
/// A database error when the read fails.
pub(crate) async fn sample_foreign_row(
    oracle: &Client,
    relation: &Relation,
    a: &str,
    b: &str,
) -> Result<Option<(String, String, String)>> {
    let column = relation.tenant_column_sql();
    let sql = format!(
        "SELECT row_to_json(t)::text, t::text, {column}::text FROM {} t
         WHERE {column} IS NOT NULL AND {column}::text <> $1
         ORDER BY {column}::text = $2 DESC LIMIT 1",
        relation.name
    );
    let row = oracle
        .query_opt(&sql, &[&a, &b])
        .await
        .map_err(|e| Error::database(format!("sampling a row of {}", relation.name), e))?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// What the oracle counts in a relation about one tenant: whether a probe can show a leak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    /// Rows of the tenant.
    pub(crate) own: i64,
    /// Rows that are not the tenant's (another tenant's, or with no tenant).
    pub(crate) others: i64,
    /// Rows with some tenant (the tenant column not NULL).
    pub(crate) with_tenant: i64,
}

/// The rows of `relation`, counted by the oracle about `tenant`.
///
/// # Errors
/// A database error when the count fails.
pub(crate) async fn oracle_counts(
    oracle: &Client,
    relation: &Relation,
    tenant: &str,
) -> Result<Counted> {
    let column = relation.tenant_column_sql();
    let sql = format!(
        "SELECT count(*) FILTER (WHERE {column}::text = $1),
                count(*) FILTER (WHERE {column}::text IS DISTINCT FROM $1),
                count({column})
         FROM {}",
        relation.name
    );
    let row = oracle
        .query_one(&sql, &[&tenant])
        .await
        .map_err(|e| Error::database(format!("counting rows of {}", relation.name), e))?;
    Ok(Counted {
        own: row.get(0),
        others: row.get(1),
        with_tenant: row.get(2),
    })
}
