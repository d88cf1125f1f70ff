//! The only code that knows Google's APIs: clients, operations, and the mapping between the wire and the model.

pub(crate) mod auth;
mod calls;
mod calls_ha;
#[cfg(test)]
mod cloud_tests;
pub(crate) mod lock;
pub(crate) mod observe;
pub(crate) mod policy;
mod retry;
mod wire;
mod wire_ha;

use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::Credentials;
use google_cloud_compute_v1::client::{
    Addresses, Firewalls, GlobalOperations, Instances, RegionOperations, Routes, ZoneOperations,
};
use google_cloud_container_v1::client::ClusterManager;

pub(crate) use calls::{OwnerCheck, Ready, SerialChunk};
pub(crate) use calls_ha::BackendHealth;
pub(crate) use observe::HostScope;
pub(crate) use wire::NextHop;

/// Where natgw sends its API calls, how it authenticates, how long it retries and waits, and who hears what it
/// waits for.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    /// `None`: Google's own endpoints.
    pub(crate) endpoint: Option<String>,
    pub(crate) credentials: Credentials,
    pub(crate) retry: retry::Settings,
    pub(crate) notices: Notices,
}

impl Connection {
    pub(crate) fn new(endpoint: Option<String>, credentials: Credentials) -> Self {
        Self {
            endpoint,
            credentials,
            retry: retry::Settings::default(),
            notices: Notices::default(),
        }
    }
}

/// What natgw says while it waits on Google, for the output layer to show (this layer prints nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// GKE refused a node-pool change because another operation runs on the cluster; natgw waits for it.
    ClusterBusy {
        node_pool: String,
        /// The operation GKE named, when it did.
        operation: Option<String>,
        limit: Duration,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::ClusterBusy {
                node_pool,
                operation,
                limit,
            } => write!(
                f,
                "node pool {node_pool}: waiting for GKE operation {} on its cluster to finish (up to {}s; --cluster-busy-timeout)",
                operation.as_deref().unwrap_or("(unnamed)"),
                limit.as_secs()
            ),
        }
    }
}

type Listener = dyn Fn(&Notice) + Send + Sync;

/// Where notices go: nowhere unless the caller says.
#[derive(Clone, Default)]
pub(crate) struct Notices(Option<Arc<Listener>>);

impl Notices {
    pub(crate) fn new(f: impl Fn(&Notice) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    pub(super) fn send(&self, notice: &Notice) {
        if let Some(f) = &self.0 {
            f(notice);
        }
    }
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notices(on)"
        } else {
            "Notices(off)"
        })
    }
}

/// Clients for one project.
#[derive(Clone, Debug)]
pub(crate) struct Cloud {
    project: String,
    addresses: Addresses,
    firewalls: Firewalls,
    instances: Instances,
    routes: Routes,
    gke: ClusterManager,
    /// Built on first use (a plan never waits for an operation), shared by every clone.
    ops: Arc<tokio::sync::OnceCell<OpsClients>>,
    /// The clients of a gateway in several zones, built on first use.
    ha: Arc<tokio::sync::OnceCell<calls_ha::HaClients>>,
    conn: Arc<Connection>,
    /// Longest wait for one operation.
    op_deadline: Duration,
    /// Longest wait for another GKE operation on a cluster.
    cluster_busy_timeout: Duration,
}

/// The clients of Compute's operations.
#[derive(Clone, Debug)]
struct OpsClients {
    zone: ZoneOperations,
    region: RegionOperations,
    global: GlobalOperations,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GcpError {
    #[error("{context}: {message}")]
    Api {
        context: String,
        status: Option<u16>,
        message: String,
    },
    #[error("{context}: the operation failed: {message}")]
    Operation {
        context: String,
        status: Option<u16>,
        message: String,
    },
    #[error("{context}: Google's answer was not what natgw expected: {message}")]
    Unexpected { context: String, message: String },
    #[error("{context}: gave up after {}s", .after.as_secs())]
    Deadline { context: String, after: Duration },
    #[error(
        "{context}: GKE operation {} kept the cluster busy for {}s; natgw stopped waiting (--cluster-busy-timeout sets how long it waits)",
        .operation.as_deref().unwrap_or("(unnamed)"),
        .after.as_secs()
    )]
    ClusterBusy {
        context: String,
        operation: Option<String>,
        after: Duration,
    },
    #[error("{context}: {}", .violations.iter().map(|v| policy::explain(v, .resource.as_deref())).collect::<Vec<_>>().join("; "))]
    OrgPolicy {
        context: String,
        /// The resource the exception is for: `projects/P/zones/Z/instances/N`.
        resource: Option<String>,
        violations: Vec<policy::Violation>,
    },
    #[error("cannot set up the Google API clients: {0}")]
    Setup(String),
    #[error(transparent)]
    Credentials(#[from] auth::AuthError),
}

