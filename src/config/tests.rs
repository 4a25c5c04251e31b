use std::time::Duration;

use super::*;
use crate::pipeline::{Detail, ImageSelector};

const MINIMAL: &str = r#"
[source]
table_name = "EventsTable"

[[routes]]
name = "all"
event_bus_name = "bus"
source = "Demo"
detail_type = "Changed"
unmarshall = "NewImage"
"#;

fn keys(err: &ConfigErrors) -> Vec<&str> {
    err.0.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn a_minimal_config_takes_every_default() {
    let c = Config::from_toml(MINIMAL).expect("valid");
    assert_eq!(c.source.starting_position, StartingPosition::TrimHorizon);
    assert_eq!(c.source.poll_interval, Duration::from_secs(1));
    assert_eq!(c.source.max_records_per_poll.get(), 1000);
    assert_eq!(c.leases.table_name, "outbox-relay-leases");
    assert_eq!(c.leases.lease_duration, Duration::from_secs(10));
    assert_eq!(
        c.publisher.max_batch_entries, None,
        "each bus kind's maximum"
    );
    assert_eq!(c.http.listen, "0.0.0.0:9464".parse().expect("addr"));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.shutdown.grace, Duration::from_secs(20));
    assert_eq!(c.runtime.worker_threads, None, "tokio's default");
    assert!(matches!(
        c.routes[0].route.detail(),
        Detail::Unmarshall {
            image: ImageSelector::NewImage,
            ..
        }
    ));
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let text = r#"
[source]
poll_interval = "soon"

[leases]
renew_interval = "9s"

[publisher]
max_batch_entries = 101

[colour]
x = 1

[[routes]]
name = "a"
filters = ['{"eventName": "INSERT"}', 'not json']
event_bus_name = "bus"
source = "Demo"
detail_type = "T"
template = '{"x": <$.a>}'
surprise = true

[[routes]]
name = "b"
filters = ['not json']
event_bus_name = "bus"
source = "aws.demo"
detail_type = "T"
"#;
    let err = Config::from_toml(text).expect_err("broken");
    let keys = keys(&err);
    for expected in [
        "colour",
        "source.poll_interval",
        "leases.renew_interval",
        "publisher.max_batch_entries",
        "routes[0].surprise",
        "routes[1].source",
        "routes[1].filters[0]",
        "routes[1]",
    ] {
        assert!(
            keys.contains(&expected),
            "{expected} not in {keys:?}\n{err}"
        );
    }
}

const BUS_ARN: &str =
    "arn:aws:events:us-east-1:123456789012:event-busv2/orders/abcdefghij0123456789abcde";

#[test]
fn a_route_targets_a_custom_event_bus_by_its_arn() {
    let text = MINIMAL.replace(
        "event_bus_name = \"bus\"",
        &format!("event_bus_arn = \"{BUS_ARN}\""),
    );
    let c = Config::from_toml(&text).expect("valid");
    assert_eq!(
        c.routes[0].route.target().bus,
        crate::pipeline::Bus::Custom(BUS_ARN.into())
    );
    // Custom Event Bus routes only: up to 100 entries per call.
    let hundred = format!("[publisher]\nmax_batch_entries = 100\n{text}");
    assert!(Config::from_toml(&hundred).is_ok());
}

#[test]
fn a_bad_bus_target_is_refused_naming_its_key() {
    let classic_arn = MINIMAL.replace(
        "event_bus_name = \"bus\"",
        "event_bus_arn = \"arn:aws:events:us-east-1:123456789012:event-bus/orders\"",
    );
    let err = Config::from_toml(&classic_arn).expect_err("a classic ARN");
    assert_eq!(keys(&err), vec!["routes[0].event_bus_arn"]);
    assert!(err.to_string().contains("classic event bus ARN"), "{err}");

    let both = MINIMAL.replace(
        "event_bus_name = \"bus\"",
        &format!("event_bus_name = \"bus\"\nevent_bus_arn = \"{BUS_ARN}\""),
    );
    let err = Config::from_toml(&both).expect_err("both");
    assert_eq!(keys(&err), vec!["routes[0]"]);
    assert!(err.to_string().contains("not both"), "{err}");

    let neither = MINIMAL.replace("event_bus_name = \"bus\"\n", "");
    let err = Config::from_toml(&neither).expect_err("neither");
    assert!(err.to_string().contains("missing target"), "{err}");
}

