//! Reads natgw.toml: walks the parsed TOML document with its spans, checks every key and value, and
//! collects every problem with its location (file, line, column, dotted key).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::fields::{self, quote};
use super::{
    Adopt, Allow, Config, ConfigError, Conntrack, DEFAULT_CONNTRACK_MAX,
    DEFAULT_CONNTRACK_TCP_TIMEOUT_ESTABLISHED, DEFAULT_HEALTH_INTERVAL_SEC, DEFAULT_HEALTH_PORT,
    DEFAULT_HEALTHY_THRESHOLD, DEFAULT_IMAGE, DEFAULT_MACHINE_TYPE, DEFAULT_ROUTE_PRIORITY,
    DEFAULT_UNHEALTHY_THRESHOLD, Gateway, Ha, HealthCheck, NodePoolRef, Problem, Protocol, Ssh,
    names,
};
use crate::net::Ipv4Net;

type Span = Range<usize>;
type Value<'i> = Spanned<DeValue<'i>>;
/// A checked range, where it is, and its dotted key.
type Entry = (Ipv4Net, Span, String);

const ROOT_KEYS: &[&str] = &["project", "stack", "gateways"];
const GATEWAY_KEYS: &[&str] = &[
    "region",
    "zone",
    "zones",
    "network",
    "network_project",
    "subnetwork",
    "internal_ip",
    "destinations",
    "source_ranges",
    "allow",
    "node_tag",
    "route_priority",
    "machine_type",
    "image",
    "node_pool",
    "conntrack",
    "ssh",
    "adopt",
    "health_check",
];
const HEALTH_CHECK_KEYS: &[&str] = &[
    "interval_sec",
    "healthy_threshold",
    "unhealthy_threshold",
    "port",
];
const NODE_POOL_KEYS: &[&str] = &["cluster", "location", "name"];
const CONNTRACK_KEYS: &[&str] = &["max", "tcp_timeout_established"];
const ADOPT_KEYS: &[&str] = &[
    "external_address",
    "internal_address",
    "instance",
    "routes",
    "firewall",
];

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut cx = Cx {
        path,
        text,
        line_starts: std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|(_, b)| *b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect(),
        problems: Vec::new(),
    };
    let config = match DeTable::parse(text) {
        Ok(root) => read_config(&mut cx, &root),
        Err(e) => {
            cx.syntax(&e);
            None
        }
    };
    let mut problems = cx.problems;
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            if problems.is_empty() {
                // Unreachable by construction (every `None` reports why); never return an empty error.
                problems.push(Problem {
                    path: path.to_path_buf(),
                    line: 0,
                    column: 0,
                    key: String::new(),
                    message: "the configuration is not valid".to_string(),
                });
            }
            problems.sort_by_key(|p| (p.line, p.column));
            Err(ConfigError { problems })
        }
    }
}

/// The file being read and the problems found so far.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    /// Byte offsets where lines start, for turning spans into lines and columns.
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

impl Cx<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    fn locate(&self, offset: usize) -> (usize, usize) {
        let bytes = self.text.as_bytes();
        let offset = offset.min(bytes.len());
        // Index of the last line start at or before the offset; line_starts begins with 0.
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = bytes
            .get(line_start..offset)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count()
            + 1;
        (line, column)
    }

    fn report(&mut self, span: &Span, key: &str, message: String) {
        let (line, column) = self.locate(span.start);
        self.problems.push(Problem {
            path: self.path.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message,
        });
    }

    /// A problem with the file as a whole (e.g. a missing top-level key).
    fn report_file(&mut self, key: &str, message: String) {
        self.problems.push(Problem {
            path: self.path.to_path_buf(),
            line: 0,
            column: 0,
            key: key.to_string(),
            message,
        });
    }

    fn syntax(&mut self, e: &toml::de::Error) {
        let mut message: String = e
            .message()
            .trim()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if message.is_empty() {
            message = "invalid TOML".to_string();
        }
        let span = e.span();
        if message == "duplicate key"
            && let Some(key) = span.as_ref().map(|s| self.source(s))
            && !key.is_empty()
        {
            message = format!(
                "duplicate key {}: a key or table can be defined only once",
                quote(key)
            );
        }
        let message = format!("TOML syntax error: {message}");
        match span {
            Some(span) => self.report(&span, "", message),
            None => self.report_file("", message),
        }
    }

    /// The source text of a span, for quoting numbers as the user wrote them.
    fn source(&self, span: &Span) -> &str {
        self.text.get(span.clone()).unwrap_or("")
    }
}

/// A key as it appears in a dotted path: bare when TOML allows, quoted otherwise.
fn key_part(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        name.to_string()
    } else {
        quote(name)
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        key_part(name)
    } else {
        format!("{parent}.{}", key_part(name))
    }
}

