//! The LLM-audit worker (docs/system.md section 5): one transaction per execution on a pooled login
//! connection as `app_user`, retries, and the dead-letter queue in a transaction of its own.

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use futures_util::FutureExt as _;
use tokio_postgres::{NoTls, Statement};
use uuid::Uuid;

use crate::database::Database;
use crate::error::{Error, Result};
use crate::roles::Role;
use crate::system::outcome::{ErrorClass, Failure, Outcome};
use crate::system::task::TaskMessage;
use crate::system::variant::Variant;

/// The GUC that carries the tenant context.
pub const TENANT_SETTING: &str = "app.current_tenant_id";

/// DLQ `error_message` limit, in characters.
pub const MESSAGE_LIMIT: usize = 500;
/// DLQ `traceback` limit, in characters.
pub const TRACEBACK_LIMIT: usize = 2000;
/// Attempts at writing one DLQ row before the failure is reported as not recorded.
pub const DLQ_ATTEMPTS: u32 = 3;
/// The first wait before trying an unreachable server again; each wait doubles, up to
/// [`MAX_RECONNECT_WAIT`].
pub const FIRST_RECONNECT_WAIT: Duration = Duration::from_millis(10);
/// The longest single wait before trying an unreachable server again.
pub const MAX_RECONNECT_WAIT: Duration = Duration::from_millis(250);

/// The tenant context and the task id as `application_name`, both transaction-local (`$3`)
/// unless a variant says otherwise: `$1` the setting, `$2` the tenant, `$4` the task id.
pub(crate) const CONTEXT: &str =
    "SELECT set_config($1, $2, $3), set_config('application_name', left($4, 63), true)";

/// The claim of a request: `$1` tenant, `$2` endpoint, `$3` request id, `$4` metadata; returns
/// the row's id and its month, or no row for a replay.
pub(crate) const CLAIM: &str =
    "INSERT INTO llm_api_calls (tenant_id, endpoint, model, request_id, request_metadata)
     VALUES ($1, $2, 'llm_stub', $3, $4)
     ON CONFLICT (tenant_id, request_id, endpoint) DO NOTHING
     RETURNING id, to_char(date_trunc('month', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')";

/// The month's rollup: `$1` tenant, `$2` month (as the claim returned it).
pub(crate) const ROLLUP_UPSERT: &str = "INSERT INTO llm_monthly_costs (tenant_id, month, total_cost_cents, total_calls, model_breakdown)
     VALUES ($1, $2::text::date, 0, 1, jsonb_build_object('llm_stub', jsonb_build_object('calls', 1, 'cost_cents', 0)))
     ON CONFLICT (tenant_id, month) DO UPDATE SET
       total_calls = llm_monthly_costs.total_calls + 1,
       total_cost_cents = llm_monthly_costs.total_cost_cents + EXCLUDED.total_cost_cents,
       model_breakdown = llm_monthly_costs.model_breakdown || jsonb_build_object('llm_stub', jsonb_build_object(
         'calls', coalesce((llm_monthly_costs.model_breakdown -> 'llm_stub' ->> 'calls')::bigint, 0) + 1,
         'cost_cents', coalesce((llm_monthly_costs.model_breakdown -> 'llm_stub' ->> 'cost_cents')::bigint, 0)))";

/// The job row of an investigation: `$1` tenant, `$2` request id.
pub(crate) const INVESTIGATION_JOB: &str =
    "INSERT INTO investigations (tenant_id, query, status, result)
     VALUES ($1, 'stubbed:' || $2, 'completed', '{}'::jsonb) RETURNING id";

/// The job row of a budget optimisation: `$1` tenant, `$2` request id.
pub(crate) const BUDGET_JOB: &str =
    "INSERT INTO budget_optimization_jobs (tenant_id, status, recommendations)
     VALUES ($1, 'completed', jsonb_build_object('request_id', $2::text)) RETURNING id";

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Retries after the first attempt (0 turns retries off).
    pub retries: u32,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Broken variants switched on.
    pub variants: BTreeSet<Variant>,
    /// The DLQ's `worker` column.
    pub name: String,
    /// How long one task (or DLQ write) waits, in all, for a server that does not accept
    /// connections (it is restarting) before a failed connection counts as an attempt.
    pub reconnect_patience: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            retries: 3,
            pool_size: 4,
            variants: BTreeSet::new(),
            name: "rlsgate-worker".into(),
            reconnect_patience: Duration::from_secs(30),
        }
    }
}

