//! Running the real `natgw` binary against an emulator process, in a directory of its own.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::support::{EmulatorProcess, PROJECT, temp_dir};

/// The annotated example, pointed at the test project.
pub fn example_config() -> String {
    let text = include_str!("../../examples/gitlab-runner.toml");
    let out = text.replacen(
        "project = \"acme-ci\"",
        &format!("project = \"{PROJECT}\""),
        1,
    );
    assert_ne!(out, text, "the example sets project = \"acme-ci\"");
    out
}

/// What one natgw run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "natgw failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts an exit code and returns self.
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A seeded emulator, a directory and a config file.
pub struct Project {
    pub emu: EmulatorProcess,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Project {
    /// The example config against a seeded emulator started with `emulator_args`.
    pub fn new(emulator_args: &[&str]) -> Project {
        Self::with_config(&example_config(), emulator_args)
    }

    pub fn with_config(config: &str, emulator_args: &[&str]) -> Project {
        let emu = EmulatorProcess::seeded(emulator_args);
        let dir = temp_dir("project");
        let config_path = dir.join("natgw.toml");
        std::fs::write(&config_path, config).expect("write the config");
        Project {
            emu,
            dir,
            config: config_path,
        }
    }

    /// A config against an emulator seeded with the world `seed` describes (JSON of `emulator::Seed`).
    pub fn with_seed(config: &str, seed: &serde_json::Value, emulator_args: &[&str]) -> Project {
        let emu = EmulatorProcess::with_seed(seed, emulator_args);
        let dir = temp_dir("project");
        let config_path = dir.join("natgw.toml");
        std::fs::write(&config_path, config).expect("write the config");
        Project {
            emu,
            dir,
            config: config_path,
        }
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write the config");
    }

    /// `natgw -c CONFIG --endpoint URL --anonymous ARGS...`, in the project's directory, without a terminal.
    pub fn natgw(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run natgw").into()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_natgw"));
        c.current_dir(&self.dir)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .args(["--endpoint", &self.emu.url, "--anonymous"])
            .env("CI", "true")
            .env_remove("NATGW_ENDPOINT")
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .stdin(Stdio::null());
        c
    }

    /// Requests the emulator received whose method is not GET.
    pub fn mutations(&self) -> Vec<serde_json::Value> {
        self.emu
            .requests()
            .into_iter()
            .filter(|r| r.get("method").and_then(|m| m.as_str()) != Some("GET"))
            .filter(|r| {
                !r.get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .ends_with("/wait")
            })
            .collect()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

impl Project {
    /// `natgw -c CONFIG --endpoint URL ARGS...` resolving credentials for real (no `--anonymous`), with none
    /// to find: HOME is an empty directory, no credential variable is set, and the metadata server is a
    /// closed port, so that no test ever reaches a real one. Tests add what they need with `.env(..)`.
    pub fn credentialed_command(&self, args: &[&str]) -> Command {
        let home = self.dir.join("home");
        std::fs::create_dir_all(&home).expect("create the test HOME");
        let mut c = Command::new(env!("CARGO_BIN_EXE_natgw"));
        c.current_dir(&self.dir)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .args(["--endpoint", &self.emu.url])
            .env("CI", "true")
            .env("HOME", &home)
            .env("GCE_METADATA_HOST", format!("127.0.0.1:{}", closed_port()))
            .stdin(Stdio::null());
        for var in [
            "NATGW_ENDPOINT",
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
        ] {
            c.env_remove(var);
        }
        c
    }
}
