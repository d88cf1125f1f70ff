//! The gateway's startup script, run for real in network namespaces (issues 4 and 12).
//!
//! Each test builds its own namespaces (names start with `natgw-it-<pid>-`) joined by veth
//! pairs: a runner with an allowed and a disallowed source address, the gateway, and a
//! destination that has no route back to the runner's range, so a reply can only come back
//! through the gateway's NAT. The destination is also "the internet": it holds an address in
//! Google's IAP range and the metadata server's address, to knock on the gateway's own ports.
//! Only private, documentation and those two ranges are used, and only inside the namespaces.
//! A guard removes the namespaces and stops the helper processes even when an assertion fails.
//!
//! The script runs in the gateway's namespace and in a private mount namespace that a holder
//! process keeps for the whole test: /etc is an overlay whose changes live on a tmpfs, and /run
//! is a tmpfs, so the script's writes there never reach the host and persist from one run to
//! the next (a "reboot" clears /run, as a real one does). Its PATH is a directory of symlinks
//! to the tools it may use; that is how a setup hides `nft` or `iptables` from it.
//!
//! With `zones`, the script also sets up a health endpoint under systemd; `health` runs what its
//! units would run, as systemd would, and probes it from Google's health-check ranges.
//!
//! Needs root, iproute2, nftables, iptables (both backends are exercised when both are
//! installed), python3 (the small servers and the client), curl and util-linux; without them
//! each test prints that it was skipped and passes, unless `NATGW_IT_REQUIRE_NETNS=1` (set it
//! in CI), which turns every skip into a failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

mod health;

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
/// A port of the gateway's own, as any service of it would be.
const OWN_PORT: u16 = 2200;
/// sshd's port, which `ssh = "iap"` opens to the IAP range.
const SSH_PORT: u16 = 22;
/// An address in Google's IAP TCP forwarding range, 35.235.240.0/20.
const IAP_SRC: &str = "35.235.240.10";
/// The metadata server's address, from which Compute Engine's DHCP replies come.
const METADATA_SERVER: &str = "169.254.169.254";
/// The script's file, relative to /run; earlier versions wrote it relative to /etc.
const SYSCTL_FILE: &str = "sysctl.d/99-zz-natgw.conf";
/// The image's own file, relative to /etc (`ip_forward = 0`), as Compute Engine's images ship it.
const GCE_SYSCTL_FILE: &str = "sysctl.d/60-gce-network-security.conf";
const GCE_SYSCTL: &str = "# As on Compute Engine's images (abridged).\nnet.ipv4.ip_forward = 0\n";
/// What earlier versions of the script left in /etc.
const OLD_SYSCTL: &str = "# Written by natgw's startup script at every boot; edits are overwritten.\nnet.ipv4.ip_forward = 1\nnet.ipv4.conf.all.send_redirects = 0\n";
/// The tools the script may use besides the firewall ones (its PATH holds nothing else).
const SCRIPT_TOOLS: [&str; 13] = [
    "bash", "ip", "awk", "curl", "mktemp", "mv", "chmod", "mkdir", "rm", "cat", "sleep", "tee",
    "timeout",
];

/// The test config; `{ssh}` is replaced by an `ssh = ...` line or nothing.
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
{ssh}
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
    for tool in ["python3", "unshare", "nsenter", "mount", "md5sum", "env"]
        .into_iter()
        .chain(SCRIPT_TOOLS)
    {
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

/// Which firewall tools the script finds on its PATH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// `nft` only: iptables absent.
    Nft,
    /// `iptables` only (its nf_tables backend): nft absent.
    IptablesNft,
    /// `iptables` only (its legacy backend): nft absent.
    IptablesLegacy,
    /// Both `nft` and `iptables` (nf_tables backend): the script must choose nft.
    Both,
    /// Neither: the script must install one (tests give it a fake apt-get).
    Neither,
}

impl Setup {
    /// (link name, program) for every firewall tool of this setup; `Err` names a missing one.
    fn tools(self) -> Result<Vec<(&'static str, PathBuf)>, String> {
        let iptables = |backend: &str| -> Vec<(&'static str, String)> {
            vec![
                ("iptables", format!("iptables-{backend}")),
                ("iptables-save", format!("iptables-{backend}-save")),
                ("iptables-restore", format!("iptables-{backend}-restore")),
            ]
        };
        let wanted: Vec<(&'static str, String)> = match self {
            Setup::Nft => vec![("nft", "nft".to_string())],
            Setup::IptablesNft => iptables("nft"),
            Setup::IptablesLegacy => iptables("legacy"),
            Setup::Both => {
                let mut v = iptables("nft");
                v.push(("nft", "nft".to_string()));
                v
            }
            Setup::Neither => Vec::new(),
        };
        wanted
            .into_iter()
            .map(|(link, name)| {
                find_program(&name)
                    .map(|p| (link, p))
                    .ok_or(format!("`{name}` is not installed"))
            })
            .collect()
    }

    fn has_nft(self) -> bool {
        matches!(self, Setup::Nft | Setup::Both)
    }

    /// The backend the script must report in its summary.
    fn backend(self) -> &'static str {
        if self.has_nft() { "nft" } else { "iptables" }
    }

    /// The iptables program of this setup, if it has one.
    fn iptables(self) -> Option<PathBuf> {
        match self {
            Setup::IptablesNft | Setup::Both => find_program("iptables-nft"),
            Setup::IptablesLegacy => find_program("iptables-legacy"),
            Setup::Nft | Setup::Neither => None,
        }
    }
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

