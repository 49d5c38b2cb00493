//! `rollup-consistency`: TODO.
