//! The runtime role as the catalog describes it: attributes, memberships, the roles it can
//! `SET ROLE` to, and what it owns. Read by the oracle; rendered into the evidence.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::subject::Subject;

/// The runtime role's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeIdentity {
    /// The role's name.
    pub role: String,
    /// Whether the role exists.
    pub exists: bool,
    /// Attribute name (`LOGIN`, `SUPERUSER`, ...) and whether the role has it, in a fixed order.
    pub attributes: Vec<(String, bool)>,
    /// Roles it is a member of, directly or through others (it holds their privileges when
    /// they are inheritable).
    pub member_of: Vec<String>,
    /// Roles it can `SET ROLE` to.
    pub can_set_role_to: Vec<String>,
    /// Objects of the subject's schemas it owns (or a role it can use owns), as `kind name`.
    pub owns: Vec<String>,
}

/// Read the identity of `subject.runtime_role` as the oracle.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn read(oracle: &Client, subject: &Subject) -> Result<RuntimeIdentity> {
    let err = |e| Error::database("reading the runtime role's identity", e);
    let role = &subject.runtime_role;
    let Some(row) = oracle
        .query_opt(
            "SELECT rolcanlogin, rolinherit, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole,
                    rolreplication
             FROM pg_roles WHERE rolname = $1",
            &[role],
        )
        .await
        .map_err(err)?
    else {
        return Ok(RuntimeIdentity {
            role: role.clone(),
            ..RuntimeIdentity::default()
        });
    };
    let names = [
        "LOGIN",
        "INHERIT",
        "SUPERUSER",
        "BYPASSRLS",
        "CREATEDB",
        "CREATEROLE",
        "REPLICATION",
    ];
    let attributes = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), row.get::<_, bool>(i)))
        .collect();
    let roles = |privilege: &'static str| {
        let sql = format!(
            "SELECT r.rolname::text FROM pg_roles r
             WHERE r.rolname <> $1 AND pg_has_role($1, r.oid, '{privilege}') ORDER BY 1"
        );
        async move {
            oracle.query(&sql, &[role]).await.map(|rows| {
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
            })
        }
    };
    let member_of = roles("MEMBER").await.map_err(err)?;
    // PostgreSQL 16 adds the SET option to memberships; before it, MEMBER implies SET ROLE.
    let can_set_role_to = match roles("SET").await {
        Ok(r) => r,
        Err(e) if e.code().is_some() => member_of.clone(),
        Err(e) => return Err(err(e)),
    };
    let owns = oracle
        .query(
            "SELECT kind || ' ' || name FROM (
               SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                        WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' ELSE 'relation' END AS kind,
                      format('%I.%I', n.nspname, c.relname) AS name, c.relowner AS owner
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = ANY($2) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               UNION ALL
               SELECT 'function', p.oid::regprocedure::text, p.proowner
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY($2)
               UNION ALL
               SELECT 'schema', format('%I', n.nspname), n.nspowner FROM pg_namespace n WHERE n.nspname = ANY($2)
             ) o
             WHERE pg_has_role($1, o.owner, 'USAGE') ORDER BY 1",
            &[role, &subject.schemas],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(RuntimeIdentity {
        role: role.clone(),
        exists: true,
        attributes,
        member_of,
        can_set_role_to,
        owns,
    })
}
