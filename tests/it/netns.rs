//! The gateway's startup script, run for real in network namespaces (issue 4).
//!
//! Each test builds its own namespaces (names start with `natgw-it-<pid>-`) joined by veth
//! pairs: a runner with an allowed and a disallowed source address, the gateway, and a
//! destination that has no route back to the runner's range, so a reply can only come back
//! through the gateway's NAT. Only private and documentation ranges are used, and only inside
//! those namespaces. A guard removes the namespaces and stops the helper processes even when
//! an assertion fails. The script runs under `unshare --mount` with an overlay over /etc, so
//! its writes there (the /etc/sysctl.d file) never reach the host.
//!
//! Needs root, iproute2, iptables (both backends are exercised when both are installed),
//! python3 (the small servers and the client), curl and util-linux; without them each test
//! prints that it was skipped and passes, unless `NATGW_IT_REQUIRE_NETNS=1` (set it in CI),
//! which turns every skip into a failure.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

const GATEWAY_NAME: &str = "ci";
const ALLOWED_SRC: &str = "10.10.0.10";
const DISALLOWED_SRC: &str = "10.10.0.200";
const ALLOWED_DST: &str = "198.51.100.10";
const DISALLOWED_DST: &str = "198.51.100.20";
const ALLOWED_PORT: u16 = 8443;
const DISALLOWED_PORT: u16 = 9000;
const ALLOWED_UDP_PORT: u16 = 53;
const DISALLOWED_UDP_PORT: u16 = 5353;
const METADATA_PORT: u16 = 8080;
/// A port of the gateway's own, as sshd would be.
const OWN_PORT: u16 = 2200;
const SYSCTL_FILE: &str = "sysctl.d/99-zz-natgw.conf";

const CONFIG: &str = r#"
stack = "netns-test"

[gateways.ci]
region = "europe-west1"
zone = "europe-west1-b"
network = "default"
subnetwork = "default"
destinations = ["198.51.100.10/32"]
source_ranges = ["10.10.0.0/25"]
allow = ["tcp:8443", "udp:53", "icmp"]
node_tag = "ci-runners"
node_pool = { cluster = "ci", location = "europe-west1", name = "runners" }
"#;

