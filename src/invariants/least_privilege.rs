//! `least-privilege`: TODO.
