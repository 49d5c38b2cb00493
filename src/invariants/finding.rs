//! `Finding`: the identity of a violation that stays the same from one run to the next, so a
//! baseline (`--baseline`) can tell a known finding from a new one.
//!
//! A finding is the invariant, the probe, the object (relation, function, schema, role) and the
//! *kind* of its detail: the detail with everything a run chooses for itself masked (UUIDs,
//! rlsgate's tenant ids and labels, hashes, task ids, timestamps, ports, database names and
//! every count). Two runs of the same schema find the same findings; a different privilege, a
//! different policy or a different relation is a different finding.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{InvariantId, Observation};

/// The identity of a violation across runs (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// The invariant violated.
    pub invariant: InvariantId,
    /// The probe or check that saw it.
    pub probe: String,
    /// The relation (or function, schema, role) it is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// The detail with what varies between runs masked ([`kind_of`]).
    pub kind: String,
}

impl Finding {
    /// The identity of `observation`.
    pub fn of(observation: &Observation) -> Self {
        Self {
            invariant: observation.invariant,
            probe: mask_values(&observation.probe),
            relation: observation.relation.as_deref().map(mask_values),
            kind: kind_of(&observation.detail),
        }
    }
}

/// A finding with one violation's detail as a run saw it (for the reader; never matched): an
/// entry of a baseline, and of a report's distinct findings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    /// The finding's identity.
    #[serde(flatten)]
    pub finding: Finding,
    /// One violation's detail, as a run saw it.
    #[serde(default)]
    pub detail: String,
}

impl Entry {
    /// The entry of violation `observation`.
    pub fn of(observation: &Observation) -> Self {
        Self {
            finding: Finding::of(observation),
            detail: observation.detail.clone(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.invariant, self.probe)?;
        if let Some(r) = &self.relation {
            write!(f, " on {r}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// Values a run chooses for itself, in the order they are masked (longest patterns first, so a
/// tenant id is masked whole before its hash part would be).
static VALUES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
            "[uuid]",
        ),
        // rlsgate's text tenant ids (`rlsgate-<tag>-a`, cut to the column's length).
        (r"\brlsgate-[0-9a-f]{4,}-[a-z0-9]+\b", "[tenant]"),
        (r"\brlsgate_[0-9a-f]{8}_[a-z0-9_]+", "[database]"),
        (r"\bc[0-9a-f]{8}-m\d+\b", "[task]"),
        (r"\b[0-9a-f]{16,64}\b", "[hex]"),
        (
            r"\b\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?)?",
            "[time]",
        ),
        (r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b", "[address]"),
        (r"\b(localhost|\[::1\]):\d+", "$1:[port]"),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("a valid regex"), r))
    .collect()
});

/// Which tenant a finding is about (rlsgate's labels `tenant A`, `tenant T27`, a tenant id, or
/// `another tenant (ID)` when the row found belongs to a tenant of the data), then counts:
/// every number that stands alone (not part of an identifier such as `events_2025`).
static TENANTS_AND_COUNTS: LazyLock<[(Regex, &'static str); 3]> = LazyLock::new(|| {
    [
        (
            Regex::new(r"\banother tenant \([^)]*\)").expect("a valid regex"),
            "tenant [t]",
        ),
        (
            Regex::new(r"\b(tenants?) (\[uuid\]|\[tenant\]|[A-Z]\b|T\d+\b)")
                .expect("a valid regex"),
            "$1 [t]",
        ),
        (
            Regex::new(r"\b\d+(\.\d+)?\b").expect("a valid regex"),
            "[n]",
        ),
    ]
});

/// `text` with the values a run chooses for itself masked (UUIDs, tenant ids, hashes, task
/// ids, timestamps, addresses and ports, database names); names and numbers in identifiers are kept.
fn mask_values(text: &str) -> String {
    let mut out = text.to_string();
    for (re, with) in VALUES.iter() {
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

/// The kind of a finding's `detail`: the values a run chooses masked, which tenant it is about
/// and every count too, whitespace collapsed.
pub fn kind_of(detail: &str) -> String {
    let mut out = mask_values(detail);
    for (re, with) in TENANTS_AND_COUNTS.iter() {
        out = re.replace_all(&out, *with).into_owned();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_masks_ids_labels_and_counts_and_keeps_names() {
        assert_eq!(
            kind_of(
                "in tenant A's context public.projects shows 1 rows of other tenants (0 with a NULL tenant)"
            ),
            "in tenant [t]'s context public.projects shows [n] rows of other tenants ([n] with a NULL tenant)"
        );
        assert_eq!(
            kind_of(
                "row 9e84f421-176d-5f16-b9ab-0c6833a74561 of tenant rlsgate-0a1b2c3d-b in public.events_2025 at 2026-11-28 12:00:01+00"
            ),
            "row [uuid] of tenant [t] in public.events_2025 at [time]"
        );
        assert_eq!(
            kind_of(
                "in tenant A's context, insert a row for another tenant (9e84f421-176d-5f16-b9ab-0c6833a74561): let through"
            ),
            kind_of("in tenant B's context, insert a row for tenant C: let through"),
            "which tenant's row it was is no part of the finding"
        );
        assert_eq!(
            kind_of(
                "message 3 (tenant T27, cd8fd90bb-m3) on 127.0.0.1:54321 in rlsgate_e878e21b_db1"
            ),
            "message [n] (tenant [t], [task]) on [address] in [database]"
        );
        assert_eq!(
            kind_of("saas_app holds  DELETE on public.failed_jobs, not declared"),
            "saas_app holds DELETE on public.failed_jobs, not declared"
        );
    }

    #[test]
    fn the_same_violation_in_two_runs_is_one_finding_and_a_different_one_is_not() {
        let seen = |tenant: &str, rows: u32, privilege: &str| {
            [
                Observation::violated(
                    InvariantId::TenantIsolation,
                    "READ",
                    format!("in tenant {tenant}'s context public.projects shows {rows} rows of other tenants"),
                )
                .on("public.projects"),
                Observation::violated(
                    InvariantId::LeastPrivilege,
                    "catalog:has_table_privilege",
                    format!("app holds {privilege} on public.tasks, not declared"),
                )
                .on("public.tasks"),
            ]
            .map(|o| Finding::of(&o))
        };
        let first = seen("A", 1, "DELETE");
        let second = seen("B", 7, "DELETE");
        assert_eq!(first, second, "labels and counts vary between runs");
        let other = seen("A", 1, "TRUNCATE");
        assert_eq!(first[0], other[0]);
        assert_ne!(first[1], other[1], "another privilege is another finding");
        let elsewhere = Finding::of(
            &Observation::violated(InvariantId::TenantIsolation, "READ", "x").on("public.tasks"),
        );
        assert_ne!(
            Finding::of(
                &Observation::violated(InvariantId::TenantIsolation, "READ", "x")
                    .on("public.projects")
            ),
            elsewhere
        );
    }
}