/// The test config, with `ssh = "iap"` or without.
fn test_config(ssh: bool) -> String {
    CONFIG.replace("{ssh}", if ssh { "ssh = \"iap\"" } else { "" })
}

fn render_script(dir: &Path, ssh: bool) -> PathBuf {
    let name = if ssh { "startup-ssh.sh" } else { "startup.sh" };
    render_config(dir, &test_config(ssh), name)
}

/// `natgw startup-script` for `config`, written to `dir/name`.
fn render_config(dir: &Path, config: &str, name: &str) -> PathBuf {
    let config_file = dir.join(format!("{name}.toml"));
    std::fs::write(&config_file, config).expect("write the test config");
    let script = must(
        Command::new(env!("CARGO_BIN_EXE_natgw"))
            .arg("startup-script")
            .arg("-c")
            .arg(&config_file)
            .args(["--gateway", GATEWAY_NAME]),
    );
    let path = dir.join(name);
    std::fs::write(&path, script).expect("write the rendered script");
    path
}

/// A lab for `test`, or `None` (said, or failed under `NATGW_IT_REQUIRE_NETNS`) when this machine
/// cannot run it.
fn lab_for(test: &str, setup: Setup) -> Option<Lab> {
    if skipped(test) {
        return None;
    }
    match Lab::new(setup) {
        Ok(lab) => Some(lab),
        Err(reason) => {
            skip_because(test, Some(reason));
            None
        }
    }
}

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// Namespaces, helper processes and a scratch directory, all removed on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
    /// The script's PATH.
    bin: PathBuf,
    /// The process that holds the gateway's private mounts (/etc overlay, /run tmpfs).
    holder: Option<u32>,
}

impl Lab {
    fn new(setup: Setup) -> Result<Lab, String> {
        remove_stale_namespaces();
        let tools = setup.tools()?;
        let n = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("natgw-it-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let lab = Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            bin: dir.join("bin"),
            dir,
            holder: None,
        };
        std::fs::create_dir_all(&lab.bin).expect("create the scratch directory");
        lab.link_tools(&lab.bin, &tools);
        std::fs::write(lab.dir.join("helper.py"), HELPER_PY).expect("write the helper");
        std::fs::write(lab.console(), "").expect("create the fake serial console");
        Ok(lab)
    }

    /// Fills `bin` with the script's tools and the given firewall tools.
    fn link_tools(&self, bin: &Path, firewall: &[(&str, PathBuf)]) {
        for tool in SCRIPT_TOOLS {
            let target = find_program(tool).unwrap_or_else(|| panic!("`{tool}` is installed"));
            std::os::unix::fs::symlink(target, bin.join(tool)).expect("link a tool");
        }
        for (link, target) in firewall {
            std::os::unix::fs::symlink(target, bin.join(link)).expect("link a firewall tool");
        }
    }

    /// Replaces the tool `name` on the script's PATH with a bash script that appends its name and
    /// arguments to `calls`, then runs `body`. Written beside and renamed over the link: writing
    /// through `bin/sleep` would write the host's own sleep.
    fn fake(&self, name: &str, body: &str, calls: &Path) {
        let new = self.dir.join(format!("{name}.new"));
        std::fs::write(
            &new,
            format!(
                "#!/bin/bash\nprintf '{name} %s\\n' \"$*\" >>'{}'\n{body}\n",
                calls.display()
            ),
        )
        .expect("write a fake");
        std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make a fake executable");
        std::fs::rename(&new, self.bin.join(name)).expect("put the fake in place");
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

    /// Starts `cmd` and waits until it prints "listening"; returns its process id.
    fn spawn_listening(&mut self, cmd: &mut Command) -> u32 {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let pid = child.id();
        self.children.push(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read from the helper");
        assert_eq!(line.trim(), "listening", "{cmd:?} did not start");
        pid
    }

    /// Starts the helper in `ns` and waits until it listens.
    fn spawn_helper(&mut self, ns: &str, args: &[&str]) {
        let helper = self.dir.join("helper.py");
        self.spawn_listening(
            Command::new("ip")
                .args(["netns", "exec", ns, "python3"])
                .arg(helper)
                .args(args),
        );
    }

    /// The gateway's private mounts: an overlay over /etc whose /etc/sysctl.d holds only the
    /// image's file (the host's files are hidden), and an empty /run. `ip netns exec`,
    /// `unshare` and `bash` exec in turn, so the child's id is the holder's.
    fn hold_gateway_mounts(&mut self, gw: &str) {
        let setup = r#"set -eu
mount -t tmpfs natgw-it "$1"
mkdir "$1/upper" "$1/work"
mount -t overlay natgw-it -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
mount -t tmpfs natgw-it-run /run
mkdir -p /etc/sysctl.d
find /etc/sysctl.d -mindepth 1 -maxdepth 1 -exec rm -rf {} +
printf '%s' "$3" >"/etc/$2"
echo listening
exec sleep infinity
"#;
        let scratch = self.dir.join("mounts");
        std::fs::create_dir_all(&scratch).expect("create the mount point");
        let pid = self.spawn_listening(
            Command::new("ip")
                .args([
                    "netns", "exec", gw, "unshare", "--mount", "--", "bash", "-c",
                ])
                .arg(setup)
                .arg("natgw-it")
                .arg(&scratch)
                .arg(GCE_SYSCTL_FILE)
                .arg(GCE_SYSCTL),
        );
        self.holder = Some(pid);
    }

    /// `bash -c script args` as the gateway: in its network and mount namespaces.
    fn gateway_command(&self, script: &str, args: &[&str]) -> Command {
        let pid = self.holder.expect("the gateway's mounts are held");
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &pid.to_string(),
            "-m",
            "-n",
            "--",
            "bash",
            "-c",
            script,
        ])
        .arg("natgw-it")
        .args(args);
        cmd
    }

