//! GetRecords' answer read in one pass of a strict cursor ([`Strict`]), into [`WireRecord`]s.
//!
//! Through serde (a derived `Deserialize` per record, `RawValue` for the images), the body's
//! parse was about 11,700 instructions an outbox row, a fifth of the process's own work
//! (BENCHMARKS.md, issue #28): serde's per-member machinery, and a byte-at-a-time tail for each
//! of the images' short strings. Here each member's key is matched as text, a string is read
//! eight bytes at a time, and an image is stepped over once, checked as it goes.
//!
//! The rules:
//! - what this accepts, serde_json accepts: every byte of the body is checked (structure,
//!   strings with their escapes and control characters, numbers' grammar, literals), as
//!   serde_json's `ignore_value` checks a value it steps over; a property test compares the two
//!   on valid and broken texts;
//! - what it keeps is read as serde_json reads it: a string with an escape, the creation
//!   time's number, are handed to serde_json;
//! - it refuses more than serde did only where AWS sends nothing of the kind (a struct written
//!   as an array), and a refused body goes to the SDK, whose reading then stands;
//! - a member named twice is refused, as serde's derive refused it.

use std::borrow::Cow;

use aws_smithy_types::DateTime;

use super::{WireIdentity, WireRecord, WireStreamRecord};
use crate::pipeline::scan::first_special;
use crate::stream::source::StreamRecord;

/// Why a body is not GetRecords' answer, as this parse reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not GetRecords' answer at byte {at}: {what}")]
pub struct NotAnswer {
    /// Where in the body.
    pub at: usize,
    /// What was wrong there.
    pub what: &'static str,
}

type Result<T> = std::result::Result<T, NotAnswer>;

/// The records (laid out as ours as soon as each is read) and `NextShardIterator`.
pub(super) fn read(text: &str) -> Result<(Vec<StreamRecord>, Option<String>)> {
    let mut cursor = Strict::new(text);
    let mut records = Vec::new();
    let mut next = None;
    let mut seen = Seen::default();
    cursor.members(|c, key| {
        match &*key {
            "Records" => {
                seen.once(c, 0)?;
                if !c.null()? {
                    c.elements(|c| {
                        records.extend(c.record()?.into_stream_record());
                        Ok(())
                    })?;
                }
            }
            "NextShardIterator" => {
                seen.once(c, 1)?;
                next = c.optional_string()?.map(Cow::into_owned);
            }
            _ => {
                c.value()?;
            }
        }
        Ok(())
    })?;
    cursor.finish()?;
    Ok((records, next))
}

/// The members of one object already read: a second one of a name is refused.
#[derive(Default)]
struct Seen(u16);

impl Seen {
    fn once(&mut self, cursor: &Strict<'_>, member: u8) -> Result<()> {
        let bit = 1 << member;
        if self.0 & bit != 0 {
            return Err(cursor.error("a member is named twice"));
        }
        self.0 |= bit;
        Ok(())
    }
}

