//! Instances: network interfaces that use reserved addresses, fingerprints, power and guest attributes.

use serde_json::{Value, json};

use super::address::{check_fingerprint, free_ip, next_external_ip, subnet, taken_ips};
use super::network::network_exists;
use super::{
    Answer, Ctx, Reply, body_of, check_labels, insert_body, mutate, parse_ip, stamp, url, usable,
    zone_region_of,
};
use crate::emulator::api_error::{ApiError, OpError};
use crate::emulator::catalog;
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
    let (mut body, path) = insert_body(world, "Instance", "compute.instances.insert", body, |n| {
        format!("projects/{p}/zones/{z}/instances/{n}")
    })?;
    check_labels(body.get("labels"))?;
    let mt = str_field(&body, "machineType")
        .unwrap_or_default()
        .to_string();
    if mt.is_empty() {
        return Err(ApiError::invalid_field(
            "resource.machineType",
            "",
            "Machine type must be specified.",
        ));
    }
    let mt_path = resolve_ref(&mt, p, &format!("zones/{z}"), "machineTypes");
    let mt_ok = mt_path.starts_with(&format!("projects/{p}/zones/{z}/machineTypes/"))
        && catalog::MACHINE_TYPES
            .iter()
            .any(|(n, ..)| *n == last_segment(&mt_path));
    if !mt_ok {
        return Err(ApiError::not_found(&mt_path));
    }
    let has_boot_disk = body
        .get("disks")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|d| d.get("boot").and_then(Value::as_bool) == Some(true))
        });
    if !has_boot_disk {
        return Err(ApiError::invalid_field(
            "resource.disks",
            "",
            "Boot disk must be specified.",
        ));
    }
    let nic_values: Vec<Value> = body
        .get("networkInterfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if nic_values.is_empty() {
        return Err(ApiError::invalid_field(
            "resource.networkInterfaces",
            "",
            "At least one network interface is required.",
        ));
    }
    // Resolve every interface synchronously; address conflicts are left to the operation.
    let mut plans = Vec::new();
    for (i, nic) in nic_values.iter().enumerate() {
        let field = format!("resource.networkInterfaces[{i}]");
        let sub = match (str_field(nic, "subnetwork"), str_field(nic, "network")) {
            (Some(s), _) => subnet(world, s, p, region, &format!("{field}.subnetwork"))?,
            (None, net) => {
                let net_path = resolve_ref(net.unwrap_or("default"), p, "global", "networks");
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
                subnet(world, &found, p, region, &format!("{field}.subnetwork"))?
            }
        };
        if let Some(n) = str_field(nic, "network")
            && url(&resolve_ref(n, p, "global", "networks")) != sub.network_url
        {
            return Err(ApiError::invalid_field(
                &format!("{field}.network"),
                n,
                "The subnetwork does not belong to this network.",
            ));
        }
        let ip = match str_field(nic, "networkIP") {
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
        for (j, ac) in nic
            .get("accessConfigs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match str_field(ac, "natIP") {
                Some(s) => nat_ips.push(Some(parse_ip(
                    &format!("{field}.accessConfigs[{j}].natIP"),
                    s,
                )?)),
                None => nat_ips.push(None),
            }
        }
        plans.push((sub, ip, nat_ips));
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        "insert",
        &path.clone(),
        |w| {
            let self_link = url(&path);
            let mut uses: Vec<String> = Vec::new();
            let mut out_nics = Vec::new();
            for (i, ((sub, ip, nat_ips), nic)) in plans.iter().zip(nic_values.iter()).enumerate() {
                let ip = match ip {
                    Some(ip) => {
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
                                return Ok(Err(OpError::ip_in_use(format!(
                                    "IP '{ip}' is already being used by another resource: the address '{k}' is in use."
                                ))));
                            }
                            None => {
                                if taken_ips(w, &sub.network_url).contains(ip) {
                                    return Ok(Err(OpError::ip_in_use(format!(
                                        "IP '{ip}' is already being used by another resource."
                                    ))));
                                }
                            }
                        }
                        *ip
                    }
                    None => match free_ip(w, &sub.network_url, sub.range) {
                        Some(ip) => ip,
                        None => {
                            return Ok(Err(OpError::new(
                                400,
                                "IP_SPACE_EXHAUSTED",
                                format!("The subnetwork '{}' has no free address.", sub.path),
                            )));
                        }
                    },
                };
                let mut acs = Vec::new();
                let given_acs = nic
                    .get("accessConfigs")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (j, (nat, ac)) in nat_ips.iter().zip(given_acs.iter()).enumerate() {
                    let nat_ip = match nat {
                        Some(nat) => {
                            let found = w
                                .aggregated(p, "addresses")
                                .find(|(_, _, a)| {
                                    str_field(a, "addressType") == Some("EXTERNAL")
                                        && str_field(a, "address") == Some(nat.to_string().as_str())
                                })
                                .map(|(scope, k, a)| {
                                    (scope, k.clone(), str_field(a, "status") == Some("IN_USE"))
                                });
                            match found {
                                None => {
                                    return Ok(Err(OpError::invalid(format!(
                                        "Invalid value for field 'resource.networkInterfaces[{i}].accessConfigs[{j}].natIP': '{nat}'. The specified external IP address '{nat}' is not reserved in project '{p}'."
                                    ))));
                                }
                                Some((scope, _, _)) if scope != format!("regions/{region}") => {
                                    return Ok(Err(OpError::invalid(format!(
                                        "Invalid value for field 'resource.networkInterfaces[{i}].accessConfigs[{j}].natIP': '{nat}'. The specified external IP address '{nat}' was not found in region '{region}'."
                                    ))));
                                }
                                Some((_, k, true)) => {
                                    return Ok(Err(OpError::ip_in_use(format!(
                                        "External IP address: {nat} is already in-use by the address '{k}'."
                                    ))));
                                }
                                Some((_, k, false)) => uses.push(k),
                            }
                            nat.to_string()
                        }
                        None => next_external_ip(w),
                    };
                    let mut ac = ac.clone();
                    let o = obj(&mut ac);
                    o.insert("kind".into(), json!("compute#accessConfig"));
                    o.entry("type").or_insert(json!("ONE_TO_ONE_NAT"));
                    o.entry("name").or_insert(json!("External NAT"));
                    o.entry("networkTier").or_insert(json!("PREMIUM"));
                    o.insert("natIP".into(), json!(nat_ip));
                    acs.push(ac);
                }
                let mut n = nic.clone();
                let fp = fingerprint(w, &n);
                let o = obj(&mut n);
                o.insert("kind".into(), json!("compute#networkInterface"));
                o.insert("name".into(), json!(format!("nic{i}")));
                o.insert("network".into(), json!(sub.network_url));
                o.insert("subnetwork".into(), json!(url(&sub.path)));
                o.insert("networkIP".into(), json!(ip.to_string()));
                o.insert("fingerprint".into(), json!(fp));
                o.entry("stackType").or_insert(json!("IPV4_ONLY"));
                if acs.is_empty() {
                    o.remove("accessConfigs");
                } else {
                    o.insert("accessConfigs".into(), Value::Array(acs));
                }
                out_nics.push(n);
            }
            stamp(w, ctx, &mut body, "compute#instance", &path);
            let meta_fp = fingerprint(w, &json!(["metadata", path]));
            let tags_fp = fingerprint(w, &json!(["tags", path]));
            let label_fp = fingerprint(w, &json!(["labels", path]));
            let inst_fp = fingerprint(w, &json!(["instance", path]));
            let o = obj(&mut body);
            o.insert("networkInterfaces".into(), Value::Array(out_nics));
            o.insert(
                "zone".into(),
                json!(url(&format!("projects/{p}/zones/{z}"))),
            );
            o.insert("machineType".into(), json!(url(&mt_path)));
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
                for (i, d) in disks.iter_mut().enumerate() {
                    let dname = if i == 0 {
                        last_segment(&path).to_string()
                    } else {
                        format!("{}-{i}", last_segment(&path))
                    };
                    let d = obj(d);
                    d.insert("kind".into(), json!("compute#attachedDisk"));
                    d.insert("index".into(), json!(i));
                    d.entry("type").or_insert(json!("PERSISTENT"));
                    d.entry("mode").or_insert(json!("READ_WRITE"));
                    d.entry("deviceName").or_insert(json!(dname.clone()));
                    d.entry("source")
                        .or_insert(json!(url(&format!("projects/{p}/zones/{z}/disks/{dname}"))));
                    d.remove("initializeParams");
                }
            }
            w.resources.insert(path.clone(), body);
            w.power.insert(
                path.clone(),
                Power {
                    running: true,
                    since: ctx.now + ctx.timing.op_ms,
                    first_boot: true,
                    booted: false,
                    ready: None,
                },
            );
            for a in uses {
                if let Some(addr) = w.resources.get_mut(&a) {
                    let o = obj(addr);
                    o.insert("status".into(), json!("IN_USE"));
                    o.insert("users".into(), json!([self_link]));
                }
            }
            Ok(Ok(()))
        },
    )
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
            let self_link = url(&path);
            for (k, v) in &mut w.resources {
                if k.contains("/addresses/") {
                    let used = v
                        .get("users")
                        .and_then(Value::as_array)
                        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(self_link.as_str())));
                    if used {
                        let o = obj(v);
                        o.remove("users");
                        o.insert("status".into(), json!("RESERVED"));
                    }
                }
            }
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

