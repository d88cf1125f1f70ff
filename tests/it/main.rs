//! natgw's integration tests: one binary, driving the real `natgw` binary and the emulator over HTTP.
#![allow(unreachable_pub)]
// The clippy.toml doors (environment, terminal) are for natgw's own code: tests read their switches and
// report what they skip.
#![allow(clippy::disallowed_methods)]

mod adopt;
mod bad_inputs;
mod check;
mod core;
mod credentials;
mod emulator;
mod emulator_gke;
mod fake;
mod finish;
mod fleet;
mod gitlab_ci;
mod golden;
mod ha;
mod ha_natgw;
mod harness;
mod inventory;
mod lock;
mod netns;
mod performance;
mod real_project;
mod reliability;
mod shared_vpc;
mod support;
mod vmstate;
