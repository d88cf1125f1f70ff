//! Holding the stack lock for a run: take it (waiting up to `--lock-timeout`, breaking a stale one with a
//! warning), keep it fresh while the run lasts, give it back at the end. See `model::lock` for the why.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::gcp::lock::{LockRule, Take};
use crate::gcp::{Cloud, GcpError};
use crate::model::lock::{self, Here, Holder};

#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// `--lock=false`: no lock at all.
    pub(crate) enabled: bool,
    /// `--lock-timeout`: how long to wait for a held lock; zero fails at once.
    pub(crate) timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: Duration::ZERO,
        }
    }
}

/// Who this run is, for the lock's description: read once at the edge.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) user: String,
    pub(crate) host: String,
    pub(crate) command: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "the stack \"{stack}\" is locked by {who} (lock ID {id}, firewall rule {rule} in project {project}): another natgw run is changing it.\nWait for it to finish, or use --lock-timeout to wait. If that run is known to be gone, run:\n  natgw force-unlock {id}"
    )]
    Locked {
        stack: String,
        who: String,
        id: String,
        rule: String,
        project: String,
    },
    #[error(
        "the stack lock's firewall rule {rule} in project {project} exists but its description is not natgw's ({description:?}): if no natgw run is under way, delete that rule"
    )]
    Unreadable {
        rule: String,
        project: String,
        description: String,
    },
    #[error("no lock is held on stack \"{stack}\" (firewall rule {rule} in project {project})")]
    NotLocked {
        stack: String,
        rule: String,
        project: String,
    },
    #[error("the lock on stack \"{stack}\" has ID {held}, not {given}: it is held by {who}")]
    OtherId {
        stack: String,
        held: String,
        given: String,
        who: String,
    },
    #[error("\"{0}\" is not a lock ID: lock IDs are letters, digits and hyphens")]
    BadId(String),
    #[error(transparent)]
    Gcp(#[from] GcpError),
}

/// A lock this run holds. Drop it through `release`; if the run dies instead, the lock goes stale.
pub(crate) struct Held {
    cloud: Cloud,
    rule: String,
    holder: Arc<Mutex<Holder>>,
    refresher: tokio::task::JoinHandle<()>,
    /// Set when a refresh found the lock gone or someone else's (broken by force-unlock).
    lost: Arc<std::sync::atomic::AtomicBool>,
}

/// What happens to the lock, for the frontend to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A held lock is being waited for.
    Waiting { who: String },
    /// A stale lock was broken.
    BrokeStale { who: String, why: String },
    /// `--lock=false`: this run takes no lock.
    Disabled,
    /// The lock was no longer this run's when it ended (broken by force-unlock, or as stale).
    Lost { id: String },
    /// The release failed: the lock stays until it goes stale or is force-unlocked.
    NotReleased { id: String, why: String },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A new lock ID: short, random, letters, digits and hyphens.
fn new_id() -> String {
    let b: [u8; 8] = rand::random();
    let h = crate::hex::encode(&b);
    format!("{}-{}", &h[..8], &h[8..])
}

/// The kernel's start time of a process (`/proc/PID/stat`, field 22), to tell a PID's reuse apart.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // A zombie (killed, not yet reaped by its parent) holds nothing any more.
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the process runs on this host. Without /proc (not Linux) natgw cannot tell, and says alive: a
/// lock is then broken only by age.
fn alive(pid: u32, start: Option<u64>) -> bool {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return true;
    }
    match (process_start(pid), start) {
        (None, _) => false,
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
    }
}

