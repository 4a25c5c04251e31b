//! A JSON string as serde_json reads it, borrowed from the text when it holds no escape.
//!
//! `Cow<str>`'s own `Deserialize` always allocates (serde builds the owned form); a record has
//! dozens of keys and short strings, most of them skipped, so the wire parse of GetRecords' body
//! reads them as [`Str`] (issue #28). The routing parse of a record's text borrows them through
//! its own cursor (`pipeline::scan`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// A string, borrowed from the text when it can be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Str<'de>(pub Cow<'de, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(text: &'a str) -> Self {
        Self(Cow::Borrowed(text))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor(std::marker::PhantomData))
    }
}

struct StrVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
    type Value = Str<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Str<'a>, E> {
        Ok(Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Str<'a>, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Str<'a>, E> {
        Ok(Str(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_without_escapes_is_borrowed_and_one_with_escapes_is_decoded() {
        let plain: Str<'_> = serde_json::from_str(r#""pk""#).expect("a string");
        assert!(matches!(plain.0, Cow::Borrowed("pk")));
        let escaped: Str<'_> = serde_json::from_str(r#""p\u006b""#).expect("a string");
        assert_eq!(escaped.0, "pk");
        assert!(matches!(escaped.0, Cow::Owned(_)));
        // What `Cow<str>` would have done: always owned.
        let cow: Cow<'_, str> = serde_json::from_str(r#""pk""#).expect("a string");
        assert!(matches!(cow, Cow::Owned(_)));
    }
}
