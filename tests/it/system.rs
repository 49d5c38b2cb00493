//! The worker against a fresh cloned database: the evidence pack's two tests, strengthened, and
//! the persistence guarantees of docs/system.md section 5.
use std::collections::BTreeSet;

use rlsgate::executor::Executor;
use rlsgate::history::History;
use rlsgate::invariants::{Case, InvariantId, Status};
use rlsgate::system::{
    self, ErrorClass, Outcome, TaskMessage, TaskName, Variant, Worker, WorkerConfig,
};
use rlsgate::target::Target;
use rlsgate::truth::Truth;
use rlsgate::workload::{MessageSpec, Plan, Step, StepFault, TenantSpec, Workload};
use rlsgate::{Database, Role};
use uuid::Uuid;

use crate::support::shared_server;

const A: Uuid = Uuid::from_u128(0xa0d0_8073_832b_4520_baa4_60dd_60b7_8d0d);
const B: Uuid = Uuid::from_u128(0x2326_8754_a3ef_46df_b9e1_ad9b_e306_2829);
const MISSING: Uuid = Uuid::from_u128(0xf321_1e98_144f_4e8d_82e8_c2ea_316f_cfc1);

async fn system_with(variants: &[Variant], pool_size: usize) -> (Database, Worker) {
    let server = shared_server().await;
    let db = server.fresh_database().await.unwrap();
    for v in variants {
        v.apply_schema(&db).await.unwrap();
    }
    system::create_tenant(&db, A, "tenant a").await.unwrap();
    system::create_tenant(&db, B, "tenant b").await.unwrap();
    let config = WorkerConfig {
        pool_size,
        variants: variants.iter().copied().collect::<BTreeSet<_>>(),
        ..Default::default()
    };
    let worker = Worker::connect(&db, config).await.unwrap();
    (db, worker)
}

fn task(n: u128, name: TaskName, tenant: Uuid) -> TaskMessage {
    TaskMessage::new(format!("task-{n}"), name, tenant, Uuid::from_u128(n))
}

