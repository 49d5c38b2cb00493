//! Where a campaign runs: a database rlsgate built (a clone of the migrated template on a
//! server it may crash and restart), or an existing database given by URL.

use tokio_postgres::Config;

use crate::database::Database;
use crate::error::{Error, Result};
use crate::provision::Server;
use crate::roles::Role;
use crate::scratch::ScratchCopy;

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

/// An existing database, reached: the target (on the scratch copy unless in place), how it is
/// treated, and the copy to drop when the check ends.
#[derive(Debug)]
pub(crate) struct Existing {
    /// The logins, on the copy when there is one.
    pub(crate) target: Target,
    /// A scratch copy, or the database in place.
    pub(crate) placement: crate::scratch::Placement,
    /// The copy, when there is one: [`ScratchCopy::remove`] drops it.
    pub(crate) scratch: Option<ScratchCopy>,
}

/// Reach the existing database of the superuser `url` (named `flag` in messages), with the
/// runtime's `runtime_url` when given (it must log in as `runtime_role`, when that is known),
/// and make the scratch copy every check runs on unless `in_place`.
///
/// # Errors
/// A config error for a malformed or unreachable URL (its password masked), a superuser URL of
/// a role that is not one, a runtime URL of another role, or a copy that cannot be made (naming
/// the cause and the ways out).
pub(crate) async fn existing(
    url: &str,
    flag: &str,
    runtime_url: Option<&str>,
    runtime_role: Option<&str>,
    in_place: bool,
) -> Result<Existing> {
    let runtime = match runtime_url {
        None => None,
        Some(u) => Some(u.parse::<Config>().map_err(|e| {
            Error::config(format!(
                "--runtime-url is not a valid PostgreSQL URL ({e}); use postgres://{}:PASSWORD@HOST:PORT/DB",
                runtime_role.unwrap_or("app_user")
            ))
        })?),
    };
    if let (Some(r), Some(role)) = (&runtime, runtime_role)
        && r.get_user() != Some(role)
    {
        return Err(Error::config(format!(
            "the runtime URL logs in as {}, but the runtime role is {role}; give the runtime's own login",
            r.get_user().unwrap_or("(no user)")
        )));
    }
    let (oracle, client) = crate::provision::external::oracle(url, flag).await?;
    // A database cannot be copied while a session (this one too) is connected to it.
    drop(client);
    if in_place {
        return Ok(Existing {
            target: Target::Existing { oracle, runtime },
            placement: crate::scratch::Placement::InPlace,
            scratch: None,
        });
    }
    let copy = ScratchCopy::of(&oracle).await?;
    if let Some(r) = &runtime {
        copy.check_login(r, "the runtime").await?;
    }
    Ok(Existing {
        target: Target::Existing {
            oracle: copy.login(&oracle),
            runtime: runtime.as_ref().map(|r| copy.login(r)),
        },
        placement: crate::scratch::Placement::ScratchCopy,
        scratch: Some(copy),
    })
}
