//! EventBridge event patterns (a Pipe's `FilterCriteria`), validated against the EventBridge
//! pattern language and matched with `quamina`, corrected where quamina differs from AWS.
//!
//! What we add or restrict around quamina, so a pattern means what AWS documents:
//! - `$or` (top level or nested, combined with other fields) is expanded here into several
//!   plain patterns of the same route, since quamina has no `$or`;
//! - operators EventBridge does not have (quamina's `regexp`, `shellstyle`) are rejected, and
//!   arguments are checked as EventBridge checks them (numeric ranges and limits, wildcards,
//!   CIDR networks);
//! - EventBridge forms quamina lacks (`anything-but` with `prefix`, `suffix`,
//!   `equals-ignore-case` or `wildcard`; `prefix`/`suffix` with `equals-ignore-case`) are left
//!   out of the quamina pattern, which then only pre-filters, and every quamina hit of such a
//!   pattern is confirmed by [`eval`], a direct evaluator of the whole pattern. Patterns with
//!   `numeric` are confirmed the same way, since quamina compares numbers beyond the ±5.0e9
//!   EventBridge covers, and so are IPv6 `cidr` patterns (see [`quamina_lacks`]);
//! - keys are literal: a key holding a dot (`order.status`, a valid DynamoDB attribute name)
//!   names that one attribute. quamina cannot address such keys (see [`quamina_can_name`]),
//!   so they are matched by [`eval`]. EventBridge joins a path's keys with dots when it
//!   compiles a pattern (user guide, "Event pattern syntax", considerations), so there
//!   `order.status` also names `order` → `status`; in a stream record the two never meet,
//!   since a nested attribute sits under its type (`order.M.status`).

use std::fmt;

use serde_json::{Map, Value};

use validate::{invalid, join};

mod answers;
pub mod eval;
pub mod fields;
mod validate;

use fields::ReadFields;

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
    /// Valid EventBridge syntax this relay cannot evaluate faithfully.
    #[error("at {path}: {what} is not supported")]
    Unsupported { path: String, what: String },
    /// The matcher rejected the (expanded) pattern.
    #[error("invalid event pattern: {0}")]
    Rejected(String),
}

/// One `$or`-free alternative of a filter, split for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// What quamina matches: the whole pattern, or the part of it quamina can evaluate.
    /// `None` when nothing is left for quamina: every record is confirmed directly.
    prefilter: Option<String>,
    /// The whole pattern, when quamina's hits must be confirmed by [`eval::matches`].
    confirm: Option<Map<String, Value>>,
}

impl Alternative {
    /// The quamina pattern, if any.
    #[must_use]
    pub fn prefilter(&self) -> Option<&str> {
        self.prefilter.as_deref()
    }

    /// Whether quamina's hits need confirming.
    #[must_use]
    pub fn confirmed(&self) -> bool {
        self.confirm.is_some()
    }
}

/// One compiled event pattern. The matching automaton lives in a [`Matcher`], which merges
/// every route's patterns into one.
#[derive(Clone, PartialEq, Eq)]
pub struct Filter {
    text: String,
    /// The `$or`-free alternatives; the filter matches if any does.
    alternatives: Vec<Alternative>,
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
        validate::object(object, "")?;
        let mut probe = quamina::Quamina::<usize>::new();
        let mut alternatives = Vec::new();
        for alt in expand(object, "")? {
            let (prefilter, needs_confirm) = split(&alt);
            let prefilter = (!prefilter.is_empty()).then(|| Value::Object(prefilter).to_string());
            if let Some(p) = &prefilter {
                probe
                    .add_pattern(0, p)
                    .map_err(|e| PatternError::Rejected(e.to_string()))?;
            }
            alternatives.push(Alternative {
                prefilter,
                confirm: needs_confirm.then_some(alt),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            alternatives,
        })
    }

