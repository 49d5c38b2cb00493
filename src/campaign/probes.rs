//! The check stages every workload kind shares, so a check added here applies to every mode:
//! the static checks on the catalog, the probes as the runtime in the tenants' contexts, and
//! the probes of the connections a pool of runtime logins hands out.

use deadpool_postgres::Pool;
use tokio_postgres::{Client, Config};

use crate::catalog::{Relation, identity, policies, privileges};
use crate::error::Result;
use crate::invariants::{
    Ledger, Observation, context_hygiene, least_privilege, no_context_closed, rls_coverage,
    runtime_identity, tenant_isolation, write_check,
};
use crate::probe::ProbeSession;
use crate::report::StaticEvidence;
use crate::subject::Subject;
use crate::system::live_connections;

/// The catalog evidence of `subject`, and the static checks (runtime identity and migrations,
/// least privilege, RLS coverage) recorded in `ledger`.
///
/// # Errors
/// A database error when the catalog cannot be read; a config error when the runtime role
/// does not exist.
pub(crate) async fn static_checks(
    oracle: &Client,
    subject: &Subject,
    ledger: &mut Ledger,
) -> Result<StaticEvidence> {
    let evidence = StaticEvidence {
        identity: identity::read(oracle, subject).await?,
        privileges: privileges::matrix(oracle, subject).await?,
        policies: policies::catalogue(oracle, subject).await?,
    };
    ledger.record_all(runtime_identity::check_role(oracle, subject).await?);
    ledger.record_all(runtime_identity::check_migrations(oracle, subject).await?);
    ledger.record_all(least_privilege::check(oracle, subject).await?);
    ledger.record_all(rls_coverage::check(oracle, subject).await?);
    Ok(evidence)
}

/// The probes in the tenants' contexts, as the runtime: what each tenant sees of every relation
/// and of every set-returning function it can call (`tenant-isolation`), and, given two
/// tenants, writes into the other tenant (`write-check`) and reads and writes with no context
/// (`no-context-closed`, on fresh logins of `runtime`). `tenants` are (id, label) pairs.
///
/// # Errors
/// A harness error when a probe cannot run at all; refusals are observations.
pub(crate) async fn tenant_probes(
    session: &mut ProbeSession,
    runtime: &Config,
    oracle: &Client,
    subject: &Subject,
    relations: &[Relation],
    tenants: &[(String, String)],
) -> Result<Vec<Observation>> {
    let mut out = tenant_isolation::check(session, oracle, subject, relations, tenants).await?;
    out.extend(tenant_isolation::check_functions(session, subject, tenants).await?);
    if let [a, b, ..] = tenants {
        out.extend(write_check::check(session, oracle, subject, relations, a, b).await?);
        out.extend(no_context_closed::check(runtime, oracle, subject, relations, a).await?);
    }
    Ok(out)
}

/// The probes of the connections `pool` hands out (a connection a fault killed is replaced
/// first, as a task would replace it): each carries no tenant context (`context-hygiene`) and
/// is the runtime (`runtime-identity`). Nothing when the pool never opened a connection.
///
/// # Errors
/// A harness error when a probe cannot run at all.
pub(crate) async fn pool_probes(
    pool: &Pool,
    subject: &Subject,
    relations: &[Relation],
) -> Result<Vec<Observation>> {
    let objects = live_connections(pool).await;
    let clients: Vec<&Client> = objects.iter().map(|o| &***o).collect();
    let mut out = Vec::new();
    if !clients.is_empty() {
        out.extend(context_hygiene::check(&clients, subject, relations).await?);
        out.extend(runtime_identity::check_connections(&clients, subject).await?);
    }
    Ok(out)
}
