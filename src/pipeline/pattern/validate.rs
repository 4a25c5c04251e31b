//! Validation of a pattern against the EventBridge pattern language (not quamina's, which
//! differs: it has `regexp`/`shellstyle` and lacks some EventBridge forms).

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::PatternError;

/// Operators of the EventBridge pattern language, as values inside a field's array.
pub(super) const OPERATORS: &[&str] = &[
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "anything-but",
    "numeric",
    "exists",
    "cidr",
];

/// The numeric range EventBridge documents for `numeric` matching (inclusive).
pub(super) const NUMERIC_LIMIT: f64 = 5.0e9;

/// Digits EventBridge keeps right of the decimal point in `numeric` matching.
const NUMERIC_DECIMALS: usize = 6;

/// Digits of precision EventBridge keeps in `numeric` matching.
const NUMERIC_DIGITS: usize = 15;

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn invalid(path: &str, reason: impl Into<String>) -> PatternError {
    PatternError::Invalid {
        path: if path.is_empty() {
            "(top)".into()
        } else {
            path.to_owned()
        },
        reason: reason.into(),
    }
}

/// Checks an object level of a pattern: fields map to arrays (leaf conditions) or objects
/// (nested fields); `$or` maps to an array of at least two objects.
pub(super) fn object(object: &Map<String, Value>, path: &str) -> Result<(), PatternError> {
    for (key, value) in object {
        let here = join(path, key);
        if key == "$or" {
            let branches = value
                .as_array()
                .ok_or_else(|| invalid(&here, "$or takes an array of patterns"))?;
            if branches.len() < 2 {
                return Err(invalid(&here, "$or needs at least two patterns"));
            }
            for (i, branch) in branches.iter().enumerate() {
                let branch = branch
                    .as_object()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            &format!("{here}[{i}]"),
                            "each $or branch is a non-empty object",
                        )
                    })?;
                self::object(branch, path)?;
            }
            continue;
        }
        match value {
            Value::Object(nested) if !nested.is_empty() => self::object(nested, &here)?,
            Value::Object(_) => return Err(invalid(&here, "an empty object matches nothing")),
            Value::Array(conditions) if conditions.is_empty() => {
                return Err(invalid(&here, "an empty array matches nothing"))
            }
            Value::Array(conditions) => {
                for (i, c) in conditions.iter().enumerate() {
                    condition(c, &format!("{here}[{i}]"))?;
                }
            }
            _ => {
                return Err(invalid(
                    &here,
                    "a value must be inside an array, e.g. [\"value\"]",
                ))
            }
        }
    }
    Ok(())
}

/// The single `{operator: argument}` of an operator object.
fn single_operator<'a>(
    op: &'a Map<String, Value>,
    path: &str,
) -> Result<(&'a str, &'a Value), PatternError> {
    let mut entries = op.iter();
    let (name, arg) = entries
        .next()
        .ok_or_else(|| invalid(path, "an operator object needs one operator"))?;
    if entries.next().is_some() {
        return Err(invalid(
            path,
            "an operator object takes exactly one operator",
        ));
    }
    Ok((name.as_str(), arg))
}

/// One element of a leaf array: a literal, or an object with exactly one known operator.
fn condition(condition: &Value, path: &str) -> Result<(), PatternError> {
    let Value::Object(op) = condition else {
        return Ok(()); // string, number, boolean or null literal
    };
    let (name, arg) = single_operator(op, path)?;
    if !OPERATORS.contains(&name) {
        return Err(invalid(
            path,
            format!(
                "unknown operator {name:?} (EventBridge has {})",
                OPERATORS.join(", ")
            ),
        ));
    }
    let at = format!("{path}.{name}");
    match (name, arg) {
        ("prefix" | "suffix" | "equals-ignore-case", Value::String(_)) => Ok(()),
        ("prefix" | "suffix", Value::Object(inner)) => match single_operator(inner, &at)? {
            ("equals-ignore-case", Value::String(_)) => Ok(()),
            _ => Err(invalid(
                &at,
                format!("{name} takes a string or {{\"equals-ignore-case\": \"...\"}}"),
            )),
        },
        ("wildcard", Value::String(w)) => wildcard(w, &at),
        ("cidr", Value::String(c)) => cidr(c, &at),
        ("exists", Value::Bool(_)) => Ok(()),
        ("numeric", Value::Array(parts)) => numeric(parts, &at),
        ("anything-but", arg) => anything_but(arg, &at),
        (op, _) => Err(invalid(path, format!("invalid argument for {op}"))),
    }
}

