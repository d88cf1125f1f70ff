//! Instances: network interfaces that use reserved addresses, disks, fingerprints. Power and what the guest
//! reports are in `instance_state`.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::address::{
    Subnet, check_fingerprint, free_ip, next_external_ip, release_addresses, subnet, taken_ips,
};
use super::network::network_exists;
use super::{
    Answer, Ctx, body_of, check_labels, insert_body, mutate, parse_ip, stamp, url, usable,
    zone_region_of,
};
use crate::emulator::api_error::{ApiError, OpError};
use crate::emulator::catalog;
use crate::emulator::org_policy;
use crate::emulator::schema::{self, Api};
use crate::emulator::world::{
    Power, Scope, World, fingerprint, last_segment, obj, resolve_ref, rfc3339, str_field,
};

/// Inserts an instance: its interfaces are resolved at once; taking reserved or used IPs is judged in the
/// operation, and reserved addresses it takes become IN_USE with the instance as their user.
pub(super) fn insert_instance(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    body: Option<Value>,
) -> Answer {
    let region = zone_region_of(p, z)?;
    let (body, path) = insert_body(world, "Instance", "compute.instances.insert", body, |n| {
        format!("projects/{p}/zones/{z}/instances/{n}")
    })?;
    check_labels(body.get("labels"))?;
    let mt_path = machine_type(&body, p, z)?;
    check_boot_disk(&body)?;
    let nics = resolve_nics(world, &body, p, region)?;
    org_policy::check_instance_insert(ctx.policies, p, &path, &body)?;
    let target = path.clone();
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        "insert",
        &target,
        |w| {
            let (out_nics, uses) = match attach_nics(w, p, region, &nics) {
                Ok(attached) => attached,
                Err(e) => return Ok(Err(e)),
            };
            let instance = complete_instance(w, ctx, body, &path, &mt_path, out_nics);
            w.resources.insert(path.clone(), instance);
            w.power
                .insert(path.clone(), Power::boot(ctx.now + ctx.timing.op_ms, true));
            mark_in_use(w, &uses, &url(&path));
            Ok(Ok(()))
        },
    )
}

/// The machine type's path; it must be one of the zone's.
fn machine_type(body: &Value, p: &str, z: &str) -> Result<String, ApiError> {
    let mt = str_field(body, "machineType").unwrap_or_default();
    if mt.is_empty() {
        return Err(ApiError::invalid_field(
            "resource.machineType",
            "",
            "Machine type must be specified.",
        ));
    }
    let mt_path = resolve_ref(mt, p, &format!("zones/{z}"), "machineTypes");
    let known = mt_path.starts_with(&format!("projects/{p}/zones/{z}/machineTypes/"))
        && catalog::MACHINE_TYPES
            .iter()
            .any(|(n, ..)| *n == last_segment(&mt_path));
    if known {
        Ok(mt_path)
    } else {
        Err(ApiError::not_found(&mt_path))
    }
}

fn check_boot_disk(body: &Value) -> Result<(), ApiError> {
    let has_boot_disk = body
        .get("disks")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|d| d.get("boot").and_then(Value::as_bool) == Some(true))
        });
    if has_boot_disk {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "resource.disks",
            "",
            "Boot disk must be specified.",
        ))
    }
}

/// One network interface as the request gives it, resolved against the world.
struct NicPlan {
    given: Value,
    sub: Subnet,
    ip: Option<Ipv4Addr>,
    nat_ips: Vec<Option<Ipv4Addr>>,
}

/// Resolves every interface synchronously (subnetwork, network, IPs' syntax and range); address conflicts
/// are left to the operation.
fn resolve_nics(
    world: &World,
    body: &Value,
    p: &str,
    region: &str,
) -> Result<Vec<NicPlan>, ApiError> {
    let given: Vec<Value> = body
        .get("networkInterfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if given.is_empty() {
        return Err(ApiError::invalid_field(
            "resource.networkInterfaces",
            "",
            "At least one network interface is required.",
        ));
    }
    given
        .into_iter()
        .enumerate()
        .map(|(i, nic)| {
            resolve_nic(
                world,
                nic,
                &format!("resource.networkInterfaces[{i}]"),
                p,
                region,
            )
        })
        .collect()
}