/// Rows of `table` (all tenants), counted as the superuser: the checker's view, not a probe.
async fn count(db: &Database, table: &str, filter: &str) -> i64 {
    let su = db.connect(Role::Superuser).await.unwrap();
    su.query_one(&format!("SELECT count(*) FROM {table} WHERE {filter}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Rows of `table` visible to app_user in `tenant`'s context.
async fn visible(db: &Database, table: &str, tenant: Uuid) -> i64 {
    let mut c = db.connect(Role::Runtime).await.unwrap();
    let tx = c.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.current_tenant_id', $1, true)",
        &[&tenant.to_string()],
    )
    .await
    .unwrap();
    tx.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_route_task_persists_under_the_runtime_identity() {
    let (db, worker) = system_with(&[], 2).await;
    assert_eq!(visible(&db, "llm_api_calls", A).await, 0);
    let outcome = worker.execute(&task(1, TaskName::Route, A)).await;
    assert!(
        matches!(outcome, Outcome::Committed { job_id: None, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        visible(&db, "llm_api_calls", A).await,
        1,
        "the tenant's count rises by one"
    );
    assert_eq!(
        visible(&db, "llm_api_calls", B).await,
        0,
        "the other tenant sees nothing"
    );
    let conn = worker.pool().get().await.unwrap();
    let row = conn
        .query_one("SELECT current_user::text, session_user::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("app_user".into(), "app_user".into())
    );
}

#[tokio::test]
async fn a_task_for_a_missing_tenant_lands_in_the_dlq_once_with_no_partial_rows() {
    let (db, worker) = system_with(&[], 2).await;
    let t = task(2, TaskName::Investigation, MISSING);
    let outcome = worker.execute(&t).await;
    let Outcome::FailedRecorded {
        dlq_id,
        failure,
        retries,
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (failure.class, failure.sqlstate.as_deref()),
        (ErrorClass::Database, Some("23503"))
    );
    assert_eq!(*retries, 3);
    assert_eq!(*dlq_id, t.dlq_id());
    // Delivered again: the DLQ write is idempotent.
    let again = worker.execute(&t).await;
    assert_eq!(again.kind(), "failed_recorded");
    let su = db.connect(Role::Superuser).await.unwrap();
    let rows = su
        .query("SELECT error_type, tenant_id, task_name, retry_count, exception_class FROM worker_failed_jobs", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "exactly one DLQ row");
    assert_eq!(rows[0].get::<_, String>(0), "database_error");
    assert_eq!(rows[0].get::<_, Option<Uuid>>(1), Some(MISSING));
    assert_eq!(rows[0].get::<_, String>(2), "app.tasks.llm.investigation");
    assert_eq!(rows[0].get::<_, i32>(3), 3);
    assert_eq!(rows[0].get::<_, String>(4), "PostgresError[23503]");
    for table in [
        "llm_api_calls",
        "llm_monthly_costs",
        "investigations",
        "budget_optimization_jobs",
    ] {
        assert_eq!(
            count(&db, table, "true").await,
            0,
            "partial rows in {table}"
        );
    }
    assert_eq!(
        visible(&db, "worker_failed_jobs", A).await,
        0,
        "another tenant sees the failure"
    );
}

#[tokio::test]
async fn a_replay_of_the_same_request_writes_nothing_more() {
    let (db, worker) = system_with(&[], 2).await;
    let t = task(3, TaskName::BudgetOptimization, A);
    let Outcome::Committed { call_id, .. } = worker.execute(&t).await else {
        panic!()
    };
    let redelivered = TaskMessage {
        task_id: "task-3-redelivered".into(),
        ..t.clone()
    };
    assert_eq!(
        worker.execute(&redelivered).await,
        Outcome::Replayed { call_id }
    );
    assert_eq!(count(&db, "llm_api_calls", "true").await, 1);
    assert_eq!(count(&db, "budget_optimization_jobs", "true").await, 1);
    assert_eq!(
        count(&db, "llm_monthly_costs", "total_calls = 1").await,
        1,
        "the rollup counted the replay"
    );
}

#[tokio::test]
async fn investigation_and_budget_tasks_write_their_job_rows_and_the_rollup_equals_the_audit_rows()
{
    let (db, worker) = system_with(&[], 4).await;
    for (n, name) in TaskName::ALL.into_iter().enumerate() {
        for tenant in [A, B] {
            let outcome = worker
                .execute(&task(
                    10 + n as u128 * 2 + u128::from(tenant == B),
                    name,
                    tenant,
                ))
                .await;
            let job_expected = name.job_table().is_some();
            assert!(
                matches!(outcome, Outcome::Committed { job_id, .. } if job_id.is_some() == job_expected),
                "{outcome:?}"
            );
        }
    }
    assert_eq!(
        count(
            &db,
            "investigations",
            "status = 'completed' AND query LIKE 'stubbed:%'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &db,
            "budget_optimization_jobs",
            "recommendations ? 'request_id'"
        )
        .await,
        2
    );
    let mismatched = count(
        &db,
        "llm_monthly_costs m",
        "m.total_calls <> (SELECT count(*) FROM llm_api_calls c WHERE c.tenant_id = m.tenant_id
             AND date_trunc('month', c.created_at AT TIME ZONE 'UTC')::date = m.month)
         OR (m.model_breakdown -> 'llm_stub' ->> 'calls')::bigint <> m.total_calls",
    )
    .await;
    assert_eq!(mismatched, 0);
    assert_eq!(count(&db, "llm_monthly_costs", "total_calls = 4").await, 2);
}

async fn concurrent_route_tasks(worker: &Worker, n: u128) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..n).map(|i| task(100 + i, TaskName::Route, A)).collect();
    futures_util::future::join_all(tasks.iter().map(|t| worker.execute(t))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_tasks_for_one_tenant_and_month_lose_no_increment() {
    let (db, worker) = system_with(&[], 8).await;
    let outcomes = concurrent_route_tasks(&worker, 8).await;
    assert!(
        outcomes.iter().all(|o| o.kind() == "committed"),
        "{outcomes:?}"
    );
    assert_eq!(count(&db, "llm_monthly_costs", "total_calls = 8").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_then_write_rollup_variant_loses_increments() {
    let (db, worker) = system_with(&[Variant::ReadThenWriteRollup], 8).await;
    let outcomes = concurrent_route_tasks(&worker, 8).await;
    let committed = outcomes.iter().filter(|o| o.kind() == "committed").count() as i64;
    let total: i64 = db
        .connect(Role::Superuser)
        .await
        .unwrap()
        .query_one(
            "SELECT coalesce(sum(total_calls), 0)::bigint FROM llm_monthly_costs",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        total < committed,
        "the broken rollup counted {total} of {committed} commits"
    );
}

#[tokio::test]
async fn the_same_request_id_from_two_tenants_gives_each_its_own_row() {
    let (db, worker) = system_with(&[], 2).await;
    for (n, tenant) in [(20, A), (21, B)] {
        let t = TaskMessage {
            request_id: Some("req-1".into()),
            ..task(n, TaskName::Route, tenant)
        };
        assert_eq!(worker.execute(&t).await.kind(), "committed");
    }
    assert_eq!(count(&db, "llm_api_calls", "request_id = 'req-1'").await, 2);
    assert_eq!(visible(&db, "llm_api_calls", A).await, 1);
    assert_eq!(visible(&db, "llm_api_calls", B).await, 1);
}

#[tokio::test]
async fn a_malformed_tenant_lands_in_the_dlq_as_a_validation_error_with_a_null_tenant() {
    let (db, worker) = system_with(&[], 2).await;
    let t = TaskMessage {
        tenant_id: Some("not-a-uuid".into()),
        ..task(30, TaskName::Explanation, A)
    };
    let outcome = worker.execute(&t).await;
    let Outcome::FailedRecorded {
        failure, retries, ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (failure.class, *retries),
        (ErrorClass::Validation, 0),
        "bad input is not retried"
    );
    assert_eq!(
        count(
            &db,
            "worker_failed_jobs",
            "error_type = 'validation_error' AND tenant_id IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        visible(&db, "worker_failed_jobs", A).await,
        0,
        "a NULL-tenant row is visible inside a tenant"
    );
}

#[tokio::test]
async fn with_the_missing_grant_variant_the_task_fails_with_42501_and_the_dlq_says_so() {
    let (db, worker) = system_with(&[Variant::MissingGrant], 2).await;
    let outcome = worker.execute(&task(40, TaskName::Route, A)).await;
    let Outcome::FailedRecorded { failure, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.sqlstate.as_deref(), Some("42501"));
    let su = db.connect(Role::Superuser).await.unwrap();
    let row = su
        .query_one(
            "SELECT error_type, exception_class, error_message FROM worker_failed_jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "database_error");
    assert_eq!(row.get::<_, String>(1), "PostgresError[42501]");
    assert!(
        row.get::<_, String>(2)
            .contains("permission denied for table llm_api_calls"),
        "{:?}",
        row.get::<_, String>(2)
    );
}

#[tokio::test]
async fn a_forced_failure_after_the_claim_rolls_everything_back() {
    let (db, worker) = system_with(&[], 2).await;
    let mut t = task(50, TaskName::Investigation, A);
    t.faults.fail_after_claim = true;
    t.retries = Some(0);
    let outcome = worker.execute(&t).await;
    assert_eq!(
        outcome.failure().map(|f| f.class),
        Some(ErrorClass::Application),
        "{outcome:?}"
    );
    assert_eq!(count(&db, "llm_api_calls", "true").await, 0);
    assert_eq!(
        count(
            &db,
            "worker_failed_jobs",
            "error_type = 'application_error'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_failing_dlq_write_is_reported_as_not_recorded_never_silently_lost() {
    let (db, worker) = system_with(&[], 2).await;
    let mut t = task(60, TaskName::Route, MISSING);
    t.faults.dlq_write_failures = 3;
    let outcome = worker.execute(&t).await;
    let Outcome::FailedUnrecorded { dlq_error, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(dlq_error.contains("22012"), "{dlq_error}");
    assert_eq!(count(&db, "worker_failed_jobs", "true").await, 0);
}

#[tokio::test]
async fn the_dlq_in_failed_transaction_variant_loses_the_row_while_claiming_it_recorded() {
    let (db, worker) = system_with(&[Variant::DlqInFailedTransaction], 2).await;
    let outcome = worker.execute(&task(70, TaskName::Route, MISSING)).await;
    assert_eq!(outcome.kind(), "failed_recorded");
    assert_eq!(count(&db, "worker_failed_jobs", "true").await, 0);
}

#[tokio::test]
async fn the_dlq_without_context_variant_cannot_record_a_tenant_failure() {
    let (_db, worker) = system_with(&[Variant::DlqWithoutContext], 2).await;
    let outcome = worker.execute(&task(80, TaskName::Route, MISSING)).await;
    let Outcome::FailedUnrecorded { dlq_error, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(dlq_error.contains("42501"), "{dlq_error}");
}

#[tokio::test]
async fn pooled_connections_carry_no_tenant_context_unless_the_session_context_variant_is_on() {
    for (variants, expect_leak) in [(vec![], false), (vec![Variant::SessionContext], true)] {
        let (_db, worker) = system_with(&variants, 1).await;
        assert_eq!(
            worker.execute(&task(90, TaskName::Route, A)).await.kind(),
            "committed"
        );
        let conn = worker.pool().get().await.unwrap();
        let context: Option<String> = conn
            .query_one(
                "SELECT nullif(current_setting('app.current_tenant_id', true), '')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            context.is_some(),
            expect_leak,
            "{variants:?}: context {context:?}"
        );
    }
}

#[tokio::test]
async fn the_worker_as_owner_variant_connects_as_migration_owner() {
    let (_db, worker) = system_with(&[Variant::WorkerAsOwner], 1).await;
    let conn = worker.pool().get().await.unwrap();
    let who: String = conn
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "migration_owner");
}

async fn pooled_context(worker: &Worker) -> Option<String> {
    let conn = worker.pool().get().await.unwrap();
    conn.query_one(
        "SELECT nullif(current_setting('app.current_tenant_id', true), '')",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_carries_no_context_after_an_error_or_a_cancelled_task() {
    let (db, worker) = system_with(&[], 1).await;
    // After an error (and its rollback) on the pool's only connection.
    let mut failing = task(110, TaskName::Route, MISSING);
    failing.retries = Some(0);
    assert_eq!(worker.execute(&failing).await.kind(), "failed_recorded");
    assert_eq!(
        pooled_context(&worker).await,
        None,
        "context left after an error"
    );
    // After a task cancelled while it waits on a lock held by another session.
    let mut su = db.connect(Role::Superuser).await.unwrap();
    let lock = su.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE llm_monthly_costs IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        worker.execute(&task(111, TaskName::Route, A)),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the task was not blocked by the lock: {cancelled:?}"
    );
    lock.rollback().await.unwrap();
    assert_eq!(
        pooled_context(&worker).await,
        None,
        "context left after a cancelled task"
    );
    assert_eq!(
        count(&db, "llm_api_calls", "true").await,
        0,
        "the cancelled task committed"
    );
}

/// Policies, FORCE flags, owners and ACLs of the public tables: what a schema variant changes.
async fn security_catalogue(db: &Database) -> String {
    let su = db.connect(Role::Superuser).await.unwrap();
    su.query_one(
        "SELECT string_agg(format('%s force=%s owner=%s acl=%s policies=%s', c.relname, c.relforcerowsecurity,
                    pg_get_userbyid(c.relowner), c.relacl,
                    (SELECT string_agg(coalesce(p.qual, '') || '/' || coalesce(p.with_check, ''), ';')
                     FROM pg_policies p WHERE p.tablename = c.relname)), E'\\n' ORDER BY c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn every_schema_variant_applies_and_changes_the_security_catalogue() {
    let (reference, _) = system_with(&[], 1).await;
    let reference = security_catalogue(&reference).await;
    for variant in Variant::ALL.into_iter().filter(|v| v.changes_schema()) {
        let (db, _) = system_with(&[variant], 1).await;
        assert_ne!(
            security_catalogue(&db).await,
            reference,
            "{variant} changed nothing"
        );
    }
}

#[tokio::test]
async fn with_check_true_lets_a_tenant_write_a_row_for_another() {
    for (variants, accepted) in [(vec![], false), (vec![Variant::WithCheckTrue], true)] {
        let (db, _) = system_with(&variants, 1).await;
        let mut c = db.connect(Role::Runtime).await.unwrap();
        let tx = c.transaction().await.unwrap();
        tx.execute(
            "SELECT set_config('app.current_tenant_id', $1, true)",
            &[&A.to_string()],
        )
        .await
        .unwrap();
        let insert = tx
            .execute(
                "INSERT INTO llm_api_calls (tenant_id, endpoint, model, request_id) VALUES ($1, 'x', 'm', 'r')",
                &[&B],
            )
            .await;
        assert_eq!(insert.is_ok(), accepted, "{variants:?}: {insert:?}");
        if let Err(e) = insert {
            assert_eq!(e.code().map(|c| c.code()), Some("42501"));
        }
    }
}

#[tokio::test]
async fn the_original_dlq_policy_shows_null_tenant_failures_to_every_tenant() {
    for (variants, leaked) in [(vec![], 0), (vec![Variant::DlqPolicyOriginal], 1)] {
        let (db, worker) = system_with(&variants, 1).await;
        let t = TaskMessage {
            tenant_id: None,
            ..task(120, TaskName::Route, A)
        };
        assert_eq!(worker.execute(&t).await.kind(), "failed_recorded");
        assert_eq!(
            visible(&db, "worker_failed_jobs", A).await,
            leaked,
            "{variants:?}"
        );
    }
}

/// Terminate every `app_user` backend of `db` from another thread, waiting until each is gone,
/// while the calling thread (a current-thread runtime) stands still: the worker's pooled
/// clients have not yet read that their backends died, as happens when a fault kills a backend
/// and the next task draws its connection at once. Returns how many were terminated.
fn terminate_runtime_backends_unseen(db: &Database) -> i64 {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let su = db.connect(Role::Superuser).await.unwrap();
                    su.query_one(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
                         WHERE usename = 'app_user' AND datname = current_database()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0)
                })
        })
        .join()
        .unwrap()
    })
}

// Issue 18, cause 1: a task that drew a pooled connection whose backend a fault had just
// terminated failed at BEGIN (counted as its attempt) instead of running on a live connection.
// A current-thread runtime makes the schedule deterministic: the pool hands out the dead
// connection because its client has not been polled since its backend died.
#[tokio::test]
async fn a_task_that_draws_a_connection_whose_backend_was_terminated_runs_on_a_fresh_one() {
    let (db, worker) = system_with(&[], 1).await;
    assert_eq!(
        worker.execute(&task(120, TaskName::Route, A)).await.kind(),
        "committed"
    );
    assert_eq!(terminate_runtime_backends_unseen(&db), 1);
    let mut t = task(121, TaskName::Investigation, A);
    t.retries = Some(0);
    let outcome = worker.execute(&t).await;
    assert!(
        matches!(outcome, Outcome::Committed { attempts: 1, .. }),
        "a dead pooled connection is replaced, not counted as an attempt: {outcome:?}"
    );
    assert_eq!(count(&db, "llm_api_calls", "true").await, 2);
}

#[tokio::test]
async fn the_stale_connection_variant_fails_the_task_at_begin_on_a_terminated_backend() {
    let (db, worker) = system_with(&[Variant::StaleConnection], 1).await;
    assert_eq!(
        worker.execute(&task(130, TaskName::Route, A)).await.kind(),
        "committed"
    );
    assert_eq!(terminate_runtime_backends_unseen(&db), 1);
    let mut t = task(131, TaskName::Route, A);
    t.retries = Some(0);
    let outcome = worker.execute(&t).await;
    let failure = outcome.failure().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!(
        (failure.class, failure.step.as_str()),
        (ErrorClass::Connection, "begin"),
        "{outcome:?}"
    );
}

// The same schedule on the DLQ path: a task that fails validation never draws a connection, so
// its DLQ write draws the dead one; with two injected DLQ write failures, counting the dead
// connection as the third attempt lost the DLQ row.
#[tokio::test]
async fn a_dlq_write_that_draws_a_dead_connection_runs_on_a_fresh_one() {
    let (db, worker) = system_with(&[], 1).await;
    assert_eq!(
        worker.execute(&task(140, TaskName::Route, A)).await.kind(),
        "committed"
    );
    assert_eq!(terminate_runtime_backends_unseen(&db), 1);
    let mut t = task(141, TaskName::Route, A);
    t.tenant_id = Some("not-a-uuid".into());
    t.faults.dlq_write_failures = 2;
    let outcome = worker.execute(&t).await;
    assert_eq!(outcome.kind(), "failed_recorded", "{outcome:?}");
    assert_eq!(count(&db, "worker_failed_jobs", "true").await, 1);
}

// Issue 18, cause 3: the POOL probe drew a connection a fault had killed and aborted the run
// ("reading a pooled connection's context: connection closed"). The pool's connections, as
// the probes get them, are live: a dead one is replaced, as a task would replace it.
#[tokio::test]
async fn the_pools_connections_for_a_probe_replace_one_whose_backend_was_terminated() {
    let (db, worker) = system_with(&[], 2).await;
    let worker = &worker;
    let outcomes = futures_util::future::join_all(
        (150..152).map(|n| async move { worker.execute(&task(n, TaskName::Route, A)).await }),
    )
    .await;
    assert!(
        outcomes.iter().all(|o| o.kind() == "committed"),
        "{outcomes:?}"
    );
    let before = worker.pool().status().size;
    assert_eq!(terminate_runtime_backends_unseen(&db), before as i64);
    let connections = worker.pooled_connections().await;
    assert_eq!(
        connections.len(),
        before,
        "every dead connection was replaced"
    );
    for conn in &connections {
        let who: String = conn
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, "app_user");
    }
}

// Issue 13: faults at COMMIT and crashes mid-transaction, run through the executor, so the
// worker's connections go through the relay that cuts them, and the history is checked as a
// campaign checks it.

/// Tenant A's `task` message, delivered at each of `deliveries` (indices into the messages) in
/// one step led by `fault`, then the steps in `more`.
fn commit_workload(
    tasks: &[TaskName],
    deliveries: Vec<usize>,
    fault: StepFault,
    concurrency: usize,
    more: Vec<Step>,
) -> Workload {
    let mut steps = vec![Step {
        deliveries,
        fault: Some(fault),
    }];
    steps.extend(more);
    Workload {
        tenants: vec![TenantSpec::Existing, TenantSpec::Existing],
        messages: tasks
            .iter()
            .enumerate()
            .map(|(i, &task)| MessageSpec {
                tenant: 0,
                task,
                correlation: i as u8,
                request: None,
                fail_after_claim: false,
                dlq_write_failures: 0,
            })
            .collect(),
        steps,
        concurrency,
    }
}

/// What one executed workload left: its plan, its history, the rows, and the history
/// invariants it violated.
struct Executed {
    plan: Plan,
    history: History,
    truth: Truth,
    violated: Vec<String>,
}

/// Run `workload` on a fresh database of `server` with a worker under `variants`, as a campaign
/// runs a case.
async fn execute_on(
    server: &rlsgate::Server,
    workload: &Workload,
    variants: &[Variant],
) -> Executed {
    let db = server.fresh_database().await.unwrap();
    let plan = workload.plan(Uuid::new_v5(&Uuid::NAMESPACE_OID, b"issue-13"));
    for (i, (spec, id)) in plan.tenants.iter().enumerate() {
        if let (true, Some(id)) = (spec.exists(), id) {
            system::create_tenant(&db, *id, &format!("tenant {i}"))
                .await
                .unwrap();
        }
    }
    let target = Target::Built(db);
    let config = WorkerConfig {
        pool_size: 2,
        variants: variants.iter().copied().collect(),
        ..WorkerConfig::default()
    };
    let mut executor = Executor::new(&target, config).await.unwrap();
    let history = executor.run(&plan).await.unwrap();
    let oracle = rlsgate::Server::connect_with(&target.config(Role::Superuser).await.unwrap())
        .await
        .unwrap();
    let truth = Truth::read(&oracle, &plan).await.unwrap();
    let violated = Case {
        plan: &plan,
        history: &history,
        truth: &truth,
    }
    .check_history()
    .into_iter()
    .filter(|o| o.status == Status::Violated)
    .map(|o| format!("{}: {}", o.invariant, o.detail))
    .collect();
    Executed {
        plan,
        history,
        truth,
        violated,
    }
}

/// Audit rows of message `m`'s request.
fn rows_of(e: &Executed, m: usize) -> usize {
    let (tenant, request_id, task) = e.plan.claim_key(m).unwrap();
    e.truth
        .calls
        .iter()
        .filter(|c| c.tenant == tenant && c.request_id == request_id && c.endpoint == task.as_str())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_reply_is_lost_is_unknown_and_its_redelivery_replays_it_once() {
    let server = shared_server().await;
    // A duplicate delivery starts once the target's claim is written, so it queues on it.
    let w = commit_workload(
        &[TaskName::Investigation],
        vec![0, 0],
        StepFault::CommitReplyLost { target: 0 },
        2,
        vec![],
    );
    let e = execute_on(&server, &w, &[]).await;
    assert!(e.history.faults[0].delivered, "{:?}", e.history.faults);
    let target = &e.history.deliveries[0];
    assert!(
        matches!(target.outcome, Outcome::Unknown { .. }),
        "{target:?}"
    );
    assert!(
        matches!(target.redelivered, Some(Outcome::Replayed { .. })),
        "the server had committed it: {target:?}"
    );
    assert!(
        matches!(e.history.deliveries[1].outcome, Outcome::Replayed { .. }),
        "{:?}",
        e.history.deliveries[1]
    );
    assert_eq!(rows_of(&e, 0), 1);
    assert_eq!(e.truth.jobs.len(), 1, "{:?}", e.truth.jobs);
    assert_eq!(e.truth.dlq.len(), 0);
    assert!(e.violated.is_empty(), "{:#?}", e.violated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_lost_before_the_server_got_it_is_unknown_and_its_redelivery_commits_once() {
    let server = shared_server().await;
    // Alone: the redelivery commits the request.
    let w = commit_workload(
        &[TaskName::BudgetOptimization],
        vec![0],
        StepFault::CommitRequestLost { target: 0 },
        1,
        vec![],
    );
    let e = execute_on(&server, &w, &[]).await;
    assert!(e.history.faults[0].delivered, "{:?}", e.history.faults);
    let target = &e.history.deliveries[0];
    assert!(
        matches!(target.outcome, Outcome::Unknown { .. }),
        "{target:?}"
    );
    assert!(
        matches!(target.redelivered, Some(Outcome::Committed { .. })),
        "the server never committed it: {target:?}"
    );
    assert_eq!(rows_of(&e, 0), 1);
    assert_eq!(e.truth.jobs.len(), 1);
    assert!(e.violated.is_empty(), "{:#?}", e.violated);
    // With a duplicate delivery queued on the target's claim: the server rolls the target
    // back, the duplicate commits, and the redelivery replays its row. One commit, not two.
    let w = commit_workload(
        &[TaskName::Route],
        vec![0, 0],
        StepFault::CommitRequestLost { target: 0 },
        2,
        vec![],
    );
    let e = execute_on(&server, &w, &[]).await;
    assert!(e.history.faults[0].delivered, "{:?}", e.history.faults);
    assert!(
        matches!(e.history.deliveries[1].outcome, Outcome::Committed { .. }),
        "{:?}",
        e.history.deliveries
    );
    assert!(
        matches!(
            e.history.deliveries[0].redelivered,
            Some(Outcome::Replayed { .. })
        ),
        "{:?}",
        e.history.deliveries[0]
    );
    assert_eq!(rows_of(&e, 0), 1);
    assert!(e.violated.is_empty(), "{:#?}", e.violated);
}

// The crash needs a server of its own: the shared one serves the other tests meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_transaction_rolls_the_claim_back_and_the_worker_rides_out_the_restart() {
    let server = rlsgate::Server::start(&crate::support::settings())
        .await
        .unwrap();
    let w = commit_workload(
        &[
            TaskName::Investigation,
            TaskName::Route,
            TaskName::Explanation,
        ],
        vec![0, 1],
        StepFault::CrashMidTransaction { target: 0 },
        2,
        // A crash after a step, then a step on the same worker: no pool is rebuilt.
        vec![
            Step {
                deliveries: vec![2],
                fault: Some(StepFault::ServerCrash),
            },
            Step {
                deliveries: vec![0, 1, 2],
                fault: None,
            },
        ],
    );
    let e = execute_on(&server, &w, &[]).await;
    assert!(
        e.history.faults.iter().all(|f| f.delivered),
        "{:#?}",
        e.history.faults
    );
    let target = &e.history.deliveries[0];
    assert!(
        matches!(target.outcome, Outcome::Committed { attempts: 2, .. }),
        "one attempt died with the server, the next committed after the restart: {target:?}"
    );
    for d in &e.history.deliveries {
        assert!(
            matches!(
                d.outcome,
                Outcome::Committed { .. } | Outcome::Replayed { .. }
            ),
            "{d:?}"
        );
    }
    for m in 0..3 {
        assert_eq!(rows_of(&e, m), 1, "message {m}");
    }
    assert_eq!(
        e.truth.jobs.len(),
        1,
        "the crashed attempt's job row is gone"
    );
    assert!(e.violated.is_empty(), "{:#?}", e.violated);
}

// A worker that mishandles an ambiguous COMMIT is caught, on the one schedule that exposes it.
#[rstest::rstest]
#[case::acknowledged(
    Variant::LostCommitAcknowledged,
    StepFault::CommitRequestLost { target: 0 },
    InvariantId::Durability
)]
#[case::as_failure(
    Variant::LostCommitAsFailure,
    StepFault::CommitReplyLost { target: 0 },
    InvariantId::Atomicity
)]
#[case::new_request_id(
    Variant::LostCommitNewRequestId,
    StepFault::CommitReplyLost { target: 0 },
    InvariantId::ExactlyOnce
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_mishandles_a_lost_commit_is_caught(
    #[case] variant: Variant,
    #[case] fault: StepFault,
    #[case] expected: InvariantId,
) {
    let server = shared_server().await;
    let w = commit_workload(&[TaskName::Investigation], vec![0], fault, 1, vec![]);
    let e = execute_on(&server, &w, &[variant]).await;
    assert!(e.history.faults[0].delivered, "{:?}", e.history.faults);
    assert!(
        e.violated.iter().any(|v| v.starts_with(expected.id())),
        "{variant} should violate {expected}: {:#?}",
        e.violated
    );
    assert!(
        e.violated
            .iter()
            .any(|v| v.starts_with(InvariantId::ExpectedOutcome.id())),
        "{:#?}",
        e.violated
    );
}

#[tokio::test]
async fn a_worker_waits_for_an_unreachable_server_only_as_long_as_its_patience() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut login = tokio_postgres::Config::new();
    login
        .host("127.0.0.1")
        .port(port)
        .user("app_user")
        .dbname("nowhere");
    let patience = std::time::Duration::from_millis(200);
    let worker = Worker::connect_with(
        login,
        WorkerConfig {
            pool_size: 1,
            reconnect_patience: patience,
            ..WorkerConfig::default()
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let outcome = worker.execute(&task(160, TaskName::Route, A)).await;
    let waited = started.elapsed();
    let Outcome::FailedUnrecorded { failure, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (failure.class, failure.step.as_str()),
        (ErrorClass::Connection, "connect")
    );
    // The task and its DLQ write each waited out their patience, then gave up.
    assert!(waited >= patience * 2, "{waited:?}");
    assert!(waited < std::time::Duration::from_secs(10), "{waited:?}");
}
