//! rlsgate's integration tests: one binary, one module per concern.
//!
//! They need a real PostgreSQL. The shared server follows `RLSGATE_BACKEND` (default `auto`);
//! the backend tests start each backend explicitly and skip, saying why, when one cannot run,
//! unless `RLSGATE_REQUIRE_BACKENDS` names it (then they fail).

mod adoption; // --baseline, exit codes, rlsgate doctor
mod backends; // each backend starts, serves app_user, leaves nothing behind
mod bad_input; // every bad input gets a clear error that names the fix
mod bench; // rlsgate bench, tiny: runs end to end, bench.json has every field
mod campaign; // the reference holds under every fault; each variant is caught by its invariant
mod cli; // the binary: setup is idempotent, run prints a verdict
mod evidence; // snapshots of every artifact; same seed, same evidence; evidence --from
mod existing; // an existing database: a scratch copy by default, --in-place, left exactly as it was
mod init; // rlsgate init: drafts of the examples match their files and hold; bad input named
mod matrix; // access.html in a real browser; the pgTAP suite green under pg_prove, red on a broken copy
mod migrations; // as migration_owner, atomic per file, checksummed, re-runnable
mod probes; // no false pass: a probe holds only when the thing under test refused it
mod project; // bring your own schema: examples hold, broken copies caught, bad configs named
mod sarif; // results.sarif: valid SARIF 2.1.0, violations at their migration lines
mod sarif_schema; // the official SARIF 2.1.0 schema and a validator (shared with the unit tests)
mod shards; // --shard K/N and rlsgate merge: merged shards equal the unsharded run
mod static_checks; // least-privilege, rls-coverage, runtime-identity, runtime-lacks-ddl: reference holds, breakages caught
mod support; // fixtures: settings, the shared server, a fresh database
mod system; // the worker: persistence, DLQ, replay, rollup, broken variants
mod workflows; // the workflows and action.yml: pinned actions, no credentials kept, no expressions in scripts