#[test]
fn the_otlp_endpoint_must_be_plain_http() {
    let ok = format!("{MINIMAL}\n[telemetry]\notlp_endpoint = \"http://localhost:4318\"\n");
    let c = Config::from_toml(&ok).expect("valid");
    assert_eq!(
        c.telemetry.otlp_endpoint.as_deref(),
        Some("http://localhost:4318")
    );
    assert_eq!(
        Config::from_toml(MINIMAL)
            .expect("valid")
            .telemetry
            .otlp_endpoint,
        None
    );
    let bad = format!("{MINIMAL}\n[telemetry]\notlp_endpoint = \"https://collector:4318\"\n");
    let err = Config::from_toml(&bad).expect_err("https");
    assert_eq!(keys(&err), vec!["telemetry.otlp_endpoint"]);
}

#[test]
fn trace_context_field_is_for_unmarshall_routes() {
    let text = MINIMAL.replace(
        "unmarshall = \"NewImage\"",
        "template = '{\"t\": <outbox.traceparent>}'\ntrace_context_field = \"traceparent\"",
    );
    let err = Config::from_toml(&text).expect_err("a template route");
    assert_eq!(keys(&err), vec!["routes[0].trace_context_field"]);
    assert!(err.to_string().contains("<outbox.traceparent>"), "{err}");
    let ok = MINIMAL.replace(
        "unmarshall = \"NewImage\"",
        "unmarshall = \"NewImage\"\ntrace_context_field = \"traceparent\"",
    );
    let ok = ok.replace(
        "table_name = \"EventsTable\"",
        "table_name = \"EventsTable\"\ntrace_context_attribute = \"traceparent\"",
    );
    let c = Config::from_toml(&ok).expect("valid");
    assert_eq!(
        c.source.trace_context_attribute.as_deref(),
        Some("traceparent")
    );
}

#[test]
fn more_than_ten_entries_per_call_needs_every_route_on_a_custom_event_bus() {
    let text = format!("[publisher]\nmax_batch_entries = 11\n{MINIMAL}");
    let err = Config::from_toml(&text).expect_err("a classic route");
    assert_eq!(keys(&err), vec!["publisher.max_batch_entries"]);
    assert!(
        err.to_string()
            .contains("route \"all\" targets a classic bus"),
        "{err}"
    );
}

#[test]
fn invalid_patterns_are_rejected_naming_route_and_filter() {
    let text = MINIMAL.replace(
        "unmarshall",
        "filters = ['{\"eventName\": [\"INSERT\"]}', '{\"eventName\": \"INSERT\"}']\nunmarshall",
    );
    let err = Config::from_toml(&text).expect_err("second pattern is invalid");
    assert_eq!(keys(&err), vec!["routes[0].filters[1]"]);
}

#[test]
fn source_needs_at_least_one_table_or_stream() {
    let none = MINIMAL.replace("table_name = \"EventsTable\"", "");
    assert_eq!(
        keys(&Config::from_toml(&none).expect_err("none")),
        vec!["source.table_name"]
    );
    let several = MINIMAL.replace(
        "table_name = \"EventsTable\"",
        "table_name = \"T\"\ntable_names = [\"U\", \"T\"]\nstream_arn = \"arn:aws:dynamodb:us-east-1:1:table/V/stream/x\"",
    );
    let c = Config::from_toml(&several).expect("several sources");
    assert_eq!(
        c.source.streams(),
        vec![
            StreamSelector::Table("T".into()),
            StreamSelector::Table("U".into()),
            StreamSelector::Arn("arn:aws:dynamodb:us-east-1:1:table/V/stream/x".into()),
        ],
        "in order, without duplicates"
    );
    let bad_arn = MINIMAL.replace(
        "table_name = \"EventsTable\"",
        "stream_arns = [\"arn:nope\"]",
    );
    assert_eq!(
        keys(&Config::from_toml(&bad_arn).expect_err("bad arn")),
        vec!["source.stream_arns[0]"]
    );
}

#[test]
fn missing_and_empty_routes_are_errors() {
    let no_routes = "[source]\ntable_name = \"T\"\n";
    assert_eq!(
        keys(&Config::from_toml(no_routes).expect_err("no routes")),
        vec!["routes"]
    );
    let empty = "routes = []\n[source]\ntable_name = \"T\"\n";
    assert_eq!(
        keys(&Config::from_toml(empty).expect_err("empty")),
        vec!["routes"]
    );
}

