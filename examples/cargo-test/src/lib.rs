//! Nothing here: the project's code would live here; its RLS tests are in `tests/rls.rs`.
