//! A gateway in several zones' own kinds (`model::ha`): their clients, list calls, changes and the reads
//! apply waits on. Like `calls`, every change waits for its operation and a delete that finds nothing has
//! succeeded.

use google_cloud_compute_v1::client::{
    BackendServices, ForwardingRules, HealthChecks, InstanceGroupManagers, InstanceTemplates,
    RegionBackendServices, RegionHealthChecks,
};
use google_cloud_compute_v1::model as gce;
use google_cloud_gax::options::RequestOptionsBuilder;

use super::calls::{OwnerCheck, Scope, description_owner, ensure_owned};
use super::observe::all_pages;
use super::wire;
use super::wire_ha;
use super::{Cloud, GcpError, api_error, request_id};
use crate::model::ha::{
    BackendService, ForwardingRule, HealthCheck, InstanceGroup, InstanceTemplate,
};
use crate::model::observed::Observed;

/// The clients of a gateway in several zones, built on first use: a config without `zones` never needs them.
#[derive(Clone, Debug)]
pub(super) struct HaClients {
    pub(super) templates: InstanceTemplates,
    pub(super) groups: InstanceGroupManagers,
    pub(super) checks: RegionHealthChecks,
    /// Aggregated lists only (`healthChecks.aggregatedList` covers the regional ones).
    pub(super) all_checks: HealthChecks,
    pub(super) services: RegionBackendServices,
    pub(super) all_services: BackendServices,
    pub(super) rules: ForwardingRules,
}

/// Every page of an aggregated list: the items of every zone or region, mapped to the model.
macro_rules! aggregated {
    ($client:expr, $project:expr, $filter:expr, $what:literal, $field:ident, $map:expr) => {
        all_pages(|token| async move {
            let page = $client
                .aggregated_list()
                .set_project($project)
                .set_filter($filter)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error(concat!("listing ", $what)))?;
            let items = page
                .items
                .values()
                .flat_map(|s| s.$field.iter().map($map))
                .collect();
            Ok((items, page.next_page_token))
        })
    };
}

/// Everything natgw could own among the HA kinds, read in one parallel round.
#[derive(Debug, Default)]
pub(crate) struct HaObservation {
    pub(crate) templates: Vec<Observed<InstanceTemplate>>,
    pub(crate) groups: Vec<Observed<InstanceGroup>>,
    pub(crate) health_checks: Vec<Observed<HealthCheck>>,
    pub(crate) backend_services: Vec<Observed<BackendService>>,
    pub(crate) forwarding_rules: Vec<Observed<ForwardingRule>>,
}

/// How one VM of a backend service is doing, by `regionBackendServices.getHealth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackendHealth {
    /// The VM's name.
    pub(crate) instance: String,
    pub(crate) healthy: bool,
}