/// What a value is, for "expected X, found Y" messages.
fn describe(cx: &Cx<'_>, v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::String(s) => format!("string {}", quote(s)),
        DeValue::Integer(_) => format!("integer {}", cx.source(&v.span())),
        DeValue::Float(_) => format!("float {}", cx.source(&v.span())),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(a) if a.is_empty() => "an empty array".to_string(),
        DeValue::Array(a) if a.len() == 1 => "an array of 1 item".to_string(),
        DeValue::Array(a) => format!("an array of {} items", a.len()),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// One table of the document and its dotted key.
struct Table<'t, 'i> {
    key: String,
    span: Span,
    map: &'t DeTable<'i>,
}

impl<'t, 'i> Table<'t, 'i> {
    fn get(&self, name: &str) -> Option<&'t Value<'i>> {
        self.map.get(name)
    }

    fn child(&self, name: &str) -> String {
        join(&self.key, name)
    }

    /// Reports every key not in `known`; `elsewhere` names keys that belong in another table.
    fn check_keys(&self, cx: &mut Cx<'_>, known: &[&str], elsewhere: &[(&[&str], &str)]) {
        for (k, _) in self.map.iter() {
            let name: &str = k.get_ref();
            if known.contains(&name) {
                continue;
            }
            let q = quote(name);
            let message =
                if let Some((_, place)) = elsewhere.iter().find(|(keys, _)| keys.contains(&name)) {
                    format!("unknown key {q} here; it belongs in {place}")
                } else if let Some(s) = fields::suggest(name, known) {
                    format!("unknown key {q}; did you mean {}?", quote(s))
                } else {
                    format!("unknown key {q}; expected one of: {}", known.join(", "))
                };
            cx.report(&k.span(), &self.child(name), message);
        }
    }

    /// A required key; reports it missing with a hint at what it should hold.
    fn required(&self, cx: &mut Cx<'_>, name: &str, hint: &str) -> Option<&'t Value<'i>> {
        let v = self.get(name);
        if v.is_none() {
            let message = format!("missing required key {}; expected {hint}", quote(name));
            if self.key.is_empty() {
                cx.report_file(&self.child(name), message);
            } else {
                cx.report(&self.span, &self.child(name), message);
            }
        }
        v
    }
}

fn table<'t, 'i>(
    cx: &mut Cx<'_>,
    key: String,
    v: &'t Value<'i>,
    hint: &str,
) -> Option<Table<'t, 'i>> {
    match v.get_ref() {
        DeValue::Table(map) => Some(Table {
            key,
            span: v.span(),
            map,
        }),
        _ => {
            let found = describe(cx, v);
            cx.report(&v.span(), &key, format!("expected {hint}, found {found}"));
            None
        }
    }
}

fn string<'t>(cx: &mut Cx<'_>, key: &str, v: &'t Value<'_>, hint: &str) -> Option<&'t str> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        DeValue::Array(a) if a.len() == 1 && a.first().is_some_and(|x| x.get_ref().is_str()) => {
            let only = a
                .first()
                .and_then(|x| x.get_ref().as_str())
                .unwrap_or_default();
            cx.report(
                &v.span(),
                key,
                format!(
                    "expected {hint}, found an array; did you mean {}?",
                    quote(only)
                ),
            );
            None
        }
        _ => {
            let found = describe(cx, v);
            cx.report(&v.span(), key, format!("expected {hint}, found {found}"));
            None
        }
    }
}

/// An integer in `range`; `what` says what the number means for the out-of-range message.
fn integer(
    cx: &mut Cx<'_>,
    key: &str,
    v: &Value<'_>,
    range: std::ops::RangeInclusive<i64>,
    unit: &str,
) -> Option<i64> {
    let expected = format!("{} to {}{unit}", range.start(), range.end());
    match v.get_ref() {
        DeValue::Integer(i) => {
            let n = i64::from_str_radix(i.as_str(), i.radix()).ok();
            match n {
                Some(n) if range.contains(&n) => Some(n),
                _ => {
                    let shown = cx.source(&v.span()).to_string();
                    cx.report(
                        &v.span(),
                        key,
                        format!("{shown} is out of range: expected {expected}"),
                    );
                    None
                }
            }
        }
        DeValue::String(s) => {
            let hint = if s.trim().parse::<i64>().is_ok() {
                "; remove the quotes"
            } else {
                ""
            };
            cx.report(
                &v.span(),
                key,
                format!(
                    "expected an integer from {expected}, found string {}{hint}",
                    quote(s)
                ),
            );
            None
        }
        _ => {
            let found = describe(cx, v);
            cx.report(
                &v.span(),
                key,
                format!("expected an integer from {expected}, found {found}"),
            );
            None
        }
    }
}

/// One string of a string array, with where it is.
struct Item<'t> {
    value: &'t str,
    span: Span,
    key: String,
}

