//! `runtime-lacks-ddl`: as the runtime, every DDL and escalation probe fails.
//!
//! Each probe logs in as the runtime over a real connection and runs in a transaction of its own
//! that is always rolled back, so nothing is ever changed, not even when a probe succeeds. A
//! probe the server refuses holds (its SQLSTATE is recorded); a probe that succeeds is a
//! violation carrying its statement. A lock or statement timeout, a cancellation or a lost
//! connection is no refusal: that probe is inconclusive (and the session reconnects).
//!
//! The probes: CREATE TABLE in each subject schema, CREATE TEMP TABLE, CREATE FUNCTION, CREATE
//! SCHEMA, CREATE ROLE, `ALTER ROLE <runtime> BYPASSRLS`, `SET ROLE` to the admin role and to
//! every owner of a tenant relation, and for every tenant table: ADD COLUMN, DISABLE and NO FORCE
//! ROW LEVEL SECURITY, DROP, TRUNCATE, `GRANT SELECT .. TO PUBLIC` (which PostgreSQL accepts with
//! a warning and no effect when the runtime holds some privilege but no grant option: it only
//! counts when the ACL changed), and `SET row_security = off` followed by a read (refused with
//! 42501 for a role that does not bypass RLS).

use std::collections::BTreeSet;

use tokio_postgres::{Client, Config};

use crate::catalog::Relation;
use crate::error::{Error, Result, describe_db_error};
use crate::invariants::{InvariantId, Observation, Status, Undecided};
use crate::provision::Server;
use crate::refusal::Refused;
use crate::sql::{quote_ident, quote_literal};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::RuntimeLacksDdl;

/// Session settings of the probe connection: a probe waits for no lock for long.
const SESSION: &str = "SET statement_timeout = '15s'; SET lock_timeout = '5s'";

/// One DDL or escalation probe.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probe {
    /// The probe's name in observations (`DDL:CREATE TABLE`).
    name: &'static str,
    /// The object it aims at (a schema, relation or role).
    target: String,
    /// What success would let the runtime do, in words.
    what: String,
    /// The statements, run in order in one transaction that is rolled back.
    statements: Vec<String>,
    /// A query of one text value read before and after the statements: when the statements
    /// succeed but leave it unchanged, the probe had no effect.
    effect: Option<String>,
    /// SQLSTATEs the server raises only once the privilege check passed (TRUNCATE of a table a
    /// foreign key references: 0A000): they prove the runtime holds the privilege.
    past_privilege_check: &'static [&'static str],
}

impl Probe {
    fn new(name: &'static str, target: impl Into<String>, what: String, sql: String) -> Self {
        Self {
            name,
            target: target.into(),
            what,
            statements: vec![sql],
            effect: None,
            past_privilege_check: &[],
        }
    }

    fn statement(&self) -> String {
        self.statements.join("; ")
    }
}

