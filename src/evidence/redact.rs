//! Redaction of what varies between runs of the same campaign (UUIDs, hashes, timestamps,
//! ports, PIDs, OIDs, the server's minor version), so rendered evidence is stable and
//! snapshots diff only on what rlsgate saw.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::{Captures, Regex};

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
        .expect("a valid regex")
});

static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"\bc[0-9a-f]{8}-m(\d+)\b", "c[case]-m$1"),
        (r"\brlsgate_[0-9a-f]{8}_[a-z0-9_]+", "[database]"),
        (r"\b[0-9a-f]{16,64}\b", "[hex]"),
        (
            r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?",
            "[timestamp]",
        ),
        (r"\b\d{4}-\d{2}-\d{2}\b", "[date]"),
        (r"\b(127\.0\.0\.1|localhost|\[::1\]):\d+", "$1:[port]"),
        (r"(?i)\b(pid|oid) \d+", "$1 [$1]"),
        (r"PostgreSQL (\d+)\.\d+[^\n|]*", "PostgreSQL $1.[minor]"),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("a valid regex"), r))
    .collect()
});

/// `text` with every run-specific value replaced. Each distinct UUID becomes `[uuid-N]`,
/// numbered in order of first appearance, so the text still shows which ids are the same.
pub fn redact(text: &str) -> String {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let text = UUID.replace_all(text, |c: &Captures<'_>| {
        let next = seen.len() + 1;
        let n = *seen.entry(c[0].to_string()).or_insert(next);
        format!("[uuid-{n}]")
    });
    let mut text = text.into_owned();
    for (re, with) in RULES.iter() {
        text = re.replace_all(&text, *with).into_owned();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_numbered_by_first_appearance() {
        let a = "9e84f421-176d-5f16-b9ab-0c6833a74561";
        let b = "063b4e04-cea7-5d10-a3bf-5add8f5572cc";
        assert_eq!(
            redact(&format!("{a} then {b} then {a}")),
            "[uuid-1] then [uuid-2] then [uuid-1]"
        );
    }

    #[test]
    fn hashes_times_ports_pids_and_versions_are_redacted() {
        assert_eq!(
            redact("request 0123456789abcdef0123456789abcdef, task cd8fd90bb-m3"),
            "request [hex], task c[case]-m3"
        );
        assert_eq!(
            redact("at 2026-11-28 12:00:01.123+00 in 2026-11-01"),
            "at [timestamp] in [date]"
        );
        assert_eq!(
            redact("127.0.0.1:54321 pid 4242 oid 16384"),
            "127.0.0.1:[port] pid [pid] oid [oid]"
        );
        assert_eq!(
            redact("database rlsgate_e878e21b_db1"),
            "database [database]"
        );
        assert_eq!(
            redact("PostgreSQL 15.12 (Debian 15.12-0+deb12u2) on x86_64-pc-linux-gnu"),
            "PostgreSQL 15.[minor]"
        );
    }
}
