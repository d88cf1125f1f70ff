//! `cargo bench`: natgw against its emulator with injected latency (issue 7).
//!
//! Starts `natgw emulator` processes with the latencies of each scenario, runs the release `natgw` binary
//! several times per scenario, and prints a Markdown table: median wall time, the physical bound it is
//! compared with (round trips or the critical path of dependent operations), the ratio, the target, the
//! number of API requests (from the emulator's request log) and the peak memory of the natgw process.
//!
//! Peak memory is `ru_maxrss` of the one child of a small runner process (this binary started again with
//! `--measure`): `getrusage(RUSAGE_CHILDREN)` there covers natgw alone, and needs neither `/usr/bin/time`
//! nor unsafe code.
//!
//! Options (after `cargo bench --`): `--runs N` (apply and destroy runs, default 5), `--requests` (print the
//! requests of the last run of each scenario), and words that select scenarios by name.
// The clippy.toml doors (environment, terminal) are for natgw's own code, not for the benchmark.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

// The integration tests' own way of running natgw and its emulator, and their fleet.
#[path = "../tests/it/fleet.rs"]
mod fleet;
#[path = "../tests/it/golden.rs"]
mod golden;
#[path = "../tests/it/harness.rs"]
mod harness;
#[path = "../tests/it/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use harness::{Natgw, Project};
use support::{PROJECT, request_kind, temp_dir};

const NATGW: &str = env!("CARGO_BIN_EXE_natgw");

/// The no-op plan scenarios.
const PLAN_API_MS: u64 = 100;
/// The apply and destroy scenarios.
const API_MS: u64 = 20;
const OP_MS: u64 = 400;
const BOOT_MS: u64 = 1_000;
/// What the issue grants natgw for its own start.
const START_MS: u64 = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--measure") {
        return runner(&args[1..]);
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, in debug mode,
    // where timings would mean nothing.
    if !args.iter().any(|a| a == "--bench") {
        println!("perf: run with `cargo bench` (or pass --bench)");
        return ExitCode::SUCCESS;
    }
    let mut options = Options {
        runs: 5,
        show_requests: false,
        filters: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                options.runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| fail("--runs wants a number above 0"));
            }
            "--requests" => options.show_requests = true,
            s if s.starts_with("--") => {} // --bench, added by cargo
            s => options.filters.push(s.to_string()),
        }
    }
    let rows = run_all(&options);
    println!("\n{}", table(&rows));
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.met)
        .map(|r| r.name.as_str())
        .collect();
    if missed.is_empty() {
        println!("All targets met.");
    } else {
        println!("Targets missed: {}", missed.join(", "));
    }
    ExitCode::SUCCESS
}

struct Options {
    runs: usize,
    show_requests: bool,
    filters: Vec<String>,
}

impl Options {
    fn wants(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }
}

/// One line of the table.
struct Row {
    name: String,
    median: Duration,
    bound: Duration,
    bound_why: String,
    target: String,
    requests: String,
    peak_kb: u64,
    met: bool,
}

