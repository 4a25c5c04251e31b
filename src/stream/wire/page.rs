//! GetRecords' answer read in one pass of a strict cursor ([`Strict`]), into [`WireRecord`]s.
//!
//! Through serde (a derived `Deserialize` per record, `RawValue` for the images), the body's
//! parse was about 11,500 instructions an outbox row, a fifth of the process's own work
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
        self.members(|c, key| {
            let (bit, field) = match &*key {
                "eventID" => (0, &mut record.event_id),
                "eventName" => (1, &mut record.event_name),
                "eventVersion" => (2, &mut record.event_version),
                "eventSource" => (3, &mut record.event_source),
                "awsRegion" => (4, &mut record.aws_region),
                "dynamodb" => {
                    seen.once(c, 5)?;
                    if !c.null()? {
                        record.dynamodb = Some(c.stream_record()?);
                    }
                    return Ok(());
                }
                "userIdentity" => {
                    seen.once(c, 6)?;
                    if !c.null()? {
                        record.user_identity = Some(c.identity()?);
                    }
                    return Ok(());
                }
                _ => {
                    c.value()?;
                    return Ok(());
                }
            };
            seen.once(c, bit)?;
            *field = c.optional_string()?;
            Ok(())
        })?;
        Ok(record)
    }

    fn stream_record(&mut self) -> Result<WireStreamRecord<'t>> {
        let mut ddb = WireStreamRecord::default();
        let mut seen = Seen::default();
        self.members(|c, key| {
            match &*key {
                "ApproximateCreationDateTime" => {
                    seen.once(c, 0)?;
                    ddb.approximate_creation_date_time = c.epoch_seconds()?;
                }
                "Keys" | "NewImage" | "OldImage" => {
                    let (bit, image) = match &*key {
                        "Keys" => (1, &mut ddb.keys),
                        "NewImage" => (2, &mut ddb.new_image),
                        _ => (3, &mut ddb.old_image),
                    };
                    seen.once(c, bit)?;
                    *image = if c.null()? { None } else { Some(c.value()?) };
                }
                "SequenceNumber" => {
                    seen.once(c, 4)?;
                    ddb.sequence_number = c.optional_string()?;
                }
                "SizeBytes" => {
                    seen.once(c, 5)?;
                    ddb.size_bytes = c.optional_integer()?;
                }
                "StreamViewType" => {
                    seen.once(c, 6)?;
                    ddb.stream_view_type = c.optional_string()?;
                }
                _ => {
                    c.value()?;
                }
            }
            Ok(())
        })?;
        Ok(ddb)
    }

    fn identity(&mut self) -> Result<WireIdentity<'t>> {
        let mut identity = WireIdentity::default();
        let mut seen = Seen::default();
        self.members(|c, key| {
            let (bit, field) = match &*key {
                "Type" => (0, &mut identity.r#type),
                "PrincipalId" => (1, &mut identity.principal_id),
                _ => {
                    c.value()?;
                    return Ok(());
                }
            };
            seen.once(c, bit)?;
            *field = c.optional_string()?;
            Ok(())
        })?;
        Ok(identity)
    }

    /// An epoch-seconds number as the SDK reads it (`DateTime::from_secs_f64`, serde_json's
    /// digits to `f64`), refusing what it refuses (not finite); `null` is none.
    fn epoch_seconds(&mut self) -> Result<Option<DateTime>> {
        if self.null()? {
            return Ok(None);
        }
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
        Ok(Some(DateTime::from_secs_f64(seconds)))
    }

    /// An `i64` as serde reads one from JSON: an integer's digits, no fraction nor exponent;
    /// `null` is none.
    fn optional_integer(&mut self) -> Result<Option<i64>> {
        if self.null()? {
            return Ok(None);
        }
        let at = self.at;
        let not_integer = NotAnswer {
            at,
            what: "not an integer that fits 64 bits",
        };
        match self.number()? {
            // serde_json reads `-0` as a float (its sign kept), which no `i64` takes.
            "-0" => Err(not_integer),
            digits => digits.parse().map(Some).map_err(|_| not_integer),
        }
    }

    /// A string, or `null` for none.
    fn optional_string(&mut self) -> Result<Option<Cow<'t, str>>> {
        if self.null()? {
            return Ok(None);
        }
        self.string().map(Some)
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
    /// an error, as in serde_json's.
    ///
    /// Eight bytes at a time: a quote, a backslash or a control character is flagged in the
    /// word, and the lowest flag is the first such byte, exactly (Mycroft's test, which
    /// serde_json's own string scan uses).
    #[inline]
    fn string_end(&self, mut from: usize) -> Result<(usize, bool)> {
        const ONES: u64 = u64::MAX / 255;
        const HIGHS: u64 = ONES << 7;
        const QUOTES: u64 = ONES * b'"' as u64;
        const BACKSLASHES: u64 = ONES * b'\\' as u64;
        const SPACES: u64 = ONES * 0x20;
        let bytes = self.bytes();
        let mut escaped = false;
        loop {
            while let Some(word) = bytes.get(from..from + 8) {
                let mut chunk = [0; 8];
                chunk.copy_from_slice(word);
                let chunk = u64::from_le_bytes(chunk);
                let quote = chunk ^ QUOTES;
                let backslash = chunk ^ BACKSLASHES;
                let found = (quote.wrapping_sub(ONES) & !quote
                    | backslash.wrapping_sub(ONES) & !backslash
                    | chunk.wrapping_sub(SPACES) & !chunk)
                    & HIGHS;
                if found != 0 {
                    from += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                from += 8;
            }
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
    fn a_member_named_twice_is_refused() {
        let twice = r#"{"Records": [{"eventName": "INSERT", "eventName": "REMOVE"}]}"#;
        assert!(read(twice).is_err());
        let unknown_twice = r#"{"Records": [], "x": 1, "x": 2}"#;
        assert!(read(unknown_twice).is_ok());
    }
}
