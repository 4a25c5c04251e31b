//! Checks across keys and sections, each problem naming its key. What a route must satisfy
//! on its own is the pipeline's [`Route::compile`]; here are only the file's own rules (one
//! way to give the detail, unique names, `sources` naming configured streams) and the other
//! sections.

use std::collections::HashSet;
use std::num::NonZeroUsize;

use crate::pipeline::batch::MAX_ENTRIES;
use crate::pipeline::{Bus, BusKind, DetailSpec, Route, RouteSpec, Target};

use super::file::{
    AwsConfig, DeadLetterConfig, LeasesConfig, LogConfig, PublisherConfig, RawRoute,
    TelemetryConfig,
};
use super::{ConfigError, RouteBinding, SourceConfig, StreamSelector};

/// The most one GetRecords call returns: 1 MB (DynamoDB Streams API reference, `GetRecords`).
const MIN_READ_AHEAD_BYTES: usize = 1024 * 1024;

/// Levels a `tracing` filter directive may name.
const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Turns the file's routes into compiled routes with their wiring.
pub(super) fn routes(
    raw: Vec<(String, RawRoute)>,
    errors: &mut Vec<ConfigError>,
) -> Vec<RouteBinding> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (key, r) in raw {
        if !r.name.trim().is_empty() && !names.insert(r.name.clone()) {
            errors.push(ConfigError::new(
                format!("{key}.name"),
                format!("duplicate route name {:?}", r.name),
            ));
        }
        let detail = match (r.template, r.unmarshall) {
            (Some(_), Some(_)) => {
                errors.push(ConfigError::new(
                    key.clone(),
                    "set either `template` or `unmarshall`, not both",
                ));
                None
            }
            (None, None) => {
                errors.push(ConfigError::new(
                    key.clone(),
                    "missing detail: set `template` or `unmarshall`",
                ));
                None
            }
            (Some(text), None) => {
                if r.trace_context_field.is_some() {
                    errors.push(ConfigError::new(
                        format!("{key}.trace_context_field"),
                        "applies to `unmarshall` routes only: in a template, write \
                         <outbox.traceparent> where the trace context should go",
                    ));
                }
                Some(DetailSpec::Template(text))
            }
            (None, Some(image)) => Some(DetailSpec::Unmarshall {
                image,
                event_id_field: r.event_id_field,
                trace_context_field: r.trace_context_field.unwrap_or_default(),
            }),
        };
        let bus = match (r.event_bus_name, r.event_bus_arn) {
            (Some(name), None) => Bus::Classic(name.into()),
            (None, Some(arn)) => Bus::Custom(arn.into()),
            (Some(_), Some(_)) => {
                errors.push(ConfigError::new(
                    key.clone(),
                    "set either `event_bus_name` (a classic bus) or `event_bus_arn` (a Custom \
                     Event Bus), not both",
                ));
                Bus::Classic("unset".into())
            }
            (None, None) => {
                errors.push(ConfigError::new(
                    key.clone(),
                    "missing target: set `event_bus_name` (a classic bus) or `event_bus_arn` \
                     (a Custom Event Bus)",
                ));
                Bus::Classic("unset".into())
            }
        };
        // With no detail the rest of the route is still checked, so every problem shows.
        let spec = RouteSpec {
            name: r.name,
            filters: r.filters,
            target: Target {
                bus,
                source: r.source.into(),
                detail_type: r.detail_type.into(),
                resources: r.resources,
            },
            detail: detail.clone().unwrap_or(DetailSpec::Unmarshall {
                image: crate::pipeline::ImageSelector::Keys,
                event_id_field: String::new(),
                trace_context_field: String::new(),
            }),
            expand_json: r.expand_json,
            ordering_key: r.ordering_key,
            format: r.format,
            subject: r.subject,
            metadata: r.metadata.into_iter().collect(),
        };
        match Route::compile(spec) {
            Ok(route) if detail.is_some() => out.push(RouteBinding {
                route,
                sources: r.sources,
            }),
            Ok(_) => {}
            Err(problems) => errors.extend(
                problems
                    .into_iter()
                    .map(|p| ConfigError::new(format!("{key}.{}", p.field), p.reason)),
            ),
        }
    }
    out
}

