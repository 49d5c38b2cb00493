//! Server advisories: PostgreSQL releases with known bugs that break row-level security or let
//! a role read rows its policies hide (ATTACKS H). A server whose version one affects is flagged
//! in the evidence: rlsgate's probes may pass on it and the bug still leak, through the path
//! the advisory describes.

/// A known bug and the releases that fixed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advisory {
    /// The CVE.
    pub cve: &'static str,
    /// What it breaks.
    pub summary: &'static str,
    /// Per affected major version, the first minor release with the fix.
    pub fixed_in: &'static [(i32, i32)],
}

/// The advisories rlsgate knows, oldest first.
pub const KNOWN: [Advisory; 5] = [
    Advisory {
        cve: "CVE-2023-2455",
        summary: "row security policies disregard user ID changes after inlining",
        fixed_in: &[(11, 20), (12, 15), (13, 11), (14, 8), (15, 3)],
    },
    Advisory {
        cve: "CVE-2023-39418",
        summary: "MERGE does not test new rows against row security policies",
        fixed_in: &[(15, 4)],
    },
    Advisory {
        cve: "CVE-2024-4317",
        summary: "pg_stats_ext and pg_stats_ext_exprs show statistics of tables a role cannot read",
        fixed_in: &[(14, 12), (15, 7), (16, 3)],
    },
    Advisory {
        cve: "CVE-2024-10976",
        summary: "row security below subqueries disregards user ID changes (plans reused across roles)",
        fixed_in: &[(12, 21), (13, 17), (14, 14), (15, 9), (16, 5), (17, 1)],
    },
    Advisory {
        cve: "CVE-2025-8713",
        summary: "optimizer statistics expose sampled data of a view, partition or child table",
        fixed_in: &[(13, 22), (14, 19), (15, 14), (16, 10), (17, 6)],
    },
];

/// The advisories that affect a server of `version_num` (`server_version_num`, e.g. 150012),
/// each as `CVE: what it breaks (fixed in M.m)`.
pub fn affecting(version_num: i32) -> Vec<String> {
    let (major, minor) = (version_num / 10000, version_num % 10000);
    KNOWN
        .iter()
        .filter_map(|a| {
            let (_, fixed) = a.fixed_in.iter().find(|(m, _)| *m == major)?;
            (minor < *fixed).then(|| format!("{}: {} (fixed in {major}.{fixed})", a.cve, a.summary))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_flagged_until_the_minor_release_that_fixed_each_bug() {
        let fifteen_two = affecting(150002);
        assert_eq!(fifteen_two.len(), 5, "{fifteen_two:?}");
        assert!(
            fifteen_two[0].starts_with("CVE-2023-2455:")
                && fifteen_two[0].ends_with("(fixed in 15.3)")
        );
        let fifteen_eight: Vec<String> = affecting(150008);
        assert_eq!(
            fifteen_eight
                .iter()
                .map(|s| s.split(':').next().unwrap())
                .collect::<Vec<_>>(),
            ["CVE-2024-10976", "CVE-2025-8713"]
        );
        assert!(affecting(150014).is_empty());
        assert!(affecting(170006).is_empty());
        assert!(affecting(180000).is_empty(), "a major no advisory names");
        assert_eq!(affecting(160004).len(), 2);
    }
}