fn resolve_nic(
    world: &World,
    nic: Value,
    field: &str,
    p: &str,
    region: &str,
) -> Result<NicPlan, ApiError> {
    let sub = nic_subnet(world, &nic, field, p, region)?;
    if let Some(n) = str_field(&nic, "network")
        && url(&resolve_ref(n, p, "global", "networks")) != sub.network_url
    {
        return Err(ApiError::invalid_field(
            &format!("{field}.network"),
            n,
            "The subnetwork does not belong to this network.",
        ));
    }
    let ip = match str_field(&nic, "networkIP") {
        Some(s) => {
            let ip = parse_ip(&format!("{field}.networkIP"), s)?;
            if !usable(sub.range, ip) {
                return Err(ApiError::invalid_field(
                    &format!("{field}.networkIP"),
                    s,
                    &format!(
                        "The IP address is not a usable address of the subnetwork range {}.",
                        sub.range
                    ),
                ));
            }
            Some(ip)
        }
        None => None,
    };
    let mut nat_ips = Vec::new();
    for (j, ac) in access_configs(&nic).iter().enumerate() {
        nat_ips.push(match str_field(ac, "natIP") {
            Some(s) => Some(parse_ip(&format!("{field}.accessConfigs[{j}].natIP"), s)?),
            None => None,
        });
    }
    Ok(NicPlan {
        given: nic,
        sub,
        ip,
        nat_ips,
    })
}

