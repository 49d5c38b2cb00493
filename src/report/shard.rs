//! Shards of a campaign's cases (`--shard K/N`): which generated cases shard `K` of `N`
//! executes, and what its report says about them so that shards merge into one report
//! ([`super::merge()`]).
//!
//! Every shard generates the same sequence of cases from the seed (the generator is seeded,
//! so the case numbered `n` is the same in every shard and in the unsharded run) and executes
//! only the cases whose number `n` (counted from one) has `n ≡ K (mod N)`: the shards are
//! disjoint and their union is the unsharded run. A failing case is shrunk within its shard.
//! Everything outside the cases (the static checks, the once-per-run probes) runs in every
//! shard; the report keeps apart what the cases counted ([`ShardRun::per_case`]), so a merge
//! counts the per-run checks once and adds up the cases' checks.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::invariants::{InvariantId, Ledger, Tally};

/// Shard `index` of `count` (`K/N`, both counted from one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// `K`: which shard, from 1 to `count`.
    pub index: u32,
    /// `N`: how many shards the cases are split into.
    pub count: u32,
}

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// A configuration error when `count` is 0 or `index` is not within `1..=count`.
    pub fn new(index: u32, count: u32) -> Result<Self> {
        if count == 0 {
            return Err(Error::config(
                "--shard K/N needs at least one shard (N ≥ 1), e.g. --shard 1/4",
            ));
        }
        if index == 0 || index > count {
            return Err(Error::config(format!(
                "--shard {index}/{count}: K counts from 1 to N, so use --shard 1/{count} to --shard {count}/{count}"
            )));
        }
        Ok(Self { index, count })
    }

    /// Whether case `n` (counted from one) is this shard's: `n ≡ K (mod N)`.
    pub fn includes(self, n: u64) -> bool {
        n >= 1 && (n - 1) % u64::from(self.count) == u64::from(self.index - 1)
    }

    /// How many of the cases `1..=last` are this shard's.
    pub fn cases_within(self, last: u64) -> u64 {
        let (k, n) = (u64::from(self.index), u64::from(self.count));
        if last < k { 0 } else { (last - k) / n + 1 }
    }

    /// The rule in words: `the cases n of 1..=32 with n ≡ 1 (mod 4)`.
    pub fn rule(self, cases: u64) -> String {
        format!(
            "the cases n of 1..={cases} with n ≡ {} (mod {})",
            self.index, self.count
        )
    }

    /// A shard of a campaign of `cases` cases must get at least one.
    ///
    /// # Errors
    /// A configuration error naming the most shards `cases` allows.
    pub fn check_cases(self, cases: u32) -> Result<()> {
        if u64::from(self.count) > u64::from(cases) {
            return Err(Error::config(format!(
                "--shard {self} splits {cases} case(s) into {} shards, so some shard gets none: \
                 use at most {cases} shards, or more --cases",
                self.count
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::config(format!(
                "--shard {s:?} is not K/N: give the shard's number and the number of shards, \
                 e.g. --shard 2/4 (the second of four)"
            ))
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        Self::new(k, n)
    }
}

/// What the cases counted for one invariant (the part of its counts that is per case).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseCounts {
    /// Checks made.
    pub checks: u64,
    /// Checks that found a violation.
    pub violations: u64,
    /// Checks that could not decide.
    pub inconclusive: u64,
    /// Violations the project accepts.
    #[serde(default)]
    pub accepted: u64,
}

impl CaseCounts {
    fn of(t: &Tally) -> Self {
        Self {
            checks: t.checks,
            violations: t.violations,
            inconclusive: t.inconclusive,
            accepted: t.accepted,
        }
    }

    /// `self - other`, saturating.
    pub fn minus(self, other: Self) -> Self {
        Self {
            checks: self.checks.saturating_sub(other.checks),
            violations: self.violations.saturating_sub(other.violations),
            inconclusive: self.inconclusive.saturating_sub(other.inconclusive),
            accepted: self.accepted.saturating_sub(other.accepted),
        }
    }

    /// `self + other`.
    pub fn plus(self, other: Self) -> Self {
        Self {
            checks: self.checks + other.checks,
            violations: self.violations + other.violations,
            inconclusive: self.inconclusive + other.inconclusive,
            accepted: self.accepted + other.accepted,
        }
    }

    /// The order of badness: violations, then inconclusive checks, then checks.
    pub(crate) fn severity(self) -> (u64, u64, u64) {
        (self.violations, self.inconclusive, self.checks)
    }
}

/// Every invariant's counts in `ledger` so far: taken before and after the cases, their
/// difference is what the cases counted.
pub(crate) fn counts(ledger: &Ledger) -> BTreeMap<InvariantId, CaseCounts> {
    ledger
        .tallies()
        .map(|(id, t)| (id, CaseCounts::of(t)))
        .collect()
}

/// What the cases counted: `after - before`, the invariants whose counts did not move left out.
pub(crate) fn since(
    before: &BTreeMap<InvariantId, CaseCounts>,
    after: &BTreeMap<InvariantId, CaseCounts>,
) -> BTreeMap<InvariantId, CaseCounts> {
    after
        .iter()
        .map(|(id, a)| (*id, a.minus(before.get(id).copied().unwrap_or_default())))
        .filter(|(_, c)| *c != CaseCounts::default())
        .collect()
}

/// What one shard ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRun {
    /// `K`.
    pub index: u32,
    /// Which cases it executed, in words ([`Shard::rule`]).
    pub rule: String,
    /// The last case number the generator reached: the number of cases asked for, or the
    /// shard's first failing case (the shard's cases up to it ran; then it shrank).
    pub last_case: u64,
    /// The number of the shard's first failing case, when one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<u64>,
    /// What the shard's cases (shrinking included) counted per invariant; the rest of each
    /// invariant's counts is the per-run part every shard makes alike.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_case: BTreeMap<InvariantId, CaseCounts>,
}

/// Which shards a report covers: one for a shard's run, several for a merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shards {
    /// `N`: the shards the campaign's cases were split into.
    pub count: u32,
    /// The shards this report covers, by index.
    pub ran: Vec<ShardRun>,
    /// The shards a partial merge (`rlsgate merge --partial`) went without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u32>,
}

