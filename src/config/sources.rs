//! Wiring routes to sources: which streams the relay reads, and which routes apply to each.
//!
//! [`Config::routes_for`] is the one answer to "which routes apply to records of this
//! source"; the relay, `test-route`, `redrive` and `backfill` all ask it.

use crate::pipeline::pattern::PatternError;
use crate::pipeline::{RecordPolicy, Route, Router, StreamViewType};

use super::{Config, SourceConfig};

/// One stream the relay reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamSelector {
    /// The latest stream of this table.
    Table(String),
    /// This stream.
    Arn(String),
}

impl StreamSelector {
    /// The name a route's `sources` uses for it: the table name or the stream ARN.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Table(t) => t,
            Self::Arn(a) => a,
        }
    }
}

/// A route and where it applies: the wiring the config adds to the pipeline's model.
#[derive(Debug, Clone)]
pub struct RouteBinding {
    pub route: Route,
    /// Table names or stream ARNs this route applies to. Empty: every source.
    pub sources: Vec<String>,
}

impl RouteBinding {
    /// Whether the route applies to records of `source`.
    #[must_use]
    pub fn applies_to(&self, source: &StreamSelector) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|s| s == source.name())
    }
}

impl SourceConfig {
    /// How this source's rows are read for their event id and trace context.
    #[must_use]
    pub fn record_policy(&self) -> RecordPolicy {
        RecordPolicy {
            event_id_attribute: self.event_id_attribute.clone(),
            trace_context_attribute: self.trace_context_attribute.clone(),
            trace_state_attribute: self.trace_state_attribute.clone(),
        }
    }

    /// Every stream to read, in config order (tables first), without duplicates.
    #[must_use]
    pub fn streams(&self) -> Vec<StreamSelector> {
        let tables = self
            .table_name
            .iter()
            .chain(&self.table_names)
            .cloned()
            .map(StreamSelector::Table);
        let arns = self
            .stream_arn
            .iter()
            .chain(&self.stream_arns)
            .cloned()
            .map(StreamSelector::Arn);
        let mut out: Vec<StreamSelector> = Vec::new();
        for s in tables.chain(arns) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// The configured source a stream ARN belongs to: that ARN if it is configured, else
    /// the table it names (`arn:…:table/NAME/stream/LABEL`) if that table is.
    #[must_use]
    pub fn source_of_stream(&self, stream_arn: &str) -> Option<StreamSelector> {
        let streams = self.streams();
        if let Some(s) = streams
            .iter()
            .find(|s| matches!(s, StreamSelector::Arn(a) if a == stream_arn))
        {
            return Some(s.clone());
        }
        let table = table_of_stream_arn(stream_arn)?;
        streams
            .into_iter()
            .find(|s| matches!(s, StreamSelector::Table(t) if t == table))
    }
}

/// The table name inside a DynamoDB stream ARN.
#[must_use]
pub fn table_of_stream_arn(stream_arn: &str) -> Option<&str> {
    let (_, rest) = stream_arn.split_once(":table/")?;
    let (table, _) = rest.split_once("/stream/")?;
    (!table.is_empty()).then_some(table)
}

/// The table a stream ARN belongs to, for messages and metric labels; the ARN itself when it
/// names no table.
#[must_use]
pub fn table_or_arn(stream_arn: &str) -> &str {
    table_of_stream_arn(stream_arn).unwrap_or(stream_arn)
}

impl Config {
    /// The routes that apply to records of `source`, in config order.
    #[must_use]
    pub fn routes_for(&self, source: &StreamSelector) -> Vec<Route> {
        self.routes
            .iter()
            .filter(|b| b.applies_to(source))
            .map(|b| b.route.clone())
            .collect()
    }

    /// What is wrong with reading `source` from a stream of view type `view`: one problem per
    /// route field that reads an image the stream's records never carry (the route would
    /// match nothing, or dead-letter every record). Keyed `routes[i].field`.
    #[must_use]
    pub fn view_type_problems(
        &self,
        source: &StreamSelector,
        view: StreamViewType,
    ) -> Vec<super::ConfigError> {
        let mut problems = Vec::new();
        for (i, binding) in self.routes.iter().enumerate() {
            if !binding.applies_to(source) {
                continue;
            }
            for (field, image) in binding.route.images_read() {
                if view.holds(image) {
                    continue;
                }
                problems.push(super::ConfigError::new(
                    format!("routes[{i}].{field}"),
                    format!(
                        "route {:?} reads {}, but the stream of {} has StreamViewType {}, whose \
                         records never carry it; a stream's view type cannot be changed: \
                         disable the stream and enable it again with {} (its readers then \
                         start on the new stream)",
                        binding.route.name(),
                        image.field(),
                        source.name(),
                        view.as_str(),
                        StreamViewType::holding(image).join(" or "),
                    ),
                ));
            }
        }
        problems
    }

    /// The router for records of `source` ([`Config::routes_for`] in one matcher).
    ///
    /// # Errors
    /// [`PatternError::Rejected`] if the matcher refuses a pattern, which validation makes
    /// unreachable for a loaded config.
    pub fn router_for(&self, source: &StreamSelector) -> Result<Router, PatternError> {
        Router::new(self.routes_for(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_a_stream_arn() {
        assert_eq!(
            table_of_stream_arn(
                "arn:aws:dynamodb:us-east-1:1:table/Books/stream/2024-01-01T00:00:00.000"
            ),
            Some("Books")
        );
        assert_eq!(
            table_of_stream_arn("arn:aws:dynamodb:us-east-1:1:table/Books"),
            None
        );
        assert_eq!(table_of_stream_arn("not an arn"), None);
    }

    #[test]
    fn a_stream_arn_belongs_to_its_configured_arn_or_table() {
        let source = SourceConfig {
            table_names: vec!["A".into()],
            stream_arns: vec!["arn:aws:dynamodb:r:1:table/B/stream/L".into()],
            ..SourceConfig::default()
        };
        assert_eq!(
            source.source_of_stream("arn:aws:dynamodb:r:1:table/A/stream/X"),
            Some(StreamSelector::Table("A".into()))
        );
        assert_eq!(
            source.source_of_stream("arn:aws:dynamodb:r:1:table/B/stream/L"),
            Some(StreamSelector::Arn(
                "arn:aws:dynamodb:r:1:table/B/stream/L".into()
            ))
        );
        // Another stream of table B is not the configured ARN, and B is not a table source.
        assert_eq!(
            source.source_of_stream("arn:aws:dynamodb:r:1:table/B/stream/M"),
            None
        );
    }
}
