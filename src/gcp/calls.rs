//! Changes, and waiting for them: Compute operations through the `wait` endpoints, GKE operations polled
//! with backoff. A DONE operation that carries an error is a failure with Google's message.
//!
//! Every change here is idempotent: a delete that finds nothing has succeeded, and every Compute change
//! carries one `requestId` for all its retries.

use std::net::Ipv4Addr;
use std::time::Duration;

use google_cloud_compute_v1::model as gce;
use google_cloud_container_v1::model as gke;
use google_cloud_gax::options::RequestOptionsBuilder;
use tokio::time::{Instant, sleep};

use super::wire::{self, unhex};
use super::{Cloud, GcpError, api_error, request_id};
use crate::model::observed::Preconditions;
use crate::model::ownership::{self, Owner};
use crate::model::{Address, Firewall, Instance, NodePoolId, Route};

/// Where a Compute operation lives.
pub(super) enum Scope<'a> {
    Zone(&'a str),
    Region(&'a str),
    Global,
    /// Global, in another project: a Shared VPC host's firewall rules and routes.
    GlobalIn(&'a str),
}

/// How a delete makes sure that it removes only what this stack owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerCheck<'a> {
    /// Read the resource again and check that it carries this stack's marker.
    Read(&'a str),
    /// The caller observed the resource, with this stack's marker, moments ago.
    Observed,
}

/// The answer of one readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    Yes,
    /// Not written yet, or an older token.
    NotYet,
    /// constraints/compute.disableGuestAttributesAccess is enforced: read the serial console instead.
    GuestAttributesBlocked,
}

const GUEST_ATTRIBUTES_CONSTRAINT: &str = "constraints/compute.disableGuestAttributesAccess";

/// Output of a serial port, from `start` (where Google began, which may be later than asked) to `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SerialChunk {
    pub(crate) start: i64,
    pub(crate) contents: String,
    pub(crate) next: i64,
}

