//! EventBridge event patterns (a Pipe's `FilterCriteria`), validated against the EventBridge
//! pattern language and compiled for `quamina`.
//!
//! What we add or restrict around quamina, so a pattern means what AWS documents:
//! - `$or` (top level or nested, combined with other fields) is expanded here into several
//!   plain patterns of the same route, since quamina has no `$or`;
//! - operators EventBridge does not have (quamina's `regexp`, `shellstyle`) are rejected;
//! - EventBridge forms quamina cannot evaluate yet (`anything-but` with an operator object,
//!   `prefix`/`suffix` with `equals-ignore-case`) are rejected at start-up with a clear
//!   "not supported yet" rather than ever matching differently from AWS.

use std::fmt;

use serde_json::{Map, Value};

/// Operators of the EventBridge pattern language, as values inside a field's array.
const OPERATORS: &[&str] = &[
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "anything-but",
    "numeric",
    "exists",
    "cidr",
];

/// Upper bound on the patterns one filter may expand to through `$or` (EventBridge caps a
/// pattern's combinations similarly), so a config cannot blow up the matcher.
const MAX_EXPANSION: usize = 1000;

/// Why a pattern was rejected; `path` is where in the pattern (`detail.state[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    /// The JSON is not an object (EventBridge patterns are objects of fields).
    #[error("an event pattern must be a JSON object")]
    NotAnObject,
    /// The pattern is empty (`{}`), which EventBridge rejects.
    #[error("an event pattern must name at least one field")]
    Empty,
    /// Not valid EventBridge pattern syntax.
    #[error("at {path}: {reason}")]
    Invalid { path: String, reason: String },
    /// Valid EventBridge syntax this relay cannot evaluate faithfully yet.
    #[error("at {path}: {what} is not supported yet")]
    Unsupported { path: String, what: String },
    /// The matcher rejected the (expanded) pattern.
    #[error("invalid event pattern: {0}")]
    Rejected(String),
}

/// One compiled event pattern. The matching automaton lives in the
/// [`crate::pipeline::Router`], which merges every route's patterns into one.
#[derive(Clone, PartialEq, Eq)]
pub struct Filter {
    text: String,
    /// The `$or`-free patterns quamina matches; the filter matches if any does.
    expanded: Vec<String>,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.text).finish()
    }
}

impl Filter {
    /// Validates `text` as an EventBridge pattern and expands its `$or`s.
    ///
    /// # Errors
    /// [`PatternError`] naming where and why the pattern is not valid.
    pub fn compile(text: &str) -> Result<Self, PatternError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PatternError::InvalidJson(e.to_string()))?;
        let object = value.as_object().ok_or(PatternError::NotAnObject)?;
        if object.is_empty() {
            return Err(PatternError::Empty);
        }
        validate_object(object, "")?;
        let alternatives = expand(object, "")?;
        let mut probe = quamina::Quamina::<usize>::new();
        let mut expanded = Vec::with_capacity(alternatives.len());
        for alt in alternatives {
            let json = Value::Object(alt).to_string();
            probe
                .add_pattern(0, &json)
                .map_err(|e| PatternError::Rejected(e.to_string()))?;
            expanded.push(json);
        }
        Ok(Self {
            text: text.to_owned(),
            expanded,
        })
    }

    /// The pattern as written in the config.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `$or`-free patterns to give the matcher.
    #[must_use]
    pub fn expanded(&self) -> &[String] {
        &self.expanded
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> PatternError {
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
fn validate_object(object: &Map<String, Value>, path: &str) -> Result<(), PatternError> {
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
                validate_object(branch, path)?;
            }
            continue;
        }
        match value {
            Value::Object(nested) if !nested.is_empty() => validate_object(nested, &here)?,
            Value::Object(_) => return Err(invalid(&here, "an empty object matches nothing")),
            Value::Array(conditions) if conditions.is_empty() => {
                return Err(invalid(&here, "an empty array matches nothing"))
            }
            Value::Array(conditions) => {
                for (i, c) in conditions.iter().enumerate() {
                    validate_condition(c, &format!("{here}[{i}]"))?;
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

/// One element of a leaf array: a literal, or an object with exactly one known operator.
fn validate_condition(condition: &Value, path: &str) -> Result<(), PatternError> {
    let Value::Object(op) = condition else {
        return Ok(()); // string, number, boolean or null literal
    };
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
    if !OPERATORS.contains(&name.as_str()) {
        return Err(invalid(
            path,
            format!(
                "unknown operator {name:?} (EventBridge has {})",
                OPERATORS.join(", ")
            ),
        ));
    }
    let unsupported = |what: &str| PatternError::Unsupported {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    match (name.as_str(), arg) {
        ("prefix" | "suffix", Value::Object(_)) => {
            Err(unsupported(&format!("{name} with equals-ignore-case")))
        }
        ("anything-but", Value::Object(_)) => Err(unsupported("anything-but with an operator")),
        ("prefix" | "suffix" | "equals-ignore-case" | "wildcard" | "cidr", Value::String(_)) => {
            Ok(())
        }
        ("exists", Value::Bool(_)) => Ok(()),
        ("numeric", Value::Array(_)) => Ok(()),
        ("anything-but", Value::String(_) | Value::Number(_) | Value::Array(_)) => Ok(()),
        (op, _) => Err(invalid(path, format!("invalid argument for {op}"))),
    }
}

/// Expands every `$or` of `object` into plain alternatives (a cartesian product with the
/// other fields), keeping nested structure.
fn expand(
    object: &Map<String, Value>,
    path: &str,
) -> Result<Vec<Map<String, Value>>, PatternError> {
    let mut alternatives = vec![Map::new()];
    for (key, value) in object {
        let here = join(path, key);
        let options: Vec<Map<String, Value>> = if key == "$or" {
            let mut branches = Vec::new();
            for branch in value.as_array().into_iter().flatten() {
                if let Value::Object(b) = branch {
                    branches.extend(expand(b, path)?);
                }
            }
            branches
        } else if let Value::Object(nested) = value {
            expand(nested, &here)?
                .into_iter()
                .map(|sub| Map::from_iter([(key.clone(), Value::Object(sub))]))
                .collect()
        } else {
            vec![Map::from_iter([(key.clone(), value.clone())])]
        };
        let mut next = Vec::with_capacity(alternatives.len() * options.len());
        for alt in &alternatives {
            for option in &options {
                next.push(merge(alt, option, path)?);
            }
        }
        if next.len() > MAX_EXPANSION {
            return Err(invalid(
                path,
                format!("$or expands to more than {MAX_EXPANSION} combinations"),
            ));
        }
        alternatives = next;
    }
    Ok(alternatives)
}

/// Merges two partial patterns (AND). Nested objects merge field by field; the same leaf
/// field on both sides cannot be expressed as one pattern and is rejected.
fn merge(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    path: &str,
) -> Result<Map<String, Value>, PatternError> {
    let mut out = a.clone();
    for (key, value) in b {
        let here = join(path, key);
        match (out.get(key), value) {
            (None, _) => {
                out.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(x)), Value::Object(y)) => {
                let merged = merge(x, y, &here)?;
                out.insert(key.clone(), Value::Object(merged));
            }
            (Some(_), _) => {
                return Err(PatternError::Unsupported {
                    path: here,
                    what: "the same field both inside and outside an $or branch".into(),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
