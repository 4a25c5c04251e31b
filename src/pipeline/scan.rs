//! A cursor over the JSON text of a record: it finds where each value starts and ends, and
//! reads keys and strings borrowed from the text, without serde's machinery per token.
//!
//! A record's routing parse ([`crate::pipeline::pattern::fields::ReadFields::parse`]) keeps a
//! handful of a record's fields and steps over the rest. Through serde_json's visitors, each
//! of a seed record's forty-odd short tokens cost a hundred-odd instructions (the parse was
//! 10,617 instructions a record, over a third of the relay's loop: BENCHMARKS.md, issue #28);
//! here a string is read eight bytes at a time, inline, and the parse is 7,890. An image kept
//! as text is unmarshalled with it too ([`crate::pipeline::unmarshall::item_of_text`]).
//!
//! The rules:
//! - the text read is JSON this crate wrote (a stream record's `RecordText`, always
//!   serialized by serde_json), so the cursor checks the text's **structure** (quotes,
//!   brackets, separators), not every byte of what it steps over: a value it skips is not
//!   checked further, and brackets are counted, not matched;
//! - what it **keeps** is read exactly as serde_json reads it: a string with no escape is the
//!   text between its quotes, one with an escape and every number are handed to serde_json;
//! - broken structure is an error ([`NotJson`]), never a panic.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Why a text could not be read as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not JSON at byte {at}: {what}")]
pub struct NotJson {
    /// Where in the text.
    pub at: usize,
    /// What was wrong there.
    pub what: &'static str,
}

/// Where the string whose insides start at `from` ends (past its closing quote), and whether
/// it holds an escape; `None` when it is not closed.
#[inline]
fn string_end(bytes: &[u8], mut from: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        from = first_special(bytes, from, false);
        match bytes.get(from)? {
            b'"' => return Some((from + 1, escaped)),
            b'\\' => {
                // The next byte is escaped (a `\uXXXX`'s digits hold no quote).
                escaped = true;
                from += 2;
            }
            _ => from += 1,
        }
    }
}

