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
use crate::model::ownership::{self, Owner};
use crate::model::{Address, Firewall, Instance, NodePoolId, Route};

/// Where a Compute operation lives.
enum Scope<'a> {
    Zone(&'a str),
    Region(&'a str),
    Global,
}

/// The answer of one readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    Yes,
    /// Not yet; the VM's status is given.
    NotYet,
}

impl Cloud {
    async fn wait(
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
            // `wait` is a POST, which the clients do not retry unless told: waiting again is harmless.
            let next = match scope {
                Scope::Zone(z) => {
                    self.zone_ops
                        .wait()
                        .set_project(p)
                        .set_zone(z)
                        .set_operation(name)
                        .with_idempotency(true)
                        .send()
                        .await
                }
                Scope::Region(r) => {
                    self.region_ops
                        .wait()
                        .set_project(p)
                        .set_region(r)
                        .set_operation(name)
                        .with_idempotency(true)
                        .send()
                        .await
                }
                Scope::Global => {
                    self.global_ops
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

    /// Reserves an address and returns the IP Google gave it.
    pub(crate) async fn insert_address(&self, a: &Address) -> Result<Ipv4Addr, GcpError> {
        let context = format!("creating address {}", a.name);
        let op = self
            .addresses
            .insert()
            .set_project(&self.project)
            .set_region(&a.region)
            .set_body(wire::address_to_wire(&self.project, a))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await;
        match op {
            Ok(op) => self.wait(Scope::Region(&a.region), op, &context).await?,
            // An earlier run may have made it; it is ours only if its labels say so, checked below.
            Err(e) if e.http_status_code() == Some(409) => {}
            Err(e) => return Err(api_error(context)(e)),
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
        let observed = wire::address_from_wire(&got);
        if observed.owner.as_ref().map(|o| o.labels()) != Some(ownership_labels(&a.labels)) {
            return Err(GcpError::Unexpected {
                context,
                message: "an address with this name exists and natgw does not own it".into(),
            });
        }
        observed
            .resource
            .address
            .ok_or_else(|| GcpError::Unexpected {
                context,
                message: "the address has no IP".into(),
            })
    }

    pub(crate) async fn set_address_labels(
        &self,
        a: &Address,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let context = format!("updating the labels of address {}", a.name);
        let mut body = gce::RegionSetLabelsRequest::new().set_labels(a.labels.clone());
        if let Some(fp) = fingerprint {
            body = body.set_label_fingerprint(unhex(fp));
        }
        let op = self
            .addresses
            .set_labels()
            .set_project(&self.project)
            .set_region(&a.region)
            .set_resource(&a.name)
            .set_body(body)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Region(&a.region), op, &context).await
    }

    /// Deletes an address after checking, once more, that this stack owns it.
    pub(crate) async fn delete_address(
        &self,
        stack: &str,
        region: &str,
        name: &str,
    ) -> Result<(), GcpError> {
        let context = format!("deleting address {name}");
        let got = self
            .addresses
            .get()
            .set_project(&self.project)
            .set_region(region)
            .set_address(name)
            .send()
            .await;
        match got {
            Ok(a) => ensure_owned(
                stack,
                Owner::from_labels(&a.labels.into_iter().collect()),
                &context,
            )?,
            Err(e) if e.http_status_code() == Some(404) => return Ok(()),
            Err(e) => return Err(api_error(context)(e)),
        }
        let op = self
            .addresses
            .delete()
            .set_project(&self.project)
            .set_region(region)
            .set_address(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await;
        match op {
            Ok(op) => ignore_not_found(self.wait(Scope::Region(region), op, &context).await),
            Err(e) if e.http_status_code() == Some(404) => Ok(()),
            Err(e) => Err(api_error(context)(e)),
        }
    }

    pub(crate) async fn insert_firewall(&self, f: &Firewall) -> Result<(), GcpError> {
        let context = format!("creating firewall rule {}", f.name);
        let op = self
            .firewalls
            .insert()
            .set_project(&self.project)
            .set_body(wire::firewall_to_wire(&self.project, f))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Global, op, &context).await
    }

    pub(crate) async fn patch_firewall(&self, stack: &str, f: &Firewall) -> Result<(), GcpError> {
        let context = format!("updating firewall rule {}", f.name);
        let got = self
            .firewalls
            .get()
            .set_project(&self.project)
            .set_firewall(&f.name)
            .send()
            .await
            .map_err(api_error(&context))?;
        ensure_owned(
            stack,
            description_owner(got.description.as_deref()),
            &context,
        )?;
        let op = self
            .firewalls
            .patch()
            .set_project(&self.project)
            .set_firewall(&f.name)
            .set_body(wire::firewall_to_wire(&self.project, f))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Global, op, &context).await
    }

    pub(crate) async fn delete_firewall(&self, stack: &str, name: &str) -> Result<(), GcpError> {
        let context = format!("deleting firewall rule {name}");
        match self
            .firewalls
            .get()
            .set_project(&self.project)
            .set_firewall(name)
            .send()
            .await
        {
            Ok(f) => ensure_owned(stack, description_owner(f.description.as_deref()), &context)?,
            Err(e) if e.http_status_code() == Some(404) => return Ok(()),
            Err(e) => return Err(api_error(context)(e)),
        }
        let op = self
            .firewalls
            .delete()
            .set_project(&self.project)
            .set_firewall(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await;
        match op {
            Ok(op) => ignore_not_found(self.wait(Scope::Global, op, &context).await),
            Err(e) if e.http_status_code() == Some(404) => Ok(()),
            Err(e) => Err(api_error(context)(e)),
        }
    }

    pub(crate) async fn insert_instance(
        &self,
        i: &Instance,
        network_ip: Ipv4Addr,
        nat_ip: Ipv4Addr,
    ) -> Result<(), GcpError> {
        let context = format!("creating instance {}", i.name);
        let op = self
            .instances
            .insert()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_body(wire::instance_to_wire(&self.project, i, network_ip, nat_ip))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Zone(&i.zone), op, &context).await
    }

    pub(crate) async fn delete_instance(
        &self,
        stack: &str,
        zone: &str,
        name: &str,
    ) -> Result<(), GcpError> {
        let context = format!("deleting instance {name}");
        match self
            .instances
            .get()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .send()
            .await
        {
            Ok(i) => ensure_owned(
                stack,
                Owner::from_labels(&i.labels.into_iter().collect()),
                &context,
            )?,
            Err(e) if e.http_status_code() == Some(404) => return Ok(()),
            Err(e) => return Err(api_error(context)(e)),
        }
        let op = self
            .instances
            .delete()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await;
        match op {
            Ok(op) => ignore_not_found(self.wait(Scope::Zone(zone), op, &context).await),
            Err(e) if e.http_status_code() == Some(404) => Ok(()),
            Err(e) => Err(api_error(context)(e)),
        }
    }

    pub(crate) async fn set_instance_labels(
        &self,
        i: &Instance,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let context = format!("updating the labels of instance {}", i.name);
        let mut body = gce::InstancesSetLabelsRequest::new().set_labels(i.labels.clone());
        if let Some(fp) = fingerprint {
            body = body.set_label_fingerprint(unhex(fp));
        }
        let op = self
            .instances
            .set_labels()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_instance(&i.name)
            .set_body(body)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Zone(&i.zone), op, &context).await
    }

    pub(crate) async fn set_instance_tags(
        &self,
        i: &Instance,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let context = format!("updating the network tags of instance {}", i.name);
        let mut body = gce::Tags::new().set_items(i.tags.clone());
        if let Some(fp) = fingerprint {
            body = body.set_fingerprint(unhex(fp));
        }
        let op = self
            .instances
            .set_tags()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_instance(&i.name)
            .set_body(body)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Zone(&i.zone), op, &context).await
    }

