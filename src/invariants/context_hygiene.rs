//! `context-hygiene`: TODO.