/// An array of strings; the strings that are strings (the others are reported). `None` if not an array.
fn string_array<'t>(
    cx: &mut Cx<'_>,
    key: &str,
    v: &'t Value<'_>,
    example: &str,
) -> Option<Vec<Item<'t>>> {
    let array = match v.get_ref() {
        DeValue::Array(a) => a,
        DeValue::String(s) => {
            cx.report(
                &v.span(),
                key,
                format!(
                    "expected an array of strings like {example}, found string {}; did you mean [{}]?",
                    quote(s),
                    quote(s)
                ),
            );
            return None;
        }
        _ => {
            let found = describe(cx, v);
            cx.report(
                &v.span(),
                key,
                format!("expected an array of strings like {example}, found {found}"),
            );
            return None;
        }
    };
    let mut items = Vec::with_capacity(array.len());
    for (i, item) in array.iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        match item.get_ref() {
            DeValue::String(s) => items.push(Item {
                value: s.as_ref(),
                span: item.span(),
                key: item_key,
            }),
            _ => {
                let found = describe(cx, item);
                cx.report(
                    &item.span(),
                    &item_key,
                    format!("expected a string, found {found}"),
                );
            }
        }
    }
    Some(items)
}

/// Reports `Err(message)` at the value; passes `Ok` through.
fn check<T>(cx: &mut Cx<'_>, span: &Span, key: &str, result: Result<T, String>) -> Option<T> {
    match result {
        Ok(t) => Some(t),
        Err(message) => {
            cx.report(span, key, message);
            None
        }
    }
}

/// A required string field checked by `validate`.
fn required_string<'t>(
    cx: &mut Cx<'_>,
    t: &Table<'t, '_>,
    name: &str,
    hint: &str,
    validate: impl FnOnce(&str) -> Result<(), String>,
) -> Option<(&'t str, Span)> {
    let v = t.required(cx, name, hint)?;
    let key = t.child(name);
    let s = string(cx, &key, v, hint)?;
    check(cx, &v.span(), &key, validate(s))?;
    Some((s, v.span()))
}

/// An optional string field checked by `validate`; `Some(None)` when absent, `None` when invalid.
fn optional_string<'t>(
    cx: &mut Cx<'_>,
    t: &Table<'t, '_>,
    name: &str,
    hint: &str,
    validate: impl FnOnce(&str) -> Result<(), String>,
) -> Option<Option<&'t str>> {
    let Some(v) = t.get(name) else {
        return Some(None);
    };
    let key = t.child(name);
    let s = string(cx, &key, v, hint)?;
    check(cx, &v.span(), &key, validate(s))?;
    Some(Some(s))
}

fn read_config(cx: &mut Cx<'_>, root: &Spanned<DeTable<'_>>) -> Option<Config> {
    let t = Table {
        key: String::new(),
        span: root.span(),
        map: root.get_ref(),
    };
    t.check_keys(
        cx,
        ROOT_KEYS,
        &[
            (GATEWAY_KEYS, "a gateway's table, [gateways.NAME]"),
            (
                NODE_POOL_KEYS,
                "a gateway's node pool, [gateways.NAME.node_pool]",
            ),
            (
                CONNTRACK_KEYS,
                "a gateway's conntrack table, [gateways.NAME.conntrack]",
            ),
            (ADOPT_KEYS, "a gateway's adopt table, [gateways.NAME.adopt]"),
        ],
    );
    let project = optional_string(
        cx,
        &t,
        "project",
        "a project ID like \"acme-ci\"",
        super::validate_project_id,
    );
    let stack = required_string(
        cx,
        &t,
        "stack",
        "a stack name like \"gitlab-runners\"",
        fields::check_stack,
    );
    let gateways = read_gateways(cx, &t);
    Some(Config {
        path: cx.path.to_path_buf(),
        project: project?.map(str::to_string),
        stack: stack?.0.to_string(),
        gateways: gateways?,
    })
}

/// Where a gateway's checked values are, for the checks across gateways.
struct Located {
    destinations: Vec<Entry>,
    internal_ip: Option<(Ipv4Addr, Span, String)>,
}

fn read_gateways(cx: &mut Cx<'_>, root: &Table<'_, '_>) -> Option<BTreeMap<String, Gateway>> {
    let hint = "at least one gateway table, [gateways.NAME]";
    let v = root.required(cx, "gateways", hint)?;
    if let DeValue::Array(_) = v.get_ref() {
        cx.report(
            &v.span(),
            "gateways",
            "expected gateway tables, found an array of tables ([[gateways]]); write each gateway as [gateways.NAME]"
                .to_string(),
        );
        return None;
    }
    let t = table(cx, "gateways".to_string(), v, hint)?;
    if t.map.is_empty() {
        cx.report(
            &t.span,
            "gateways",
            format!("there are no gateways; expected {hint}"),
        );
        return None;
    }
    let mut read = Vec::new();
    let mut complete = true;
    for (k, v) in t.map.iter() {
        let name: &str = k.get_ref();
        let key = t.child(name);
        let lower = name.to_ascii_lowercase();
        let name_check = if lower != name && t.map.contains_key(lower.as_str()) {
            Err(format!(
                "{} differs from gateway {} only in case; gateway names are lowercase: rename or remove one of them",
                quote(name),
                quote(&lower)
            ))
        } else {
            fields::check_gateway_name(name)
        };
        let name_ok = check(cx, &k.span(), &key, name_check).is_some();
        let Some(gt) = table(
            cx,
            key.clone(),
            v,
            "a gateway table with region, zone, network, ...",
        ) else {
            complete = false;
            continue;
        };
        let gateway = read_gateway(cx, name, &gt, name_ok.then(|| k.span()));
        match (gateway, name_ok) {
            (Some(r), true) => read.push(r),
            _ => complete = false,
        }
    }
    check_across(cx, &read);
    complete.then(|| read.into_iter().map(|(g, _)| (g.name.clone(), g)).collect())
}