/// A power verb of one instance (`reset`, `start`, `resume`): the same request to another method, each a
/// builder type of its own.
macro_rules! instance_power {
    ($cloud:ident, $method:ident, $zone:expr, $name:expr, $doing:literal) => {{
        let send = $cloud
            .instances
            .$method()
            .set_project(&$cloud.project)
            .set_zone($zone)
            .set_instance($name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        $cloud
            .change(
                Scope::Zone($zone),
                &format!(concat!($doing, " instance {}"), $name),
                send,
            )
            .await
    }};
}

impl Cloud {
    pub(super) async fn wait(
        &self,
        scope: Scope<'_>,
        op: gce::Operation,
        context: &str,
    ) -> Result<(), GcpError> {
        let start = Instant::now();
        let mut op = op;
        let mut pause = Duration::from_millis(50);
        let mut last_call: Option<Instant> = None;
        loop {
            if op.status == Some(gce::operation::Status::Done) {
                return operation_result(&op, context);
            }
            // A wait that came back at once with the operation not done (Google's may) is not repeated at
            // once: natgw never spins on the API.
            if last_call.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            if start.elapsed() > self.op_deadline {
                return Err(GcpError::Deadline {
                    context: context.into(),
                    after: self.op_deadline,
                });
            }
            let name = op.name.clone().ok_or_else(|| GcpError::Unexpected {
                context: context.into(),
                message: "the operation has no name".into(),
            })?;
            last_call = Some(Instant::now());
            let p = &self.project;
            let ops = self.ops().await?;
            // `wait` is a POST, which the clients do not retry unless told: waiting again is harmless.
            let next = match scope {
                Scope::Zone(z) => {
                    ops.zone
                        .wait()
                        .set_project(p)
                        .set_zone(z)
                        .set_operation(name)
                        .with_idempotency(true)
                        .send()
                        .await
                }
                Scope::Region(r) => {
                    ops.region
                        .wait()
                        .set_project(p)
                        .set_region(r)
                        .set_operation(name)
                        .with_idempotency(true)
                        .send()
                        .await
                }
                Scope::Global | Scope::GlobalIn(_) => {
                    let p = match scope {
                        Scope::GlobalIn(other) => other,
                        _ => p,
                    };
                    ops.global
                        .wait()
                        .set_project(p)
                        .set_operation(name)
                        .with_idempotency(true)
                        .send()
                        .await
                }
            };
            op = next.map_err(api_error(format!("{context}: waiting for the operation")))?;
        }
    }

    /// Sends one Compute change and waits for its operation.
    pub(super) async fn change(
        &self,
        scope: Scope<'_>,
        context: &str,
        send: impl Future<Output = google_cloud_gax::Result<gce::Operation>>,
    ) -> Result<(), GcpError> {
        let op = send.await.map_err(api_error(context))?;
        self.wait(scope, op, context).await
    }

    /// Every delete has one shape: read the resource (gone already: done) and prove it carries this stack's
    /// marker, unless the caller has just observed it with the marker (`check`); delete it, wait. A 404
    /// anywhere means someone else finished the job.
    pub(super) async fn delete_owned<R>(
        &self,
        check: OwnerCheck<'_>,
        scope: Scope<'_>,
        context: &str,
        get: impl Future<Output = google_cloud_gax::Result<R>>,
        owner: impl FnOnce(R) -> Option<Owner>,
        delete: impl Future<Output = google_cloud_gax::Result<gce::Operation>>,
    ) -> Result<(), GcpError> {
        if let OwnerCheck::Read(stack) = check {
            match get.await {
                Ok(r) => ensure_owned(stack, owner(r), context)?,
                Err(e) if e.http_status_code() == Some(404) => return Ok(()),
                Err(e) => return Err(api_error(context)(e)),
            }
        }
        match delete.await {
            Ok(op) => ignore_not_found(self.wait(scope, op, context).await),
            Err(e) if e.http_status_code() == Some(404) => Ok(()),
            Err(e) => Err(api_error(context)(e)),
        }
    }

    /// Reserves an address and returns the IP Google gave it. Compute stores an address's labels only through
    /// `setLabels` (compute.v1.json, `Address.labels`: "These can only be added or modified by the setLabels
    /// method"), so the insert carries the ownership marker in `description` and the labels follow, with the
    /// fresh `labelFingerprint`. A run stopped between the two leaves an address that is still this stack's
    /// (by its marker); the next plan sets its labels in place.
    pub(crate) async fn insert_address(&self, a: &Address) -> Result<Ipv4Addr, GcpError> {
        let context = format!("creating address {}", a.name);
        let send = self
            .addresses
            .insert()
            .set_project(&self.project)
            .set_region(&a.region)
            .set_body(wire::address_to_wire(&self.project, a))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let sent = self.change(Scope::Region(&a.region), &context, send).await;
        let sent = match &a.subnetwork {
            Some(sub) => sent.map_err(|e| self.explain_shared_vpc(sub, e)),
            None => sent,
        };
        match sent {
            // An earlier, interrupted run may have made it: it is ours only if it carries our marker (below).
            Err(GcpError::Api {
                status: Some(409), ..
            })
            | Ok(()) => {}
            Err(e) => return Err(e),
        }
        let got = self
            .addresses
            .get()
            .set_project(&self.project)
            .set_region(&a.region)
            .set_address(&a.name)
            .send()
            .await
            .map_err(api_error(&context))?;
        let observed = wire::address_from_wire(&self.project, &got);
        if observed.owner.is_none() || observed.owner != Owner::from_labels(&a.labels) {
            return Err(GcpError::Unexpected {
                context,
                message: "an address with this name exists and this stack does not own it".into(),
            });
        }
        if observed.resource.labels != a.labels {
            self.set_address_labels(a, observed.preconditions.label_fingerprint.as_deref())
                .await?;
        }
        observed
            .resource
            .address
            .ok_or_else(|| GcpError::Unexpected {
                context,
                message: "the address has no IP".into(),
            })
    }

    async fn set_address_labels_once(
        &self,
        a: &Address,
        fingerprint: Option<String>,
    ) -> Result<(), GcpError> {
        let mut body = gce::RegionSetLabelsRequest::new().set_labels(a.labels.clone());
        if let Some(fp) = &fingerprint {
            body = body.set_label_fingerprint(unhex(fp));
        }
        let send = self
            .addresses
            .set_labels()
            .set_project(&self.project)
            .set_region(&a.region)
            .set_resource(&a.name)
            .set_body(body)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(
            Scope::Region(&a.region),
            &format!("updating the labels of address {}", a.name),
            send,
        )
        .await
    }

    pub(crate) async fn delete_address(
        &self,
        check: OwnerCheck<'_>,
        region: &str,
        name: &str,
    ) -> Result<(), GcpError> {
        let p = &self.project;
        let get = self
            .addresses
            .get()
            .set_project(p)
            .set_region(region)
            .set_address(name)
            .send();
        let delete = self
            .addresses
            .delete()
            .set_project(p)
            .set_region(region)
            .set_address(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |a: gce::Address| wire::address_owner(&a);
        self.delete_owned(
            check,
            Scope::Region(region),
            &format!("deleting address {name}"),
            get,
            owner,
            delete,
        )
        .await
    }

    /// The scope of a global resource on `network`: the network's project.
    pub(super) fn global_on<'a>(&'a self, network: &'a str) -> (&'a str, Scope<'a>) {
        let p = wire::network_project(&self.project, network);
        let scope = if p == self.project {
            Scope::Global
        } else {
            Scope::GlobalIn(p)
        };
        (p, scope)
    }

    /// Google's refusals of a Shared VPC host's subnetwork, with what to fix. `subnetwork` as the model names
    /// it; a subnetwork of the stack's own project leaves the error as it is.
    pub(super) fn explain_shared_vpc(&self, subnetwork: &str, e: GcpError) -> GcpError {
        let host = wire::network_project(&self.project, subnetwork);
        if host == self.project {
            return e;
        }
        let svc = &self.project;
        let hint = |message: &str, status: Option<u16>| {
            if message.contains("Cross-project references") {
                Some(format!(
                    "project {svc} is not attached to the Shared VPC host project {host}: attach it \
                     (gcloud compute shared-vpc associated-projects add {svc} --host-project {host}), or \
                     correct the gateway's network_project"
                ))
            } else if status == Some(403) && message.contains("compute.subnetworks.use") {
                Some(format!(
                    "subnetwork {subnetwork} is not shared with project {svc}: in {host}, grant \
                     roles/compute.networkUser on it to natgw's account (and the service project's \
                     Compute Engine service agent), or correct the gateway's subnetwork or network_project"
                ))
            } else {
                None
            }
        };
        let mut e = e;
        if let GcpError::Api {
            status, message, ..
        }
        | GcpError::Operation {
            status, message, ..
        } = &mut e
            && let Some(h) = hint(message, *status)
        {
            message.push_str("; ");
            message.push_str(&h);
        }
        e
    }

    /// ` in project P` when P is not the stack's own: errors name the Shared VPC host project.
    pub(super) fn in_project(&self, p: &str) -> String {
        if p == self.project {
            String::new()
        } else {
            format!(" in project {p}")
        }
    }

    pub(crate) async fn insert_firewall(&self, f: &Firewall) -> Result<(), GcpError> {
        let (p, scope) = self.global_on(&f.network);
        let send = self
            .firewalls
            .insert()
            .set_project(p)
            .set_body(wire::firewall_to_wire(p, f))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(
            scope,
            &format!("creating firewall rule {}{}", f.name, self.in_project(p)),
            send,
        )
        .await
    }

    /// `adopting`: the rule is named in the adopt table, and a rule without any natgw marker is taken over (the
    /// patch writes the marker); one of another stack never is.
    pub(crate) async fn patch_firewall(
        &self,
        stack: &str,
        f: &Firewall,
        adopting: bool,
    ) -> Result<(), GcpError> {
        let (p, scope) = self.global_on(&f.network);
        let context = format!("updating firewall rule {}{}", f.name, self.in_project(p));
        let got = self
            .firewalls
            .get()
            .set_project(p)
            .set_firewall(&f.name)
            .send()
            .await
            .map_err(api_error(&context))?;
        let owner = description_owner(got.description.as_deref());
        if !(adopting && owner.is_none()) {
            ensure_owned(stack, owner, &context)?;
        }
        let send = self
            .firewalls
            .patch()
            .set_project(p)
            .set_firewall(&f.name)
            .set_body(wire::firewall_to_wire(p, f))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(scope, &context, send).await
    }

    pub(crate) async fn delete_firewall(
        &self,
        check: OwnerCheck<'_>,
        f: &Firewall,
    ) -> Result<(), GcpError> {
        let name = &f.name;
        let (p, scope) = self.global_on(&f.network);
        let get = self
            .firewalls
            .get()
            .set_project(p)
            .set_firewall(name)
            .send();
        let delete = self
            .firewalls
            .delete()
            .set_project(p)
            .set_firewall(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |f: gce::Firewall| description_owner(f.description.as_deref());
        self.delete_owned(
            check,
            scope,
            &format!("deleting firewall rule {name}{}", self.in_project(p)),
            get,
            owner,
            delete,
        )
        .await
    }

    pub(crate) async fn insert_instance(
        &self,
        i: &Instance,
        network_ip: Ipv4Addr,
        nat_ip: Ipv4Addr,
    ) -> Result<(), GcpError> {
        let send = self
            .instances
            .insert()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_body(wire::instance_to_wire(&self.project, i, network_ip, nat_ip))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let sent = self
            .change(
                Scope::Zone(&i.zone),
                &format!("creating instance {}", i.name),
                send,
            )
            .await;
        sent.map_err(|e| self.explain_shared_vpc(&i.subnetwork, e))
            .map_err(|e| {
                e.for_resource(format!(
                    "projects/{}/zones/{}/instances/{}",
                    self.project, i.zone, i.name
                ))
            })
    }

    pub(crate) async fn delete_instance(
        &self,
        check: OwnerCheck<'_>,
        zone: &str,
        name: &str,
    ) -> Result<(), GcpError> {
        let p = &self.project;
        let get = self
            .instances
            .get()
            .set_project(p)
            .set_zone(zone)
            .set_instance(name)
            .send();
        let delete = self
            .instances
            .delete()
            .set_project(p)
            .set_zone(zone)
            .set_instance(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |i: gce::Instance| Owner::from_labels(&i.labels.into_iter().collect());
        self.delete_owned(
            check,
            Scope::Zone(zone),
            &format!("deleting instance {name}"),
            get,
            owner,
            delete,
        )
        .await
    }

    async fn set_instance_labels_once(
        &self,
        i: &Instance,
        fingerprint: Option<String>,
    ) -> Result<(), GcpError> {
        let mut body = gce::InstancesSetLabelsRequest::new().set_labels(i.labels.clone());
        if let Some(fp) = &fingerprint {
            body = body.set_label_fingerprint(unhex(fp));
        }
        let send = self
            .instances
            .set_labels()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_instance(&i.name)
            .set_body(body)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(
            Scope::Zone(&i.zone),
            &format!("updating the labels of instance {}", i.name),
            send,
        )
        .await
    }

    async fn set_instance_tags_once(
        &self,
        i: &Instance,
        fingerprint: Option<String>,
    ) -> Result<(), GcpError> {
        let mut body = gce::Tags::new().set_items(i.tags.clone());
        if let Some(fp) = &fingerprint {
            body = body.set_fingerprint(unhex(fp));
        }
        let send = self
            .instances
            .set_tags()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_instance(&i.name)
            .set_body(body)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(
            Scope::Zone(&i.zone),
            &format!("updating the network tags of instance {}", i.name),
            send,
        )
        .await
    }

    async fn set_instance_metadata_once(
        &self,
        i: &Instance,
        fingerprint: Option<String>,
    ) -> Result<(), GcpError> {
        let send = self
            .instances
            .set_metadata()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_instance(&i.name)
            .set_body(wire::metadata_to_wire(i, fingerprint.as_deref()))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(
            Scope::Zone(&i.zone),
            &format!("updating the metadata of instance {}", i.name),
            send,
        )
        .await
    }

    /// Compute refuses a label, tag or metadata change made with a stale fingerprint (412 `conditionNotMet`,
    /// at once or in the operation): someone changed the resource since natgw read it. natgw's values are
    /// whole (every label, every tag, every item), so it reads the fresh fingerprint and sends them again.
    async fn with_fresh_fingerprint<A, AF, R, RF>(
        &self,
        first: Option<&str>,
        attempt: A,
        reread: R,
    ) -> Result<(), GcpError>
    where
        A: Fn(Option<String>) -> AF,
        AF: Future<Output = Result<(), GcpError>>,
        R: Fn() -> RF,
        RF: Future<Output = Result<Option<String>, GcpError>>,
    {
        let mut fingerprint = first.map(str::to_string);
        for _ in 0..3 {
            match attempt(fingerprint.clone()).await {
                Err(e) if e.status() == Some(412) => fingerprint = reread().await?,
                other => return other,
            }
        }
        attempt(fingerprint).await
    }

    async fn read_instance(&self, i: &Instance) -> Result<Preconditions, GcpError> {
        let got = self
            .instances
            .get()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_instance(&i.name)
            .send()
            .await
            .map_err(api_error(format!("reading instance {}", i.name)))?;
        Ok(wire::instance_from_wire(&self.project, &got).preconditions)
    }

    pub(crate) async fn set_address_labels(
        &self,
        a: &Address,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let reread = || async {
            let got = self
                .addresses
                .get()
                .set_project(&self.project)
                .set_region(&a.region)
                .set_address(&a.name)
                .send()
                .await
                .map_err(api_error(format!("reading address {}", a.name)))?;
            Ok(wire::address_from_wire(&self.project, &got)
                .preconditions
                .label_fingerprint)
        };
        self.with_fresh_fingerprint(
            fingerprint,
            |fp| self.set_address_labels_once(a, fp),
            reread,
        )
        .await
    }

    pub(crate) async fn set_instance_labels(
        &self,
        i: &Instance,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let reread = || async { Ok(self.read_instance(i).await?.label_fingerprint) };
        self.with_fresh_fingerprint(
            fingerprint,
            |fp| self.set_instance_labels_once(i, fp),
            reread,
        )
        .await
    }

    pub(crate) async fn set_instance_tags(
        &self,
        i: &Instance,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let reread = || async { Ok(self.read_instance(i).await?.tags_fingerprint) };
        self.with_fresh_fingerprint(fingerprint, |fp| self.set_instance_tags_once(i, fp), reread)
            .await
    }

    /// Sets the startup script and its ready token. The script runs at boot: the caller restarts the VM.
    pub(crate) async fn set_instance_metadata(
        &self,
        i: &Instance,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let reread = || async { Ok(self.read_instance(i).await?.metadata_fingerprint) };
        self.with_fresh_fingerprint(
            fingerprint,
            |fp| self.set_instance_metadata_once(i, fp),
            reread,
        )
        .await
    }

    /// Sets the metadata right after a change of natgw's own (whose new fingerprint it has not seen): reads
    /// the fingerprint first, as compute.v1.json `Metadata.fingerprint` asks ("You must always provide an
    /// up-to-date fingerprint hash").
    pub(crate) async fn set_instance_metadata_fresh(&self, i: &Instance) -> Result<(), GcpError> {
        let fingerprint = self.read_instance(i).await?.metadata_fingerprint;
        self.set_instance_metadata(i, fingerprint.as_deref()).await
    }

    pub(crate) async fn reset_instance(&self, zone: &str, name: &str) -> Result<(), GcpError> {
        instance_power!(self, reset, zone, name, "restarting")
    }

    pub(crate) async fn start_instance(&self, zone: &str, name: &str) -> Result<(), GcpError> {
        instance_power!(self, start, zone, name, "starting")
    }

    /// Resumes a suspended VM (compute.v1.json `instances.resume`: "Resumes an instance that was suspended
    /// using the instances().suspend method"). The guest goes on where it was: no startup script runs.
    pub(crate) async fn resume_instance(&self, zone: &str, name: &str) -> Result<(), GcpError> {
        instance_power!(self, resume, zone, name, "resuming")
    }

    /// The VM's status (`RUNNING`, `STAGING`, ...).
    pub(crate) async fn instance_status(&self, zone: &str, name: &str) -> Result<String, GcpError> {
        let i = self
            .instances
            .get()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .send()
            .await
            .map_err(api_error(format!("reading instance {name}")))?;
        Ok(i.status
            .as_ref()
            .and_then(|s| s.name())
            .unwrap_or("UNKNOWN")
            .to_string())
    }

    /// Whether the VM's startup script reported `token` in the guest attribute `natgw/ready`.
    pub(crate) async fn guest_ready(
        &self,
        zone: &str,
        name: &str,
        token: &str,
    ) -> Result<Ready, GcpError> {
        let got = self
            .instances
            .get_guest_attributes()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .set_query_path("natgw/")
            .send()
            .await;
        match got {
            Ok(attrs) => {
                let items = attrs.query_value.map(|v| v.items).unwrap_or_default();
                let ready = items.iter().any(|e| {
                    e.namespace.as_deref() == Some("natgw")
                        && e.key.as_deref() == Some("ready")
                        && e.value.as_deref() == Some(token)
                });
                Ok(if ready { Ready::Yes } else { Ready::NotYet })
            }
            // Not written yet.
            Err(e) if e.http_status_code() == Some(404) => Ok(Ready::NotYet),
            Err(e) => {
                match api_error(format!("reading the guest attributes of instance {name}"))(e) {
                    GcpError::OrgPolicy { violations, .. }
                        if violations
                            .iter()
                            .any(|v| v.constraint == GUEST_ATTRIBUTES_CONSTRAINT) =>
                    {
                        Ok(Ready::GuestAttributesBlocked)
                    }
                    other => Err(other),
                }
            }
        }
    }

    /// Serial port 1 of a VM from byte `start` on (`instances.getSerialPortOutput`; `start` and `next` as
    /// compute.v1.json defines them: a start in discarded output comes back moved up to the oldest byte
    /// kept).
    pub(crate) async fn serial_output(
        &self,
        zone: &str,
        name: &str,
        start: i64,
    ) -> Result<SerialChunk, GcpError> {
        let context = format!("reading the serial port output of instance {name}");
        let got = self
            .instances
            .get_serial_port_output()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .set_port(1)
            .set_start(start)
            .send()
            .await
            .map_err(api_error(&context))
            .map_err(|e| {
                e.for_resource(format!(
                    "projects/{}/zones/{zone}/instances/{name}",
                    self.project
                ))
            })?;
        Ok(SerialChunk {
            start: got.start.unwrap_or(start),
            contents: got.contents.unwrap_or_default(),
            next: got.next.unwrap_or(start),
        })
    }

    pub(crate) async fn insert_route(
        &self,
        r: &Route,
        next_hop: wire::NextHop<'_>,
    ) -> Result<(), GcpError> {
        let (p, scope) = self.global_on(&r.network);
        let send = self
            .routes
            .insert()
            .set_project(p)
            .set_body(wire::route_to_wire(p, r, next_hop))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let context = format!("creating route {}{}", r.name, self.in_project(p));
        self.change(scope, &context, send).await
    }

    pub(crate) async fn delete_route(
        &self,
        check: OwnerCheck<'_>,
        r: &Route,
    ) -> Result<(), GcpError> {
        let name = &r.name;
        let (p, scope) = self.global_on(&r.network);
        let get = self.routes.get().set_project(p).set_route(name).send();
        let delete = self
            .routes
            .delete()
            .set_project(p)
            .set_route(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |r: gce::Route| description_owner(r.description.as_deref());
        self.delete_owned(
            check,
            scope,
            &format!("deleting route {name}{}", self.in_project(p)),
            get,
            owner,
            delete,
        )
        .await
    }

    /// Adds and removes network tags on a node pool, keeping its other tags. GKE has no requestId: the update
    /// carries the pool's etag, and a conflict (someone else changed the pool) re-reads it and tries again.
    /// `known`: the pool's tags and etag as just observed, which spare the first read.
    pub(crate) async fn update_node_pool_tags(
        &self,
        id: &NodePoolId,
        add: &[String],
        remove: &[String],
        known: Option<(&[String], &str)>,
    ) -> Result<(), GcpError> {
        let context = format!("updating the network tags of node pool {id}");
        let name = id.resource_name(&self.project);
        let mut busy = ClusterBusy::new(
            self.cluster_busy_timeout,
            (self.conn.retry.initial_delay * 10).min(Duration::from_secs(1)),
        );
        let mut conflicts = 0;
        let mut known = known;
        while conflicts < 5 {
            let (current, etag) = match known.take() {
                Some((tags, etag)) => (tags.to_vec(), etag.to_string()),
                None => {
                    let pool = self
                        .gke
                        .get_node_pool()
                        .set_name(&name)
                        .send()
                        .await
                        .map_err(api_error(&context))?;
                    let tags = pool
                        .config
                        .as_ref()
                        .map(|c| c.tags.clone())
                        .unwrap_or_default();
                    (tags, pool.etag)
                }
            };
            let tags = crate::model::with_tags(&current, add, remove);
            if tags == current {
                return Ok(());
            }
            let sent = self
                .gke
                .update_node_pool()
                .set_name(&name)
                .set_tags(gke::NetworkTags::new().set_tags(tags))
                .set_etag(etag.clone())
                .with_idempotency(true)
                .send()
                .await;
            let op = match sent {
                Ok(op) => op,
                // Someone changed the pool since natgw read it: read it again.
                Err(e) if matches!(e.http_status_code(), Some(409 | 412)) => {
                    conflicts += 1;
                    continue;
                }
                Err(e) if cluster_busy(&e) => {
                    busy.wait(&e, id, &self.conn.notices, &context).await?;
                    continue;
                }
                Err(e) => return Err(api_error(context)(e)),
            };
            match self.wait_gke(op, &id.location, &context).await {
                Err(GcpError::Operation {
                    status: Some(409 | 412),
                    ..
                }) => conflicts += 1,
                other => return other,
            }
        }
        Err(GcpError::Api {
            context,
            status: Some(409),
            message: "the node pool kept changing under natgw (etag conflicts); try again".into(),
        })
    }

    /// `location`: where the request went. GKE operations live there; the operation's own `location` is
    /// output only and not relied on.
    pub(super) async fn wait_gke(
        &self,
        op: gke::Operation,
        location: &str,
        context: &str,
    ) -> Result<(), GcpError> {
        let start = Instant::now();
        let mut op = op;
        // GKE has no `wait`: polls 50 ms, 75 ms, 112 ms... after the last, up to every 2 s. Each poll comes at
        // most half the elapsed time after the operation ended, and a long operation costs one poll per 2 s.
        let mut delay = Duration::from_millis(50);
        loop {
            if op.status == gke::operation::Status::Done {
                return match &op.error {
                    Some(s) if s.code != 0 => Err(GcpError::Operation {
                        context: context.into(),
                        status: Some(grpc_to_http(s.code)),
                        message: s.message.clone(),
                    }),
                    _ => Ok(()),
                };
            }
            if start.elapsed() > self.op_deadline {
                return Err(GcpError::Deadline {
                    context: context.into(),
                    after: self.op_deadline,
                });
            }
            sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(2));
            let name = if op.name.contains('/') {
                op.name.clone()
            } else {
                format!(
                    "projects/{}/locations/{location}/operations/{}",
                    self.project, op.name
                )
            };
            op = self
                .gke
                .get_operation()
                .set_name(name)
                .send()
                .await
                .map_err(api_error(context))?;
        }
    }
}

/// GKE's answer while another operation runs on the cluster: 400 FAILED_PRECONDITION ("Cluster is running
/// incompatible operation operation-..."). The Terraform provider retries it until its own timeout
/// (`RetryWhileIncompatibleOperation` in hashicorp/terraform-provider-google, google/tpgresource/utils.go:
/// "This error can be safely retried until the incompatible operation completes"). A node-pool upgrade can
/// hold a cluster for an hour, so this wait has its own limit, not the retry budget.
fn cluster_busy(e: &google_cloud_gax::error::Error) -> bool {
    use google_cloud_gax::error::rpc::Code;
    e.http_status_code() == Some(400)
        && e.status()
            .is_some_and(|s| s.code == Code::FailedPrecondition)
}

/// The operation a cluster-busy answer names (`operation-...`), if it names one.
fn busy_operation(e: &google_cloud_gax::error::Error) -> Option<String> {
    let message = &e.status()?.message;
    let start = message.find("operation-")?;
    let name: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Some(name.trim_end_matches('-').to_string())
}

/// Waiting out other operations on a cluster: backoff from `first` (1 s by default) to 15 s (an hour costs a
/// few hundred calls), one notice per operation named, and an error naming the operation once `limit` has
/// passed.
struct ClusterBusy {
    start: Instant,
    limit: Duration,
    delay: Duration,
    announced: Option<Option<String>>,
}

impl ClusterBusy {
    fn new(limit: Duration, first: Duration) -> Self {
        Self {
            start: Instant::now(),
            limit,
            delay: first,
            announced: None,
        }
    }

    async fn wait(
        &mut self,
        e: &google_cloud_gax::error::Error,
        pool: &NodePoolId,
        notices: &super::Notices,
        context: &str,
    ) -> Result<(), GcpError> {
        let operation = busy_operation(e);
        if self.start.elapsed() >= self.limit {
            return Err(GcpError::ClusterBusy {
                context: context.into(),
                operation,
                after: self.limit,
            });
        }
        if self.announced.as_ref() != Some(&operation) {
            notices.send(&super::Notice::ClusterBusy {
                node_pool: pool.to_string(),
                operation: operation.clone(),
                limit: self.limit,
            });
            self.announced = Some(operation);
        }
        sleep(
            self.delay
                .min(self.limit.saturating_sub(self.start.elapsed())),
        )
        .await;
        self.delay = (self.delay * 2).min(Duration::from_secs(15));
        Ok(())
    }
}

/// gRPC codes in GKE operation errors, as the HTTP statuses natgw reasons about.
fn grpc_to_http(code: i32) -> u16 {
    match code {
        3 | 9 | 11 => 400,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        16 => 401,
        14 => 503,
        _ => 500,
    }
}

fn operation_result(op: &gce::Operation, context: &str) -> Result<(), GcpError> {
    let errors: Vec<String> = op
        .error
        .as_ref()
        .map(|e| {
            e.errors
                .iter()
                .map(|x| {
                    x.message
                        .clone()
                        .or_else(|| x.code.clone())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let status = op
        .http_error_status_code
        .and_then(|c| u16::try_from(c).ok());
    if errors.is_empty() && status.is_none_or(|s| s < 400) {
        return Ok(());
    }
    let violations = super::policy::violations(errors.iter().map(String::as_str));
    if !violations.is_empty() {
        return Err(GcpError::OrgPolicy {
            context: context.into(),
            resource: None,
            violations,
        });
    }
    let message = if errors.is_empty() {
        op.http_error_message
            .clone()
            .unwrap_or_else(|| "no message".into())
    } else {
        errors.join("; ")
    };
    Err(GcpError::Operation {
        context: context.into(),
        status,
        message,
    })
}

fn ignore_not_found(r: Result<(), GcpError>) -> Result<(), GcpError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

pub(super) fn description_owner(description: Option<&str>) -> Option<Owner> {
    ownership::parse_description(description.unwrap_or_default()).map(|(o, _)| o)
}

/// natgw never changes or deletes what its stack does not own, even if a plan said so.
pub(super) fn ensure_owned(
    stack: &str,
    owner: Option<Owner>,
    context: &str,
) -> Result<(), GcpError> {
    match owner {
        Some(o) if o.stack == stack => Ok(()),
        _ => Err(GcpError::Unexpected {
            context: context.into(),
            message: format!(
                "the resource does not carry stack \"{stack}\"'s ownership marker; natgw leaves it alone"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{Emulator, Options};
    use crate::model::desired;

    async fn demo_cloud() -> (Emulator, Cloud, desired::DesiredGateway) {
        super::super::demo(Options::default(), |_| {}).await
    }

    async fn observed_address(
        cloud: &Cloud,
        gw: &desired::DesiredGateway,
    ) -> (
        crate::model::observed::Observation,
        crate::model::observed::Observed<Address>,
    ) {
        let world = cloud
            .observe(std::slice::from_ref(&gw.node_pool))
            .await
            .expect("observe");
        let seen = world
            .addresses
            .iter()
            .find(|o| o.resource.name == gw.external_address.name)
            .expect("address")
            .clone();
        (world, seen)
    }

    /// An address is inserted with the marker in its description, then labelled with `setLabels`.
    #[tokio::test]
    async fn an_address_gets_its_labels_after_the_insert() {
        let (emu, cloud, gw) = demo_cloud().await;
        cloud
            .insert_address(&gw.external_address)
            .await
            .expect("address");
        let got = cloud
            .addresses
            .get()
            .set_project("natgw-test")
            .set_region("europe-west1")
            .set_address(&gw.external_address.name)
            .send()
            .await
            .expect("read");
        let labels: std::collections::BTreeMap<String, String> = got.labels.into_iter().collect();
        assert_eq!(labels, gw.external_address.labels);
        assert_eq!(
            got.description.as_deref(),
            Some(gw.owner.description(&[]).as_str())
        );
        // Inserting it again (a retried apply) finds it, ours and labelled, and changes nothing.
        cloud
            .insert_address(&gw.external_address)
            .await
            .expect("again");
        emu.shutdown().await.expect("shutdown");
    }

    /// natgw stopped between the insert and `setLabels`: the address carries only the marker. It is this
    /// stack's, and the plan sets its labels in place; it is never a conflict.
    #[tokio::test]
    async fn an_address_without_its_labels_is_ours_and_labelled_in_place() {
        let (emu, cloud, gw) = demo_cloud().await;
        let a = &gw.external_address;
        let send = cloud
            .addresses
            .insert()
            .set_project("natgw-test")
            .set_region(&a.region)
            .set_body(wire::address_to_wire("natgw-test", a))
            .set_request_id(request_id())
            .send();
        cloud
            .change(Scope::Region(&a.region), "insert", send)
            .await
            .expect("insert only");
        let (world, seen) = observed_address(&cloud, &gw).await;
        assert!(seen.resource.labels.is_empty(), "{seen:?}");
        assert!(seen.owned_by(&gw.owner.stack), "{seen:?}");

        let ctx = crate::plan::Context {
            stack: &gw.owner.stack,
        };
        let changes =
            crate::plan::diff(&ctx, std::slice::from_ref(&gw), &world).expect("no conflict");
        let change = changes
            .iter()
            .find(|c| c.name == a.name)
            .expect("a change for the address");
        assert_eq!(change.action, crate::plan::Action::Update, "{change:?}");
        let fields: Vec<&str> = change.diffs.iter().map(|d| d.field.name()).collect();
        assert_eq!(fields, ["labels"]);

        cloud
            .set_address_labels(a, change.preconditions.label_fingerprint.as_deref())
            .await
            .expect("labels");
        let (_, seen) = observed_address(&cloud, &gw).await;
        assert_eq!(seen.resource.labels, a.labels);
        emu.shutdown().await.expect("shutdown");
    }

    /// A fingerprint that changed since natgw read it (someone else's change in between) is read again and
    /// the change made, against the emulator over real HTTP.
    #[tokio::test]
    async fn stale_fingerprints_are_read_again() {
        let (emu, cloud, gw) = demo_cloud().await;
        super::super::demo_vm(&cloud, &gw).await;

        let stale = Some("00");
        let mut vm = gw.instance.clone();
        vm.startup_script = "#!/bin/bash\n# v2\n".into();
        vm.labels.insert("team".into(), "ci".into());
        vm.tags.push("extra".into());
        cloud
            .set_instance_metadata(&vm, stale)
            .await
            .expect("metadata");
        cloud.set_instance_labels(&vm, stale).await.expect("labels");
        cloud.set_instance_tags(&vm, stale).await.expect("tags");
        let mut address = gw.external_address.clone();
        address.labels.insert("team".into(), "ci".into());
        cloud
            .set_address_labels(&address, stale)
            .await
            .expect("address labels");

        let world = cloud.observe(&[]).await.expect("observe");
        let seen = &world.instances[0].resource;
        assert_eq!(seen.startup_script, vm.startup_script);
        assert_eq!(seen.labels.get("team").map(String::as_str), Some("ci"));
        assert!(seen.tags.contains(&"extra".to_string()));
        let a = world
            .addresses
            .iter()
            .find(|a| a.resource.name == address.name)
            .expect("address");
        assert_eq!(
            a.resource.labels.get("team").map(String::as_str),
            Some("ci")
        );
        emu.shutdown().await.expect("shutdown");
    }
}
