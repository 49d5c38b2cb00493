//! The executor: runs a [`Plan`] over the worker's real `app_user` pool, step by step, each
//! step's deliveries as concurrent tokio tasks, injecting the step faults, and records the
//! [`History`]. The worker's connections go through a relay on 127.0.0.1 (`faults::relay`),
//! which cuts a connection at its COMMIT for the lost-commit faults, and gives the worker one
//! address that outlives a server restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::faults::relay::{Arm, ArmState, CutAt, Relay, Upstream};
use crate::faults::{
    HeldClaim, HeldRollups, RunningTransaction, terminate_when_waiting, wait_until_blocked,
    wait_until_ended, wait_until_running,
};
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

/// A claim key held for a step fault.
struct Held {
    claim: HeldClaim,
    terminate: bool,
}

/// How a step fault makes its target run first, alone, until the fault has taken hold of it.
enum Lead {
    /// Another session holds the target's claim key (timeouts, terminate-backend).
    Held(Held),
    /// The relay cuts the target's connection at its COMMIT.
    Cut(Arm),
    /// Another session holds the rollup table locked, so the target pauses mid-transaction
    /// (its claim written) while the server crashes.
    Crash(HeldRollups),
}

/// What is left of a lead once the step's other deliveries started.
#[allow(clippy::large_enum_variant)] // one per step; boxing buys nothing
enum Landing {
    /// The held key: terminate the target or wait until it ended, then release the key.
    Held {
        held: Held,
        oracle: Client,
        name: String,
        done: oneshot::Receiver<()>,
        /// `None`: the target ended before it was seen; `Some(None)`: never seen running.
        running: Option<Option<RunningTransaction>>,
    },
    /// The armed cut: whether it fired is known once every delivery ended.
    Cut(Arm),
    /// Nothing more to do.
    Done,
}

/// Runs plans against a target with one worker. The worker's connections go through a relay,
/// so they reach the server at one address even after a crash moved it.
pub struct Executor<'a> {
    target: &'a Target,
    relay: Option<Relay>,
    worker: Arc<Worker>,
}

impl std::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", self.worker.config())
            .field("relay", &self.relay)
            .finish()
    }
}

