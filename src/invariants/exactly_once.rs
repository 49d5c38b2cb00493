//! `exactly-once`: TODO.
