//! Where a campaign runs: a database rlsgate built (a clone of the migrated template on a
//! server it may crash and restart), or an existing database given by URL.

use tokio_postgres::Config;

use crate::database::Database;
use crate::error::{Error, Result};
use crate::provision::Server;
use crate::roles::Role;

/// The database under test and how to log in to it.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per campaign; boxing buys nothing
pub enum Target {
    /// A database rlsgate created: every role's login is known, and the server is its own.
    Built(Database),
    /// An existing database: the oracle (a superuser) and, when given, the runtime login.
    Existing {
        /// The superuser login (creates tenants, reads the ground truth).
        oracle: Config,
        /// The runtime login, if the user gave it.
        runtime: Option<Config>,
    },
}

impl Target {
    /// A login configuration for `role`.
    ///
    /// # Errors
    /// A configuration error when the target has no login for `role` (an existing database
    /// without `--runtime-url`, or the admin role, which `check` never uses).
    pub async fn config(&self, role: Role) -> Result<Config> {
        match self {
            Self::Built(db) => db.config(role).await,
            Self::Existing { oracle, runtime } => match role {
                Role::Superuser => Ok(oracle.clone()),
                Role::Runtime => runtime.clone().ok_or_else(|| {
                    Error::config(
                        "no login for the runtime role; pass --runtime-url postgres://app_user:PASSWORD@HOST/DB",
                    )
                }),
                Role::MigrationOwner => Err(Error::config(
                    "rlsgate check never logs in as the admin role of an existing database",
                )),
            },
        }
    }

    /// Whether a login for `role` is known.
    pub fn has_login(&self, role: Role) -> bool {
        match self {
            Self::Built(_) => true,
            Self::Existing { runtime, .. } => match role {
                Role::Superuser => true,
                Role::Runtime => runtime.is_some(),
                Role::MigrationOwner => false,
            },
        }
    }

    /// The server, when rlsgate runs it.
    pub fn server(&self) -> Option<&Server> {
        match self {
            Self::Built(db) => Some(db.server()),
            Self::Existing { .. } => None,
        }
    }

    /// Whether crash faults can be injected (rlsgate owns a local or container server).
    pub fn can_crash(&self) -> bool {
        self.server()
            .is_some_and(|s| s.backend() != crate::provision::Backend::External)
    }
}
