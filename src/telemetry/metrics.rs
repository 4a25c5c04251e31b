//! The relay's Prometheus metrics. Names follow `outbox_relay_<name>_<unit>[_total]`; labels
//! come from bounded sets only (route names from the config, AWS error codes). Shard ids
//! rotate every few hours, so they are never labels: they go in logs.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Buckets for the relay lag: from a busy relay's sub-second to a stuck one's quarter hour.
const LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];
/// Buckets for one PutEvents call.
const CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for a coordination round (a scan of the lease table and the writes it plans).
const ROUND_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Every metric the relay exports, registered in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Every metric family's name, in registration order.
    names: Vec<String>,
    /// Stream records read from GetRecords.
    pub records_read: IntCounter,
    /// Records that matched no route (dropped on purpose by filters).
    pub records_filtered: IntCounter,
    /// Events accepted by EventBridge, per route.
    pub events_published: IntCounterVec,
    /// Entries a Custom Event Bus answered `DEDUPLICATED` (a repeat of one it already had,
    /// e.g. re-sent after a crash): settled, not stored again, and not counted as published.
    pub events_deduplicated: IntCounterVec,
    /// Records whose outbox row held a malformed trace context (ignored; the event goes out
    /// without it).
    pub trace_context_invalid: IntCounter,
    /// Gaps found: records trimmed from a shard's stream before they were relayed, by source
    /// table (the rows are recovered with `outbox-relay backfill`).
    pub stream_gaps: IntCounterVec,
    /// Every request attempt made to AWS, by service, operation and outcome (`ok`, `error`:
    /// an answer other than 2xx, `no_response`): what AWS bills per request.
    pub aws_requests: IntCounterVec,
    /// Events that could not be made or were rejected for good and went to the dead-letter
    /// sink, by route, stage (`transform` or `publish`) and error code.
    pub events_dead_lettered: IntCounterVec,
    /// Entries sent again after a retryable failure, by error code.
    pub put_events_retries: IntCounterVec,
    /// PutEvents batches being published (sent or waiting to be retried) right now.
    pub publish_in_flight_batches: IntGauge,
    /// Age of the oldest record read but not yet fully handled, over all owned shards
    /// (0 when nothing is pending): the alertable "stuck" signal.
    pub oldest_unpublished_record_age_seconds: prometheus::Gauge,
    /// Failed attempts to write a dead letter (retried; the checkpoint waits), by error code.
    pub dead_letter_write_errors: IntCounterVec,
    /// Seconds from a record's `ApproximateCreationDateTime` to EventBridge accepting its event.
    pub lag_seconds: Histogram,
    /// PutEvents calls made.
    pub put_events_requests: IntCounter,
    /// PutEvents calls that failed as a whole, by error code.
    pub put_events_errors: IntCounterVec,
    /// Entries EventBridge reported as failed, by `ErrorCode`.
    pub put_events_failed_entries: IntCounterVec,
    /// Duration of PutEvents calls.
    pub put_events_duration_seconds: Histogram,
    /// GetRecords calls made.
    pub get_records_requests: IntCounter,
    /// Stream calls (GetRecords, GetShardIterator, DescribeStream) that failed, by error code.
    pub stream_errors: IntCounterVec,
    /// Checkpoints written.
    pub checkpoints: IntCounter,
    /// Leases this process holds now.
    pub leases_owned: IntGauge,
    /// Leases taken, lost (taken by a peer) and released.
    pub lease_events: IntCounterVec,
    /// Shards seen in the streams at the last discovery.
    pub shards_known: IntGauge,
    /// Shards whose lease holds `SHARD_END` (closed and fully relayed).
    pub shards_finished: IntGauge,
    /// 1 while a configured source (table name or stream ARN) resolves to a stream, else 0.
    pub source_up: prometheus::IntGaugeVec,
    /// Failed lease-table calls (retried), by operation (`snapshot`, `heartbeat`, `renew`,
    /// `checkpoint`) and error code.
    pub lease_table_errors: IntCounterVec,
    /// Duration of lease renewals (a slow lease table delays failover detection).
    pub lease_renewal_duration_seconds: Histogram,
    /// Duration of a whole coordination round (scan, discovery, plan, takes, sheds).
    pub lease_round_duration_seconds: Histogram,
    /// Seconds since the oldest successful renewal among owned leases (0 with none): close
    /// to `lease_duration` means the owner may soon stop reading those shards.
    pub lease_renewal_age_seconds: prometheus::Gauge,
    /// Leases taken, by what the previous owner looked like: `none` (free), `dead`
    /// (counter and heartbeat stood still), `alive` (should stay 0).
    pub leases_taken: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: names and labels are static and registered once into a fresh registry.
    #[must_use]
    pub fn new() -> Self {
        let registry = Registry::new();
        let names = std::cell::RefCell::new(Vec::new());
        let note = |name: &str| names.borrow_mut().push(name.to_owned());
        let counter = |name: &str, help: &str| {
            note(name);
            let c = IntCounter::new(name, help).expect("static metric definition is valid");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            note(name);
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition is valid");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            note(name);
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("static metric definition is valid");
            registry
                .register(Box::new(h.clone()))
                .expect("metric registered once");
            h
        };
        let gauge = |name: &str, help: &str| {
            note(name);
            let g = IntGauge::new(name, help).expect("static metric definition is valid");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let float_gauge = |name: &str, help: &str| {
            note(name);
            let g = prometheus::Gauge::new(name, help).expect("static metric definition is valid");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let mut metrics = Self {
            records_read: counter(
                "outbox_relay_records_read_total",
                "Stream records read from DynamoDB Streams.",
            ),
            records_filtered: counter(
                "outbox_relay_records_filtered_total",
                "Stream records that matched no route.",
            ),
            events_published: counter_vec(
                "outbox_relay_events_published_total",
                "Events accepted by EventBridge.",
                &["route"],
            ),
            events_deduplicated: counter_vec(
                "outbox_relay_events_deduplicated_total",
                "Entries a Custom Event Bus accepted as repeats (DEDUPLICATED), not stored again.",
                &["route"],
            ),
            stream_gaps: counter_vec(
                "outbox_relay_stream_gaps_total",
                "Gaps found: records trimmed from a shard's stream before they were relayed (recover them with outbox-relay backfill).",
                &["source"],
            ),
            aws_requests: counter_vec(
                "outbox_relay_aws_requests_total",
                "Request attempts made to AWS, by service, operation and outcome (ok, error, no_response).",
                &["service", "operation", "outcome"],
            ),
            trace_context_invalid: counter(
                "outbox_relay_trace_context_invalid_total",
                "Records whose trace context attribute was not a valid W3C traceparent (ignored).",
            ),
            events_dead_lettered: counter_vec(
                "outbox_relay_events_dead_lettered_total",
                "Events not delivered and written to the dead-letter sink, by route, stage and error code.",
                &["route", "stage", "error_code"],
            ),
            put_events_retries: counter_vec(
                "outbox_relay_put_events_retries_total",
                "Entries sent again after a retryable failure, by error code.",
                &["error_code"],
            ),
            publish_in_flight_batches: gauge(
                "outbox_relay_publish_in_flight_batches",
                "PutEvents batches being published (sent or awaiting retry).",
            ),
            oldest_unpublished_record_age_seconds: float_gauge(
                "outbox_relay_oldest_unpublished_record_age_seconds",
                "Age of the oldest record read but not yet fully handled (0 when none).",
            ),
            dead_letter_write_errors: counter_vec(
                "outbox_relay_dead_letter_write_errors_total",
                "Failed dead-letter writes (retried; the checkpoint waits), by error code.",
                &["error_code"],
            ),
            lag_seconds: histogram(
                "outbox_relay_lag_seconds",
                "Seconds from the record's ApproximateCreationDateTime to EventBridge accepting its event.",
                LAG_BUCKETS,
            ),
            put_events_requests: counter(
                "outbox_relay_put_events_requests_total",
                "PutEvents calls made.",
            ),
            put_events_errors: counter_vec(
                "outbox_relay_put_events_errors_total",
                "PutEvents calls that failed as a whole, by error code.",
                &["error_code"],
            ),
            put_events_failed_entries: counter_vec(
                "outbox_relay_put_events_failed_entries_total",
                "PutEvents entries reported as failed, by ErrorCode.",
                &["error_code"],
            ),
            put_events_duration_seconds: histogram(
                "outbox_relay_put_events_duration_seconds",
                "Duration of PutEvents calls.",
                CALL_BUCKETS,
            ),
            get_records_requests: counter(
                "outbox_relay_get_records_requests_total",
                "GetRecords calls made.",
            ),
            stream_errors: counter_vec(
                "outbox_relay_stream_errors_total",
                "DynamoDB Streams calls that failed, by error code.",
                &["error_code"],
            ),
            checkpoints: counter(
                "outbox_relay_checkpoints_total",
                "Checkpoints written to the lease table.",
            ),
            leases_owned: gauge(
                "outbox_relay_leases_owned",
                "Shard leases this process holds.",
            ),
            lease_events: counter_vec(
                "outbox_relay_lease_events_total",
                "Lease changes of this process: taken, shed, lost, released, renew_failed.",
                &["event"],
            ),
            shards_known: gauge(
                "outbox_relay_shards_known",
                "Shards found in the streams at the last discovery.",
            ),
            source_up: {
                note("outbox_relay_source_up");
                let g = prometheus::IntGaugeVec::new(
                    Opts::new(
                        "outbox_relay_source_up",
                        "1 while a configured source resolves to a stream, else 0.",
                    ),
                    &["source"],
                )
                .expect("static metric definition is valid");
                registry
                    .register(Box::new(g.clone()))
                    .expect("metric registered once");
                g
            },
            shards_finished: gauge(
                "outbox_relay_shards_finished",
                "Shards closed and fully relayed (lease at SHARD_END).",
            ),
            lease_table_errors: counter_vec(
                "outbox_relay_lease_table_errors_total",
                "Failed lease-table calls (retried), by operation and error code.",
                &["operation", "error_code"],
            ),
            lease_renewal_duration_seconds: histogram(
                "outbox_relay_lease_renewal_duration_seconds",
                "Duration of lease renewals.",
                CALL_BUCKETS,
            ),
            lease_round_duration_seconds: histogram(
                "outbox_relay_lease_round_duration_seconds",
                "Duration of a whole lease coordination round.",
                ROUND_BUCKETS,
            ),
            lease_renewal_age_seconds: float_gauge(
                "outbox_relay_lease_renewal_age_seconds",
                "Seconds since the oldest successful renewal among owned leases.",
            ),
            leases_taken: counter_vec(
                "outbox_relay_leases_taken_total",
                "Leases taken, by what the previous owner looked like (none, dead, alive).",
                &["previous_owner"],
            ),
            registry,
            names: Vec::new(),
        };
        // Which build runs where: a constant 1 with the version as a label (the Prometheus
        // convention of `*_build_info`), also what the dashboard counts replicas by.
        note("outbox_relay_build_info");
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new(
                "outbox_relay_build_info",
                "Always 1; labels: the relay's version and the machine it was built for.",
            ),
            &["version", "arch", "os"],
        )
        .expect("static metric definition is valid");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::env::consts::OS,
            ])
            .set(1);
        metrics
            .registry
            .register(Box::new(build_info))
            .expect("metric registered once");
        // CPU, memory, file descriptors and threads of this process, read from /proc at each
        // scrape (Linux only; elsewhere the collector reports nothing).
        let process = prometheus::process_collector::ProcessCollector::for_self();
        let mut names = names.into_inner();
        names.extend(
            prometheus::core::Collector::desc(&process)
                .into_iter()
                .map(|d| d.fq_name.clone()),
        );
        metrics
            .registry
            .register(Box::new(process))
            .expect("metric registered once");
        metrics.names = names;
        metrics
    }

    /// The name of every metric family, including labelled ones with no series yet (which
    /// `/metrics` omits until first used).
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The metrics in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding metrics failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_family_with_the_prefix() {
        let m = Metrics::new();
        m.events_published.with_label_values(&["r"]).inc();
        m.put_events_failed_entries
            .with_label_values(&["ThrottlingException"])
            .inc();
        m.lag_seconds.observe(0.3);
        let text = m.render();
        for name in [
            "outbox_relay_records_read_total",
            "outbox_relay_events_published_total{route=\"r\"} 1",
            "outbox_relay_put_events_failed_entries_total{error_code=\"ThrottlingException\"} 1",
            "outbox_relay_lag_seconds_count 1",
            "outbox_relay_leases_owned 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert!(text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.starts_with("outbox_relay_") || l.starts_with("process_")));
        assert!(text.contains(&format!(
            "outbox_relay_build_info{{arch=\"{}\",os=\"linux\",version=\"{}\"}} 1",
            std::env::consts::ARCH,
            env!("CARGO_PKG_VERSION")
        )));
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
            assert!(text.contains(name), "{name}");
            assert!(m.names().iter().any(|n| n == name), "{name} in names()");
        }
    }
}
