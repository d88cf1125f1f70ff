//! The local emulator of the Compute Engine v1 and GKE v1 APIs: an HTTP server that speaks the real wire
//! format, so Google's Rust clients pointed at it with `.with_endpoint(url)` work unchanged.
//!
//! The world sits behind one mutex that is never held across an await; operations and instance boots are
//! derived from the clock, so nothing runs in the background.

mod api_error;
mod catalog;
mod compute;
mod fault;
mod filter;
mod gke;
mod health;
mod networkmanagement;
mod org_policy;
mod schema;
mod server;
mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use compute::Ctx;
pub(crate) use fault::FaultKind;
pub(crate) use org_policy::Constraint;
use world::{Timing, World, millis, now_ms};

/// The knobs of `natgw emulator`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Every request waits this long before it is answered.
    pub(crate) api_latency: Duration,
    /// Each operation takes this long from insert to DONE.
    pub(crate) op_latency: Duration,
    /// An instance goes from STAGING to RUNNING over this, counted from its operation being DONE.
    pub(crate) boot: Duration,
    /// The "startup script" never reports ready (the guest attribute never appears).
    pub(crate) boot_fail: bool,
    /// The share of requests that answer with an injected fault before doing anything.
    pub(crate) fault_rate: f64,
    /// The faults to inject, one chosen at random among those that apply to a request; empty: 429 and 503.
    pub(crate) fault_kinds: Vec<FaultKind>,
    /// Organization policy constraints enforced on every project.
    pub(crate) org_policies: Vec<Constraint>,
    /// Seed of the fault choice.
    pub(crate) seed: u64,
    pub(crate) request_log: Option<PathBuf>,
    pub(crate) state: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EmulatorError {
    #[error(
        "cannot listen on {addr}: {source} (is another emulator running there? use --listen 127.0.0.1:0)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the state file {path}: {source}")]
    ReadState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {path} is not an emulator state ({source}); remove it to start empty")]
    ParseState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the state file {path}: {source}")]
    WriteState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the request log {path}: {source}")]
    RequestLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid seed: {0}")]
    Seed(String),
    #[error("the emulator's server failed: {0}")]
    Serve(std::io::Error),
}

/// What `Emulator::seed` makes sure exists. Also read from `natgw emulator --seed-file FILE` (JSON with these
/// field names, e.g. `{"project": "p", "networks": [{"name": "n", "subnetworks": [{"name": "s",
/// "region": "europe-west1", "ip_cidr_range": "10.0.0.0/20"}]}], "clusters": [{"location": "europe-west1",
/// "name": "c", "network": "n", "node_pools": [{"name": "np", "tags": ["t"]}]}]}`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Seed {
    pub(crate) project: String,
    pub(crate) networks: Vec<SeedNetwork>,
    pub(crate) clusters: Vec<SeedCluster>,
    /// `project` is a Shared VPC service project: `networks` are made in the host (`{"shared_vpc": {"host":
    /// "h"}}`), and clusters name them there.
    pub(crate) shared_vpc: Option<SeedSharedVpc>,
}

/// A Shared VPC host and how the seed's project is associated with it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SeedSharedVpc {
    pub(crate) host: String,
    /// The service project is not attached to the host (yet).
    pub(crate) detached: bool,
    /// The host subnetworks (`REGION/NAME`) shared with the service project; `None`: all of them (Network
    /// User on the whole host project).
    pub(crate) shared_subnetworks: Option<Vec<String>>,
}

