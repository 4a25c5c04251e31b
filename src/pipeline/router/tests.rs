use super::*;
use crate::pipeline::route::{DetailSpec, Route, RouteSpec, Target};
use serde_json::json;

fn router(specs: Vec<RouteSpec>) -> Router {
    let routes = specs
        .into_iter()
        .map(|s| Route::compile(s).expect("valid route"))
        .collect();
    Router::new(routes).expect("valid patterns")
}

/// A route to bus `bus` (`Source` `S`, `DetailType` `D`) unless changed by the caller.
fn spec(name: &str, filters: &[&str], detail: DetailSpec) -> RouteSpec {
    RouteSpec {
        name: name.to_owned(),
        filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        target: Target {
            bus: Bus::Classic("bus".into()),
            source: "S".into(),
            detail_type: "D".into(),
            resources: Vec::new(),
        },
        detail,
        expand_json: Vec::new(),
        ordering_key: None,
        format: crate::pipeline::EventFormat::EventBridge,
        subject: None,
        metadata: Vec::new(),
    }
}

fn unmarshall(image: ImageSelector) -> DetailSpec {
    DetailSpec::Unmarshall {
        image,
        event_id_field: "eventId".into(),
        trace_context_field: "traceparent".into(),
    }
}

fn template(text: &str) -> DetailSpec {
    DetailSpec::Template(text.to_owned())
}

fn insert(event_type: &str) -> Value {
    json!({
        "eventID": "rec-1",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_700_000_000,
            "Keys": {"pk": {"S": "evt-9"}, "sk": {"S": "BookAdded"}},
            "NewImage": {
                "pk": {"S": "evt-9"},
                "sk": {"S": "BookAdded"},
                "eventType": {"S": event_type},
                "eventData": {"M": {"name": {"S": "Dune"}, "year": {"N": "1965"},
                                    "authors": {"L": [{"S": "Frank Herbert"}]}}}
            },
            "SequenceNumber": "100"
        }
    })
}

/// `added` (BookAdded INSERTs, unmarshalled) and `audit` (every record, templated).
fn two_routes() -> Vec<RouteSpec> {
    let mut added = spec(
        "added",
        &[
            r#"{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"eventType": {"S": ["BookAdded"]}}}}"#,
        ],
        unmarshall(ImageSelector::NewImage),
    );
    added.target.source = "OutboxDemo.Books".into();
    added.target.detail_type = "BookAdded".into();
    let mut audit = spec(
        "audit",
        &[],
        template(
            r#"{"id": <outbox.event-id>, "kind": "<$.eventName>", "route": "<aws.pipes.pipe-name>"}"#,
        ),
    );
    audit.target.bus = Bus::Classic("audit-bus".into());
    audit.target.source = "Audit".into();
    audit.target.detail_type = "Change".into();
    vec![added, audit]
}

#[test]
fn one_record_fans_out_to_every_matching_route_in_route_order() {
    let r = router(two_routes());
    let entries: Vec<Entry> = r
        .route(&insert("BookAdded"), "arn:s", "evt-9", None)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("renders");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].route, 0);
    assert_eq!(&*entries[0].detail_type, "BookAdded");
    let detail: Value = serde_json::from_str(&entries[0].detail).expect("json");
    assert_eq!(
        detail,
        json!({"pk": "evt-9", "sk": "BookAdded", "eventType": "BookAdded",
               "eventData": {"name": "Dune", "year": 1965, "authors": ["Frank Herbert"]},
               "eventId": "evt-9"})
    );
    assert_eq!(entries[1].bus, Bus::Classic("audit-bus".into()));
    let audit: Value = serde_json::from_str(&entries[1].detail).expect("json");
    assert_eq!(
        audit,
        json!({"id": "evt-9", "kind": "INSERT", "route": "audit"})
    );
}

#[test]
fn a_record_matching_no_filter_only_reaches_unfiltered_routes() {
    let r = router(two_routes());
    let results = r.route(&insert("BookRemoved"), "arn:s", "evt-9", None);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].as_ref().expect("renders").route, 1);
}

