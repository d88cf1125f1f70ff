//! natgw's integration tests: one binary, driving the real `natgw` binary and the emulator over HTTP.
#![allow(unreachable_pub)]

mod bad_inputs;
mod emulator;
mod harness;
mod netns;
mod reliability;
mod support;