impl GcpError {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            GcpError::Api { status, .. } | GcpError::Operation { status, .. } => *status,
            _ => None,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Names the resource an organization policy refusal is about, for the exception to ask for.
    fn for_resource(self, name: String) -> Self {
        match self {
            GcpError::OrgPolicy {
                context,
                violations,
                ..
            } => GcpError::OrgPolicy {
                context,
                resource: Some(name),
                violations,
            },
            other => other,
        }
    }
}

/// Builds one client with natgw's endpoint, credentials and retry policy.
macro_rules! client {
    ($ty:ty, $conn:expr) => {{
        let conn: &Connection = $conn;
        let mut b = <$ty>::builder()
            .with_credentials(conn.credentials.clone())
            .with_retry_policy(conn.retry.policy())
            .with_backoff_policy(conn.retry.backoff())
            .with_retry_throttler(conn.retry.throttler());
        if let Some(url) = &conn.endpoint {
            b = b.with_endpoint(url.clone());
        }
        b.build()
            .await
            .map_err(|e| GcpError::Setup(e.to_string()))?
    }};
}

/// Builds a client on a worker thread. Each build loads the system's root certificates (a few ms of CPU), so
/// the clients are built in parallel rather than one after the other.
macro_rules! spawn_client {
    ($ty:ty, $conn:expr) => {{
        let conn: Connection = Connection::clone($conn);
        tokio::spawn(async move { Ok::<$ty, GcpError>(client!($ty, &conn)) })
    }};
}

/// `natgw check`'s reads (after the macros it uses).
pub(crate) mod check;

async fn joined<T>(h: tokio::task::JoinHandle<Result<T, GcpError>>) -> Result<T, GcpError> {
    h.await.map_err(|e| GcpError::Setup(e.to_string()))?
}

impl Cloud {
    pub(crate) async fn connect(project: &str, conn: &Connection) -> Result<Cloud, GcpError> {
        let (addresses, firewalls, instances, routes, gke) = (
            spawn_client!(Addresses, conn),
            spawn_client!(Firewalls, conn),
            spawn_client!(Instances, conn),
            spawn_client!(Routes, conn),
            spawn_client!(ClusterManager, conn),
        );
        Ok(Cloud {
            project: project.to_string(),
            addresses: joined(addresses).await?,
            firewalls: joined(firewalls).await?,
            instances: joined(instances).await?,
            routes: joined(routes).await?,
            gke: joined(gke).await?,
            ops: Arc::new(tokio::sync::OnceCell::new()),
            ha: Arc::new(tokio::sync::OnceCell::new()),
            conn: Arc::new(conn.clone()),
            op_deadline: conn.retry.op_deadline,
            cluster_busy_timeout: conn.retry.cluster_busy_timeout,
        })
    }

    /// Builds the operation clients in the background, so that the first change does not wait for them.
    pub(crate) fn prepare_changes(&self) {
        let cloud = self.clone();
        tokio::spawn(async move {
            // A failure shows again, with its context, when a change needs the clients.
            let _ = cloud.ops().await;
        });
    }

    async fn ha(&self) -> Result<&calls_ha::HaClients, GcpError> {
        use google_cloud_compute_v1::client::{
            BackendServices, ForwardingRules, HealthChecks, InstanceGroupManagers,
            InstanceTemplates, RegionBackendServices, RegionHealthChecks,
        };
        self.ha
            .get_or_try_init(|| async {
                let conn = &self.conn;
                let (templates, groups, checks, all_checks, services, all_services, rules) = (
                    spawn_client!(InstanceTemplates, conn),
                    spawn_client!(InstanceGroupManagers, conn),
                    spawn_client!(RegionHealthChecks, conn),
                    spawn_client!(HealthChecks, conn),
                    spawn_client!(RegionBackendServices, conn),
                    spawn_client!(BackendServices, conn),
                    spawn_client!(ForwardingRules, conn),
                );
                Ok(calls_ha::HaClients {
                    templates: joined(templates).await?,
                    groups: joined(groups).await?,
                    checks: joined(checks).await?,
                    all_checks: joined(all_checks).await?,
                    services: joined(services).await?,
                    all_services: joined(all_services).await?,
                    rules: joined(rules).await?,
                })
            })
            .await
    }

    async fn ops(&self) -> Result<&OpsClients, GcpError> {
        self.ops
            .get_or_try_init(|| async {
                let (zone, region, global) = (
                    spawn_client!(ZoneOperations, &self.conn),
                    spawn_client!(RegionOperations, &self.conn),
                    spawn_client!(GlobalOperations, &self.conn),
                );
                Ok(OpsClients {
                    zone: joined(zone).await?,
                    region: joined(region).await?,
                    global: joined(global).await?,
                })
            })
            .await
    }
}