    /// The images the pattern matches on: `NewImage`/`OldImage` under `dynamodb`, through
    /// any `$or`. A record without that image never matches such a field.
    #[must_use]
    pub fn images_read(&self) -> Vec<crate::pipeline::ImageSelector> {
        fn visit(
            value: &Value,
            under_dynamodb: bool,
            out: &mut Vec<crate::pipeline::ImageSelector>,
        ) {
            match value {
                Value::Object(fields) => {
                    for (key, inner) in fields {
                        if key == "$or" {
                            visit(inner, under_dynamodb, out);
                        } else if under_dynamodb {
                            if let Some(image) = crate::pipeline::image::image_named(key) {
                                if !out.contains(&image) {
                                    out.push(image);
                                }
                            }
                        } else if key == "dynamodb" {
                            visit(inner, true, out);
                        }
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        visit(item, under_dynamodb, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let Ok(value) = serde_json::from_str::<Value>(&self.text) {
            visit(&value, false, &mut out);
        }
        out
    }

    /// The pattern as written in the config.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `$or`-free alternatives.
    #[must_use]
    pub fn alternatives(&self) -> &[Alternative] {
        &self.alternatives
    }
}

/// Whether a leaf condition is an EventBridge form quamina does not evaluate (or evaluates
/// more narrowly than AWS, so it cannot even pre-filter).
///
/// IPv6 `cidr`: quamina 0.7's automaton only accepts the fully expanded eight-group form of
/// an address, so a compressed `2001:db8::1` never matches `2001:db8::/64`. Upstream fix, if
/// small: parse the event value with `std::net::Ipv6Addr` and feed the automaton its
/// canonical expanded form instead of the raw bytes.
fn quamina_lacks(condition: &Value) -> bool {
    let Some(op) = condition.as_object() else {
        return false;
    };
    op.iter().any(|(name, arg)| match (name.as_str(), arg) {
        ("prefix" | "suffix" | "anything-but", Value::Object(_)) => true,
        ("cidr", Value::String(net)) => net.contains(':'),
        _ => false,
    })
}

/// Whether a field's conditions include one quamina cannot pre-filter. Besides single
/// forms, quamina 0.7 ignores `exists` OR-ed with other values in one array
/// (`["a", {"exists": true}]` misses `"b"`), so such arrays are evaluated directly.
///
/// `exists: false` is also left to the evaluator: quamina 0.7 misses
/// `{"a": [{"exists": true}], "d": {"b": [{"exists": false}]}}` on `{"a": "x"}`.
fn quamina_lacks_any(conditions: &[Value]) -> bool {
    conditions.iter().any(quamina_lacks)
        || (conditions.len() > 1 && conditions.iter().any(|c| c.get("exists").is_some()))
        || conditions
            .iter()
            .any(|c| c.get("exists") == Some(&Value::Bool(false)))
}

/// Whether a leaf condition is one quamina evaluates more leniently than EventBridge.
fn quamina_widens(condition: &Value) -> bool {
    condition.get("numeric").is_some()
}

/// Whether quamina can address a field by this key. quamina 0.7 joins a pattern's path with
/// `\n` for its automaton, but its segments tree (which decides which event fields to read)
/// splits paths on `.` as well (`lib.rs`, `add_pattern`: `field_path.replace('.', "\n")`), so
/// a key holding a dot never sees its value and never matches. Such keys (and `\n`, its
/// separator) are left to [`eval`], which looks keys up literally. Upstream fix, if small:
/// build the segments tree from the path's own segments instead of re-splitting on dots.
fn quamina_can_name(key: &str) -> bool {
    !key.contains(['.', '\n'])
}

/// The part of `pattern` quamina can evaluate, and whether the whole must be confirmed.
fn split(pattern: &Map<String, Value>) -> (Map<String, Value>, bool) {
    let mut kept = Map::new();
    let mut confirm = false;
    for (key, value) in pattern {
        if !quamina_can_name(key) {
            confirm = true;
            continue;
        }
        match value {
            Value::Object(nested) => {
                let (sub, c) = split(nested);
                confirm |= c;
                if !sub.is_empty() {
                    kept.insert(key.clone(), Value::Object(sub));
                }
            }
            Value::Array(conditions) if quamina_lacks_any(conditions) => confirm = true,
            other => {
                if let Value::Array(conditions) = other {
                    confirm |= conditions.iter().any(quamina_widens);
                }
                kept.insert(key.clone(), other.clone());
            }
        }
    }
    (kept, confirm)
}

/// Every route's filters in one quamina automaton, with the confirmations some need.
pub struct Matcher {
    automaton: quamina::Quamina<u32>,
    /// Per alternative id: the route it belongs to and, if any, the pattern to confirm.
    alternatives: Vec<(usize, Option<Map<String, Value>>)>,
    /// Alternatives with nothing for quamina: confirmed against every record.
    unfiltered: Vec<u32>,
    /// The event fields the automaton's patterns name: all of an event it needs to see.
    read: ReadFields,
    /// Its patterns as they stand, under which quamina's answers are remembered.
    generation: answers::Generation,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matcher")
            .field("alternatives", &self.alternatives.len())
            .finish_non_exhaustive()
    }
}

impl Default for Matcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Matcher {
    #[must_use]
    pub fn new() -> Self {
        Self {
            automaton: quamina::Quamina::new(),
            alternatives: Vec::new(),
            unfiltered: Vec::new(),
            read: ReadFields::default(),
            generation: answers::Generation::next(),
        }
    }

    /// Adds `filter` as one of route `route`'s filters.
    ///
    /// # Errors
    /// [`PatternError::Rejected`] if quamina refuses a pattern (unreachable for a compiled
    /// [`Filter`], which was probed).
    pub fn add(&mut self, route: usize, filter: &Filter) -> Result<(), PatternError> {
        self.generation = answers::Generation::next();
        for alt in &filter.alternatives {
            let id = u32::try_from(self.alternatives.len())
                .map_err(|_| PatternError::Rejected("too many patterns".into()))?;
            match &alt.prefilter {
                Some(p) => {
                    self.automaton
                        .add_pattern(id, p)
                        .map_err(|e| PatternError::Rejected(e.to_string()))?;
                    match serde_json::from_str::<Value>(p) {
                        Ok(Value::Object(pattern)) => self.read.add(&pattern),
                        _ => return Err(PatternError::Rejected(format!("not an object: {p}"))),
                    }
                }
                None => self.unfiltered.push(id),
            }
            self.alternatives.push((route, alt.confirm.clone()));
        }
        Ok(())
    }

    /// What the automaton reads of `event`: its JSON text reduced to the fields the patterns
    /// name (see `fields`), so neither the serialization nor quamina's scan pays for the rest.
    #[must_use]
    pub fn input(&self, event: &Value) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.read.write(event, &mut out);
        out
    }

    /// Everything of an event [`Matcher::matching`] reads: the fields its patterns and their
    /// confirmations name.
    #[must_use]
    pub fn reads(&self) -> ReadFields {
        let mut reads = self.read.clone();
        for confirm in self.alternatives.iter().filter_map(|(_, c)| c.as_ref()) {
            reads.add(confirm);
        }
        reads
    }

    /// Appends to `out` the route of every alternative matching the event (`event_json` is
    /// [`Matcher::input`] of `event`, or `event` serialized whole; both are passed so neither
    /// is recomputed). Routes may repeat.
    ///
    /// quamina's answer for a text is remembered ([`answers`]): records' pruned texts repeat.
    pub fn matching(&self, event: &Value, event_json: &[u8], out: &mut Vec<usize>) {
        // The event is our own serialization of a serde_json::Value, so it is valid JSON.
        let ask = || {
            self.automaton
                .matches_for_event(event_json)
                .unwrap_or_default()
        };
        answers::with_answer(self.generation, event_json, ask, |hits| {
            for &id in hits.iter().chain(&self.unfiltered) {
                let Some((route, confirm)) = self.alternatives.get(id as usize) else {
                    continue;
                };
                if confirm.as_ref().is_none_or(|p| eval::matches(p, event)) {
                    out.push(*route);
                }
            }
        });
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
