//! The pure core: turn a stream record (in the JSON shape EventBridge Pipes uses) into the
//! PutEvents entries of every route it matches, and cut entries into PutEvents batches.
//!
//! Nothing here does I/O or depends on tokio or the AWS SDK: the relay, `test-route`, the
//! benchmarks and (later) the Lambdas share it.

pub mod batch;
pub mod pattern;
pub mod route;
pub mod template;
pub mod unmarshall;

pub use batch::{entry_size, Batches};
pub use pattern::{Filter, Matcher, PatternError};
pub use route::{Entry, PlainImages, RecordContext, RouteError, Router};
pub use template::{Template, TemplateError};