    fn in_gateway(&self, script: &str, args: &[&str]) -> Output {
        run(&mut self.gateway_command(script, args))
    }

    fn must_in_gateway(&self, script: &str, args: &[&str]) -> String {
        must(&mut self.gateway_command(script, args))
    }

    /// What the gateway's /etc (changes only) and /run hold: path -> content hash.
    fn files(&self) -> BTreeMap<String, String> {
        let list = r#"set -eu
snap() {
    (cd "$1" && find . -mindepth 1 ! -type d | sort | while IFS= read -r f; do
        if [ -f "$f" ] && [ ! -L "$f" ]; then
            printf '%s/%s %s\n' "$2" "${f#./}" "$(md5sum <"$f" | cut -d' ' -f1)"
        else
            printf '%s/%s not-a-regular-file\n' "$2" "${f#./}"
        fi
    done)
}
snap "$1/upper" etc
snap /run run
"#;
        let scratch = self.dir.join("mounts").display().to_string();
        self.must_in_gateway(list, &[&scratch])
            .lines()
            // iptables' own lock, not a file of the script's.
            .filter(|l| !l.starts_with("run/xtables.lock "))
            .filter_map(|l| l.split_once(' '))
            .map(|(p, h)| (p.to_string(), h.to_string()))
            .collect()
    }

    /// Writes `content` to `path` (absolute) as the gateway sees it.
    fn write_in_gateway(&self, path: &str, content: &str) {
        self.must_in_gateway(
            r#"mkdir -p "$(dirname "$1")" && printf '%s' "$2" >"$1""#,
            &[path, content],
        );
    }

    fn console(&self) -> PathBuf {
        self.dir.join("console")
    }

    fn ready_file(&self) -> PathBuf {
        self.dir.join("ready")
    }

    /// A fake metadata server on the gateway's loopback that records `natgw/ready`.
    fn start_metadata(&mut self, gw: &str, token: &str) {
        let out = self.ready_file().display().to_string();
        self.spawn_helper(gw, &["metadata", &METADATA_PORT.to_string(), token, &out]);
    }

    /// Runs the script as Compute Engine would (as root, at boot), with only `bin` on its PATH.
    /// Returns its output and how it changed the files under /etc and /run.
    fn run_script(&self, script: &Path, metadata_url: &str) -> ScriptRun {
        self.run_script_with(&self.bin, script, metadata_url)
    }

    fn run_script_with(&self, bin: &Path, script: &Path, metadata_url: &str) -> ScriptRun {
        let before = self.files();
        let console = self.console().display().to_string();
        let bin = bin.display().to_string();
        let out = self.in_gateway(
            r#"exec env -i PATH="$1" NATGW_SYSTEM_PATH="$1" NATGW_METADATA_URL="$2" \
                NATGW_SERIAL_CONSOLE="$3" "$1/bash" "$4""#,
            &[&bin, metadata_url, &console, &script.display().to_string()],
        );
        let after = self.files();
        let mut changes = Vec::new();
        for (path, hash) in &after {
            match before.get(path) {
                None => changes.push(format!("+{path}")),
                Some(old) if old != hash => changes.push(format!("~{path}")),
                Some(_) => {}
            }
        }
        for path in before.keys().filter(|p| !after.contains_key(*p)) {
            changes.push(format!("-{path}"));
        }
        changes.sort();
        ScriptRun {
            success: out.status.success(),
            log: format!("{}{}", text(&out.stdout), text(&out.stderr)),
            changes,
        }
    }

    /// The last `natgw-summary:` and `natgw-ready:` lines on the fake serial console.
    fn console_lines(&self) -> (Option<String>, Option<String>) {
        let all = std::fs::read_to_string(self.console()).unwrap_or_default();
        let last = |prefix: &str| {
            all.lines()
                .rev()
                .find(|l| l.starts_with(prefix))
                .map(str::to_string)
        };
        (last("natgw-summary: "), last("natgw-ready: "))
    }

    fn clear_console(&self) {
        std::fs::write(self.console(), "").expect("clear the fake serial console");
    }

    fn read_ready(&self) -> Option<String> {
        std::fs::read_to_string(self.ready_file()).ok()
    }

    fn clear_ready(&self) {
        let _ = std::fs::remove_file(self.ready_file());
    }

    fn ip_forward(&self) -> String {
        self.must_in_gateway("cat /proc/sys/net/ipv4/ip_forward", &[])
            .trim()
            .to_string()
    }

