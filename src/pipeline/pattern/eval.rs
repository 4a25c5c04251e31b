//! A direct evaluator of an `$or`-free EventBridge pattern over a JSON event.
//!
//! quamina does the bulk matching; this confirms its hits for the patterns where quamina
//! lacks an EventBridge form (`anything-but` with an operator, `prefix`/`suffix` with
//! `equals-ignore-case`) or is more lenient than AWS (numbers outside EventBridge's numeric
//! range). It follows the AWS user guide's semantics:
//! - fields are AND-ed, the values of a field's array are OR-ed;
//! - an array in the event matches if any element does, and the fields of one nested
//!   pattern must all match inside the same array element;
//! - operators apply to leaves only: an object is not a value, so `exists` is false for it;
//! - `anything-but` needs the field to be present, and matches when some value of it is not
//!   excluded (a non-string value is never excluded by a string operator).

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::validate::{parse_cidr, NUMERIC_LIMIT};

/// Whether `event` matches `pattern` (validated and `$or`-free).
#[must_use]
pub fn matches(pattern: &Map<String, Value>, event: &Value) -> bool {
    object_matches(pattern, event.as_object())
}

fn object_matches(pattern: &Map<String, Value>, node: Option<&Map<String, Value>>) -> bool {
    pattern
        .iter()
        .all(|(key, spec)| field_matches(spec, node.and_then(|n| n.get(key))))
}

fn field_matches(spec: &Value, value: Option<&Value>) -> bool {
    match spec {
        Value::Object(nested) => match value {
            Some(Value::Object(child)) => object_matches(nested, Some(child)),
            Some(Value::Array(items)) if !items.is_empty() => {
                items.iter().any(|item| field_matches(spec, Some(item)))
            }
            _ => object_matches(nested, None),
        },
        Value::Array(conditions) => {
            let mut leaves = Vec::new();
            collect_leaves(value, &mut leaves);
            conditions.iter().any(|c| condition_matches(c, &leaves))
        }
        _ => false,
    }
}

/// The leaf values of a field: itself, or every leaf of an array (arrays flatten).
fn collect_leaves<'a>(value: Option<&'a Value>, out: &mut Vec<&'a Value>) {
    match value {
        None | Some(Value::Object(_)) => {}
        Some(Value::Array(items)) => items.iter().for_each(|i| collect_leaves(Some(i), out)),
        Some(leaf) => out.push(leaf),
    }
}

fn condition_matches(condition: &Value, leaves: &[&Value]) -> bool {
    let Value::Object(op) = condition else {
        return leaves.iter().any(|leaf| literal_equals(condition, leaf));
    };
    let Some((name, arg)) = op.iter().next() else {
        return false;
    };
    match (name.as_str(), arg) {
        ("exists", Value::Bool(wanted)) => *wanted != leaves.is_empty(),
        ("anything-but", arg) => leaves.iter().any(|leaf| !excluded(arg, leaf)),
        ("numeric", Value::Array(parts)) => leaves
            .iter()
            .filter_map(|leaf| in_numeric_range(leaf))
            .any(|x| numeric_matches(parts, x)),
        ("cidr", Value::String(net)) => leaves
            .iter()
            .filter_map(|leaf| leaf.as_str())
            .any(|ip| cidr_contains(net, ip)),
        (op, arg) => leaves
            .iter()
            .filter_map(|leaf| leaf.as_str())
            .any(|s| string_operator(op, arg, s)),
    }
}

/// The string operators (also the operand forms of `anything-but`).
fn string_operator(op: &str, arg: &Value, s: &str) -> bool {
    match (op, arg) {
        ("prefix", Value::String(p)) => s.starts_with(p.as_str()),
        ("suffix", Value::String(p)) => s.ends_with(p.as_str()),
        ("prefix", Value::Object(inner)) => inner
            .get("equals-ignore-case")
            .and_then(Value::as_str)
            .is_some_and(|p| fold(s).starts_with(&fold(p))),
        ("suffix", Value::Object(inner)) => inner
            .get("equals-ignore-case")
            .and_then(Value::as_str)
            .is_some_and(|p| fold(s).ends_with(&fold(p))),
        ("equals-ignore-case", Value::String(p)) => fold(s) == fold(p),
        ("equals-ignore-case", Value::Array(ps)) => {
            let s = fold(s);
            ps.iter().filter_map(Value::as_str).any(|p| s == fold(p))
        }
        ("wildcard", Value::String(w)) => wildcard_matches(w, s),
        ("wildcard", Value::Array(ws)) => ws
            .iter()
            .filter_map(Value::as_str)
            .any(|w| wildcard_matches(w, s)),
        _ => false,
    }
}