/// Waits, growing exponentially, before trying a server that did not accept a connection
/// again, within a total patience.
#[derive(Debug)]
struct Reconnect {
    waited: Duration,
    next: Duration,
    patience: Duration,
}

impl Reconnect {
    fn new(patience: Duration) -> Self {
        Self {
            waited: Duration::ZERO,
            next: FIRST_RECONNECT_WAIT,
            patience,
        }
    }

    /// Wait before the next try; `false` (at once) when the patience is spent.
    async fn wait(&mut self) -> bool {
        if self.waited >= self.patience {
            return false;
        }
        let wait = self.next.min(self.patience - self.waited);
        tokio::time::sleep(wait).await;
        self.waited += wait;
        self.next = (self.next * 2).min(MAX_RECONNECT_WAIT);
        true
    }
}

/// The failure of checking a connection out of the pool: a lost or refused connection (the
/// server is down or restarting) is a `connection_error`; an error the server raised while
/// logging in is classified by its SQLSTATE (57P03, "the database system is starting up", is
/// a connection error too).
fn checkout_failure(err: &PoolError) -> Failure {
    match err {
        PoolError::Backend(e) => Failure::from_db("connect", e),
        other => Failure::new(ErrorClass::Connection, "connect", other.to_string()),
    }
}

/// The worker: a pool of login connections and the task logic.
pub struct Worker {
    pool: Pool,
    config: WorkerConfig,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish()
    }
}

/// A pool's connections as the next tasks would get them, every one at once: a connection
/// whose backend died (a fault terminated it) is dropped from the pool and replaced, as a task
/// would replace it, so a probe of the pool never meets a dead one. Connections that cannot be
/// opened at all are left out; at most the pool's size plus one are replaced per connection.
pub async fn live_connections(pool: &Pool) -> Vec<Object> {
    let status = pool.status();
    let bound = u32::try_from(status.max_size.max(1)).unwrap_or(u32::MAX) + 1;
    let drawn = futures_util::future::join_all((0..status.size).map(|_| pool.get())).await;
    let mut live = Vec::with_capacity(status.size);
    for mut conn in drawn.into_iter().filter_map(|c| c.ok()) {
        let mut replaced = 0;
        loop {
            // An empty query: one round trip that changes nothing on the connection.
            if !conn.is_closed() && conn.simple_query("").await.is_ok() {
                live.push(conn);
                break;
            }
            drop(Object::take(conn));
            replaced += 1;
            match pool.get().await {
                Ok(fresh) if replaced <= bound => conn = fresh,
                _ => break,
            }
        }
    }
    live
}

impl Worker {
    /// A worker whose pool logs in to `db` as `app_user` (as `migration_owner` under the
    /// [`Variant::WorkerAsOwner`] variant).
    ///
    /// # Errors
    /// As [`Database::config`], or a provisioning error when the pool cannot be built.
    pub async fn connect(db: &Database, config: WorkerConfig) -> Result<Self> {
        let login = db.config(Self::role_for(&config)).await?;
        Self::connect_with(login, config)
    }

    /// The role a worker with `config` logs in as: `app_user`, or `migration_owner` under the
    /// [`Variant::WorkerAsOwner`] variant.
    pub fn role_for(config: &WorkerConfig) -> Role {
        if config.variants.contains(&Variant::WorkerAsOwner) {
            Role::MigrationOwner
        } else {
            Role::Runtime
        }
    }

