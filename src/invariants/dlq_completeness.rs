//! `dlq-completeness`: TODO.
