//! `write-check`: TODO.