/// Each route's `sources` must name a configured table or stream ARN.
pub(super) fn route_sources(
    routes: &[RouteBinding],
    streams: &[StreamSelector],
    errors: &mut Vec<ConfigError>,
) {
    for (i, binding) in routes.iter().enumerate() {
        for (j, name) in binding.sources.iter().enumerate() {
            if !streams.iter().any(|s| s.name() == name) {
                errors.push(ConfigError::new(
                    format!("routes[{i}].sources[{j}]"),
                    format!("{name:?} is not a table or stream ARN of [source]"),
                ));
            }
        }
    }
}

pub(super) fn source(s: &SourceConfig, errors: &mut Vec<ConfigError>) {
    if s.streams().is_empty() {
        errors.push(ConfigError::new(
            "source.table_name",
            "missing: set `table_name` (or `table_names`, `stream_arn`, `stream_arns`)",
        ));
    }
    let tables = s
        .table_name
        .iter()
        .map(|t| ("source.table_name".to_owned(), t));
    let more = s
        .table_names
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("source.table_names[{i}]"), t));
    for (key, t) in tables.chain(more) {
        if t.trim().is_empty() {
            errors.push(ConfigError::new(key, "must not be empty"));
        }
    }
    let arns = s
        .stream_arn
        .iter()
        .map(|a| ("source.stream_arn".to_owned(), a));
    let more = s
        .stream_arns
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("source.stream_arns[{i}]"), a));
    for (key, arn) in arns.chain(more) {
        if !arn.starts_with("arn:") || super::sources::table_of_stream_arn(arn).is_none() {
            errors.push(ConfigError::new(
                key,
                "not a DynamoDB stream ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL)",
            ));
        }
    }
    if s.idle_poll_interval
        .is_some_and(|idle| idle < s.poll_interval)
    {
        errors.push(ConfigError::new(
            "source.idle_poll_interval",
            format!(
                "must be at least poll_interval ({}): it is the ceiling an idle shard's poll backs off to",
                humantime::format_duration(s.poll_interval)
            ),
        ));
    }
    if s.max_records_per_poll.get() > 1000 {
        errors.push(ConfigError::new(
            "source.max_records_per_poll",
            "must be at most 1000 (the GetRecords limit)",
        ));
    }
    if s.read_ahead_records < s.max_records_per_poll.get() {
        errors.push(ConfigError::new(
            "source.read_ahead_records",
            format!(
                "must be at least source.max_records_per_poll ({}): a shard holds at least the page it reads",
                s.max_records_per_poll
            ),
        ));
    }
    if s.read_ahead_bytes < MIN_READ_AHEAD_BYTES {
        errors.push(ConfigError::new(
            "source.read_ahead_bytes",
            format!(
                "must be at least {MIN_READ_AHEAD_BYTES} (1 MiB, the most one GetRecords call returns)"
            ),
        ));
    }
    if s.discovery_interval.is_zero() {
        errors.push(ConfigError::new(
            "source.discovery_interval",
            "must be above 0",
        ));
    }
    if s.recover_gaps && s.created_at_attribute.is_none() {
        errors.push(ConfigError::new(
            "source.recover_gaps",
            "needs source.created_at_attribute: a gap's backfill selects rows by their creation time",
        ));
    }
    if s.created_at_attribute.as_deref() == Some("") {
        errors.push(ConfigError::new(
            "source.created_at_attribute",
            "must not be empty",
        ));
    }
    if s.trace_state_attribute.is_some() && s.trace_context_attribute.is_none() {
        errors.push(ConfigError::new(
            "source.trace_state_attribute",
            "needs source.trace_context_attribute: a tracestate only travels with its traceparent",
        ));
    }
}