/// Takes the lock on `stack`, whose rule lives in `cloud`'s project on `network`.
pub(crate) async fn acquire(
    cloud: &Cloud,
    stack: &str,
    network: &str,
    me: &Identity,
    options: &Options,
    notice: &(dyn Fn(Notice) + Send + Sync),
) -> Result<Held, LockError> {
    let rule = lock::name(cloud.project(), stack);
    let pid = std::process::id();
    let started = now();
    let holder = Holder {
        id: new_id(),
        stack: stack.to_string(),
        user: me.user.clone(),
        host: me.host.clone(),
        pid,
        pid_start: process_start(pid),
        command: me.command.clone(),
        started,
        refreshed: started,
    };
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut told_waiting = false;
    loop {
        let held = match cloud.take_lock(&rule, network, &holder).await? {
            Take::Taken => return Ok(start(cloud, rule, holder)),
            Take::Held(None) => continue,
            Take::Held(Some(held)) => held,
        };
        let other = readable(&rule, cloud.project(), held)?;
        let here = Here {
            host: &me.host,
            now: now(),
            alive: &alive,
        };
        if let Some(why) = lock::stale(&other, &here) {
            notice(Notice::BrokeStale {
                who: other.who(),
                why: why.to_string(),
            });
            cloud.delete_lock(&rule, &other.id, true).await?;
            continue;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(LockError::Locked {
                stack: stack.to_string(),
                who: other.who(),
                id: other.id,
                rule,
                project: cloud.project().to_string(),
            });
        }
        if !told_waiting {
            notice(Notice::Waiting { who: other.who() });
            told_waiting = true;
        }
        tokio::time::sleep(left.min(Duration::from_secs(5))).await;
    }
}

fn readable(rule: &str, project: &str, held: LockRule) -> Result<Holder, LockError> {
    held.holder.ok_or_else(|| LockError::Unreadable {
        rule: rule.to_string(),
        project: project.to_string(),
        description: held.description,
    })
}

fn start(cloud: &Cloud, rule: String, holder: Holder) -> Held {
    let holder = Arc::new(Mutex::new(holder));
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refresher = {
        let (cloud, rule, holder, lost) =
            (cloud.clone(), rule.clone(), holder.clone(), lost.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(lock::REFRESH_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Ok(mut h) = holder.lock().map(|h| h.clone()) else {
                    return;
                };
                h.refreshed = now();
                // Refresh only a lock that is still ours: one broken by force-unlock stays broken.
                match cloud.read_lock(&rule).await {
                    Ok(Some(LockRule {
                        holder: Some(current),
                        ..
                    })) if current.id == h.id => {}
                    Ok(_) => {
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    // A passing failure: the next tick tries again, well before the lock goes stale.
                    Err(_) => continue,
                }
                if cloud.refresh_lock(&rule, &h).await.is_ok()
                    && let Ok(mut shared) = holder.lock()
                {
                    *shared = h;
                }
            }
        })
    };
    Held {
        cloud: cloud.clone(),
        rule,
        holder,
        refresher,
        lost,
    }
}

impl Held {
    pub(crate) fn id(&self) -> String {
        self.holder.lock().map(|h| h.id.clone()).unwrap_or_default()
    }

    /// A release that an interrupt handler can send while the run still owns `self`: the delete is sent,
    /// not waited for, and only if the lock is still this run's.
    pub(crate) fn releaser(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (cloud, rule, id) = (self.cloud.clone(), self.rule.clone(), self.id());
        async move {
            let _ = cloud.delete_lock(&rule, &id, false).await;
        }
    }

    /// Gives the lock back. Returns whether it was still this run's (false: someone broke it meanwhile).
    pub(crate) async fn release(self) -> Result<bool, LockError> {
        self.refresher.abort();
        let id = self.id();
        if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(false);
        }
        Ok(self.cloud.delete_lock(&self.rule, &id, false).await?)
    }
}

/// Who holds the lock on `stack` now, if anyone.
pub(crate) async fn holder(cloud: &Cloud, stack: &str) -> Result<Option<Holder>, LockError> {
    let rule = lock::name(cloud.project(), stack);
    match cloud.read_lock(&rule).await? {
        None => Ok(None),
        Some(held) => readable(&rule, cloud.project(), held).map(Some),
    }
}

/// The holder of the stack's lock, if the lock has this ID.
async fn check_id(cloud: &Cloud, stack: &str, id: &str) -> Result<Holder, LockError> {
    let rule = lock::name(cloud.project(), stack);
    let Some(held) = holder(cloud, stack).await? else {
        return Err(LockError::NotLocked {
            stack: stack.to_string(),
            rule,
            project: cloud.project().to_string(),
        });
    };
    if held.id != id {
        return Err(LockError::OtherId {
            stack: stack.to_string(),
            held: held.id.clone(),
            given: id.to_string(),
            who: held.who(),
        });
    }
    Ok(held)
}