fn run_all(o: &Options) -> Vec<Row> {
    let mut rows = Vec::new();
    if o.wants("version") {
        let dir = temp_dir("bench-version");
        let s = Series::collect(20, || {
            Sample::of(&measured(&dir, &Natgw::new(&dir).arg("--version")), 0)
        });
        let _ = std::fs::remove_dir_all(&dir);
        rows.push(Row {
            name: "`natgw --version`".into(),
            median: s.median(),
            bound: ms(START_MS),
            bound_why: "start".into(),
            target: format!("< {START_MS} ms"),
            requests: s.requests(),
            peak_kb: s.peak_kb(),
            met: s.median() < ms(START_MS),
        });
    }
    let mut plan_one: Option<Series> = None;
    for gateways in [1usize, 50] {
        let name = format!("no-op plan, {gateways} gateway{}", plural(gateways));
        if !o.wants(&name) {
            continue;
        }
        let s = noop_plan(gateways, 10, o);
        let limit = ms(PLAN_API_MS * 5 / 2 + START_MS);
        let (target, met) = match (&plan_one, gateways) {
            (Some(one), n) if n > 1 => {
                let scale = one.median().mul_f64(1.5).min(limit);
                (
                    format!(
                        "≤ {} (1.5 × 1 gateway), same requests, < 40 MB",
                        show(scale)
                    ),
                    s.median() <= scale
                        && s.requests() == one.requests()
                        && s.peak_kb() < 40 * 1024,
                )
            }
            _ => (
                format!("≤ {} (2.5 round trips + start)", show(limit)),
                s.median() <= limit,
            ),
        };
        rows.push(Row {
            name,
            median: s.median(),
            bound: ms(PLAN_API_MS),
            bound_why: "1 round trip".into(),
            target,
            requests: s.requests(),
            peak_kb: s.peak_kb(),
            met,
        });
        if gateways == 1 {
            plan_one = Some(s);
        }
    }
    let mut one: Option<(Series, Series)> = None;
    for gateways in [1usize, 10] {
        let label = format!("{gateways} gateway{}", plural(gateways));
        if !o.wants(&format!("apply, {label}")) && !o.wants(&format!("destroy, {label}")) {
            continue;
        }
        let (apply, destroy) = apply_destroy(gateways, o);
        // Observe (1 round trip), then address, VM, route: each an insert and its operation; and the boot.
        let apply_bound = ms(API_MS + 3 * (API_MS + OP_MS) + BOOT_MS);
        // Observe, then route, VM, address: each a delete and its operation.
        let destroy_bound = ms(API_MS + 3 * (API_MS + OP_MS));
        let (apply_target, apply_limit, destroy_target, destroy_limit) = match &one {
            Some((a1, d1)) => (
                "≤ 2 × 1 gateway".to_string(),
                a1.median() * 2,
                "≤ 2 × 1 gateway".to_string(),
                d1.median() * 2,
            ),
            None => (
                "≤ 1.15 × bound + 1 s readiness poll".to_string(),
                apply_bound.mul_f64(1.15) + Duration::from_secs(1),
                "≤ 1.15 × bound".to_string(),
                destroy_bound.mul_f64(1.15),
            ),
        };
        rows.push(Row {
            name: format!("apply, {label}"),
            median: apply.median(),
            bound: apply_bound,
            bound_why: "3 operations + boot".into(),
            target: format!("{apply_target} ({})", show(apply_limit)),
            requests: apply.requests(),
            peak_kb: apply.peak_kb(),
            met: apply.median() <= apply_limit,
        });
        rows.push(Row {
            name: format!("destroy, {label}"),
            median: destroy.median(),
            bound: destroy_bound,
            bound_why: "3 operations".into(),
            target: format!("{destroy_target} ({})", show(destroy_limit)),
            requests: destroy.requests(),
            peak_kb: destroy.peak_kb(),
            met: destroy.median() <= destroy_limit,
        });
        if gateways == 1 {
            one = Some((apply, destroy));
        }
    }
    rows
}

