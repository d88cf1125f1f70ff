//! The resources of a highly available gateway: instance templates, zonal managed instance groups (and the
//! instance groups they manage), regional health checks, regional backend services and forwarding rules of
//! an internal passthrough Network Load Balancer; and the emulator's own `/_emulator/` endpoints.

use serde_json::Value;

use super::backend_service::{backend_health, insert_backend_service, patch_backend_service};
use super::forwarding_rule::{delete_forwarding_rule, insert_forwarding_rule};
use super::health_check::{insert_health_check, patch_health_check};
use super::igm::{delete_igm, igm_verb, insert_igm, patch_igm};
use super::instance_template::insert_template;
use super::{Answer, Ctx, get, list, mutate, region_of, url, zone_region_of};
use crate::emulator::api_error::{ApiError, OpError};
use crate::emulator::world::{Scope, World};

pub(crate) use super::igm::reconcile;
pub(crate) use super::next_hops::emulator_endpoint;

/// Google's paths for the resources above; `rest` is the path after `projects/{project}/`.
pub(super) fn handle(
    world: &mut World,
    ctx: &Ctx<'_>,
    method: &str,
    p: &str,
    rest: &[&str],
    body: Option<Value>,
) -> Answer {
    match (method, rest) {
        ("GET", ["global", "instanceTemplates"]) => list(
            world,
            ctx,
            &format!("projects/{p}/global/instanceTemplates/"),
            "compute#instanceTemplateList",
        ),
        ("POST", ["global", "instanceTemplates"]) => insert_template(world, ctx, p, body),
        ("GET", ["global", "instanceTemplates", t]) => get(
            world,
            ctx,
            &format!("projects/{p}/global/instanceTemplates/{t}"),
        ),
        ("DELETE", ["global", "instanceTemplates", t]) => delete_unless_used(
            world,
            ctx,
            p,
            &format!("projects/{p}/global/instanceTemplates/{t}"),
            &Scope::Global,
            "instance_template",
        ),

        (
            "GET",
            [
                "zones",
                z,
                kind @ ("instanceGroupManagers" | "instanceGroups"),
            ],
        ) => {
            zone_region_of(p, z)?;
            let list_kind = if *kind == "instanceGroups" {
                "compute#instanceGroupList"
            } else {
                "compute#instanceGroupManagerList"
            };
            list(
                world,
                ctx,
                &format!("projects/{p}/zones/{z}/{kind}/"),
                list_kind,
            )
        }
        (
            "GET",
            [
                "zones",
                z,
                kind @ ("instanceGroupManagers" | "instanceGroups"),
                n,
            ],
        ) => get(world, ctx, &format!("projects/{p}/zones/{z}/{kind}/{n}")),
        ("POST", ["zones", z, "instanceGroupManagers"]) => insert_igm(world, ctx, p, z, body),
        ("DELETE", ["zones", z, "instanceGroupManagers", n]) => delete_igm(world, ctx, p, z, n),
        ("PATCH", ["zones", z, "instanceGroupManagers", n]) => patch_igm(world, ctx, p, z, n, body),
        ("POST", ["zones", z, "instanceGroupManagers", n, verb]) => {
            igm_verb(world, ctx, p, z, n, verb, body)
        }

        (
            "GET",
            [
                "regions",
                r,
                kind @ ("healthChecks" | "backendServices" | "forwardingRules"),
            ],
        ) => {
            region_of(p, r)?;
            let list_kind = match *kind {
                "healthChecks" => "compute#healthCheckList",
                "backendServices" => "compute#backendServiceList",
                _ => "compute#forwardingRuleList",
            };
            list(
                world,
                ctx,
                &format!("projects/{p}/regions/{r}/{kind}/"),
                list_kind,
            )
        }
        (
            "GET",
            [
                "regions",
                r,
                kind @ ("healthChecks" | "backendServices" | "forwardingRules"),
                n,
            ],
        ) => get(world, ctx, &format!("projects/{p}/regions/{r}/{kind}/{n}")),
        ("POST", ["regions", r, "healthChecks"]) => insert_health_check(world, ctx, p, r, body),
        ("PATCH", ["regions", r, "healthChecks", n]) => {
            patch_health_check(world, ctx, p, r, n, body)
        }
        ("DELETE", ["regions", r, kind @ ("healthChecks" | "backendServices"), n]) => {
            delete_unless_used(
                world,
                ctx,
                p,
                &format!("projects/{p}/regions/{r}/{kind}/{n}"),
                &Scope::Region((*r).to_string()),
                if *kind == "healthChecks" {
                    "health_check"
                } else {
                    "backend_service"
                },
            )
        }
        ("POST", ["regions", r, "backendServices"]) => {
            insert_backend_service(world, ctx, p, r, body)
        }
        ("PATCH", ["regions", r, "backendServices", n]) => {
            patch_backend_service(world, ctx, p, r, n, body)
        }
        ("POST", ["regions", r, "backendServices", n, "getHealth"]) => {
            backend_health(world, ctx, p, r, n, body)
        }
        ("POST", ["regions", r, "forwardingRules"]) => {
            insert_forwarding_rule(world, ctx, p, r, body)
        }
        ("DELETE", ["regions", r, "forwardingRules", n]) => {
            delete_forwarding_rule(world, ctx, p, r, n)
        }
        _ => Err(ApiError::method_not_found(
            method,
            &format!("/compute/v1/projects/{p}/{}", rest.join("/")),
        )),
    }
}

/// The first resource other than `path` itself whose JSON names `url` anywhere (a template used by a group,
/// a health check by a backend service, ...): Google refuses to delete what another resource uses.
fn user_of(world: &World, path: &str, url: &str) -> Option<String> {
    fn names(v: &Value, url: &str) -> bool {
        match v {
            Value::String(s) => s == url,
            Value::Array(a) => a.iter().any(|x| names(x, url)),
            Value::Object(m) => m
                .iter()
                .any(|(k, x)| k != "selfLink" && k != "users" && names(x, url)),
            _ => false,
        }
    }
    world
        .resources
        .iter()
        .find(|(k, v)| k.as_str() != path && !k.contains("/instances/") && names(v, url))
        .map(|(k, _)| k.clone())
}

/// Deletes a resource unless another one uses it; Google's DONE operation then carries
/// RESOURCE_IN_USE_BY_ANOTHER_RESOURCE, as for addresses.
fn delete_unless_used(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    path: &str,
    scope: &Scope,
    kind: &str,
) -> Answer {
    world.get(path)?;
    mutate(world, ctx, p, scope, "delete", path, |w| {
        if let Some(user) = user_of(w, path, &url(path)) {
            return Ok(Err(OpError::in_use(format!(
                "The {kind} resource '{path}' is already being used by '{user}'"
            ))));
        }
        w.resources.remove(path);
        Ok(Ok(()))
    })
}