    /// Applies the sysctl files as `sysctl --system` and systemd-sysctl do, for the one key
    /// that matters here: sysctl.d(5) sorts every file by name "regardless of which of the
    /// directories they reside in", and a file in /etc hides a same-named one in /run.
    /// Only /etc/sysctl.d and /run/sysctl.d are read: the host's /usr/lib/sysctl.d files set
    /// keys (kernel.*) that a namespace would write to the host itself.
    fn replay_sysctl(&self) {
        let listing = self.must_in_gateway(
            r#"for d in /etc/sysctl.d /run/sysctl.d; do
    for f in "$d"/*.conf; do
        if [ -f "$f" ]; then printf '=== %s\n' "$f"; cat "$f"; printf '\n'; fi
    done
done"#,
            &[],
        );
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        for chunk in listing.split("=== ").filter(|c| !c.is_empty()) {
            let (path, body) = chunk.split_once('\n').unwrap_or((chunk, ""));
            let name = path.rsplit('/').next().unwrap_or(path).to_string();
            // /etc is listed first: its file wins over /run's of the same name.
            files.entry(name).or_insert_with(|| body.to_string());
        }
        let mut value = None;
        for body in files.values() {
            for line in body.lines() {
                let line = line.trim();
                if line.starts_with('#') || line.starts_with(';') {
                    continue;
                }
                if let Some((key, v)) = line.split_once('=') {
                    let key = key.trim().trim_start_matches('-').replace('/', ".");
                    if key == "net.ipv4.ip_forward" {
                        value = Some(v.trim().to_string());
                    }
                }
            }
        }
        if let Some(v) = value {
            self.must_in_gateway(
                r#"printf '%s\n' "$1" >/proc/sys/net/ipv4/ip_forward"#,
                &[&v],
            );
        }
    }

    /// What a reboot does to the gateway: the kernel's filters and conntrack state are gone,
    /// forwarding starts off, /run is empty, /etc stays; then the sysctl files are applied.
    fn reboot(&self, setup: Setup) {
        if let Some(nft) = find_program("nft") {
            self.must_in_gateway(r#""$1" flush ruleset"#, &[&nft.display().to_string()]);
        }
        if setup == Setup::IptablesLegacy {
            let legacy = setup.iptables().expect("iptables-legacy");
            self.must_in_gateway(
                r#"for t in filter nat; do "$1" -t "$t" -F; "$1" -t "$t" -X; done"#,
                &[&legacy.display().to_string()],
            );
        }
        self.must_in_gateway(
            "printf '0\\n' >/proc/sys/net/ipv4/ip_forward && find /run -mindepth 1 -delete",
            &[],
        );
        self.replay_sysctl();
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
    /// How the files under /etc and /run changed, sorted: `+etc/x` added, `~run/y` changed,
    /// `-etc/z` removed.
    changes: Vec<String>,
}

/// Connects from `src` in `ns` to `dst:port`; `Ok(answer)` or `Err(why)`.
fn connect(lab: &Lab, ns: &str, src: &str, dst: &str, port: u16) -> Result<String, String> {
    exchange(lab, ns, "tcp", src, 0, dst, port)
}

/// Sends from `src:sport` (0: any port) in `ns` to `dst:port` over `proto` (tcp or udp);
/// `Ok(answer)` or `Err(why)`.
fn exchange(
    lab: &Lab,
    ns: &str,
    proto: &str,
    src: &str,
    sport: u16,
    dst: &str,
    port: u16,
) -> Result<String, String> {
    let out = run(Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(lab.dir.join("helper.py"))
        .args([
            "connect",
            proto,
            src,
            &sport.to_string(),
            dst,
            &port.to_string(),
        ]));
    let answer = text(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(answer)
    } else {
        Err(format!("{answer}{}", text(&out.stderr)))
    }
}

fn ping(lab: &Lab, ns: &str, src: &str, dst: &str) -> bool {
    run(Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(lab.dir.join("helper.py"))
        .args(["ping", src, dst]))
    .status
    .success()
}

/// The whole netfilter state of `ns` without counters, so two runs can be compared: nft's
/// view when the setup has nft (it shows iptables-nft's tables too), else iptables-save's.
fn ruleset(setup: Setup, ns: &str) -> String {
    let raw = match (setup.has_nft(), setup.iptables()) {
        (false, Some(iptables)) => {
            let save = PathBuf::from(format!("{}-save", iptables.display()));
            must(Command::new("ip").args(["netns", "exec", ns]).arg(save))
        }
        _ => must(Command::new("ip").args(["netns", "exec", ns, "nft", "-s", "list", "ruleset"])),
    };
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

/// The namespaces and addresses of one topology.
struct Net {
    runner: String,
    gw: String,
    dest: String,
    /// The gateway's address that the runners use (and reach its services on).
    inside: &'static str,
    /// The gateway's address on the way out: what the destination sees, and what the internet
    /// knocks on.
    outside: &'static str,
    /// The destination's own address (an internet host outside the IAP range).
    internet: &'static str,
}

/// Builds the namespaces.
fn build(lab: &mut Lab, topology: Topology) -> Net {
    let runner = lab.netns("runner");
    let gw = lab.netns("gw");
    let dest = lab.netns("dest");
    for addr in [ALLOWED_DST, DISALLOWED_DST, IAP_SRC, METADATA_SERVER]
        .into_iter()
        .chain(health::HEALTH_CHECK_SRCS)
    {
        ip(&format!("-n {dest} addr add {addr}/32 dev lo"));
    }
    let net = match topology {
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
            Net {
                runner,
                gw,
                dest,
                inside: "10.10.0.1",
                outside: "192.0.2.1",
                internet: "192.0.2.2",
            }
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
            Net {
                runner,
                gw,
                dest,
                inside: "10.20.0.2",
                outside: "10.20.0.2",
                internet: "10.20.0.1",
            }
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
    lab.spawn_helper(&net.dest, &args);
    // The gateway's own services: any (think a debug server), sshd, and the DHCP client.
    let own = [
        format!("tcp:0.0.0.0:{OWN_PORT}"),
        format!("tcp:0.0.0.0:{SSH_PORT}"),
        "udp:0.0.0.0:68".to_string(),
    ];
    let mut args = vec!["peer-server"];
    args.extend(own.iter().map(String::as_str));
    let gw = net.gw.clone();
    lab.spawn_helper(&gw, &args);
    net
}

fn metadata_url() -> String {
    format!("http://127.0.0.1:{METADATA_PORT}")
}

/// A rule of someone else's in another table, which the script must leave alone; returns a
/// fragment that appears once in `ruleset` for it.
fn add_foreign_rule(setup: Setup, gw: &str) -> &'static str {
    if let Some(iptables) = setup.iptables() {
        must(
            Command::new("ip")
                .args(["netns", "exec", gw])
                .arg(iptables)
                .args("-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT".split_whitespace()),
        );
    } else {
        for cmd in [
            "add table ip foreign",
            "add chain ip foreign input { type filter hook input priority 10 ; }",
            "add rule ip foreign input tcp dport 2222 accept",
        ] {
            must(
                Command::new("ip")
                    .args(["netns", "exec", gw, "nft"])
                    .args(cmd.split_whitespace()),
            );
        }
    }
    "dport 2222"
}

/// The whole proof for one topology and one setup of firewall tools. The two-interface
/// topology runs with `ssh = "iap"`, the one-interface one without: each setup sees both.
fn prove(topology: Topology, setup: Setup) {
    let test = format!("netns {topology:?} {setup:?}");
    let Some(mut lab) = lab_for(&test, setup) else {
        return;
    };
    let ssh = matches!(topology, Topology::TwoInterfaces);
    let script = render_script(&lab.dir, ssh);
    let net = build(&mut lab, topology);
    let token = format!(
        "token-{}",
        lab.prefix.replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    lab.start_metadata(&net.gw, &token);
    lab.hold_gateway_mounts(&net.gw);
    let foreign = add_foreign_rule(setup, &net.gw);
    let forwards = |lab: &Lab| connect(lab, &net.runner, ALLOWED_SRC, ALLOWED_DST, ALLOWED_PORT);

    // Before the script, nothing gets through, and the gateway's services are open: the test
    // can tell.
    assert!(
        forwards(&lab).is_err(),
        "{test}: traffic got through before the script ran"
    );
    assert_eq!(
        connect(&lab, &net.runner, ALLOWED_SRC, net.inside, OWN_PORT),
        Ok(format!("peer {ALLOWED_SRC}")),
        "{test}: the gateway's own service is not reachable before the script; the test cannot tell"
    );
    assert_eq!(
        connect(&lab, &net.dest, net.internet, net.outside, SSH_PORT),
        Ok(format!("peer {}", net.internet)),
        "{test}: the gateway's sshd is not reachable from the internet before the script; the test cannot tell"
    );

    // A gateway that ran an earlier version: its iptables chains (when iptables is there, the
    // script's other backend) and the /etc file that turned forwarding on at boot.
    if setup == Setup::Both {
        let iptables_only = lab.dir.join("bin-iptables");
        std::fs::create_dir_all(&iptables_only).expect("create a second bin");
        let tools = Setup::IptablesNft
            .tools()
            .expect("iptables-nft is there with nft");
        lab.link_tools(&iptables_only, &tools);
        let earlier = lab.run_script_with(&iptables_only, &script, &metadata_url());
        assert!(
            earlier.success,
            "{test}: the iptables run failed:\n{}",
            earlier.log
        );
        assert!(ruleset(setup, &net.gw).contains("NATGW-FORWARD"));
    }
    lab.write_in_gateway(&format!("/etc/{SYSCTL_FILE}"), OLD_SYSCTL);

    let first = lab.run_script(&script, &metadata_url());
    assert!(first.success, "{test}: the script failed:\n{}", first.log);
    if let Some(tag) = match setup {
        Setup::IptablesNft => Some("(nf_tables)"),
        Setup::IptablesLegacy => Some("(legacy)"),
        _ => None,
    } {
        assert!(
            first
                .log
                .lines()
                .any(|l| l.starts_with("natgw: iptables: ") && l.ends_with(tag)),
            "{test}: the script did not use iptables {tag}; log:\n{}",
            first.log
        );
    }
    assert_eq!(
        lab.read_ready().as_deref(),
        Some(token.as_str()),
        "{test}: ready not reported; log:\n{}",
        first.log
    );
    let egress = match topology {
        Topology::TwoInterfaces => "eth1",
        Topology::OneInterface => "eth0",
    };
    assert_eq!(
        lab.console_lines(),
        (
            Some(format!(
                "natgw-summary: backend={} egress={egress} sources=10.10.0.0/25 destinations=198.51.100.10/32 verify=ok",
                setup.backend()
            )),
            Some(format!("natgw-ready: {token}"))
        ),
        "{test}: serial console; log:\n{}",
        first.log
    );
    // Nothing under /etc but the old file's removal; the forwarding setting only in /run
    // (where the earlier iptables run of `Both` put it already).
    let mut expected = vec![format!("-etc/{SYSCTL_FILE}")];
    if setup != Setup::Both {
        expected.insert(0, format!("+run/{SYSCTL_FILE}"));
    }
    assert_eq!(
        first.changes, expected,
        "{test}: unexpected writes; log:\n{}",
        first.log
    );
    let run_file = lab.must_in_gateway(&format!("cat /run/{SYSCTL_FILE}"), &[]);
    assert!(
        run_file.lines().any(|l| l == "net.ipv4.ip_forward = 1"),
        "{test}: sysctl file: {run_file}"
    );
    // Redirects off on every interface; conntrack sized where a namespace allows it.
    let sysctls = lab.must_in_gateway(
        "cat /proc/sys/net/ipv4/conf/*/send_redirects /proc/sys/net/ipv4/ip_forward \
         /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established",
        &[],
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

    prove_forwarding(&lab, &net, &test);
    prove_closed(&lab, &net, &test, ssh);

    // Reruns (a reboot's, or natgw's after an update) converge to exactly the same state.
    let rules_once = ruleset(setup, &net.gw);
    assert_eq!(
        rules_once.matches(foreign).count(),
        1,
        "{test}:\n{rules_once}"
    );
    if setup.has_nft() {
        for needle in [
            "table ip natgw",
            "hook forward",
            "hook input",
            "hook postrouting",
        ] {
            assert!(
                rules_once.contains(needle),
                "{test}: no {needle:?} in\n{rules_once}"
            );
        }
        assert!(
            !rules_once.contains("NATGW"),
            "{test}: iptables chains of an earlier run are left:\n{rules_once}"
        );
    } else {
        for needle in [
            "-A FORWARD -j NATGW-FORWARD",
            "-A INPUT -j NATGW-INPUT",
            "-A POSTROUTING -j NATGW-POSTROUTING",
        ] {
            assert!(
                rules_once.contains(needle),
                "{test}: no {needle:?} in\n{rules_once}"
            );
        }
    }
    for n in 2..=3 {
        lab.clear_ready();
        let again = lab.run_script(&script, &metadata_url());
        assert!(again.success, "{test}: run {n} failed:\n{}", again.log);
        assert_eq!(
            lab.read_ready().as_deref(),
            Some(token.as_str()),
            "{test}: run {n}"
        );
        assert_eq!(
            again.changes,
            Vec::<String>::new(),
            "{test}: run {n} wrote files"
        );
        assert_eq!(
            ruleset(setup, &net.gw),
            rules_once,
            "{test}: run {n} changed the rule set"
        );
    }
    assert_eq!(
        forwards(&lab),
        Ok(format!("peer {}", net.outside)),
        "{test}: after 3 runs"
    );
    assert!(connect(&lab, &net.runner, DISALLOWED_SRC, ALLOWED_DST, ALLOWED_PORT).is_err());

    // A package upgrade's `sysctl --system` keeps forwarding on.
    lab.replay_sysctl();
    assert_eq!(
        lab.ip_forward(),
        "1",
        "{test}: replaying the sysctl files turned forwarding off"
    );
    assert_eq!(
        forwards(&lab),
        Ok(format!("peer {}", net.outside)),
        "{test}: after the replay"
    );

    // A reboot: nothing forwards until the script has run again, the old /etc file
    // notwithstanding (the first run removed it).
    lab.reboot(setup);
    assert_eq!(
        lab.ip_forward(),
        "0",
        "{test}: forwarding on after a reboot, before the script"
    );
    assert!(
        forwards(&lab).is_err(),
        "{test}: forwarded after a reboot, before the script"
    );
    lab.clear_ready();
    lab.clear_console();
    let rebooted = lab.run_script(&script, &metadata_url());
    assert!(
        rebooted.success,
        "{test}: the run after the reboot failed:\n{}",
        rebooted.log
    );
    assert_eq!(
        rebooted.changes,
        [format!("+run/{SYSCTL_FILE}")],
        "{test}: after the reboot"
    );
    assert_eq!(lab.read_ready().as_deref(), Some(token.as_str()));
    assert_eq!(lab.console_lines().1, Some(format!("natgw-ready: {token}")));
    assert_eq!(
        forwards(&lab),
        Ok(format!("peer {}", net.outside)),
        "{test}: after the reboot"
    );
}

/// Forwarding: only from the sources, to the destinations, on the allowed ports.
fn prove_forwarding(lab: &Lab, net: &Net, test: &str) {
    let runner = net.runner.as_str();
    assert_eq!(
        connect(lab, runner, ALLOWED_SRC, ALLOWED_DST, ALLOWED_PORT),
        Ok(format!("peer {}", net.outside)),
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
        let got = connect(lab, runner, src, dst, port);
        assert!(
            got.is_err(),
            "{test}: {what} {src} -> {dst}:{port} got through: {got:?}"
        );
    }
    // UDP follows its own `allow` entry.
    assert_eq!(
        exchange(
            lab,
            runner,
            "udp",
            ALLOWED_SRC,
            0,
            ALLOWED_DST,
            ALLOWED_UDP_PORT
        ),
        Ok(format!("peer {}", net.outside)),
        "{test}: allowed UDP"
    );
    let got = exchange(
        lab,
        runner,
        "udp",
        ALLOWED_SRC,
        0,
        ALLOWED_DST,
        DISALLOWED_UDP_PORT,
    );
    assert!(
        got.is_err(),
        "{test}: disallowed UDP port got through: {got:?}"
    );
    // So does ICMP (allowed for the allowed source only).
    assert!(
        ping(lab, runner, ALLOWED_SRC, ALLOWED_DST),
        "{test}: allowed ICMP"
    );
    assert!(
        !ping(lab, runner, DISALLOWED_SRC, ALLOWED_DST),
        "{test}: ICMP from a disallowed source"
    );
    assert!(
        !ping(lab, runner, ALLOWED_SRC, DISALLOWED_DST),
        "{test}: ICMP to a disallowed destination"
    );
}

/// The gateway itself: closed to the runners and to the internet, but for sshd from the IAP
/// range when `ssh` is set; DHCP replies and ping still arrive.
fn prove_closed(lab: &Lab, net: &Net, test: &str, ssh: bool) {
    for (what, ns, src, dst, port) in [
        ("a runner", &net.runner, ALLOWED_SRC, net.inside, OWN_PORT),
        ("a runner", &net.runner, ALLOWED_SRC, net.inside, SSH_PORT),
        (
            "the internet",
            &net.dest,
            net.internet,
            net.outside,
            OWN_PORT,
        ),
        (
            "the internet",
            &net.dest,
            net.internet,
            net.outside,
            SSH_PORT,
        ),
        ("the IAP range", &net.dest, IAP_SRC, net.outside, OWN_PORT),
    ] {
        let got = connect(lab, ns, src, dst, port);
        assert!(
            got.is_err(),
            "{test}: {what} ({src}) reached the gateway's port {port}: {got:?}"
        );
    }
    let iap = connect(lab, &net.dest, IAP_SRC, net.outside, SSH_PORT);
    if ssh {
        assert_eq!(
            iap,
            Ok(format!("peer {IAP_SRC}")),
            "{test}: ssh = \"iap\" must open sshd to IAP"
        );
    } else {
        assert!(
            iap.is_err(),
            "{test}: sshd reachable from IAP without ssh = \"iap\": {iap:?}"
        );
    }
    assert_eq!(
        exchange(lab, &net.dest, "udp", METADATA_SERVER, 67, net.outside, 68),
        Ok(format!("peer {METADATA_SERVER}")),
        "{test}: a DHCP reply must reach the gateway's client"
    );
    let got = exchange(
        lab,
        &net.dest,
        "udp",
        METADATA_SERVER,
        1067,
        net.outside,
        68,
    );
    assert!(
        got.is_err(),
        "{test}: UDP to port 68 from a port other than 67 arrived: {got:?}"
    );
    assert!(
        ping(lab, &net.dest, net.internet, net.outside),
        "{test}: ping to the gateway"
    );
}

#[test]
fn netns_two_interfaces_nft() {
    prove(Topology::TwoInterfaces, Setup::Nft);
}

#[test]
fn netns_two_interfaces_iptables_nft() {
    prove(Topology::TwoInterfaces, Setup::IptablesNft);
}

#[test]
fn netns_two_interfaces_iptables_legacy() {
    prove(Topology::TwoInterfaces, Setup::IptablesLegacy);
}

#[test]
fn netns_two_interfaces_both() {
    prove(Topology::TwoInterfaces, Setup::Both);
}

#[test]
fn netns_one_interface_nft() {
    prove(Topology::OneInterface, Setup::Nft);
}

#[test]
fn netns_one_interface_iptables_nft() {
    prove(Topology::OneInterface, Setup::IptablesNft);
}

#[test]
fn netns_one_interface_iptables_legacy() {
    prove(Topology::OneInterface, Setup::IptablesLegacy);
}

#[test]
fn netns_one_interface_both() {
    prove(Topology::OneInterface, Setup::Both);
}

/// A gateway namespace with one interface, a default route and the metadata server.
fn small_lab(test: &str, setup: Setup, token: &str) -> Option<(Lab, PathBuf, String)> {
    let mut lab = lab_for(test, setup)?;
    let script = render_script(&lab.dir, false);
    let gw = lab.netns("gw");
    let peer = lab.netns("peer");
    lab.veth(&gw, "eth0", &peer, "eth0");
    ip(&format!("-n {gw} addr add 192.0.2.1/24 dev eth0"));
    lab.start_metadata(&gw, token);
    lab.hold_gateway_mounts(&gw);
    Some((lab, script, gw))
}

/// Without a default route the script fails, leaves forwarding off and reports nothing; with
/// one but no metadata server it sets up forwarding, says it cannot report, and still exits 0.
#[test]
fn netns_no_default_route_and_no_metadata_server() {
    let test = "netns no default route";
    let token = "token-no-route";
    let Some((lab, script, gw)) = small_lab(test, Setup::Nft, token) else {
        return;
    };
    // As if an earlier boot had reported ready: this run must withdraw it.
    std::fs::write(lab.ready_file(), token).expect("write a stale report");

    let run = lab.run_script(&script, &metadata_url());
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
    assert_eq!(
        lab.console_lines(),
        (
            Some("natgw-summary: backend=none egress=none sources=10.10.0.0/25 destinations=198.51.100.10/32 verify=failed:no-default-route".to_string()),
            None
        )
    );
    assert_eq!(lab.ip_forward(), "0");
    assert_eq!(run.changes, Vec::<String>::new(), "{test}: wrote files");
    let rules = ruleset(Setup::Nft, &gw);
    assert!(
        !rules.contains("natgw"),
        "{test}: rules set up anyway:\n{rules}"
    );

    // Now with a route, but the metadata server is a closed port.
    ip(&format!("-n {gw} route add default via 192.0.2.2"));
    let run = lab.run_script(&script, "http://127.0.0.1:1");
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
    let (summary, ready) = lab.console_lines();
    assert!(summary.is_some_and(|s| s.ends_with(" verify=ok")));
    assert_eq!(ready, None, "no token, no ready line");
    assert!(ruleset(Setup::Nft, &gw).contains("table ip natgw"));
}

/// Neither nft nor iptables: apt-get installs nftables, waiting for the dpkg lock and trying
/// again; when it cannot, the serial console says why and nothing forwards. apt-get and sleep
/// are fakes that record their arguments (the real apt-get never runs).
#[test]
fn netns_neither_tool_installs_nftables_or_says_why() {
    let test = "netns neither tool";
    let token = "token-neither";
    let Some((lab, script, gw)) = small_lab(test, Setup::Neither, token) else {
        return;
    };
    ip(&format!("-n {gw} route add default via 192.0.2.2"));
    let Some(nft) = find_program("nft") else {
        skip_because(test, Some("`nft` is not installed".into()));
        return;
    };
    let calls = lab.dir.join("calls");
    let fake = |name: &str, body: &str| lab.fake(name, body, &calls);
    fake("sleep", "exit 0");
    fake("apt-get", "exit 100");

    let run = lab.run_script(&script, &metadata_url());
    assert!(!run.success, "{test}: must fail:\n{}", run.log);
    let recorded = std::fs::read_to_string(&calls).unwrap_or_default();
    let lines: Vec<&str> = recorded.lines().collect();
    assert_eq!(
        lines,
        [
            "apt-get -o DPkg::Lock::Timeout=120 -qq update",
            "sleep 10",
            "apt-get -o DPkg::Lock::Timeout=120 -qq update",
            "sleep 10",
            "apt-get -o DPkg::Lock::Timeout=120 -qq update",
        ],
        "{test}: log:\n{}",
        run.log
    );
    assert!(
        run.log
            .contains("apt-get could not install nftables after 3 attempts"),
        "{}",
        run.log
    );
    assert_eq!(
        lab.console_lines(),
        (
            Some("natgw-summary: backend=none egress=eth0 sources=10.10.0.0/25 destinations=198.51.100.10/32 verify=failed:no-firewall-tool".to_string()),
            None
        )
    );
    assert_eq!(lab.read_ready().as_deref(), Some("pending"));
    assert_eq!(lab.ip_forward(), "0");

    // The lock is held once, then the install works.
    std::fs::write(&calls, "").expect("clear the calls");
    lab.clear_console();
    let link = lab.bin.join("nft");
    fake(
        "apt-get",
        &format!(
            "if [[ \"$*\" == *update* && ! -e '{marker}' ]]; then : >'{marker}'; exit 100; fi\n\
             if [[ \"$*\" == *install* ]]; then '{ln}' -s '{nft}' '{link}'; fi",
            marker = lab.dir.join("held-once").display(),
            nft = nft.display(),
            link = link.display(),
            ln = find_program("ln").expect("ln is installed").display(),
        ),
    );
    let run = lab.run_script(&script, &metadata_url());
    assert!(run.success, "{test}: must install and go on:\n{}", run.log);
    let recorded = std::fs::read_to_string(&calls).unwrap_or_default();
    assert_eq!(
        recorded.lines().collect::<Vec<_>>(),
        [
            "apt-get -o DPkg::Lock::Timeout=120 -qq update",
            "sleep 10",
            "apt-get -o DPkg::Lock::Timeout=120 -qq update",
            "apt-get -o DPkg::Lock::Timeout=120 -y -qq --no-install-recommends install nftables",
        ]
    );
    assert_eq!(lab.read_ready().as_deref(), Some(token));
    let (summary, ready) = lab.console_lines();
    assert!(
        summary.is_some_and(|s| s.starts_with("natgw-summary: backend=nft egress=eth0 ")),
        "{test}: log:\n{}",
        run.log
    );
    assert_eq!(ready, Some(format!("natgw-ready: {token}")));
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
    let scripts = [
        render_script(&dir, false),
        render_script(&dir, true),
        render_config(&dir, &health::ha_config(), "startup-ha.sh"),
    ];
    let out = run(Command::new(shellcheck)
        .arg("--severity=style")
        .args(&scripts));
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
    std::fs::write(&config, test_config(false)).expect("write the test config");
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
#   connect PROTO SRC SPORT DST PORT send from SRC:SPORT (0: any), print the answer; exit 1 if none
#                                    came back
#   ping SRC DST                     one ICMP echo from SRC; exit 1 if no reply came back
#   metadata PORT TOKEN OUTFILE      a fake metadata server on 127.0.0.1: serves the ready token,
#                                    stores what is PUT to guest-attributes/natgw/ready in OUTFILE
#   inetd ADDR PORT UID CMD...       what a systemd socket with Accept=yes does: runs CMD as user
#                                    and group UID once per connection, with the connection as
#                                    stdin and stdout
#   http SRC DST PORT                GET / from SRC as Google's health checks do; print the
#                                    status line, then the body; exit 1 if no connection
import http.server
import os
import socket
import subprocess
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


def connect(proto, src, sport, dst, port):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(1)
    try:
        s.bind((src, int(sport)))
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
    s.settimeout(1)
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


def inetd(addr, port, uid, *argv):
    def as_user():
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(16)
    listening()
    while True:
        conn, _ = s.accept()
        with conn:
            child = subprocess.Popen(
                list(argv),
                stdin=conn.fileno(),
                stdout=conn.fileno(),
                env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                preexec_fn=as_user,
            )
        threading.Thread(target=child.wait, daemon=True).start()


def http_get(src, dst, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.bind((src, 0))
        s.connect((dst, int(port)))
        s.sendall(
            f"GET / HTTP/1.1\r\nHost: {dst}:{port}\r\nUser-Agent: GoogleHC/1.0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    except OSError as e:
        print(f"no connection: {e}")
        return 1
    head, _, body = data.decode().partition("\r\n\r\n")
    print(head.split("\r\n")[0])
    print(body, end="")
    return 0


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
    elif mode == "inetd":
        inetd(*args)
    elif mode == "http":
        sys.exit(http_get(*args))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
"##;
