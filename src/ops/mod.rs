//! Orchestration behind the commands.

pub(crate) mod lock;