#[test]
fn duplicate_route_names_are_rejected() {
    let text = format!(
        "{MINIMAL}{}",
        &MINIMAL[MINIMAL.find("[[routes]]").expect("has routes")..]
    );
    assert_eq!(
        keys(&Config::from_toml(&text).expect_err("dup")),
        vec!["routes[1].name"]
    );
}

#[test]
fn environment_variables_override_file_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, MINIMAL).expect("write");
    let env = config::Map::from([
        (
            "OUTBOX_RELAY__SOURCE__TABLE_NAME".to_owned(),
            "Other".to_owned(),
        ),
        (
            "OUTBOX_RELAY__AWS__ENDPOINT_URL".to_owned(),
            "http://127.0.0.1:1".to_owned(),
        ),
        (
            "OUTBOX_RELAY__LEASES__LEASE_DURATION".to_owned(),
            "30s".to_owned(),
        ),
    ]);
    let c = Config::load_with_env(&path, Some(env)).expect("valid");
    assert_eq!(c.source.table_name.as_deref(), Some("Other"));
    assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:1"));
    assert_eq!(c.leases.lease_duration, Duration::from_secs(30));
}

#[test]
fn a_missing_file_is_one_clear_error() {
    let err = Config::load(Path::new("/nonexistent/relay.toml")).expect_err("missing");
    assert_eq!(keys(&err), vec!["file"]);
    assert!(err.to_string().contains("/nonexistent/relay.toml"));
}

#[test]
fn the_shipped_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = Config::load_with_env(&path, Some(config::Map::new())) {
                panic!("{} is invalid: {e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "expected local, outbox and cdc configs, found {checked}"
    );
}

#[test]
fn a_route_may_be_limited_to_configured_sources_only() {
    let ok = MINIMAL
        .replace(
            "table_name = \"EventsTable\"",
            "table_names = [\"A\", \"B\"]",
        )
        .replace("unmarshall", "sources = [\"B\"]\nunmarshall");
    let c = Config::from_toml(&ok).expect("valid");
    assert_eq!(c.routes[0].sources, vec!["B".to_owned()]);
    let bad = ok.replace("sources = [\"B\"]", "sources = [\"C\"]");
    assert_eq!(
        keys(&Config::from_toml(&bad).expect_err("unknown source")),
        vec!["routes[0].sources[0]"]
    );
}

#[test]
fn a_template_that_renders_a_string_is_rejected_with_the_reason() {
    for template in ["'Hello <$.eventName>'", r#"'"Hello, <$.eventName>"'"#] {
        let text = MINIMAL.replace(
            "unmarshall = \"NewImage\"",
            &format!("template = {template}"),
        );
        assert_ne!(text, MINIMAL, "MINIMAL uses unmarshall");
        let err = Config::from_toml(&text).expect_err(template);
        assert_eq!(keys(&err), vec!["routes[0].template"], "{template}");
        assert!(err.to_string().contains("must be a JSON object"), "{err}");
    }
}

#[test]
fn endpoints_must_be_urls_and_per_service_ones_are_read() {
    let c = Config::from_toml(&format!(
        "{MINIMAL}\n[aws]\nendpoint_url = \"http://127.0.0.1:5000\"\n[aws.endpoints]\neventbridge = \"https://vpce-1.events.us-east-1.vpce.amazonaws.com\"\n"
    ))
    .expect("valid");
    assert_eq!(
        c.aws.endpoints.eventbridge.as_deref(),
        Some("https://vpce-1.events.us-east-1.vpce.amazonaws.com")
    );
    assert_eq!(c.aws.endpoints.dynamodb, None);
    let err = Config::from_toml(&format!(
        "{MINIMAL}\n[aws]\nendpoint_url = \"localhost\"\n[aws.endpoints]\nsqs = \"ftp://x\"\nkinesis = \"http://x\"\n"
    ))
    .expect_err("bad endpoints");
    let keys = keys(&err);
    assert!(keys.contains(&"aws.endpoints.kinesis"), "{keys:?}");
}

#[test]
fn endpoint_urls_are_checked() {
    let err = Config::from_toml(&format!(
        "{MINIMAL}\n[aws]\nendpoint_url = \"localhost\"\n[aws.endpoints]\nsqs = \"ftp://x\"\n"
    ))
    .expect_err("bad endpoints");
    assert_eq!(keys(&err), ["aws.endpoint_url", "aws.endpoints.sqs"]);
}

