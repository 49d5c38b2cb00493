//! How the database ended a statement it did not run: every outcome classified once, by
//! SQLSTATE through `tokio_postgres::error::SqlState`, into a small [`Refusal`] kind, never by
//! message text at the call sites. Probes, seeding and the DML property match on the kind.

use std::fmt;

use tokio_postgres::error::SqlState;

/// Why the database did not run a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Insufficient privilege (42501 on a GRANT the role lacks, or a role it may not use).
    Privilege,
    /// Row-level security refused the row (42501 "new row violates row-level security").
    Policy,
    /// An integrity constraint (SQLSTATE class 23).
    Constraint(Constraint),
    /// A statement or lock timeout, a cancel, a deadlock or a serialization failure (57014,
    /// 55P03, 40P01, 40001): the outcome was decided by timing, not by the thing under test.
    Timeout,
    /// The connection was lost or the backend terminated (class 08, 57P01-57P03, or no
    /// SQLSTATE at all).
    LostConnection,
    /// A value that does not fit its column: too long, out of range, not of its type
    /// (SQLSTATE class 22, data exception).
    InvalidValue,
    /// Anything else: a syntax error, an undefined object, a feature not supported.
    Other,
}

/// The integrity constraint a statement broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Constraint {
    /// 23505.
    Unique,
    /// 23503.
    ForeignKey,
    /// 23502.
    NotNull,
    /// 23514.
    Check,
    /// Any other of class 23 (exclusion, restrict).
    Other,
}

/// A statement the database did not run: the kind, the SQLSTATE (when the server gave one),
/// the server's message, and the column and constraint it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What kind of refusal.
    pub kind: Refusal,
    /// The SQLSTATE, when the server gave one.
    pub sqlstate: Option<String>,
    /// The server's message (the client's error, when the server gave none).
    pub message: String,
    /// The message with its SQLSTATE, as the evidence shows it (`Display` prints it).
    pub described: String,
    /// The column the error names (a NOT NULL violation's).
    pub column: Option<String>,
    /// The constraint the row broke, for a [`Refusal::Constraint`].
    pub constraint: Option<String>,
    /// The relation the error names (schema, table), unquoted, when the server named one.
    pub relation: Option<(String, String)>,
}

impl Refusal {
    /// The kind of `code`; `message` only tells a policy's 42501 from a privilege's, which share
    /// the code (the verdicts treat both as refusals, so a translated message only changes the
    /// label).
    pub fn of(code: Option<&SqlState>, message: &str) -> Self {
        let Some(code) = code else {
            return Self::LostConnection;
        };
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return if message.contains("row-level security") {
                Self::Policy
            } else {
                Self::Privilege
            };
        }
        let text = code.code();
        if text.starts_with("23") {
            return Self::Constraint(Constraint::of(code));
        }
        if text.starts_with("22") {
            return Self::InvalidValue;
        }
        if [
            SqlState::QUERY_CANCELED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
        ]
        .contains(code)
        {
            return Self::Timeout;
        }
        // Class 08 (connection exception) and 57P (operator intervention: shutdowns, a
        // dropped database, an idle session ended).
        if text.starts_with("08") || text.starts_with("57P") {
            return Self::LostConnection;
        }
        Self::Other
    }

    /// True when the thing under test said no: a privilege or a policy refused it.
    pub fn is_refused_by_privilege_or_policy(self) -> bool {
        matches!(self, Self::Privilege | Self::Policy)
    }

    /// True when the outcome says nothing about the thing under test: it was decided by timing
    /// or by a lost connection.
    pub fn is_undecided(self) -> bool {
        matches!(self, Self::Timeout | Self::LostConnection)
    }
}

impl Constraint {
    fn of(code: &SqlState) -> Self {
        match code {
            c if *c == SqlState::UNIQUE_VIOLATION => Self::Unique,
            c if *c == SqlState::FOREIGN_KEY_VIOLATION => Self::ForeignKey,
            c if *c == SqlState::NOT_NULL_VIOLATION => Self::NotNull,
            c if *c == SqlState::CHECK_VIOLATION => Self::Check,
            _ => Self::Other,
        }
    }
}

