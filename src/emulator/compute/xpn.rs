//! Shared VPC: host projects, the service projects attached to them, and which service projects may use a
//! host's subnetwork.
//!
//! compute.v1.json, `projects.enableXpnHost`: "Enable this project as a shared VPC host project";
//! `projects.enableXpnResource`: "Enable service resource (a.k.a service project) for a host project, so that
//! subnets in the host project can be used by instances in the service project"; `projects.getXpnHost`: "Gets
//! the shared VPC host project that this project links to. May be empty if no link exists";
//! `projects.getXpnResources`: "Gets service resources (a.k.a service project) associated with this host
//! project".

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Answer, Ctx, Reply, body_of, mutate};
use crate::emulator::api_error::ApiError;
use crate::emulator::schema::{self, Api};
use crate::emulator::world::{Scope, World, str_field};

/// The Shared VPC associations of the emulated organisation.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Xpn {
    /// Projects enabled as hosts.
    pub(crate) hosts: BTreeSet<String>,
    /// Service project -> its host ("a service project can only be attached to a single host project":
    /// <https://cloud.google.com/vpc/docs/shared-vpc#shared_vpc_host_project_and_service_project_associations>).
    pub(crate) services: BTreeMap<String, String>,
    /// Subnetwork path -> the service projects it is shared with. A subnetwork with no entry is shared with
    /// every attached service project, as when the Shared VPC Admin grants Network User on the whole host
    /// project; an entry is the subnet-level grant
    /// (<https://cloud.google.com/vpc/docs/provisioning-shared-vpc#networkuseratsubnet>).
    pub(crate) subnet_users: BTreeMap<String, BTreeSet<String>>,
}

fn project_body(project: &str) -> Value {
    json!({
        "kind": "compute#project",
        "name": project,
        "id": crate::emulator::world::project_number(project),
        "xpnProjectStatus": "HOST",
    })
}

pub(super) fn enable_xpn_host(world: &mut World, ctx: &Ctx<'_>, p: &str) -> Answer {
    let target = format!("projects/{p}");
    mutate(
        world,
        ctx,
        p,
        &Scope::Global,
        "enableXpnHost",
        &target,
        |w| {
            w.xpn.hosts.insert(p.to_string());
            Ok(Ok(()))
        },
    )
}

pub(super) fn enable_xpn_resource(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    body: Option<Value>,
) -> Answer {
    let mut body = body_of(body);
    schema::validate(
        Api::Compute,
        "ProjectsEnableXpnResourceRequest",
        Some("compute.projects.enableXpnResource"),
        "resource",
        &mut body,
    )?;
    let service = body
        .get("xpnResource")
        .and_then(|r| str_field(r, "id"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::required("resource.xpnResource.id"))?
        .to_string();
    let target = format!("projects/{p}");
    mutate(
        world,
        ctx,
        p,
        &Scope::Global,
        "enableXpnResource",
        &target,
        |w| {
            w.xpn.services.insert(service, p.to_string());
            Ok(Ok(()))
        },
    )
}

pub(super) fn get_xpn_host(world: &World, p: &str) -> Answer {
    Ok(Reply::read(match world.xpn.services.get(p) {
        Some(host) => project_body(host),
        None => json!({}),
    }))
}

pub(super) fn get_xpn_resources(world: &World, p: &str) -> Answer {
    let resources: Vec<Value> = world
        .xpn
        .services
        .iter()
        .filter(|(_, host)| host.as_str() == p)
        .map(|(service, _)| json!({"id": service, "type": "PROJECT"}))
        .collect();
    Ok(Reply::read(json!({
        "kind": "compute#projectsGetXpnResources",
        "resources": resources,
    })))
}

/// Whether `project` may put a VM's interface or an internal address on the subnetwork at `path`, which may
/// be in another project. Google's answers:
/// - the service project is not attached to the subnetwork's host: 400 "Invalid value for field
///   '...subnetwork': '...'. Cross-project references for this resource are not allowed." (quoted in
///   hashicorp/terraform-provider-google#7368 and tranquilitybase-io/tb-gcp#507, where the project was not
///   attached yet);
/// - attached, but the subnetwork is not shared with it: 403 "Required 'compute.subnetworks.use' permission
///   for 'projects/HOST/regions/R/subnetworks/S'" (hashicorp/terraform-provider-google#4961). The emulator has
///   no IAM: the grant to the project stands for the grant to whoever calls from it.
pub(super) fn check_subnet_use(
    world: &World,
    project: &str,
    path: &str,
    field: &str,
    reference: &str,
) -> Result<(), ApiError> {
    let owner = path
        .strip_prefix("projects/")
        .and_then(|r| r.split('/').next())
        .unwrap_or(project);
    if owner == project {
        return Ok(());
    }
    if world.xpn.services.get(project).map(String::as_str) != Some(owner)
        || !world.xpn.hosts.contains(owner)
    {
        return Err(ApiError::invalid_field(
            field,
            reference,
            "Cross-project references for this resource are not allowed.",
        ));
    }
    if let Some(users) = world.xpn.subnet_users.get(path)
        && !users.contains(project)
    {
        return Err(ApiError::new(
            403,
            "forbidden",
            format!("Required 'compute.subnetworks.use' permission for '{path}'"),
        ));
    }
    Ok(())
}