impl<'a> Executor<'a> {
    /// An executor whose worker logs in to `target` with `config`, through a relay on
    /// 127.0.0.1 when the login names a host (without one, nothing can cut a COMMIT and the
    /// lost-commit faults are recorded as not injected).
    ///
    /// # Errors
    /// As [`Target::config`] and [`Worker::connect_with`]; an I/O error when the relay cannot
    /// listen; a provisioning error for a server rlsgate may crash whose login names no host.
    pub async fn new(target: &'a Target, config: WorkerConfig) -> Result<Self> {
        let login = target.config(Worker::role_for(&config)).await?;
        let relay = match Upstream::of(&login) {
            Some(upstream) => Some(Relay::start(upstream).await?),
            None if target.can_crash() => {
                return Err(Error::provisioning(
                    "the worker's login names no host, so its connections cannot ride out a server restart",
                ));
            }
            None => None,
        };
        let login = match &relay {
            Some(relay) => relay.login(&login),
            None => login,
        };
        let worker = Arc::new(Worker::connect_with(login, config)?);
        Ok(Self {
            target,
            relay,
            worker,
        })
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
            let lead = match fault {
                Some(fault) => {
                    self.prepare(plan, &mut history, step, *fault, &mut messages)
                        .await?
                }
                None => None,
            };
            let outcomes = self
                .run_step(&messages, plan.concurrency, lead, &mut history)
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
            if *fault == Some(StepFault::ServerCrash) && self.target.can_crash() {
                // Right after the step's last commit: an acknowledged commit that is not
                // durable is lost here.
                self.crash().await?;
                if let Some(record) = history.faults.last_mut() {
                    record.delivered = true;
                    record.detail = "server crashed (immediate stop) right after the step and restarted; the worker's connections died with it and are replaced as tasks draw them".into();
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

    /// Record the step's fault and make it ready: aim it at the first delivery, from the
    /// planned target on, that it can land on, and arm it. Returns the target's position and
    /// how it leads the step, when the fault has a target to lead with.
    async fn prepare(
        &self,
        plan: &Plan,
        history: &mut History,
        step: usize,
        fault: StepFault,
        messages: &mut [TaskMessage],
    ) -> Result<Option<(usize, Lead)>> {
        let deliveries = &plan.steps[step].0;
        let target = fault.target(deliveries.len()).map(|t| {
            (0..deliveries.len())
                .map(|i| (t + i) % deliveries.len())
                .find(|&p| can_land(plan, history, deliveries[p], fault))
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
        let lead = match (fault, target) {
            (StepFault::ServerCrash, _) => {
                // Injected right after the step's deliveries.
                if !self.target.can_crash() {
                    record.detail = "not injected: rlsgate does not own this server".into();
                }
                None
            }
            (_, None) => {
                record.detail = "not injected: the step has no deliveries".into();
                None
            }
            (_, Some(t)) => self
                .aim(
                    plan,
                    history,
                    fault,
                    deliveries[t],
                    &mut messages[t],
                    &mut record,
                )
                .await?
                .map(|lead| (t, lead)),
        };
        history.faults.push(record);
        Ok(lead)
    }

    /// Arm `fault` on `message` (message `m` of the plan), saying in `record` why not when it
    /// cannot land.
    async fn aim(
        &self,
        plan: &Plan,
        history: &History,
        fault: StepFault,
        m: usize,
        message: &mut TaskMessage,
        record: &mut FaultRecord,
    ) -> Result<Option<Lead>> {
        let key = plan
            .claim_key(m)
            .filter(|_| matches!(plan.tenants[plan.message_tenant[m]].0, TenantSpec::Existing));
        let Some(key) = key else {
            record.detail = "not injected: the target's tenant does not exist".into();
            return Ok(None);
        };
        if fault.needs_a_commit() {
            let why_not = if history.committed(plan, &key) {
                Some("the target's request was already committed")
            } else if message.faults.fail_after_claim {
                Some("the target fails after its claim, so it never reaches COMMIT")
            } else if fault.kind().crashes() && !self.target.can_crash() {
                Some("rlsgate does not own this server")
            } else if self.relay.is_none() {
                Some("the worker's connections do not go through the relay")
            } else {
                None
            };
            if let Some(why_not) = why_not {
                record.detail = format!("not injected: {why_not}");
                return Ok(None);
            }
        }
        let oracle = self.target.config(Role::Superuser).await?;
        let lead = match (fault, &self.relay) {
            (
                StepFault::CommitReplyLost { .. } | StepFault::CommitRequestLost { .. },
                Some(relay),
            ) => {
                let (at, what) = match fault {
                    StepFault::CommitReplyLost { .. } => (
                        CutAt::Reply,
                        "after the server's reply to its COMMIT (the server commits, the worker never hears)",
                    ),
                    _ => (
                        CutAt::Request,
                        "as it sends COMMIT (the server never gets it and rolls back)",
                    ),
                };
                record.detail = format!("the relay cuts the target's connection {what}");
                Lead::Cut(relay.arm(&message.task_id, at))
            }
            (StepFault::CrashMidTransaction { .. }, _) => {
                record.detail = "the rollup table is held locked, so the target pauses mid-transaction, its claim written".into();
                Lead::Crash(HeldRollups::hold(&oracle).await?)
            }
            (StepFault::LockTimeout { .. } | StepFault::StatementTimeout { .. }, _)
            | (StepFault::TerminateBackend { .. }, _) => {
                let Some(claim) = HeldClaim::hold(&oracle, &key).await? else {
                    record.detail =
                        "not injected: the target's request was already committed".into();
                    return Ok(None);
                };
                let terminate = matches!(fault, StepFault::TerminateBackend { .. });
                if !terminate {
                    // One attempt: a retry would queue for a pooled connection behind
                    // deliveries blocked on the key.
                    message.retries = Some(0);
                    let name = if let StepFault::LockTimeout { .. } = fault {
                        message.faults.lock_timeout_ms = Some(FAULT_TIMEOUT_MS);
                        "lock_timeout"
                    } else {
                        message.faults.statement_timeout_ms = Some(FAULT_TIMEOUT_MS);
                        "statement_timeout"
                    };
                    record.detail = format!(
                        "claim key held by another session; the target's {name} is {FAULT_TIMEOUT_MS} ms"
                    );
                }
                Lead::Held(Held { claim, terminate })
            }
            // A crash after the step has no target; a cut needs the relay (checked above).
            (StepFault::ServerCrash, _) | (_, None) => return Ok(None),
        };
        record.armed = !matches!(
            lead,
            Lead::Held(Held {
                terminate: true,
                ..
            })
        );
        Ok(Some(lead))
    }

    /// Crash the server (immediate stop) and restart it. The worker is not rebuilt: its
    /// connections go through the relay, which forwards to wherever the restarted server
    /// answers (a container's port changes) and cuts the connections the crash killed.
    async fn crash(&self) -> Result<()> {
        let (Some(server), Some(relay)) = (self.target.server(), &self.relay) else {
            return Ok(());
        };
        let crashed = relay.crashing();
        server.crash_and_restart().await?;
        let login = self
            .target
            .config(Worker::role_for(self.worker.config()))
            .await?;
        let upstream = Upstream::of(&login).ok_or_else(|| {
            Error::provisioning("the restarted server's login names no host for the relay")
        })?;
        relay.restarted(upstream, crashed);
        Ok(())
    }

    /// Run one step's messages concurrently. With a fault that leads, the target runs first,
    /// alone until the fault has taken hold of it (its transaction is open on a held key, it
    /// wrote its claim under an armed cut, or it paused mid-transaction and the server
    /// crashed), so the fault lands on it whatever the step's concurrency and pool size; the
    /// fault record says whether it landed.
    async fn run_step(
        &self,
        messages: &[TaskMessage],
        concurrency: usize,
        lead: Option<(usize, Lead)>,
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
        let target = lead.as_ref().map(|(t, _)| *t);
        let mut landing = Landing::Done;
        if let Some((target, lead)) = lead {
            let (tx, done) = oneshot::channel();
            spawn(&mut set, target, Some(tx));
            landing = self
                .take_hold(lead, &messages[target].task_id, done, history)
                .await?;
        }
        for i in (0..messages.len()).filter(|&i| Some(i) != target) {
            spawn(&mut set, i, None);
        }
        let arm = match landing {
            Landing::Held {
                held,
                oracle,
                name,
                done,
                running,
            } => {
                land_held(held, &oracle, &name, done, running, history).await?;
                None
            }
            Landing::Cut(arm) => Some(arm),
            Landing::Done => None,
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; messages.len()];
        while let Some(joined) = set.join_next().await {
            let (i, outcome) =
                joined.map_err(|e| Error::provisioning(format!("a worker task panicked: {e}")))?;
            outcomes[i] = Some(outcome);
        }
        if let (Some(arm), Some(record)) = (arm, history.faults.last_mut()) {
            record.delivered = arm.fired();
            if !record.delivered {
                record.detail = "not landed: the target's transaction ended without a COMMIT to cut (it replayed, or failed first); its connection was left alone".into();
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every delivery reports"))
            .collect())
    }

    /// The lead's first part, while the target (named `name`, `done` when it ended) runs
    /// alone: wait until the fault has hold of it; a mid-transaction crash happens here.
    async fn take_hold(
        &self,
        lead: Lead,
        name: &str,
        mut done: oneshot::Receiver<()>,
        history: &mut History,
    ) -> Result<Landing> {
        match lead {
            Lead::Held(held) => {
                let oracle =
                    Server::connect_with(&self.target.config(Role::Superuser).await?).await?;
                let running = tokio::select! {
                    seen = wait_until_running(&oracle, name, MAX_HOLD) => Some(seen?),
                    _ = &mut done => None,
                };
                Ok(Landing::Held {
                    held,
                    oracle,
                    name: name.to_string(),
                    done,
                    running,
                })
            }
            Lead::Cut(mut arm) => {
                // The others start once the target's claim is written (they may queue on it),
                // or once it ended without one.
                tokio::select! {
                    _ = arm.wrote() => {}
                    _ = &mut done => {}
                    _ = tokio::time::sleep(MAX_HOLD) => {}
                }
                if matches!(arm.state(), ArmState::Armed | ArmState::Marked) {
                    // Too slow to write its claim: disarm before a duplicate delivery (same task
                    // id, so the same application_name) could be the transaction the relay
                    // marks. The fault did not land.
                    drop(arm);
                    if let Some(record) = history.faults.last_mut() {
                        record.detail = "not landed: the target had not written its claim when the step's other deliveries started; the cut was disarmed".into();
                    }
                    return Ok(Landing::Done);
                }
                Ok(Landing::Cut(arm))
            }
            Lead::Crash(rollups) => {
                let oracle =
                    Server::connect_with(&self.target.config(Role::Superuser).await?).await?;
                let blocked = tokio::select! {
                    blocked = wait_until_blocked(&oracle, name, MAX_HOLD) => blocked?,
                    _ = &mut done => false,
                };
                drop(oracle);
                let record = history.faults.last_mut();
                if blocked {
                    // The held lock dies with the server; the target's connection too, and its
                    // retry waits for the restarted server.
                    self.crash().await?;
                    drop(rollups);
                    if let Some(record) = record {
                        record.delivered = true;
                        record.detail = "the server crashed (immediate stop) while the target was mid-transaction, its claim written and waiting on a lock, and restarted; the worker rode the restart out".into();
                    }
                } else {
                    rollups.release().await?;
                    if let Some(record) = record {
                        record.detail = "not landed: the target never paused mid-transaction (it replayed, or failed before its rollup); the server was not crashed".into();
                    }
                }
                Ok(Landing::Done)
            }
        }
    }
}

/// The rest of a held-key fault once the step's other deliveries started: terminate the target
/// while it waits on the key, or wait until its transaction ended; release the key, and say in
/// the step's record whether the fault landed.
async fn land_held(
    held: Held,
    oracle: &Client,
    name: &str,
    done: oneshot::Receiver<()>,
    running: Option<Option<RunningTransaction>>,
    history: &mut History,
) -> Result<()> {
    let record = history.faults.last_mut();
    if held.terminate {
        let landed = terminate_when_waiting(oracle, name, MAX_HOLD).await?;
        if let Some(record) = record {
            record.delivered = landed;
            record.detail = if landed {
                "the target blocked on a claim key held by another session; its backend was terminated mid-transaction".into()
            } else {
                "not injected: the target never blocked on the held key".into()
            };
        }
    } else {
        // The key is held until the target's transaction ends (its DLQ write may need a
        // connection the step's other deliveries hold while they wait on the key): if it ended
        // while the key was held, its claim met the key.
        let landed = match running {
            // The whole task ended before it was even seen.
            None => true,
            Some(Some(running)) => wait_until_ended(oracle, &running, MAX_HOLD).await?,
            Some(None) => tokio::time::timeout(MAX_HOLD, done).await.is_ok(),
        };
        if let Some(record) = record {
            record.delivered = landed;
            if !landed {
                record.detail = "not landed: the target had not ended when its held claim key was released; it ran on with its timeout armed".into();
            }
        }
    }
    held.claim.release().await
}

/// Whether `fault` can land on message `m`: its tenant exists, no earlier delivery committed
/// its request, and, for a fault that needs the target's COMMIT, it does not fail after its
/// claim.
fn can_land(plan: &Plan, history: &History, m: usize, fault: StepFault) -> bool {
    let Some(key) = plan.claim_key(m) else {
        return false;
    };
    matches!(plan.tenants[plan.message_tenant[m]].0, TenantSpec::Existing)
        && !history.committed(plan, &key)
        && !(fault.needs_a_commit() && plan.messages[m].faults.fail_after_claim)
}