    /// A worker whose pool logs in with `login` (the caller chose the role).
    ///
    /// # Errors
    /// A provisioning error when the pool cannot be built.
    pub fn connect_with(login: tokio_postgres::Config, config: WorkerConfig) -> Result<Self> {
        let manager = Manager::from_config(
            login,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(|e| {
                Error::provisioning(format!("building the worker's connection pool: {e}"))
            })?;
        Ok(Self { pool, config })
    }

    /// The worker's pool (probes use it to inspect the connections tasks ran on).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool's connections as the next tasks would get them: see [`live_connections`].
    pub async fn pooled_connections(&self) -> Vec<Object> {
        live_connections(&self.pool).await
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    fn has(&self, variant: Variant) -> bool {
        self.config.variants.contains(&variant)
    }

    /// Execute `task` to its final outcome: attempts with retries, then the DLQ on failure.
    /// Never panics and never returns `Err`: every ending is an [`Outcome`].
    ///
    /// A pooled connection whose backend died while it sat in the pool (a terminated backend,
    /// a restarted server) fails before the task did anything: the worker drops it and runs
    /// the attempt again on a fresh connection, without counting it as a retry (under
    /// [`Variant::StaleConnection`], the attempt counts and the retry reuses the dead one).
    /// A server that does not accept connections (it is restarting) is tried again after
    /// growing waits, without counting a retry, for up to
    /// [`WorkerConfig::reconnect_patience`] in all.
    pub async fn execute(&self, task: &TaskMessage) -> Outcome {
        let retries = task.retries.unwrap_or(self.config.retries);
        let mut trace = Vec::new();
        let mut attempt = 0;
        let mut fresh = 0;
        let mut kept = None;
        let mut reconnect = Reconnect::new(self.config.reconnect_patience);
        let mut mint = false;
        loop {
            match self.attempt(task, &mut kept, mint).await {
                Ok(Outcome::Committed {
                    call_id, job_id, ..
                }) => {
                    return Outcome::Committed {
                        call_id,
                        job_id,
                        attempts: attempt + 1,
                    };
                }
                Ok(outcome) => return outcome,
                Err(failure) => {
                    if failure.server_unreachable() && reconnect.wait().await {
                        continue;
                    }
                    if failure.before_any_statement()
                        && fresh < self.fresh_connections()
                        && !self.has(Variant::StaleConnection)
                    {
                        fresh += 1;
                        continue;
                    }
                    trace.push(format!("attempt {}: {failure}", attempt + 1));
                    // The broken ways of handling a COMMIT that got no answer.
                    let lost_commit = failure.lost_commit();
                    let give_up = lost_commit && self.has(Variant::LostCommitAsFailure);
                    mint |= lost_commit && self.has(Variant::LostCommitNewRequestId);
                    if failure.class.is_retryable() && attempt < retries && !give_up {
                        attempt += 1;
                        continue;
                    }
                    drop(kept);
                    return self.record_failure(task, failure, attempt, &trace).await;
                }
            }
        }
    }

    /// How many dead pooled connections one task (or DLQ write) may replace: every pooled one,
    /// and one more.
    fn fresh_connections(&self) -> u32 {
        u32::try_from(self.config.pool_size.max(1)).unwrap_or(u32::MAX) + 1
    }

    /// One attempt: one transaction on one pooled connection. A connection that failed is
    /// dropped from the pool, never handed to the next task; under
    /// [`Variant::StaleConnection`] it is kept in `kept` for the task's retry instead.
    async fn attempt(
        &self,
        task: &TaskMessage,
        kept: &mut Option<Object>,
        mint: bool,
    ) -> std::result::Result<Outcome, Failure> {
        let tenant = task
            .tenant()
            .map_err(|p| Failure::new(ErrorClass::Validation, "validate", p.to_string()))?;
        let mut conn = match kept.take() {
            Some(conn) => conn,
            None => self.pool.get().await.map_err(|e| checkout_failure(&e))?,
        };
        let result = self.attempt_on(&mut conn, task, tenant, mint).await;
        if self.has(Variant::StaleConnection) {
            if result.is_err() {
                *kept = Some(conn);
            }
        } else {
            let failed = match &result {
                Err(failure) => failure.class == ErrorClass::Connection,
                Ok(outcome) => matches!(outcome, Outcome::Unknown { .. }),
            };
            settle(conn, failed);
        }
        result
    }

    /// One transaction; `mint` makes up a new request id (only the
    /// [`Variant::LostCommitNewRequestId`] variant asks for one).
    ///
    /// Three round trips: BEGIN, the context and the claim travel together; then the job row
    /// and the rollup; then COMMIT, alone, sent only once every statement before it succeeded
    /// (so a connection lost before COMMIT is a failure, and only one lost after it is unknown).
    /// The statements are prepared once per connection and cached with it.
    async fn attempt_on(
        &self,
        conn: &mut Object,
        task: &TaskMessage,
        tenant: Uuid,
        mint: bool,
    ) -> std::result::Result<Outcome, Failure> {
        let first = FirstFlight::prepare(conn, task).await?;
        let client: &tokio_postgres::Client = conn;
        let mut tx = Open::new(client);
        let request_id = if self.has(Variant::RequestIdPerAttempt) || mint {
            Uuid::new_v4().simple().to_string()
        } else {
            task.request_id_for(tenant)
        };
        let Some((call_id, month)) = self
            .begin_and_claim(client, &first, task, tenant, &request_id)
            .await?
        else {
            // A replay: the request was claimed before. Return that row; write nothing more.
            let call_id = replayed(conn, task, tenant, &request_id).await?;
            tx.commit()
                .await
                .map_err(|e| Failure::from_db("commit", &e))?;
            return Ok(Outcome::Replayed { call_id });
        };
        if self.has(Variant::ClaimCommittedEarly) {
            // The broken design: the claim commits on its own, the rest follows in a second
            // transaction, so a failure after the claim leaves the audit row behind.
            tx.commit()
                .await
                .map_err(|e| Failure::from_db("commit claim", &e))?;
            tx = Open::new(client);
            tx.begin()
                .await
                .map_err(|e| Failure::from_db("begin", &e))?;
            let setting = prepared(conn, "set tenant context", SETTING).await?;
            client
                .execute(&setting, &[&TENANT_SETTING, &tenant.to_string()])
                .await
                .map_err(|e| Failure::from_db("set tenant context", &e))?;
        }
        if task.faults.fail_after_claim {
            return Err(Failure::new(
                ErrorClass::Application,
                "after claim",
                "forced failure after the claim",
            ));
        }
        let job_id = self
            .job_and_rollup(conn, task, tenant, &request_id, &month)
            .await?;
        let committed = tx.commit().await;
        self.after_commit(committed, call_id, job_id)
    }

    /// The outcome of an attempt whose COMMIT ended with `committed`.
    fn after_commit(
        &self,
        committed: std::result::Result<(), tokio_postgres::Error>,
        call_id: Uuid,
        job_id: Option<Uuid>,
    ) -> std::result::Result<Outcome, Failure> {
        match committed {
            Ok(()) => Ok(Outcome::Committed {
                call_id,
                job_id,
                attempts: 1,
            }),
            Err(e) if e.as_db_error().is_some() => Err(Failure::from_db("commit", &e)),
            // No answer to COMMIT: the server may or may not have committed. The broken
            // variants take it for a commit, or for a failure.
            Err(_) if self.has(Variant::LostCommitAcknowledged) => Ok(Outcome::Committed {
                call_id,
                job_id,
                attempts: 1,
            }),
            Err(e)
                if self.has(Variant::LostCommitAsFailure)
                    || self.has(Variant::LostCommitNewRequestId) =>
            {
                Err(Failure::from_db("commit", &e))
            }
            Err(e) => Ok(Outcome::Unknown {
                detail: format!("the connection failed during COMMIT: {e}"),
            }),
        }
    }

    /// BEGIN, the tenant context (and the task id as `application_name`, so operators and the
    /// fault injector can tell which task a backend runs), the task's timeouts and the claim,
    /// sent together and answered in order: the first that failed is the failure. The claimed
    /// row's id and month, or `None` for a replay.
    async fn begin_and_claim(
        &self,
        client: &tokio_postgres::Client,
        st: &FirstFlight,
        task: &TaskMessage,
        tenant: Uuid,
        request_id: &str,
    ) -> std::result::Result<Option<(Uuid, String)>, Failure> {
        let transaction_local = !self.has(Variant::SessionContext);
        let tenant_text = tenant.to_string();
        let endpoint = task.task_name.as_str();
        let metadata =
            serde_json::json!({ "task_id": task.task_id, "correlation_id": task.correlation_id });
        let timeouts: Vec<(&str, String)> = [
            ("lock_timeout", task.faults.lock_timeout_ms),
            ("statement_timeout", task.faults.statement_timeout_ms),
        ]
        .into_iter()
        .filter_map(|(setting, ms)| Some((setting, format!("{}ms", ms?))))
        .collect();
        let mut setup: Vec<Step<'_>> = vec![
            Box::pin(async {
                client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|e| Failure::from_db("begin", &e))
            }),
            Box::pin(async {
                client
                    .execute(
                        &st.context,
                        &[
                            &TENANT_SETTING,
                            &tenant_text,
                            &transaction_local,
                            &task.task_id,
                        ],
                    )
                    .await
                    .map(drop)
                    .map_err(|e| Failure::from_db("set tenant context", &e))
            }),
        ];
        for (setting, value) in &timeouts {
            let statement = st.setting.as_ref().ok_or_else(|| {
                Failure::new(ErrorClass::Application, "set timeouts", "not prepared")
            })?;
            setup.push(Box::pin(async move {
                client
                    .execute(statement, &[setting, value])
                    .await
                    .map(drop)
                    .map_err(|e| Failure::from_db("set timeouts", &e))
            }));
        }
        if self.has(Variant::AsyncCommit) {
            setup.push(Box::pin(async {
                client
                    .batch_execute("SET LOCAL synchronous_commit = off")
                    .await
                    .map_err(|e| Failure::from_db("set synchronous_commit", &e))
            }));
        }
        let claim = async {
            client
                .query_opt(&st.claim, &[&tenant, &endpoint, &request_id, &metadata])
                .await
                .map_err(|e| Failure::from_db("claim", &e))
        };
        let (setup, claimed) = futures_util::future::join(join_in_order(setup), claim).await;
        setup?;
        Ok(claimed?.map(|row| (row.get(0), row.get(1))))
    }

