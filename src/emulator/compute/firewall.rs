//! Firewall rules: insert, and PATCH that merges the fields present.

use serde_json::{Value, json};

use super::network::network_exists;
use super::{Answer, Ctx, body_of, insert_body, mutate, stamp, url};
use crate::emulator::api_error::ApiError;
use crate::emulator::schema::{self, Api};
use crate::emulator::world::{Scope, World, obj, resolve_ref, str_field};
use crate::net::Ipv4Net;

pub(super) fn check_firewall(world: &World, p: &str, body: &mut Value) -> Result<(), ApiError> {
    let network = str_field(body, "network")
        .unwrap_or("global/networks/default")
        .to_string();
    let network_path = resolve_ref(&network, p, "global", "networks");
    network_exists(world, &network_path)?;
    let o = obj(body);
    o.insert("network".into(), json!(url(&network_path)));
    let allowed = o
        .get("allowed")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let denied = o
        .get("denied")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if allowed == denied {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': exactly one of 'allowed' or 'denied' must be specified.",
        ));
    }
    for key in ["allowed", "denied"] {
        for (i, rule) in o
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(m) = rule.as_object() else { continue };
            for k in m.keys() {
                if k != "IPProtocol" && k != "ports" {
                    return Err(ApiError::bad_json(format!(
                        "Invalid JSON payload received. Unknown name \"{k}\" at 'resource.{key}[{i}]': Cannot find field."
                    )));
                }
            }
            if rule.get("IPProtocol").and_then(Value::as_str).is_none() {
                return Err(ApiError::required(&format!(
                    "resource.{key}[{i}].IPProtocol"
                )));
            }
        }
    }
    for key in ["sourceRanges", "destinationRanges"] {
        for r in o
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let s = r.as_str().unwrap_or_default();
            s.parse::<Ipv4Net>().map_err(|_| {
                ApiError::invalid_field(
                    &format!("resource.{key}"),
                    s,
                    "Must be an IPv4 CIDR range.",
                )
            })?;
        }
    }
    Ok(())
}

pub(super) fn insert_firewall(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    body: Option<Value>,
) -> Answer {
    let (mut body, path) = insert_body(world, "Firewall", "compute.firewalls.insert", body, |n| {
        format!("projects/{p}/global/firewalls/{n}")
    })?;
    check_firewall(world, p, &mut body)?;
    let o = obj(&mut body);
    let direction = o
        .get("direction")
        .and_then(Value::as_str)
        .unwrap_or("INGRESS")
        .to_string();
    o.insert("direction".into(), json!(direction));
    o.entry("priority").or_insert(json!(1000));
    o.entry("disabled").or_insert(json!(false));
    o.entry("logConfig").or_insert(json!({"enable": false}));
    if direction == "INGRESS"
        && o.get("sourceRanges").is_none()
        && o.get("sourceTags").is_none()
        && o.get("sourceServiceAccounts").is_none()
    {
        o.insert("sourceRanges".into(), json!(["0.0.0.0/0"]));
    }
    if direction == "EGRESS" && o.get("destinationRanges").is_none() {
        o.insert("destinationRanges".into(), json!(["0.0.0.0/0"]));
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Global,
        "insert",
        &path.clone(),
        |w| {
            stamp(w, ctx, &mut body, "compute#firewall", &path);
            w.resources.insert(path.clone(), body);
            Ok(Ok(()))
        },
    )
}

