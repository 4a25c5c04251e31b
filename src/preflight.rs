//! What AWS can tell about the configured sources before anything is read: each table exists
//! and has its stream on, and each stream's `StreamViewType` holds every image a route reads
//! (filters, template, `unmarshall`, ordering key). `run` refuses to start on a problem (exit 2),
//! so a KEYS_ONLY stream never dead-letters every record; `validate --aws` runs the same check.
//!
//! A table that does not exist (yet) is reported apart: `run` starts anyway, relays the other
//! sources and picks it up once it is created (`outbox_relay_source_up` is 0 meanwhile), while
//! `validate --aws` counts it as a problem. A source AWS cannot be asked about (network,
//! throttling) is not a problem of the config either: `run` starts and retries it.

use crate::config::{Config, ConfigError, StreamSelector};
use crate::pipeline::StreamViewType;
use crate::stream::{DynamoDbStreams, ShardSource, SourceError};

/// The outcome of [`check_sources`].
#[derive(Debug, Default)]
pub struct SourceCheck {
    /// Definite problems, each naming the key to change and why.
    pub problems: Vec<ConfigError>,
    /// Tables that do not exist: `run` waits for them, `validate --aws` reports them.
    pub missing: Vec<ConfigError>,
    /// Sources that could not be checked, each with the reason (one line).
    pub unchecked: Vec<(String, String)>,
}

/// Asks AWS about every source of `config` (a DescribeTable per table, a DescribeStream per
/// stream).
pub async fn check_sources(config: &Config, streams: &DynamoDbStreams) -> SourceCheck {
    let mut check = SourceCheck::default();
    for selector in config.source.streams() {
        let arn = match &selector {
            StreamSelector::Table(table) => streams.latest_stream_arn(table).await,
            StreamSelector::Arn(arn) => Ok(arn.clone()),
        };
        let arn = match arn {
            Ok(arn) => arn,
            Err(e) => {
                record(&mut check, config, &selector, &e);
                continue;
            }
        };
        match streams.view_type(&arn).await {
            Ok(Some(view)) => match view.parse::<StreamViewType>() {
                Ok(view) => check
                    .problems
                    .extend(config.view_type_problems(&selector, view)),
                Err(e) => check.unchecked.push((selector.name().to_owned(), e)),
            },
            Ok(None) => check.unchecked.push((
                selector.name().to_owned(),
                "DescribeStream gave no StreamViewType".to_owned(),
            )),
            Err(e) => record(&mut check, config, &selector, &e),
        }
    }
    check
}

/// Files a failed call as a problem of the config (no such table, no stream) or as unchecked.
fn record(check: &mut SourceCheck, config: &Config, selector: &StreamSelector, e: &SourceError) {
    let key = source_key(config, selector);
    match e {
        SourceError::StreamDisabled { table } => check.problems.push(ConfigError::new(
            key,
            format!(
                "table {table} has no stream: turn it on with the view type the routes need \
                 (NEW_AND_OLD_IMAGES holds every image): aws dynamodb update-table \
                 --table-name {table} --stream-specification \
                 StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
            ),
        )),
        SourceError::NotFound { message } => check.missing.push(ConfigError::new(
            key,
            format!(
                "{} was not found ({message}): check the name and the region (aws.region, \
                 AWS_REGION)",
                selector.name()
            ),
        )),
        other => check
            .unchecked
            .push((selector.name().to_owned(), other.to_string())),
    }
}

/// The config key that names `selector` (`source.table_names[1]`, `source.stream_arn`, …).
fn source_key(config: &Config, selector: &StreamSelector) -> String {
    let s = &config.source;
    let (single, list, name) = match selector {
        StreamSelector::Table(t) => (&s.table_name, &s.table_names, t),
        StreamSelector::Arn(a) => (&s.stream_arn, &s.stream_arns, a),
    };
    let field = match selector {
        StreamSelector::Table(_) => "table_name",
        StreamSelector::Arn(_) => "stream_arn",
    };
    if single.as_deref() == Some(name.as_str()) {
        return format!("source.{field}");
    }
    match list.iter().position(|n| n == name) {
        Some(i) => format!("source.{field}s[{i}]"),
        None => format!("source.{field}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_named_by_the_key_that_configures_it() {
        let config = Config::from_toml(
            "[source]\ntable_name = \"A\"\ntable_names = [\"B\", \"C\"]\n\
             stream_arns = [\"arn:aws:dynamodb:us-east-1:1:table/D/stream/x\"]\n\
             [[routes]]\nname = \"r\"\nevent_bus_name = \"b\"\nsource = \"s\"\n\
             detail_type = \"d\"\nunmarshall = \"NewImage\"\n",
        )
        .expect("valid");
        let key = |s: StreamSelector| source_key(&config, &s);
        assert_eq!(key(StreamSelector::Table("A".into())), "source.table_name");
        assert_eq!(
            key(StreamSelector::Table("C".into())),
            "source.table_names[1]"
        );
        assert_eq!(
            key(StreamSelector::Arn(
                "arn:aws:dynamodb:us-east-1:1:table/D/stream/x".into()
            )),
            "source.stream_arns[0]"
        );
    }
}
