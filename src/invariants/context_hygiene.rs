//! `context-hygiene`: a pooled connection handed to the next task carries no tenant context
//! (after success, error, rollback, cancellation). Probe POOL on the worker's own pooled
//! connections, between cases.

use tokio_postgres::Client;

use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::probe::{Decision, ProbeSession, Probed, oracle_counts, passes_in_context};
use crate::refusal::{Refusal, Refused};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::ContextHygiene;

/// On each of the pool's `connections` (outside any transaction, as the next task would get
/// it): the tenant setting must be unset or empty, and a read that sets no context must see no
/// tenant rows of the first tenant relation the runtime can read that holds some. A read that
/// fails holds only when a privilege or policy refused it, or when `control` (a runtime
/// session of its own) reads the relation in `tenant`'s context (when there is one): then the missing context made
/// it fail (a policy that fails closed by raising).
///
/// # Errors
/// A database error when a connection cannot be queried.
pub async fn check(
    connections: &[&Client],
    oracle: &Client,
    control: &mut ProbeSession,
    subject: &Subject,
    relations: &[Relation],
    tenant: Option<&str>,
) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    let mut probe_rel = None;
    for r in relations
        .iter()
        .filter(|r| r.is_tenant_relation() && r.runtime_can_select && matches!(r.kind, 'r' | 'p'))
    {
        if oracle_counts(oracle, r, "").await?.with_tenant > 0 {
            probe_rel = Some(r);
            break;
        }
    }
    for (i, client) in connections.iter().enumerate() {
        let row = match client
            .query_one(
                "SELECT current_setting($1, true), current_user::text,
                        (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
                        OR coalesce((SELECT NOT c.relforcerowsecurity AND pg_has_role(current_user, c.relowner, 'USAGE')
                                     FROM pg_class c WHERE c.oid = $2::text::regclass), false)",
                &[&subject.tenant_setting, &probe_rel.map(|r| r.name.clone())],
            )
            .await
        {
            Ok(row) => row,
            // A connection lost under the probe (a fault killed its backend) is no finding:
            // this connection's check is undecided, the others go on.
            Err(e) if Refused::of(&e).kind == Refusal::LostConnection => {
                out.push(Observation::inconclusive(
                    ID,
                    Undecided::Interrupted,
                    "POOL-setting",
                    format!("pooled connection {i} was lost before it could be read: {e}"),
                ));
                continue;
            }
            Err(e) => return Err(Error::database("reading a pooled connection's context", e)),
        };
        let setting: Option<String> = row.get(0);
        let role: String = row.get(1);
        let bypasses: bool = row.get(2);
        let carried = setting.as_deref().is_some_and(|s| !s.is_empty());
        out.push(Observation::expect(
            ID,
            !carried,
            "POOL-setting",
            format!(
                "pooled connection {i} carries {} = '{}' into the next task",
                subject.tenant_setting,
                setting.unwrap_or_default()
            ),
        ));
        if let Some(rel) = probe_rel {
            let sql = format!(
                "SELECT count(*) FROM {} WHERE {} IS NOT NULL",
                rel.name,
                rel.tenant_column_sql()
            );
            let o = match client.query_one(&sql, &[]).await {
                Err(e) => {
                    let failed = Probed::Error(Refused::of(&e));
                    failed_read(control, subject, rel, tenant, &sql, &failed, i).await?
                }
                Ok(r) => {
                    let n: i64 = r.get(0);
                    if bypasses {
                        Observation::inconclusive(
                            ID,
                            Undecided::Bypass,
                            "POOL-read",
                            format!(
                                "the pool's role {role} bypasses RLS on {} (superuser, BYPASSRLS, or owner without FORCE; {n} rows visible)",
                                rel.name
                            ),
                        )
                    } else {
                        Observation::expect(
                            ID,
                            n == 0,
                            "POOL-read",
                            format!(
                                "a task that sets no context sees {n} tenant rows of {} on pooled connection {i}",
                                rel.name
                            ),
                        )
                    }
                }
            };
            out.push(o.on(rel.name.clone()).with_statement(sql));
        }
    }
    Ok(out)
}

/// A POOL read that failed: refused by a privilege or policy holds; a failure the control
/// shows the missing context caused holds; anything else is inconclusive.
async fn failed_read(
    control: &mut ProbeSession,
    subject: &Subject,
    rel: &Relation,
    tenant: Option<&str>,
    sql: &str,
    failed: &Probed,
    i: usize,
) -> Result<Observation> {
    let o = match failed.decide(&rel.name) {
        Decision::Refused | Decision::LetThrough => Observation::holds(ID, "POOL-read"),
        Decision::Interrupted => Observation::inconclusive(
            ID,
            Undecided::Interrupted,
            "POOL-read",
            format!("pooled connection {i}'s read was interrupted: {failed}"),
        ),
        Decision::FailedOtherwise
            if match tenant {
                Some(t) => passes_in_context(control, subject, &rel.name, t, sql, &[]).await?,
                None => false,
            } =>
        {
            Observation::new(
                ID,
                crate::invariants::Status::Holds,
                "POOL-read",
                format!(
                    "refused by the missing context ({failed}); in a tenant's context the read goes through"
                ),
            )
        }
        Decision::FailedOtherwise => Observation::inconclusive(
            ID,
            Undecided::FailedOtherwise,
            "POOL-read",
            format!(
                "pooled connection {i}'s read failed for a reason of its own, not the policy ({failed}): it fails in a tenant's context too"
            ),
        ),
    };
    Ok(o.with_sqlstate(failed.sqlstate()))
}
