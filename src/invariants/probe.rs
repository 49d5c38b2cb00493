//! A probe session: a real login connection as the runtime role, which knows whether (and
//! where) that role bypasses row-level security, so a probe never reports a false pass.

use std::collections::BTreeSet;

use tokio_postgres::{Client, Config};

use crate::error::{Error, Result};
use crate::invariants::Subject;
use crate::provision::Server;

/// Why a role's view of a relation is not filtered by row-level security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bypass {
    /// The role is a superuser.
    Superuser,
    /// The role has BYPASSRLS.
    BypassRls,
    /// The role owns (or has the privileges of the owner of) a relation whose RLS is not forced.
    OwnerWithoutForce,
}

impl std::fmt::Display for Bypass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Superuser => "is a superuser",
            Self::BypassRls => "has BYPASSRLS",
            Self::OwnerWithoutForce => "owns the relation and its RLS is not forced",
        })
    }
}

/// A login connection for probes, and the role it runs as.
pub struct ProbeSession {
    client: Client,
    role: String,
    superuser: bool,
    bypassrls: bool,
    owns_unforced: BTreeSet<String>,
}

impl std::fmt::Debug for ProbeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSession")
            .field("role", &self.role)
            .field("superuser", &self.superuser)
            .field("bypassrls", &self.bypassrls)
            .finish()
    }
}

impl ProbeSession {
    /// Log in with `config` and read who the session is and what it bypasses, for the
    /// relations of `subject`'s schemas.
    ///
    /// # Errors
    /// A database error when the login or the catalog read fails.
    pub async fn open(config: &Config, subject: &Subject) -> Result<Self> {
        let client = Server::connect_with(config).await?;
        let row = client
            .query_one(
                "SELECT current_user::text, r.rolsuper, r.rolbypassrls,
                        coalesce((SELECT array_agg(format('%I.%I', n.nspname, c.relname)::text)
                                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                  WHERE n.nspname = ANY($1) AND NOT c.relforcerowsecurity
                                    AND pg_has_role(current_user, c.relowner, 'USAGE')), '{}')
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[&subject.schemas],
            )
            .await
            .map_err(|e| Error::database("reading the probe session's role", e))?;
        Ok(Self {
            client,
            role: row.get(0),
            superuser: row.get(1),
            bypassrls: row.get(2),
            owns_unforced: row.get::<_, Vec<String>>(3).into_iter().collect(),
        })
    }

    /// The connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A mutable connection (for transactions).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The role the session runs as (`current_user`).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Why this session's view of `relation` is not filtered by RLS, if it is not.
    pub fn bypass(&self, relation: &str) -> Option<Bypass> {
        if self.superuser {
            Some(Bypass::Superuser)
        } else if self.bypassrls {
            Some(Bypass::BypassRls)
        } else if self.owns_unforced.contains(relation) {
            Some(Bypass::OwnerWithoutForce)
        } else {
            None
        }
    }

    /// Why the session bypasses RLS everywhere (superuser or BYPASSRLS), if it does.
    pub fn bypasses_everywhere(&self) -> Option<Bypass> {
        if self.superuser {
            Some(Bypass::Superuser)
        } else if self.bypassrls {
            Some(Bypass::BypassRls)
        } else {
            None
        }
    }
}
