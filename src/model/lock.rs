//! The stack lock (pure): who holds it, how that is written down, and when a lock is stale.
//!
//! natgw keeps no state file, so two runs on one stack (two CI jobs, a job and a laptop) could interleave
//! their changes. `apply` and `destroy` therefore hold a lock on the stack from before they read the project
//! until they end. The lock is a firewall rule in the project the stack writes to: Compute's insert of a
//! name that exists fails at once with `409 alreadyExists`, which makes taking it atomic, and it costs
//! nothing. The rule is disabled ("Denotes whether the firewall rule is disabled. When set to true, the
//! firewall rule is not enforced and the network behaves as if it did not exist", compute.v1.json,
//! `Firewall.disabled`), has the lowest priority, denies, and targets a tag no VM carries: it cannot change
//! any traffic. Its description names the holder, and the holder rewrites it while it runs.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A holder that has not refreshed its lock for this long is gone.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(120);
/// How often a holder refreshes its lock: well inside `STALE_AFTER`, so that a slow API call or two never
/// make a live lock look stale.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Compute's lowest priority ("from 0 to 65535", compute.v1.json `Firewall.priority`).
pub(crate) const PRIORITY: u32 = 65535;
/// The lock rule targets only this tag, which natgw never gives to a VM.
pub(crate) const TARGET_TAG: &str = "natgw-lock";

const PREFIX: &str = "natgw stack lock, do not edit:";

/// The lock rule's name for a stack: fixed (every run must race for the same name), short, and distinct per
/// project and stack. It never ends in `-allow`, so it cannot meet a gateway's own firewall rule.
pub(crate) fn name(project: &str, stack: &str) -> String {
    let mut h = Sha256::new();
    h.update(project.as_bytes());
    h.update([0]);
    h.update(stack.as_bytes());
    let digest = h.finalize();
    format!("natgw-lock-{}", crate::hex::encode(&digest[..5]))
}

/// Whether a firewall rule's name is a stack lock's (`name`'s shape): such a rule is never one of a stack's
/// resources. A gateway's own rules end in `-allow` or `-ssh`, so none has this shape.
pub(crate) fn is_lock_name(name: &str) -> bool {
    name.strip_prefix("natgw-lock-").is_some_and(|h| {
        h.len() == 10
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Who holds a lock, as written in the lock rule's description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    /// What `natgw force-unlock` takes: letters, digits and hyphens.
    pub(crate) id: String,
    pub(crate) stack: String,
    pub(crate) user: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    /// When the process started, as the kernel counts it (`/proc/PID/stat`, field 22), so that a new process
    /// that got the same PID is not taken for the holder. `None` where it cannot be read.
    pub(crate) pid_start: Option<u64>,
    pub(crate) command: String,
    /// Seconds since the Unix epoch.
    pub(crate) started: u64,
    pub(crate) refreshed: u64,
}

/// A value without spaces or `=`, so that the description parses back.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '=' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(100)
        .collect();
    if t.is_empty() { "unknown".into() } else { t }
}

impl Holder {
    pub(crate) fn description(&self) -> String {
        let mut s = format!(
            "{PREFIX} id={} stack={} user={} host={} pid={}",
            token(&self.id),
            token(&self.stack),
            token(&self.user),
            token(&self.host),
            self.pid
        );
        if let Some(start) = self.pid_start {
            s.push_str(&format!(" pid_start={start}"));
        }
        s.push_str(&format!(
            " command={} started={} refreshed={}",
            token(&self.command),
            self.started,
            self.refreshed
        ));
        s
    }

    /// `None` when the description is not a lock's (edited by hand, or another tool's rule).
    pub(crate) fn parse(description: &str) -> Option<Holder> {
        let rest = description.strip_prefix(PREFIX)?;
        let mut h = Holder {
            id: String::new(),
            stack: String::new(),
            user: String::new(),
            host: String::new(),
            pid: 0,
            pid_start: None,
            command: String::new(),
            started: 0,
            refreshed: 0,
        };
        let (mut has_id, mut has_pid, mut has_refreshed) = (false, false, false);
        for pair in rest.split_whitespace() {
            let (k, v) = pair.split_once('=')?;
            match k {
                "id" => {
                    h.id = v.to_string();
                    has_id = is_lock_id(v);
                }
                "stack" => h.stack = v.to_string(),
                "user" => h.user = v.to_string(),
                "host" => h.host = v.to_string(),
                "pid" => {
                    h.pid = v.parse().ok()?;
                    has_pid = true;
                }
                "pid_start" => h.pid_start = v.parse().ok(),
                "command" => h.command = v.to_string(),
                "started" => h.started = v.parse().ok()?,
                "refreshed" => {
                    h.refreshed = v.parse().ok()?;
                    has_refreshed = true;
                }
                // A later natgw may write more: not a reason to call the lock unreadable.
                _ => {}
            }
        }
        (has_id && has_pid && has_refreshed).then_some(h)
    }

    /// "alice on build-7 (pid 4242), running apply since 2026-11-30 10:02:11 UTC"
    pub(crate) fn who(&self) -> String {
        format!(
            "{} on {} (pid {}), running {} since {}",
            self.user,
            self.host,
            self.pid,
            self.command,
            utc(self.started)
        )
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.who())
    }
}

