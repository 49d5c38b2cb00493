//! `no-context-closed`: TODO.
