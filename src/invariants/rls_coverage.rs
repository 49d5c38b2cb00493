//! `rls-coverage`: TODO.