fn say(msg: &str) {
    // Straight to stderr, past the test harness's capture, so a skip is always visible.
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Where a program is, searching PATH and the sbin directories (root's tools live there).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// `Some(reason)` when this machine cannot run the namespace tests (found out once).
fn skip_reason() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON.get_or_init(find_skip_reason).clone()
}

fn find_skip_reason() -> Option<String> {
    if !is_root() {
        return Some("not root".to_string());
    }
    for tool in [
        "ip", "iptables", "python3", "curl", "unshare", "mount", "bash",
    ] {
        if find_program(tool).is_none() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    // Root in a container may still be refused namespaces.
    let probe = format!("natgw-it-{}-probe", std::process::id());
    let added = run(Command::new("ip").args(["netns", "add", &probe]));
    let _ = run(Command::new("ip").args(["netns", "del", &probe]));
    if !added.status.success() {
        return Some(format!(
            "cannot create a network namespace: {}",
            text(&added.stderr).trim()
        ));
    }
    None
}

/// Set in CI, where these tests must run: a reason to skip is then a failure.
const REQUIRE_ENV: &str = "NATGW_IT_REQUIRE_NETNS";

fn skipped(test: &str) -> bool {
    skip_because(test, skip_reason())
}

fn skip_because(test: &str, reason: Option<String>) -> bool {
    let Some(reason) = reason else {
        return false;
    };
    assert!(
        std::env::var_os(REQUIRE_ENV).is_none_or(|v| v.is_empty() || v == "0"),
        "{test} cannot run ({reason}) but {REQUIRE_ENV} is set"
    );
    say(&format!("SKIPPED {test}: {reason}"));
    true
}

/// An iptables backend: the three programs the script and the test call.
#[derive(Clone, Debug)]
struct Backend {
    iptables: PathBuf,
    save: PathBuf,
    restore: PathBuf,
}

/// The backend behind `iptables-<name>`; `None` when it is not installed.
fn backend(name: &'static str) -> Option<Backend> {
    Some(Backend {
        iptables: find_program(&format!("iptables-{name}"))?,
        save: find_program(&format!("iptables-{name}-save"))?,
        restore: find_program(&format!("iptables-{name}-restore"))?,
    })
}

fn run(cmd: &mut Command) -> Output {
    match cmd.stdin(Stdio::null()).output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `ip` with its arguments split on spaces (the arguments here never contain spaces).
fn ip(args: &str) {
    must(Command::new("ip").args(args.split_whitespace()));
}

fn render_script(dir: &Path) -> PathBuf {
    let config = dir.join("natgw.toml");
    std::fs::write(&config, CONFIG).expect("write the test config");
    let script = must(
        Command::new(env!("CARGO_BIN_EXE_natgw"))
            .arg("startup-script")
            .arg("-c")
            .arg(&config)
            .args(["--gateway", GATEWAY_NAME]),
    );
    let path = dir.join("startup.sh");
    std::fs::write(&path, script).expect("write the rendered script");
    path
}

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// Namespaces, helper processes and a scratch directory, all removed on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
    bin: PathBuf,
}

impl Lab {
    fn new(backend: &Backend) -> Lab {
        remove_stale_namespaces();
        let n = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("natgw-it-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("create the scratch directory");
        // The script calls plain `iptables`: point it at the backend under test.
        for (link, target) in [
            ("iptables", &backend.iptables),
            ("iptables-save", &backend.save),
            ("iptables-restore", &backend.restore),
        ] {
            std::os::unix::fs::symlink(target, bin.join(link)).expect("link the backend");
        }
        std::fs::write(dir.join("helper.py"), HELPER_PY).expect("write the helper");
        Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
            bin,
        }
    }

    /// Creates a namespace `<prefix>-<role>` with its loopback up; returns its name.
    fn netns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        ip(&format!("netns add {name}"));
        self.namespaces.push(name.clone());
        ip(&format!("-n {name} link set lo up"));
        name
    }

    /// A veth pair from `a`'s `a_if` to `b`'s `b_if`, both up.
    fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        ip(&format!(
            "-n {a} link add {a_if} type veth peer name {b_if} netns {b}"
        ));
        ip(&format!("-n {a} link set {a_if} up"));
        ip(&format!("-n {b} link set {b_if} up"));
    }

    /// Starts the helper in `ns` and waits until it listens.
    fn spawn_helper(&mut self, ns: &str, args: &[&str]) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3"])
            .arg(self.dir.join("helper.py"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the python helper");
        let stdout = child.stdout.take().expect("piped stdout");
        self.children.push(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read from the helper");
        assert_eq!(line.trim(), "listening", "helper {args:?} did not start");
    }

    fn ready_file(&self) -> PathBuf {
        self.dir.join("ready")
    }

    /// A fake metadata server on the gateway's loopback that records `natgw/ready`.
    fn start_metadata(&mut self, gw: &str, token: &str) {
        let out = self.ready_file().display().to_string();
        self.spawn_helper(gw, &["metadata", &METADATA_PORT.to_string(), token, &out]);
    }

    /// Runs the script in `gw` with /etc behind an overlay. Returns the script's output and
    /// what it wrote under /etc (paths relative to /etc, with their contents).
    fn run_script(&self, gw: &str, script: &Path, metadata_url: &str) -> ScriptRun {
        let scratch = self.dir.join("etc-overlay");
        let report = self.dir.join("etc-writes");
        let _ = std::fs::remove_file(&report);
        std::fs::create_dir_all(&scratch).expect("create the overlay directory");
        // The overlay's upper and work dirs live on a tmpfs; both mounts exist only in this
        // private mount namespace and vanish with it. The report lists everything but
        // directories in the upper dir, so a deletion (an overlay whiteout) shows up too.
        let wrapper = r#"set -eu
mount -t tmpfs natgw-it "$1"
mkdir "$1/upper" "$1/work"
mount -t overlay natgw-it -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
rc=0
PATH="$2:$PATH" NATGW_METADATA_URL="$3" bash "$4" 2>&1 || rc=$?
cd "$1/upper"
find . -mindepth 1 ! -type d | sort | while read -r f; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then printf '=== %s\n' "${f#./}"; cat "$f"
    else printf '=== %s (not a regular file)\n' "${f#./}"; fi
done >"$5"
exit "$rc"
"#;
        let out = run(Command::new("ip")
            .args([
                "netns", "exec", gw, "unshare", "--mount", "--", "bash", "-c",
            ])
            .arg(wrapper)
            .arg("natgw-it")
            .arg(&scratch)
            .arg(&self.bin)
            .arg(metadata_url)
            .arg(script)
            .arg(&report));
        let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
        let written = std::fs::read_to_string(&report)
            .unwrap_or_else(|e| panic!("no report of the writes under /etc ({e}); log:\n{log}"));
        let etc_writes = written
            .strip_prefix("=== ")
            .unwrap_or(&written)
            .split("\n=== ")
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (name, body) = s.split_once('\n').unwrap_or((s, ""));
                (name.to_string(), body.to_string())
            })
            .collect();
        ScriptRun {
            success: out.status.success(),
            log,
            etc_writes,
        }
    }

    fn read_ready(&self) -> Option<String> {
        std::fs::read_to_string(self.ready_file()).ok()
    }

    fn clear_ready(&self) {
        let _ = std::fs::remove_file(self.ready_file());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Namespaces left by an earlier test run that was killed before its guards could run.
fn remove_stale_namespaces() {
    let list = run(Command::new("ip").args(["netns", "list"]));
    for line in text(&list.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("natgw-it-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = run(Command::new("ip").args(["netns", "del", name]));
        }
    }
}

struct ScriptRun {
    success: bool,
    log: String,
    /// Files the script wrote under /etc: (path relative to /etc, contents).
    etc_writes: Vec<(String, String)>,
}

/// Connects from `src` in `runner` to `dst:port`; `Ok(answer)` or `Err(why)`.
fn connect(lab: &Lab, runner: &str, src: &str, dst: &str, port: u16) -> Result<String, String> {
    exchange(lab, runner, "tcp", src, dst, port)
}

/// Sends from `src` in `runner` to `dst:port` over `proto` (tcp or udp); `Ok(answer)` or
/// `Err(why)`.
fn exchange(
    lab: &Lab,
    runner: &str,
    proto: &str,
    src: &str,
    dst: &str,
    port: u16,
) -> Result<String, String> {
    let out = run(Command::new("ip")
        .args(["netns", "exec", runner, "python3"])
        .arg(lab.dir.join("helper.py"))
        .args(["connect", proto, src, dst, &port.to_string()]));
    let answer = text(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(answer)
    } else {
        Err(format!("{answer}{}", text(&out.stderr)))
    }
}

/// `iptables-save` without comments and counters, so two runs can be compared.
fn ruleset(backend: &Backend, ns: &str) -> String {
    let raw = must(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&backend.save),
    );
    raw.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
            (true, Some(i)) => format!("{} [0:0]", &l[..i]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Clone, Copy, Debug)]
enum Topology {
    /// The gateway has an inside and an outside interface.
    TwoInterfaces,
    /// One interface in and out, as on Compute Engine.
    OneInterface,
}

/// Builds the namespaces; returns (runner, gateway, the address the destination should see).
fn build(lab: &mut Lab, topology: Topology) -> (String, String, &'static str) {
    let runner = lab.netns("runner");
    let gw = lab.netns("gw");
    let dest = lab.netns("dest");
    for addr in [ALLOWED_DST, DISALLOWED_DST] {
        ip(&format!("-n {dest} addr add {addr}/32 dev lo"));
    }
    let (runner, gw, seen) = match topology {
        Topology::TwoInterfaces => {
            lab.veth(&runner, "eth0", &gw, "eth0");
            lab.veth(&gw, "eth1", &dest, "eth0");
            ip(&format!("-n {runner} addr add {ALLOWED_SRC}/24 dev eth0"));
            ip(&format!(
                "-n {runner} addr add {DISALLOWED_SRC}/24 dev eth0"
            ));
            ip(&format!("-n {runner} route add default via 10.10.0.1"));
            ip(&format!("-n {gw} addr add 10.10.0.1/24 dev eth0"));
            ip(&format!("-n {gw} addr add 192.0.2.1/24 dev eth1"));
            ip(&format!("-n {gw} route add default via 192.0.2.2"));
            ip(&format!("-n {dest} addr add 192.0.2.2/24 dev eth0"));
            (runner, gw, "192.0.2.1")
        }
        Topology::OneInterface => {
            // One L2 segment (a bridge in its own namespace), like a VPC subnet: the runner
            // routes through the gateway, which sends everything out the way it came in.
            let switch = lab.netns("switch");
            ip(&format!("-n {switch} link add br0 type bridge"));
            ip(&format!("-n {switch} link set br0 up"));
            for (ns, port) in [(&runner, "p-runner"), (&gw, "p-gw"), (&dest, "p-dest")] {
                lab.veth(&switch, port, ns, "eth0");
                ip(&format!("-n {switch} link set {port} master br0"));
            }
            ip(&format!("-n {runner} addr add 10.20.0.10/24 dev eth0"));
            ip(&format!("-n {runner} addr add {ALLOWED_SRC}/24 dev eth0"));
            ip(&format!(
                "-n {runner} addr add {DISALLOWED_SRC}/24 dev eth0"
            ));
            ip(&format!("-n {runner} route add default via 10.20.0.2"));
            ip(&format!("-n {gw} addr add 10.20.0.2/24 dev eth0"));
            ip(&format!("-n {gw} route add default via 10.20.0.1"));
            ip(&format!("-n {gw} route add 10.10.0.0/24 via 10.20.0.10"));
            ip(&format!("-n {dest} addr add 10.20.0.1/24 dev eth0"));
            (runner, gw, "10.20.0.2")
        }
    };
    // TCP on every address; UDP bound to the destination address, so that replies leave from
    // it (a wildcard UDP socket would answer from the interface's address, which NAT rejects).
    let ports = [
        format!("tcp:0.0.0.0:{ALLOWED_PORT}"),
        format!("tcp:0.0.0.0:{DISALLOWED_PORT}"),
        format!("udp:{ALLOWED_DST}:{ALLOWED_UDP_PORT}"),
        format!("udp:{ALLOWED_DST}:{DISALLOWED_UDP_PORT}"),
    ];
    let mut args = vec!["peer-server"];
    args.extend(ports.iter().map(String::as_str));
    lab.spawn_helper(&dest, &args);
    (runner, gw, seen)
}

fn metadata_url() -> String {
    format!("http://127.0.0.1:{METADATA_PORT}")
}

/// The whole proof for one topology and one iptables backend.
fn prove(topology: Topology, backend_name: &'static str) {
    let test = format!("netns {topology:?} {backend_name}");
    if skipped(&test) {
        return;
    }
    let Some(backend) = backend(backend_name) else {
        skip_because(
            &test,
            Some(format!("iptables-{backend_name} is not installed")),
        );
        return;
    };
    let host_sysctl = Path::new("/etc").join(SYSCTL_FILE);
    let host_had_it = host_sysctl.exists();

    let mut lab = Lab::new(&backend);
    let script = render_script(&lab.dir);
    let (runner, gw, gateway_addr) = build(&mut lab, topology);
    let token = format!("token-{}", lab.prefix);
    lab.start_metadata(&gw, &token);

    // A rule of someone else's, which the script must leave alone.
    let foreign = "-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT";
    must(
        Command::new("ip")
            .args(["netns", "exec", &gw])
            .arg(&backend.iptables)
            .args(foreign.split_whitespace()),
    );

    // Before the script, nothing gets through: the test can tell.
    assert!(
        connect(&lab, &runner, ALLOWED_SRC, ALLOWED_DST, ALLOWED_PORT).is_err(),
        "{test}: traffic got through before the script ran"
    );
    // A service of the gateway's own (think sshd, on a port `allow` opens in the firewall):
    // reachable from the runners before the script, not after.
    let inside = match topology {
        Topology::TwoInterfaces => "10.10.0.1",
        Topology::OneInterface => "10.20.0.2",
    };
    lab.spawn_helper(&gw, &["peer-server", &format!("tcp:{inside}:{OWN_PORT}")]);
    assert_eq!(
        connect(&lab, &runner, ALLOWED_SRC, inside, OWN_PORT),
        Ok(format!("peer {ALLOWED_SRC}")),
        "{test}: the gateway's own service is not reachable before the script; the test cannot tell"
    );

    let first = lab.run_script(&gw, &script, &metadata_url());
    assert!(first.success, "{test}: the script failed:\n{}", first.log);
    let version_tag = if backend_name == "nft" {
        "(nf_tables)"
    } else {
        "(legacy)"
    };
    assert!(
        first
            .log
            .lines()
            .any(|l| l.starts_with("natgw: iptables: ") && l.ends_with(version_tag)),
        "{test}: the script did not use the {backend_name} backend; log:\n{}",
        first.log
    );
    assert_eq!(
        lab.read_ready().as_deref(),
        Some(token.as_str()),
        "{test}: ready not reported; log:\n{}",
        first.log
    );
    let names: Vec<&str> = first.etc_writes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [SYSCTL_FILE], "{test}: unexpected writes under /etc");
    assert!(
        first.etc_writes[0]
            .1
            .lines()
            .any(|l| l == "net.ipv4.ip_forward = 1"),
        "{test}: sysctl file: {}",
        first.etc_writes[0].1
    );
    assert_eq!(
        host_sysctl.exists(),
        host_had_it,
        "{test}: the script wrote to the host's /etc"
    );
    // Redirects off on every interface; conntrack sized where a namespace allows it.
    let sysctls = must(
        Command::new("ip")
            .args(["netns", "exec", &gw, "sh", "-c"])
            .arg(
                "cat /proc/sys/net/ipv4/conf/*/send_redirects \
             /proc/sys/net/ipv4/ip_forward \
             /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established",
            ),
    );
    let values: Vec<&str> = sysctls.split_whitespace().collect();
    let (redirects, rest) = values.split_at(values.len() - 2);
    assert!(
        redirects.len() >= 3 && redirects.iter().all(|v| *v == "0"),
        "{test}: send_redirects: {redirects:?}"
    );
    assert_eq!(
        rest,
        ["1", "3600"],
        "{test}: ip_forward, tcp_timeout_established"
    );

    assert_eq!(
        connect(&lab, &runner, ALLOWED_SRC, ALLOWED_DST, ALLOWED_PORT),
        Ok(format!("peer {gateway_addr}")),
        "{test}: allowed traffic must arrive from the gateway's address"
    );
    for (what, src, dst, port) in [
        (
            "disallowed source",
            DISALLOWED_SRC,
            ALLOWED_DST,
            ALLOWED_PORT,
        ),
        (
            "disallowed destination",
            ALLOWED_SRC,
            DISALLOWED_DST,
            ALLOWED_PORT,
        ),
        ("disallowed port", ALLOWED_SRC, ALLOWED_DST, DISALLOWED_PORT),
    ] {
        let got = connect(&lab, &runner, src, dst, port);
        assert!(
            got.is_err(),
            "{test}: {what} {src} -> {dst}:{port} got through: {got:?}"
        );
    }

    // UDP follows its own `allow` entry.
    assert_eq!(
        exchange(
            &lab,
            &runner,
            "udp",
            ALLOWED_SRC,
            ALLOWED_DST,
            ALLOWED_UDP_PORT
        ),
        Ok(format!("peer {gateway_addr}")),
        "{test}: allowed UDP"
    );
    let got = exchange(
        &lab,
        &runner,
        "udp",
        ALLOWED_SRC,
        ALLOWED_DST,
        DISALLOWED_UDP_PORT,
    );
    assert!(
        got.is_err(),
        "{test}: disallowed UDP port got through: {got:?}"
    );

    // So does ICMP (allowed for the allowed source only).
    let ping = |src: &str, dst: &str| {
        run(Command::new("ip")
            .args(["netns", "exec", &runner, "python3"])
            .arg(lab.dir.join("helper.py"))
            .args(["ping", src, dst]))
        .status
        .success()
    };
    assert!(ping(ALLOWED_SRC, ALLOWED_DST), "{test}: allowed ICMP");
    assert!(
        !ping(DISALLOWED_SRC, ALLOWED_DST),
        "{test}: ICMP from a disallowed source"
    );
    assert!(
        !ping(ALLOWED_SRC, DISALLOWED_DST),
        "{test}: ICMP to a disallowed destination"
    );

    assert!(
        connect(&lab, &runner, ALLOWED_SRC, inside, OWN_PORT).is_err(),
        "{test}: a runner reached a service of the gateway itself"
    );

    // A second run (a reboot's rerun) converges to exactly the same rule set.
    let rules_once = ruleset(&backend, &gw);
    assert_eq!(rules_once.matches(foreign).count(), 1, "{rules_once}");
    assert!(
        rules_once.contains("-A FORWARD -j NATGW-FORWARD"),
        "{rules_once}"
    );
    assert!(
        rules_once.contains("-A INPUT -j NATGW-INPUT"),
        "{rules_once}"
    );
    assert!(
        rules_once.contains("-A POSTROUTING -j NATGW-POSTROUTING"),
        "{rules_once}"
    );
    lab.clear_ready();
    let second = lab.run_script(&gw, &script, &metadata_url());
    assert!(second.success, "{test}: second run failed:\n{}", second.log);
    assert_eq!(lab.read_ready().as_deref(), Some(token.as_str()));
    assert_eq!(
        ruleset(&backend, &gw),
        rules_once,
        "{test}: the second run changed the rule set"
    );
    assert_eq!(
        connect(&lab, &runner, ALLOWED_SRC, ALLOWED_DST, ALLOWED_PORT),
        Ok(format!("peer {gateway_addr}")),
        "{test}: after the second run"
    );
    assert!(connect(&lab, &runner, DISALLOWED_SRC, ALLOWED_DST, ALLOWED_PORT).is_err());
}

