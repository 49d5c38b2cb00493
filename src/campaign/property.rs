//! The property stage: proptest's `TestRunner`, its generator seeded so that a seed replays the
//! same cases, driving any strategy on the caller's tokio runtime. Each case is judged by the
//! workload kind; a violated case is recorded and proptest shrinks it; the failure it shrank to
//! is the minimal counterexample.

use std::cell::RefCell;
use std::time::Duration;

use proptest::strategy::Strategy;
use proptest::test_runner::{
    Config as ProptestConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};

use crate::error::{Error, ErrorKind, Result};
use crate::invariants::Observation;
use crate::report::Shard;

/// What one case found: its violations (none when it held) and, when violated, the transcript
/// that shows how.
pub(crate) struct Judged {
    pub(crate) violations: Vec<Observation>,
    pub(crate) transcript: String,
}

impl Judged {
    /// A case that violated nothing.
    pub(crate) fn held() -> Self {
        Self {
            violations: Vec::new(),
            transcript: String::new(),
        }
    }
}

/// A violated case: its input, violations and transcript.
#[derive(Debug, Clone)]
pub(crate) struct Failure<T> {
    pub(crate) input: T,
    pub(crate) violations: Vec<Observation>,
    pub(crate) transcript: String,
}

/// The outcome of a property run.
pub(crate) struct PropertyRun<T> {
    /// Cases executed, shrinking included.
    pub(crate) runs: u64,
    /// The number of the first violated case.
    pub(crate) first_failure: Option<u64>,
    /// The failure proptest shrank to, with its reason.
    pub(crate) minimal: Option<(String, Failure<T>)>,
}

impl<T> PropertyRun<T> {
    /// Generated cases executed, up to and including the first violated one.
    pub(crate) fn cases_run(&self) -> u64 {
        self.first_failure.unwrap_or(self.runs)
    }
}

/// proptest's runner with `config`, its generator seeded by `seed` (the same seed generates the
/// same cases), shrinking bounded by `max_shrink_time`.
pub(crate) fn seeded_runner(
    config: ProptestConfig,
    seed: u64,
    max_shrink_time: Duration,
) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = ProptestConfig {
        // Zero would mean "no limit" to proptest.
        max_shrink_time: u32::try_from(max_shrink_time.as_millis())
            .unwrap_or(u32::MAX)
            .max(1),
        ..config
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Run `runner` over `strategy`, judging each case with `case` on the current tokio runtime;
/// `case` is given the case's number, counted from one. With a `shard`, every case is
/// generated (so case `n` is the same as unsharded) but only the shard's are judged, the
/// others pass unjudged, until one fails: then proptest shrinks it, every shrinking run judged.
/// The first harness error stops the run and is returned; findings are in the [`PropertyRun`].
///
/// # Errors
/// The first `Err` of `case`, or a harness error when proptest aborts.
pub(crate) fn run<S, F>(
    runner: &mut TestRunner,
    strategy: &S,
    shard: Option<Shard>,
    case: F,
) -> Result<PropertyRun<S::Value>>
where
    S: Strategy,
    S::Value: Clone + PartialEq,
    F: AsyncFnMut(u64, &S::Value) -> Result<Judged>,
{
    struct State<T, F> {
        case: F,
        runs: u64,
        first_failure: Option<u64>,
        failures: Vec<Failure<T>>,
        aborted: Option<Error>,
    }
    let state = RefCell::new(State {
        case,
        runs: 0,
        first_failure: None,
        failures: Vec::new(),
        aborted: None,
    });
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(strategy, |input| {
            let mut st = state.borrow_mut();
            if super::stop_requested() {
                // Rejected, not failed: proptest stops after its reject limit without shrinking.
                st.aborted.get_or_insert_with(|| {
                    Error::new(ErrorKind::Interrupted, "the run was asked to stop")
                });
                return Err(TestCaseError::reject("stopping"));
            }
            if st.aborted.is_some() {
                return Ok(());
            }
            st.runs += 1;
            let n = st.runs;
            if st.first_failure.is_none() && shard.is_some_and(|s| !s.includes(n)) {
                return Ok(());
            }
            match handle.block_on((st.case)(n, &input)) {
                Err(e) => {
                    st.aborted = Some(e);
                    Ok(())
                }
                Ok(judged) if judged.violations.is_empty() => Ok(()),
                Ok(Judged {
                    violations,
                    transcript,
                }) => {
                    st.first_failure.get_or_insert(n);
                    let reason = violations[0].to_string();
                    st.failures.push(Failure {
                        input,
                        violations,
                        transcript,
                    });
                    Err(TestCaseError::fail(reason))
                }
            }
        })
    });
    let st = state.into_inner();
    if let Some(e) = st.aborted {
        return Err(e);
    }
    let minimal = match result {
        Ok(()) => None,
        Err(TestError::Fail(reason, minimal)) => {
            minimal_failure(st.failures, &minimal).map(|f| (reason.to_string(), f))
        }
        Err(TestError::Abort(reason)) => {
            return Err(Error::provisioning(format!(
                "the property runner aborted: {reason}"
            )));
        }
    };
    Ok(PropertyRun {
        runs: st.runs,
        first_failure: st.first_failure,
        minimal,
    })
}