/// Lock IDs are what `force-unlock` takes on the command line: letters, digits and hyphens only.
pub(crate) fn is_lock_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `2026-11-30 10:02:11 UTC`
pub(crate) fn utc(unix: u64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{unix} (Unix time)"))
}

/// Why a lock may be broken without asking anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stale {
    /// Nobody refreshed it for `STALE_AFTER`.
    NotRefreshed { for_secs: u64 },
    /// Its holder was a process on this host that no longer runs.
    HolderGone,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stale::NotRefreshed { for_secs } => {
                write!(f, "nobody has refreshed it for {for_secs}s")
            }
            Stale::HolderGone => f.write_str("its process no longer runs on this host"),
        }
    }
}

/// What this run knows about the machine it runs on, to judge a lock.
pub(crate) struct Here<'a> {
    pub(crate) host: &'a str,
    pub(crate) now: u64,
    /// Whether a process with this PID (and, when known, this start time) runs on this host.
    pub(crate) alive: &'a dyn Fn(u32, Option<u64>) -> bool,
}

/// Whether a held lock is stale. A lock refreshed "in the future" (clocks apart) counts as fresh: natgw would
/// rather wait than break a live lock.
pub(crate) fn stale(holder: &Holder, here: &Here<'_>) -> Option<Stale> {
    if holder.host == here.host && !(here.alive)(holder.pid, holder.pid_start) {
        return Some(Stale::HolderGone);
    }
    let quiet = here.now.saturating_sub(holder.refreshed);
    (quiet >= STALE_AFTER.as_secs()).then_some(Stale::NotRefreshed { for_secs: quiet })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            id: "3f2a-77c1".into(),
            stack: "gitlab-runners".into(),
            user: "alice".into(),
            host: "build-7".into(),
            pid: 4242,
            pid_start: Some(987_654),
            command: "apply".into(),
            started: 1_796_032_931,
            refreshed: 1_796_032_961,
        }
    }

    #[test]
    fn a_description_parses_back() {
        let h = holder();
        assert_eq!(Holder::parse(&h.description()), Some(h.clone()));
        let mut odd = h;
        odd.user = "Dr. Who=me".into();
        odd.pid_start = None;
        let back = Holder::parse(&odd.description()).expect("parses");
        assert_eq!(back.user, "Dr._Who_me");
        assert_eq!(back.pid_start, None);
    }

    #[test]
    fn other_descriptions_are_not_locks() {
        assert_eq!(Holder::parse(""), None);
        assert_eq!(
            Holder::parse("Managed by natgw, do not edit: natgw-managed=true"),
            None
        );
        assert_eq!(Holder::parse(&format!("{PREFIX} id=x")), None);
        assert_eq!(
            Holder::parse(&format!("{PREFIX} id=a_b pid=1 refreshed=1")),
            None
        );
        assert_eq!(
            Holder::parse(&format!("{PREFIX} id=ab pid=x refreshed=1")),
            None
        );
        assert!(Holder::parse(&format!("{PREFIX} id=ab pid=1 refreshed=1 future=yes")).is_some());
    }

    #[test]
    fn names_are_fixed_per_project_and_stack() {
        let n = name("p", "s");
        assert_eq!(n, name("p", "s"));
        assert_ne!(n, name("p", "t"));
        assert_ne!(n, name("q", "s"));
        // No ambiguity between ("ab", "c") and ("a", "bc").
        assert_ne!(name("ab", "c"), name("a", "bc"));
        assert!(n.starts_with("natgw-lock-") && n.len() == "natgw-lock-".len() + 10);
        assert!(!n.ends_with("-allow"));
        assert!(is_lock_name(&n));
        assert!(!is_lock_name("natgw-lock-0123456789-allow"));
        assert!(!is_lock_name("natgw-lock-abc-ssh"));
        assert!(!is_lock_name("natgw-lock-012345678g"));
    }

    #[test]
    fn staleness() {
        let h = holder();
        fn alive(_: u32, _: Option<u64>) -> bool {
            true
        }
        fn dead(_: u32, _: Option<u64>) -> bool {
            false
        }
        let at = |host, now, alive: &dyn Fn(u32, Option<u64>) -> bool| {
            stale(&h, &Here { host, now, alive })
        };
        // Fresh, on another host: held.
        assert_eq!(at("other", h.refreshed + 119, &alive), None);
        // Not refreshed for two minutes: stale wherever it is.
        assert_eq!(
            at("other", h.refreshed + 120, &alive),
            Some(Stale::NotRefreshed { for_secs: 120 })
        );
        // Same host, process gone: stale at once.
        assert_eq!(at("build-7", h.refreshed, &dead), Some(Stale::HolderGone));
        // Same host, process alive: held.
        assert_eq!(at("build-7", h.refreshed + 5, &alive), None);
        // Another host's dead PID says nothing about the holder.
        assert_eq!(at("other", h.refreshed + 5, &dead), None);
        // Clocks apart: a refresh "in the future" is fresh.
        assert_eq!(at("other", h.refreshed - 600, &alive), None);
    }

    #[test]
    fn lock_ids() {
        assert!(is_lock_id("3f2a-77c1"));
        assert!(!is_lock_id(""));
        assert!(!is_lock_id("a b"));
        assert!(!is_lock_id("a_b"));
        assert!(!is_lock_id(&"a".repeat(65)));
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert!(
            holder()
                .who()
                .starts_with("alice on build-7 (pid 4242), running apply since 2026-")
        );
    }
}