impl Refused {
    /// Classify a client error.
    pub fn of(err: &tokio_postgres::Error) -> Self {
        let db = err.as_db_error();
        let described = crate::error::describe_db_error(err);
        Self {
            kind: Refusal::of(err.code(), db.map_or("", |d| d.message())),
            sqlstate: err.code().map(|c| c.code().to_string()),
            message: db.map_or_else(|| described.clone(), |d| d.message().to_string()),
            described,
            column: db.and_then(|d| d.column()).map(str::to_string),
            constraint: db.and_then(|d| d.constraint()).map(str::to_string),
            relation: db.and_then(|d| Some((d.schema()?.to_string(), d.table()?.to_string()))),
        }
    }

    /// Whether a privilege or a policy refused it: the only refusal a probe of a privilege or
    /// a row policy counts as the thing under test saying no.
    pub fn by_privilege_or_policy(&self) -> bool {
        self.kind.is_refused_by_privilege_or_policy()
    }

    /// Whether a unique key of `relation` itself stopped the row (`relation` written as
    /// [`Relation::name`](crate::catalog::Relation::name) is). PostgreSQL checks a row against
    /// the row policies' WITH CHECK before its constraints and unique keys, so such a row got
    /// past the policies: the policy let it through.
    pub fn stopped_only_by_unique_key_of(&self, relation: &str) -> bool {
        self.kind == Refusal::Constraint(Constraint::Unique)
            && self.relation.as_ref().is_some_and(|(schema, table)| {
                crate::sql::unquote_qualified(relation) == [schema.as_str(), table.as_str()]
            })
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.described)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(code: &str, message: &str) -> Refusal {
        Refusal::of(Some(&SqlState::from_code(code)), message)
    }

    #[test]
    fn sqlstates_are_classified_by_their_constants() {
        assert_eq!(
            of("42501", "permission denied for table t"),
            Refusal::Privilege
        );
        assert_eq!(
            of(
                "42501",
                "new row violates row-level security policy for table \"t\""
            ),
            Refusal::Policy
        );
        assert_eq!(of("23505", ""), Refusal::Constraint(Constraint::Unique));
        assert_eq!(of("23503", ""), Refusal::Constraint(Constraint::ForeignKey));
        assert_eq!(of("23502", ""), Refusal::Constraint(Constraint::NotNull));
        assert_eq!(of("23514", ""), Refusal::Constraint(Constraint::Check));
        assert_eq!(of("23P01", ""), Refusal::Constraint(Constraint::Other));
        for timing in ["57014", "55P03", "40P01", "40001"] {
            assert_eq!(of(timing, ""), Refusal::Timeout, "{timing}");
        }
        for lost in ["08006", "57P01", "57P02", "57P03"] {
            assert_eq!(of(lost, ""), Refusal::LostConnection, "{lost}");
        }
        assert_eq!(Refusal::of(None, ""), Refusal::LostConnection);
        assert_eq!(of("42P01", "relation does not exist"), Refusal::Other);
        assert_eq!(of("0A000", ""), Refusal::Other);
        assert_eq!(of("22001", "value too long"), Refusal::InvalidValue);
        assert_eq!(of("22P02", "invalid input syntax"), Refusal::InvalidValue);
    }

    #[test]
    fn only_privilege_and_policy_count_as_refused_and_timing_is_undecided() {
        assert!(Refusal::Privilege.is_refused_by_privilege_or_policy());
        assert!(Refusal::Policy.is_refused_by_privilege_or_policy());
        assert!(!Refusal::Other.is_refused_by_privilege_or_policy());
        assert!(Refusal::Timeout.is_undecided() && Refusal::LostConnection.is_undecided());
        assert!(!Refusal::Constraint(Constraint::Check).is_undecided());
    }
}
