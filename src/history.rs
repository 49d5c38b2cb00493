//! The history of one executed case: what every delivery ended as, and which step faults
//! landed. The history checks of [`crate::invariants`] compare it with the database.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::system::Outcome;
use crate::workload::FaultKind;
use crate::workload::model::FaultFate;

/// One delivery of a message and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The step it ran in.
    pub step: usize,
    /// Its position in the step.
    pub position: usize,
    /// The message delivered (an index into the plan's messages).
    pub message: usize,
    /// What the execution ended as.
    pub outcome: Outcome,
    /// When the outcome was unknown (the connection died during COMMIT), the outcome of the
    /// redelivery the executor made at the end of the case, as a queue would.
    pub redelivered: Option<Outcome>,
}

impl DeliveryRecord {
    /// Whether this delivery committed its request: it ended committed, or its outcome was
    /// unknown and the redelivery found the request committed (a replay).
    pub fn committed(&self) -> bool {
        matches!(self.final_outcome(), Outcome::Committed { .. })
            || matches!(
                (&self.outcome, &self.redelivered),
                (Outcome::Unknown { .. }, Some(Outcome::Replayed { .. }))
            )
    }

    /// The outcome the invariants judge: the redelivery's, if there was one.
    pub fn final_outcome(&self) -> &Outcome {
        self.redelivered.as_ref().unwrap_or(&self.outcome)
    }
}

/// A step fault and whether it landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The step it was aimed at.
    pub step: usize,
    /// Its kind.
    pub kind: FaultKind,
    /// The targeted delivery's message, if the fault had a target.
    pub target: Option<usize>,
    /// The targeted delivery's position in its step.
    pub position: Option<usize>,
    /// Whether the target carried the fault's settings (a timeout fault's timeout, no retry),
    /// whether or not the fault landed.
    #[serde(default)]
    pub armed: bool,
    /// Whether the fault landed as planned (a timeout fault: the target ended while its claim
    /// key was held).
    pub delivered: bool,
    /// What happened, in words.
    pub detail: String,
}

/// The history of a case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Every delivery, in step order.
    pub deliveries: Vec<DeliveryRecord>,
    /// Every step fault.
    pub faults: Vec<FaultRecord>,
    /// Wall time of the execution.
    pub elapsed: Duration,
}

impl History {
    /// Whether a fault of `kind` landed in this case.
    pub fn saw(&self, kind: FaultKind) -> bool {
        self.faults.iter().any(|f| f.kind == kind && f.delivered)
    }

    /// The position of the delivery the fault of step `step` landed on, if it landed on one.
    pub fn landed_at(&self, step: usize) -> Option<usize> {
        self.faults
            .iter()
            .find(|f| f.step == step && f.delivered)
            .and_then(|f| f.position)
    }

    /// The position of the delivery the fault of step `step` was armed on without landing:
    /// it carried the fault's settings, but the held key was released before it ended.
    pub fn armed_not_landed_at(&self, step: usize) -> Option<usize> {
        self.faults
            .iter()
            .find(|f| f.step == step && f.armed && !f.delivered)
            .and_then(|f| f.position)
    }

    /// What the fault of step `step` did, as the model reads it.
    pub fn fault_fate(&self, step: usize) -> FaultFate {
        FaultFate {
            landed_at: self.landed_at(step),
            armed_not_landed_at: self.armed_not_landed_at(step),
        }
    }

    /// The deliveries of message `m`.
    pub fn of_message(&self, m: usize) -> impl Iterator<Item = &DeliveryRecord> {
        self.deliveries.iter().filter(move |d| d.message == m)
    }
}