/// Whether `anything-but`'s argument excludes `leaf`.
fn excluded(arg: &Value, leaf: &Value) -> bool {
    match arg {
        Value::Array(values) => values.iter().any(|v| literal_equals(v, leaf)),
        Value::Object(inner) => match (inner.iter().next(), leaf.as_str()) {
            (Some((op, operand)), Some(s)) => string_operator(op, operand, s),
            _ => false,
        },
        literal => literal_equals(literal, leaf),
    }
}

/// Pattern literal vs event leaf: strings, booleans and null by equality, numbers by value
/// (`35`, `35.0` and `3.5e1` are equal), never across types.
fn literal_equals(literal: &Value, leaf: &Value) -> bool {
    match (literal, leaf) {
        (Value::Number(a), Value::Number(b)) => {
            a == b || matches!((as_f64(a), as_f64(b)), (Some(x), Some(y)) if x == y)
        }
        (a, b) => a == b,
    }
}

fn as_f64(n: &serde_json::Number) -> Option<f64> {
    n.to_string().parse().ok()
}

/// A leaf's number, if it is one EventBridge's numeric matching covers.
fn in_numeric_range(leaf: &Value) -> Option<f64> {
    let Value::Number(n) = leaf else { return None };
    as_f64(n).filter(|x| (-NUMERIC_LIMIT..=NUMERIC_LIMIT).contains(x))
}

fn numeric_matches(parts: &[Value], x: f64) -> bool {
    parts.chunks(2).all(|pair| {
        let (Some(op), Some(Value::Number(n))) =
            (pair.first().and_then(Value::as_str), pair.get(1))
        else {
            return false;
        };
        let Some(bound) = as_f64(n) else { return false };
        match op {
            "<" => x < bound,
            "<=" => x <= bound,
            "=" => x == bound,
            ">" => x > bound,
            ">=" => x >= bound,
            _ => false,
        }
    })
}

fn cidr_contains(net: &str, ip: &str) -> bool {
    let (Some((base, bits)), Ok(addr)) = (parse_cidr(net), ip.parse::<IpAddr>()) else {
        return false;
    };
    match (base, addr) {
        (IpAddr::V4(b), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(b) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(b), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(b) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Case folding for the `equals-ignore-case` family.
fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// One piece of a wildcard pattern.
#[derive(Debug, PartialEq)]
enum Piece {
    Star,
    Char(char),
}

fn wildcard_pieces(pattern: &str) -> Vec<Piece> {
    let mut pieces = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pieces.push(match c {
            '\\' => Piece::Char(chars.next().unwrap_or('\\')),
            '*' => Piece::Star,
            c => Piece::Char(c),
        });
    }
    pieces
}

/// Glob matching with `*` only (linear-time with one backtrack point per star).
fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let pieces = wildcard_pieces(pattern);
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pieces.get(p) {
            Some(Piece::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(Piece::Star) => {
                resume = Some((p, t));
                p += 1;
            }
            _ => match resume {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    resume = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pieces[p..].iter().all(|piece| *piece == Piece::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_the_eventbridge_escapes() {
        assert!(wildcard_matches("*/lib/*", "usr/lib/x"));
        assert!(wildcard_matches("a*b*c", "axxbyyc"));
        assert!(!wildcard_matches("a*b*c", "axxbyy"));
        assert!(wildcard_matches(r"a\*b", "a*b"));
        assert!(!wildcard_matches(r"a\*b", "axb"));
        assert!(wildcard_matches(r"a\\b", r"a\b"));
        assert!(wildcard_matches("*", ""));
        assert!(!wildcard_matches("", "x"));
    }

    #[test]
    fn cidr_covers_ipv4_and_ipv6() {
        assert!(cidr_contains("10.0.0.0/24", "10.0.0.255"));
        assert!(!cidr_contains("10.0.0.0/24", "10.0.1.0"));
        assert!(cidr_contains("0.0.0.0/0", "192.168.1.1"));
        assert!(cidr_contains("2001:db8::/32", "2001:db8:ffff::1"));
        assert!(!cidr_contains("2001:db8::/32", "2001:db9::1"));
        assert!(!cidr_contains("10.0.0.0/8", "::1"));
    }
}