/// Unknown keys of a gateway table, with a hint when the key belongs in one of its sub-tables or at the top.
fn check_gateway_keys(cx: &mut Cx<'_>, t: &Table<'_, '_>) {
    let pool_place = format!("[{}.node_pool]", t.key);
    let conntrack_place = format!("[{}.conntrack]", t.key);
    let adopt_place = format!("[{}.adopt]", t.key);
    let health_place = format!("[{}.health_check]", t.key);
    t.check_keys(
        cx,
        GATEWAY_KEYS,
        &[
            (NODE_POOL_KEYS, &pool_place),
            (CONNTRACK_KEYS, &conntrack_place),
            (ADOPT_KEYS, &adopt_place),
            (HEALTH_CHECK_KEYS, &health_place),
            (
                &["project", "stack"],
                "the top of the file, before any [table]",
            ),
        ],
    );
}

fn read_gateway(
    cx: &mut Cx<'_>,
    name: &str,
    t: &Table<'_, '_>,
    name_span: Option<Span>,
) -> Option<(Gateway, Located)> {
    check_gateway_keys(cx, t);
    let region = required_string(
        cx,
        t,
        "region",
        "a region like \"europe-west1\"",
        fields::check_region,
    );
    let placement = read_placement(cx, t, region.as_ref().map(|r| r.0));
    let network = required_string(
        cx,
        t,
        "network",
        "the VPC network's name, e.g. \"vpc-network\"",
        fields::check_resource_name,
    );
    let network_project = optional_string(
        cx,
        t,
        "network_project",
        "the Shared VPC host project's ID, e.g. \"acme-net-host\"",
        super::validate_project_id,
    );
    let subnetwork = required_string(
        cx,
        t,
        "subnetwork",
        "the subnetwork's name, e.g. \"runners\"",
        fields::check_resource_name,
    );
    let internal_ip = read_internal_ip(cx, t);
    let destinations = read_destinations(cx, t);
    let source_ranges = read_source_ranges(cx, t);
    let allow = read_allow(cx, t);
    let node_tag = required_string(
        cx,
        t,
        "node_tag",
        "a network tag like \"gitlab-runner\"",
        fields::check_network_tag,
    );
    let route_priority = match t.get("route_priority") {
        None => Some(DEFAULT_ROUTE_PRIORITY),
        Some(v) => integer(cx, &t.child("route_priority"), v, 0..=65_535, "")
            .and_then(|n| u32::try_from(n).ok()),
    };
    let machine_type = optional_string(
        cx,
        t,
        "machine_type",
        "a machine type like \"e2-small\"",
        fields::check_machine_type,
    );
    let image = optional_string(
        cx,
        t,
        "image",
        "an image like \"projects/debian-cloud/global/images/family/debian-12\"",
        fields::check_image,
    );
    let node_pool = read_node_pool(cx, t);
    let conntrack = read_conntrack(cx, t);
    let ssh = read_ssh(cx, t);
    let adopt = read_adopt(cx, t);
    let health_check = read_health_check(cx, t, placement.as_ref());
    refuse_with_zones(cx, t);

    if let (Some(dests), Some(sources)) = (&destinations, &source_ranges) {
        for (d, span, key) in dests {
            if let Some((s, skey)) = sources.iter().find(|(s, _)| s.overlaps(d)) {
                cx.report(
                    span,
                    key,
                    format!(
                        "{} overlaps {skey} {}: the runners' own traffic would be routed through the gateway",
                        quote(&d.to_string()),
                        quote(&s.to_string())
                    ),
                );
            }
        }
    }
    if let Some(name_span) = &name_span {
        let dests: Vec<Ipv4Net> = destinations.iter().flatten().map(|(d, _, _)| *d).collect();
        let shared_vpc = matches!(network_project, Some(Some(_)));
        let zones = t.get("zones").is_some();
        if let Some(long) = names::too_long(name, shared_vpc, zones, &dests) {
            let excess = long.len() - names::MAX_NAME_LEN;
            cx.report(
                name_span,
                &t.key,
                format!(
                    "the derived resource name {} is {} characters long; Google allows at most {}: shorten the gateway name by {excess} characters",
                    quote(&long),
                    long.len(),
                    names::MAX_NAME_LEN
                ),
            );
            return None;
        }
    }

    let region = region?.0.to_string();
    let (zone, zones) = placement?;
    let ha = zones.map(|zones| Ha {
        zones,
        health_check: health_check.unwrap_or_default(),
    });
    let destinations = destinations?;
    let mut sorted: Vec<Ipv4Net> = destinations.iter().map(|(d, _, _)| *d).collect();
    sorted.sort();
    let gateway = Gateway {
        name: name.to_string(),
        region,
        zone,
        ha,
        network: network?.0.to_string(),
        network_project: network_project?.map(str::to_string),
        subnetwork: subnetwork?.0.to_string(),
        internal_ip: internal_ip.as_ref()?.as_ref().map(|(ip, _, _)| *ip),
        destinations: sorted,
        source_ranges: source_ranges?.into_iter().map(|(s, _)| s).collect(),
        allow: allow?,
        node_tag: node_tag?.0.to_string(),
        route_priority: route_priority?,
        machine_type: machine_type?.unwrap_or(DEFAULT_MACHINE_TYPE).to_string(),
        image: image?.unwrap_or(DEFAULT_IMAGE).to_string(),
        node_pool: node_pool?,
        conntrack: conntrack?,
        ssh: ssh?,
        adopt: adopt?,
    };
    name_span?;
    let located = Located {
        destinations,
        internal_ip: internal_ip.flatten(),
    };
    Some((gateway, located))
}