#[test]
fn netns_two_interfaces_nft() {
    prove(Topology::TwoInterfaces, "nft");
}

#[test]
fn netns_two_interfaces_legacy() {
    prove(Topology::TwoInterfaces, "legacy");
}

#[test]
fn netns_one_interface_nft() {
    prove(Topology::OneInterface, "nft");
}

#[test]
fn netns_one_interface_legacy() {
    prove(Topology::OneInterface, "legacy");
}

/// Without a default route the script fails and reports nothing; with one but no metadata
/// server it sets up forwarding, says it cannot report, and still exits 0.
#[test]
fn netns_no_default_route_and_no_metadata_server() {
    let test = "netns no default route";
    if skipped(test) {
        return;
    }
    let Some(backend) = backend("nft").or_else(|| backend("legacy")) else {
        skip_because(
            test,
            Some("neither iptables-nft nor iptables-legacy".into()),
        );
        return;
    };
    let mut lab = Lab::new(&backend);
    let script = render_script(&lab.dir);
    let gw = lab.netns("gw");
    let peer = lab.netns("peer");
    lab.veth(&gw, "eth0", &peer, "eth0");
    ip(&format!("-n {gw} addr add 192.0.2.1/24 dev eth0"));
    let token = "token-no-route";
    lab.start_metadata(&gw, token);
    // As if an earlier boot had reported ready: this run must withdraw it.
    std::fs::write(lab.ready_file(), token).expect("write a stale report");

    let run = lab.run_script(&gw, &script, &metadata_url());
    assert!(!run.success, "{test}: must fail:\n{}", run.log);
    assert!(
        run.log
            .contains("natgw: ERROR: there is no IPv4 default route"),
        "{}",
        run.log
    );
    assert!(run.log.contains("not reporting ready"), "{}", run.log);
    assert_eq!(
        lab.read_ready().as_deref(),
        Some("pending"),
        "{test}: the earlier report must be withdrawn, and no new one made"
    );
    let rules = ruleset(&backend, &gw);
    assert!(
        !rules.contains("NATGW"),
        "{test}: rules set up anyway:\n{rules}"
    );

    // Now with a route, but the metadata server is a closed port.
    ip(&format!("-n {gw} route add default via 192.0.2.2"));
    let run = lab.run_script(&gw, &script, "http://127.0.0.1:1");
    assert!(
        run.success,
        "{test}: metadata down must not fail:\n{}",
        run.log
    );
    assert!(
        run.log
            .contains("natgw: cannot read metadata item natgw-ready-token"),
        "{}",
        run.log
    );
    assert!(!run.log.contains("reported ready"), "{}", run.log);
    assert_eq!(lab.read_ready().as_deref(), Some("pending"));
    assert!(ruleset(&backend, &gw).contains("-A FORWARD -j NATGW-FORWARD"));
}