pub(super) fn aws(a: &AwsConfig, errors: &mut Vec<ConfigError>) {
    let all = std::iter::once(("aws.endpoint_url".to_owned(), a.endpoint_url.as_deref())).chain(
        a.endpoints
            .all()
            .into_iter()
            .map(|(name, url)| (format!("aws.endpoints.{name}"), url)),
    );
    for (key, url) in all {
        if let Some(url) = url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                errors.push(ConfigError::new(
                    key,
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
    }
}

pub(super) fn leases(l: &LeasesConfig, errors: &mut Vec<ConfigError>) {
    if l.table_name.trim().is_empty() {
        errors.push(ConfigError::new("leases.table_name", "must not be empty"));
    }
    if l.checkpoint_interval.is_zero() || l.checkpoint_interval >= l.lease_duration {
        errors.push(ConfigError::new(
            "leases.checkpoint_interval",
            format!(
                "must be above 0 and below leases.lease_duration ({})",
                humantime::format_duration(l.lease_duration)
            ),
        ));
    }
    if l.renew_interval.is_zero() || l.renew_interval * 3 > l.lease_duration {
        errors.push(ConfigError::new(
            "leases.renew_interval",
            format!(
                "must be above 0 and at most a third of leases.lease_duration ({})",
                humantime::format_duration(l.lease_duration)
            ),
        ));
    }
}

pub(super) fn publisher(
    p: &PublisherConfig,
    routes: &[RouteBinding],
    errors: &mut Vec<ConfigError>,
) {
    if let Some(max) = p.max_batch_entries.map(NonZeroUsize::get) {
        let classic = routes
            .iter()
            .find(|b| b.route.target().bus.kind() == BusKind::Classic);
        let custom_max = BusKind::Custom.max_entries();
        if max > custom_max {
            errors.push(ConfigError::new(
                "publisher.max_batch_entries",
                format!("must be at most {custom_max} (the Custom Event Bus PutEvents limit)"),
            ));
        } else if let Some(binding) = classic.filter(|_| max > MAX_ENTRIES) {
            errors.push(ConfigError::new(
                "publisher.max_batch_entries",
                format!(
                    "must be at most {MAX_ENTRIES} (the classic PutEvents limit) while route {:?} \
                     targets a classic bus; only Custom Event Bus routes take up to {custom_max}",
                    binding.route.name()
                ),
            ));
        }
    }
    if p.initial_backoff.is_zero() || p.initial_backoff > p.max_backoff {
        errors.push(ConfigError::new(
            "publisher.initial_backoff",
            "must be above 0 and at most publisher.max_backoff",
        ));
    }
}

pub(super) fn telemetry(t: &TelemetryConfig, errors: &mut Vec<ConfigError>) {
    if let Some(endpoint) = &t.otlp_endpoint {
        if !endpoint.starts_with("http://") {
            errors.push(ConfigError::new(
                "telemetry.otlp_endpoint",
                "must be an http:// URL of an OTLP/HTTP collector (a local agent or sidecar; \
                 the exporter has no TLS)",
            ));
        }
    }
}

pub(super) fn dead_letter(d: &DeadLetterConfig, errors: &mut Vec<ConfigError>) {
    let set = [
        d.queue_url.is_some(),
        d.queue_name.is_some(),
        d.file.is_some(),
    ];
    if set.iter().filter(|&&x| x).count() > 1 {
        errors.push(ConfigError::new(
            "dead_letter",
            "set at most one of `queue_url`, `queue_name` and `file`",
        ));
    }
    if let Some(url) = &d.queue_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            errors.push(ConfigError::new(
                "dead_letter.queue_url",
                "must be an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
            ));
        }
    }
}

/// `log.level` must be a filter `tracing` understands *and* mean what it says: a bare word is
/// a level. (`tracing`'s own parser reads a bare `loud` as "everything from target `loud`",
/// which silences the relay instead of refusing the typo.)
pub(super) fn log(l: &LogConfig, errors: &mut Vec<ConfigError>) {
    if let Err(reason) = check_log_filter(&l.level) {
        errors.push(ConfigError::new("log.level", reason));
    }
}

/// Checks a log filter: comma-separated directives, each a level or `target[span]=level`.
///
/// # Errors
/// The reason, naming the directive at fault.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    let expected = || LOG_LEVELS.join(", ");
    if filter.trim().is_empty() {
        return Err(format!("must not be empty: use one of {}", expected()));
    }
    for directive in filter.split(',').map(str::trim) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "unknown level {level:?} in {directive:?}: expected one of {} (or \
                 target=level, e.g. outbox_relay=debug)",
                expected()
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|e| format!("not a log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::check_log_filter;

    #[test]
    fn log_filters_are_levels_or_target_level_directives() {
        for good in [
            "info",
            "WARN",
            "off",
            "outbox_relay=debug",
            "info,aws_config=warn",
        ] {
            check_log_filter(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["loud", "", "info,loud", "outbox_relay=loud", "outbox_relay"] {
            assert!(check_log_filter(bad).is_err(), "{bad}");
        }
    }
}
