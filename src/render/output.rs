//! The gateways' outputs, as apply's closing lines and `natgw output` show them (pure).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::model::progress::Outputs;

/// `NAME.egress_ip = "IP"` rows, aligned, one a line; `unknown` stands for an address not known.
pub(crate) fn rows(outputs: &BTreeMap<String, Outputs>, unknown: &str) -> String {
    let show = |ip: Option<Ipv4Addr>| ip.map_or(unknown.to_string(), |ip| format!("\"{ip}\""));
    let rows: Vec<(String, String)> = outputs
        .iter()
        .flat_map(|(gateway, out)| {
            let egress = match &out.egress_ips {
                None => (format!("{gateway}.egress_ip"), show(out.egress_ip)),
                Some(ips) if ips.is_empty() => {
                    (format!("{gateway}.egress_ips"), unknown.to_string())
                }
                Some(ips) => {
                    let list: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
                    (
                        format!("{gateway}.egress_ips"),
                        format!("[{}]", list.join(", ")),
                    )
                }
            };
            [
                egress,
                (format!("{gateway}.internal_ip"), show(out.internal_ip)),
            ]
        })
        .collect();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (k, v) in rows {
        let _ = writeln!(text, "{k:width$} = {v}");
    }
    text
}

/// What `natgw output` prints for a gateway whose egress address does not exist yet.
pub(crate) const NOT_CREATED: &str = "(not created yet: run natgw apply)";

/// `natgw output`'s error for a gateway named on the command line whose egress address does not exist.
pub(crate) fn not_created(gateway: &str, project: &str) -> String {
    format!(
        "gateway {gateway} has no egress address in project {project} yet: run natgw apply to create it"
    )
}

/// `natgw output --json`: every gateway asked for, by name, `null` for an address that does not exist.
pub(crate) fn json_all(outputs: &BTreeMap<String, Outputs>) -> Value {
    json!(outputs)
}

/// `natgw output NAME --json`: that gateway's outputs alone, as `terraform output -json NAME` prints one
/// value.
pub(crate) fn json_one(outputs: &Outputs) -> Value {
    json!(outputs)
}