type LocatedIp = Option<(Ipv4Addr, Span, String)>;

fn read_internal_ip(cx: &mut Cx<'_>, t: &Table<'_, '_>) -> Option<LocatedIp> {
    let Some(v) = t.get("internal_ip") else {
        return Some(None);
    };
    let key = t.child("internal_ip");
    let s = string(cx, &key, v, "an IPv4 address like \"10.0.0.50\"")?;
    let ip = check(cx, &v.span(), &key, fields::parse_internal_ip(s))?;
    Some(Some((ip, v.span(), key)))
}

/// The destinations with where each is, in file order; duplicates and overlaps reported.
fn read_destinations(cx: &mut Cx<'_>, t: &Table<'_, '_>) -> Option<Vec<Entry>> {
    let example = "[\"34.120.10.10/32\"]";
    let v = t.required(
        cx,
        "destinations",
        &format!("the IPv4 ranges to route through the gateway, e.g. {example}"),
    )?;
    let key = t.child("destinations");
    let items = string_array(cx, &key, v, example)?;
    if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) {
        cx.report(
            &v.span(),
            &key,
            format!("the list is empty; expected at least one IPv4 range, e.g. {example}"),
        );
        return None;
    }
    let mut ok = true;
    let mut nets = Vec::with_capacity(items.len());
    for item in items {
        match check(
            cx,
            &item.span,
            &item.key,
            fields::parse_destination(item.value),
        ) {
            Some(net) => nets.push((net, item.span, item.key)),
            None => ok = false,
        }
    }
    let mut clean = true;
    for ((net, span, key), (onet, _, okey)) in overlaps(&nets) {
        clean = false;
        let message = if net == onet {
            format!("{} is listed twice (also {okey})", quote(&net.to_string()))
        } else {
            format!(
                "{} overlaps {okey} {}; list each destination once",
                quote(&net.to_string()),
                quote(&onet.to_string())
            )
        };
        cx.report(span, key, message);
    }
    (ok && clean).then_some(nets)
}

/// Every entry that overlaps an earlier one (in file order), with the earlier entry. CIDR ranges are either
/// nested or disjoint, so after sorting by address and prefix, an entry overlaps an earlier one exactly when
/// it lies inside the widest range seen so far.
fn overlaps(nets: &[Entry]) -> Vec<(&Entry, &Entry)> {
    let mut order: Vec<usize> = (0..nets.len()).collect();
    order.sort_by_key(|&i| nets.get(i).map(|n| (n.0, i)));
    let mut found = Vec::new();
    let mut widest: Option<usize> = None;
    for i in order {
        let Some(cur) = nets.get(i) else { continue };
        match widest.and_then(|w| nets.get(w).map(|n| (w, n))) {
            Some((w, wide)) if wide.0.overlaps(&cur.0) => {
                // Report on whichever of the two comes later in the file, naming the other.
                let (later, earlier) = if w < i { (cur, wide) } else { (wide, cur) };
                found.push((later, earlier));
                if cur.0.prefix() < wide.0.prefix() {
                    widest = Some(i);
                }
            }
            _ => widest = Some(i),
        }
    }
    found.sort_by_key(|(later, _)| later.1.start);
    found
}

