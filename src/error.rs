//! The one library error: harness failures, never findings.
//!
//! An invariant that does not hold is data (a verdict), not an `Err`. An [`Error`] means the
//! harness itself could not do its job: no backend, a bad setting, a migration that failed, a
//! connection that was refused. Messages are lowercase, put the context first and name the fix.

use std::fmt;

/// What kind of harness failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting (environment variable, flag, file name) is malformed or unknown.
    Config,
    /// A PostgreSQL server could not be started, reached or stopped.
    Provisioning,
    /// A migration could not be loaded or applied.
    Migration,
    /// A statement the harness needed failed.
    Database,
    /// A local file or process operation failed.
    Io,
    /// The run was asked to stop (a signal) before it finished.
    Interrupted,
}

/// A harness failure: its kind, a message that names the fix, and the underlying cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message` and no cause.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error with `source` recorded as its cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn provisioning(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Provisioning, message)
    }

    pub(crate) fn migration(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Migration, message)
    }

    pub(crate) fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {err}")).with_source(err)
    }

    /// A failed statement: `context` says what the harness was doing.
    pub(crate) fn database(context: impl fmt::Display, err: tokio_postgres::Error) -> Self {
        let detail = describe_db_error(&err);
        Self::new(ErrorKind::Database, format!("{context}: {detail}")).with_source(err)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when a server could not be started, reached or stopped.
    pub fn is_provisioning(&self) -> bool {
        self.kind == ErrorKind::Provisioning
    }

    /// True when a setting is malformed or unknown.
    pub fn is_config(&self) -> bool {
        self.kind == ErrorKind::Config
    }

    /// True when a migration could not be loaded or applied.
    pub fn is_migration(&self) -> bool {
        self.kind == ErrorKind::Migration
    }

    /// The SQLSTATE of the database error behind this one, if there is one.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.source
            .as_deref()
            .and_then(|e| e.downcast_ref::<tokio_postgres::Error>())
            .and_then(tokio_postgres::Error::code)
    }

    /// The message, without the cause chain.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A one-line description of a database error: the server's message and SQLSTATE when the
/// server answered, the client's error otherwise.
pub(crate) fn describe_db_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_predicates_follow_the_kind() {
        let e = Error::provisioning("docker is not reachable; start the daemon");
        assert!(e.is_provisioning());
        assert!(!e.is_config());
        assert_eq!(e.to_string(), "docker is not reachable; start the daemon");
        assert!(e.sqlstate().is_none());
    }
}