impl Seed {
    /// The demo world `natgw emulator --seed-project` creates, which tests and the try-out rely on:
    /// network `vpc-network`, subnetwork `runners` (europe-west1, 10.0.0.0/20), GKE cluster
    /// `gke-gitlab-runner` in europe-west1 with node pool `runners` tagged `existing-tag`.
    pub(crate) fn demo(project: &str) -> Seed {
        Seed {
            project: project.to_string(),
            networks: vec![SeedNetwork {
                name: "vpc-network".into(),
                subnetworks: vec![SeedSubnetwork {
                    name: "runners".into(),
                    region: "europe-west1".into(),
                    ip_cidr_range: "10.0.0.0/20".into(),
                }],
            }],
            clusters: vec![SeedCluster {
                location: "europe-west1".into(),
                name: "gke-gitlab-runner".into(),
                network: "vpc-network".into(),
                node_pools: vec![SeedNodePool {
                    name: "runners".into(),
                    tags: vec!["existing-tag".into()],
                }],
            }],
            shared_vpc: None,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SeedNetwork {
    pub(crate) name: String,
    pub(crate) subnetworks: Vec<SeedSubnetwork>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SeedSubnetwork {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) ip_cidr_range: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SeedCluster {
    pub(crate) location: String,
    pub(crate) name: String,
    pub(crate) network: String,
    pub(crate) node_pools: Vec<SeedNodePool>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SeedNodePool {
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
}

/// Shared by every request.
pub(crate) struct Shared {
    world: Mutex<World>,
    options: Options,
    timing: Timing,
    log: Option<Mutex<std::fs::File>>,
    rng: Mutex<StdRng>,
    /// Version of the world, bumped on every mutation (under the world lock).
    version: AtomicU64,
    /// The last version written to the state file.
    saved: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Serialises the world after a mutation; call with the world lock held, then `save` without it.
    fn snapshot(&self, world: &World) -> Option<(u64, String)> {
        self.options.state.as_ref()?;
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        serde_json::to_string(world).ok().map(|s| (v, s))
    }

    /// Writes a snapshot atomically (temp file + rename), skipping it if a newer one was written already.
    fn save(&self, snapshot: Option<(u64, String)>) -> Result<(), EmulatorError> {
        let (Some(path), Some((version, text))) = (&self.options.state, snapshot) else {
            return Ok(());
        };
        let mut saved = lock(&self.saved);
        if *saved >= version {
            return Ok(());
        }
        write_atomic(path, &text).map_err(|source| EmulatorError::WriteState {
            path: path.clone(),
            source,
        })?;
        *saved = version;
        Ok(())
    }
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A running emulator.
pub(crate) struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Emulator {
    /// Binds `listen` (port 0 = a free one), loads `state` if the file exists, starts serving in a tokio task.
    pub(crate) async fn start(
        listen: SocketAddr,
        options: Options,
    ) -> Result<Emulator, EmulatorError> {
        let mut world = match &options.state {
            Some(path) if path.exists() => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| EmulatorError::ReadState {
                        path: path.clone(),
                        source,
                    })?;
                serde_json::from_str::<World>(&text).map_err(|source| {
                    EmulatorError::ParseState {
                        path: path.clone(),
                        source,
                    }
                })?
            }
            _ => World::default(),
        };
        let timing = Timing {
            op_ms: millis(options.op_latency),
            boot_ms: millis(options.boot),
            boot_fail: options.boot_fail,
        };
        world.settle(now_ms(), timing);
        let log = match &options.request_log {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| EmulatorError::RequestLog {
                        path: path.clone(),
                        source,
                    })?,
            )),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            rng: Mutex::new(StdRng::seed_from_u64(options.seed)),
            options,
            timing,
            log,
            version: AtomicU64::new(0),
            saved: Mutex::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = server::router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Emulator {
            shared,
            addr,
            stop,
            task,
        })
    }

    /// `http://HOST:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Idempotently creates what is missing (never errors on what exists): project, networks with their
    /// subnetworks (and Google's auto-created routes), GKE clusters with node pools. Saves state.
    pub(crate) fn seed(&self, seed: &Seed) -> Result<(), EmulatorError> {
        let p = seed.project.as_str();
        compute::check_name("project", p)
            .or(if p.is_empty() { Err(()) } else { Ok(()) })
            .map_err(|()| EmulatorError::Seed("the project ID is empty".into()))?;
        let query = BTreeMap::new();
        let ctx = Ctx {
            now: now_ms(),
            timing: Timing {
                op_ms: 0,
                ..self.shared.timing
            },
            query: &query,
            policies: &[],
        };
        let service = p;
        let p = match &seed.shared_vpc {
            Some(x) if x.host.is_empty() => {
                return Err(EmulatorError::Seed("the host project ID is empty".into()));
            }
            Some(x) => x.host.as_str(),
            None => p,
        };
        let snapshot = {
            let mut w = lock(&self.shared.world);
            if let Some(x) = &seed.shared_vpc {
                w.xpn.hosts.insert(p.to_string());
                if x.detached {
                    w.xpn.services.remove(service);
                } else {
                    w.xpn.services.insert(service.to_string(), p.to_string());
                }
                if let Some(shared) = &x.shared_subnetworks {
                    for net in &seed.networks {
                        for sub in &net.subnetworks {
                            let path = format!(
                                "projects/{p}/regions/{}/subnetworks/{}",
                                sub.region, sub.name
                            );
                            let key = format!("{}/{}", sub.region, sub.name);
                            let users = w.xpn.subnet_users.entry(path).or_default();
                            if shared.contains(&key) {
                                users.insert(service.to_string());
                            } else {
                                users.remove(service);
                            }
                        }
                    }
                }
            }
            for net in &seed.networks {
                compute::check_name("network", &net.name)
                    .map_err(|e| EmulatorError::Seed(e.message))?;
                let path = format!("projects/{p}/global/networks/{}", net.name);
                if !w.resources.contains_key(&path) {
                    compute::create_network(
                        &mut w,
                        &ctx,
                        p,
                        json!({"name": net.name, "autoCreateSubnetworks": false}),
                        &path,
                    );
                }
                for sub in &net.subnetworks {
                    compute::check_name("subnetwork", &sub.name)
                        .map_err(|e| EmulatorError::Seed(e.message))?;
                    if !catalog::region_exists(&sub.region) {
                        return Err(EmulatorError::Seed(format!(
                            "unknown region {}",
                            sub.region
                        )));
                    }
                    if sub
                        .ip_cidr_range
                        .parse::<crate::net::Ipv4Net>()
                        .map_or(true, |n| n.prefix() > 29)
                    {
                        return Err(EmulatorError::Seed(format!(
                            "bad range {}",
                            sub.ip_cidr_range
                        )));
                    }
                    let sub_path = format!(
                        "projects/{p}/regions/{}/subnetworks/{}",
                        sub.region, sub.name
                    );
                    if !w.resources.contains_key(&sub_path) {
                        compute::create_subnetwork(
                            &mut w,
                            &ctx,
                            p,
                            &sub.region,
                            json!({"name": sub.name, "network": format!("projects/{p}/global/networks/{}", net.name), "ipCidrRange": sub.ip_cidr_range}),
                            &sub_path,
                        );
                    }
                }
            }
            let host = p;
            let p = service;
            for c in &seed.clusters {
                compute::check_name("cluster", &c.name)
                    .map_err(|e| EmulatorError::Seed(e.message))?;
                if !catalog::region_exists(&c.location)
                    && catalog::zone_region(&c.location).is_none()
                {
                    return Err(EmulatorError::Seed(format!(
                        "unknown location {} of cluster {}",
                        c.location, c.name
                    )));
                }
                let path = format!("projects/{p}/locations/{}/clusters/{}", c.location, c.name);
                let pools: Vec<Value> = c
                    .node_pools
                    .iter()
                    .map(|np| json!({"name": np.name, "initialNodeCount": 1, "config": {"tags": np.tags}}))
                    .collect();
                if w.clusters.contains_key(&path) {
                    for np in pools {
                        gke::ensure_pool(&mut w, &ctx, &path, np);
                    }
                } else {
                    let network = if host == p {
                        c.network.clone()
                    } else {
                        world::resolve_ref(&c.network, host, "global", "networks")
                    };
                    gke::create_cluster_value(
                        &mut w,
                        &ctx,
                        p,
                        &c.location,
                        json!({"name": c.name, "network": network, "nodePools": pools}),
                    );
                }
            }
            self.shared.snapshot(&w)
        };
        self.shared.save(snapshot)
    }

    /// Stops serving (in-flight requests finish) and saves state.
    pub(crate) async fn shutdown(self) -> Result<(), EmulatorError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(EmulatorError::Serve(e)),
            Err(e) => return Err(EmulatorError::Serve(std::io::Error::other(e.to_string()))),
        }
        let snapshot = {
            let w = lock(&self.shared.world);
            self.shared.snapshot(&w)
        };
        self.shared.save(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        Seed::demo("p1")
    }

