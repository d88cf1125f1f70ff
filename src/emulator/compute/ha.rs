//! The resources of a highly available gateway: instance templates, zonal managed instance groups (and the
//! instance groups they manage), regional health checks, regional backend services and forwarding rules of
//! an internal passthrough Network Load Balancer; and the emulator's own `/_emulator/` endpoints.

use serde_json::{Value, json};

use super::backend_service::{BACKEND_SERVICE, backend_health, check_backend_service};
use super::forwarding_rule::{delete_forwarding_rule, insert_forwarding_rule};
use super::health_check::{HEALTH_CHECK, check_health_check};
use super::igm::{delete_igm, igm_verb, insert_igm, patch_igm};
use super::instance_template::insert_template;
use super::{
    Answer, Ctx, aggregated, body_of, get, insert_body, list, mutate, region_of, stamp, url,
    zone_region_of,
};
use crate::emulator::api_error::{ApiError, OpError};
use crate::emulator::schema::{self, Api};
use crate::emulator::world::{Scope, World, fingerprint, obj, same_fingerprint, str_field};

pub(crate) use super::mig_loop::reconcile;
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
    match rest.first() {
        Some(&"global") => templates(world, ctx, method, p, rest, body),
        Some(&"zones") => groups(world, ctx, method, p, rest, body),
        Some(&"regions") => regional(world, ctx, method, p, rest, body),
        _ => match (method, rest) {
            ("GET", ["aggregated", kind]) => {
                let list_kind = match *kind {
                    "instanceGroupManagers" => "compute#instanceGroupManagerAggregatedList",
                    "healthChecks" => "compute#healthChecksAggregatedList",
                    "backendServices" => "compute#backendServiceAggregatedList",
                    _ => "compute#forwardingRuleAggregatedList",
                };
                aggregated(world, ctx, p, kind, list_kind)
            }
            _ => not_found(method, p, rest),
        },
    }
}

fn not_found(method: &str, p: &str, rest: &[&str]) -> Answer {
    Err(ApiError::method_not_found(
        method,
        &format!("/compute/v1/projects/{p}/{}", rest.join("/")),
    ))
}

/// Instance templates.
fn templates(
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
        _ => not_found(method, p, rest),
    }
}

/// Zonal managed instance groups and the instance groups they manage.
fn groups(
    world: &mut World,
    ctx: &Ctx<'_>,
    method: &str,
    p: &str,
    rest: &[&str],
    body: Option<Value>,
) -> Answer {
    match (method, rest) {
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
        _ => not_found(method, p, rest),
    }
}

/// Regional health checks, backend services and forwarding rules.
fn regional(
    world: &mut World,
    ctx: &Ctx<'_>,
    method: &str,
    p: &str,
    rest: &[&str],
    body: Option<Value>,
) -> Answer {
    match (method, rest) {
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
        ("POST", ["regions", r, "healthChecks"]) => {
            insert_regional(world, ctx, (p, r), body, &HEALTH_CHECK, &check_health_check)
        }
        ("PATCH", ["regions", r, "healthChecks", n]) => patch_regional(
            world,
            ctx,
            (p, r, n),
            body,
            &HEALTH_CHECK,
            &check_health_check,
        ),
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
            insert_regional(world, ctx, (p, r), body, &BACKEND_SERVICE, &|w, b| {
                check_backend_service(w, p, r, b)
            })
        }
        ("PATCH", ["regions", r, "backendServices", n]) => {
            patch_regional(world, ctx, (p, r, n), body, &BACKEND_SERVICE, &|w, b| {
                check_backend_service(w, p, r, b)
            })
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
        _ => not_found(method, p, rest),
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

/// A regional resource whose insert and patch differ only in its schema and its `check`, which validates the
/// whole resource and fills in Google's defaults.
pub(super) struct Regional {
    /// The discovery schema, e.g. `HealthCheck`.
    pub(super) schema: &'static str,
    /// The collection in paths, e.g. `healthChecks`.
    pub(super) collection: &'static str,
    pub(super) kind: &'static str,
    /// Whether the resource carries a fingerprint that a patch must match.
    pub(super) fingerprint: bool,
}

type Check<'a> = &'a dyn Fn(&World, &mut Value) -> Result<(), ApiError>;

pub(super) fn insert_regional(
    world: &mut World,
    ctx: &Ctx<'_>,
    (p, r): (&str, &str),
    body: Option<Value>,
    spec: &Regional,
    check: Check<'_>,
) -> Answer {
    region_of(p, r)?;
    let c = spec.collection;
    let method = format!("compute.region{}{}.insert", c[..1].to_uppercase(), &c[1..]);
    let (mut body, path) = insert_body(world, spec.schema, &method, body, |n| {
        format!("projects/{p}/regions/{r}/{c}/{n}")
    })?;
    check(world, &mut body)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "insert",
        &path.clone(),
        |w| {
            stamp(w, ctx, &mut body, spec.kind, &path);
            if spec.fingerprint {
                let fp = fingerprint(w, &body);
                obj(&mut body).insert("fingerprint".into(), json!(fp));
            }
            obj(&mut body).insert(
                "region".into(),
                json!(url(&format!("projects/{p}/regions/{r}"))),
            );
            w.resources.insert(path.clone(), body);
            Ok(Ok(()))
        },
    )
}

/// PATCH: the fields given replace the current ones (a JSON merge, as Google's PATCH); a stale fingerprint
/// is refused.
pub(super) fn patch_regional(
    world: &mut World,
    ctx: &Ctx<'_>,
    (p, r, n): (&str, &str, &str),
    body: Option<Value>,
    spec: &Regional,
    check: Check<'_>,
) -> Answer {
    let path = format!("projects/{p}/regions/{r}/{}/{n}", spec.collection);
    let mut patch = body_of(body);
    schema::validate(Api::Compute, spec.schema, None, "resource", &mut patch)?;
    let mut merged = world.get(&path)?.clone();
    if spec.fingerprint
        && let Some(given) = str_field(&patch, "fingerprint")
        && !same_fingerprint(given, str_field(&merged, "fingerprint").unwrap_or_default())
    {
        return Err(ApiError::condition_not_met(
            "Supplied fingerprint does not match current fingerprint.",
        ));
    }
    if let Value::Object(m) = patch {
        for (k, v) in m {
            if k != "name" && k != "fingerprint" {
                obj(&mut merged).insert(k, v);
            }
        }
    }
    check(world, &mut merged)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "patch",
        &path.clone(),
        |w| {
            if spec.fingerprint {
                let fp = fingerprint(w, &merged);
                obj(&mut merged).insert("fingerprint".into(), json!(fp));
            }
            w.resources.insert(path.clone(), merged);
            Ok(Ok(()))
        },
    )
}