fn read_source_ranges(cx: &mut Cx<'_>, t: &Table<'_, '_>) -> Option<Vec<(Ipv4Net, String)>> {
    let example = "[\"10.0.0.0/20\", \"10.4.0.0/14\"]";
    let v = t.required(
        cx,
        "source_ranges",
        &format!("the runners' node and pod ranges allowed to use the gateway, e.g. {example}"),
    )?;
    let key = t.child("source_ranges");
    let items = string_array(cx, &key, v, example)?;
    if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) {
        cx.report(
            &v.span(),
            &key,
            format!("the list is empty; expected the runners' node and pod ranges, e.g. {example}"),
        );
        return None;
    }
    let mut ok = true;
    let mut seen: HashMap<Ipv4Net, String> = HashMap::new();
    let mut nets = Vec::with_capacity(items.len());
    for item in items {
        let Some(net) = check(
            cx,
            &item.span,
            &item.key,
            fields::parse_source_range(item.value),
        ) else {
            ok = false;
            continue;
        };
        if let Some(first) = seen.get(&net) {
            cx.report(
                &item.span,
                &item.key,
                format!("{} is listed twice (also {first})", quote(&net.to_string())),
            );
            ok = false;
            continue;
        }
        seen.insert(net, item.key.clone());
        nets.push((net, item.key));
    }
    ok.then_some(nets)
}

fn read_allow(cx: &mut Cx<'_>, t: &Table<'_, '_>) -> Option<Vec<Allow>> {
    let Some(v) = t.get("allow") else {
        return Some(vec![
            Allow {
                protocol: Protocol::Tcp,
                ports: Some((443, 443)),
            },
            Allow {
                protocol: Protocol::Tcp,
                ports: Some((22, 22)),
            },
        ]);
    };
    let key = t.child("allow");
    let example = "[\"tcp:443\", \"tcp:22\"]";
    let items = string_array(cx, &key, v, example)?;
    if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) {
        cx.report(
            &v.span(),
            &key,
            format!(
                "the list is empty, so the runners could not reach the gateway; expected entries like {example}, or leave allow out for that default"
            ),
        );
        return None;
    }
    let mut ok = true;
    let mut seen: HashMap<Allow, String> = HashMap::new();
    let mut allow = Vec::with_capacity(items.len());
    for item in items {
        let Some(a) = check(cx, &item.span, &item.key, fields::parse_allow(item.value)) else {
            ok = false;
            continue;
        };
        if let Some(first) = seen.get(&a) {
            cx.report(
                &item.span,
                &item.key,
                format!("{} is listed twice (also {first})", quote(item.value)),
            );
            ok = false;
            continue;
        }
        seen.insert(a.clone(), item.key.clone());
        allow.push(a);
    }
    ok.then_some(allow)
}

fn read_node_pool(cx: &mut Cx<'_>, gateway: &Table<'_, '_>) -> Option<NodePoolRef> {
    let hint = format!(
        "a [{}.node_pool] table with the GKE cluster, location and node pool name",
        gateway.key
    );
    let v = gateway.required(cx, "node_pool", &hint)?;
    let t = table(cx, gateway.child("node_pool"), v, &hint)?;
    t.check_keys(cx, NODE_POOL_KEYS, &[]);
    let cluster = required_string(
        cx,
        &t,
        "cluster",
        "the GKE cluster's name, e.g. \"gke-gitlab-runner\"",
        |s| fields::check_gke_name(s, "cluster name"),
    );
    let location = required_string(
        cx,
        &t,
        "location",
        "the cluster's region or zone, e.g. \"europe-west1\"",
        fields::check_location,
    );
    let name = required_string(
        cx,
        &t,
        "name",
        "the node pool's name, e.g. \"runners\"",
        |s| fields::check_gke_name(s, "node pool name"),
    );
    Some(NodePoolRef {
        cluster: cluster?.0.to_string(),
        location: location?.0.to_string(),
        name: name?.0.to_string(),
    })
}

fn read_conntrack(cx: &mut Cx<'_>, gateway: &Table<'_, '_>) -> Option<Conntrack> {
    let Some(v) = gateway.get("conntrack") else {
        return Some(Conntrack::default());
    };
    let t = table(
        cx,
        gateway.child("conntrack"),
        v,
        "a table with max and tcp_timeout_established",
    )?;
    t.check_keys(cx, CONNTRACK_KEYS, &[]);
    let max = match t.get("max") {
        None => Some(DEFAULT_CONNTRACK_MAX),
        Some(v) => integer(cx, &t.child("max"), v, 1_024..=16_777_216, " connections")
            .and_then(|n| u32::try_from(n).ok()),
    };
    let timeout = match t.get("tcp_timeout_established") {
        None => Some(DEFAULT_CONNTRACK_TCP_TIMEOUT_ESTABLISHED),
        Some(v) => integer(
            cx,
            &t.child("tcp_timeout_established"),
            v,
            60..=432_000,
            " seconds",
        )
        .and_then(|n| u32::try_from(n).ok()),
    };
    Some(Conntrack {
        max: max?,
        tcp_timeout_established: timeout?,
    })
}