/// PATCH semantics: the fields present replace the stored ones (lists whole); absent fields stay.
pub(super) fn patch_firewall(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    f: &str,
    body: Option<Value>,
) -> Answer {
    let path = format!("projects/{p}/global/firewalls/{f}");
    let mut body = body_of(body);
    schema::validate(Api::Compute, "Firewall", None, "resource", &mut body)?;
    let current = world.get(&path)?.clone();
    if let Some(n) = str_field(&body, "name")
        && n != f
    {
        return Err(ApiError::invalid_field(
            "resource.name",
            n,
            "The name of a firewall cannot be changed.",
        ));
    }
    let mut merged = current.clone();
    for (k, v) in body.as_object().cloned().unwrap_or_default() {
        obj(&mut merged).insert(k, v);
    }
    if str_field(&merged, "network") != str_field(&current, "network") {
        let n = str_field(&body, "network").unwrap_or_default();
        if url(&resolve_ref(n, p, "global", "networks"))
            != str_field(&current, "network").unwrap_or_default()
        {
            return Err(ApiError::invalid_field(
                "resource.network",
                n,
                "The network of a firewall cannot be changed.",
            ));
        }
    }
    check_firewall(world, p, &mut merged)?;
    mutate(world, ctx, p, &Scope::Global, "patch", &path.clone(), |w| {
        w.resources.insert(path.clone(), merged);
        Ok(Ok(()))
    })
}

/// Whether an enabled INGRESS rule of `network` applies to a VM with `tags`. compute.v1.json,
/// `Firewall.targetTags`: "If no targetTags are specified, the firewall rule applies to all instances on the
/// specified network"; `disabled`: "the firewall rule is not enforced".
pub(crate) fn applies_to(rule: &Value, network: &str, tags: &[&str]) -> bool {
    str_field(rule, "network") == Some(network)
        && str_field(rule, "direction").unwrap_or("INGRESS") == "INGRESS"
        && rule.get("disabled") != Some(&json!(true))
        && rule
            .get("targetTags")
            .and_then(Value::as_array)
            .is_none_or(|ts| {
                ts.iter()
                    .filter_map(Value::as_str)
                    .any(|t| tags.contains(&t))
            })
}

/// Whether one of a rule's `allowed` or `denied` entries covers `protocol` (lowercase name) to `port`.
/// compute.v1.json, `IPProtocol`: "one of the following well known protocol strings (tcp, udp,icmp, esp, ah,
/// ipip,sctp) or the IP protocol number"; `ports`: "If not specified, this rule applies to connections through
/// any port", each "either an integer or a range".
pub(crate) fn entries_cover(entries: Option<&Value>, protocol: &str, port: Option<i64>) -> bool {
    // IANA protocol numbers of the names natgw's traffic uses.
    let number = match protocol {
        "tcp" => "6",
        "udp" => "17",
        "icmp" => "1",
        _ => "",
    };
    entries.and_then(Value::as_array).is_some_and(|es| {
        es.iter().any(|e| {
            let proto = str_field(e, "IPProtocol")
                .unwrap_or_default()
                .to_ascii_lowercase();
            (proto == "all" || proto == protocol || (!number.is_empty() && proto == number))
                && e.get("ports").and_then(Value::as_array).is_none_or(|ps| {
                    port.is_some_and(|port| {
                        ps.iter().filter_map(Value::as_str).any(|p| {
                            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
                            lo.parse::<i64>().is_ok_and(|lo| lo <= port)
                                && hi.parse::<i64>().is_ok_and(|hi| port <= hi)
                        })
                    })
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_covers_its_protocol_by_name_or_number_and_its_ports() {
        let entries =
            json!([{"IPProtocol": "6", "ports": ["443", "8000-8080"]}, {"IPProtocol": "icmp"}]);
        assert!(entries_cover(Some(&entries), "tcp", Some(443)));
        assert!(entries_cover(Some(&entries), "tcp", Some(8080)));
        assert!(!entries_cover(Some(&entries), "tcp", Some(22)));
        assert!(!entries_cover(Some(&entries), "udp", Some(443)));
        assert!(entries_cover(Some(&entries), "icmp", None));
        assert!(!entries_cover(None, "tcp", Some(443)));
        let rule = json!({"network": "n", "targetTags": ["gw"], "allowed": entries});
        assert!(applies_to(&rule, "n", &["other", "gw"]));
        assert!(!applies_to(&rule, "n", &["other"]));
        assert!(!applies_to(
            &json!({"network": "n", "disabled": true}),
            "n",
            &[]
        ));
        assert!(!applies_to(
            &json!({"network": "n", "direction": "EGRESS"}),
            "n",
            &[]
        ));
    }
}
