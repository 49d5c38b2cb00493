//! `runtime-identity`: TODO.
