//! Which process owns a server rlsgate started, and whether it still runs: the sweep of
//! leftovers removes a server only when its owner is known to be gone.
//!
//! An owner is its pid and its pid namespace. A pid is meaningless in another namespace (a run
//! inside a container, or beside one, shares `/tmp` and the Docker daemon but not pids), so an
//! owner from another namespace counts as alive: only `rlsgate clean` removes its servers. A
//! pid that exists but cannot be signalled (EPERM: another user's process) is alive too.

use std::fmt;

/// The process that started a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pid: i32,
    /// The pid namespace, as `/proc/self/ns/pid` names it (`pid:[4026531836]`); empty when
    /// unknown (an owner recorded before namespaces were, or no `/proc`).
    namespace: String,
}

impl Owner {
    /// This process.
    pub(crate) fn current() -> Self {
        Self {
            pid: std::process::id() as i32,
            namespace: namespace(),
        }
    }

    /// The owner `pid` in `namespace` (`None`: not recorded).
    pub(crate) fn new(pid: i32, namespace: Option<&str>) -> Self {
        Self {
            pid,
            namespace: namespace.unwrap_or_default().to_string(),
        }
    }

    /// The owner an owner file holds: `PID` or `PID NAMESPACE`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        Some(Self::new(pid, words.next()))
    }

    /// The pid.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The pid namespace (empty when unknown).
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether the owner may still run: true unless it is in this namespace (or its namespace
    /// is unknown) and no process has its pid.
    pub(crate) fn is_alive(&self) -> bool {
        let ours = namespace();
        if !self.namespace.is_empty() && !ours.is_empty() && self.namespace != ours {
            return true;
        }
        pid_alive(self.pid)
    }
}

/// `PID NAMESPACE`, as [`Owner::parse`] reads it.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.pid, self.namespace)
    }
}

/// Whether a process with `pid` exists in this namespace (one we may not signal counts).
pub(crate) fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

fn namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_round_trips() {
        let me = Owner::current();
        assert!(me.is_alive());
        assert_eq!(Owner::parse(&me.to_string()), Some(me));
    }

    #[test]
    fn an_owner_in_another_namespace_counts_as_alive() {
        // A pid that no process has here: dead in this namespace, unknowable in another.
        let gone = i32::MAX - 1;
        assert!(!Owner::new(gone, None).is_alive());
        if !namespace().is_empty() {
            assert!(!Owner::new(gone, Some(&namespace())).is_alive());
            assert!(Owner::new(gone, Some("pid:[1]")).is_alive());
        }
    }

    #[test]
    fn old_owner_files_hold_a_pid_only() {
        assert_eq!(Owner::parse("42\n"), Some(Owner::new(42, None)));
        assert_eq!(Owner::parse("not a pid"), None);
    }
}
