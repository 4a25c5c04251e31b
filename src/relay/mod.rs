//! The relay proper: the per-shard loop (read → route → publish → checkpoint) and the
//! supervisor that discovers shards, holds leases and runs one loop per owned shard. This is
//! the one module that knows every seam; `stream`, `lease` and `publish` never import each other.

pub(crate) mod backoff;
mod deliver;
mod keeper;
mod limit;
mod schedule;
pub(crate) mod settle;
mod supervisor;
mod worker;

pub use supervisor::{Supervisor, SupervisorSettings};
pub use worker::{WorkerExit, WorkerSettings};

#[cfg(test)]
mod tests;