/// The probes for `subject` and its tenant tables among `relations`; `tag` names the objects a
/// probe would create, so it cannot collide with an existing one.
fn probes(subject: &Subject, relations: &[Relation], tag: &str) -> Vec<Probe> {
    let runtime = &subject.runtime_role;
    let mut out = Vec::new();
    for schema in &subject.schemas {
        out.push(Probe::new(
            "DDL:CREATE TABLE",
            schema,
            format!("create a table in schema {schema}"),
            format!("CREATE TABLE {}.{tag} (id integer)", quote_ident(schema)),
        ));
    }
    out.push(Probe::new(
        "DDL:CREATE TEMP TABLE",
        "pg_temp",
        "create a temporary table".into(),
        format!("CREATE TEMP TABLE {tag} (id integer)"),
    ));
    if let Some(schema) = subject.schemas.first() {
        out.push(Probe::new(
            "DDL:CREATE FUNCTION",
            schema,
            format!("create a function in schema {schema}"),
            format!(
                "CREATE FUNCTION {}.{tag}() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
                quote_ident(schema)
            ),
        ));
    }
    out.push(Probe::new(
        "DDL:CREATE SCHEMA",
        tag,
        "create a schema".into(),
        format!("CREATE SCHEMA {tag}"),
    ));
    out.push(Probe::new(
        "DDL:CREATE ROLE",
        tag,
        "create a role".into(),
        format!("CREATE ROLE {tag}"),
    ));
    out.push(Probe::new(
        "ESCALATION:ALTER ROLE BYPASSRLS",
        runtime,
        "give itself BYPASSRLS".into(),
        format!("ALTER ROLE {} BYPASSRLS", quote_ident(runtime)),
    ));
    let tenant_tables: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.is_tenant_relation() && matches!(r.kind, 'r' | 'p'))
        .collect();
    let mut targets: BTreeSet<&str> = relations
        .iter()
        .filter(|r| r.is_tenant_relation())
        .map(|r| r.owner.as_str())
        .collect();
    targets.insert(&subject.admin_role);
    targets.remove(runtime.as_str());
    // The admin role first, then the other owners by name.
    let mut roles: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|r| *r == subject.admin_role)
        .collect();
    roles.extend(targets.iter().copied().filter(|r| *r != subject.admin_role));
    for role in roles {
        out.push(Probe::new(
            "ESCALATION:SET ROLE",
            role,
            format!("act as {role}"),
            format!("SET ROLE {}", quote_ident(role)),
        ));
    }
    for table in tenant_tables {
        let name = &table.name;
        out.push(Probe::new(
            "DDL:ALTER TABLE ADD COLUMN",
            name,
            format!("alter {name}"),
            format!("ALTER TABLE {name} ADD COLUMN {tag} integer"),
        ));
        out.push(Probe::new(
            "DDL:DISABLE ROW LEVEL SECURITY",
            name,
            format!("disable row-level security on {name}"),
            format!("ALTER TABLE {name} DISABLE ROW LEVEL SECURITY"),
        ));
        out.push(Probe::new(
            "DDL:NO FORCE ROW LEVEL SECURITY",
            name,
            format!("stop forcing row-level security on {name}"),
            format!("ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY"),
        ));
        out.push(Probe::new(
            "DDL:DROP TABLE",
            name,
            format!("drop {name}"),
            format!("DROP TABLE {name} CASCADE"),
        ));
        out.push(Probe {
            past_privilege_check: &["0A000"],
            ..Probe::new(
                "DDL:TRUNCATE",
                name,
                format!("truncate {name}, every tenant's rows at once (TRUNCATE ignores RLS)"),
                format!("TRUNCATE {name}"),
            )
        });
        let mut grant = Probe::new(
            "ESCALATION:GRANT",
            name,
            format!("grant SELECT on {name} to PUBLIC"),
            format!("GRANT SELECT ON {name} TO PUBLIC"),
        );
        grant.effect = Some(format!(
            "SELECT relacl::text FROM pg_class WHERE oid = {}::regclass",
            quote_literal(name)
        ));
        out.push(grant);
        out.push(Probe {
            name: "BYPASS:row_security=off",
            target: name.clone(),
            what: format!("read {name} with row_security = off, unfiltered by RLS"),
            statements: vec![
                "SET row_security = off".into(),
                format!("SELECT count(*) FROM {name}"),
            ],
            effect: None,
            past_privilege_check: &[],
        });
    }
    out
}

/// How one probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// A privilege (or a policy) refused a statement: the refusal under test.
    Refused(Refused),
    /// The privilege check passed and something else stopped the statement (a foreign key
    /// stopping a TRUNCATE): the runtime holds the privilege.
    PastPrivilegeCheck(Refused),
    /// Every statement succeeded.
    Accepted,
    /// Every statement succeeded but changed nothing.
    NoEffect,
    /// No decision: the reason, in kind and in words, and the SQLSTATE if there was one.
    Undecided(Undecided, String, Option<String>),
}

/// How a statement of `probe` the server answered with an error ended: undecided when timing
/// or the connection decided it ([`Refusal::is_undecided`]), refused when a privilege (or
/// policy) did, past the privilege check for the SQLSTATEs that prove it, and undecided
/// otherwise: a statement that failed for a reason of its own proves nothing about the
/// privilege. `None` when the server did not answer.
///
/// [`Refusal::is_undecided`]: crate::refusal::Refusal::is_undecided
fn ending_of_error(probe: &Probe, e: &tokio_postgres::Error) -> Option<Ending> {
    e.as_db_error()?;
    let refused = Refused::of(e);
    let state = refused.sqlstate.clone();
    Some(if refused.kind.is_undecided() {
        Ending::Undecided(
            Undecided::Interrupted,
            format!("interrupted: {}", refused.described),
            state,
        )
    } else if refused.by_privilege_or_policy() {
        Ending::Refused(refused)
    } else if state
        .as_deref()
        .is_some_and(|s| probe.past_privilege_check.contains(&s))
    {
        Ending::PastPrivilegeCheck(refused)
    } else {
        Ending::Undecided(
            Undecided::FailedOtherwise,
            format!(
                "it failed for another reason than a missing privilege: {}",
                refused.described
            ),
            state,
        )
    })
}

