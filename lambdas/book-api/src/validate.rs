//! Request bodies: parsed by hand over `serde_json::Value` so that every error names its field.

use books_common::Book;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::{json, Map, Value};

/// DynamoDB allows 2048 bytes for a partition key; a name is far shorter.
const MAX_NAME_BYTES: usize = 1024;
const MAX_AUTHORS: usize = 100;

/// A 400: what is wrong, and with which field (none for a body that is not a JSON object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub field: Option<&'static str>,
    pub error: String,
}

impl BadRequest {
    fn body(error: impl Into<String>) -> Self {
        Self {
            field: None,
            error: error.into(),
        }
    }

    fn field(field: &'static str, error: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            error: error.into(),
        }
    }

    #[must_use]
    pub fn response(&self) -> Response<Body> {
        let body = match self.field {
            Some(field) => json!({"error": self.error, "field": field}),
            None => json!({"error": self.error}),
        };
        crate::json_response(StatusCode::BAD_REQUEST, &body)
    }
}

/// The body of `DELETE /book`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub name: String,
}

fn object(body: &[u8], fields: &[&'static str]) -> Result<Map<String, Value>, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadRequest::body(
            "the request body is empty; expected a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BadRequest::body(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(BadRequest::body("the request body must be a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(BadRequest {
            field: None,
            error: format!(
                "unknown field \"{unknown}\"; expected {}",
                fields.join(", ")
            ),
        });
    }
    Ok(map)
}

fn name(map: &Map<String, Value>) -> Result<String, BadRequest> {
    match map.get("name") {
        None => Err(BadRequest::field("name", "missing")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(BadRequest::field("name", "must not be empty"))
        }
        Some(Value::String(s)) if s.len() > MAX_NAME_BYTES => Err(BadRequest::field(
            "name",
            format!("must be at most {MAX_NAME_BYTES} bytes"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(BadRequest::field("name", "must be a string")),
    }
}

fn authors(map: &Map<String, Value>) -> Result<Vec<String>, BadRequest> {
    let Some(value) = map.get("authors") else {
        return Err(BadRequest::field("authors", "missing"));
    };
    let Value::Array(items) = value else {
        return Err(BadRequest::field("authors", "must be an array of strings"));
    };
    if items.is_empty() || items.len() > MAX_AUTHORS {
        return Err(BadRequest::field(
            "authors",
            format!("must list 1 to {MAX_AUTHORS} authors"),
        ));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(BadRequest::field(
                "authors",
                "every author must be a non-empty string",
            )),
        })
        .collect()
}

fn year(map: &Map<String, Value>) -> Result<i64, BadRequest> {
    match map.get("year") {
        None => Err(BadRequest::field("year", "missing")),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(y) if (1..=9999).contains(&y) => Ok(y),
            _ => Err(BadRequest::field(
                "year",
                "must be an integer from 1 to 9999",
            )),
        },
        Some(_) => Err(BadRequest::field("year", "must be an integer")),
    }
}

/// The body of `POST /book`: `{"name": string, "authors": [string], "year": integer}`.
///
/// # Errors
/// The first problem found, naming its field.
pub fn book(body: &[u8]) -> Result<Book, BadRequest> {
    let map = object(body, &["name", "authors", "year"])?;
    Ok(Book {
        name: name(&map)?,
        authors: authors(&map)?,
        year: year(&map)?,
    })
}

/// The body of `DELETE /book`: `{"name": string}`.
///
/// # Errors
/// The first problem found, naming its field.
pub fn removal(body: &[u8]) -> Result<Removal, BadRequest> {
    let map = object(body, &["name"])?;
    Ok(Removal { name: name(&map)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_input_is_a_book() {
        let body = br#"{"name": "Team Topologies", "authors": ["Manuel Pais", "Matthew Skelton"], "year": 2019}"#;
        assert_eq!(
            book(body),
            Ok(Book {
                name: "Team Topologies".into(),
                authors: vec!["Manuel Pais".into(), "Matthew Skelton".into()],
                year: 2019,
            })
        );
    }

    #[test]
    fn every_error_names_its_field() {
        let cases: &[(&[u8], Option<&str>, &str)] = &[
            (b"", None, "empty"),
            (b"  \n", None, "empty"),
            (b"{", None, "not valid JSON"),
            (b"[1]", None, "JSON object"),
            (br#"{"authors": ["a"], "year": 1}"#, Some("name"), "missing"),
            (
                br#"{"name": 7, "authors": ["a"], "year": 1}"#,
                Some("name"),
                "string",
            ),
            (
                br#"{"name": " ", "authors": ["a"], "year": 1}"#,
                Some("name"),
                "empty",
            ),
            (br#"{"name": "n", "year": 1}"#, Some("authors"), "missing"),
            (
                br#"{"name": "n", "authors": "a", "year": 1}"#,
                Some("authors"),
                "array",
            ),
            (
                br#"{"name": "n", "authors": [], "year": 1}"#,
                Some("authors"),
                "1 to",
            ),
            (
                br#"{"name": "n", "authors": [""], "year": 1}"#,
                Some("authors"),
                "non-empty",
            ),
            (
                br#"{"name": "n", "authors": ["a"]}"#,
                Some("year"),
                "missing",
            ),
            (
                br#"{"name": "n", "authors": ["a"], "year": "2019"}"#,
                Some("year"),
                "integer",
            ),
            (
                br#"{"name": "n", "authors": ["a"], "year": 20.5}"#,
                Some("year"),
                "integer",
            ),
            (
                br#"{"name": "n", "authors": ["a"], "year": 1, "isbn": "x"}"#,
                None,
                "unknown field \"isbn\"",
            ),
        ];
        for (body, field, error) in cases {
            let bad = book(body).expect_err(&String::from_utf8_lossy(body));
            assert_eq!(bad.field, *field, "{}", String::from_utf8_lossy(body));
            assert!(
                bad.error.contains(error),
                "{}: {}",
                String::from_utf8_lossy(body),
                bad.error
            );
        }
        let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(MAX_NAME_BYTES + 1));
        assert_eq!(
            removal(long.as_bytes()).map_err(|b| b.field),
            Err(Some("name"))
        );
        assert_eq!(
            removal(br#"{"name": "n"}"#),
            Ok(Removal { name: "n".into() })
        );
    }
}