/// `[gateways.NAME.adopt]`: names of resources that exist already. Whether they exist and fit the gateway is
/// for the plan to say: only the cloud knows.
fn read_adopt(cx: &mut Cx<'_>, gateway: &Table<'_, '_>) -> Option<Adopt> {
    let Some(v) = gateway.get("adopt") else {
        return Some(Adopt::default());
    };
    let t = table(
        cx,
        gateway.child("adopt"),
        v,
        "a table naming existing resources: external_address, internal_address, instance, routes, firewall",
    )?;
    t.check_keys(cx, ADOPT_KEYS, &[]);
    let name = |cx: &mut Cx<'_>, key: &str, what: &str| {
        optional_string(
            cx,
            &t,
            key,
            &format!("the name of an existing {what}, e.g. \"nat-gateway\""),
            fields::check_resource_name,
        )
        .map(|s| s.map(ToString::to_string))
    };
    let external_address = name(cx, "external_address", "external address");
    let internal_address = name(cx, "internal_address", "internal address");
    let instance = name(cx, "instance", "VM");
    let firewall = name(cx, "firewall", "firewall rule");
    let routes = match t.get("routes") {
        None => Some(Vec::new()),
        Some(v) => {
            let key = t.child("routes");
            let example = "[\"route-to-gitlab\"]";
            let items = string_array(cx, &key, v, example)?;
            let mut ok = true;
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                if check(
                    cx,
                    &item.span,
                    &item.key,
                    fields::check_resource_name(item.value),
                )
                .is_none()
                {
                    ok = false;
                } else if out.iter().any(|r| r == item.value) {
                    cx.report(
                        &item.span,
                        &item.key,
                        format!("{} is listed twice", quote(item.value)),
                    );
                    ok = false;
                } else {
                    out.push(item.value.to_string());
                }
            }
            ok.then_some(out)
        }
    };
    Some(Adopt {
        external_address: external_address?,
        internal_address: internal_address?,
        instance: instance?,
        routes: routes?,
        firewall: firewall?,
    })
}

/// `zone = ".."` (one VM) or `zones = [..]` (one managed VM per zone): the zone of the VM, or of the first one,
/// and the zones of an HA gateway.
fn read_placement(
    cx: &mut Cx<'_>,
    t: &Table<'_, '_>,
    region: Option<&str>,
) -> Option<(String, Option<Vec<String>>)> {
    let example = "[\"europe-west1-b\", \"europe-west1-c\"]";
    match (t.get("zone"), t.get("zones")) {
        (Some(_), Some(v)) => {
            cx.report(
                &v.span(),
                &t.child("zones"),
                "zone and zones are mutually exclusive: keep zone for a single VM, or list every zone in zones for a gateway that survives a zone outage".to_string(),
            );
            None
        }
        (None, Some(v)) => {
            let key = t.child("zones");
            let items = string_array(cx, &key, v, example)?;
            if items.is_empty() {
                cx.report(
                    &v.span(),
                    &key,
                    format!("the list is empty; expected one or more zones of the gateway's region, like {example}"),
                );
                return None;
            }
            let mut zones: Vec<String> = Vec::with_capacity(items.len());
            let mut ok = true;
            for item in items {
                if check(
                    cx,
                    &item.span,
                    &item.key,
                    fields::check_zone(item.value, region),
                )
                .is_none()
                {
                    ok = false;
                } else if zones.iter().any(|z| z == item.value) {
                    cx.report(
                        &item.span,
                        &item.key,
                        format!(
                            "{} is listed twice; each zone holds one VM",
                            quote(item.value)
                        ),
                    );
                    ok = false;
                } else {
                    zones.push(item.value.to_string());
                }
            }
            let first = zones.first()?.clone();
            ok.then_some((first, Some(zones)))
        }
        _ => {
            let (zone, _) =
                required_string(cx, t, "zone", "a zone like \"europe-west1-b\"", |z| {
                    fields::check_zone(z, region)
                })?;
            Some((zone.to_string(), None))
        }
    }
}

/// `[gateways.NAME.health_check]`; only meaningful with `zones`. `None` when invalid or absent.
/// What a gateway in several zones does not support yet: taking over existing resources (its VMs belong to
/// managed instance groups), and a Shared VPC host project (the load balancer would sit in the service project,
/// its routes in the host).
fn refuse_with_zones(cx: &mut Cx<'_>, t: &Table<'_, '_>) {
    if t.get("zones").is_none() {
        return;
    }
    for (key, why) in [
        (
            "adopt",
            "a gateway in several zones is built new (its VMs belong to managed instance groups); adopt existing resources with a single-VM gateway (zone = \"..\")",
        ),
        (
            "network_project",
            "a gateway in several zones does not support a Shared VPC host project yet; use zone = \"..\" for a single VM",
        ),
    ] {
        if let Some(v) = t.get(key) {
            cx.report(&v.span(), &t.child(key), format!("{key} with zones: {why}"));
        }
    }
}