#[test]
fn only_the_whole_records_detail_is_checked_per_record() {
    // A detail template's shape is proven at start-up: every rendering is an object.
    let proven = router(vec![spec(
        "proven",
        &[],
        template(r#"{"e": <aws.pipes.event>}"#),
    )]);
    let Detail::Template(t) = proven.routes()[0].detail() else {
        panic!("a template");
    };
    assert!(t.renders_object());
    // `<aws.pipes.event>` alone renders the record itself, which the record decides: one that
    // is not an object (a hand-made record, as test-route takes) is a route error.
    let whole = router(vec![spec("whole", &[], template("<aws.pipes.event>"))]);
    let Detail::Template(t) = whole.routes()[0].detail() else {
        panic!("a template");
    };
    assert!(!t.renders_object());
    assert!(whole.route(&insert("BookAdded"), "arn:s", "evt-9", None)[0].is_ok());
    let results = whole.route(&json!(["not", "an", "object"]), "arn:s", "evt-9", None);
    assert!(matches!(
        &results[0],
        Err(RouteError::DetailNotJsonObject { .. })
    ));
}

#[test]
fn a_record_gets_its_streams_arn_where_routing_reads_it() {
    use crate::pipeline::RecordPolicy;
    // A record as test-route or backfill takes it: no `eventSourceARN` of its own.
    let record = insert("BookAdded");
    assert!(record.get("eventSourceARN").is_none());
    let policy = RecordPolicy::default();
    let route = |specs| {
        let router = router(specs);
        let routed = policy.route(
            &router,
            &mut record.clone(),
            ImageTexts::default(),
            "arn:s",
            None,
        );
        (router.reads_source_arn(), routed.results)
    };
    // A filter and a template that name it, and the whole record, read the stream's ARN.
    let (reads, results) = route(vec![spec(
        "from-stream",
        &[r#"{"eventSourceARN": [{"prefix": "arn:"}]}"#],
        template(r#"{"stream": <$.eventSourceARN>}"#),
    )]);
    assert!(reads);
    let entry = results[0].as_ref().expect("rendered");
    assert_eq!(entry.detail, r#"{"stream": "arn:s"}"#);
    let (reads, results) = route(vec![spec("whole", &[], template("<aws.pipes.event>"))]);
    assert!(reads);
    let detail: Value =
        serde_json::from_str(&results[0].as_ref().expect("rendered").detail).expect("json");
    assert_eq!(detail["eventSourceARN"], "arn:s");
    // Routes that do not read it leave the record's tree as it is (the window drops the tree
    // after routing; a dead letter's copy gets the ARN of its own, `Window::letter`).
    let (reads, results) = route(two_routes());
    assert!(!reads);
    assert_eq!(results.len(), 2);
}

#[test]
fn unmarshalling_an_absent_image_is_a_route_error() {
    let r = router(vec![spec("old", &[], unmarshall(ImageSelector::OldImage))]);
    let results = r.route(&insert("BookAdded"), "arn:s", "evt-9", None);
    assert!(matches!(
        &results[0],
        Err(RouteError::ImageMissing {
            image: "OldImage",
            ..
        })
    ));
}

#[test]
fn an_entry_over_256_kib_is_rejected_before_publishing() {
    let r = router(vec![spec("big", &[], unmarshall(ImageSelector::NewImage))]);
    let mut record = insert("BookAdded");
    record["dynamodb"]["NewImage"]["blob"] =
        json!({"S": "x".repeat(crate::pipeline::batch::MAX_REQUEST_BYTES)});
    let results = r.route(&record, "arn:s", "evt-9", None);
    assert!(matches!(&results[0], Err(RouteError::EntryTooLarge { .. })));
}

#[test]
fn the_stable_event_id_prefers_the_outbox_attribute_then_the_record_id() {
    let record = insert("BookAdded");
    assert_eq!(stable_event_id(&record, Some("pk")), "evt-9");
    assert_eq!(stable_event_id(&record, Some("missing")), "rec-1");
    assert_eq!(stable_event_id(&record, None), "rec-1");
}

/// The seed's outbox row keeps its payload as JSON text in a string attribute.
fn insert_with_json_text(event_data: &str) -> Value {
    json!({
        "eventID": "rec-2",
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"pk": {"S": "evt-10"}},
            "NewImage": {
                "pk": {"S": "evt-10"},
                "eventType": {"S": "BookAdded"},
                "eventData": {"S": event_data}
            },
            "SequenceNumber": "101"
        }
    })
}

/// `plain` (unmarshalled) and `templated`, both expanding `eventData`.
fn expanding_routes() -> Vec<RouteSpec> {
    let mut plain = spec("plain", &[], unmarshall(ImageSelector::NewImage));
    let mut templated = spec(
        "templated",
        &[],
        template(
            r#"{"name": <$.NewImage.eventData.name>, "first": "<$.NewImage.eventData.authors[0]>"}"#,
        ),
    );
    plain.expand_json = vec!["eventData".into()];
    templated.expand_json = vec!["eventData".into()];
    vec![plain, templated]
}

#[test]
fn expand_json_parses_a_json_document_held_in_a_string_attribute() {
    let r = router(expanding_routes());
    let record =
        insert_with_json_text(r#"{"name": "Dune", "year": 1965, "authors": ["Frank Herbert"]}"#);
    let entries: Vec<Entry> = r
        .route(&record, "arn", "evt-10", None)
        .into_iter()
        .map(|e| e.expect("renders"))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&entries[0].detail).expect("json"),
        json!({"pk": "evt-10", "eventType": "BookAdded", "eventId": "evt-10",
               "eventData": {"name": "Dune", "year": 1965, "authors": ["Frank Herbert"]}})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&entries[1].detail).expect("json"),
        json!({"name": "Dune", "first": "Frank Herbert"})
    );
}