fn anything_but(arg: &Value, path: &str) -> Result<(), PatternError> {
    match arg {
        Value::String(_) | Value::Number(_) => Ok(()),
        Value::Array(items) if items.is_empty() => {
            Err(invalid(path, "anything-but needs at least one value"))
        }
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(()),
        Value::Array(items) if items.iter().all(Value::is_number) => Ok(()),
        Value::Array(_) => Err(invalid(
            path,
            "an anything-but list holds only strings or only numbers",
        )),
        Value::Object(inner) => {
            let (name, value) = single_operator(inner, path)?;
            let at = format!("{path}.{name}");
            let strings = |value: &Value| match value {
                Value::String(_) => true,
                Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
                _ => false,
            };
            match name {
                "prefix" | "suffix" if value.is_string() => Ok(()),
                "equals-ignore-case" if strings(value) => Ok(()),
                "wildcard" if strings(value) => match value {
                    Value::String(w) => wildcard(w, &at),
                    _ => value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .try_for_each(|w| wildcard(w, &at)),
                },
                "prefix" | "suffix" => Err(invalid(&at, format!("{name} takes a string"))),
                "equals-ignore-case" | "wildcard" => Err(invalid(
                    &at,
                    format!("{name} takes a string or a list of strings"),
                )),
                other => Err(invalid(
                    path,
                    format!(
                        "anything-but takes a value, a list, or one of prefix, suffix, \
                         equals-ignore-case, wildcard (not {other:?})"
                    ),
                )),
            }
        }
        _ => Err(invalid(
            path,
            "anything-but takes a string, a number, a list, or an operator object",
        )),
    }
}

/// `*` matches any run of characters; `\*` and `\\` are the only escapes; `**` is refused.
fn wildcard(text: &str, path: &str) -> Result<(), PatternError> {
    let mut chars = text.chars();
    let mut previous_star = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                match chars.next() {
                    Some('*' | '\\') => {}
                    _ => return Err(invalid(path, "only \\* and \\\\ are escapes in a wildcard")),
                }
                previous_star = false;
            }
            '*' if previous_star => {
                return Err(invalid(path, "consecutive wildcard characters (**)"))
            }
            '*' => previous_star = true,
            _ => previous_star = false,
        }
    }
    Ok(())
}

/// An IPv4 or IPv6 network in CIDR notation.
pub(super) fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn cidr(text: &str, path: &str) -> Result<(), PatternError> {
    parse_cidr(text).map(|_| ()).ok_or_else(|| {
        invalid(
            path,
            format!("{text:?} is not an IPv4 or IPv6 network like 10.0.0.0/24"),
        )
    })
}

/// A number EventBridge can compare: within ±5.0e9, at most 6 decimals and 15 digits.
fn numeric_operand(value: &Value, path: &str) -> Result<f64, PatternError> {
    let Value::Number(n) = value else {
        return Err(invalid(path, "numeric comparisons take numbers"));
    };
    let text = n.to_string();
    let x: f64 = text
        .parse()
        .map_err(|_| invalid(path, format!("{text} is not a number")))?;
    if !(-NUMERIC_LIMIT..=NUMERIC_LIMIT).contains(&x) {
        return Err(invalid(
            path,
            format!("{text} is outside the numeric range EventBridge supports (-5.0e9 to 5.0e9)"),
        ));
    }
    let plain = format!("{x}");
    let decimals = plain.split_once('.').map_or(0, |(_, f)| f.len());
    let digits = plain.chars().filter(char::is_ascii_digit).count();
    if decimals > NUMERIC_DECIMALS || digits > NUMERIC_DIGITS {
        return Err(invalid(
            path,
            format!(
                "{text} has more precision than EventBridge keeps \
                 ({NUMERIC_DIGITS} digits, {NUMERIC_DECIMALS} after the point)"
            ),
        ));
    }
    Ok(x)
}

/// `[op, n]` or a range `[">"|">=", low, "<"|"<=", high]` with `low < high`.
fn numeric(parts: &[Value], path: &str) -> Result<(), PatternError> {
    let op = |i: usize| parts.get(i).and_then(Value::as_str);
    match parts.len() {
        2 => match op(0) {
            Some("<" | "<=" | "=" | ">" | ">=") => numeric_operand(&parts[1], path).map(|_| ()),
            _ => Err(invalid(
                path,
                "numeric takes an operator (<, <=, =, >, >=) and a number",
            )),
        },
        4 => {
            let (Some(lower), Some(upper)) = (op(0), op(2)) else {
                return Err(invalid(
                    path,
                    "numeric ranges alternate operators and numbers",
                ));
            };
            if !matches!(lower, ">" | ">=") || !matches!(upper, "<" | "<=") {
                return Err(invalid(
                    path,
                    "a numeric range is a lower bound (> or >=) then an upper bound (< or <=)",
                ));
            }
            let low = numeric_operand(&parts[1], path)?;
            let high = numeric_operand(&parts[3], path)?;
            if low >= high {
                return Err(invalid(
                    path,
                    format!("the lower bound {low} is not below the upper bound {high}"),
                ));
            }
            Ok(())
        }
        _ => Err(invalid(
            path,
            "numeric takes [op, n] or [lower-op, n, upper-op, m]",
        )),
    }
}
