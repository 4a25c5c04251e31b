use super::*;

/// The quamina patterns of each alternative (the whole pattern when nothing needs confirming).
fn expanded(text: &str) -> Vec<Value> {
    Filter::compile(text)
        .expect("valid")
        .alternatives()
        .iter()
        .map(|a| serde_json::from_str(a.prefilter().expect("prefilter")).expect("json"))
        .collect()
}

/// Matches `event` against `pattern` the way the router does (quamina reads the fields the
/// patterns name), and checks that quamina reading the whole event agrees.
pub(super) fn matches(pattern: &str, event: &str) -> bool {
    let filter = Filter::compile(pattern).expect("valid");
    let mut m = Matcher::new();
    m.add(0, &filter).expect("valid");
    let value: Value = serde_json::from_str(event).expect("json event");
    let mut out = Vec::new();
    m.matching(&value, &m.input(&value), &mut out);
    let mut whole = Vec::new();
    m.matching(
        &value,
        &serde_json::to_vec(&value).expect("serializes"),
        &mut whole,
    );
    assert_eq!(
        out, whole,
        "{pattern} on {event}: the fields read vs the whole event"
    );
    !out.is_empty()
}

#[test]
fn rejects_non_json_non_object_and_empty_patterns() {
    assert!(matches!(
        Filter::compile("{not json"),
        Err(PatternError::InvalidJson(_))
    ));
    assert_eq!(Filter::compile("[1]"), Err(PatternError::NotAnObject));
    assert_eq!(Filter::compile("{}"), Err(PatternError::Empty));
}