fn access_configs(nic: &Value) -> Vec<Value> {
    nic.get("accessConfigs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The interface's subnetwork: the one it names, or its network's subnetwork in the region.
fn nic_subnet(
    world: &World,
    nic: &Value,
    field: &str,
    p: &str,
    region: &str,
) -> Result<Subnet, ApiError> {
    if let Some(s) = str_field(nic, "subnetwork") {
        return subnet(world, s, p, region, &format!("{field}.subnetwork"));
    }
    let net_path = resolve_ref(
        str_field(nic, "network").unwrap_or("default"),
        p,
        "global",
        "networks",
    );
    network_exists(world, &net_path)?;
    let net_url = url(&net_path);
    let found = world
        .children(&format!("projects/{p}/regions/{region}/subnetworks/"))
        .find(|(_, v)| str_field(v, "network") == Some(net_url.as_str()))
        .map(|(k, _)| k.clone())
        .ok_or_else(|| {
            ApiError::invalid_field(
                &format!("{field}.network"),
                &net_url,
                &format!("The network has no subnetwork in region '{region}'."),
            )
        })?;
    subnet(world, &found, p, region, &format!("{field}.subnetwork"))
}

/// Gives each interface its internal IP and its external ones, in the operation: the interfaces as stored,
/// and the reserved addresses they take.
fn attach_nics(
    w: &mut World,
    p: &str,
    region: &str,
    nics: &[NicPlan],
) -> Result<(Vec<Value>, Vec<String>), OpError> {
    let mut uses = Vec::new();
    let mut out = Vec::new();
    for (i, nic) in nics.iter().enumerate() {
        let ip = internal_ip(w, p, nic, &mut uses)?;
        let mut acs = Vec::new();
        for (j, (nat, ac)) in nic
            .nat_ips
            .iter()
            .zip(access_configs(&nic.given))
            .enumerate()
        {
            let nat_ip = match nat {
                Some(nat) => {
                    let field = format!("resource.networkInterfaces[{i}].accessConfigs[{j}].natIP");
                    uses.push(reserved_external(w, p, region, *nat, &field)?);
                    nat.to_string()
                }
                None => next_external_ip(w),
            };
            acs.push(stored_access_config(ac, &nat_ip));
        }
        let mut n = nic.given.clone();
        let fp = fingerprint(w, &n);
        let o = obj(&mut n);
        o.insert("kind".into(), json!("compute#networkInterface"));
        o.insert("name".into(), json!(format!("nic{i}")));
        o.insert("network".into(), json!(nic.sub.network_url));
        o.insert("subnetwork".into(), json!(url(&nic.sub.path)));
        o.insert("networkIP".into(), json!(ip.to_string()));
        o.insert("fingerprint".into(), json!(fp));
        o.entry("stackType").or_insert(json!("IPV4_ONLY"));
        if acs.is_empty() {
            o.remove("accessConfigs");
        } else {
            o.insert("accessConfigs".into(), Value::Array(acs));
        }
        out.push(n);
    }
    Ok((out, uses))
}

/// The interface's internal IP: the one asked for (a reserved address of the subnetwork, which it then
/// uses, or a free IP), or the first free one.
fn internal_ip(
    w: &World,
    p: &str,
    nic: &NicPlan,
    uses: &mut Vec<String>,
) -> Result<Ipv4Addr, OpError> {
    let sub = &nic.sub;
    let Some(ip) = nic.ip else {
        return free_ip(w, &sub.network_url, sub.range).ok_or_else(|| {
            OpError::new(
                400,
                "IP_SPACE_EXHAUSTED",
                format!("The subnetwork '{}' has no free address.", sub.path),
            )
        });
    };
    let reserved = w
        .aggregated(p, "addresses")
        .find(|(_, _, a)| {
            str_field(a, "subnetwork") == Some(url(&sub.path).as_str())
                && str_field(a, "address") == Some(ip.to_string().as_str())
        })
        .map(|(_, k, a)| (k.clone(), str_field(a, "status") == Some("IN_USE")));
    match reserved {
        Some((k, false)) => uses.push(k),
        Some((k, true)) => {
            return Err(OpError::ip_in_use(format!(
                "IP '{ip}' is already being used by another resource: the address '{k}' is in use."
            )));
        }
        None if taken_ips(w, &sub.network_url).contains(&ip) => {
            return Err(OpError::ip_in_use(format!(
                "IP '{ip}' is already being used by another resource."
            )));
        }
        None => {}
    }
    Ok(ip)
}

/// A natIP must be a reserved external address of the instance's region that nothing uses; returns its path.
fn reserved_external(
    w: &World,
    p: &str,
    region: &str,
    nat: Ipv4Addr,
    field: &str,
) -> Result<String, OpError> {
    let found = w
        .aggregated(p, "addresses")
        .find(|(_, _, a)| {
            str_field(a, "addressType") == Some("EXTERNAL")
                && str_field(a, "address") == Some(nat.to_string().as_str())
        })
        .map(|(scope, k, a)| (scope, k.clone(), str_field(a, "status") == Some("IN_USE")));
    match found {
        None => Err(OpError::invalid(format!(
            "Invalid value for field '{field}': '{nat}'. The specified external IP address '{nat}' is not reserved in project '{p}'."
        ))),
        Some((scope, _, _)) if scope != format!("regions/{region}") => {
            Err(OpError::invalid(format!(
                "Invalid value for field '{field}': '{nat}'. The specified external IP address '{nat}' was not found in region '{region}'."
            )))
        }
        Some((_, k, true)) => Err(OpError::ip_in_use(format!(
            "External IP address: {nat} is already in-use by the address '{k}'."
        ))),
        Some((_, k, false)) => Ok(k),
    }
}

fn stored_access_config(given: Value, nat_ip: &str) -> Value {
    let mut ac = given;
    let o = obj(&mut ac);
    o.insert("kind".into(), json!("compute#accessConfig"));
    o.entry("type").or_insert(json!("ONE_TO_ONE_NAT"));
    o.entry("name").or_insert(json!("External NAT"));
    o.entry("networkTier").or_insert(json!("PREMIUM"));
    o.insert("natIP".into(), json!(nat_ip));
    ac
}

/// The instance as the API shows it: output fields, fingerprints, defaults, attached disks.
fn complete_instance(
    w: &mut World,
    ctx: &Ctx<'_>,
    mut body: Value,
    path: &str,
    mt_path: &str,
    nics: Vec<Value>,
) -> Value {
    stamp(w, ctx, &mut body, "compute#instance", path);
    let meta_fp = fingerprint(w, &json!(["metadata", path]));
    let tags_fp = fingerprint(w, &json!(["tags", path]));
    let label_fp = fingerprint(w, &json!(["labels", path]));
    let inst_fp = fingerprint(w, &json!(["instance", path]));
    let zone_path = path.rsplit_once("/instances/").map_or(path, |(z, _)| z);
    let o = obj(&mut body);
    o.insert("networkInterfaces".into(), Value::Array(nics));
    o.insert("zone".into(), json!(url(zone_path)));
    o.insert("machineType".into(), json!(url(mt_path)));
    let mut metadata = o.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mo = obj(&mut metadata);
    mo.insert("kind".into(), json!("compute#metadata"));
    mo.insert("fingerprint".into(), json!(meta_fp));
    o.insert("metadata".into(), metadata);
    let mut tags = o.get("tags").cloned().unwrap_or_else(|| json!({}));
    obj(&mut tags).insert("fingerprint".into(), json!(tags_fp));
    o.insert("tags".into(), tags);
    o.insert("labelFingerprint".into(), json!(label_fp));
    o.insert("fingerprint".into(), json!(inst_fp));
    o.entry("canIpForward").or_insert(json!(false));
    o.entry("deletionProtection").or_insert(json!(false));
    o.insert("cpuPlatform".into(), json!("Intel Cascade Lake"));
    o.insert("startRestricted".into(), json!(false));
    o.insert(
        "lastStartTimestamp".into(),
        json!(rfc3339(ctx.now + ctx.timing.op_ms)),
    );
    if let Some(Value::Array(disks)) = o.get_mut("disks") {
        attach_disks(disks, zone_path, last_segment(path));
    }
    body
}

fn attach_disks(disks: &mut [Value], zone_path: &str, instance: &str) {
    for (i, d) in disks.iter_mut().enumerate() {
        let dname = if i == 0 {
            instance.to_string()
        } else {
            format!("{instance}-{i}")
        };
        let d = obj(d);
        d.insert("kind".into(), json!("compute#attachedDisk"));
        d.insert("index".into(), json!(i));
        d.entry("type").or_insert(json!("PERSISTENT"));
        d.entry("mode").or_insert(json!("READ_WRITE"));
        d.entry("deviceName").or_insert(json!(dname.clone()));
        d.entry("source")
            .or_insert(json!(url(&format!("{zone_path}/disks/{dname}"))));
        d.remove("initializeParams");
    }
}

/// Reserved addresses an instance took become IN_USE, with the instance as their user.
fn mark_in_use(w: &mut World, addresses: &[String], self_link: &str) {
    for a in addresses {
        if let Some(addr) = w.resources.get_mut(a) {
            let o = obj(addr);
            o.insert("status".into(), json!("IN_USE"));
            o.insert("users".into(), json!([self_link]));
        }
    }
}

pub(super) fn delete_instance(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    i: &str,
) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        "delete",
        &path.clone(),
        |w| {
            release_addresses(w, &url(&path));
            w.resources.remove(&path);
            w.power.remove(&path);
            Ok(Ok(()))
        },
    )
}

