//! `side-channels`: no error tells a tenant what another holds (ATTACKS F). A unique key of a
//! tenant table that does not include the tenant column is shared by every tenant: tenant A's
//! insert (or update) carrying a value tenant B holds fails with 23505, and A learns that B
//! holds it (an e-mail address, a slug, an invoice number).
//!
//! The catalog decides most keys ([`judge_keys`]): a key that includes the tenant column is
//! scoped; one of generated values (identity, a sequence, uuids) holds nothing a tenant could
//! guess; a table the runtime cannot write gives it nothing to try. Each other key is a
//! candidate that the UNIQUE probe decides, with rlsgate's sentinel rows, where a project is
//! checked (`project::references`): A's row carrying B's values of the key collides, or not.
//! A candidate no probe decided is inconclusive at the end of the run.

use crate::catalog::Relation;
use crate::catalog::keys::UniqueKey;
use crate::invariants::{InvariantId, Observation, Status};

const ID: InvariantId = InvariantId::SideChannels;

/// The probe's name for `key`: `UNIQUE:<name>`.
pub fn probe_name(key: &UniqueKey) -> String {
    format!("UNIQUE:{}", key.name)
}

/// Judge `keys` from the catalog: one observation per key the catalog decides, and the keys a
/// probe must decide (the candidates). A key of an expression index is a note: its values
/// cannot be built, so nothing decides it but a reviewer.
pub fn judge_keys(
    keys: &[UniqueKey],
    relations: &[Relation],
) -> (Vec<Observation>, Vec<UniqueKey>) {
    let mut out = Vec::new();
    let mut candidates = Vec::new();
    for key in keys {
        let writable = relations
            .iter()
            .find(|r| r.name == key.relation)
            .is_some_and(|r| r.runtime_can_insert || r.runtime_can_update);
        let columns = key.columns.join(", ");
        let held = |detail: String| {
            Observation::new(ID, Status::Holds, probe_name(key), detail).on(key.relation.clone())
        };
        out.push(if key.includes_tenant {
            held(format!("unique key {} ({columns}) is scoped by the tenant", key.name))
        } else if key.generated {
            held(format!(
                "unique key {} ({columns}) holds generated values nobody guesses",
                key.name
            ))
        } else if !writable {
            held(format!(
                "unique key {} ({columns}) is shared by every tenant, but the runtime cannot write {}",
                key.name, key.relation
            ))
        } else if key.expression {
            Observation::note(
                ID,
                probe_name(key),
                format!(
                    "unique index {} is on an expression and shared by every tenant: whether a collision tells a tenant what another holds needs a reviewer",
                    key.name
                ),
            )
            .on(key.relation.clone())
        } else {
            candidates.push(key.clone());
            continue;
        });
    }
    (out, candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, includes_tenant: bool, generated: bool) -> UniqueKey {
        UniqueKey {
            relation: "public.users".into(),
            name: name.into(),
            columns: vec!["email".into()],
            includes_tenant,
            generated,
            expression: false,
        }
    }

    fn table(insert: bool) -> Relation {
        Relation {
            runtime_can_insert: insert,
            ..crate::catalog::test_table("public.users")
        }
    }

    #[test]
    fn scoped_generated_and_unwritable_keys_hold_and_the_rest_are_candidates() {
        let keys = [
            key("users_tenant_email", true, false),
            key("users_pkey", false, true),
            key("users_email_key", false, false),
        ];
        let (held, candidates) = judge_keys(&keys, &[table(true)]);
        assert_eq!(held.len(), 2);
        assert!(held.iter().all(|o| o.status == Status::Holds));
        assert_eq!(candidates, [keys[2].clone()]);
        let (held, candidates) = judge_keys(&keys, &[table(false)]);
        assert_eq!(held.len(), 3, "nothing to write, nothing to learn");
        assert!(candidates.is_empty());
    }
}
