//! The check stages every workload kind shares, so a check added here applies to every mode:
//! the static checks on the catalog, the probes as the runtime in the tenants' contexts, and
//! the probes of the connections a pool of runtime logins hands out.

use deadpool_postgres::Pool;
use tokio_postgres::{Client, Config};

use crate::catalog::keys::{self, TenantReference, UniqueKey};
use crate::catalog::{Relation, identity, policies, privileges};
use crate::error::Result;
use crate::invariants::{
    InvariantId, Ledger, Observation, Undecided, context_hygiene, least_privilege,
    no_context_closed, rls_coverage, runtime_identity, side_channels, tenant_isolation,
    write_check,
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
/// (`no-context-closed`, on fresh logins of `runtime`). `tenants` are (id, label) pairs;
/// `volatile` says whether functions that may change something (VOLATILE) may be called (not
/// in place).
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
    volatile: bool,
) -> Result<Vec<Observation>> {
    let mut out = tenant_isolation::check(session, oracle, subject, relations, tenants).await?;
    out.extend(tenant_isolation::check_functions(session, subject, tenants, volatile).await?);
    if let [a, b, ..] = tenants {
        out.extend(write_check::check(session, oracle, subject, relations, a, b).await?);
        out.extend(
            no_context_closed::check(runtime, session, oracle, subject, relations, a).await?,
        );
    }
    Ok(out)
}

/// The keys of tenant tables the catalog could not judge: unique keys shared by every tenant
/// (the UNIQUE probe decides them) and foreign keys into another tenant table that do not carry
/// the tenant (the XREF probe decides them).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyCandidates {
    pub(crate) unique: Vec<UniqueKey>,
    pub(crate) references: Vec<TenantReference>,
}

/// The keys of the tenant tables, judged from the catalog where it can (`side-channels` for
/// unique keys, `write-check` for foreign keys that carry the tenant); the rest are returned for
/// the probes.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub(crate) async fn key_checks(
    oracle: &Client,
    relations: &[Relation],
    ledger: &mut Ledger,
) -> Result<KeyCandidates> {
    let (judged, unique) =
        side_channels::judge_keys(&keys::unique_keys(oracle, relations).await?, relations);
    ledger.record_all(judged);
    let (judged, references) = write_check::judge_references(
        &keys::tenant_references(oracle, relations).await?,
        relations,
    );
    ledger.record_all(judged);
    Ok(KeyCandidates { unique, references })
}

/// What the probes never decided: a tenant table the runtime can read that no READ saw with
/// another tenant's row in it (no leak could show), or that no NOCTX probe decided; one it can
/// write that no write probe decided; a key candidate no UNIQUE or XREF probe tried. Each is
/// inconclusive, so a run never passes on something nothing was checked on. Partitions are
/// judged through their parent, views by their own READ; `unjudged` relations (rows that could
/// not be seeded) are already inconclusive.
pub(crate) fn coverage(
    ledger: &Ledger,
    relations: &[Relation],
    keys: &KeyCandidates,
    unjudged: &dyn Fn(&str) -> bool,
) -> Vec<Observation> {
    let mut out = Vec::new();
    let candidates = keys
        .unique
        .iter()
        .map(|k| {
            (
                InvariantId::SideChannels,
                &k.relation,
                side_channels::probe_name(k),
            )
        })
        .chain(keys.references.iter().map(|r| {
            (
                InvariantId::WriteCheck,
                &r.relation,
                write_check::reference_probe_name(r),
            )
        }));
    for (invariant, relation, probe) in candidates {
        if !unjudged(relation) && !ledger.decided(invariant, relation, &probe) {
            out.push(
                Observation::inconclusive(
                    invariant,
                    Undecided::NothingToCheck,
                    format!("{probe}-coverage"),
                    format!("no probe tried {probe} on {relation}: nothing decides it"),
                )
                .on(relation.clone()),
            );
        }
    }
    for rel in relations.iter().filter(|r| {
        r.is_tenant_relation()
            && matches!(r.kind, 'r' | 'p')
            && !r.is_partition
            && !unjudged(&r.name)
    }) {
        let mut expect = |invariant, probe: &str, applies: bool, why: &str| {
            if applies && !ledger.decided(invariant, &rel.name, probe) {
                out.push(
                    Observation::inconclusive(
                        invariant,
                        Undecided::NothingToCheck,
                        format!("{probe}-coverage"),
                        format!("{why} {}, so no probe could show a leak there", rel.name),
                    )
                    .on(rel.name.clone()),
                );
            }
        };
        expect(
            InvariantId::TenantIsolation,
            "READ",
            rel.runtime_can_select,
            "no other tenant's row was in",
        );
        expect(
            InvariantId::NoContextClosed,
            "NOCTX",
            rel.runtime_can_select || rel.runtime_can_insert,
            "no tenant's row was in",
        );
        expect(
            InvariantId::WriteCheck,
            "",
            rel.runtime_can_insert || rel.runtime_can_update || rel.runtime_can_delete,
            "no write into another tenant's rows could be tried on",
        );
    }
    out
}

