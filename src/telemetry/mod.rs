//! Observability: Prometheus metrics, liveness/readiness, the HTTP endpoint and log set-up.

mod health;
mod http;
mod lease_events;
mod logs;
mod metrics;
mod pending;
mod shard_events;
pub mod spans;

pub use health::Health;
pub use http::serve;
pub use lease_events::LeaseEvent;
pub use logs::init as init_logs;
pub use metrics::Metrics;
pub use pending::PendingRecords;
pub use shard_events::{CallFailure, ShardEvent};