pub(super) fn set_instance_field(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    i: &str,
    verb: &str,
    body: Option<Value>,
) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    let mut body = body_of(body);
    let schema_name = match verb {
        "setMetadata" => "Metadata",
        "setTags" => "Tags",
        _ => "InstancesSetLabelsRequest",
    };
    schema::validate(Api::Compute, schema_name, None, "resource", &mut body)?;
    let current = world.get(&path)?.clone();
    match verb {
        "setMetadata" => check_fingerprint(
            &current,
            "metadata.fingerprint",
            body.get("fingerprint"),
            "Supplied fingerprint does not match current metadata fingerprint.",
        )?,
        "setTags" => check_fingerprint(
            &current,
            "tags.fingerprint",
            body.get("fingerprint"),
            "Supplied fingerprint does not match current tags fingerprint.",
        )?,
        _ => {
            check_labels(body.get("labels"))?;
            check_fingerprint(
                &current,
                "labelFingerprint",
                body.get("labelFingerprint"),
                "Labels fingerprint either invalid or resource labels have changed",
            )?;
        }
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        verb,
        &path.clone(),
        |w| {
            let fp = fingerprint(w, &body);
            let Some(inst) = w.resources.get_mut(&path) else {
                return Ok(Ok(()));
            };
            let o = obj(inst);
            match verb {
                "setMetadata" => {
                    let items = body.get("items").cloned().unwrap_or_else(|| json!([]));
                    o.insert(
                        "metadata".into(),
                        json!({"kind": "compute#metadata", "fingerprint": fp, "items": items}),
                    );
                }
                "setTags" => {
                    let items = body.get("items").cloned().unwrap_or_else(|| json!([]));
                    o.insert("tags".into(), json!({"fingerprint": fp, "items": items}));
                }
                _ => {
                    o.insert(
                        "labels".into(),
                        body.get("labels").cloned().unwrap_or_else(|| json!({})),
                    );
                    o.insert("labelFingerprint".into(), json!(fp));
                }
            }
            Ok(Ok(()))
        },
    )
}