    /// Sets the startup script and its ready token. The script runs at boot: the caller resets the VM.
    pub(crate) async fn set_instance_metadata(
        &self,
        i: &Instance,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let context = format!("updating the metadata of instance {}", i.name);
        let op = self
            .instances
            .set_metadata()
            .set_project(&self.project)
            .set_zone(&i.zone)
            .set_instance(&i.name)
            .set_body(wire::metadata_to_wire(i, fingerprint))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Zone(&i.zone), op, &context).await
    }

    pub(crate) async fn reset_instance(&self, zone: &str, name: &str) -> Result<(), GcpError> {
        let context = format!("restarting instance {name}");
        let op = self
            .instances
            .reset()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Zone(zone), op, &context).await
    }

    pub(crate) async fn start_instance(&self, zone: &str, name: &str) -> Result<(), GcpError> {
        let context = format!("starting instance {name}");
        let op = self
            .instances
            .start()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Zone(zone), op, &context).await
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
            Err(e) => Err(api_error(format!(
                "reading the guest attributes of instance {name}"
            ))(e)),
        }
    }

    pub(crate) async fn insert_route(&self, r: &Route, next_hop: Ipv4Addr) -> Result<(), GcpError> {
        let context = format!("creating route {}", r.name);
        let op = self
            .routes
            .insert()
            .set_project(&self.project)
            .set_body(wire::route_to_wire(&self.project, r, next_hop))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Global, op, &context).await
    }

    pub(crate) async fn delete_route(&self, stack: &str, name: &str) -> Result<(), GcpError> {
        let context = format!("deleting route {name}");
        match self
            .routes
            .get()
            .set_project(&self.project)
            .set_route(name)
            .send()
            .await
        {
            Ok(r) => ensure_owned(stack, description_owner(r.description.as_deref()), &context)?,
            Err(e) if e.http_status_code() == Some(404) => return Ok(()),
            Err(e) => return Err(api_error(context)(e)),
        }
        let op = self
            .routes
            .delete()
            .set_project(&self.project)
            .set_route(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await;
        match op {
            Ok(op) => ignore_not_found(self.wait(Scope::Global, op, &context).await),
            Err(e) if e.http_status_code() == Some(404) => Ok(()),
            Err(e) => Err(api_error(context)(e)),
        }
    }

    /// Adds and removes network tags on a node pool, keeping its other tags. GKE has no requestId: the update
    /// carries the pool's etag, and a conflict (someone else changed the pool) re-reads it and tries again.
    pub(crate) async fn update_node_pool_tags(
        &self,
        id: &NodePoolId,
        add: &[String],
        remove: &[String],
    ) -> Result<(), GcpError> {
        let context = format!("updating the network tags of node pool {id}");
        let name = id.resource_name(&self.project);
        for _attempt in 0..5 {
            let pool = self
                .gke
                .get_node_pool()
                .set_name(&name)
                .send()
                .await
                .map_err(api_error(&context))?;
            let current = pool
                .config
                .as_ref()
                .map(|c| c.tags.clone())
                .unwrap_or_default();
            let mut tags: Vec<String> = current
                .iter()
                .filter(|t| !remove.contains(t))
                .cloned()
                .collect();
            for t in add {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            if tags == current {
                return Ok(());
            }
            let sent = self
                .gke
                .update_node_pool()
                .set_name(&name)
                .set_tags(gke::NetworkTags::new().set_tags(tags))
                .set_etag(pool.etag.clone())
                .with_idempotency(true)
                .send()
                .await;
            let op = match sent {
                Ok(op) => op,
                Err(e) if matches!(e.http_status_code(), Some(409 | 412)) => continue,
                Err(e) => return Err(api_error(context)(e)),
            };
            match self.wait_gke(op, &context).await {
                Err(GcpError::Operation {
                    status: Some(409 | 412),
                    ..
                }) => continue,
                other => return other,
            }
        }
        Err(GcpError::Api {
            context,
            status: Some(409),
            message: "the node pool kept changing under natgw (etag conflicts); try again".into(),
        })
    }

    async fn wait_gke(&self, op: gke::Operation, context: &str) -> Result<(), GcpError> {
        let start = Instant::now();
        let mut op = op;
        let mut delay = Duration::from_millis(100);
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
                    "projects/{}/locations/{}/operations/{}",
                    self.project, op.location, op.name
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

fn description_owner(description: Option<&str>) -> Option<Owner> {
    ownership::parse_description(description.unwrap_or_default()).map(|(o, _)| o)
}

fn ownership_labels(
    labels: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    Owner::from_labels(labels)
        .map(|o| o.labels())
        .unwrap_or_default()
}

/// natgw never changes or deletes what its stack does not own, even if a plan said so.
fn ensure_owned(stack: &str, owner: Option<Owner>, context: &str) -> Result<(), GcpError> {
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