#[test]
fn rejects_a_value_that_is_not_in_an_array() {
    let err = Filter::compile(r#"{"eventName": "INSERT"}"#).expect_err("invalid");
    assert!(
        err.to_string()
            .starts_with("at eventName: a value must be inside an array"),
        "{err}"
    );
}

#[test]
fn accepts_a_pipes_dynamodb_filter() {
    let f = Filter::compile(
        r#"{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"eventType": {"S": ["BookAdded"]}}}}"#,
    )
    .expect("valid pattern");
    assert_eq!(f.alternatives().len(), 1);
}

// Source of the $or cases: AWS EventBridge user guide, "Content filtering in Amazon
// EventBridge event patterns", section "Or matching" (top-level and nested examples).
#[test]
fn top_level_or_expands_into_one_pattern_per_branch() {
    let p = r#"{"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]}"#;
    assert_eq!(
        expanded(p),
        vec![
            serde_json::json!({"source": ["aws.cloudwatch"]}),
            serde_json::json!({"detail-type": ["CloudWatch Alarm State Change"]}),
        ]
    );
    assert!(matches(
        p,
        r#"{"source": "aws.cloudwatch", "detail-type": "x"}"#
    ));
    assert!(matches(
        p,
        r#"{"source": "other", "detail-type": "CloudWatch Alarm State Change"}"#
    ));
    assert!(!matches(
        p,
        r#"{"source": "other", "detail-type": "other"}"#
    ));
}

#[test]
fn nested_or_combines_with_the_other_fields() {
    let p = r#"{"source": ["aws.payments"], "detail": {"$or": [{"currency": ["USD", "EUR"]}, {"amount": [{"numeric": [">", 100]}]}]}}"#;
    assert_eq!(expanded(p).len(), 2);
    assert!(matches(
        p,
        r#"{"source": "aws.payments", "detail": {"currency": "EUR", "amount": 5}}"#
    ));
    assert!(matches(
        p,
        r#"{"source": "aws.payments", "detail": {"currency": "JPY", "amount": 500}}"#
    ));
    assert!(!matches(
        p,
        r#"{"source": "aws.payments", "detail": {"currency": "JPY", "amount": 5}}"#
    ));
    assert!(!matches(
        p,
        r#"{"source": "aws.other", "detail": {"currency": "USD"}}"#
    ));
}

#[test]
fn or_of_ors_and_fields_shared_at_different_depths_merge() {
    let p = r#"{"detail": {"a": ["1"]}, "$or": [{"detail": {"b": ["2"]}}, {"$or": [{"c": ["3"]}, {"d": ["4"]}]}]}"#;
    let alternatives = expanded(p);
    assert_eq!(alternatives.len(), 3);
    assert_eq!(
        alternatives[0],
        serde_json::json!({"detail": {"a": ["1"], "b": ["2"]}})
    );
    assert!(matches(p, r#"{"detail": {"a": "1"}, "d": "4"}"#));
    assert!(!matches(p, r#"{"detail": {"a": "2"}, "d": "4"}"#));
}

#[test]
fn invalid_or_forms_are_rejected_with_their_path() {
    for (pattern, reason) in [
        (r#"{"$or": [{"a": ["1"]}]}"#, "at least two"),
        (r#"{"$or": {"a": ["1"]}}"#, "takes an array"),
        (r#"{"$or": [{"a": ["1"]}, "b"]}"#, "non-empty object"),
        (r#"{"x": {"$or": [{"a": ["1"]}, {}]}}"#, "non-empty object"),
    ] {
        let err = Filter::compile(pattern).expect_err(pattern);
        assert!(err.to_string().contains(reason), "{pattern}: {err}");
    }
}

#[test]
fn operators_eventbridge_does_not_have_are_rejected() {
    for (pattern, needle) in [
        (
            r#"{"a": [{"regexp": "x+"}]}"#,
            "unknown operator \"regexp\"",
        ),
        (
            r#"{"a": [{"shellstyle": "x*"}]}"#,
            "unknown operator \"shellstyle\"",
        ),
        (
            r#"{"a": [{"prefix": "x", "suffix": "y"}]}"#,
            "exactly one operator",
        ),
        (
            r#"{"a": [{"exists": "yes"}]}"#,
            "invalid argument for exists",
        ),
        (r#"{"a": []}"#, "empty array"),
    ] {
        let err = Filter::compile(pattern).expect_err(pattern);
        assert!(err.to_string().contains(needle), "{pattern}: {err}");
    }
}

#[test]
fn forms_quamina_lacks_are_confirmed_by_the_evaluator() {
    let p = r#"{"detail": {"region": [{"anything-but": {"prefix": "us-"}}], "kind": ["a"]}}"#;
    let filter = Filter::compile(p).expect("valid");
    let alt = &filter.alternatives()[0];
    assert!(alt.confirmed());
    assert_eq!(alt.prefilter(), Some(r#"{"detail":{"kind":["a"]}}"#));
    assert!(matches(
        p,
        r#"{"detail": {"region": "eu-west-1", "kind": "a"}}"#
    ));
    assert!(!matches(
        p,
        r#"{"detail": {"region": "us-east-1", "kind": "a"}}"#
    ));
    assert!(!matches(p, r#"{"detail": {"kind": "a"}}"#));
    // Nothing left for quamina: every record is confirmed directly.
    let p = r#"{"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}"#;
    assert_eq!(
        Filter::compile(p).expect("valid").alternatives()[0].prefilter(),
        None
    );
    assert!(matches(p, r#"{"FileName": "A.PNG"}"#));
    assert!(!matches(p, r#"{"FileName": "A.JPG"}"#));
}

#[test]
fn the_same_leaf_inside_and_outside_an_or_is_refused() {
    let err = Filter::compile(r#"{"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]}"#)
        .expect_err("conflict");
    assert!(matches!(err, PatternError::Unsupported { .. }), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(128))]
    /// Reordering an event's keys (at every level) never changes whether a pattern matches.
    #[test]
    fn matching_is_invariant_to_key_order_in_the_event(
        source in proptest::sample::select(vec!["aws.payments", "aws.other", "shop"]),
        currency in proptest::sample::select(vec!["USD", "EUR", "JPY"]),
        amount in 0u32..300,
        with_state in proptest::bool::ANY,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let patterns = [
            r#"{"source": ["aws.payments"], "detail": {"$or": [{"currency": ["USD", "EUR"]}, {"amount": [{"numeric": [">", 100]}]}]}}"#,
            r#"{"source": [{"prefix": "aws."}], "detail": {"state": [{"exists": false}]}}"#,
            r#"{"detail": {"currency": [{"anything-but": ["JPY"]}], "amount": [{"numeric": [">=", 0, "<", 150]}]}}"#,
        ];
        let mut detail = vec![
            ("currency", serde_json::json!(currency)),
            ("amount", serde_json::json!(amount)),
            ("note", serde_json::json!("x")),
        ];
        if with_state {
            detail.push(("state", serde_json::json!("open")));
        }
        let mut top = vec![("source", serde_json::json!(source)), ("id", serde_json::json!("e-1"))];
        let build = |detail: &[(&str, Value)], top: &[(&str, Value)]| {
            let d: Map<String, Value> = detail.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            let mut t: Map<String, Value> = top.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            t.insert("detail".into(), Value::Object(d));
            Value::Object(t).to_string()
        };
        let original = build(&detail, &top);
        // A deterministic shuffle from the seed, at both levels.
        let mut x = seed | 1;
        let mut shuffle = |len: usize| -> Vec<usize> {
            let mut idx: Vec<usize> = (0..len).collect();
            for i in (1..len).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                idx.swap(i, (x % (i as u64 + 1)) as usize);
            }
            idx
        };
        let order = shuffle(detail.len());
        detail = order.into_iter().map(|i| detail[i].clone()).collect();
        let order = shuffle(top.len());
        top = order.into_iter().map(|i| top[i].clone()).collect();
        let reordered = build(&detail, &top);
        for p in patterns {
            proptest::prop_assert_eq!(matches(p, &original), matches(p, &reordered), "{} on {} vs {}", p, original, reordered);
        }
    }
}

/// The conformance suite: (pattern, event, expected) cases from the AWS user guides, each
/// naming its source, run through the router's matcher and through the direct evaluator alone.
#[test]
fn conformance_with_the_aws_user_guides() {
    let suite: Value =
        serde_json::from_str(include_str!("conformance.json")).expect("conformance.json");
    let cases = suite["matching"].as_array().expect("matching cases");
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let pattern = case["pattern"].to_string();
        let event = case["event"].to_string();
        let expected = case["match"].as_bool().expect("match is a boolean");
        let routed = matches(&pattern, &event);
        let object = case["pattern"].as_object().expect("pattern object");
        let direct = expand(object, "")
            .expect("expands")
            .iter()
            .any(|alt| eval::matches(alt, &case["event"]));
        if routed != expected || direct != expected {
            failures.push(format!(
                "{}: {pattern} on {event}: expected {expected}, router {routed}, evaluator {direct}",
                case["source"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_patterns_from_the_aws_user_guides_are_rejected_with_their_reason() {
    let suite: Value =
        serde_json::from_str(include_str!("conformance.json")).expect("conformance.json");
    for case in suite["invalid"].as_array().expect("invalid cases") {
        let pattern = case["pattern"].to_string();
        let needle = case["error"].as_str().expect("error");
        match Filter::compile(&pattern) {
            Ok(_) => panic!("{}: {pattern} was accepted", case["source"]),
            Err(e) => assert!(
                e.to_string().contains(needle),
                "{}: {pattern}: {e} (expected {needle:?})",
                case["source"]
            ),
        }
    }
}

mod differential {
    //! The router (quamina, confirmed where needed) and the direct evaluator must agree on
    //! every pattern: where quamina differs, the pattern must be routed to the evaluator.
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::sample::select(vec![
                "us-east-1",
                "US-West",
                "init",
                "",
                "a*b",
                "10.0.0.7",
                "x.png"
            ])
            .prop_map(|s| json!(s)),
            prop::sample::select(vec![0.0, 5.0, 5.5, -1.0, 300.0]).prop_map(|n| json!(n)),
            prop::sample::select(vec![0i64, 5, 123]).prop_map(|n| json!(n)),
            Just(json!(true)),
            Just(Value::Null),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => leaf(),
            1 => prop::collection::vec(leaf(), 0..3).prop_map(Value::Array),
            1 => leaf().prop_map(|l| json!({"inner": l})),
        ]
    }

    fn condition() -> impl Strategy<Value = Value> {
        prop_oneof![
            leaf(),
            prop::sample::select(vec!["us", "in", "US-", ""]).prop_map(|p| json!({"prefix": p})),
            prop::sample::select(vec![".png", "1", "b"]).prop_map(|p| json!({"suffix": p})),
            prop::sample::select(vec!["us-west", "INIT"])
                .prop_map(|p| json!({"equals-ignore-case": p})),
            prop::sample::select(vec!["*-*", "a\\*b", "*.png", "us*1"])
                .prop_map(|p| json!({"wildcard": p})),
            prop::sample::select(vec![
                json!("init"),
                json!(5),
                json!(["init", "x.png"]),
                json!([0, 300])
            ])
            .prop_map(|v| json!({"anything-but": v})),
            prop::sample::select(vec![
                json!([">", 0]),
                json!(["<=", 5]),
                json!(["=", 5.5]),
                json!([">=", -1, "<", 5])
            ])
            .prop_map(|v| json!({"numeric": v})),
            any::<bool>().prop_map(|b| json!({"exists": b})),
            Just(json!({"cidr": "10.0.0.0/24"})),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn quamina_and_the_evaluator_agree(
            a in prop::collection::vec(condition(), 1..3),
            b in prop::option::of(prop::collection::vec(condition(), 1..3)),
            ea in prop::option::of(value()),
            eb in prop::option::of(value()),
        ) {
            let mut pattern = serde_json::Map::new();
            pattern.insert("a".into(), Value::Array(a));
            if let Some(b) = b {
                pattern.insert("d".into(), json!({"b": b}));
            }
            let mut event = serde_json::Map::new();
            if let Some(v) = ea { event.insert("a".into(), v); }
            if let Some(v) = eb { event.insert("d".into(), json!({"b": v})); }
            let event = Value::Object(event);
            let text = Value::Object(pattern.clone()).to_string();
            if super::Filter::compile(&text).is_err() {
                return Ok(()); // not a valid pattern: nothing to compare
            }
            let by_router = super::matches(&text, &event.to_string());
            let by_eval = super::eval::matches(&pattern, &event);
            prop_assert_eq!(by_router, by_eval, "{} on {}", text, event);
        }
    }
}

pub(super) mod fields_read {
    //! quamina reading only the fields the patterns name ([`Matcher::input`]) must match
    //! exactly what it matches on the whole event, whatever the event's shape: keys no pattern
    //! names, objects where a pattern expects a leaf, arrays of objects along a path.
    use super::super::{Filter, Matcher};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    pub(in crate::pipeline::pattern) const KEYS: [&str; 3] = ["a", "b", "c"];

    fn leaf() -> impl Strategy<Value = Value> {
        prop::sample::select(vec![
            json!("x"),
            json!("y"),
            json!(5),
            json!(true),
            Value::Null,
        ])
    }

    fn event() -> impl Strategy<Value = Value> {
        events(leaf(), 3, 24)
    }

    /// Events of `leaf` values in arrays and in objects keyed by [`KEYS`], `depth` levels deep
    /// and about `size` nodes (also `fields.rs`'s parse test).
    pub(in crate::pipeline::pattern) fn events(
        leaf: impl Strategy<Value = Value> + 'static,
        depth: u32,
        size: u32,
    ) -> impl Strategy<Value = Value> {
        leaf.prop_recursive(depth, size, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..3)
                    .prop_map(|m| {
                        Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    }),
            ]
        })
    }

    fn condition() -> impl Strategy<Value = Value> {
        prop_oneof![
            leaf(),
            Just(json!({"exists": true})),
            Just(json!({"prefix": "x"})),
            Just(json!({"anything-but": "y"})),
        ]
    }

    /// A pattern naming one or two paths of one to three keys.
    fn pattern() -> impl Strategy<Value = Value> {
        let path = prop::collection::vec(prop::sample::select(KEYS.to_vec()), 1..4);
        prop::collection::vec((path, prop::collection::vec(condition(), 1..3)), 1..3).prop_map(
            |fields| {
                let mut pattern = json!({});
                for (path, conditions) in fields {
                    let mut at = &mut pattern;
                    for key in &path[..path.len() - 1] {
                        if !at[*key].is_object() {
                            at[*key] = json!({});
                        }
                        at = &mut at[*key];
                    }
                    at[path[path.len() - 1]] = Value::Array(conditions);
                }
                pattern
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn quamina_matches_the_fields_read_as_it_matches_the_whole_event(
            patterns in prop::collection::vec(pattern(), 1..4),
            event in event(),
        ) {
            let event = json!({"top": 1, "a": event.clone(), "b": event});
            let mut m = Matcher::new();
            for (route, p) in patterns.iter().enumerate() {
                if let Ok(filter) = Filter::compile(&p.to_string()) {
                    m.add(route, &filter).expect("compiled");
                }
            }
            let (mut read, mut whole) = (Vec::new(), Vec::new());
            m.matching(&event, &m.input(&event), &mut read);
            m.matching(&event, &serde_json::to_vec(&event).expect("json"), &mut whole);
            prop_assert_eq!(read, whole, "{:?} on {}", patterns, event);
        }
    }
}

/// quamina's answers are remembered per text ([`answers`]): a pattern added afterwards still
/// counts, and the same text matches again as it did.
#[test]
fn a_pattern_added_after_matching_counts_and_answers_repeat() {
    let mut m = Matcher::new();
    m.add(0, &Filter::compile(r#"{"a": ["x"]}"#).expect("valid"))
        .expect("valid");
    let event = serde_json::json!({"a": "x", "b": 1});
    let matched = |m: &Matcher| {
        let mut out = Vec::new();
        m.matching(&event, &m.input(&event), &mut out);
        // In quamina's order: the router puts routes in config order.
        out.sort_unstable();
        out
    };
    assert_eq!(matched(&m), [0]);
    assert_eq!(matched(&m), [0]);
    m.add(
        1,
        &Filter::compile(r#"{"a": [{"prefix": "x"}]}"#).expect("valid"),
    )
    .expect("valid");
    assert_eq!(matched(&m), [0, 1]);
    assert_eq!(matched(&m), [0, 1]);
}