    /// The job row (for the tasks that have one) and the month's rollup, sent together (the
    /// broken read-then-write rollup waits for the job row).
    ///
    /// Their statements are prepared here, in the transaction after the claim, when the
    /// connection has not cached them yet: preparing takes the statement's table locks, so a
    /// rollup table held locked stops the attempt at the rollup, its claim written.
    async fn job_and_rollup(
        &self,
        conn: &Object,
        task: &TaskMessage,
        tenant: Uuid,
        request_id: &str,
        month: &str,
    ) -> std::result::Result<Option<Uuid>, Failure> {
        let job_sql = match task.task_name.job_table() {
            Some("investigations") => Some(INVESTIGATION_JOB),
            Some(_) => Some(BUDGET_JOB),
            None => None,
        };
        let rollup_sql = (!self.has(Variant::ReadThenWriteRollup)).then_some(ROLLUP_UPSERT);
        let (job_st, rollup_st) = futures_util::future::join(
            prepared_opt(conn, "job row", job_sql),
            prepared_opt(conn, "rollup", rollup_sql),
        )
        .await;
        let (job_st, rollup_st) = (job_st?, rollup_st?);
        let client: &tokio_postgres::Client = conn;
        let job = async {
            match &job_st {
                Some(job) => client
                    .query_one(job, &[&tenant, &request_id])
                    .await
                    .map(|row| Some(row.get(0)))
                    .map_err(|e| Failure::from_db("job row", &e)),
                None => Ok(None),
            }
        };
        let Some(rollup_st) = rollup_st else {
            // The read-then-write rollup variant.
            let job_id = job.await?;
            read_then_write_rollup(client, tenant, month).await?;
            return Ok(job_id);
        };
        let rollup = async {
            client
                .execute(&rollup_st, &[&tenant, &month])
                .await
                .map_err(|e| Failure::from_db("rollup", &e))
        };
        let (job_id, rolled) = futures_util::future::join(job, rollup).await;
        let job_id = job_id?;
        rolled?;
        Ok(job_id)
    }

