//! The external backend: an existing server given by a superuser URL. rlsgate creates its own
//! uniquely named databases there (and the roles, unless they exist from an earlier rlsgate run)
//! and removes them when the last handle drops.

use std::str::FromStr;

use tokio_postgres::config::Host;

use crate::error::{Error, Result};
use crate::provision::Credentials;
use crate::provision::Endpoint;

/// What a superuser URL says: where the server is, who to log in as, the maintenance database.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    /// Host and port.
    pub endpoint: Endpoint,
    /// The superuser's login.
    pub superuser: Credentials,
    /// The database named in the URL (`postgres` when none is).
    pub database: String,
}

impl ServerUrl {
    /// Parse `url`; `variable` names where it came from, for the message.
    ///
    /// # Errors
    /// A config error naming the expected form (never echoing the password) when the URL is
    /// malformed, has no TCP host, or no user.
    pub fn parse(url: &str, variable: &str) -> Result<Self> {
        let expected = "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE";
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            Error::config(format!(
                "{variable} is not a valid PostgreSQL URL ({e}); {expected}"
            ))
        })?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(_) => {
                return Err(Error::config(format!(
                    "{variable} names a Unix socket; rlsgate connects over TCP like the application does; {expected}"
                )));
            }
            None => {
                return Err(Error::config(format!(
                    "{variable} names no host; {expected}"
                )));
            }
        };
        let user = config
            .get_user()
            .ok_or_else(|| Error::config(format!("{variable} names no user; {expected}")))?;
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        Ok(Self {
            endpoint: Endpoint {
                host,
                port: config.get_ports().first().copied().unwrap_or(5432),
            },
            superuser: Credentials {
                user: user.to_string(),
                password,
            },
            database: config.get_dbname().unwrap_or("postgres").to_string(),
        })
    }
}

impl ServerUrl {
    /// The URL with its password masked, for messages.
    pub fn redacted(&self) -> String {
        format!(
            "postgres://{}:***@{}:{}/{}",
            self.superuser.user, self.endpoint.host, self.endpoint.port, self.database
        )
    }
}

/// The oracle of an existing database: parse `url` (named `variable` in messages), log in, and
/// check that the login is a superuser. Returns the login and the connection.
///
/// # Errors
/// A config error for a malformed or unreachable URL (the password masked) or a role that is
/// not a superuser.
pub(crate) async fn oracle(
    url: &str,
    variable: &str,
) -> Result<(tokio_postgres::Config, tokio_postgres::Client)> {
    let target = ServerUrl::parse(url, variable)?;
    let config = target.endpoint.config(&target.superuser, &target.database);
    let client = crate::provision::Server::connect_with(&config)
        .await
        .map_err(|e| {
            Error::config(format!(
                "cannot reach the database of {variable} ({}): {e}; check the host, port, \
                 password and that the server is running",
                target.redacted()
            ))
        })?;
    check_superuser(&client, &target.superuser.user).await?;
    Ok((config, client))
}

/// Check that the URL's role is a superuser (rlsgate creates roles and databases with it).
///
/// # Errors
/// A provisioning error naming the role and the alternatives when it is not.
pub(crate) async fn check_superuser(client: &tokio_postgres::Client, user: &str) -> Result<()> {
    let is_super: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| Error::database("reading the URL role's attributes", e))?
        .get(0);
    if is_super {
        Ok(())
    } else {
        Err(Error::provisioning(format!(
            "role {user} in RLSGATE_DATABASE_URL is not a superuser, and rlsgate needs one to create \
             its roles and databases; give a superuser URL, or use `rlsgate check` on an existing database"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_endpoint_login_and_database() {
        let u = ServerUrl::parse("postgres://admin:s3cret@db.example:6543/app", "X").unwrap();
        assert_eq!(
            u.endpoint,
            Endpoint {
                host: "db.example".into(),
                port: 6543
            }
        );
        assert_eq!(
            (u.superuser.user.as_str(), u.superuser.password.as_str()),
            ("admin", "s3cret")
        );
        assert_eq!(u.database, "app");
        let d = ServerUrl::parse("postgresql://postgres@localhost", "X").unwrap();
        assert_eq!((d.endpoint.port, d.database.as_str()), (5432, "postgres"));
    }

    #[test]
    fn malformed_urls_name_the_form_and_hide_the_password() {
        for bad in [
            "postgres://u:hunter2@host:notaport/db",
            "not a url at all",
            "postgres://:hunter2@/db",
        ] {
            let err = ServerUrl::parse(bad, "RLSGATE_DATABASE_URL").unwrap_err();
            let text = err.to_string();
            assert!(err.is_config(), "{text}");
            assert!(text.starts_with("RLSGATE_DATABASE_URL"), "{text}");
            assert!(
                text.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
                "{text}"
            );
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