#[test]
fn worker_threads_is_a_positive_count() {
    let with = |value: &str| {
        Config::from_toml(&format!("{MINIMAL}\n[runtime]\nworker_threads = {value}\n"))
    };
    let c = with("1").expect("valid");
    assert_eq!(
        c.runtime.worker_threads.map(std::num::NonZeroUsize::get),
        Some(1)
    );
    for bad in ["0", "-1", "\"two\""] {
        let err = with(bad).expect_err(bad);
        assert_eq!(keys(&err), ["runtime.worker_threads"], "{bad}: {err}");
    }
}

#[test]
fn pipelining_keys_are_checked_against_each_other() {
    let text = MINIMAL.replace(
        "table_name = \"EventsTable\"",
        "table_name = \"EventsTable\"\nread_ahead_records = 10\nread_ahead_bytes = 100",
    )
        + "\n[leases]\ncheckpoint_interval = \"30s\"\n[publisher]\nmax_in_flight_per_shard = 0\n";
    let err = Config::from_toml(&text).expect_err("bad");
    let keys = keys(&err);
    for key in [
        "source.read_ahead_records",
        "source.read_ahead_bytes",
        "leases.checkpoint_interval",
        "publisher.max_in_flight_per_shard",
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    let c = Config::from_toml(MINIMAL).expect("valid");
    assert_eq!(c.publisher.max_in_flight_per_shard.get(), 10);
    assert_eq!(c.leases.checkpoint_interval, Duration::from_secs(1));
    assert_eq!(c.source.read_ahead_records, 2000);
    assert_eq!(c.source.busy_poll_interval, Duration::from_millis(250));
}

#[test]
fn a_view_type_without_a_read_image_is_a_problem_naming_the_route_and_key() {
    use crate::pipeline::StreamViewType;
    let text = format!(
        "{MINIMAL}\n[[routes]]\nname = \"removed\"\nfilters = ['{{\"dynamodb\": {{\"OldImage\": {{\"pk\": [{{\"exists\": true}}]}}}}}}']\nevent_bus_name = \"bus\"\nsource = \"Demo\"\ndetail_type = \"Removed\"\ntemplate = '{{\"k\": <$.Keys.pk>}}'\n"
    );
    let c = Config::from_toml(&text).expect("valid");
    let table = StreamSelector::Table("EventsTable".into());
    let problems = c.view_type_problems(&table, StreamViewType::KeysOnly);
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["routes[0].unmarshall", "routes[1].filters[0]"]);
    assert!(
        problems[0].reason.contains("route \"all\" reads NewImage")
            && problems[0].reason.contains("StreamViewType KEYS_ONLY")
            && problems[0]
                .reason
                .contains("NEW_IMAGE or NEW_AND_OLD_IMAGES"),
        "{}",
        problems[0]
    );
    assert_eq!(
        c.view_type_problems(&table, StreamViewType::NewImage)
            .iter()
            .map(|p| p.key.as_str())
            .collect::<Vec<_>>(),
        ["routes[1].filters[0]"]
    );
    assert!(c
        .view_type_problems(&table, StreamViewType::NewAndOldImages)
        .is_empty());
}

#[test]
fn list_keys_are_set_from_the_environment_split_at_commas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, MINIMAL).expect("write");
    let env = config::Map::from([(
        "OUTBOX_RELAY__SOURCE__TABLE_NAMES".to_owned(),
        "Orders,Payments".to_owned(),
    )]);
    let c = Config::load_with_env(&path, Some(env)).expect("valid");
    assert_eq!(c.source.table_names, ["Orders", "Payments"]);
    assert_eq!(
        c.source.streams(),
        ["EventsTable", "Orders", "Payments"].map(|t| StreamSelector::Table(t.into()))
    );
    // A scalar key is not split.
    let env = config::Map::from([(
        "OUTBOX_RELAY__SOURCE__TABLE_NAME".to_owned(),
        "A,B".to_owned(),
    )]);
    let c = Config::load_with_env(&path, Some(env)).expect("valid");
    assert_eq!(c.source.table_name.as_deref(), Some("A,B"));
}

