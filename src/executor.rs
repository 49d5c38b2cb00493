//! The executor: runs a [`Plan`] over the worker's real `app_user` pool, step by step, each
//! step's deliveries as concurrent tokio tasks, injecting the step faults, and records the
//! [`History`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::faults::{HeldClaim, terminate_when_waiting, wait_until_ended, wait_until_running};
use crate::history::{DeliveryRecord, FaultRecord, History};
use crate::provision::Server;
use crate::roles::Role;
use crate::system::{Outcome, TaskMessage, Worker, WorkerConfig};
use crate::target::Target;
use crate::workload::{Plan, StepFault, TenantSpec};

/// Lock and statement timeout given to a targeted delivery, in milliseconds.
pub const FAULT_TIMEOUT_MS: u32 = 50;
/// The longest a held claim key blocks a step, whatever happens.
pub const MAX_HOLD: Duration = Duration::from_secs(5);

/// A claim key held for a step fault, and its target.
struct Held {
    claim: HeldClaim,
    target: usize,
    terminate: bool,
}

/// Runs plans against a target with one worker, rebuilding the worker's pool after a crash.
pub struct Executor<'a> {
    target: &'a Target,
    worker: Arc<Worker>,
    config: WorkerConfig,
}

impl std::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", &self.config)
            .finish()
    }
}

impl<'a> Executor<'a> {
    /// An executor whose worker logs in to `target` with `config`.
    ///
    /// # Errors
    /// As [`Target::config`] and [`Worker::connect_with`].
    pub async fn new(target: &'a Target, config: WorkerConfig) -> Result<Self> {
        let worker = Arc::new(Self::connect(target, &config).await?);
        Ok(Self {
            target,
            worker,
            config,
        })
    }

    async fn connect(target: &Target, config: &WorkerConfig) -> Result<Worker> {
        let login = target.config(Worker::role_for(config)).await?;
        Worker::connect_with(login, config.clone())
    }

