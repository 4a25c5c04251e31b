//! EventBridge event patterns (a Pipe's `FilterCriteria`), compiled and matched with `quamina`.
//!
//! A [`Filter`] is one pattern as users paste it. Validation happens at compile time so a bad
//! pattern stops start-up with the route and the reason.

use std::fmt;

/// Why a pattern was rejected.
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
    /// The matcher rejected the pattern (unknown operator, a value not in an array, ...).
    #[error("invalid event pattern: {0}")]
    Rejected(String),
}

/// One compiled event pattern. Cheap to clone (the source text only); the matching automaton
/// lives in the [`crate::pipeline::Router`], which merges every route's patterns into one.
#[derive(Clone, PartialEq, Eq)]
pub struct Filter {
    text: String,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.text).finish()
    }
}

impl Filter {
    /// Checks `text` is a pattern the matcher accepts.
    ///
    /// # Errors
    /// [`PatternError`] naming why the pattern is not valid.
    pub fn compile(text: &str) -> Result<Self, PatternError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PatternError::InvalidJson(e.to_string()))?;
        let object = value.as_object().ok_or(PatternError::NotAnObject)?;
        if object.is_empty() {
            return Err(PatternError::Empty);
        }
        let mut probe = quamina::Quamina::<usize>::new();
        probe
            .add_pattern(0, text)
            .map_err(|e| PatternError::Rejected(e.to_string()))?;
        Ok(Self {
            text: text.to_owned(),
        })
    }

    /// The pattern as written in the config.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(
            Filter::compile(r#"{"eventName": "INSERT"}"#),
            Err(PatternError::Rejected(_))
        ));
    }

    #[test]
    fn accepts_a_pipes_dynamodb_filter() {
        let f = Filter::compile(
            r#"{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"eventType": {"S": ["BookAdded"]}}}}"#,
        )
        .expect("valid pattern");
        assert!(f.as_str().contains("BookAdded"));
    }
}