/// The recorded failure of the `minimal` input proptest shrank to (the last failure, if that
/// input was not recorded).
fn minimal_failure<T: PartialEq>(mut failures: Vec<Failure<T>>, minimal: &T) -> Option<Failure<T>> {
    let at = failures
        .iter()
        .rposition(|f| &f.input == minimal)
        .or(failures.len().checked_sub(1))?;
    Some(failures.swap_remove(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(input: u32, transcript: &str) -> Failure<u32> {
        Failure {
            input,
            violations: Vec::new(),
            transcript: transcript.into(),
        }
    }

    #[test]
    fn the_minimal_failure_is_the_last_one_recorded_for_that_input_else_the_last() {
        let failures = vec![
            failure(3, "a"),
            failure(1, "b"),
            failure(1, "c"),
            failure(2, "d"),
        ];
        assert_eq!(
            minimal_failure(failures.clone(), &1).unwrap().transcript,
            "c"
        );
        assert_eq!(minimal_failure(failures, &9).unwrap().transcript, "d");
        assert!(minimal_failure(Vec::<Failure<u32>>::new(), &1).is_none());
    }

    /// The inputs `run` judges over 12 cases of `0..1000`, with `shard`, failing on `fails`.
    fn judged(shard: Option<Shard>, fails: Option<u64>) -> (Vec<(u64, u64)>, Option<u64>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut runner = seeded_runner(
                ProptestConfig {
                    cases: 12,
                    max_shrink_iters: 3,
                    failure_persistence: None,
                    ..ProptestConfig::default()
                },
                7,
                Duration::from_secs(5),
            );
            let mut seen = Vec::new();
            let run = run(&mut runner, &(0u64..1000), shard, async |n, v| {
                seen.push((n, *v));
                Ok(if Some(n) == fails {
                    Judged {
                        violations: vec![Observation::violated(
                            crate::invariants::InvariantId::TenantIsolation,
                            "READ",
                            "x",
                        )],
                        transcript: String::new(),
                    }
                } else {
                    Judged::held()
                })
            })
            .unwrap();
            (seen, run.first_failure)
        })
    }

    #[test]
    fn shards_judge_disjoint_cases_whose_union_is_the_unsharded_run() {
        let (all, _) = judged(None, None);
        assert_eq!(all.len(), 12);
        let one = judged(Some(Shard::new(1, 2).unwrap()), None).0;
        let two = judged(Some(Shard::new(2, 2).unwrap()), None).0;
        assert_eq!(
            one.iter().map(|c| c.0).collect::<Vec<_>>(),
            [1, 3, 5, 7, 9, 11]
        );
        let mut union = [one, two].concat();
        union.sort();
        assert_eq!(union, all, "the same case numbers with the same inputs");
    }

    #[test]
    fn a_shard_shrinks_its_failure_within_itself() {
        let (seen, first) = judged(Some(Shard::new(2, 3).unwrap()), Some(5));
        assert_eq!(first, Some(5));
        let numbers: Vec<u64> = seen.iter().map(|c| c.0).collect();
        assert_eq!(numbers[..2], [2, 5]);
        assert!(numbers.len() > 2, "shrinking runs are judged: {numbers:?}");
    }

    #[test]
    fn the_same_seed_generates_the_same_cases() {
        use proptest::strategy::ValueTree;
        let values = |seed| {
            let mut runner = seeded_runner(ProptestConfig::default(), seed, Duration::ZERO);
            (0..5)
                .map(|_| (0u64..1_000_000).new_tree(&mut runner).unwrap().current())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(7), values(7));
        assert_ne!(values(7), values(8));
    }
}