#[test]
fn rendered_script_passes_shellcheck() {
    let Some(shellcheck) = find_program("shellcheck") else {
        skip_because(
            "rendered_script_passes_shellcheck",
            Some("shellcheck is not installed".into()),
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("natgw-it-shellcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let script = render_script(&dir);
    let out = run(Command::new(shellcheck)
        .arg("--severity=style")
        .arg(&script));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "shellcheck found problems:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn startup_script_command_selects_the_gateway() {
    let dir = std::env::temp_dir().join(format!("natgw-it-select-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let config = dir.join("natgw.toml");
    std::fs::write(&config, CONFIG).expect("write the test config");
    let natgw = |args: &[&str]| {
        run(Command::new(env!("CARGO_BIN_EXE_natgw"))
            .arg("startup-script")
            .arg("--config")
            .arg(&config)
            .args(args))
    };
    let named = natgw(&["--gateway", GATEWAY_NAME]);
    let only = natgw(&[]);
    let unknown = natgw(&["--gateway", "nope"]);
    let _ = std::fs::remove_dir_all(&dir);

    assert!(named.status.success(), "{}", text(&named.stderr));
    assert!(text(&named.stdout).starts_with("#!/bin/bash\n"));
    assert_eq!(only.stdout, named.stdout, "the only gateway is the default");
    assert!(!unknown.status.success());
    assert!(unknown.stdout.is_empty(), "nothing on stdout on error");
    let err = text(&unknown.stderr);
    assert!(
        err.contains("no gateway \"nope\"") && err.contains(GATEWAY_NAME),
        "{err}"
    );
}

/// The small servers and the client, run with python3 inside the namespaces.
const HELPER_PY: &str = r##"# Test helper for tests/it/netns.rs, run inside network namespaces.
#   peer-server PROTO:ADDR:PORT...   answer "peer <client address>" on each TCP or UDP socket
#   connect PROTO SRC DST PORT       send from SRC, print the answer; exit 1 if none came back
#   ping SRC DST                     one ICMP echo from SRC; exit 1 if no reply came back
#   metadata PORT TOKEN OUTFILE      a fake metadata server on 127.0.0.1: serves the ready token,
#                                    stores what is PUT to guest-attributes/natgw/ready in OUTFILE
import http.server
import os
import socket
import sys
import threading

TOKEN_PATH = "/computeMetadata/v1/instance/attributes/natgw-ready-token"
READY_PATH = "/computeMetadata/v1/instance/guest-attributes/natgw/ready"


def listening():
    print("listening", flush=True)


def serve_tcp(sock):
    while True:
        conn, (host, _) = sock.accept()
        with conn:
            conn.sendall(f"peer {host}\n".encode())


def serve_udp(sock):
    while True:
        _, (host, port) = sock.recvfrom(100)
        sock.sendto(f"peer {host}\n".encode(), (host, port))


def peer_server(specs):
    threads = []
    for spec in specs:
        proto, addr, port = spec.split(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        if proto == "tcp":
            s.listen(16)
        serve = serve_tcp if proto == "tcp" else serve_udp
        threads.append(threading.Thread(target=serve, args=(s,), daemon=True))
    for t in threads:
        t.start()
    listening()
    for t in threads:
        t.join()


def connect(proto, src, dst, port):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(2)
    try:
        s.bind((src, 0))
        if proto == "tcp":
            s.connect((dst, int(port)))
        else:
            s.sendto(b"hello", (dst, int(port)))
        data = s.recv(100).decode().strip()
    except OSError as e:
        print(f"no connection: {e}")
        return 1
    if not data:
        print("no connection: empty answer")
        return 1
    print(data)
    return 0


def checksum(data):
    total = sum((data[i] << 8) + data[i + 1] for i in range(0, len(data), 2))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(src, dst):
    ident = os.getpid() & 0xFFFF
    header = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + (1).to_bytes(2, "big")
    payload = b"natgw-it"
    body = header + payload
    packet = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(2)
    try:
        s.bind((src, 0))
        s.sendto(packet, (dst, 0))
        while True:
            data, (host, _) = s.recvfrom(1500)
            icmp = data[(data[0] & 0x0F) * 4:]
            if host == dst and icmp[0] == 0 and icmp[4:6] == ident.to_bytes(2, "big"):
                print(f"reply from {host}")
                return 0
    except OSError as e:
        print(f"no reply: {e}")
        return 1


def metadata(port, token, outfile):
    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.reply(403)
            if self.path != TOKEN_PATH:
                return self.reply(404)
            self.reply(200, token.encode())

        def do_PUT(self):
            if self.headers.get("Metadata-Flavor") != "Google" or self.path != READY_PATH:
                return self.reply(403)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            tmp = outfile + ".tmp"
            with open(tmp, "wb") as f:
                f.write(body)
            os.rename(tmp, outfile)
            self.reply(200)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", int(port)), Handler)
    listening()
    server.serve_forever()


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "peer-server":
        peer_server(args)
    elif mode == "connect":
        sys.exit(connect(*args))
    elif mode == "ping":
        sys.exit(ping(*args))
    elif mode == "metadata":
        metadata(*args)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
"##;