#[test]
fn an_attribute_to_expand_that_is_not_json_is_a_route_error_for_each_route() {
    let r = router(expanding_routes());
    let results = r.route(&insert_with_json_text("not json {"), "arn", "evt-10", None);
    assert_eq!(results.len(), 2);
    for result in results {
        let err = result.expect_err("poison");
        assert_eq!(err.code(), "ExpandJsonFailed");
        assert!(
            err.to_string()
                .contains("NewImage.eventData is not a JSON document"),
            "{err}"
        );
    }
}

const CUSTOM_BUS: &str =
    "arn:aws:events:us-east-1:123456789012:event-busv2/books/abcdefghij0123456789abcde";

/// A route to the Custom Event Bus, ordered by `ordering_key`.
fn custom(name: &str, ordering_key: &str) -> RouteSpec {
    let mut s = spec(name, &[], unmarshall(ImageSelector::NewImage));
    s.target.bus = Bus::Custom(CUSTOM_BUS.into());
    s.ordering_key = Some(ordering_key.to_owned());
    s
}

#[test]
fn a_custom_bus_entry_carries_its_group_and_dedup_ids_and_shares_calls_only_with_its_bus() {
    let mut other = custom("other", "<$.NewImage.sk>");
    other.target.bus = Bus::Custom(CUSTOM_BUS.replace("books", "audit").into());
    let r = router(vec![
        custom("books", "<$.NewImage.eventData.name>"),
        spec("classic", &[], unmarshall(ImageSelector::NewImage)),
        other,
        custom("books-too", "<$.NewImage.sk>"),
    ]);
    let entries: Vec<Entry> = r
        .route(&insert("BookAdded"), "arn:s", "evt-9", None)
        .into_iter()
        .map(|e| e.expect("renders"))
        .collect();
    assert_eq!(entries[0].ordering_key, "Dune");
    assert_eq!(entries[0].event_id, "evt-9");
    let shown = entries[0].request_json();
    assert_eq!(shown["EventBusArn"], CUSTOM_BUS);
    assert_eq!(shown["SystemMetadata"]["EventGroupId"], "Dune");
    assert_eq!(shown["SystemMetadata"]["DeduplicationId"], "evt-9");
    // Lanes: every classic route shares lane 0; each Custom Event Bus has its own.
    let lanes: Vec<u32> = (0..4).map(|i| r.call_lane(i)).collect();
    assert_eq!(lanes, [1, 0, 2, 1]);
}

