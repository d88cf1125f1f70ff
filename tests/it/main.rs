//! natgw's integration tests: one binary, driving the real `natgw` binary and the emulator over HTTP.

mod emulator;
mod harness;
mod netns;
mod support;