    /// Write the final failure to the DLQ in a transaction of its own, retrying the write.
    async fn record_failure(
        &self,
        task: &TaskMessage,
        failure: Failure,
        retries: u32,
        trace: &[String],
    ) -> Outcome {
        let mut last = String::new();
        let mut attempt = 0;
        let mut fresh = 0;
        let mut reconnect = Reconnect::new(self.config.reconnect_patience);
        while attempt < DLQ_ATTEMPTS {
            match self
                .write_dlq(task, &failure, retries, trace, attempt)
                .await
            {
                Ok(dlq_id) => {
                    return Outcome::FailedRecorded {
                        dlq_id,
                        failure,
                        retries,
                    };
                }
                Err(e) => {
                    // An unreachable server is waited for, and a dead pooled connection is
                    // replaced, neither counted as a write attempt.
                    if e.unreachable && reconnect.wait().await {
                        last = e.message;
                        continue;
                    }
                    if e.before_any_statement
                        && fresh < self.fresh_connections()
                        && !self.has(Variant::StaleConnection)
                    {
                        fresh += 1;
                    } else {
                        attempt += 1;
                    }
                    last = e.message;
                }
            }
        }
        Outcome::FailedUnrecorded {
            failure,
            retries,
            dlq_error: last,
        }
    }

