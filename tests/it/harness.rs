//! The one way tests and `cargo bench` run the `natgw` binary: `Natgw`, a command builder that clears the
//! caller's environment from one list and points HOME and the metadata server at nothing, so that no run
//! reaches real credentials or a real Google; `Run`, what a run did, with its assertions and golden
//! comparison; and `Project`, a seeded emulator with a directory and a config.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::support::{EmulatorProcess, PROJECT, temp_dir};

/// Every environment variable natgw or Google's auth library reads: cleared for every run, so the caller's
/// shell cannot leak in. Tests add what they need with `Natgw::env`.
pub(crate) const CLEARED_ENV: &[&str] = &[
    "NATGW_ENDPOINT",
    "NATGW_READY_TIMEOUT",
    "NATGW_RETRY_TIMEOUT",
    "NO_COLOR",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "CLOUDSDK_CONFIG",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "GOOGLE_CLOUD_QUOTA_PROJECT",
    "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
    "APPDATA",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The annotated example, pointed at the test project.
pub(crate) fn example_config() -> String {
    let text = include_str!("../../examples/gitlab-runner.toml");
    let out = text.replacen(
        "project = \"acme-ci\"",
        &format!("project = \"{PROJECT}\""),
        1,
    );
    assert_ne!(out, text, "the example sets project = \"acme-ci\"");
    out
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// `natgw ARGS...` in a directory, without a terminal, with `CI=true`, the variables of `CLEARED_ENV`
/// unset, HOME an empty `DIR/home` and the metadata server a closed port.
pub(crate) struct Natgw {
    dir: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// Texts that vary from run to run, and what golden files show instead.
    masks: Vec<(String, String)>,
}

impl Natgw {
    pub(crate) fn new(dir: &Path) -> Natgw {
        Natgw {
            dir: dir.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            masks: vec![(dir.display().to_string(), "[DIR]".into())],
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Natgw {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub(crate) fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Natgw {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `-c PATH`.
    pub(crate) fn config(self, path: &Path) -> Natgw {
        self.arg("-c").arg(path)
    }

    /// `--endpoint URL`.
    pub(crate) fn endpoint(self, url: &str) -> Natgw {
        self.mask(url, "[ENDPOINT]").arg("--endpoint").arg(url)
    }

    /// `--anonymous`: no credentials are looked for.
    pub(crate) fn anonymous(self) -> Natgw {
        self.arg("--anonymous")
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Natgw {
        self.env.push((key.into(), value.as_ref().to_os_string()));
        self
    }

    /// Shows `text` as `[NAME]` in golden comparisons.
    pub(crate) fn mask(mut self, text: &str, name: &str) -> Natgw {
        if !text.is_empty() {
            self.masks.push((text.to_string(), name.to_string()));
        }
        self
    }

    /// The command for natgw itself.
    pub(crate) fn command(&self) -> Command {
        self.prepare(Command::new(env!("CARGO_BIN_EXE_natgw")))
    }

    /// The command for `runner RUNNER_ARGS... NATGW_ARGS...`, with natgw's environment (the benchmark
    /// measures natgw through a runner).
    pub(crate) fn command_via(&self, runner: &Path, runner_args: &[&OsStr]) -> Command {
        let mut c = Command::new(runner);
        c.args(runner_args);
        self.prepare(c)
    }

    fn prepare(&self, mut c: Command) -> Command {
        let home = self.dir.join("home");
        std::fs::create_dir_all(&home).expect("create the test HOME");
        c.current_dir(&self.dir).stdin(Stdio::null());
        for var in CLEARED_ENV {
            c.env_remove(var);
        }
        c.env("CI", "true")
            .env("HOME", &home)
            .env("GCE_METADATA_HOST", format!("127.0.0.1:{}", closed_port()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.args);
        c
    }

    pub(crate) fn run(&self) -> Run {
        let out = self.command().output().expect("run natgw");
        Run::from(out).masked(&self.masks)
    }

    /// Starts natgw with stdout and stderr piped; `Run::of` collects it.
    pub(crate) fn spawn(&self) -> Child {
        self.command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn natgw")
    }
}

/// What one natgw run did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    masks: Vec<(String, String)>,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            masks: Vec::new(),
        }
    }
}

impl Run {
    /// Waits for a natgw started with `Natgw::spawn`.
    pub(crate) fn of(child: Child) -> Run {
        child.wait_with_output().expect("wait for natgw").into()
    }

    fn masked(mut self, masks: &[(String, String)]) -> Run {
        self.masks = masks.to_vec();
        self
    }

    pub(crate) fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn show(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub(crate) fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "natgw failed:\n{}", self.show());
        self
    }

    /// Asserts an exit code.
    pub(crate) fn code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code:\n{}", self.show());
        self
    }

    pub(crate) fn stdout_has(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text),
            "no {text:?} on stdout:\n{}",
            self.show()
        );
        self
    }

    pub(crate) fn stdout_lacks(&self, text: &str) -> &Run {
        assert!(
            !self.stdout.contains(text),
            "{text:?} on stdout:\n{}",
            self.show()
        );
        self
    }

    pub(crate) fn stderr_has(&self, text: &str) -> &Run {
        assert!(
            self.stderr.contains(text),
            "no {text:?} on stderr:\n{}",
            self.show()
        );
        self
    }

    /// On stdout or stderr.
    pub(crate) fn output_has(&self, text: &str) -> &Run {
        assert!(
            self.all().contains(text),
            "no {text:?} in the output:\n{}",
            self.show()
        );
        self
    }

    pub(crate) fn output_lacks(&self, text: &str) -> &Run {
        assert!(
            !self.all().contains(text),
            "{text:?} in the output:\n{}",
            self.show()
        );
        self
    }

    /// The exit code and both streams, with what varies between runs masked: the run's directory, its
    /// endpoint, ports on 127.0.0.1, the source tree and natgw's version.
    pub(crate) fn transcript(&self) -> String {
        self.masked_transcript(&self.stdout)
    }

    fn masked_transcript(&self, stdout: &str) -> String {
        let mut out = format!("exit {}\n", self.code);
        for (name, text) in [("stdout", stdout), ("stderr", &self.stderr)] {
            if !text.is_empty() {
                out.push_str(&format!("--- {name}\n{}\n", text.trim_end()));
            }
        }
        let mut masks = self.masks.clone();
        masks.push((env!("CARGO_MANIFEST_DIR").into(), "[ROOT]".into()));
        // Longest first: a directory's path contains its parent's.
        masks.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        for (text, name) in &masks {
            out = out.replace(text.as_str(), name);
        }
        let port = regex::Regex::new(r"127\.0\.0\.1:\d+").expect("a regex");
        let out = port.replace_all(&out, "127.0.0.1:[PORT]").into_owned();
        out.replace(env!("CARGO_PKG_VERSION"), "[VERSION]")
    }

    /// Compares the transcript with a section of a golden file (`tests/golden/FILE`).
    pub(crate) fn golden(&self, file: &str, section: &str) -> &Run {
        crate::golden::check_section(file, section, &self.transcript());
        self
    }

    /// Like `golden`, without stdout (for runs whose progress lines carry durations).
    pub(crate) fn golden_stderr(&self, file: &str, section: &str) -> &Run {
        crate::golden::check_section(file, section, &self.masked_transcript(""));
        self
    }
}

/// A seeded emulator, a directory and a config file.
pub(crate) struct Project {
    pub(crate) emu: EmulatorProcess,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
}

impl Project {
    /// The example config against a seeded emulator started with `emulator_args`.
    pub(crate) fn new(emulator_args: &[&str]) -> Project {
        Self::with_config(&example_config(), emulator_args)
    }

    pub(crate) fn with_config(config: &str, emulator_args: &[&str]) -> Project {
        Self::around(EmulatorProcess::seeded(emulator_args), config)
    }

    /// A config against an emulator seeded with the world `seed` describes (JSON of `emulator::Seed`).
    pub(crate) fn with_seed(
        config: &str,
        seed: &serde_json::Value,
        emulator_args: &[&str],
    ) -> Project {
        Self::around(EmulatorProcess::with_seed(seed, emulator_args), config)
    }

    fn around(emu: EmulatorProcess, config: &str) -> Project {
        let dir = temp_dir("project");
        let config_path = dir.join("natgw.toml");
        std::fs::write(&config_path, config).expect("write the config");
        Project {
            emu,
            dir,
            config: config_path,
        }
    }

    pub(crate) fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write the config");
    }

    /// `natgw ARGS... -c CONFIG --endpoint URL --anonymous`, in the project's directory.
    pub(crate) fn natgw(&self, args: &[&str]) -> Run {
        self.cmd(args).run()
    }

    /// `natgw ARGS...` like `natgw`, and the requests the emulator logged while it ran: natgw's own, none of
    /// the test's.
    pub(crate) fn natgw_sent(&self, args: &[&str]) -> (Run, Vec<serde_json::Value>) {
        let before = self.emu.requests().len();
        let run = self.natgw(args);
        (run, self.emu.requests().split_off(before))
    }

    /// The builder of `natgw`, for a run that needs more (an environment variable, a spawn).
    pub(crate) fn cmd(&self, args: &[&str]) -> Natgw {
        self.credentialed(args).anonymous()
    }

    /// `natgw ARGS... -c CONFIG --endpoint URL`, resolving credentials for real (no `--anonymous`) with
    /// none to find: tests add what they need with `.env(..)`, and write files under `DIR/home`.
    pub(crate) fn credentialed(&self, args: &[&str]) -> Natgw {
        Natgw::new(&self.dir)
            .args(args)
            .config(&self.config)
            .endpoint(&self.emu.url)
    }

    /// Requests the emulator received that change something (not GET, not an operation's wait), apart
    /// from the stack lock's (tests/it/lock.rs counts those).
    pub(crate) fn mutations(&self) -> Vec<serde_json::Value> {
        self.emu
            .requests()
            .into_iter()
            .filter(|r| r.get("method").and_then(|m| m.as_str()) != Some("GET"))
            .filter(|r| !is_lock_request(r))
            .filter(|r| {
                !r.get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .ends_with("/wait")
            })
            .collect()
    }
}

/// A request about the stack lock's rule (its name in the path, or in an insert's body).
pub(crate) fn is_lock_request(r: &serde_json::Value) -> bool {
    ["path", "name"].into_iter().any(|k| {
        r.get(k)
            .and_then(|v| v.as_str())
            .is_some_and(|v| v.contains("/natgw-lock-") || v.starts_with("natgw-lock-"))
    })
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
