//! The health endpoint of a gateway with `zones` (issue 14), run for real in the namespaces.
//!
//! There is no systemd in a test namespace, so the test does what systemd would with the units
//! the script wrote: it reads them, runs the checker service's `ExecStart`, and answers each
//! connection to the socket's `ListenStream` with the answer service's `ExecStart`, as a user of
//! `DynamicUser`'s range, the connection as stdin and stdout (the helper's `inetd`, for
//! `Accept=yes`). So the code probed is the code the VM runs, not a copy. `systemctl` is a fake
//! that records its calls; `systemd-analyze verify` reads the units as systemd would.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{
    ALLOWED_DST, ALLOWED_PORT, ALLOWED_SRC, CONFIG, IAP_SRC, Lab, Net, SYSCTL_FILE, Setup,
    Topology, build, connect, find_program, ip, lab_for, metadata_url, must, render_config, run,
    skip_because, small_lab, text,
};

/// One address in each of Google's health-check ranges, 35.191.0.0/16 and 130.211.0.0/22.
pub(super) const HEALTH_CHECK_SRCS: [&str; 2] = ["35.191.0.10", "130.211.0.10"];
/// Not the default (9090): the port comes from the config.
const HEALTH_PORT: u16 = 9191;
const UNIT_DIR: &str = "/run/systemd/system";
const UNITS: [&str; 3] = [
    "natgw-health-check.service",
    "natgw-health.socket",
    "natgw-health@.service",
];
/// A user id from systemd's range for `DynamicUser=yes` (61184 to 65519), which no file has.
const DYNAMIC_UID: &str = "61184";
/// How many times to probe for an expected answer, 200 ms apart. The checker re-checks every
/// 2 s; the bound only keeps a broken endpoint from hanging the test.
const PROBES: usize = 100;

/// The test config with `zones` and a health-check port of its own.
pub(super) fn ha_config() -> String {
    let zones = CONFIG
        .replace(
            "zone = \"europe-west1-b\"",
            "zones = [\"europe-west1-b\", \"europe-west1-c\"]",
        )
        .replace("{ssh}", "");
    format!("{zones}\n[gateways.ci.health_check]\nport = {HEALTH_PORT}\n")
}