/// A no-op plan with `--api-latency-ms 100`, after an apply against a quick emulator on the same state.
fn noop_plan(gateways: usize, runs: usize, o: &Options) -> Series {
    eprintln!("no-op plan, {gateways} gateway(s): {runs} runs");
    let state_dir = temp_dir("bench-state");
    let state = state_dir.join("world.json").display().to_string();
    {
        let setup = Project::with_config(&config_text(gateways), &["--state", &state]);
        expect_code(
            &measure(&setup, &["apply", "--auto-approve"]),
            0,
            "the setup apply",
        );
    }
    let latency = PLAN_API_MS.to_string();
    let p = Project::with_config(
        &config_text(gateways),
        &["--state", &state, "--api-latency-ms", &latency],
    );
    let s = Series::collect(runs, || {
        let before = p.emu.requests().len();
        let r = measure(&p, &["plan", "--detailed-exitcode"]);
        expect_code(&r, 0, "a no-op plan (exit 0: no changes)");
        Sample::of(&r, p.emu.requests().len() - before)
    });
    if o.show_requests {
        print_requests(
            &format!("no-op plan, {gateways} gateways"),
            &p.emu.requests(),
            s.last_requests,
        );
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    s
}

/// Applies from nothing and destroys again, `runs` times, with the latencies of the issue.
fn apply_destroy(gateways: usize, o: &Options) -> (Series, Series) {
    eprintln!(
        "apply and destroy, {gateways} gateway(s): {} runs each",
        o.runs
    );
    let (api, op, boot) = (API_MS.to_string(), OP_MS.to_string(), BOOT_MS.to_string());
    let p = Project::with_config(
        &config_text(gateways),
        &[
            "--api-latency-ms",
            &api,
            "--op-latency-ms",
            &op,
            "--boot-ms",
            &boot,
        ],
    );
    let mut applies = Series::default();
    let mut destroys = Series::default();
    for _ in 0..o.runs {
        let before = p.emu.requests().len();
        let r = measure(&p, &["apply", "--auto-approve"]);
        expect_code(&r, 0, "apply");
        let after = p.emu.requests().len();
        applies.push(Sample::of(&r, after - before));
        let r = measure(&p, &["destroy", "--auto-approve"]);
        expect_code(&r, 0, "destroy");
        destroys.push(Sample::of(&r, p.emu.requests().len() - after));
    }
    if o.show_requests {
        let all = p.emu.requests();
        let n = all.len();
        let d = destroys.last_requests;
        let a = applies.last_requests;
        print_requests(&format!("apply, {gateways} gateways"), &all[..n - d], a);
        print_requests(&format!("destroy, {gateways} gateways"), &all, d);
    }
    (applies, destroys)
}

fn print_requests(what: &str, log: &[serde_json::Value], last: usize) {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for r in &log[log.len().saturating_sub(last)..] {
        *by_kind.entry(request_kind(r)).or_default() += 1;
    }
    println!("\nrequests of the last run of \"{what}\":");
    for (k, n) in by_kind {
        println!("  {n:4}  {k}");
    }
}

fn config_text(gateways: usize) -> String {
    fleet::fleet_config(PROJECT, "bench", gateways)
}

/// What one natgw run took.
struct Measured {
    wall: Duration,
    peak_kb: u64,
    code: i32,
    output: String,
}

fn expect_code(m: &Measured, code: i32, what: &str) {
    if m.code != code {
        fail(&format!(
            "{what}: natgw exited {} (wanted {code}):\n{}",
            m.code, m.output
        ));
    }
}

/// `natgw ARGS` of the project, measured.
fn measure(p: &Project, args: &[&str]) -> Measured {
    measured(&p.dir, &p.cmd(args))
}

/// Runs `natgw` through the runner (`--measure`), with the output in files of `dir`.
fn measured(dir: &Path, natgw: &Natgw) -> Measured {
    let result = dir.join("measure.txt");
    let out = dir.join("natgw.out");
    let file = |p: &Path| {
        std::fs::File::create(p)
            .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", p.display())))
    };
    let me =
        std::env::current_exe().unwrap_or_else(|e| fail(&format!("where is this benchmark? {e}")));
    let status = natgw
        .command_via(&me, &[OsStr::new("--measure"), result.as_os_str()])
        .stdout(file(&out))
        .stderr(file(&out.with_extension("err")))
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run the measuring runner: {e}")));
    let text = std::fs::read_to_string(&result).unwrap_or_default();
    let nums: Vec<i64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [wall_us, peak_kb, code] = nums[..] else {
        fail(&format!("the runner failed ({status}): {text:?}"))
    };
    let output = format!(
        "{}{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
    );
    Measured {
        wall: Duration::from_micros(u64::try_from(wall_us).unwrap_or(0)),
        peak_kb: u64::try_from(peak_kb).unwrap_or(0),
        code: i32::try_from(code).unwrap_or(-1),
        output,
    }
}

/// The runner: `--measure RESULT NATGW_ARGS...` runs natgw once with this process's stdio and writes
/// "wall_µs peak_kB exit_code" to RESULT. natgw is its only child, so RUSAGE_CHILDREN is natgw's alone.
fn runner(args: &[String]) -> ExitCode {
    let Some((result, natgw_args)) = args.split_first() else {
        eprintln!("usage: --measure RESULT ARGS...");
        return ExitCode::FAILURE;
    };
    let start = Instant::now();
    let status = Command::new(NATGW).args(natgw_args).status();
    let wall = start.elapsed();
    let code = match status {
        Ok(s) => s.code().unwrap_or(-1),
        Err(e) => {
            eprintln!("cannot run {NATGW}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let peak_kb = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0);
    let line = format!("{} {peak_kb} {code}\n", wall.as_micros());
    match std::fs::write(result, line) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write {result}: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- numbers -----

struct Sample {
    wall: Duration,
    peak_kb: u64,
    requests: usize,
}

impl Sample {
    fn of(m: &Measured, requests: usize) -> Sample {
        Sample {
            wall: m.wall,
            peak_kb: m.peak_kb,
            requests,
        }
    }
}

#[derive(Default)]
struct Series {
    samples: Vec<Sample>,
    last_requests: usize,
}

impl Series {
    fn collect(runs: usize, mut f: impl FnMut() -> Sample) -> Series {
        let mut s = Series::default();
        for _ in 0..runs {
            s.push(f());
        }
        s
    }

    fn push(&mut self, s: Sample) {
        self.last_requests = s.requests;
        self.samples.push(s);
    }

    fn median(&self) -> Duration {
        let mut w: Vec<Duration> = self.samples.iter().map(|s| s.wall).collect();
        w.sort();
        w.get(w.len() / 2).copied().unwrap_or_default()
    }

    /// The number of requests, or its range when runs differ.
    fn requests(&self) -> String {
        let min = self.samples.iter().map(|s| s.requests).min().unwrap_or(0);
        let max = self.samples.iter().map(|s| s.requests).max().unwrap_or(0);
        if min == max {
            min.to_string()
        } else {
            format!("{min}–{max}")
        }
    }

    fn peak_kb(&self) -> u64 {
        self.samples.iter().map(|s| s.peak_kb).max().unwrap_or(0)
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | median | bound | ratio | target | requests | peak memory | met |\n\
         |---|---:|---:|---:|---|---:|---:|:-:|\n",
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} ({}) | {:.2} | {} | {} | {:.1} MB | {} |",
            r.name,
            show(r.median),
            show(r.bound),
            r.bound_why,
            r.median.as_secs_f64() / r.bound.as_secs_f64(),
            r.target,
            r.requests,
            r.peak_kb as f64 / 1024.0,
            if r.met { "yes" } else { "**no**" }
        );
    }
    t
}

fn show(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Stops the benchmark; a panic (not `exit`) so that the emulators and directories are dropped, and cleaned up.
fn fail(msg: &str) -> ! {
    panic!("benchmark failed: {msg}")
}