impl<'t> Strict<'t> {
    fn record(&mut self) -> Result<WireRecord<'t>> {
        let mut record = WireRecord::default();
        let mut seen = Seen::default();
        self.members(|c, key| match &*key {
            "eventID" => c.member(&mut seen, 0, &mut record.event_id, Self::optional_string),
            "eventName" => c.member(&mut seen, 1, &mut record.event_name, Self::optional_string),
            "eventVersion" => c.member(
                &mut seen,
                2,
                &mut record.event_version,
                Self::optional_string,
            ),
            "eventSource" => c.member(
                &mut seen,
                3,
                &mut record.event_source,
                Self::optional_string,
            ),
            "awsRegion" => c.member(&mut seen, 4, &mut record.aws_region, Self::optional_string),
            "dynamodb" => c.member(&mut seen, 5, &mut record.dynamodb, |c| {
                c.optional(Self::stream_record)
            }),
            "userIdentity" => c.member(&mut seen, 6, &mut record.user_identity, |c| {
                c.optional(Self::identity)
            }),
            _ => c.value().map(drop),
        })?;
        Ok(record)
    }

    fn stream_record(&mut self) -> Result<WireStreamRecord<'t>> {
        let mut ddb = WireStreamRecord::default();
        let mut seen = Seen::default();
        let image = |c: &mut Self| c.optional(Self::value);
        self.members(|c, key| match &*key {
            "ApproximateCreationDateTime" => {
                c.member(&mut seen, 0, &mut ddb.approximate_creation_date_time, |c| {
                    c.optional(Self::epoch_seconds)
                })
            }
            "Keys" => c.member(&mut seen, 1, &mut ddb.keys, image),
            "NewImage" => c.member(&mut seen, 2, &mut ddb.new_image, image),
            "OldImage" => c.member(&mut seen, 3, &mut ddb.old_image, image),
            "SequenceNumber" => c.member(
                &mut seen,
                4,
                &mut ddb.sequence_number,
                Self::optional_string,
            ),
            "SizeBytes" => c.member(&mut seen, 5, &mut ddb.size_bytes, |c| {
                c.optional(Self::integer)
            }),
            "StreamViewType" => c.member(
                &mut seen,
                6,
                &mut ddb.stream_view_type,
                Self::optional_string,
            ),
            _ => c.value().map(drop),
        })?;
        Ok(ddb)
    }

    fn identity(&mut self) -> Result<WireIdentity<'t>> {
        let mut identity = WireIdentity::default();
        let mut seen = Seen::default();
        self.members(|c, key| match &*key {
            "Type" => c.member(&mut seen, 0, &mut identity.r#type, Self::optional_string),
            "PrincipalId" => c.member(
                &mut seen,
                1,
                &mut identity.principal_id,
                Self::optional_string,
            ),
            _ => c.value().map(drop),
        })?;
        Ok(identity)
    }

    /// A member's value read into `field` by `read`, the first time the member is named (a
    /// second time is refused).
    fn member<T>(
        &mut self,
        seen: &mut Seen,
        bit: u8,
        field: &mut T,
        read: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<()> {
        seen.once(self, bit)?;
        *field = read(self)?;
        Ok(())
    }

    /// `null` as none, else what `read` reads.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        if self.null()? {
            Ok(None)
        } else {
            read(self).map(Some)
        }
    }

    fn optional_string(&mut self) -> Result<Option<Cow<'t, str>>> {
        self.optional(Self::string)
    }

    /// An epoch-seconds number as the SDK reads it (`DateTime::from_secs_f64`, serde_json's
    /// digits to `f64`), refusing what it refuses (not finite).
    fn epoch_seconds(&mut self) -> Result<DateTime> {
        let at = self.at;
        let seconds: f64 = serde_json::from_str(self.number()?).map_err(|_| NotAnswer {
            at,
            what: "epoch seconds are not a number",
        })?;
        if !seconds.is_finite() {
            return Err(NotAnswer {
                at,
                what: "epoch seconds must be finite",
            });
        }
        Ok(DateTime::from_secs_f64(seconds))
    }

    /// An `i64` as serde reads one from JSON: an integer's digits, no fraction nor exponent.
    fn integer(&mut self) -> Result<i64> {
        let at = self.at;
        let not_integer = NotAnswer {
            at,
            what: "not an integer that fits 64 bits",
        };
        match self.number()? {
            // serde_json reads `-0` as a float (its sign kept), which no `i64` takes.
            "-0" => Err(not_integer),
            digits => digits.parse().map_err(|_| not_integer),
        }
    }
}

/// A position in a JSON text, every byte of which it checks as serde_json does (the text is
/// UTF-8 already: a `str`).
struct Strict<'t> {
    text: &'t str,
    at: usize,
    /// The open objects (`{`) and arrays (`[`) of the value being stepped over, reused.
    open: Vec<u8>,
}

