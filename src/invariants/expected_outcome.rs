//! `expected-outcome`: TODO.