/// The first byte from `from` on that is a quote or a backslash (or, with `controls`, a
/// control character), or where fewer than eight bytes are left: the caller reads those one
/// at a time. Shared with the strict cursor of GetRecords' body (`stream::wire`).
///
/// Most of a record's strings are short keys: a call to `memchr` costs more than reading them
/// eight bytes at a time here. A quote or a backslash is a zero byte of the word xor-ed with
/// it, a control character a byte that borrows when `0x20` is taken from it; the lowest
/// flagged byte is the first match, exactly (Mycroft's test, which serde_json's string scan
/// uses too).
#[inline(always)]
pub(crate) fn first_special(bytes: &[u8], mut from: usize, controls: bool) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGHS: u64 = ONES << 7;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    const SPACES: u64 = ONES * 0x20;
    while let Some(word) = bytes.get(from..from + 8) {
        let mut chunk = [0; 8];
        chunk.copy_from_slice(word);
        let chunk = u64::from_le_bytes(chunk);
        let quote = chunk ^ QUOTES;
        let backslash = chunk ^ BACKSLASHES;
        let mut found =
            quote.wrapping_sub(ONES) & !quote | backslash.wrapping_sub(ONES) & !backslash;
        if controls {
            found |= chunk.wrapping_sub(SPACES) & !chunk;
        }
        let found = found & HIGHS;
        if found != 0 {
            return from + (found.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    from
}

/// What a byte is to [`Scan::nested_end`] and [`Scan::skip`]'s scalars.
const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;
/// Ends a scalar (and is no bracket): `,`, whitespace.
const DELIMITER: u8 = 4;

const KINDS: [u8; 256] = {
    let mut kinds = [PLAIN; 256];
    kinds[b'"' as usize] = QUOTE;
    kinds[b'{' as usize] = OPEN;
    kinds[b'[' as usize] = OPEN;
    kinds[b'}' as usize] = CLOSE;
    kinds[b']' as usize] = CLOSE;
    kinds[b',' as usize] = DELIMITER;
    kinds[b' ' as usize] = DELIMITER;
    kinds[b'\n' as usize] = DELIMITER;
    kinds[b'\r' as usize] = DELIMITER;
    kinds[b'\t' as usize] = DELIMITER;
    kinds
};

/// A position in a JSON text.
#[derive(Debug, Clone)]
pub struct Scan<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Scan<'t> {
    #[must_use]
    pub fn new(text: &'t str) -> Self {
        Self { text, at: 0 }
    }

    #[cold]
    fn error(&self, what: &'static str) -> NotJson {
        NotJson { at: self.at, what }
    }

    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The first byte of the next token, after any whitespace (not consumed).
    ///
    /// # Errors
    /// The text ends.
    #[inline]
    pub fn peek(&mut self) -> Result<u8, NotJson> {
        self.skip_whitespace();
        self.bytes()
            .get(self.at)
            .copied()
            .ok_or_else(|| self.error("the text ends where a value should be"))
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), NotJson> {
        if self.peek()? == byte {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// Enters the object that is next: its first key, or `None` when it is empty.
    ///
    /// # Errors
    /// The next value is not an object, or its first key is malformed.
    pub fn object_first(&mut self) -> Result<Option<Cow<'t, str>>, NotJson> {
        // Compact text (the commonest): `{"` opens the object and its first key.
        if self.bytes().get(self.at..self.at + 2) == Some(b"{\"") {
            self.at += 1;
            return self.key().map(Some);
        }
        self.expect(b'{', "expected an object")?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Ok(None);
        }
        self.key().map(Some)
    }

    /// After an object's value: its next key, or `None` at the object's end.
    ///
    /// # Errors
    /// Neither `,` nor `}` follows, or the key is malformed.
    #[inline]
    pub fn object_next(&mut self) -> Result<Option<Cow<'t, str>>, NotJson> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.key().map(Some)
            }
            b'}' => {
                self.at += 1;
                Ok(None)
            }
            _ => Err(self.error("expected `,` or `}` after an object's value")),
        }
    }

    #[inline]
    fn key(&mut self) -> Result<Cow<'t, str>, NotJson> {
        // Compact text: the key's quote is the next byte.
        if self.bytes().get(self.at) != Some(&b'"') && self.peek()? != b'"' {
            return Err(self.error("expected an object's key"));
        }
        let key = self.quoted()?;
        // Compact text: the colon is the next byte.
        if self.bytes().get(self.at) == Some(&b':') {
            self.at += 1;
        } else {
            self.expect(b':', "expected `:` after an object's key")?;
        }
        Ok(key)
    }

    /// Enters the array that is next: whether an element follows.
    ///
    /// # Errors
    /// The next value is not an array.
    pub fn array_first(&mut self) -> Result<bool, NotJson> {
        self.expect(b'[', "expected an array")?;
        if self.peek()? == b']' {
            self.at += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// After an array's element: whether another follows.
    ///
    /// # Errors
    /// Neither `,` nor `]` follows.
    pub fn array_next(&mut self) -> Result<bool, NotJson> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Ok(true)
            }
            b']' => {
                self.at += 1;
                Ok(false)
            }
            _ => Err(self.error("expected `,` or `]` after an array's element")),
        }
    }

    /// The string that is next, unescaped: borrowed from the text when it holds no escape.
    ///
    /// # Errors
    /// The next value is not a string, or it is malformed.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'t, str>, NotJson> {
        if self.bytes().get(self.at) != Some(&b'"') && self.peek()? != b'"' {
            return Err(self.error("expected a string"));
        }
        self.quoted()
    }

    /// The string whose opening quote is at the cursor.
    #[inline]
    fn quoted(&mut self) -> Result<Cow<'t, str>, NotJson> {
        let start = self.at;
        let (end, escaped) = self.string_end(start)?;
        self.at = end;
        if escaped {
            return self.unescaped(start, end).map(Cow::Owned);
        }
        self.slice(start + 1, end - 1).map(Cow::Borrowed)
    }

    /// The quoted string `start..end`, which holds an escape, as serde_json reads it.
    #[cold]
    fn unescaped(&self, start: usize, end: usize) -> Result<String, NotJson> {
        serde_json::from_str(self.slice(start, end)?).map_err(|_| NotJson {
            at: start,
            what: "a string's escape is malformed",
        })
    }

    /// The end (past the closing quote) of the string whose opening quote is at `start`, and
    /// whether it holds an escape.
    #[inline]
    fn string_end(&self, start: usize) -> Result<(usize, bool), NotJson> {
        string_end(self.bytes(), start + 1).ok_or(NotJson {
            at: start,
            what: "a string is not closed",
        })
    }

    #[inline]
    fn slice(&self, start: usize, end: usize) -> Result<&'t str, NotJson> {
        // Every position the cursor stops at is next to an ASCII byte: a char boundary.
        self.text.get(start..end).ok_or(NotJson {
            at: start,
            what: "a value does not start on a character",
        })
    }

    /// The text from this position (before a value) to `later`'s (after it): the value's
    /// text, as [`Scan::skip`] gives it.
    #[must_use]
    pub fn text_to(mut self, later: &Scan<'t>) -> &'t str {
        self.skip_whitespace();
        self.text.get(self.at..later.at).unwrap_or_default()
    }

    /// Steps over the value that is next: its text.
    ///
    /// # Errors
    /// The text ends inside it, or no value is there.
    pub fn skip(&mut self) -> Result<&'t str, NotJson> {
        let first = self.peek()?;
        let start = self.at;
        let end = match first {
            b'"' => self.string_end(self.at)?.0,
            b'{' | b'[' => self.nested_end()?,
            b',' | b'}' | b']' | b':' => return Err(self.error("expected a value")),
            _ => {
                let bytes = self.bytes();
                let mut end = self.at;
                while let Some(&byte) = bytes.get(end) {
                    if matches!(KINDS[usize::from(byte)], CLOSE | DELIMITER) {
                        break;
                    }
                    end += 1;
                }
                end
            }
        };
        self.at = end;
        self.slice(start, end)
    }

    /// The end of the object or array starting at the cursor: brackets counted, strings
    /// stepped over.
    fn nested_end(&self) -> Result<usize, NotJson> {
        let bytes = self.bytes();
        let mut depth = 0_usize;
        let mut at = self.at;
        while let Some(&byte) = bytes.get(at) {
            match KINDS[usize::from(byte)] {
                QUOTE => {
                    at = self.string_end(at)?.0;
                    continue;
                }
                OPEN => depth += 1,
                CLOSE => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(at + 1);
                    }
                }
                _ => {}
            }
            at += 1;
        }
        Err(NotJson {
            at: self.at,
            what: "an object or array is not closed",
        })
    }

    /// The value that is next, whole, as serde_json reads it into a [`Value`].
    ///
    /// # Errors
    /// It is malformed.
    pub fn value(&mut self) -> Result<Value, NotJson> {
        match self.peek()? {
            b'"' => Ok(Value::String(self.string()?.into_owned())),
            b'{' => {
                let mut out = Map::new();
                let mut key = self.object_first()?;
                while let Some(name) = key {
                    let value = self.value()?;
                    out.insert(name.into_owned(), value);
                    key = self.object_next()?;
                }
                Ok(Value::Object(out))
            }
            b'[' => {
                let mut out = Vec::new();
                if self.array_first()? {
                    loop {
                        out.push(self.value()?);
                        if !self.array_next()? {
                            break;
                        }
                    }
                }
                Ok(Value::Array(out))
            }
            _ => {
                let at = self.at;
                match self.skip()? {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    // A number: serde_json reads its text (every digit kept).
                    token => serde_json::from_str(token).map_err(|_| NotJson {
                        at,
                        what: "a scalar is neither a number nor a literal",
                    }),
                }
            }
        }
    }

    /// Checks that only whitespace follows.
    ///
    /// # Errors
    /// Something else does.
    pub fn finish(&mut self) -> Result<(), NotJson> {
        self.skip_whitespace();
        if self.at == self.text.len() {
            Ok(())
        } else {
            Err(self.error("trailing characters after the value"))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Any JSON value: strings of any characters (quotes, backslashes, controls, non-ASCII;
    /// and each byte serde_json escapes, at any offset of an eight-byte word), numbers of
    /// every kind, nested up to four levels.
    pub(crate) fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            Just(
                serde_json::from_str("12345678901234567890.000000000000000001").expect("a number")
            ),
            any::<String>().prop_map(Value::String),
            ("[a-zé]{0,12}", 0_u8..0x20, "[a-zé]{0,12}")
                .prop_map(|(a, c, b)| Value::String(format!("{a}{}{b}", char::from(c)))),
            (
                "[a-zé]{0,12}",
                prop::sample::select(vec!['"', '\\', '\u{7f}']),
                "[a-z]{0,12}"
            )
                .prop_map(|(a, c, b)| Value::String(format!("{a}{c}{b}"))),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn a_value_reads_as_serde_json_reads_it_compact_or_pretty(value in value()) {
            for text in [value.to_string(), serde_json::to_string_pretty(&value).expect("text")] {
                let mut scan = Scan::new(&text);
                prop_assert_eq!(scan.value().expect("json"), value.clone());
                prop_assert!(scan.finish().is_ok());
                let mut scan = Scan::new(&text);
                let skipped = scan.skip().expect("json");
                prop_assert_eq!(skipped, text.trim());
                prop_assert!(scan.finish().is_ok());
            }
        }

        #[test]
        fn a_cut_text_is_an_error_never_a_panic(value in value(), cut in any::<prop::sample::Index>()) {
            let text = json!({"a": value, "b": [1, "x"]}).to_string();
            let mut at = cut.index(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let cut = &text[..at];
            prop_assert!(Scan::new(cut).value().is_err());
            let mut scan = Scan::new(cut);
            prop_assert!(scan.skip().is_err() || scan.finish().is_err());
        }
    }

    #[test]
    fn strings_end_at_their_closing_quote_wherever_it_falls() {
        // Quotes and backslashes at every offset of the eight-byte words.
        for prefix in ["", "é"] {
            for len in 0..24 {
                let inner = format!("{prefix}{}\"{}", "x".repeat(len), "y".repeat(24 - len));
                let text = json!({ "k": inner, "z": "\\" }).to_string();
                let mut scan = Scan::new(&text);
                assert_eq!(
                    scan.value().expect("json"),
                    json!({ "k": inner, "z": "\\" }),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn malformed_structure_is_an_error() {
        for text in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "[1,",
            "\"x",
            "{\"a\":1}}",
            "{\"a\":tru}",
            "{1:2}",
            "[1 2]",
        ] {
            let mut scan = Scan::new(text);
            let read = scan.value().and_then(|_| scan.finish());
            assert!(read.is_err(), "{text:?} was read");
        }
    }

    #[test]
    fn an_escaped_key_is_its_unescaped_text() {
        let mut scan = Scan::new(r#"{"event\u004eame":"INSERT","a\"b":1}"#);
        assert_eq!(
            scan.object_first().expect("key").as_deref(),
            Some("eventName")
        );
        assert_eq!(scan.string().expect("value"), "INSERT");
        assert_eq!(scan.object_next().expect("key").as_deref(), Some("a\"b"));
    }
}