fn read_health_check(
    cx: &mut Cx<'_>,
    gateway: &Table<'_, '_>,
    placement: Option<&(String, Option<Vec<String>>)>,
) -> Option<HealthCheck> {
    let v = gateway.get("health_check")?;
    let t = table(
        cx,
        gateway.child("health_check"),
        v,
        "a table with interval_sec, healthy_threshold, unhealthy_threshold and port",
    )?;
    if matches!(placement, Some((_, None))) {
        cx.report(
            &v.span(),
            &t.key,
            "health_check needs zones = [..]: a single-VM gateway (zone) has no load balancer or managed group to probe it".to_string(),
        );
        return None;
    }
    t.check_keys(cx, HEALTH_CHECK_KEYS, &[]);
    // Google's ranges for a health check's interval and thresholds:
    // https://cloud.google.com/load-balancing/docs/health-check-concepts#health_check_parameters.
    let mut number = |name: &str,
                      default: u32,
                      range: std::ops::RangeInclusive<i64>,
                      unit: &str| match t.get(name) {
        None => Some(default),
        Some(v) => integer(cx, &t.child(name), v, range, unit).and_then(|n| u32::try_from(n).ok()),
    };
    let interval_sec = number(
        "interval_sec",
        DEFAULT_HEALTH_INTERVAL_SEC,
        1..=300,
        " seconds",
    );
    let healthy = number(
        "healthy_threshold",
        DEFAULT_HEALTHY_THRESHOLD,
        1..=10,
        " probes",
    );
    let unhealthy = number(
        "unhealthy_threshold",
        DEFAULT_UNHEALTHY_THRESHOLD,
        1..=10,
        " probes",
    );
    let port = number("port", u32::from(DEFAULT_HEALTH_PORT), 1_024..=65_535, "");
    Some(HealthCheck {
        interval_sec: interval_sec?,
        healthy_threshold: healthy?,
        unhealthy_threshold: unhealthy?,
        port: u16::try_from(port?).ok()?,
    })
}

fn read_ssh(cx: &mut Cx<'_>, gateway: &Table<'_, '_>) -> Option<Option<Ssh>> {
    let Some(v) = gateway.get("ssh") else {
        return Some(None);
    };
    let key = gateway.child("ssh");
    let hint = "\"iap\" (tcp:22 from Google's IAP TCP forwarding range only), or no ssh key";
    let s = string(cx, &key, v, hint)?;
    let found = match s {
        "iap" => return Some(Some(Ssh::Iap)),
        _ if s.eq_ignore_ascii_case("iap") => format!("{}; did you mean \"iap\"?", quote(s)),
        _ => quote(s),
    };
    cx.report(
        &v.span(),
        &key,
        format!("expected {hint}, found {found}; the gateway's sshd is never open to the internet"),
    );
    None
}

/// Checks between gateways: routes for the same tag in the same network must not overlap, and two gateways
/// cannot reserve the same internal address.
fn check_across(cx: &mut Cx<'_>, gateways: &[(Gateway, Located)]) {
    for (j, (b, bl)) in gateways.iter().enumerate() {
        for (a, al) in gateways.iter().take(j) {
            if a.network == b.network && a.node_tag == b.node_tag {
                for (d, span, key) in &bl.destinations {
                    if let Some((od, _, okey)) =
                        al.destinations.iter().find(|(o, _, _)| o.overlaps(d))
                    {
                        cx.report(
                            span,
                            key,
                            format!(
                                "{} overlaps {okey} {}: both gateways route node_tag {} in network {}, so their routes would conflict",
                                quote(&d.to_string()),
                                quote(&od.to_string()),
                                quote(&b.node_tag),
                                quote(&b.network)
                            ),
                        );
                    }
                }
            }
            if let (Some((ip, span, key)), Some((oip, _, okey))) =
                (&bl.internal_ip, &al.internal_ip)
                && ip == oip
                && a.network == b.network
            {
                cx.report(
                    span,
                    key,
                    format!(
                        "{} is also {okey}; each gateway needs its own internal address",
                        quote(&ip.to_string())
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Entry, overlaps};
    use crate::net::Ipv4Net;

    fn entries(nets: &[(u32, u8)]) -> Vec<Entry> {
        nets.iter()
            .enumerate()
            .filter_map(|(i, &(addr, prefix))| {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(prefix))
                };
                let net = Ipv4Net::new((addr & mask).into(), prefix).ok()?;
                Some((net, i..i + 1, format!("d[{i}]")))
            })
            .collect()
    }

    proptest! {
        /// The sorted sweep finds an overlap exactly when a brute-force pairwise check does, and every pair
        /// it reports is real, reported on the later entry.
        #[test]
        fn overlaps_agrees_with_brute_force(raw in proptest::collection::vec((0u32..64, 26u8..=32), 0..12)) {
            // Small addresses and long prefixes so that overlaps are common.
            let nets: Vec<(u32, u8)> = raw.iter().map(|&(a, p)| (0x0a00_0000 | (a << 2), p)).collect();
            let list = entries(&nets);
            let brute = list.iter().enumerate().any(|(i, a)| list.iter().skip(i + 1).any(|b| a.0.overlaps(&b.0)));
            let found = overlaps(&list);
            prop_assert_eq!(brute, !found.is_empty());
            for (later, earlier) in found {
                prop_assert!(later.0.overlaps(&earlier.0));
                prop_assert!(later.1.start > earlier.1.start);
            }
        }
    }
}
