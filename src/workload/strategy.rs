//! Proptest strategies that generate whole workloads.

use std::collections::BTreeSet;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::system::TaskName;
use crate::workload::{FaultKind, MessageSpec, Step, StepFault, TenantSpec, Workload};

/// Bounds of generated workloads and the fault kinds they may contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadShape {
    /// Most tenants in a case (at least 2; the first two always exist).
    pub max_tenants: usize,
    /// Most distinct messages in a case.
    pub max_messages: usize,
    /// Most steps in a case.
    pub max_steps: usize,
    /// Most deliveries in a step.
    pub max_step_deliveries: usize,
    /// Most deliveries of a step running at once.
    pub max_concurrency: usize,
    /// The fault kinds a case may contain.
    pub faults: BTreeSet<FaultKind>,
}

impl Default for WorkloadShape {
    fn default() -> Self {
        Self {
            max_tenants: 4,
            max_messages: 12,
            max_steps: 4,
            max_step_deliveries: 8,
            max_concurrency: 6,
            faults: FaultKind::ALL.into_iter().collect(),
        }
    }
}

impl WorkloadShape {
    /// The same shape without the kinds in `kinds`.
    pub fn without(mut self, kinds: &[FaultKind]) -> Self {
        for k in kinds {
            self.faults.remove(k);
        }
        self
    }

    /// The same shape without the kinds that crash the server (for a server rlsgate does not
    /// own).
    pub fn without_crashes(self) -> Self {
        let crashes: Vec<FaultKind> = FaultKind::ALL.into_iter().filter(|k| k.crashes()).collect();
        self.without(&crashes)
    }

    fn allows(&self, kind: FaultKind) -> bool {
        self.faults.contains(&kind)
    }
}

const MALFORMED: [&str; 5] = [
    "not-a-uuid",
    "",
    "00000000-0000-0000-0000",
    "' OR tenant_id IS NOT NULL --",
    "  ",
];

fn tenant(shape: &WorkloadShape) -> BoxedStrategy<TenantSpec> {
    let mut choices: Vec<(u32, BoxedStrategy<TenantSpec>)> =
        vec![(6, Just(TenantSpec::Existing).boxed())];
    if shape.allows(FaultKind::UnknownTenant) {
        choices.push((1, Just(TenantSpec::Unknown).boxed()));
    }
    if shape.allows(FaultKind::MalformedTenant) {
        choices.push((
            1,
            proptest::sample::select(&MALFORMED[..])
                .prop_map(|raw| TenantSpec::Malformed { raw: raw.into() })
                .boxed(),
        ));
    }
    if shape.allows(FaultKind::MissingTenant) {
        choices.push((1, Just(TenantSpec::Missing).boxed()));
    }
    proptest::strategy::Union::new_weighted(choices).boxed()
}

fn message(shape: &WorkloadShape) -> BoxedStrategy<MessageSpec> {
    let fail_after_claim = if shape.allows(FaultKind::FailAfterClaim) {
        proptest::bool::weighted(0.1).boxed()
    } else {
        Just(false).boxed()
    };
    let dlq_write_failures = if shape.allows(FaultKind::DlqWriteFault) {
        prop_oneof![6 => Just(0u8), 1 => 1..=2u8].boxed()
    } else {
        Just(0u8).boxed()
    };
    (
        0..shape.max_tenants.max(2),
        proptest::sample::select(&TaskName::ALL[..]),
        0..4u8,
        option::weighted(0.3, 0..4u8),
        fail_after_claim,
        dlq_write_failures,
    )
        .prop_map(
            |(tenant, task, correlation, request, fail_after_claim, dlq_write_failures)| {
                MessageSpec {
                    tenant,
                    task,
                    correlation,
                    request,
                    fail_after_claim,
                    dlq_write_failures,
                }
            },
        )
        .boxed()
}