/// Maps a client error to natgw's, with what natgw was doing.
fn api_error(
    context: impl Into<String>,
) -> impl FnOnce(google_cloud_gax::error::Error) -> GcpError {
    move |outer| {
        let context = context.into();
        // When the retry policy gives up, the answer that counts is the last one, inside.
        let e = last_answer(&outer);
        let violations = policy::violations(messages(e).iter().map(String::as_str));
        if !violations.is_empty() {
            return GcpError::OrgPolicy {
                context,
                resource: None,
                violations,
            };
        }
        let status = e.http_status_code();
        let mut message = match e.status() {
            Some(s) if !s.message.is_empty() => match status {
                Some(code) => format!("{} (HTTP {code})", s.message),
                None => s.message.clone(),
            },
            _ => e.to_string(),
        };
        if retry::is_quota(e) {
            message.push_str(
                ": a quota, not a permission (the README's \"Prerequisites\" lists the quotas natgw needs)",
            );
        } else if let Some(hint) = auth::denied_hint(e) {
            message = format!("{message}: {hint}");
        }
        if outer.is_exhausted() {
            message.push_str("; natgw stopped retrying (--retry-timeout sets how long it tries)");
        }
        GcpError::Api {
            context,
            status,
            message,
        }
    }
}

/// Every message of an error: the top one and each of Compute's `errors[]` (which gax keeps as `ErrorInfo`
/// details with the message in their metadata), or the raw answer when it was not Google's error shape.
fn messages(e: &google_cloud_gax::error::Error) -> Vec<String> {
    use google_cloud_gax::error::rpc::StatusDetails;
    match e.status() {
        Some(s) => std::iter::once(s.message.clone())
            .chain(s.details.iter().filter_map(|d| match d {
                StatusDetails::ErrorInfo(info) => info.metadata.get("message").cloned(),
                _ => None,
            }))
            .collect(),
        None => e
            .http_payload()
            .map(|b| vec![String::from_utf8_lossy(b).into_owned()])
            .unwrap_or_default(),
    }
}

/// The innermost client error in `e`'s sources (`e` itself if there is none).
fn last_answer(e: &google_cloud_gax::error::Error) -> &google_cloud_gax::error::Error {
    let mut found = e;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(inner) = s.downcast_ref::<google_cloud_gax::error::Error>() {
            found = inner;
        }
        source = s.source();
    }
    found
}

/// A fresh request ID (a UUID, as Compute requires): the same ID is sent again on every retry of one call,
/// so that Google does the change once.
fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex = crate::hex::encode(&b);
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        (b[8] & 0x3) | 0x8,
        &hex[17..20],
        &hex[20..32]
    )
}

/// For tests: an emulator with `options` and the demo world, clients on it, and the example's `gitlab`
/// gateway.
#[cfg(test)]
pub(crate) async fn demo(
    options: crate::emulator::Options,
    tune: impl FnOnce(&mut Connection),
) -> (
    crate::emulator::Emulator,
    Cloud,
    crate::model::desired::DesiredGateway,
) {
    let emu =
        crate::emulator::Emulator::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), options)
            .await
            .expect("emulator");
    emu.seed(&crate::emulator::Seed::demo("natgw-test"))
        .expect("seed");
    let mut conn = Connection::new(Some(emu.url()), auth::anonymous());
    tune(&mut conn);
    let cloud = Cloud::connect("natgw-test", &conn).await.expect("clients");
    let text = include_str!("../../examples/gitlab-runner.toml");
    let cfg = crate::config::parse(std::path::Path::new("natgw.toml"), text).expect("example");
    let gw = crate::model::desired::gateway(
        "p",
        &cfg.stack,
        &cfg.gateways["gitlab"],
        "#!/bin/bash\n".into(),
    );
    (emu, cloud, gw)
}

/// For tests: the gateway's two addresses and its VM.
#[cfg(test)]
pub(crate) async fn demo_vm(cloud: &Cloud, gw: &crate::model::desired::DesiredGateway) {
    let ext = cloud
        .insert_address(&gw.external_address)
        .await
        .expect("external address");
    let int = cloud
        .insert_address(&gw.internal_address)
        .await
        .expect("internal address");
    cloud
        .insert_instance(&gw.instance, int, ext)
        .await
        .expect("instance");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuids() {
        let re = regex::Regex::new(
            "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
        )
        .expect("regex");
        for _ in 0..100 {
            let id = request_id();
            assert!(re.is_match(&id), "{id}");
        }
        assert_ne!(request_id(), request_id());
    }
}