impl Cloud {
    /// Lists every HA kind whose name natgw could have given (the groups' and load balancers' own
    /// descriptions say whose they are).
    pub(crate) async fn observe_ha(&self, filter: &str) -> Result<HaObservation, GcpError> {
        let ha = self.ha().await?;
        let p = self.project.as_str();
        let own = p;
        let templates = all_pages(|token| async move {
            let page = ha
                .templates
                .list()
                .set_project(p)
                .set_filter(filter)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error("listing instance templates"))?;
            let items = page
                .items
                .iter()
                .map(|t| wire_ha::template_from_wire(own, t))
                .collect();
            Ok((items, page.next_page_token))
        });
        let groups = aggregated!(
            ha.groups,
            p,
            filter,
            "managed instance groups",
            instance_group_managers,
            wire_ha::group_from_wire
        );
        let checks = aggregated!(
            ha.all_checks,
            p,
            filter,
            "health checks",
            health_checks,
            wire_ha::health_check_from_wire
        );
        let services = aggregated!(
            ha.all_services,
            p,
            filter,
            "backend services",
            backend_services,
            wire_ha::backend_service_from_wire
        );
        let rules = aggregated!(
            ha.rules,
            p,
            filter,
            "forwarding rules",
            forwarding_rules,
            |f| wire_ha::forwarding_rule_from_wire(own, f)
        );
        let (templates, groups, health_checks, backend_services, forwarding_rules) =
            tokio::try_join!(templates, groups, checks, services, rules)?;
        Ok(HaObservation {
            templates,
            groups,
            health_checks,
            backend_services,
            forwarding_rules,
        })
    }

    pub(crate) async fn insert_template(&self, t: &InstanceTemplate) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let send = ha
            .templates
            .insert()
            .set_project(&self.project)
            .set_body(wire_ha::template_to_wire(&self.project, t))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let context = format!("creating instance template {}", t.name);
        self.change(Scope::Global, &context, send)
            .await
            .map_err(|e| self.explain_shared_vpc(&t.subnetwork, e))
    }

    pub(crate) async fn delete_template(
        &self,
        check: OwnerCheck<'_>,
        name: &str,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let p = &self.project;
        let get = ha
            .templates
            .get()
            .set_project(p)
            .set_instance_template(name)
            .send();
        let delete = ha
            .templates
            .delete()
            .set_project(p)
            .set_instance_template(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |t: gce::InstanceTemplate| description_owner(t.description.as_deref());
        let context = format!("deleting instance template {name}");
        self.delete_owned(check, Scope::Global, &context, get, owner, delete)
            .await
    }

    /// Creates the group empty, then its one VM with the zone's preserved addresses
    /// (`instanceGroupManagers.createInstances`: "Creates instances with per-instance configurations in this
    /// managed instance group"). A group found empty by a later run gets its VM from [`Self::ensure_vm`].
    pub(crate) async fn insert_group(&self, g: &InstanceGroup) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let send = ha
            .groups
            .insert()
            .set_project(&self.project)
            .set_zone(&g.zone)
            .set_body(wire_ha::group_to_wire(&self.project, g))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let context = format!("creating managed instance group {}", g.name);
        self.change(Scope::Zone(&g.zone), &context, send).await?;
        self.ensure_vm(g).await
    }

    /// Gives an empty group its VM: `createInstances` with the per-instance config (which also raises the
    /// target size to 1).
    pub(crate) async fn ensure_vm(&self, g: &InstanceGroup) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let send = ha
            .groups
            .create_instances()
            .set_project(&self.project)
            .set_zone(&g.zone)
            .set_instance_group_manager(&g.name)
            .set_body(
                gce::InstanceGroupManagersCreateInstancesRequest::new()
                    .set_instances([wire_ha::per_instance_config(&self.project, g)]),
            )
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let context = format!("creating the VM of managed instance group {}", g.name);
        self.change(Scope::Zone(&g.zone), &context, send).await
    }

    /// Patches the group's autohealing policy and, with `template`, its instance template (which reaches the
    /// VM only through [`Self::replace_vm`]: the update policy is OPPORTUNISTIC). Reads the group first to
    /// check its marker.
    pub(crate) async fn patch_group(
        &self,
        stack: &str,
        g: &InstanceGroup,
        template: bool,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let context = format!("updating managed instance group {}", g.name);
        let got = ha
            .groups
            .get()
            .set_project(&self.project)
            .set_zone(&g.zone)
            .set_instance_group_manager(&g.name)
            .send()
            .await
            .map_err(api_error(&context))?;
        ensure_owned(
            stack,
            description_owner(got.description.as_deref()),
            &context,
        )?;
        let mut body = gce::InstanceGroupManager::new()
            .set_auto_healing_policies([wire_ha::autohealing_to_wire(&self.project, g)]);
        if template {
            body = body
                .set_instance_template(wire_ha::template_url(&self.project, &g.instance_template));
        }
        let send = ha
            .groups
            .patch()
            .set_project(&self.project)
            .set_zone(&g.zone)
            .set_instance_group_manager(&g.name)
            .set_body(body)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(Scope::Zone(&g.zone), &context, send).await
    }

    /// Recreates the group's VM from its current template, with the same name and addresses
    /// (`applyUpdatesToInstances`, `minimalAction: REPLACE`). The method takes no `requestId`, so it is not
    /// retried: a second call would recreate the VM again.
    pub(crate) async fn replace_vm(&self, g: &InstanceGroup) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let send = ha
            .groups
            .apply_updates_to_instances()
            .set_project(&self.project)
            .set_zone(&g.zone)
            .set_instance_group_manager(&g.name)
            .set_body(
                gce::InstanceGroupManagersApplyUpdatesRequest::new()
                    .set_instances([format!("zones/{}/instances/{}", g.zone, g.name)])
                    .set_minimal_action(
                        gce::instance_group_managers_apply_updates_request::MinimalAction::Replace,
                    ),
            )
            .send();
        let context = format!("replacing the VM of managed instance group {}", g.name);
        self.change(Scope::Zone(&g.zone), &context, send).await
    }

    /// The template each VM of the group runs, by name: `(VM, template)`.
    pub(crate) async fn group_versions(
        &self,
        g: &InstanceGroup,
    ) -> Result<Vec<(String, String)>, GcpError> {
        let ha = self.ha().await?;
        let got = ha
            .groups
            .list_managed_instances()
            .set_project(&self.project)
            .set_zone(&g.zone)
            .set_instance_group_manager(&g.name)
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(format!(
                "reading the VMs of managed instance group {}",
                g.name
            )))?;
        Ok(got
            .managed_instances
            .iter()
            .map(|m| {
                (
                    m.instance
                        .as_deref()
                        .map(wire::last_segment)
                        .unwrap_or_default(),
                    m.version
                        .as_ref()
                        .and_then(|v| v.instance_template.as_deref())
                        .map(wire::last_segment)
                        .unwrap_or_default(),
                )
            })
            .collect())
    }

    pub(crate) async fn delete_group(
        &self,
        check: OwnerCheck<'_>,
        zone: &str,
        name: &str,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let p = &self.project;
        let get = ha
            .groups
            .get()
            .set_project(p)
            .set_zone(zone)
            .set_instance_group_manager(name)
            .send();
        let delete = ha
            .groups
            .delete()
            .set_project(p)
            .set_zone(zone)
            .set_instance_group_manager(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |g: gce::InstanceGroupManager| description_owner(g.description.as_deref());
        let context = format!("deleting managed instance group {name}");
        self.delete_owned(check, Scope::Zone(zone), &context, get, owner, delete)
            .await
    }

    pub(crate) async fn insert_health_check(&self, h: &HealthCheck) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let send = ha
            .checks
            .insert()
            .set_project(&self.project)
            .set_region(&h.region)
            .set_body(wire_ha::health_check_to_wire(h))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let context = format!("creating health check {}", h.name);
        self.change(Scope::Region(&h.region), &context, send).await
    }

    pub(crate) async fn patch_health_check(
        &self,
        stack: &str,
        h: &HealthCheck,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let context = format!("updating health check {}", h.name);
        let got = ha
            .checks
            .get()
            .set_project(&self.project)
            .set_region(&h.region)
            .set_health_check(&h.name)
            .send()
            .await
            .map_err(api_error(&context))?;
        ensure_owned(
            stack,
            description_owner(got.description.as_deref()),
            &context,
        )?;
        let send = ha
            .checks
            .patch()
            .set_project(&self.project)
            .set_region(&h.region)
            .set_health_check(&h.name)
            .set_body(wire_ha::health_check_to_wire(h))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(Scope::Region(&h.region), &context, send).await
    }

    pub(crate) async fn delete_health_check(
        &self,
        check: OwnerCheck<'_>,
        region: &str,
        name: &str,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let p = &self.project;
        let get = ha
            .checks
            .get()
            .set_project(p)
            .set_region(region)
            .set_health_check(name)
            .send();
        let delete = ha
            .checks
            .delete()
            .set_project(p)
            .set_region(region)
            .set_health_check(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |h: gce::HealthCheck| description_owner(h.description.as_deref());
        let context = format!("deleting health check {name}");
        self.delete_owned(check, Scope::Region(region), &context, get, owner, delete)
            .await
    }

    pub(crate) async fn insert_backend_service(&self, b: &BackendService) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let send = ha
            .services
            .insert()
            .set_project(&self.project)
            .set_region(&b.region)
            .set_body(wire_ha::backend_service_to_wire(&self.project, b))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let context = format!("creating backend service {}", b.name);
        self.change(Scope::Region(&b.region), &context, send).await
    }

    /// Patches the health check and backends, with the service's `fingerprint` as read ("Fingerprint of
    /// this resource ... An up-to-date fingerprint must be provided in order to update the BackendService").
    pub(crate) async fn patch_backend_service(
        &self,
        stack: &str,
        b: &BackendService,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let context = format!("updating backend service {}", b.name);
        let got = ha
            .services
            .get()
            .set_project(&self.project)
            .set_region(&b.region)
            .set_backend_service(&b.name)
            .send()
            .await
            .map_err(api_error(&context))?;
        ensure_owned(
            stack,
            description_owner(got.description.as_deref()),
            &context,
        )?;
        let mut body = wire_ha::backend_service_to_wire(&self.project, b);
        if let Some(fp) = got.fingerprint {
            body = body.set_fingerprint(fp);
        }
        let send = ha
            .services
            .patch()
            .set_project(&self.project)
            .set_region(&b.region)
            .set_backend_service(&b.name)
            .set_body(body)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        self.change(Scope::Region(&b.region), &context, send).await
    }

    pub(crate) async fn delete_backend_service(
        &self,
        check: OwnerCheck<'_>,
        region: &str,
        name: &str,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let p = &self.project;
        let get = ha
            .services
            .get()
            .set_project(p)
            .set_region(region)
            .set_backend_service(name)
            .send();
        let delete = ha
            .services
            .delete()
            .set_project(p)
            .set_region(region)
            .set_backend_service(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |b: gce::BackendService| description_owner(b.description.as_deref());
        let context = format!("deleting backend service {name}");
        self.delete_owned(check, Scope::Region(region), &context, get, owner, delete)
            .await
    }

    /// Each VM of `group` (a backend of the service `b`) and whether it is healthy
    /// (`regionBackendServices.getHealth`; `HealthStatus.healthState` HEALTHY).
    pub(crate) async fn backend_health(
        &self,
        region: &str,
        service: &str,
        zone: &str,
        group: &str,
    ) -> Result<Vec<BackendHealth>, GcpError> {
        let ha = self.ha().await?;
        let got = ha
            .services
            .get_health()
            .set_project(&self.project)
            .set_region(region)
            .set_backend_service(service)
            .set_body(gce::ResourceGroupReference::new().set_group(format!(
                "projects/{}/zones/{zone}/instanceGroups/{group}",
                self.project
            )))
            .with_idempotency(true)
            .send()
            .await
            .map_err(api_error(format!(
                "reading the health of backend service {service}"
            )))?;
        Ok(got
            .health_status
            .iter()
            .map(|h| BackendHealth {
                instance: h
                    .instance
                    .as_deref()
                    .map(wire::last_segment)
                    .unwrap_or_default(),
                healthy: h.health_state == Some(gce::health_status::HealthState::Healthy),
            })
            .collect())
    }

    /// `address`: the name of the reserved address the rule takes.
    pub(crate) async fn insert_forwarding_rule(
        &self,
        f: &ForwardingRule,
        address: &str,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let send = ha
            .rules
            .insert()
            .set_project(&self.project)
            .set_region(&f.region)
            .set_body(wire_ha::forwarding_rule_to_wire(&self.project, f, address))
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let context = format!("creating forwarding rule {}", f.name);
        self.change(Scope::Region(&f.region), &context, send)
            .await
            .map_err(|e| self.explain_shared_vpc(&f.subnetwork, e))
            .map_err(|e| {
                e.for_resource(format!(
                    "projects/{}/regions/{}/forwardingRules/{}",
                    self.project, f.region, f.name
                ))
            })
    }

    pub(crate) async fn delete_forwarding_rule(
        &self,
        check: OwnerCheck<'_>,
        region: &str,
        name: &str,
    ) -> Result<(), GcpError> {
        let ha = self.ha().await?;
        let p = &self.project;
        let get = ha
            .rules
            .get()
            .set_project(p)
            .set_region(region)
            .set_forwarding_rule(name)
            .send();
        let delete = ha
            .rules
            .delete()
            .set_project(p)
            .set_region(region)
            .set_forwarding_rule(name)
            .set_request_id(request_id())
            .with_idempotency(true)
            .send();
        let owner = |f: gce::ForwardingRule| description_owner(f.description.as_deref());
        let context = format!("deleting forwarding rule {name}");
        self.delete_owned(check, Scope::Region(region), &context, get, owner, delete)
            .await
    }
}