#[test]
fn a_misspelt_key_hides_nothing_beside_it() {
    // Four independent mistakes: two misspelt keys in [source], a misspelt optional key and an
    // invalid filter in one route.
    let text = r#"
[source]
tabel_name = "EventsTable"
poll_intervall = "1s"
table_name = "EventsTable"

[[routes]]
name = "all"
filters = ['{"eventName": [INSERT]}']
event_bus_name = "bus"
source = "Demo"
detail_type = "Changed"
unmarshall = "NewImage"
resourcs = ["arn:aws:dynamodb:us-east-1:1:table/EventsTable"]
"#;
    let err = Config::from_toml(text).expect_err("broken");
    let mut keys = keys(&err);
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "routes[0].filters[0]",
            "routes[0].resourcs",
            "source.poll_intervall",
            "source.tabel_name",
        ],
        "{err}"
    );
}

#[test]
fn a_required_key_with_a_bad_value_is_one_problem_not_two() {
    let text = MINIMAL.replace("source = \"Demo\"", "source = [1]");
    let err = Config::from_toml(&text).expect_err("broken");
    assert_eq!(keys(&err), ["routes[0].source"], "{err}");
}

#[test]
fn an_idle_poll_ceiling_is_optional_and_at_least_the_poll_interval() {
    let c = Config::from_toml(MINIMAL).expect("valid");
    assert_eq!(c.source.idle_poll_interval, None, "unset: no backoff");
    let set = MINIMAL.replace("[source]\n", "[source]\nidle_poll_interval = \"30s\"\n");
    let c = Config::from_toml(&set).expect("valid");
    assert_eq!(c.source.idle_poll_interval, Some(Duration::from_secs(30)));
    let below = MINIMAL.replace(
        "[source]\n",
        "[source]\npoll_interval = \"2s\"\nidle_poll_interval = \"500ms\"\n",
    );
    let err = Config::from_toml(&below).expect_err("below poll_interval");
    assert_eq!(keys(&err), vec!["source.idle_poll_interval"]);
    assert!(
        err.0[0].to_string().contains("at least poll_interval (2s)"),
        "{err}"
    );
}

#[test]
fn a_cloudevents_route_is_checked_at_start_up_naming_each_key() {
    let custom = MINIMAL.replace(
        "event_bus_name = \"bus\"",
        &format!("event_bus_arn = \"{BUS_ARN}\""),
    );
    let good = custom.replace(
        "unmarshall = \"NewImage\"",
        "unmarshall = \"NewImage\"\nformat = \"cloudevents\"\nsubject = \"<$.NewImage.id>\"\n\
         metadata = { tenant = \"<$.NewImage.tenant>\" }",
    );
    let c = Config::from_toml(&good).expect("valid");
    assert_eq!(
        c.routes[0].route.format(),
        crate::pipeline::EventFormat::CloudEvents
    );
    assert!(c.routes[0].route.publishes_raw());

    let bad = custom
        .replace("source = \"Demo\"", "source = \"my demo\"")
        .replace(
            "unmarshall = \"NewImage\"",
            "unmarshall = \"NewImage\"\nformat = \"cloudevents\"\n\
             metadata = { \"a/b\" = \"x\", traceparent = \"<$.NewImage.tp>\" }",
        );
    let err = Config::from_toml(&bad).expect_err("refused");
    assert_eq!(
        keys(&err),
        vec![
            "routes[0].source",
            "routes[0].metadata.a/b",
            "routes[0].metadata.traceparent"
        ]
    );
    assert!(err.to_string().contains("URI-reference"), "{err}");

    // Metadata needs PutRawEvents: a cloudevents route on a Custom Event Bus.
    let classic = MINIMAL.replace(
        "unmarshall = \"NewImage\"",
        "unmarshall = \"NewImage\"\nformat = \"cloudevents\"\nmetadata = { k = \"v\" }",
    );
    let err = Config::from_toml(&classic).expect_err("refused");
    assert_eq!(keys(&err), vec!["routes[0].metadata"]);
    let unknown = MINIMAL.replace(
        "unmarshall = \"NewImage\"",
        "unmarshall = \"NewImage\"\nformat = \"avro\"",
    );
    let err = Config::from_toml(&unknown).expect_err("refused");
    assert_eq!(keys(&err), vec!["routes[0].format"]);
    assert!(
        err.to_string()
            .contains(r#"unknown format "avro": expected "eventbridge" or "cloudevents""#),
        "{err}"
    );

    // A tracestate travels with its traceparent.
    let state = MINIMAL.replace(
        "table_name = \"EventsTable\"",
        "table_name = \"EventsTable\"\ntrace_state_attribute = \"tracestate\"",
    );
    let err = Config::from_toml(&state).expect_err("refused");
    assert_eq!(keys(&err), vec!["source.trace_state_attribute"]);
}
