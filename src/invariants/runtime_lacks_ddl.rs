//! `runtime-lacks-ddl`: TODO.
