use super::*;

fn expanded(text: &str) -> Vec<Value> {
    Filter::compile(text)
        .expect("valid")
        .expanded()
        .iter()
        .map(|p| serde_json::from_str(p).expect("json"))
        .collect()
}

/// Matches `event` against `pattern` the way the router does (any expansion matches).
fn matches(pattern: &str, event: &str) -> bool {
    let filter = Filter::compile(pattern).expect("valid");
    let mut q = quamina::Quamina::<usize>::new();
    for p in filter.expanded() {
        q.add_pattern(0, p).expect("valid");
    }
    !q.matches_for_event(event.as_bytes())
        .expect("json")
        .is_empty()
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
    assert_eq!(f.expanded().len(), 1);
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
fn eventbridge_forms_not_yet_evaluated_are_refused_not_mismatched() {
    for pattern in [
        r#"{"a": [{"anything-but": {"prefix": "x"}}]}"#,
        r#"{"a": [{"prefix": {"equals-ignore-case": "x"}}]}"#,
        r#"{"a": [{"suffix": {"equals-ignore-case": "x"}}]}"#,
    ] {
        let err = Filter::compile(pattern).expect_err(pattern);
        assert!(
            matches!(err, PatternError::Unsupported { .. }),
            "{pattern}: {err}"
        );
    }
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