    /// The worker (probes inspect its pooled connections).
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Run `plan` and return its history. Faults that cannot land here (a crash on a server
    /// rlsgate does not own, a target whose tenant does not exist) are recorded as not
    /// delivered.
    ///
    /// # Errors
    /// A harness error: the oracle connection fails, the server does not restart, a task
    /// panics.
    pub async fn run(&mut self, plan: &Plan) -> Result<History> {
        let started = Instant::now();
        let mut history = History::default();
        for (step, (deliveries, fault)) in plan.steps.iter().enumerate() {
            let mut messages: Vec<TaskMessage> = deliveries
                .iter()
                .map(|&m| plan.messages[m].clone())
                .collect();
            let mut held = None;
            if let Some(fault) = fault {
                let target = fault.target(deliveries.len());
                // Aim at the first delivery, from the planned target on, that the fault can
                // land on: an existing tenant whose request is not committed yet.
                let target = target.map(|t| {
                    (0..deliveries.len())
                        .map(|i| (t + i) % deliveries.len())
                        .find(|&p| self.can_land(plan, &history, deliveries[p]))
                        .unwrap_or(t)
                });
                let mut record = FaultRecord {
                    step,
                    kind: fault.kind(),
                    target: target.map(|t| deliveries[t]),
                    position: target,
                    armed: false,
                    delivered: false,
                    detail: String::new(),
                };
                match (fault, target) {
                    (StepFault::ServerCrash, _) => {
                        // Injected right after the step's deliveries, below.
                        if !self.target.can_crash() {
                            record.detail = "not injected: rlsgate does not own this server".into();
                        }
                    }
                    (_, Some(t)) => {
                        let m = deliveries[t];
                        let key = plan.claim_key(m).filter(|_| {
                            matches!(plan.tenants[plan.message_tenant[m]].0, TenantSpec::Existing)
                        });
                        match key {
                            None => {
                                record.detail =
                                    "not injected: the target's tenant does not exist".into();
                            }
                            Some(key) => {
                                let oracle = self.target.config(Role::Superuser).await?;
                                match HeldClaim::hold(&oracle, &key).await? {
                                    None => {
                                        record.detail = "not injected: the target's request was already committed".into();
                                    }
                                    Some(h) => {
                                        let terminate =
                                            matches!(fault, StepFault::TerminateBackend { .. });
                                        held = Some(Held {
                                            claim: h,
                                            target: t,
                                            terminate,
                                        });
                                        if !terminate {
                                            // One attempt: a retry would queue for a pooled
                                            // connection behind deliveries blocked on the key.
                                            messages[t].retries = Some(0);
                                        }
                                        let faults = &mut messages[t].faults;
                                        match fault {
                                            StepFault::LockTimeout { .. } => {
                                                faults.lock_timeout_ms = Some(FAULT_TIMEOUT_MS);
                                                record.armed = true;
                                                record.detail = format!(
                                                    "claim key held by another session; the target's lock_timeout is {FAULT_TIMEOUT_MS} ms"
                                                );
                                            }
                                            StepFault::StatementTimeout { .. } => {
                                                faults.statement_timeout_ms =
                                                    Some(FAULT_TIMEOUT_MS);
                                                record.armed = true;
                                                record.detail = format!(
                                                    "claim key held by another session; the target's statement_timeout is {FAULT_TIMEOUT_MS} ms"
                                                );
                                            }
                                            _ => {}
                                        }
                                    }
                                }
                            }
                        }
                    }
                    (_, None) => record.detail = "not injected: the step has no deliveries".into(),
                }
                history.faults.push(record);
            }
            let outcomes = self
                .run_step(&messages, plan.concurrency, held, &mut history)
                .await?;
            for (position, outcome) in outcomes.into_iter().enumerate() {
                history.deliveries.push(DeliveryRecord {
                    step,
                    position,
                    message: deliveries[position],
                    outcome,
                    redelivered: None,
                });
            }
            if *fault == Some(StepFault::ServerCrash)
                && let Some(server) = self.target.server().filter(|_| self.target.can_crash())
            {
                // Right after the step's last commit: an acknowledged commit that is not
                // durable is lost here.
                self.crash(server).await?;
                if let Some(record) = history.faults.last_mut() {
                    record.delivered = true;
                    record.detail = "server crashed (immediate stop) right after the step and restarted; the worker's pool was rebuilt".into();
                }
            }
        }
        // A queue redelivers what was never acknowledged: resolve every unknown outcome.
        for i in 0..history.deliveries.len() {
            if matches!(history.deliveries[i].outcome, Outcome::Unknown { .. }) {
                let message = &plan.messages[history.deliveries[i].message];
                history.deliveries[i].redelivered = Some(self.worker.execute(message).await);
            }
        }
        history.elapsed = started.elapsed();
        Ok(history)
    }

    /// Whether a held-key fault can land on message `m`: its tenant exists and no earlier
    /// delivery committed its request.
    fn can_land(&self, plan: &Plan, history: &History, m: usize) -> bool {
        let Some(key) = plan.claim_key(m) else {
            return false;
        };
        matches!(plan.tenants[plan.message_tenant[m]].0, TenantSpec::Existing)
            && !history
                .deliveries
                .iter()
                .any(|d| d.committed() && plan.claim_key(d.message).as_ref() == Some(&key))
    }

    async fn crash(&mut self, server: &Server) -> Result<()> {
        server.crash_and_restart().await?;
        // The endpoint may have changed (a container's host port does): build a new pool.
        self.worker = Arc::new(Self::connect(self.target, &self.config).await?);
        Ok(())
    }

    /// Run one step's messages concurrently. With a held claim key, the fault's target runs
    /// first, alone until its transaction is open, so it reaches the held key before any other
    /// delivery of the step can take a connection or commit the key, whatever the step's
    /// concurrency and pool size; the key is released once the target finished (timeouts) or
    /// was terminated, and the fault record says whether it landed as planned.
    async fn run_step(
        &self,
        messages: &[TaskMessage],
        concurrency: usize,
        held: Option<Held>,
        history: &mut History,
    ) -> Result<Vec<Outcome>> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut set = JoinSet::new();
        // Each delivery takes its slot only after the one spawned before it took its own, so
        // deliveries start in the order they were spawned, whichever worker thread polls first:
        // a seed runs a step's deliveries in the same order every time.
        let mut turn: Option<oneshot::Receiver<()>> = None;
        let mut spawn =
            |set: &mut JoinSet<(usize, Outcome)>, i: usize, done: Option<oneshot::Sender<()>>| {
                let worker = Arc::clone(&self.worker);
                let message = messages[i].clone();
                let permits = Arc::clone(&permits);
                let previous = turn.take();
                let (started, next) = oneshot::channel::<()>();
                turn = Some(next);
                set.spawn(async move {
                    if let Some(previous) = previous {
                        let _ = previous.await;
                    }
                    let _permit = permits
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    let _ = started.send(());
                    let outcome = worker.execute(&message).await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    (i, outcome)
                });
            };
        let target = held.as_ref().map(|h| h.target);
        let mut landing = None;
        if let Some(held) = &held {
            let (tx, done) = oneshot::channel();
            spawn(&mut set, held.target, Some(tx));
            let oracle = Server::connect_with(&self.target.config(Role::Superuser).await?).await?;
            let name = messages[held.target].task_id.clone();
            let mut done = done;
            let running = tokio::select! {
                seen = wait_until_running(&oracle, &name, MAX_HOLD) => Some(seen?),
                _ = &mut done => None,
            };
            landing = Some((oracle, name, done, running));
        }
        for i in (0..messages.len()).filter(|&i| Some(i) != target) {
            spawn(&mut set, i, None);
        }
        if let (Some(held), Some((oracle, name, done, running))) = (held, landing) {
            let record = history.faults.last_mut();
            if held.terminate {
                let landed = terminate_when_waiting(&oracle, &name, MAX_HOLD).await?;
                if let Some(record) = record {
                    record.delivered = landed;
                    record.detail = if landed {
                        "the target blocked on a claim key held by another session; its backend was terminated mid-transaction".into()
                    } else {
                        "not injected: the target never blocked on the held key".into()
                    };
                }
            } else {
                // The key is held until the target's transaction ends (its DLQ write may need
                // a connection the step's other deliveries hold while they wait on the key): if
                // it ended while the key was held, its claim met the key.
                let landed = match running {
                    // The whole task ended before it was even seen.
                    None => true,
                    Some(Some(running)) => wait_until_ended(&oracle, &running, MAX_HOLD).await?,
                    Some(None) => tokio::time::timeout(MAX_HOLD, done).await.is_ok(),
                };
                if let Some(record) = record {
                    record.delivered = landed;
                    if !landed {
                        record.detail = "not landed: the target had not ended when its held claim key was released; it ran on with its timeout armed".into();
                    }
                }
            }
            held.claim.release().await?;
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; messages.len()];
        while let Some(joined) = set.join_next().await {
            let (i, outcome) =
                joined.map_err(|e| Error::provisioning(format!("a worker task panicked: {e}")))?;
            outcomes[i] = Some(outcome);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every delivery reports"))
            .collect())
    }
}