    async fn write_dlq(
        &self,
        task: &TaskMessage,
        failure: &Failure,
        retries: u32,
        trace: &[String],
        attempt: u32,
    ) -> std::result::Result<Uuid, DlqError> {
        let mut conn = self.pool.get().await.map_err(|e| {
            let failure = checkout_failure(&e);
            DlqError {
                message: format!("connect: {}", failure.message),
                before_any_statement: true,
                unreachable: failure.server_unreachable(),
            }
        })?;
        let result = self
            .write_dlq_on(&mut conn, task, failure, retries, trace, attempt)
            .await;
        let dead = result.as_ref().is_err_and(|e| e.connection);
        if !self.has(Variant::StaleConnection) {
            settle(conn, dead);
        }
        result.map_err(|e| DlqError {
            message: e.message,
            before_any_statement: e.connection && e.step == "begin",
            unreachable: false,
        })
    }

    async fn write_dlq_on(
        &self,
        conn: &mut Object,
        task: &TaskMessage,
        failure: &Failure,
        retries: u32,
        trace: &[String],
        attempt: u32,
    ) -> std::result::Result<Uuid, DlqStepError> {
        let db_err = |step: &'static str, e: tokio_postgres::Error| DlqStepError {
            message: format!("{step}: {}", crate::error::describe_db_error(&e)),
            step,
            connection: ErrorClass::of_db_error(&e) == ErrorClass::Connection,
        };
        let tenant = task.tenant().ok();
        let tx = conn.transaction().await.map_err(|e| db_err("begin", e))?;
        if let Some(tenant) = tenant
            && !self.has(Variant::DlqWithoutContext)
        {
            tx.execute(
                "SELECT set_config($1, $2, true)",
                &[&TENANT_SETTING, &tenant.to_string()],
            )
            .await
            .map_err(|e| db_err("set tenant context", e))?;
        }
        if attempt < task.faults.dlq_write_failures {
            tx.batch_execute("SELECT 1 / 0")
                .await
                .map_err(|e| db_err("injected DLQ fault", e))?;
        }
        let id = task.dlq_id();
        let kwargs = serde_json::json!({
            "tenant_id": task.tenant_id,
            "correlation_id": task.correlation_id,
            "request_id": task.request_id,
            "payload": task.payload,
        });
        let message = truncate(&failure.to_string(), MESSAGE_LIMIT);
        let traceback = truncate(&trace.join("\n"), TRACEBACK_LIMIT);
        let retry_count = i32::try_from(retries).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO worker_failed_jobs (id, task_id, task_name, queue, worker, task_args, task_kwargs,
                 tenant_id, error_type, exception_class, error_message, traceback, retry_count, correlation_id)
             VALUES ($1, $2, $3, 'llm', $4, '[]'::jsonb, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO NOTHING",
            &[
                &id,
                &task.task_id,
                &task.task_name.as_str(),
                &self.config.name,
                &kwargs,
                &tenant,
                &failure.class.as_str(),
                &failure.exception_class(),
                &message,
                &traceback,
                &retry_count,
                &task.correlation_id,
            ],
        )
        .await
        .map_err(|e| db_err("insert", e))?;
        if self.has(Variant::DlqInFailedTransaction) {
            // The original wrote the DLQ row inside the task's transaction, which then rolled
            // back: the worker believes the failure is recorded, and it is not.
            tx.rollback().await.map_err(|e| db_err("rollback", e))?;
        } else {
            tx.commit().await.map_err(|e| db_err("commit", e))?;
        }
        Ok(id)
    }
}