/// A step fault: every kind the shape allows is equally likely (so a crash right after a step,
/// the one that exposes commits acknowledged before they were durable, keeps its share as kinds
/// are added).
fn step_fault(shape: &WorkloadShape) -> Option<BoxedStrategy<StepFault>> {
    let mut choices: Vec<(u32, BoxedStrategy<StepFault>)> = Vec::new();
    if shape.allows(FaultKind::LockTimeout) {
        choices.push((
            1,
            (0..16usize)
                .prop_map(|target| StepFault::LockTimeout { target })
                .boxed(),
        ));
    }
    if shape.allows(FaultKind::StatementTimeout) {
        choices.push((
            1,
            (0..16usize)
                .prop_map(|target| StepFault::StatementTimeout { target })
                .boxed(),
        ));
    }
    if shape.allows(FaultKind::TerminateBackend) {
        choices.push((
            1,
            (0..16usize)
                .prop_map(|target| StepFault::TerminateBackend { target })
                .boxed(),
        ));
    }
    if shape.allows(FaultKind::ServerCrash) {
        choices.push((1, Just(StepFault::ServerCrash).boxed()));
    }
    if shape.allows(FaultKind::CommitReplyLost) {
        choices.push((
            1,
            (0..16usize)
                .prop_map(|target| StepFault::CommitReplyLost { target })
                .boxed(),
        ));
    }
    if shape.allows(FaultKind::CommitRequestLost) {
        choices.push((
            1,
            (0..16usize)
                .prop_map(|target| StepFault::CommitRequestLost { target })
                .boxed(),
        ));
    }
    if shape.allows(FaultKind::CrashMidTransaction) {
        choices.push((
            1,
            (0..16usize)
                .prop_map(|target| StepFault::CrashMidTransaction { target })
                .boxed(),
        ));
    }
    (!choices.is_empty()).then(|| proptest::strategy::Union::new_weighted(choices).boxed())
}

/// Workloads of `shape`: 2 to `max_tenants` tenants (the first two exist), messages over the
/// four tasks with colliding request ids, steps of deliveries with duplicates, a concurrency
/// level and a fault schedule.
pub fn workload(shape: WorkloadShape) -> impl Strategy<Value = Workload> {
    let extra_tenants = vec(tenant(&shape), 0..=shape.max_tenants.saturating_sub(2));
    let tenants = extra_tenants.prop_map(|rest| {
        let mut t = vec![TenantSpec::Existing, TenantSpec::Existing];
        t.extend(rest);
        t
    });
    let messages = vec(message(&shape), 1..=shape.max_messages.max(1));
    let fault = match step_fault(&shape) {
        Some(f) => option::weighted(0.25, f).boxed(),
        None => Just(None).boxed(),
    };
    let step = (vec(0..64usize, 1..=shape.max_step_deliveries.max(1)), fault)
        .prop_map(|(deliveries, fault)| Step { deliveries, fault });
    let steps = vec(step, 1..=shape.max_steps.max(1));
    (tenants, messages, steps, 1..=shape.max_concurrency.max(1)).prop_map(
        |(tenants, messages, steps, concurrency)| Workload {
            tenants,
            messages,
            steps,
            concurrency,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};

    fn runner(seed: u8) -> TestRunner {
        TestRunner::new_with_rng(
            proptest::test_runner::Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
        )
    }

    #[test]
    fn the_same_seed_generates_the_same_workload() {
        let strategy = workload(WorkloadShape::default());
        let a = strategy.new_tree(&mut runner(3)).unwrap().current();
        let b = strategy.new_tree(&mut runner(3)).unwrap().current();
        assert_eq!(a, b);
    }

    #[test]
    fn generated_workloads_cover_every_fault_kind_and_stay_in_shape() {
        let shape = WorkloadShape::default();
        let strategy = workload(shape.clone());
        let mut r = runner(1);
        let mut seen = BTreeSet::new();
        for _ in 0..400 {
            let w = strategy.new_tree(&mut r).unwrap().current();
            assert!((2..=shape.max_tenants).contains(&w.tenants.len()));
            assert!(w.tenants[0].exists() && w.tenants[1].exists());
            assert!(
                w.steps
                    .iter()
                    .all(|s| s.deliveries.len() <= shape.max_step_deliveries)
            );
            seen.extend(w.planned_faults().into_keys());
        }
        assert_eq!(
            seen, shape.faults,
            "every fault kind shows up in 400 workloads"
        );
    }

    #[test]
    fn a_shape_without_crashes_never_plans_one() {
        let shape = WorkloadShape::default().without_crashes();
        let strategy = workload(shape);
        let mut r = runner(2);
        for _ in 0..200 {
            let w = strategy.new_tree(&mut r).unwrap().current();
            assert!(
                !w.planned_faults().keys().any(|k| k.crashes()),
                "{:?}",
                w.planned_faults()
            );
        }
    }

    #[test]
    fn shrinking_drops_faults_and_extra_tenants() {
        let strategy = workload(WorkloadShape::default());
        let mut r = runner(9);
        let mut tree = strategy.new_tree(&mut r).unwrap();
        // Simplify as far as it goes, accepting every simplification (as if every smaller
        // value still failed).
        for _ in 0..10_000 {
            if !tree.simplify() {
                break;
            }
        }
        let minimal = tree.current();
        assert_eq!(minimal.tenants.len(), 2);
        assert_eq!(minimal.messages.len(), 1);
        assert_eq!(minimal.steps.len(), 1);
        assert!(minimal.steps[0].fault.is_none());
        assert_eq!(minimal.concurrency, 1);
        assert!(minimal.planned_faults().is_empty(), "{minimal:?}");
    }
}
