//! Test harness: the moto emulator (started once per test binary through `scripts/dev-stack`,
//! or taken from `OUTBOX_RELAY_TEST_ENDPOINT`), per-test resources with random names, and the
//! real `outbox-relay` binary run as a child process. By concern:
//! - [`fixture`]: one test's AWS world (tables, bus, queue), rows written, events read back;
//! - [`config`]: the relay config it runs with, built by key ([`RelayConfig`]);
//! - [`received`]: what arrived, and the checks made of it (order, duplicates);
//! - [`child`]: the relay binary as a child process, and one-shot commands;
//! - [`eventsv2`], [`proxy`], [`tools`]: the Custom Event Bus emulator, a delaying or cutting
//!   proxy, installed tools.
#![allow(dead_code, unused_imports, clippy::missing_panics_doc)]

pub mod child;
pub mod config;
pub mod eventsv2;
pub mod fixture;
pub mod proxy;
pub mod received;
pub mod tools;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub use books_common::testing::{endpoint, sdk_config_at as sdk_config, unique};
pub use child::{metric_value, relay_cmd, relay_command, Relay};
pub use config::{RelayConfig, PER_AGGREGATE, STRICT};
pub use fixture::{row_traceparent, Fixture, CREATED_AT, ROW_TRACESTATE};
pub use received::{
    distinct, first_deliveries_in_order_per_aggregate, republished, Received, AGGREGATES,
};