/// Why a DLQ write attempt failed.
struct DlqError {
    message: String,
    /// The connection was dead before the write began: retry on a fresh one.
    before_any_statement: bool,
    /// No connection could be opened: the server is down or restarting.
    unreachable: bool,
}

/// A DLQ write step that failed.
struct DlqStepError {
    message: String,
    step: &'static str,
    /// The connection failed (lost, or its backend terminated).
    connection: bool,
}

/// Hand a connection back to the pool, or drop it from the pool when it failed (`dead`) or is
/// closed: the next task must not draw a connection whose backend is gone.
fn settle(conn: Object, dead: bool) {
    if dead || conn.is_closed() {
        drop(Object::take(conn));
    }
}

/// The broken rollup: read the month's row, then write it back, with the task's other work in
/// between (a pause stands in for it), so concurrent tasks overwrite each other's increments.
async fn read_then_write_rollup(
    tx: &tokio_postgres::Client,
    tenant: Uuid,
    month: &str,
) -> std::result::Result<(), Failure> {
    let current = tx
        .query_opt(
            "SELECT total_calls FROM llm_monthly_costs WHERE tenant_id = $1 AND month = $2::text::date",
            &[&tenant, &month],
        )
        .await
        .map_err(|e| Failure::from_db("rollup read", &e))?;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let sql = match current {
        Some(_) => {
            "UPDATE llm_monthly_costs SET total_calls = $3::bigint,
                 model_breakdown = jsonb_build_object('llm_stub', jsonb_build_object('calls', $3::bigint, 'cost_cents', 0))
             WHERE tenant_id = $1 AND month = $2::text::date"
        }
        None => {
            "INSERT INTO llm_monthly_costs (tenant_id, month, total_calls, model_breakdown)
             VALUES ($1, $2::text::date, $3::bigint, jsonb_build_object('llm_stub', jsonb_build_object('calls', $3::bigint, 'cost_cents', 0)))"
        }
    };
    let next: i64 = current.map_or(0, |r| r.get::<_, i64>(0)) + 1;
    tx.execute(sql, &[&tenant, &month, &next])
        .await
        .map_err(|e| Failure::from_db("rollup write", &e))?;
    Ok(())
}

/// One statement of a flight: sent when first polled, its failure named by its step.
type Step<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<(), Failure>> + Send + 'a>,
>;

/// Run `steps` together, polled (so sent) in order; the first failure in that order.
async fn join_in_order(steps: Vec<Step<'_>>) -> std::result::Result<(), Failure> {
    futures_util::future::join_all(steps)
        .await
        .into_iter()
        .collect()
}

/// The statements of an attempt's first flight (context, timeouts, claim), prepared once per
/// connection: deadpool keeps them in the connection's statement cache, so only a fresh
/// connection prepares them, all in one round trip, before BEGIN.
struct FirstFlight {
    context: Statement,
    claim: Statement,
    /// `set_config($1, $2, true)`, when the task has a timeout to set.
    setting: Option<Statement>,
}