/// `key=value` lines of one unit file the script wrote (all keys of natgw's units are unique).
fn unit(lab: &Lab, name: &str) -> BTreeMap<String, String> {
    lab.must_in_gateway(r#"cat "$1""#, &[&format!("{UNIT_DIR}/{name}")])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn key<'a>(unit: &'a BTreeMap<String, String>, name: &str, key: &str) -> &'a str {
    unit.get(key)
        .unwrap_or_else(|| panic!("{name} has no {key}=: {unit:?}"))
}

/// systemd's own reading of the units as the script wrote them. `verify` exits 0 on an unknown
/// key or an unsafe setting, so its silence is what counts.
fn verify_units(lab: &Lab, test: &str) {
    let Some(analyze) = find_program("systemd-analyze") else {
        skip_because(
            &format!("{test}: systemd-analyze verify"),
            Some("`systemd-analyze` is not installed".to_string()),
        );
        return;
    };
    let dir = lab.dir.join("units");
    std::fs::create_dir_all(&dir).expect("create a directory for the units");
    let files: Vec<_> = UNITS
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let text = lab.must_in_gateway(r#"cat "$1""#, &[&format!("{UNIT_DIR}/{name}")]);
            std::fs::write(&path, text).expect("write a unit");
            path
        })
        .collect();
    let out = run(Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(&files));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{test}: systemd-analyze verify ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Starts what systemd would start for the units; returns the checker's index in `children`.
fn start_units(lab: &mut Lab) -> usize {
    let checker = unit(lab, "natgw-health-check.service");
    let socket = unit(lab, "natgw-health.socket");
    let answer = unit(lab, "natgw-health@.service");
    let listen = key(&socket, "natgw-health.socket", "ListenStream");
    assert_eq!(
        listen,
        format!("0.0.0.0:{HEALTH_PORT}"),
        "the port of health_check"
    );
    assert_eq!(key(&socket, "natgw-health.socket", "Accept"), "yes");
    for k in ["StandardInput", "StandardOutput"] {
        assert_eq!(key(&answer, "natgw-health@.service", k), "socket");
    }
    assert_eq!(
        key(&checker, "natgw-health-check.service", "Restart"),
        "always"
    );

    let log = lab.dir.join("health-check.log").display().to_string();
    let mut args = vec![log];
    args.extend(
        key(&checker, "natgw-health-check.service", "ExecStart")
            .split_whitespace()
            .map(str::to_string),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = lab
        .gateway_command(
            r#"log="$1"; shift; exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@" >>"$log" 2>&1"#,
            &args,
        )
        .stdin(Stdio::null())
        .spawn()
        .expect("start the checker");
    lab.children.push(child);
    let checker_index = lab.children.len() - 1;

    let (addr, port) = listen.rsplit_once(':').expect("address:port");
    let helper = lab.dir.join("helper.py").display().to_string();
    assert_eq!(key(&answer, "natgw-health@.service", "DynamicUser"), "yes");
    let mut args = vec![helper.as_str(), "inetd", addr, port, DYNAMIC_UID];
    args.extend(key(&answer, "natgw-health@.service", "ExecStart").split_whitespace());
    let mut inetd = lab.gateway_command(r#"exec python3 "$@""#, &args);
    lab.spawn_listening(&mut inetd);
    checker_index
}

/// GET / from `src` in `ns` to the endpoint: `Ok((status line, body))`, or `Err` when no
/// connection was made.
fn probe(lab: &Lab, ns: &str, src: &str, dst: &str) -> Result<(String, String), String> {
    let out = run(Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(lab.dir.join("helper.py"))
        .args(["http", src, dst, &HEALTH_PORT.to_string()]));
    let stdout = text(&out.stdout);
    if !out.status.success() {
        return Err(format!("{stdout}{}", text(&out.stderr)));
    }
    let (status, body) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    Ok((status.to_string(), body.trim_end().to_string()))
}

fn checker_log(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir.join("health-check.log")).unwrap_or_default()
}

/// Probes from Google's range until the endpoint answers `status`; returns the body.
fn wait_for(lab: &Lab, net: &Net, status: &str, test: &str, what: &str) -> String {
    let mut last = None;
    for _ in 0..PROBES {
        match probe(lab, &net.dest, HEALTH_CHECK_SRCS[0], net.outside) {
            Ok((s, body)) if s == status => return body,
            other => last = Some(other),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{test}: {what}: no {status:?} after {PROBES} probes; last answer {last:?}; checker log:\n{}",
        checker_log(lab)
    );
}

/// Removes natgw's masquerade rule, the one a NAT gateway cannot work without.
fn remove_nat_rule(setup: Setup, gw: &str) {
    if setup.has_nft() {
        let chain = must(Command::new("ip").args([
            "netns",
            "exec",
            gw,
            "nft",
            "-a",
            "list",
            "chain",
            "ip",
            "natgw",
            "postrouting",
        ]));
        let handle = chain
            .lines()
            .find(|l| l.contains("masquerade"))
            .and_then(|l| l.rsplit("# handle ").next())
            .unwrap_or_else(|| panic!("no masquerade rule with a handle in:\n{chain}"))
            .trim()
            .to_string();
        must(Command::new("ip").args([
            "netns",
            "exec",
            gw,
            "nft",
            "delete",
            "rule",
            "ip",
            "natgw",
            "postrouting",
            "handle",
            &handle,
        ]));
    } else {
        let iptables = setup.iptables().expect("an iptables setup");
        must(
            Command::new("ip")
                .args(["netns", "exec", gw])
                .arg(iptables)
                .args(["-t", "nat", "-D", "NATGW-MASQUERADE", "-d"])
                .arg(format!("{ALLOWED_DST}/32"))
                .args(["-j", "MASQUERADE"]),
        );
    }
}

fn prove_health(setup: Setup) {
    let test = format!("netns health {setup:?}");
    let Some(mut lab) = lab_for(&test, setup) else {
        return;
    };
    let script = render_config(&lab.dir, &ha_config(), "startup-ha.sh");
    // One interface, as on Compute Engine.
    let net = build(&mut lab, Topology::OneInterface);
    let token = "token-health";
    lab.start_metadata(&net.gw, token);
    lab.hold_gateway_mounts(&net.gw);
    let calls = lab.dir.join("calls");
    lab.fake("systemctl", "exit 0", &calls);

    let first = lab.run_script(&script, &metadata_url());
    assert!(first.success, "{test}: the script failed:\n{}", first.log);
    assert_eq!(lab.read_ready().as_deref(), Some(token), "{test}: ready");
    let mut expected = vec![
        format!("+run/{SYSCTL_FILE}"),
        "+run/natgw/health-answer".to_string(),
        "+run/natgw/health-check".to_string(),
    ];
    expected.extend(UNITS.map(|u| format!("+{}/{u}", &UNIT_DIR[1..])));
    expected.sort();
    assert_eq!(first.changes, expected, "{test}: log:\n{}", first.log);
    let restart = "systemctl restart natgw-health-check.service natgw-health.socket";
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap_or_default(),
        format!("systemctl daemon-reload\n{restart}\n"),
        "{test}"
    );

    verify_units(&lab, &test);
    let checker = start_units(&mut lab);
    let in_gw = |script: &str| lab.must_in_gateway(script, &[]);
    assert_eq!(
        wait_for(&lab, &net, "HTTP/1.1 200 OK", &test, "healthy"),
        "ok"
    );
    // Open to both of Google's ranges and to nobody else: the internet, the IAP range, the
    // runners. (The filter drops them: the same listener answers Google.)
    for src in HEALTH_CHECK_SRCS {
        assert_eq!(
            probe(&lab, &net.dest, src, net.outside),
            Ok(("HTTP/1.1 200 OK".to_string(), "ok".to_string())),
            "{test}: from {src}"
        );
    }
    for (what, ns, src, dst) in [
        ("the internet", &net.dest, net.internet, net.outside),
        ("the IAP range", &net.dest, IAP_SRC, net.outside),
        ("a runner", &net.runner, ALLOWED_SRC, net.inside),
    ] {
        let got = probe(&lab, ns, src, dst);
        assert!(
            got.is_err(),
            "{test}: {what} ({src}) reached the health endpoint: {got:?}"
        );
    }
    assert_eq!(
        connect(&lab, &net.runner, ALLOWED_SRC, ALLOWED_DST, ALLOWED_PORT),
        Ok(format!("peer {}", net.outside)),
        "{test}: forwarding with zones"
    );

    // A NAT rule removed: unhealthy until a run of the script puts it back.
    remove_nat_rule(setup, &net.gw);
    let body = wait_for(
        &lab,
        &net,
        "HTTP/1.1 503 Service Unavailable",
        &test,
        "without the masquerade rule",
    );
    assert!(body.starts_with("rule-missing "), "{test}: {body}");
    let rerun = lab.run_script(&script, &metadata_url());
    assert!(rerun.success, "{test}: the rerun failed:\n{}", rerun.log);
    wait_for(&lab, &net, "HTTP/1.1 200 OK", &test, "after the rerun");

    // Forwarding off, then on again.
    in_gw("printf '0\\n' >/proc/sys/net/ipv4/ip_forward");
    let body = wait_for(
        &lab,
        &net,
        "HTTP/1.1 503 Service Unavailable",
        &test,
        "with forwarding off",
    );
    assert_eq!(
        body, "forwarding-off net.ipv4.ip_forward is not 1",
        "{test}"
    );
    in_gw("printf '1\\n' >/proc/sys/net/ipv4/ip_forward");
    wait_for(&lab, &net, "HTTP/1.1 200 OK", &test, "with forwarding on");

    // No egress route. The probes' replies keep a route of their own, as Google's special
    // routes for health checks do.
    in_gw(
        "ip route add 35.191.0.0/16 via 10.20.0.1 && ip route add 130.211.0.0/22 via 10.20.0.1 \
         && ip route del default",
    );
    let body = wait_for(
        &lab,
        &net,
        "HTTP/1.1 503 Service Unavailable",
        &test,
        "without a default route",
    );
    assert_eq!(body, "no-default-route there is no IPv4 default route");
    in_gw("ip route add default via 10.20.0.1");
    wait_for(&lab, &net, "HTTP/1.1 200 OK", &test, "with the route back");

    let log = checker_log(&lab);
    let transitions: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("natgw: health: "))
        .map(|l| l.split(' ').next().unwrap_or(l))
        .collect();
    for reason in ["rule-missing", "forwarding-off", "no-default-route"] {
        assert!(
            transitions.contains(&reason),
            "{test}: the checker did not log {reason}:\n{log}"
        );
    }
    assert_eq!(transitions.first(), Some(&"ok"), "{test}:\n{log}");

    // A checker that stopped leaves a verdict that goes stale: no 200 from it.
    let stopped = &mut lab.children[checker];
    let _ = stopped.kill();
    let _ = stopped.wait();
    lab.write_in_gateway("/run/natgw/health", "1 ok\n");
    let got = probe(&lab, &net.dest, HEALTH_CHECK_SRCS[1], net.outside);
    assert!(
        matches!(&got, Ok((status, body)) if status == "HTTP/1.1 503 Service Unavailable" && body.starts_with("stale ")),
        "{test}: a stale verdict: {got:?}"
    );
}

#[test]
fn netns_health_nft() {
    prove_health(Setup::Nft);
}

#[test]
fn netns_health_iptables_nft() {
    prove_health(Setup::IptablesNft);
}

#[test]
fn netns_health_iptables_legacy() {
    prove_health(Setup::IptablesLegacy);
}

/// A health endpoint that cannot start (its port taken, say) fails the run like a missing
/// rule: forwarding off, the reason on the serial console, no readiness.
#[test]
fn netns_health_endpoint_that_cannot_start_fails_the_run() {
    let test = "netns health endpoint cannot start";
    let token = "token-health-fails";
    let Some((lab, _, gw)) = small_lab(test, Setup::Nft, token) else {
        return;
    };
    let script = render_config(&lab.dir, &ha_config(), "startup-ha.sh");
    ip(&format!("-n {gw} route add default via 192.0.2.2"));
    let calls = lab.dir.join("calls");
    lab.fake(
        "systemctl",
        r#"if [[ "$1" == restart ]]; then echo "Job for natgw-health.socket failed." >&2; exit 1; fi"#,
        &calls,
    );

    let run = lab.run_script(&script, &metadata_url());
    assert!(!run.success, "{test}: must fail:\n{}", run.log);
    assert!(
        run.log.contains(&format!(
            "natgw: ERROR: cannot start the health endpoint on tcp:{HEALTH_PORT} (Job for natgw-health.socket failed.)"
        )),
        "{test}: {}",
        run.log
    );
    assert_eq!(
        lab.console_lines(),
        (
            Some("natgw-summary: backend=nft egress=eth0 sources=10.10.0.0/25 destinations=198.51.100.10/32 verify=failed:health-endpoint".to_string()),
            None
        )
    );
    assert_eq!(lab.ip_forward(), "0", "{test}: forwarding left on");
    assert_eq!(lab.read_ready().as_deref(), Some("pending"));
}
