//! The relay proper: the per-shard loop (read → route → publish → checkpoint) and the
//! supervisor that discovers shards, holds leases and runs one loop per owned shard. This is
//! the one module that drives every seam: `stream` and `publish` never import each other,
//! `lease` uses only `stream`'s shard types (and `publish`'s time format), and none of the
//! three imports `relay` (`tests/layout.rs` checks that no module is on an import cycle).

pub(crate) mod backoff;
mod deliver;
mod keeper;
mod limit;
mod polling;
mod schedule;
pub(crate) mod settle;
mod shard_loop;
mod supervisor;
mod worker;

pub use supervisor::{Supervisor, SupervisorSettings};
pub use worker::{WorkerExit, WorkerSettings};

pub(crate) use deliver::{Answer, Window};
pub(crate) use schedule::Order;
pub(crate) use shard_loop::{Command, Now};

#[cfg(test)]
mod tests;