impl Shards {
    /// The record of shard `shard` alone, which ran to case `last_case` (its first failure at
    /// `first_failure`), its cases having counted `per_case`.
    pub(crate) fn one(
        shard: Shard,
        cases: u32,
        last_case: u64,
        first_failure: Option<u64>,
        per_case: BTreeMap<InvariantId, CaseCounts>,
    ) -> Self {
        Self {
            count: shard.count,
            ran: vec![ShardRun {
                index: shard.index,
                rule: shard.rule(u64::from(cases)),
                last_case,
                first_failure,
                per_case,
            }],
            missing: Vec::new(),
        }
    }

    /// `shard 2/4` for one shard, `shards 1, 2, 3, 4 of 4 merged` for a merge.
    pub fn describe(&self) -> String {
        let indices: Vec<String> = self.ran.iter().map(|r| r.index.to_string()).collect();
        let mut out = match (&self.ran[..], self.missing.is_empty()) {
            ([one], true) => {
                format!("shard {}/{}: {}", one.index, self.count, one.rule)
            }
            _ => format!("shards {} of {} merged", indices.join(", "), self.count),
        };
        if !self.missing.is_empty() {
            let missing: Vec<String> = self.missing.iter().map(u32::to_string).collect();
            out.push_str(&format!(
                " (partial: shard(s) {} missing)",
                missing.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_their_union_is_every_case() {
        for count in 1..=5u32 {
            let shards: Vec<Shard> = (1..=count).map(|k| Shard::new(k, count).unwrap()).collect();
            for n in 1..=40u64 {
                let owners = shards.iter().filter(|s| s.includes(n)).count();
                assert_eq!(owners, 1, "case {n} of {count} shards");
            }
            for last in 0..=17u64 {
                let total: u64 = shards.iter().map(|s| s.cases_within(last)).sum();
                assert_eq!(total, last, "{count} shards, last case {last}");
                for s in &shards {
                    let counted = (1..=last).filter(|n| s.includes(*n)).count() as u64;
                    assert_eq!(s.cases_within(last), counted, "{s} up to {last}");
                }
            }
        }
        assert!(!Shard::new(1, 2).unwrap().includes(0));
    }

    #[test]
    fn shard_k_of_n_takes_the_cases_congruent_to_k() {
        let s: Shard = "2/3".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 3 });
        let mine: Vec<u64> = (1..=9).filter(|n| s.includes(*n)).collect();
        assert_eq!(mine, [2, 5, 8]);
        assert_eq!(s.to_string(), "2/3");
        assert_eq!(s.rule(9), "the cases n of 1..=9 with n ≡ 2 (mod 3)");
        assert_eq!(
            " 1 / 1 ".trim().parse::<Shard>().unwrap(),
            Shard::new(1, 1).unwrap()
        );
    }

    #[test]
    fn bad_shards_get_errors_naming_the_fix() {
        let err = |s: &str| s.parse::<Shard>().unwrap_err().to_string();
        assert!(
            err("0/2").contains("K counts from 1 to N"),
            "{}",
            err("0/2")
        );
        assert!(
            err("3/2").contains("--shard 1/2 to --shard 2/2"),
            "{}",
            err("3/2")
        );
        assert!(err("x").contains("is not K/N"), "{}", err("x"));
        assert!(err("1/x").contains("is not K/N"));
        assert!(err("-1/2").contains("is not K/N"));
        assert!(err("1/0").contains("at least one shard"), "{}", err("1/0"));
        let few = Shard::new(3, 4)
            .unwrap()
            .check_cases(2)
            .unwrap_err()
            .to_string();
        assert!(few.contains("use at most 2 shards"), "{few}");
        Shard::new(4, 4).unwrap().check_cases(4).unwrap();
    }

    #[test]
    fn what_the_cases_counted_is_the_difference_of_the_counts() {
        let mut ledger = Ledger::default();
        let before = counts(&ledger);
        ledger.record(crate::invariants::Observation::holds(
            InvariantId::TenantIsolation,
            "READ",
        ));
        let per_case = since(&before, &counts(&ledger));
        assert_eq!(per_case.len(), 1);
        assert_eq!(per_case[&InvariantId::TenantIsolation].checks, 1);
    }
}