/// The probes of the connections `pool` hands out (a connection a fault killed is replaced
/// first, as a task would replace it): each carries no tenant context (`context-hygiene`) and
/// is the runtime (`runtime-identity`). `control` (a runtime session of its own) and `tenant`
/// tell a read that fails closed from one that fails for its own reasons. Nothing when the
/// pool never opened a connection; a connection the pool cannot hand out again is
/// inconclusive, never dropped silently.
///
/// # Errors
/// A harness error when a probe cannot run at all.
pub(crate) async fn pool_probes(
    pool: &Pool,
    oracle: &Client,
    control: &mut ProbeSession,
    subject: &Subject,
    relations: &[Relation],
    tenant: Option<&str>,
) -> Result<Vec<Observation>> {
    let opened = pool.status().size;
    let objects = live_connections(pool).await;
    let clients: Vec<&Client> = objects.iter().map(|o| &***o).collect();
    let mut out = Vec::new();
    if clients.len() < opened {
        let why = match pool.get().await {
            Err(e) => e.to_string(),
            Ok(_) => "it failed, then came back".to_string(),
        };
        out.push(Observation::inconclusive(
            InvariantId::ContextHygiene,
            Undecided::Interrupted,
            "POOL-login",
            format!(
                "{} of the pool's {opened} connections could not be handed out again, so they were not probed: {why}",
                opened - clients.len()
            ),
        ));
    }
    if !clients.is_empty() {
        out.extend(
            context_hygiene::check(&clients, oracle, control, subject, relations, tenant).await?,
        );
        out.extend(runtime_identity::check_connections(&clients, subject).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::Status;

    fn table(name: &str, select: bool, insert: bool) -> Relation {
        Relation {
            runtime_can_select: select,
            runtime_can_insert: insert,
            ..crate::catalog::test_table(name)
        }
    }

    #[test]
    fn a_table_no_probe_decided_is_inconclusive_and_a_decided_one_is_not() {
        let relations = [
            table("public.a", true, true),
            table("public.b", true, false),
        ];
        let mut ledger = Ledger::default();
        // public.a: READ only judged the tenant's own rows, nothing more.
        ledger.record(Observation::holds(InvariantId::TenantIsolation, "OWN-ROWS").on("public.a"));
        ledger.record(
            Observation::holds(InvariantId::NoContextClosed, "NOCTX-never-set").on("public.a"),
        );
        ledger.record(Observation::holds(InvariantId::WriteCheck, "INS").on("public.a"));
        // public.b: decided everywhere it applies; an inconclusive READ decides nothing.
        ledger.record(Observation::holds(InvariantId::TenantIsolation, "READ").on("public.b"));
        ledger.record(
            Observation::violated(InvariantId::NoContextClosed, "NOCTX-set-then-ended", "x")
                .on("public.b"),
        );
        let gaps = coverage(&ledger, &relations, &KeyCandidates::default(), &|_| false);
        let got: Vec<_> = gaps
            .iter()
            .map(|o| {
                (
                    o.invariant,
                    o.relation.as_deref().unwrap(),
                    o.status,
                    o.undecided,
                )
            })
            .collect();
        assert_eq!(
            got,
            [(
                InvariantId::TenantIsolation,
                "public.a",
                Status::Inconclusive,
                Some(Undecided::NothingToCheck)
            )]
        );
        assert!(
            coverage(&ledger, &relations, &KeyCandidates::default(), &|r| r
                == "public.a")
            .is_empty()
        );
    }
}