#[test]
fn an_item_key_is_its_plain_key_values_joined_read_from_the_tree_or_the_text() {
    use crate::pipeline::pattern::fields::Parsed;
    use crate::pipeline::RecordPolicy;
    let mut expanded = spec("expanded", &[], template(r#"{"a": 1}"#));
    expanded.expand_json = vec!["doc".into()];
    let routers = [
        router(vec![spec("plain", &[], template(r#"{"a": 1}"#))]),
        router(vec![expanded]),
    ];
    let key_of = |keys: Value, router: &Router| -> [String; 2] {
        let mut record = insert("BookAdded");
        record["dynamodb"]["Keys"] = keys;
        let policy = RecordPolicy::default();
        let whole = policy.route(
            router,
            &mut record.clone(),
            ImageTexts::default(),
            "arn:s",
            None,
        );
        let text = record.to_string();
        let Parsed { mut tree, images } = policy.reads(router).parse(&text).expect("json");
        // The item key is read only unmarshalled: `Keys` is kept as text.
        assert!(images.get(ImageSelector::Keys).is_some());
        let read = policy.route(router, &mut tree, images, "arn:s", None);
        [whole, read].map(|routed| {
            routed.results[0]
                .as_ref()
                .expect("renders")
                .ordering_key
                .clone()
        })
    };
    let strings = json!({"pk": {"S": "evt-9"}, "sk": {"B": "AQ=="}, "a\"q": {"S": "x#\"y"}});
    let number = json!({"pk": {"S": "evt-9"}, "n": {"N": "0012.50"}});
    let doc = json!({"doc": {"S": "{ \"b\" : [1, 2] }"}, "pk": {"S": "evt-9"}});
    for r in &routers {
        assert_eq!(
            key_of(strings.clone(), r),
            ["x#\"y#evt-9#AQ==", "x#\"y#evt-9#AQ=="].map(String::from)
        );
        // Not every value a string: the plain `Keys`' way, numbers as their JSON.
        let n = number_text("0012.50");
        assert_eq!(
            key_of(number.clone(), r),
            [format!("{n}#evt-9"), format!("{n}#evt-9")]
        );
    }
    // A key attribute the route expands is the parsed document's JSON, not the string.
    assert_eq!(
        key_of(doc.clone(), &routers[1]),
        [r#"{"b":[1,2]}#evt-9"#, r#"{"b":[1,2]}#evt-9"#].map(String::from)
    );
    assert_eq!(
        key_of(doc, &routers[0]),
        [r#"{ "b" : [1, 2] }#evt-9"#, r#"{ "b" : [1, 2] }#evt-9"#].map(String::from)
    );
}

/// The JSON text of the plain number a typed `N` holding `n` becomes.
fn number_text(n: &str) -> String {
    crate::pipeline::unmarshall::value(&json!({"N": n}), "n")
        .expect("a number")
        .to_string()
}

#[test]
fn a_group_or_dedup_id_out_of_bounds_dead_letters_the_entry_with_the_reason() {
    let r = router(vec![
        custom("empty-group", "<$.NewImage.missing>"),
        custom("long-group", "<$.NewImage.eventData.name>"),
    ]);
    let mut record = insert("BookAdded");
    record["dynamodb"]["NewImage"]["missing"] = json!({"S": ""});
    record["dynamodb"]["NewImage"]["eventData"]["M"]["name"] = json!({"S": "x".repeat(129)});
    let results = r.route(&record, "arn:s", "evt-9", None);
    // An empty key is refused when rendered (for every bus); an over-long one by the bus.
    let empty = results[0].as_ref().expect_err("refused");
    assert_eq!(empty.code(), "OrderingKeyFailed", "{empty}");
    let long = results[1].as_ref().expect_err("refused");
    assert_eq!(long.code(), "SystemIdInvalid");
    let text = long.to_string();
    assert!(
        text.contains("EventGroupId") && text.contains("is 129 characters"),
        "{text}"
    );
    // A dedup id of spaces (an outbox row whose id is blank).
    let r = router(vec![custom("books", "<$.NewImage.sk>")]);
    let results = r.route(&insert("BookAdded"), "arn:s", "   ", None);
    let err = results[0].as_ref().expect_err("refused");
    assert!(err.to_string().contains("DeduplicationId"), "{err}");
    assert!(err.to_string().contains("only whitespace"), "{err}");
}

#[test]
fn a_records_trace_goes_into_the_trace_header_the_template_and_the_unmarshalled_detail() {
    let trace = crate::pipeline::TraceContext::from_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "traceparent",
    )
    .expect("valid");
    let r = router(vec![
        spec("plain", &[], unmarshall(ImageSelector::NewImage)),
        spec(
            "templated",
            &[],
            template(r#"{"trace": <outbox.traceparent>, "in": "t=<outbox.traceparent>"}"#),
        ),
        custom("custom", "<$.NewImage.sk>"),
    ]);
    let entries: Vec<Entry> = r
        .route_traced(
            &insert("BookAdded"),
            ImageTexts::default(),
            "arn:s",
            "evt-9",
            None,
            Some(&trace),
        )
        .into_iter()
        .map(|e| e.expect("renders"))
        .collect();
    let detail = |i: usize| serde_json::from_str::<Value>(&entries[i].detail).expect("json");
    assert_eq!(detail(0)["traceparent"], trace.traceparent.as_str());
    assert_eq!(detail(0)["eventId"], "evt-9", "both fields added");
    assert_eq!(
        entries[0].request_json()["TraceHeader"],
        "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
    );
    assert_eq!(detail(1)["trace"], trace.traceparent.as_str());
    assert_eq!(detail(1)["in"], format!("t={}", trace.traceparent));
    // The Custom Event Bus has no trace header: the detail carries it.
    assert_eq!(detail(2)["traceparent"], trace.traceparent.as_str());
    assert!(entries[2].request_json().get("TraceHeader").is_none());

    // Without a trace: nothing added, the template renders null.
    let plain: Vec<Entry> = r
        .route(&insert("BookAdded"), "arn:s", "evt-9", None)
        .into_iter()
        .map(|e| e.expect("renders"))
        .collect();
    let untraced: Value = serde_json::from_str(&plain[0].detail).expect("json");
    assert!(untraced.get("traceparent").is_none());
    assert!(plain[0].trace.is_none());
    let templated: Value = serde_json::from_str(&plain[1].detail).expect("json");
    assert_eq!(templated["trace"], Value::Null);
}

/// A `cloudevents` route to the Custom Event Bus, ordered by `<$.NewImage.sk>`.
fn cloudevents_route(name: &str) -> RouteSpec {
    let mut s = custom(name, "<$.NewImage.sk>");
    s.format = crate::pipeline::EventFormat::CloudEvents;
    s.target.source = "/books/api".into();
    s.subject = Some("book/<$.NewImage.sk>".into());
    s.metadata = vec![("kind".into(), "<$.NewImage.eventType>".into())];
    s
}

#[test]
fn a_cloudevents_route_publishes_a_cloudevent_raw_on_a_custom_bus_and_as_detail_on_a_classic_one() {
    use cloudevents::AttributesReader;
    let mut trace = crate::pipeline::TraceContext::from_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "traceparent",
    )
    .expect("valid");
    trace.tracestate = Some("rojo=1".into());
    let mut classic = cloudevents_route("classic-ce");
    classic.target.bus = Bus::Classic("bus".into());
    classic.metadata.clear();
    let r = router(vec![
        cloudevents_route("raw"),
        classic,
        custom("plain", "<$.NewImage.sk>"),
    ]);
    let created = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_928_800);
    let entries: Vec<Entry> = r
        .route_traced(
            &insert("BookAdded"),
            ImageTexts::default(),
            "arn:s",
            "evt-9",
            Some(created),
            Some(&trace),
        )
        .into_iter()
        .map(|e| e.expect("renders"))
        .collect();
    let (raw, classic, plain) = (&entries[0], &entries[1], &entries[2]);
    for entry in [raw, classic] {
        let event: cloudevents::Event = serde_json::from_str(&entry.detail).expect("a CloudEvent");
        assert_eq!(event.id(), "evt-9");
        assert_eq!(event.source().as_str(), "/books/api");
        assert_eq!(event.ty(), "D");
        assert_eq!(event.subject(), Some("book/BookAdded"));
        assert_eq!(event.time().map(|t| t.timestamp()), Some(1_764_928_800));
        let ext = |name: &str| event.extension(name).map(ToString::to_string);
        assert_eq!(ext("partitionkey").as_deref(), Some("BookAdded"));
        assert_eq!(ext("traceparent"), Some(trace.traceparent.clone()));
        assert_eq!(ext("tracestate").as_deref(), Some("rojo=1"));
        let Some(cloudevents::Data::Json(data)) = event.data() else {
            panic!("JSON data: {}", entry.detail);
        };
        assert_eq!(
            data["eventId"], "evt-9",
            "the unmarshalled detail is the data"
        );
    }
    // On the Custom Event Bus: PutRawEvents, the trace and the route's keys in Metadata.
    assert!(raw.is_raw() && !classic.is_raw() && !plain.is_raw());
    let shown = raw.request_json();
    assert_eq!(shown["SystemMetadata"]["ContentType"], "application/json");
    assert_eq!(shown["SystemMetadata"]["EventGroupId"], "BookAdded");
    assert_eq!(shown["SystemMetadata"]["DeduplicationId"], "evt-9");
    assert_eq!(shown["Metadata"]["traceparent"], trace.traceparent.as_str());
    assert_eq!(shown["Metadata"]["tracestate"], "rojo=1");
    assert_eq!(shown["Metadata"]["kind"], "BookAdded");
    assert_eq!(shown["Data"], raw.detail.as_str());
    // On a classic bus: the CloudEvent is the Detail, the trace header stays.
    let shown = classic.request_json();
    assert_eq!(shown["Detail"], classic.detail.as_str());
    assert!(shown["TraceHeader"]
        .as_str()
        .is_some_and(|h| h.starts_with("Root=1-")));
    assert!(classic.metadata.is_empty());
    // PutRawEvents and PutEvents entries of one bus never share a call.
    assert_eq!(
        (0..3).map(|i| r.call_lane(i)).collect::<Vec<_>>(),
        [1, 0, 2]
    );
}

#[test]
fn a_cloudevent_that_cannot_be_made_dead_letters_with_the_attribute_that_failed() {
    let mut no_subject = cloudevents_route("no-subject");
    no_subject.subject = Some("<$.NewImage.missing>".into());
    let mut no_metadata = cloudevents_route("no-metadata");
    no_metadata.metadata = vec![("tenant".into(), "<$.NewImage.missing>".into())];
    let r = router(vec![no_subject, no_metadata, cloudevents_route("fine")]);
    let results = r.route(&insert("BookAdded"), "arn:s", "evt-9", None);
    let subject = results[0].as_ref().expect_err("refused");
    assert_eq!(subject.code(), "CloudEventFailed");
    assert!(
        subject.to_string().contains("CloudEvent subject"),
        "{subject}"
    );
    let metadata = results[1].as_ref().expect_err("refused");
    assert!(
        metadata.to_string().contains("metadata.tenant"),
        "{metadata}"
    );
    assert!(results[2].is_ok());
}

mod reads {
    //! Routing a record parsed with only what routing reads ([`RecordPolicy::reads`], as the
    //! relay's window parses it) gives exactly what routing the whole record gives: every
    //! entry, every error, the event id and the trace context, for records with images of
    //! every shape (malformed ones included) and top-level keys that shadow image paths.
    use super::*;
    use crate::pipeline::pattern::fields::Parsed;
    use crate::pipeline::RecordPolicy;
    use proptest::prelude::*;

    const W3C: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn attribute() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::sample::select(vec!["BookAdded", "Book", "x", ""]).prop_map(|s| json!({"S": s})),
            Just(json!({"S": W3C})),
            prop::sample::select(vec![
                "1965",
                "12345678901234567890.000000000000000001",
                "-0.5"
            ])
            .prop_map(|n| json!({"N": n})),
            Just(json!({"SS": ["a", "b"]})),
            Just(json!({"L": [{"S": "first"}, {"N": "2"}]})),
            Just(json!({"M": {"name": {"S": "Dune"}, "year": {"N": "1965"}}})),
            Just(json!({"BOOL": true})),
            Just(json!({"NULL": true})),
            Just(json!({"S": "{\"doc\": [1, 2.50]}"})),
            Just(json!({"S": "say \"hi\"\n\t\\ é \u{1}"})),
            // Malformed: not DynamoDB JSON.
            Just(json!({"X": 1})),
            Just(json!("bare")),
        ]
    }

    fn image() -> impl Strategy<Value = Value> {
        let names = prop::sample::select(vec![
            "pk",
            "sk",
            "eventType",
            "name",
            "list",
            "payload",
            "traceparent",
            "tracestate",
            "id",
        ]);
        prop_oneof![
            4 => prop::collection::btree_map(names, attribute(), 0..6).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
            1 => Just(json!("not an image")),
        ]
    }

    fn record() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["INSERT", "MODIFY", "REMOVE"]),
            prop::option::of(image()),
            prop::option::of(image()),
            prop::option::of(image()),
            prop::option::of(prop::sample::select(vec![5_i64, 20, 400])),
            prop::option::of(image()),
            any::<bool>(),
        )
            .prop_map(|(name, keys, new, old, size, shadow, id)| {
                let mut ddb = json!({"SequenceNumber": "100", "ApproximateCreationDateTime": 1.5});
                for (field, image) in [("Keys", keys), ("NewImage", new), ("OldImage", old)] {
                    if let Some(image) = image {
                        ddb[field] = image;
                    }
                }
                if let Some(size) = size {
                    ddb["SizeBytes"] = json!(size);
                }
                let mut record =
                    json!({"eventName": name, "awsRegion": "eu-north-1", "dynamodb": ddb});
                if id {
                    record["eventID"] = json!("rec-1");
                }
                // A top-level key named like an image takes the place of `$.NewImage`.
                if let Some(shadow) = shadow {
                    record["NewImage"] = shadow;
                }
                record
            })
    }

    /// Routes reading every part of a record a route can read, besides the whole record.
    fn routes() -> Vec<RouteSpec> {
        let mut expanded = spec("expanded", &[], unmarshall(ImageSelector::OldImage));
        expanded.expand_json = vec!["payload".into()];
        // A template reading an image only unmarshalled, with an attribute to expand: the
        // image is kept as text, and expanded from it.
        let mut expanded_text = spec(
            "expanded-text",
            &[],
            template(r#"{"doc": <$.NewImage.payload>, "old": <$.OldImage>}"#),
        );
        expanded_text.expand_json = vec!["payload".into()];
        let mut keyed = spec(
            "keyed",
            &[r#"{"dynamodb": {"SizeBytes": [{"numeric": [">", 10]}]}}"#],
            template(r#"{"first": <$.dynamodb.NewImage.list.L[0]>, "keys": <$.Keys>}"#),
        );
        keyed.ordering_key = Some("<$.dynamodb.Keys.pk.S>".into());
        // A plain image's attributes and the image itself, in every place a value goes: as
        // JSON, inside a string, and as an ordering key's text (metadata's: the CloudEvents
        // route below).
        let mut shown = spec(
            "shown",
            &[],
            template(
                r#"{"n": <$.NewImage.name>, "title": "Book: <$.NewImage.name> (<$.NewImage.list>, <$.NewImage.eventType>)", "all": <$.NewImage>, "in": "<$.NewImage>", "none": <$.NewImage.absent>}"#,
            ),
        );
        shown.ordering_key = Some("<$.NewImage.name>/<$.NewImage.list>".into());
        vec![
            shown,
            spec(
                "from-stream",
                &[r#"{"eventSourceARN": [{"prefix": "arn:"}]}"#],
                template(r#"{"stream": <$.eventSourceARN>}"#),
            ),
            spec(
                "added",
                &[r#"{"eventName": ["INSERT"]}"#],
                template(
                    r#"{"name": <$.NewImage.name>, "pk": <$.dynamodb.Keys.pk.S>, "at": <aws.pipes.event.ingestion-time>, "id": <outbox.event-id>}"#,
                ),
            ),
            spec(
                "typed",
                &[r#"{"dynamodb": {"NewImage": {"eventType": {"S": [{"prefix": "Book"}]}}}}"#],
                unmarshall(ImageSelector::NewImage),
            ),
            spec(
                "not-removed",
                &[
                    r#"{"eventName": [{"anything-but": "REMOVE"}], "dynamodb": {"OldImage": [{"exists": false}]}}"#,
                ],
                // `exists: false` is confirmed outside quamina: only the confirmation names
                // `OldImage` here.
                template(r#"{"region": <$.awsRegion>}"#),
            ),
            expanded,
            expanded_text,
            keyed,
            {
                let mut c = cloudevents_route("cloudevents");
                c.subject = Some("at/<$.dynamodb.SequenceNumber>".into());
                c.metadata = vec![
                    ("region".into(), "<$.awsRegion>".into()),
                    ("title".into(), "<$.NewImage.eventType>".into()),
                ];
                c
            },
        ]
    }

    /// Each route alone (so what one route reads is not hidden by another reading more), then
    /// all together.
    fn routers() -> Vec<Router> {
        let mut out: Vec<Router> = routes().into_iter().map(|r| router(vec![r])).collect();
        out.push(router(routes()));
        out
    }

    fn policies() -> Vec<RecordPolicy> {
        vec![
            RecordPolicy::default(),
            RecordPolicy {
                event_id_attribute: Some("id".into()),
                trace_context_attribute: Some("traceparent".into()),
                trace_state_attribute: Some("tracestate".into()),
            },
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn routing_what_it_reads_gives_what_routing_the_whole_record_gives(record in record()) {
            let text = record.to_string();
            for router in routers() {
                for policy in policies() {
                    let texts = ImageTexts::default();
                    let whole = policy.route(&router, &mut record.clone(), texts, "arn:s", None);
                    let reads = policy.reads(&router);
                    let Parsed { mut tree, images } = reads.parse(&text).expect("json");
                    let read = policy.route(&router, &mut tree, images, "arn:s", None);
                    prop_assert_eq!(format!("{whole:?}"), format!("{read:?}"), "{}", text);
                }
            }
        }
    }

    #[test]
    fn the_parse_leaves_out_what_no_route_reads() {
        let router = router(vec![spec(
            "added",
            &[r#"{"eventName": ["INSERT"]}"#],
            template(r#"{"name": <$.NewImage.name>}"#),
        )]);
        let record = json!({"eventName": "INSERT", "eventID": "e", "awsRegion": "x",
            "dynamodb": {"NewImage": {"name": {"S": "Dune"}}, "OldImage": {"name": {"S": "old"}},
                         "Keys": {"pk": {"S": "k"}}, "SizeBytes": 9}});
        let text = record.to_string();
        let pruned = RecordPolicy::default()
            .reads(&router)
            .parse(&text)
            .expect("json");
        // `eventName` for the filter, `eventID` for the event id. `NewImage` for the template
        // and `Keys` for the ordering key (the item's key, by default) are read only
        // unmarshalled: each is kept as its text.
        assert_eq!(
            pruned.tree,
            json!({"eventName": "INSERT", "eventID": "e", "dynamodb": {}})
        );
        assert_eq!(
            pruned.images.get(ImageSelector::NewImage),
            Some(r#"{"name":{"S":"Dune"}}"#)
        );
        assert_eq!(
            pruned.images.get(ImageSelector::Keys),
            Some(r#"{"pk":{"S":"k"}}"#)
        );
        assert_eq!(pruned.images.get(ImageSelector::OldImage), None);
    }

    #[test]
    fn an_unmarshalled_image_is_kept_as_text_beside_its_attributes_read_typed() {
        let router = router(vec![spec(
            "added",
            &[r#"{"dynamodb": {"NewImage": {"kind": {"S": ["book"]}}}}"#],
            unmarshall(ImageSelector::NewImage),
        )]);
        let policy = RecordPolicy {
            event_id_attribute: Some("pk".into()),
            ..RecordPolicy::default()
        };
        let record = json!({"eventName": "INSERT", "eventID": "e",
            "dynamodb": {"NewImage": {"pk": {"S": "o-1"}, "kind": {"S": "book"},
                                      "name": {"S": "Dune"}},
                         "Keys": {"pk": {"S": "o-1"}, "sk": {"S": "x"}}, "SizeBytes": 9}});
        let text = record.to_string();
        let pruned = policy.reads(&router).parse(&text).expect("json");
        // The event id and the filter read `NewImage`'s `pk` and `kind` typed: in the tree. The
        // detail is written from the image's text. `Keys` (the ordering key, unmarshalled; the
        // event id, typed) is a key's attributes only: parsed whole, no text kept.
        assert_eq!(
            pruned.tree,
            json!({"eventID": "e", "dynamodb": {
                "NewImage": {"pk": {"S": "o-1"}, "kind": {"S": "book"}},
                "Keys": {"pk": {"S": "o-1"}, "sk": {"S": "x"}}}})
        );
        assert_eq!(
            pruned.images.get(ImageSelector::NewImage),
            Some(r#"{"kind":{"S":"book"},"name":{"S":"Dune"},"pk":{"S":"o-1"}}"#)
        );
        assert_eq!(pruned.images.get(ImageSelector::Keys), None);
    }

    #[test]
    fn the_whole_record_is_read_for_aws_pipes_event() {
        let router = router(vec![spec(
            "all",
            &[],
            template(r#"{"e": <aws.pipes.event>}"#),
        )]);
        let record = json!({"a": [1, 2.50, {"b": null}], "dynamodb": {"SizeBytes": 9}});
        let reads = RecordPolicy::default().reads(&router);
        assert_eq!(reads.parse(&record.to_string()).expect("json").tree, record);
    }
}