impl<'t> Strict<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            at: 0,
            open: Vec::new(),
        }
    }

    #[cold]
    fn error(&self, what: &'static str) -> NotAnswer {
        NotAnswer { at: self.at, what }
    }

    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next token's first byte, after whitespace (not consumed).
    #[inline]
    fn peek(&mut self) -> Result<u8> {
        self.whitespace();
        match self.bytes().get(self.at) {
            Some(&byte) => Ok(byte),
            None => Err(self.error("the text ends where a token was expected")),
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &'static str) -> Result<()> {
        if self.peek()? == byte {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// Whether the next value is `null` (consumed if so).
    #[inline]
    fn null(&mut self) -> Result<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// Calls `member` with each key of the object that is next, the cursor at its value;
    /// `member` reads the value.
    fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'t, str>) -> Result<()>,
    ) -> Result<()> {
        self.expect(b'{', "expected an object")?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':', "expected `:`")?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// Calls `element` with the cursor at each element of the array that is next.
    fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.expect(b'[', "expected an array")?;
        if self.peek()? == b']' {
            self.at += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// The string that is next, as serde_json reads it: borrowed without an escape, decoded
    /// by serde_json with one.
    fn string(&mut self) -> Result<Cow<'t, str>> {
        self.expect(b'"', "expected a string")?;
        let start = self.at;
        let (end, escaped) = self.string_end(start)?;
        self.at = end;
        let inside = &self.text[start..end - 1];
        if !escaped {
            return Ok(Cow::Borrowed(inside));
        }
        serde_json::from_str(&self.text[start - 1..end])
            .map(Cow::Owned)
            .map_err(|_| NotAnswer {
                at: start,
                what: "a string's escapes are not text",
            })
    }

    /// Where the string whose insides start at `from` ends (past its closing quote), and
    /// whether it holds an escape. A control character, a bad escape or no closing quote is
    /// an error, as in serde_json's. Eight bytes at a time, as the routing cursor reads
    /// strings ([`first_special`]).
    #[inline]
    fn string_end(&self, mut from: usize) -> Result<(usize, bool)> {
        let bytes = self.bytes();
        let mut escaped = false;
        loop {
            from = first_special(bytes, from, true);
            match bytes.get(from) {
                Some(b'"') => return Ok((from + 1, escaped)),
                Some(b'\\') => {
                    escaped = true;
                    from = self.escape_end(from + 1)?;
                }
                Some(0..=0x1f) => {
                    return Err(NotAnswer {
                        at: from,
                        what: "a control character in a string",
                    })
                }
                Some(_) => from += 1,
                None => {
                    return Err(NotAnswer {
                        at: from,
                        what: "a string is not closed",
                    })
                }
            }
        }
    }

    /// Past the escape whose letter is at `at`: one of `"\/bfnrt`, or `u` and four hex digits
    /// (which surrogate they make is checked only where a string is kept, as serde_json's
    /// `ignore_str` does).
    fn escape_end(&self, at: usize) -> Result<usize> {
        let bytes = self.bytes();
        let end = match bytes.get(at) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at + 1,
            Some(b'u')
                if bytes
                    .get(at + 1..at + 5)
                    .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit)) =>
            {
                at + 5
            }
            _ => {
                return Err(NotAnswer {
                    at,
                    what: "an invalid escape",
                })
            }
        };
        Ok(end)
    }

    /// The number that is next, checked against JSON's grammar (`-? int frac? exp?`): its
    /// text.
    fn number(&mut self) -> Result<&'t str> {
        self.whitespace();
        let start = self.at;
        let end = self.number_end(start)?;
        self.at = end;
        Ok(&self.text[start..end])
    }

    fn number_end(&self, mut at: usize) -> Result<usize> {
        let bytes = self.bytes();
        let digits = |mut at: usize| {
            while let Some(b'0'..=b'9') = bytes.get(at) {
                at += 1;
            }
            at
        };
        let invalid = |at| NotAnswer {
            at,
            what: "an invalid number",
        };
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        at = match bytes.get(at) {
            Some(b'0') => at + 1,
            Some(b'1'..=b'9') => digits(at + 1),
            _ => return Err(invalid(at)),
        };
        if bytes.get(at) == Some(&b'.') {
            let end = digits(at + 1);
            if end == at + 1 {
                return Err(invalid(end));
            }
            at = end;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            let end = digits(at);
            if end == at {
                return Err(invalid(end));
            }
            at = end;
        }
        Ok(at)
    }

    /// Steps over the value that is next, checked as serde_json's `ignore_value` checks it:
    /// its text.
    fn value(&mut self) -> Result<&'t str> {
        self.whitespace();
        let start = self.at;
        self.open.clear();
        loop {
            // A value: a scalar read whole, or an object or array opened.
            match self.peek()? {
                b'"' => self.at = self.string_end(self.at + 1)?.0,
                b'-' | b'0'..=b'9' => self.at = self.number_end(self.at)?,
                b'n' => self.literal(b"null")?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                open @ (b'{' | b'[') => {
                    self.at += 1;
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.at += 1;
                    } else {
                        self.open.push(open);
                        if open == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                _ => return Err(self.error("expected a value")),
            }
            // After a value: the next member or element, or the ends of what it closes.
            loop {
                let Some(&open) = self.open.last() else {
                    return Ok(&self.text[start..self.at]);
                };
                match (open, self.peek()?) {
                    (_, b',') => {
                        self.at += 1;
                        if open == b'{' {
                            self.key()?;
                        }
                        break;
                    }
                    (b'{', b'}') | (b'[', b']') => {
                        self.at += 1;
                        self.open.pop();
                    }
                    (b'{', _) => return Err(self.error("expected `,` or `}`")),
                    _ => return Err(self.error("expected `,` or `]`")),
                }
            }
        }
    }

    /// A member's key and its `:`, stepped over.
    fn key(&mut self) -> Result<()> {
        self.expect(b'"', "expected a key")?;
        self.at = self.string_end(self.at)?.0;
        self.expect(b':', "expected `:`")
    }

    /// Checks that only whitespace follows.
    fn finish(&mut self) -> Result<()> {
        self.whitespace();
        if self.at == self.text.len() {
            Ok(())
        } else {
            Err(self.error("trailing characters after the answer"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What serde_json says of `text` as one value: its acceptance, as `ignore_value` (the
    /// way a `RawValue` is checked) gives it.
    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    fn strict_accepts(text: &str) -> bool {
        let mut cursor = Strict::new(text);
        cursor.value().is_ok() && cursor.finish().is_ok()
    }

    /// A JSON text with a few characters taken out or put in: mostly broken.
    fn mutated() -> impl Strategy<Value = String> {
        let value = crate::pipeline::scan::tests::value();
        let edits = proptest::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop_oneof![
                    Just(None),
                    proptest::sample::select(
                        "\"\\{}[],:0123456789-+.eEtrufalsn u/bx\u{1}\u{1f}\t\né"
                            .chars()
                            .collect::<Vec<_>>()
                    )
                    .prop_map(Some),
                ],
            ),
            1..4,
        );
        (value, any::<bool>(), edits).prop_map(|(value, pretty, edits)| {
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            }
            .expect("serializes");
            let mut chars: Vec<char> = text.chars().collect();
            for (at, edit) in edits {
                let at = at.index(chars.len() + 1);
                match edit {
                    Some(c) => chars.insert(at, c),
                    None if at < chars.len() => {
                        chars.remove(at);
                    }
                    None => {}
                }
            }
            chars.into_iter().collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// Every value serde_json writes is stepped over whole, compact or pretty-printed.
        #[test]
        fn a_written_value_is_stepped_over_whole(value in crate::pipeline::scan::tests::value(), pretty: bool) {
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            }
            .expect("serializes");
            let mut cursor = Strict::new(&text);
            prop_assert_eq!(cursor.value(), Ok(text.as_str()));
        }

        /// On broken texts too, the cursor accepts exactly what serde_json accepts.
        #[test]
        fn it_accepts_what_serde_json_accepts(text in mutated()) {
            prop_assert_eq!(strict_accepts(&text), serde_accepts(&text), "{:?}", text);
        }
    }

    #[test]
    fn the_edges_of_the_grammar_are_serde_jsons() {
        for text in [
            "0",
            "-0",
            "01",
            "-",
            "1.",
            "1.5",
            ".5",
            "1e",
            "1e+",
            "1E-7",
            "1e5",
            "-01",
            "+1",
            "tru",
            "true",
            "truex",
            "nul",
            "null",
            "false",
            "\"\"",
            "\"\\u00e9\"",
            "\"\\u00g9\"",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"a\u{1}\"",
            "\"a\u{7f}\"",
            "\"abc",
            "[]",
            "[1,]",
            "[,1]",
            "{}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:1}",
            "[1 2]",
            "{\"a\":1}}",
            "[[[]]]",
            " [ ] ",
            "[\"\\\\\",\"\\/\"]",
            "\"\\\"\"",
        ] {
            assert_eq!(strict_accepts(text), serde_accepts(text), "{text}");
        }
    }

    #[test]
    fn size_bytes_is_read_as_serde_reads_an_i64() {
        for token in [
            "0",
            "41",
            "-0",
            "-7",
            "1.0",
            "1e3",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
        ] {
            let mut cursor = Strict::new(token);
            assert_eq!(
                cursor.integer().ok(),
                serde_json::from_str::<i64>(token).ok(),
                "{token}"
            );
        }
    }

    #[test]
    fn a_member_named_twice_is_refused() {
        let twice = r#"{"Records": [{"eventName": "INSERT", "eventName": "REMOVE"}]}"#;
        assert!(read(twice).is_err());
        let unknown_twice = r#"{"Records": [], "x": 1, "x": 2}"#;
        assert!(read(unknown_twice).is_ok());
    }
}
