//! outbox-relay: relays DynamoDB Streams outbox rows to Amazon EventBridge, at least once, in
//! order per shard, with leases and checkpoints in DynamoDB.
//!
//! # Layout
//! - [`config`]: the config file's shape and defaults, validation, and which routes apply to
//!   which source (no I/O but reading the file); turns each route into a [`pipeline::Route`].
//!   The dependency goes one way: `pipeline` never imports `config`.
//! - [`aws`]: building the AWS SDK clients (rustls on ring, optional emulator endpoint).
//! - [`stream`]: DynamoDB Streams: shards, lineage, records, the `ShardSource` seam.
//! - [`lease`]: lease items, the pure lease planner, the `LeaseStore` seam.
//! - [`pipeline`]: pure: the route model ([`pipeline::Route`]), filters, templates, images,
//!   unmarshalling, the router, PutEvents batching.
//! - [`publish`]: the `EventPublisher` seam on PutEvents, and retry classification.
//! - [`relay`]: the delivery window (a record to settled entries), the shard loop's state
//!   machine and its driver, the supervisor; it ties `stream`, `lease` and `publish` together.
//!   `backfill` settles its pages through the same window; nothing below it imports `relay`.
//! - [`telemetry`]: metrics, health, the HTTP endpoint, logs.
//! - [`app`]: wiring the above together for `outbox-relay run`.
//! - [`preflight`]: what AWS says of the sources before anything is read (stream on, view
//!   type holds what the routes read); `run` and `validate --aws`.
//! - [`cli`]: the command line's commands, flags and environment variables.
//!
//! No module reaches itself through others: `tests/layout.rs` checks the `crate::` paths of
//! every module's non-test code for cycles.
//! - [`operator`]: `outbox-relay status` and `checkpoint reset`.
//! - [`redrive`]: `outbox-relay redrive`, re-publishing the dead-letter queue.
//! - [`render`]: how the commands' progress and dry-run output show on a terminal (commands
//!   return reports and tell observers; they never print).
//! - [`test_route`]: `outbox-relay test-route`, a record through every route, offline.
//! - [`time`]: RFC 3339 times with any offset, from flags and from rows.
//! - [`healthcheck`]: `outbox-relay healthcheck`, a container health probe of `/healthz`.

pub mod app;
pub mod aws;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod healthcheck;
pub mod lease;
pub mod operator;
pub mod pipeline;
pub mod preflight;
pub mod publish;
pub mod redrive;
pub mod relay;
pub mod render;
pub mod stream;
pub mod telemetry;
pub mod test_route;
pub mod time;

#[cfg(test)]
pub(crate) mod test_support;

/// The unit tests run on the shipped binary's allocator, so what they measure of the relay
/// loop (`relay_throughput`, issue #28) costs what the relay costs.
#[cfg(test)]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