pub(super) fn power(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    i: &str,
    verb: &str,
) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    let running = world.power.get(&path).is_some_and(|pw| pw.running);
    if verb == "reset" && !running {
        return Err(ApiError::new(
            400,
            "resourceNotReady",
            format!("The resource '{path}' is not ready"),
        ));
    }
    let at = ctx.now + ctx.timing.op_ms;
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        verb,
        &path.clone(),
        |w| {
            let boots = match verb {
                "start" => !running,
                "reset" => true,
                _ => false,
            };
            if let Some(pw) = w.power.get_mut(&path) {
                if boots {
                    *pw = Power {
                        running: true,
                        since: at,
                        first_boot: false,
                        booted: false,
                        ready: None,
                    };
                } else if verb == "stop" && running {
                    *pw = Power {
                        running: false,
                        since: at,
                        first_boot: false,
                        booted: false,
                        ready: None,
                    };
                }
            }
            if boots {
                if let Some(inst) = w.resources.get_mut(&path) {
                    obj(inst).insert("lastStartTimestamp".into(), json!(rfc3339(at)));
                }
            } else if verb == "stop"
                && running
                && let Some(inst) = w.resources.get_mut(&path)
            {
                obj(inst).insert("lastStopTimestamp".into(), json!(rfc3339(at)));
            }
            Ok(Ok(()))
        },
    )
}