/// Run the statements (and the effect query) of `probe` inside the open transaction.
async fn body(
    client: &Client,
    probe: &Probe,
) -> std::result::Result<Ending, tokio_postgres::Error> {
    let read_effect = |query: String| async move {
        client
            .query_one(&query, &[])
            .await
            .map(|row| row.get::<_, Option<String>>(0))
    };
    let before = match &probe.effect {
        Some(q) => match read_effect(q.clone()).await {
            Ok(v) => Some(v),
            Err(e) if e.as_db_error().is_some() => {
                return Ok(Ending::Undecided(
                    Undecided::FailedOtherwise,
                    format!("cannot read the probe's effect: {}", describe_db_error(&e)),
                    e.code().map(|c| c.code().to_string()),
                ));
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    for statement in &probe.statements {
        if let Err(e) = client.batch_execute(statement).await {
            return ending_of_error(probe, &e).ok_or(e);
        }
    }
    if let Some(q) = &probe.effect {
        match read_effect(q.clone()).await {
            Ok(after) if Some(&after) == before.as_ref() => return Ok(Ending::NoEffect),
            Ok(_) => {}
            Err(e) if e.as_db_error().is_some() => {
                return Ok(Ending::Undecided(
                    Undecided::FailedOtherwise,
                    format!("cannot read the probe's effect: {}", describe_db_error(&e)),
                    e.code().map(|c| c.code().to_string()),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Ending::Accepted)
}

/// Run `probe` in a transaction of its own and roll it back, whatever happened. Also says
/// whether the rollback went through: when it did not, the connection must be dropped (the
/// server rolls an open transaction back when its connection goes). `Err` when the connection
/// failed before the probe could end.
async fn attempt(
    client: &Client,
    probe: &Probe,
) -> (std::result::Result<Ending, tokio_postgres::Error>, bool) {
    if let Err(e) = client.batch_execute("BEGIN").await {
        return (Err(e), false);
    }
    let ending = body(client, probe).await;
    let rolled_back = client.batch_execute("ROLLBACK").await.is_ok();
    (ending, rolled_back)
}

/// The observation for how `probe` ended.
fn observation(probe: &Probe, ending: Ending, runtime: &str) -> Observation {
    let o = match ending {
        Ending::Refused(refused) => Observation::new(
            ID,
            Status::Holds,
            probe.name,
            format!(
                "{runtime} cannot {}: refused ({})",
                probe.what, refused.message
            ),
        )
        .with_sqlstate(refused.sqlstate),
        Ending::NoEffect => Observation::new(
            ID,
            Status::Holds,
            probe.name,
            format!(
                "{runtime} cannot {}: the statement was accepted but changed nothing",
                probe.what
            ),
        ),
        Ending::PastPrivilegeCheck(refused) => Observation::violated(
            ID,
            probe.name,
            format!(
                "{runtime} holds the privilege to {}: the server checked it and let it pass; only this stopped it: {}",
                probe.what, refused.message
            ),
        )
        .with_sqlstate(refused.sqlstate)
        .with_statement(probe.statement()),
        Ending::Accepted => Observation::violated(
            ID,
            probe.name,
            format!(
                "{runtime} can {}: the statement succeeded (rolled back)",
                probe.what
            ),
        )
        .with_statement(probe.statement()),
        Ending::Undecided(reason, why, sqlstate) => Observation::inconclusive(
            ID,
            reason,
            probe.name,
            format!("could not tell whether {runtime} can {}: {why}", probe.what),
        )
        .with_sqlstate(sqlstate)
        .with_statement(probe.statement()),
    };
    o.on(probe.target.clone())
}

async fn open(runtime: &Config) -> Result<Client> {
    let client = Server::connect_with(runtime).await?;
    client
        .batch_execute(SESSION)
        .await
        .map_err(|e| Error::database("setting the probe session's timeouts", e))?;
    Ok(client)
}

/// Log in with `runtime` (the runtime role's login) and run every DDL and escalation probe for
/// `subject` and the tenant tables among `relations` (see the module docs), one observation per
/// probe in a fixed order. Nothing is left behind: every probe's transaction is rolled back.
///
/// # Errors
/// A database error when the login fails, or when the connection is lost and cannot be opened
/// again.
pub async fn check(
    runtime: &Config,
    subject: &Subject,
    relations: &[Relation],
) -> Result<Vec<Observation>> {
    let tag = format!(
        "rlsgate_probe_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut client = Some(open(runtime).await?);
    let mut out = Vec::new();
    for probe in probes(subject, relations, &tag) {
        let session = match client.take() {
            Some(c) if !c.is_closed() => c,
            _ => open(runtime).await?,
        };
        let (ending, rolled_back) = attempt(&session, &probe).await;
        if rolled_back {
            client = Some(session);
        } else {
            // Dropping the connection ends its session, and with it any open transaction.
            drop(session);
        }
        let ending = ending.unwrap_or_else(|e| {
            Ending::Undecided(
                Undecided::Interrupted,
                format!("the connection failed: {}", describe_db_error(&e)),
                None,
            )
        });
        out.push(observation(&probe, ending, &subject.runtime_role));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refusal::Refusal;

    fn relation(name: &str, kind: char, tenant: bool, owner: &str) -> Relation {
        Relation {
            kind,
            tenant_column: tenant.then(|| "tenant_id".to_string()),
            owner: owner.into(),
            ..crate::catalog::test_table(name)
        }
    }

    #[test]
    fn probes_cover_every_tenant_table_and_owner_in_a_fixed_order() {
        let subject = Subject::reference();
        let relations = [
            relation("public.a", 'r', true, "migration_owner"),
            relation("public.b", 'p', true, "other_owner"),
            relation("public.tenants", 'r', false, "migration_owner"),
            relation("public.v", 'v', true, "migration_owner"),
            relation("public.mine", 'r', true, "app_user"),
        ];
        let p = probes(&subject, &relations, "rlsgate_probe_x");
        let names: Vec<_> = p.iter().map(|p| p.name).collect();
        assert_eq!(
            &names[..6],
            [
                "DDL:CREATE TABLE",
                "DDL:CREATE TEMP TABLE",
                "DDL:CREATE FUNCTION",
                "DDL:CREATE SCHEMA",
                "DDL:CREATE ROLE",
                "ESCALATION:ALTER ROLE BYPASSRLS"
            ]
        );
        let set_role: Vec<_> = p
            .iter()
            .filter(|p| p.name == "ESCALATION:SET ROLE")
            .map(|p| p.target.as_str())
            .collect();
        assert_eq!(
            set_role,
            ["migration_owner", "other_owner"],
            "the admin first; never the runtime itself"
        );
        let tables: BTreeSet<_> = p
            .iter()
            .filter(|p| p.name == "DDL:TRUNCATE")
            .map(|p| p.target.as_str())
            .collect();
        assert_eq!(
            tables,
            BTreeSet::from(["public.a", "public.b", "public.mine"]),
            "tenant tables only, views and non-tenant tables excluded"
        );
        assert_eq!(p.iter().filter(|p| p.target == "public.a").count(), 7);
        assert_eq!(p, probes(&subject, &relations, "rlsgate_probe_x"));
    }

    #[test]
    fn identifiers_are_quoted_and_grant_watches_the_acl() {
        let mut subject = Subject::reference();
        subject.runtime_role = "odd\"role".into();
        let p = probes(
            &subject,
            &[relation("public.a", 'r', true, "migration_owner")],
            "t",
        );
        assert_eq!(p[0].statement(), "CREATE TABLE \"public\".t (id integer)");
        let alter = p.iter().find(|p| p.name.ends_with("BYPASSRLS")).unwrap();
        assert_eq!(alter.statement(), "ALTER ROLE \"odd\"\"role\" BYPASSRLS");
        let grant = p.iter().find(|p| p.name == "ESCALATION:GRANT").unwrap();
        assert_eq!(
            grant.effect.as_deref(),
            Some("SELECT relacl::text FROM pg_class WHERE oid = 'public.a'::regclass")
        );
        let read = p.iter().find(|p| p.name.starts_with("BYPASS")).unwrap();
        assert_eq!(
            read.statement(),
            "SET row_security = off; SELECT count(*) FROM public.a"
        );
    }

    #[test]
    fn refusals_hold_successes_are_violations_and_timeouts_decide_nothing() {
        let probe = Probe::new(
            "DDL:TRUNCATE",
            "public.a",
            "truncate public.a".into(),
            "TRUNCATE public.a".into(),
        );
        let refused = observation(
            &probe,
            Ending::Refused(Refused {
                kind: Refusal::Privilege,
                sqlstate: Some("42501".into()),
                message: "permission denied".into(),
                described: "permission denied [SQLSTATE 42501]".into(),
                column: None,
                constraint: None,
                relation: None,
            }),
            "app_user",
        );
        assert_eq!(refused.status, Status::Holds);
        assert_eq!(refused.sqlstate.as_deref(), Some("42501"));
        let accepted = observation(&probe, Ending::Accepted, "app_user");
        assert_eq!(accepted.status, Status::Violated);
        assert_eq!(accepted.statement.as_deref(), Some("TRUNCATE public.a"));
        assert_eq!(accepted.relation.as_deref(), Some("public.a"));
        let undecided = |code: &str| {
            Refusal::of(Some(&tokio_postgres::error::SqlState::from_code(code)), "").is_undecided()
        };
        assert!(undecided("55P03") && undecided("57014") && undecided("08006"));
        assert!(!undecided("42501") && !undecided("0A000"));
    }
}
