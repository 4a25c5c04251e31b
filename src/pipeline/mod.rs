//! The pure core: turn a stream record (in the JSON shape EventBridge Pipes uses) into the
//! PutEvents entries of every route it matches, and cut entries into PutEvents batches.
//!
//! Nothing here does I/O or depends on tokio or the AWS SDK: the relay, `test-route`, the
//! benchmarks and (later) the Lambdas share it.

pub mod batch;
pub mod bus;
pub mod cloudevent;
pub mod image;
pub mod json_write;
pub mod pattern;
pub mod route;
pub mod router;
pub mod routing;
pub mod scan;
pub mod template;
pub mod trace;
pub mod unmarshall;

pub use batch::{entry_size, CallLimits};
pub use bus::{Bus, BusKind};
pub use cloudevent::EventFormat;
pub use image::{ImageError, ImageSelector, ImageTexts, PlainImages, StreamViewType};
pub use pattern::{Filter, Matcher, PatternError};
pub use route::{Detail, DetailSpec, OrderingKey, Route, RouteProblem, RouteSpec, Target};
pub use router::{Entry, RecordContext, RouteError, Router};
pub use routing::{RecordPolicy, Routed};
pub use template::{Template, TemplateError, TextError};
pub use trace::{TraceContext, TraceError};