/// The guest attribute `natgw/ready`: present once the instance is RUNNING and its boot's "startup script"
/// wrote it; before that (and with `--boot-fail`) 404 notFound, as the real API answers for a missing key.
pub(super) fn guest_attributes(world: &World, ctx: &Ctx<'_>, p: &str, z: &str, i: &str) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    let query_path = ctx.q("queryPath").unwrap_or("");
    let variable_key = ctx.q("variableKey").unwrap_or("");
    let missing = || {
        let key = if variable_key.is_empty() {
            query_path
        } else {
            variable_key
        };
        ApiError::not_found(&format!("{path}/guestAttributes/{key}"))
    };
    let power = world.power.get(&path).ok_or_else(missing)?;
    if power.status(ctx.now, ctx.timing.boot_ms) != "RUNNING" {
        return Err(missing());
    }
    let value = power.ready.clone().ok_or_else(missing)?;
    let key = "natgw/ready";
    let mut out = json!({"kind": "compute#guestAttributes", "selfLink": format!("{}/guestAttributes/{}", url(&path), if variable_key.is_empty() { query_path } else { variable_key })});
    let o = obj(&mut out);
    if !variable_key.is_empty() {
        if variable_key != key {
            return Err(missing());
        }
        o.insert("variableKey".into(), json!(variable_key));
        o.insert("variableValue".into(), json!(value));
    } else {
        if !key.starts_with(query_path) || query_path.is_empty() {
            return Err(missing());
        }
        o.insert("queryPath".into(), json!(query_path));
        o.insert(
            "queryValue".into(),
            json!({"items": [{"namespace": "natgw", "key": "ready", "value": value}]}),
        );
    }
    Ok(Reply::read(out))
}