    #[tokio::test]
    async fn start_seed_shutdown_and_restart_from_state() {
        let dir = std::env::temp_dir().join(format!(
            "natgw-emu-unit-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let state = dir.join("state.json");
        let options = Options {
            state: Some(state.clone()),
            ..Options::default()
        };
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let emu = Emulator::start(listen, options.clone())
            .await
            .expect("start");
        assert!(emu.url().starts_with("http://127.0.0.1:"));
        emu.seed(&seed()).expect("seed");
        emu.seed(&seed()).expect("seeding again is a no-op");
        let count = |e: &Emulator| {
            let w = lock(&e.shared.world);
            (w.resources.len(), w.clusters.len())
        };
        let first = count(&emu);
        assert_eq!(
            first,
            (11, 1),
            "network, subnetwork, two routes, the node pool's template and its group and instance group in \
             each of three zones; one cluster"
        );
        let networks = google_cloud_compute_v1::client::Networks::builder()
            .with_endpoint(emu.url())
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .build()
            .await
            .expect("client");
        let n = networks
            .get()
            .set_project("p1")
            .set_network("vpc-network")
            .send()
            .await
            .expect("served");
        assert_eq!(n.subnetworks.len(), 1);
        // The groups made the node VMs while the request was answered.
        let served = count(&emu);
        assert_eq!(served, (14, 1), "three node VMs more");
        emu.shutdown().await.expect("shutdown");
        assert!(state.exists());
        let emu = Emulator::start(listen, options).await.expect("restart");
        assert_eq!(count(&emu), served);
        emu.shutdown().await.expect("shutdown");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_broken_state_file_is_reported() {
        let dir =
            std::env::temp_dir().join(format!("natgw-emu-bad-{}-{}", std::process::id(), now_ms()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let state = dir.join("state.json");
        std::fs::write(&state, "not json").expect("write");
        let options = Options {
            state: Some(state),
            ..Options::default()
        };
        let err = Emulator::start("127.0.0.1:0".parse().expect("addr"), options)
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, EmulatorError::ParseState { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
