//! natgw's integration tests: one binary, driving the real `natgw` binary and the emulator over HTTP.

mod emulator;
mod emulator_gke;
mod support;
