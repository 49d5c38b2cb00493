//! # rlsgate
//!
//! A property-based row-level-security and privilege test harness for multi-tenant PostgreSQL
//! persistence layers. It starts PostgreSQL (in a container, from local server binaries, or an
//! existing server), applies migrations as the admin role `migration_owner`, runs the persistence
//! system as the least-privilege runtime role `app_user` over real login connections, and checks
//! that tenants stay apart, every failure is recorded, and the runtime holds no more privilege
//! than declared.
//!
//! ## Example
//!
//! ```no_run
//! # async fn example() -> rlsgate::Result<()> {
//! use rlsgate::{Role, Server, Settings};
//!
//! let settings = Settings::from_env()?;
//! let server = Server::start(&settings).await?; // prints the backend and why
//! let db = server.fresh_database().await?;      // a clone of the migrated template
//! let runtime = db.connect(Role::Runtime).await?;
//! let who: String = runtime.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
//! assert_eq!(who, "app_user");
//! # Ok(()) }
//! ```
//!
//! ## In a project's own tests
//!
//! [`Project`] checks the schema an `rlsgate.toml` describes, from `#[tokio::test]` (either
//! flavour), `#[test]` or rstest; [`Report::assert_holds`](report::Report::assert_holds) fails
//! the test with the problems, and [`evidence::review`](fn@evidence::review) is the text to snapshot:
//!
//! ```no_run
//! # async fn example() -> rlsgate::Result<()> {
//! let report = rlsgate::Project::from_config("rlsgate.toml")?.cases(16).check().await?;
//! report.assert_holds();
//! # Ok(()) }
//! ```
//!
//! ## Concepts
//! - **server** ([`Server`]): a running PostgreSQL on one of three [backends](Backend).
//! - **roles** ([`roles`]): `migration_owner` (owns and migrates), `app_user` (the runtime).
//! - **migrations** ([`migrations`]): migration files applied as the admin role, in rlsgate's
//!   layout (`NNNN_description.sql`) or in sqlx's, Supabase's, Flyway's, refinery's,
//!   golang-migrate's, diesel's or dbmate's.
//! - **database** ([`Database`]): a clone of the migrated template, per test.
//! - **evidence** ([`evidence`]): `report.json`, `evidence.md`, `junit.xml` and `results.sarif`
//!   (for code scanning), rendered from a [`Report`](report::Report) alone; `evidence.md` opens
//!   with the **problems** ([`report::problems`]): the violations grouped by root cause, most
//!   severe first.
//!
//! ## Backends
//! | backend | what it runs | chosen by `auto` when |
//! |---|---|---|
//! | `container` | testcontainers, image `RLSGATE_PG_IMAGE` | Docker answers and the image is present or pullable |
//! | `local` | `initdb` + `postgres` in a temporary directory | otherwise, when server binaries are found |
//! | `external` | an existing server, `RLSGATE_DATABASE_URL` | never (ask for it) |
//!
//! ## Environment variables
//! See [`config`]: nothing outside it reads the environment.
//!
//! ## Features
//! - `cli` (default): the `rlsgate` binary and its own dependencies (clap, anyhow). A project
//!   that uses the library from its tests turns default features off.
#![deny(missing_docs)]

pub mod advisories;
#[cfg(test)]
mod architecture;
pub mod bench;
pub mod campaign;
pub mod catalog;
pub mod check;
pub mod config;
pub mod database;
pub mod doctor;
pub mod error;
pub mod evidence;
pub mod executor;
pub(crate) mod faults;
pub mod history;
pub mod invariants;
pub mod migrations;
mod pgbench;
pub mod policy_expression;
pub(crate) mod probe;
pub mod project;
pub mod provision;
pub mod refusal;
pub mod report;
pub mod roles;
pub mod scratch;
pub mod secret;
pub mod setup;
mod sql;
pub mod subject;
pub mod system;
pub mod target;
pub mod truth;
pub mod workload;

pub use check::Project;
pub use config::{BackendChoice, ImageRef, KeepPolicy, Settings};
pub use database::Database;
pub use error::{Error, ErrorKind, Result};
pub use migrations::{Migration, MigrationSet};
pub use provision::{Backend, Endpoint, Server};
pub use roles::Role;