const REPLAY: &str =
    "SELECT id FROM llm_api_calls WHERE tenant_id = $1 AND request_id = $2 AND endpoint = $3";
const SETTING: &str = "SELECT set_config($1, $2, true)";

impl FirstFlight {
    async fn prepare(conn: &Object, task: &TaskMessage) -> std::result::Result<Self, Failure> {
        let faults = &task.faults;
        let setting = (faults.lock_timeout_ms.is_some() || faults.statement_timeout_ms.is_some())
            .then_some(SETTING);
        let (context, claim, setting) = futures_util::future::join3(
            prepared(conn, "set tenant context", CONTEXT),
            prepared(conn, "claim", CLAIM),
            prepared_opt(conn, "set timeouts", setting),
        )
        .await;
        // Nothing of the task ran yet: a lost connection is one that died in the pool, as at
        // BEGIN.
        let before_begin = |f: Failure| {
            if f.class == ErrorClass::Connection {
                Failure {
                    step: "prepare".into(),
                    ..f
                }
            } else {
                f
            }
        };
        Ok(Self {
            context: context.map_err(before_begin)?,
            claim: claim.map_err(before_begin)?,
            setting: setting.map_err(before_begin)?,
        })
    }
}

/// `sql` prepared on `conn`, from its statement cache when it was prepared there before; a
/// failure is `step`'s.
async fn prepared(conn: &Object, step: &str, sql: &str) -> std::result::Result<Statement, Failure> {
    conn.prepare_cached(sql)
        .await
        .map_err(|e| Failure::from_db(step, &e))
}

/// The id of the audit row a replay found (claimed before, by an earlier delivery).
async fn replayed(
    conn: &Object,
    task: &TaskMessage,
    tenant: Uuid,
    request_id: &str,
) -> std::result::Result<Uuid, Failure> {
    let replay = prepared(conn, "replay lookup", REPLAY).await?;
    let client: &tokio_postgres::Client = conn;
    let endpoint = task.task_name.as_str();
    client
        .query_opt(&replay, &[&tenant, &request_id, &endpoint])
        .await
        .map_err(|e| Failure::from_db("replay lookup", &e))?
        .map(|row| row.get(0))
        .ok_or_else(|| {
            Failure::new(
                ErrorClass::Database,
                "replay lookup",
                "the claimed row is not visible",
            )
        })
}

/// [`prepared`], for a statement the attempt may not need.
async fn prepared_opt(
    conn: &Object,
    step: &str,
    sql: Option<&str>,
) -> std::result::Result<Option<Statement>, Failure> {
    match sql {
        Some(sql) => prepared(conn, step, sql).await.map(Some),
        None => Ok(None),
    }
}

/// A transaction begun by hand on a connection (so BEGIN can travel with the statements after
/// it). One that ends neither committed nor rolled back (a failure, or a cancelled task) is
/// rolled back: ROLLBACK is queued on the connection before it goes back to the pool.
struct Open<'a> {
    client: &'a tokio_postgres::Client,
    done: bool,
}

impl<'a> Open<'a> {
    fn new(client: &'a tokio_postgres::Client) -> Self {
        Self {
            client,
            done: false,
        }
    }

    async fn begin(&self) -> std::result::Result<(), tokio_postgres::Error> {
        self.client.batch_execute("BEGIN").await
    }

    async fn commit(&mut self) -> std::result::Result<(), tokio_postgres::Error> {
        self.done = true;
        self.client.batch_execute("COMMIT").await
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The first poll sends it; its answer is read and dropped by the connection.
            let _ = self.client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

/// At most `limit` characters of `text`.
fn truncate(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters_not_bytes() {
        let text = "é".repeat(600);
        assert_eq!(truncate(&text, MESSAGE_LIMIT).chars().count(), 500);
        assert_eq!(truncate("short", MESSAGE_LIMIT), "short");
    }
}
