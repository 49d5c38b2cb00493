//! Fault injection from outside the worker: a claim key held by another session (so the
//! target blocks, then times out or is terminated), the rollup table held locked (so the target
//! pauses mid-transaction, its claim written, while the server crashes), `pg_terminate_backend`
//! of a worker backend found by its `application_name`, and the [`relay`] the worker's
//! connections go through, which cuts a connection at its COMMIT. Server crashes are
//! [`Server::crash_and_restart`].
//!
//! [`Server::crash_and_restart`]: crate::provision::Server::crash_and_restart

use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config};

use crate::error::{Error, Result};
use crate::provision::Server;
use crate::workload::ClaimKey;

pub mod relay;

/// A claim key inserted, uncommitted, by a session of the harness: every claim of that key
/// waits for it (a row lock held from another session). Dropping it without
/// [`HeldClaim::release`] ends the session, which rolls it back too.
pub struct HeldClaim {
    client: Client,
}

impl std::fmt::Debug for HeldClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldClaim")
    }
}

impl HeldClaim {
    /// Hold `key` as the oracle (a superuser, so RLS does not apply). `None` when the key is
    /// already committed: a claim of it replays without waiting, so the fault cannot land.
    ///
    /// # Errors
    /// A database error when the session or the insert fails.
    pub async fn hold(oracle: &Config, key: &ClaimKey) -> Result<Option<Self>> {
        let client = Server::connect_with(oracle).await?;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| Error::database("holding a claim key", e))?;
        let (tenant, request_id, task) = key;
        let inserted = client
            .query_opt(
                "INSERT INTO llm_api_calls (tenant_id, endpoint, model, request_id)
                 VALUES ($1, $2, 'rlsgate-fault', $3)
                 ON CONFLICT (tenant_id, request_id, endpoint) DO NOTHING RETURNING id",
                &[tenant, &task.as_str(), request_id],
            )
            .await
            .map_err(|e| Error::database("holding a claim key", e))?;
        Ok(inserted.map(|_| Self { client }))
    }

    /// Roll the held claim back, letting waiting claims through.
    ///
    /// # Errors
    /// A database error when the rollback fails (the session's end rolls it back anyway).
    pub async fn release(self) -> Result<()> {
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| Error::database("releasing a held claim key", e))
    }
}

/// The rollup table (`llm_monthly_costs`) locked in SHARE mode by a session of the harness: every
/// task's rollup upsert waits for it, after the task's claim and job row were written. Dropping
/// it ends the session, which releases the lock (so does a server crash).
pub struct HeldRollups {
    client: Client,
}

impl std::fmt::Debug for HeldRollups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldRollups")
    }
}

impl HeldRollups {
    /// Lock the rollup table as the oracle.
    ///
    /// # Errors
    /// A database error when the session or the lock fails.
    pub async fn hold(oracle: &Config) -> Result<Self> {
        let client = Server::connect_with(oracle).await?;
        client
            .batch_execute("BEGIN; LOCK TABLE llm_monthly_costs IN SHARE MODE")
            .await
            .map_err(|e| Error::database("locking the rollup table", e))?;
        Ok(Self { client })
    }

    /// Release the lock, letting waiting rollups through.
    ///
    /// # Errors
    /// A database error when the rollback fails (the session's end releases it anyway).
    pub async fn release(self) -> Result<()> {
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| Error::database("releasing the rollup table", e))
    }
}

/// Wait (up to `within`) until a backend whose `application_name` is `name` waits on a lock.
/// Returns whether one did.
///
/// # Errors
/// A database error when `pg_stat_activity` cannot be read.
pub async fn wait_until_blocked(oracle: &Client, name: &str, within: Duration) -> Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        let row = oracle
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = left($1, 63) AND wait_event_type = 'Lock'
                   AND pid <> pg_backend_pid()",
                &[&name],
            )
            .await
            .map_err(|e| Error::database("waiting for a fault's target to block", e))?;
        if row.get::<_, i64>(0) > 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Wait (up to `within`) until a backend whose `application_name` is `name` waits on a lock,
/// then terminate it with `pg_terminate_backend`. Returns whether a backend was terminated.
///
/// # Errors
/// A database error when `pg_stat_activity` cannot be read.
pub async fn terminate_when_waiting(oracle: &Client, name: &str, within: Duration) -> Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        let row = oracle
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = left($1, 63) AND wait_event_type = 'Lock'
                   AND pid <> pg_backend_pid()",
                &[&name],
            )
            .await
            .map_err(|e| Error::database("terminating a worker backend", e))?;
        if row.get::<_, i64>(0) > 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A task's transaction as `pg_stat_activity` shows it: the backend's pid and when the
/// transaction began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningTransaction {
    /// The backend.
    pub pid: i32,
    /// `xact_start`, as text.
    pub started: String,
}

/// Wait (up to `within`) until a backend whose `application_name` is `name` is in a
/// transaction: the task of that name drew its connection and opened its transaction. `None`
/// when none was seen.
///
/// # Errors
/// A database error when `pg_stat_activity` cannot be read.
pub async fn wait_until_running(
    oracle: &Client,
    name: &str,
    within: Duration,
) -> Result<Option<RunningTransaction>> {
    let deadline = Instant::now() + within;
    loop {
        let row = oracle
            .query_opt(
                "SELECT pid, xact_start::text FROM pg_stat_activity
                 WHERE application_name = left($1, 63) AND xact_start IS NOT NULL
                   AND pid <> pg_backend_pid()
                 ORDER BY xact_start LIMIT 1",
                &[&name],
            )
            .await
            .map_err(|e| Error::database("waiting for a fault's target to start", e))?;
        if let Some(row) = row {
            return Ok(Some(RunningTransaction {
                pid: row.get(0),
                started: row.get(1),
            }));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Wait (up to `within`) until the transaction `running` ended (its backend runs another one,
/// none, or is gone). Returns whether it ended in time.
///
/// # Errors
/// A database error when `pg_stat_activity` cannot be read.
pub async fn wait_until_ended(
    oracle: &Client,
    running: &RunningTransaction,
    within: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        let row = oracle
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND xact_start::text = $2",
                &[&running.pid, &running.started],
            )
            .await
            .map_err(|e| Error::database("waiting for a fault's target to end", e))?;
        if row.get::<_, i64>(0) == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
