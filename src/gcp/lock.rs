//! The stack lock's calls: a disabled firewall rule whose atomic insert is the lock (see `model::lock`).
//!
//! "If the resource already exists, the insert fails at once": Compute answers a second insert of one name
//! with `409 alreadyExists` (the Terraform provider relies on the same answer to detect a resource that
//! exists, `isConflictError` in `transport/error_retry_predicates.go`).

use google_cloud_compute_v1::model as gce;
use google_cloud_gax::options::RequestOptionsBuilder;

use super::calls::Scope;
use super::{Cloud, GcpError, api_error, request_id};
use crate::model::lock;

/// The lock rule as the project holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockRule {
    /// `None`: the description is not a lock's (edited by hand).
    pub(crate) holder: Option<lock::Holder>,
    pub(crate) description: String,
}

/// The answer to an attempt to take the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    Taken,
    /// Someone holds it: the rule as read just after the refused insert (`None` if it vanished meanwhile).
    Held(Option<LockRule>),
}

impl Cloud {
    /// The project this client works in.
    pub(crate) fn project(&self) -> &str {
        &self.project
    }

    /// The same clients, working in another project (a Shared VPC host: the clients themselves are not
    /// bound to a project, each request names it).
    pub(crate) fn for_project(&self, project: &str) -> Cloud {
        let mut c = self.clone();
        c.project = project.to_string();
        c
    }

    fn lock_rule(name: &str, network: &str, project: &str, description: String) -> gce::Firewall {
        gce::Firewall::new()
            .set_name(name)
            .set_network(format!("projects/{project}/global/networks/{network}"))
            .set_direction(gce::firewall::Direction::Ingress)
            .set_priority(i32::try_from(lock::PRIORITY).unwrap_or(65535))
            .set_disabled(true)
            .set_source_ranges(["0.0.0.0/32"])
            .set_target_tags([lock::TARGET_TAG])
            .set_denied([gce::firewall::Denied::new().set_ip_protocol("all")])
            .set_description(description)
    }

    /// Inserts the lock rule; the insert either creates it (the lock is this run's) or finds it there.
    pub(crate) async fn take_lock(
        &self,
        name: &str,
        network: &str,
        holder: &lock::Holder,
    ) -> Result<Take, GcpError> {
        let context = format!("taking the stack lock (firewall rule {name})");
        let sent = self
            .firewalls
            .insert()
            .set_project(&self.project)
            .set_body(Self::lock_rule(
                name,
                network,
                &self.project,
                holder.description(),
            ))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await;
        let outcome = match sent {
            Ok(op) => self.wait(Scope::Global, op, &context).await,
            Err(e) => Err(api_error(&context)(e)),
        };
        match outcome {
            Ok(()) => Ok(Take::Taken),
            Err(e) if e.status() == Some(409) => Ok(Take::Held(self.read_lock(name).await?)),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn read_lock(&self, name: &str) -> Result<Option<LockRule>, GcpError> {
        let got = self
            .firewalls
            .get()
            .set_project(&self.project)
            .set_firewall(name)
            .send()
            .await;
        match got {
            Ok(f) => {
                let description = f.description.unwrap_or_default();
                Ok(Some(LockRule {
                    holder: lock::Holder::parse(&description),
                    description,
                }))
            }
            Err(e) if e.http_status_code() == Some(404) => Ok(None),
            Err(e) => Err(api_error(format!(
                "reading the stack lock (firewall rule {name})"
            ))(e)),
        }
    }

    /// Rewrites the holder's description with a new refresh time.
    pub(crate) async fn refresh_lock(
        &self,
        name: &str,
        holder: &lock::Holder,
    ) -> Result<(), GcpError> {
        let context = format!("refreshing the stack lock (firewall rule {name})");
        let op = self
            .firewalls
            .patch()
            .set_project(&self.project)
            .set_firewall(name)
            .set_body(
                gce::Firewall::new()
                    .set_name(name)
                    .set_description(holder.description()),
            )
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(&context))?;
        self.wait(Scope::Global, op, &context).await
    }

    /// Deletes the lock rule if, and only if, it is still the one with this `id`: a lock broken as stale and
    /// taken by another run is never deleted by its old holder. `wait`: wait for the delete to finish (a
    /// release at the end of a run sends the delete and moves on, so that the lock costs one operation's
    /// latency, not two).
    pub(crate) async fn delete_lock(
        &self,
        name: &str,
        id: &str,
        wait: bool,
    ) -> Result<bool, GcpError> {
        let Some(rule) = self.read_lock(name).await? else {
            return Ok(false);
        };
        if rule.holder.as_ref().map(|h| h.id.as_str()) != Some(id) {
            return Ok(false);
        }
        let context = format!("releasing the stack lock (firewall rule {name})");
        let sent = self
            .firewalls
            .delete()
            .set_project(&self.project)
            .set_firewall(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send()
            .await;
        match sent {
            Ok(op) if wait => match self.wait(Scope::Global, op, &context).await {
                Ok(()) => Ok(true),
                Err(e) if e.is_not_found() => Ok(true),
                Err(e) => Err(e),
            },
            Ok(_) => Ok(true),
            Err(e) if e.http_status_code() == Some(404) => Ok(true),
            Err(e) => Err(api_error(&context)(e)),
        }
    }
}
