//! `context-hygiene`: a pooled connection handed to the next task carries no tenant context
//! (after success, error, rollback, cancellation). Probe POOL on the worker's own pooled
//! connections, between cases.

use tokio_postgres::Client;

use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Observation, Undecided};
use crate::refusal::{Refusal, Refused};
use crate::subject::Subject;

const ID: InvariantId = InvariantId::ContextHygiene;

/// On each of the pool's `connections` (outside any transaction, as the next task would get
/// it): the tenant setting must be unset or empty, and a read that sets no context must see no
/// tenant rows.
///
/// # Errors
/// A database error when a connection cannot be queried.
pub async fn check(
    connections: &[&Client],
    subject: &Subject,
    relations: &[Relation],
) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    let probe_rel = relations
        .iter()
        .find(|r| r.is_tenant_relation() && r.runtime_can_select && matches!(r.kind, 'r' | 'p'));
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
                Err(e) => Observation::holds(ID, "POOL-read")
                    .with_sqlstate(e.code().map(|c| c.code().to_string())),
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
