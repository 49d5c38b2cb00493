//! What one task execution ended as, and how failures are classified.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The DLQ's `error_type`: a failure's class, from its SQLSTATE or kind, never its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Missing or malformed tenant id (bad input).
    Validation,
    /// An error the database raised (constraint, privilege, RLS, ...).
    Database,
    /// Statement or lock timeout, or a cancelled query (57014, 55P03).
    Timeout,
    /// The connection was lost or the backend terminated (08xxx, 57P01-57P03, closed).
    Connection,
    /// An error raised by the task itself.
    Application,
}

impl ErrorClass {
    /// The DLQ `error_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "validation_error",
            Self::Database => "database_error",
            Self::Timeout => "timeout_error",
            Self::Connection => "connection_error",
            Self::Application => "application_error",
        }
    }

    /// Classify a database client error by SQLSTATE, or as a lost connection when the server
    /// gave none.
    pub fn of_db_error(err: &tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(code) = err.code() else {
            return Self::Connection;
        };
        if [SqlState::QUERY_CANCELED, SqlState::LOCK_NOT_AVAILABLE].contains(code) {
            Self::Timeout
        } else if code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
        {
            Self::Connection
        } else {
            Self::Database
        }
    }

    /// Whether retrying can help: bad input never gets better.
    pub fn is_retryable(self) -> bool {
        self != Self::Validation
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt: its class, SQLSTATE, message, and the step that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The class.
    pub class: ErrorClass,
    /// The SQLSTATE when the database raised it.
    pub sqlstate: Option<String>,
    /// The step of the execution that failed (`claim`, `rollup`, `commit`, ...).
    pub step: String,
    /// The message.
    pub message: String,
}

impl Failure {
    /// A failure of `class` at `step`.
    pub fn new(class: ErrorClass, step: &str, message: impl Into<String>) -> Self {
        Self {
            class,
            sqlstate: None,
            step: step.into(),
            message: message.into(),
        }
    }

    /// A failure from a database client error at `step`.
    pub fn from_db(step: &str, err: &tokio_postgres::Error) -> Self {
        Self {
            class: ErrorClass::of_db_error(err),
            sqlstate: err.code().map(|c| c.code().to_string()),
            step: step.into(),
            message: crate::error::describe_db_error(err),
        }
    }

    /// Whether the connection failed before the attempt ran any statement of its task (it
    /// could not be drawn from the pool, preparing its statements or BEGIN failed on it): the
    /// task did nothing yet, and running it on a fresh connection is not a retry.
    pub fn before_any_statement(&self) -> bool {
        self.class == ErrorClass::Connection
            && matches!(self.step.as_str(), "connect" | "prepare" | "begin")
    }

    /// Whether no connection could be opened because the server did not accept it (it is
    /// down or restarting): trying again later can help, and nothing of the task ran.
    pub fn server_unreachable(&self) -> bool {
        self.class == ErrorClass::Connection && self.step == "connect"
    }

    /// Whether the connection was lost during COMMIT, with no answer from the server: the
    /// transaction may or may not have committed.
    pub fn lost_commit(&self) -> bool {
        self.class == ErrorClass::Connection && self.sqlstate.is_none() && self.step == "commit"
    }

    /// The DLQ `exception_class`: the SQLSTATE when there is one, else the class.
    pub fn exception_class(&self) -> String {
        match &self.sqlstate {
            Some(code) => format!("PostgresError[{code}]"),
            None => match self.class {
                ErrorClass::Validation => "ValidationError".into(),
                ErrorClass::Application => "ApplicationError".into(),
                ErrorClass::Timeout => "TimeoutError".into(),
                ErrorClass::Connection => "ConnectionError".into(),
                ErrorClass::Database => "DatabaseError".into(),
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.class, self.step, self.message)
    }
}

/// What one execution of a task ended as: the history the invariants are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The transaction committed.
    Committed {
        /// The audit row.
        call_id: Uuid,
        /// The job row, for investigation and budget optimization.
        job_id: Option<Uuid>,
        /// Attempts made (1 = no retry).
        attempts: u32,
    },
    /// The request was already claimed: the existing row, nothing written.
    Replayed {
        /// The existing audit row.
        call_id: Uuid,
    },
    /// Every attempt failed and the failure is in the DLQ.
    FailedRecorded {
        /// The DLQ row's id.
        dlq_id: Uuid,
        /// The last attempt's failure.
        failure: Failure,
        /// Retries made after the first attempt.
        retries: u32,
    },
    /// Every attempt failed and the DLQ write failed too: never silent.
    FailedUnrecorded {
        /// The last attempt's failure.
        failure: Failure,
        /// Retries made after the first attempt.
        retries: u32,
        /// Why the DLQ write failed.
        dlq_error: String,
    },
    /// The connection died during COMMIT: the task may or may not have committed.
    Unknown {
        /// What happened.
        detail: String,
    },
}

impl Outcome {
    /// The outcome's kind as a stable lowercase word.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Committed { .. } => "committed",
            Self::Replayed { .. } => "replayed",
            Self::FailedRecorded { .. } => "failed_recorded",
            Self::FailedUnrecorded { .. } => "failed_unrecorded",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// The final failure, for failed outcomes.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Self::FailedRecorded { failure, .. } | Self::FailedUnrecorded { failure, .. } => {
                Some(failure)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_have_the_dlq_strings() {
        assert_eq!(ErrorClass::Validation.as_str(), "validation_error");
        assert_eq!(ErrorClass::Database.as_str(), "database_error");
        assert!(!ErrorClass::Validation.is_retryable());
        assert!(ErrorClass::Database.is_retryable());
    }

    #[test]
    fn exception_class_prefers_the_sqlstate() {
        let mut f = Failure::new(ErrorClass::Database, "claim", "permission denied");
        assert_eq!(f.exception_class(), "DatabaseError");
        f.sqlstate = Some("42501".into());
        assert_eq!(f.exception_class(), "PostgresError[42501]");
    }

    #[test]
    fn only_a_connection_lost_before_any_statement_is_not_a_retry() {
        assert!(
            Failure::new(ErrorClass::Connection, "begin", "connection closed")
                .before_any_statement()
        );
        assert!(Failure::new(ErrorClass::Connection, "connect", "refused").before_any_statement());
        assert!(Failure::new(ErrorClass::Connection, "prepare", "closed").before_any_statement());
        assert!(
            !Failure::new(ErrorClass::Connection, "claim", "terminated").before_any_statement()
        );
        assert!(!Failure::new(ErrorClass::Database, "begin", "x").before_any_statement());
    }

    #[test]
    fn only_a_refused_connection_is_an_unreachable_server_and_only_a_silent_commit_is_lost() {
        assert!(Failure::new(ErrorClass::Connection, "connect", "refused").server_unreachable());
        assert!(!Failure::new(ErrorClass::Connection, "begin", "closed").server_unreachable());
        assert!(!Failure::new(ErrorClass::Database, "connect", "28P01").server_unreachable());
        assert!(Failure::new(ErrorClass::Connection, "commit", "closed").lost_commit());
        let mut refused = Failure::new(ErrorClass::Connection, "commit", "terminated");
        refused.sqlstate = Some("57P01".into());
        assert!(!refused.lost_commit(), "the server answered the COMMIT");
        assert!(!Failure::new(ErrorClass::Database, "commit", "40001").lost_commit());
    }
}