/// `natgw force-unlock ID`: deletes the lock if it has that ID (`delete_lock` checks the ID again just
/// before the delete, so a lock retaken meanwhile survives).
pub(crate) async fn force_unlock(
    cloud: &Cloud,
    stack: &str,
    id: &str,
) -> Result<Holder, LockError> {
    if !lock::is_lock_id(id) {
        return Err(LockError::BadId(id.to_string()));
    }
    let held = check_id(cloud, stack, id).await?;
    cloud
        .delete_lock(&lock::name(cloud.project(), stack), id, true)
        .await?;
    Ok(held)
}

/// `natgw force-unlock LOCK_ID [--force]`.
#[derive(Clone, Debug)]
pub(crate) struct ForceUnlockOptions {
    pub(crate) config: std::path::PathBuf,
    pub(crate) connect: super::ConnectOptions,
    pub(crate) id: String,
    /// Do not ask.
    pub(crate) force: bool,
    /// Whether the frontend can ask (a terminal).
    pub(crate) can_ask: bool,
}

/// How a force-unlock ended.
#[derive(Debug)]
pub(crate) enum Unlocked {
    /// The lock of this holder is gone.
    Done(Holder),
    /// The user said no.
    Cancelled,
}

/// Where the stack's lock rule lives: the project that holds the first gateway's network (by name), and that
/// network. With Shared VPC that is the host project, since a service project usually has no network of its
/// own; two service projects that use the same stack name on one host then share one lock, which only makes
/// their runs wait for each other.
pub(super) fn place(cloud: &Cloud, loaded: &super::context::Loaded) -> Option<(Cloud, String)> {
    let gw = loaded.config.gateways.values().next()?;
    let cloud = match crate::model::desired::host_project(cloud.project(), gw) {
        Some(host) => cloud.for_project(host),
        None => cloud.clone(),
    };
    Some((cloud, gw.network.clone()))
}

/// Removes the stack's lock if it has the given ID, after asking (`confirm`) unless `--force`.
pub(crate) fn force_unlock_stack(
    options: &ForceUnlockOptions,
    frontend: &std::sync::Arc<dyn super::Frontend>,
    confirm: &(dyn Fn(&Holder) -> Result<bool, super::OpsError> + Sync),
) -> Result<Unlocked, super::OpsError> {
    if !lock::is_lock_id(&options.id) {
        return Err(LockError::BadId(options.id.clone()).into());
    }
    // Without a terminal nobody can confirm: refuse before contacting anything, as Terraform does.
    if !options.force && !options.can_ask {
        return Err(super::OpsError::Message(format!(
            "no terminal to confirm the force-unlock: if the holder of lock {} is known to be gone, run natgw force-unlock {} --force",
            options.id, options.id
        )));
    }
    let loaded = super::context::load(&options.config)?;
    super::runtime(Some(2))?.block_on(async {
        let session = super::session::Session::open(&options.connect, &loaded, frontend).await?;
        let result = async {
            let (cloud, _) = place(&session.cloud, &loaded).ok_or_else(|| {
                super::OpsError::Message("the config has no gateway, so no stack lock".into())
            })?;
            let cloud = &cloud;
            let stack = &loaded.config.stack;
            let held = check_id(cloud, stack, &options.id).await?;
            if !options.force && !confirm(&held)? {
                return Ok(Unlocked::Cancelled);
            }
            Ok(Unlocked::Done(
                force_unlock(cloud, stack, &options.id).await?,
            ))
        }
        .await;
        session.finish().await?;
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lock_ids() {
        let id = new_id();
        assert!(lock::is_lock_id(&id), "{id}");
        assert_ne!(id, new_id());
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let pid = std::process::id();
        let start = process_start(pid);
        assert!(start.is_some());
        assert!(alive(pid, start));
        assert!(!alive(pid, start.map(|s| s + 1)));
        // PIDs above the kernel's limit (4194304) never exist.
        assert!(!alive(4_194_305, None));
    }
}
