//! DynamoDB-typed JSON (`{"S": "x"}`, `{"N": "1"}`, ...) to plain JSON.
//!
//! Numbers stay exact: `N` becomes a JSON number with the same digits (serde_json's
//! `arbitrary_precision`), never routed through `f64`. Sets become arrays, binary stays base64.
// NOTE: serde_dynamo deserializes `N` through f64/i64/u64, which would round numbers beyond f64
// precision, so this conversion is written out here (it is one match over the ten types).

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use crate::pipeline::scan::Scan;

/// Why a typed value could not be unmarshalled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnmarshallError {
    /// A typed value is not an object with exactly one known type key.
    #[error("not a DynamoDB attribute value at {path}")]
    NotTyped { path: String },
    /// An `N` (or an `NS` member) that is not a number.
    #[error("invalid number {value:?} at {path}")]
    InvalidNumber { path: String, value: String },
}

/// Unmarshalls a whole item (`{"attr": {"S": "x"}, ...}`) into a plain JSON object.
///
/// # Errors
/// [`UnmarshallError`] naming the attribute path of the first malformed value.
pub fn item(typed: &Map<String, Value>) -> Result<Value, UnmarshallError> {
    let mut out = Map::new();
    for (k, v) in typed {
        out.insert(k.clone(), at(v, &Path::Root(k))?);
    }
    Ok(Value::Object(out))
}

/// The plain values of an item whose every attribute is a string (`S` or `B`), in name order:
/// what [`item`] makes of them, without making the item (an item's key is such an item).
/// `None` for any other item; the caller then makes the plain item.
#[must_use]
pub fn string_values(typed: &Map<String, Value>) -> Option<Vec<Cow<'_, str>>> {
    typed
        .values()
        .map(|attribute| match single_entry(attribute)? {
            ("S" | "B", Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
            _ => None,
        })
        .collect()
}

/// [`string_values`] of an item's JSON text (a record's text, [`Scan`]'s rule). `None` also
/// when names do not come in name order, each once (the plain item's way reads those).
#[must_use]
pub fn string_values_of_text(text: &str) -> Option<Vec<Cow<'_, str>>> {
    let mut scan = Scan::new(text);
    let mut values = Vec::new();
    let mut previous: Option<Cow<'_, str>> = None;
    let mut name = scan.object_first().ok()?;
    while let Some(attribute) = name {
        if previous.as_ref().is_some_and(|p| *p >= attribute) {
            return None;
        }
        let tag = scan.object_first().ok()??;
        if !matches!(tag.as_ref(), "S" | "B") {
            return None;
        }
        values.push(scan.string().ok()?);
        // A typed value holds one entry.
        if scan.object_next().ok()?.is_some() {
            return None;
        }
        previous = Some(attribute);
        name = scan.object_next().ok()?;
    }
    scan.finish().ok()?;
    Some(values)
}

/// Unmarshalls one typed attribute value; `path` names it in errors.
///
/// # Errors
/// [`UnmarshallError`] when the value is not DynamoDB-typed JSON.
pub fn value(typed: &Value, path: &str) -> Result<Value, UnmarshallError> {
    at(typed, &Path::Root(path))
}

/// Where a value sits, written out only for an error (a record's attributes are many and its
/// errors rare): `a.b[2]`.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root(name) => f.write_str(name),
            Self::Key(parent, key) => write!(f, "{parent}.{key}"),
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn at(typed: &Value, path: &Path<'_>) -> Result<Value, UnmarshallError> {
    let not_typed = || UnmarshallError::NotTyped {
        path: path.to_string(),
    };
    let (tag, inner) = single_entry(typed).ok_or_else(not_typed)?;
    Ok(match (tag, inner) {
        ("S" | "B", Value::String(s)) => Value::String(s.clone()),
        ("N", Value::String(n)) => Value::Number(number(n, path)?),
        ("BOOL", Value::Bool(b)) => Value::Bool(*b),
        ("NULL", Value::Bool(true)) => Value::Null,
        ("M", Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), at(v, &Path::Key(path, k))?);
            }
            Value::Object(out)
        }
        ("L", Value::Array(items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| at(v, &Path::Index(path, i)))
                .collect::<Result<_, _>>()?,
        ),
        ("SS" | "BS", Value::Array(items)) if items.iter().all(Value::is_string) => {
            Value::Array(items.clone())
        }
        ("NS", Value::Array(items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(n) => number(n, &Path::Index(path, i)).map(Value::Number),
                    _ => Err(not_typed()),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(not_typed()),
    })
}

fn number(text: &str, path: &Path<'_>) -> Result<Number, UnmarshallError> {
    number_of(text).ok_or_else(|| UnmarshallError::InvalidNumber {
        path: path.to_string(),
        value: text.to_owned(),
    })
}

/// An `N`'s number, `None` when it is none.
fn number_of(text: &str) -> Option<Number> {
    // Most numbers are JSON numbers already: kept as they are (normalising one changes nothing).
    plain_integer(text)
        .or_else(|| text.parse::<Number>().ok())
        .or_else(|| normalised(text))
}

/// The commonest `N`, an integer written as JSON writes it that fits 64 bits, without a JSON
/// parse: `Number::from` writes it back with the same digits.
fn plain_integer(text: &str) -> Option<Number> {
    match integer_of(text)? {
        Integer::Negative(n) => Some(Number::from(n)),
        Integer::Positive(n) => Some(Number::from(n)),
    }
}

/// A plain integer's value ([`plain_integer`]), without making its `Number` (a heap string
/// under `arbitrary_precision`).
enum Integer {
    Negative(i64),
    Positive(u64),
}

fn integer_of(text: &str) -> Option<Integer> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let as_json = match digits.as_bytes() {
        // `-0` is JSON, but the integer zero writes `0`.
        [b'0'] => !negative,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !as_json {
        return None;
    }
    if negative {
        text.parse::<i64>().ok().map(Integer::Negative)
    } else {
        text.parse::<u64>().ok().map(Integer::Positive)
    }
}

/// A number in a form DynamoDB accepts and JSON does not (`+5`, `.5`, `5.`, `007`), written
/// as JSON with the same digits.
fn normalised(text: &str) -> Option<Number> {
    // DynamoDB accepts forms JSON does not ("+5", ".5", "5."); normalise them losslessly.
    let trimmed = text.trim();
    let (sign, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => digits.split_at(i),
        None => (digits, ""),
    };
    let mantissa = match mantissa.split_once('.') {
        Some((int, frac)) => {
            let int = if int.is_empty() { "0" } else { int };
            if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{int}.{frac}")
            }
        }
        None => mantissa.to_owned(),
    };
    let mantissa = match mantissa.trim_start_matches('0') {
        "" => "0".to_owned(),
        rest if rest.starts_with('.') => format!("0{rest}"),
        rest => rest.to_owned(),
    };
    let normalised = format!("{sign}{mantissa}{exponent}");
    match serde_json::from_str::<Value>(&normalised) {
        Ok(Value::Number(n)) => Some(n),
        _ => None,
    }
}

/// An item's plain JSON text, written straight from the typed item (no plain tree is built),
/// with `extra` string fields (names absent from the item) merged in name order: the same text
/// as serializing [`item`]'s result with those fields added.
///
/// # Errors
/// [`UnmarshallError`] as [`item`] gives it.
pub fn item_text(
    typed: &Map<String, Value>,
    extra: &[(&str, &str)],
) -> Result<String, UnmarshallError> {
    let failed = std::cell::RefCell::new(None);
    let text = serde_json::to_string(&PlainItem {
        typed,
        extra,
        failed: &failed,
    });
    match (text, failed.into_inner()) {
        (_, Some(error)) => Err(error),
        (Ok(text), None) => Ok(text),
        // Writing into a String fails only through our own errors, kept above.
        (Err(error), None) => Err(UnmarshallError::NotTyped {
            path: error.to_string(),
        }),
    }
}

/// Serializes as the plain item; the first malformed value's error is kept in `failed`.
struct PlainItem<'a> {
    typed: &'a Map<String, Value>,
    extra: &'a [(&'a str, &'a str)],
    failed: &'a std::cell::RefCell<Option<UnmarshallError>>,
}

/// One typed value serialized as its plain value.
struct Plain<'a> {
    typed: &'a Value,
    path: Path<'a>,
    failed: &'a std::cell::RefCell<Option<UnmarshallError>>,
}

impl serde::Serialize for PlainItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut extra: Vec<&(&str, &str)> = self.extra.iter().collect();
        extra.sort_by_key(|(k, _)| *k);
        let mut extra = extra.into_iter().peekable();
        let mut map = serializer.serialize_map(Some(self.typed.len() + self.extra.len()))?;
        for (k, v) in self.typed {
            while let Some((name, value)) = extra.next_if(|(name, _)| *name < k.as_str()) {
                map.serialize_entry(name, value)?;
            }
            let plain = Plain {
                typed: v,
                path: Path::Root(k),
                failed: self.failed,
            };
            map.serialize_entry(k, &plain)?;
        }
        for (name, value) in extra {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Plain<'_> {
    fn child<'b>(&'b self, typed: &'b Value, path: Path<'b>) -> Plain<'b> {
        Plain {
            typed,
            path,
            failed: self.failed,
        }
    }
}

impl serde::Serialize for Plain<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        let fail = |error: UnmarshallError| {
            let message = error.to_string();
            self.failed.borrow_mut().get_or_insert(error);
            S::Error::custom(message)
        };
        let not_typed = || UnmarshallError::NotTyped {
            path: self.path.to_string(),
        };
        let Some((tag, inner)) = single_entry(self.typed) else {
            return Err(fail(not_typed()));
        };
        match (tag, inner) {
            ("S" | "B", Value::String(s)) => serializer.serialize_str(s),
            ("N", Value::String(n)) => number(n, &self.path).map_err(fail)?.serialize(serializer),
            ("BOOL", Value::Bool(b)) => serializer.serialize_bool(*b),
            ("NULL", Value::Bool(true)) => serializer.serialize_unit(),
            ("M", Value::Object(m)) => {
                let mut map = serializer.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, &self.child(v, Path::Key(&self.path, k)))?;
                }
                map.end()
            }
            ("L", Value::Array(items)) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for (i, v) in items.iter().enumerate() {
                    seq.serialize_element(&self.child(v, Path::Index(&self.path, i)))?;
                }
                seq.end()
            }
            ("SS" | "BS", Value::Array(items)) if items.iter().all(Value::is_string) => {
                items.serialize(serializer)
            }
            ("NS", Value::Array(items)) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for (i, v) in items.iter().enumerate() {
                    let Value::String(n) = v else {
                        return Err(fail(not_typed()));
                    };
                    let n = number(n, &Path::Index(&self.path, i)).map_err(fail)?;
                    seq.serialize_element(&n)?;
                }
                seq.end()
            }
            _ => Err(fail(not_typed())),
        }
    }
}

/// [`item`] of an item's JSON text, building no typed tree: `Ok(None)` when the text is not a
/// JSON object (as a typed tree's image that is no object counts as absent).
///
/// `text` is an image's text in a record's text (JSON this crate wrote, [`Scan`]'s rule). The
/// usual typed item is unmarshalled as it is read. Anything else (a malformed value, a
/// repeated key, a value that is no object) takes the typed tree's way, so the answer and the
/// error naming the attribute are [`item`]'s.
///
/// # Errors
/// [`UnmarshallError`] as [`item`] gives it.
pub fn item_of_text(text: &str) -> Result<Option<Value>, UnmarshallError> {
    let mut scan = Scan::new(text);
    if let Some(plain) = text::item(&mut scan) {
        if scan.finish().is_ok() {
            return Ok(Some(plain));
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(typed)) => item(&typed).map(Some),
        _ => Ok(None),
    }
}

/// [`item_text`] of an item's JSON text: the plain text written while the typed text is read,
/// building neither tree, with the `extra` string fields whose names the item does not hold
/// merged in name order.
///
/// `text` is an image's text in a record's text (JSON this crate wrote, [`Scan`]'s rule).
/// `None` for anything but the usual typed form (a malformed value, a repeated name, a text
/// that is no object): the caller then takes [`item_of_text`]'s way, whose answer and error
/// are [`item`]'s. Names are written in name order, as the plain tree's map orders them,
/// whatever order the text holds them in.
#[must_use]
pub fn item_text_of_text<'a>(text: &'a str, mut extra: Vec<(&'a str, &'a str)>) -> Option<String> {
    extra.sort_unstable_by_key(|(name, _)| *name);
    let mut scan = Scan::new(text);
    // A plain item is shorter than its typed text.
    let mut out = Vec::with_capacity(text.len());
    // Room for a usual item's members and one nested map's, so the scratch grows rarely.
    let mut members = Vec::with_capacity(16);
    text::object(&mut scan, &mut out, &mut members, &extra)?;
    scan.finish().ok()?;
    // Only whole strings of the text, escaped ones and ASCII are written: always UTF-8.
    String::from_utf8(out).ok()
}

/// Unmarshalling while reading the text ([`Scan`]): each step accepts only the usual typed
/// form and gives up (`None`) on anything else, the caller then taking the typed tree's way.
mod text {
    use std::borrow::Cow;

    use serde_json::{Map, Value};

    use crate::pipeline::json_write::push_str;
    use crate::pipeline::scan::Scan;

    /// An object's member as written: its name, where `"name":value` sits in the output, and
    /// whether it is a field added to the item (dropped when the item holds its name).
    pub(super) struct Member<'a> {
        name: Cow<'a, str>,
        start: usize,
        end: usize,
        added: bool,
    }

    /// An item, or an `M`'s insides, written as plain JSON into `out` while read: members in
    /// name order, and the fields of `extra` (sorted by name; for an item) whose names it does
    /// not hold among them. `members` is scratch shared by every level (each level's members
    /// sit above its parent's).
    pub(super) fn object<'a>(
        scan: &mut Scan<'a>,
        out: &mut Vec<u8>,
        members: &mut Vec<Member<'a>>,
        extra: &[(&'a str, &'a str)],
    ) -> Option<()> {
        let base = members.len();
        out.push(b'{');
        let body = out.len();
        let mut sorted = true;
        let mut pending = extra.iter().copied().peekable();
        let mut name = scan.object_first().ok()?;
        while let Some(attribute) = name {
            sorted &= members.len() == base || members[members.len() - 1].name < attribute;
            // Names in order so far: the fields that sort before this name go first, and one
            // of this name is not added. (Out of order, the rest go last and the sort decides.)
            while let Some((field, value)) =
                pending.next_if(|(field, _)| sorted && *field <= attribute.as_ref())
            {
                if field != attribute.as_ref() {
                    add_field(out, members, base, field, value);
                }
            }
            let start = member_start(out, members.len() > base);
            push_read(out, &attribute);
            out.push(b':');
            plain_text(scan, out, members)?;
            members.push(Member {
                name: attribute,
                start,
                end: out.len(),
                added: false,
            });
            name = scan.object_next().ok()?;
        }
        for (field, value) in pending {
            sorted &= members.len() == base || members[members.len() - 1].name.as_ref() < field;
            add_field(out, members, base, field, value);
        }
        if !sorted {
            in_name_order(out, &mut members[base..], body)?;
        }
        members.truncate(base);
        out.push(b'}');
        Some(())
    }

    /// Writes a field added to an item.
    fn add_field<'a>(
        out: &mut Vec<u8>,
        members: &mut Vec<Member<'a>>,
        base: usize,
        field: &'a str,
        value: &str,
    ) {
        let start = member_start(out, members.len() > base);
        push_str(out, field);
        out.push(b':');
        push_str(out, value);
        members.push(Member {
            name: Cow::Borrowed(field),
            start,
            end: out.len(),
            added: true,
        });
    }

    /// Where a member starts: after the comma that parts it from the one before.
    fn member_start(out: &mut Vec<u8>, after_another: bool) -> usize {
        if after_another {
            out.push(b',');
        }
        out.len()
    }

    /// Rewrites an object's members (written from `body` on) in name order, leaving out an
    /// added field whose name the item holds; `None` when two of the item's own share a name
    /// (the typed tree's way decides which one stands).
    #[cold]
    fn in_name_order(out: &mut Vec<u8>, level: &mut [Member<'_>], body: usize) -> Option<()> {
        // The item's own member of a name sorts before an added field of it.
        level.sort_unstable_by(|a, b| a.name.cmp(&b.name).then(a.added.cmp(&b.added)));
        let written = out.split_off(body);
        let mut last: Option<&Member<'_>> = None;
        for member in level.iter() {
            if let Some(last) = last.filter(|last| last.name == member.name) {
                if member.added {
                    continue;
                }
                debug_assert!(!last.added, "the item's own sort first");
                return None;
            }
            if last.is_some() {
                out.push(b',');
            }
            out.extend_from_slice(written.get(member.start - body..member.end - body)?);
            last = Some(member);
        }
        Some(())
    }

    /// One typed value (`{tag: inner}`) written as its plain JSON.
    fn plain_text<'a>(
        scan: &mut Scan<'a>,
        out: &mut Vec<u8>,
        members: &mut Vec<Member<'a>>,
    ) -> Option<()> {
        let tag = scan.object_first().ok()??;
        match tag.as_ref() {
            "S" | "B" => push_read(out, &scan.string().ok()?),
            "N" => number_text(out, &scan.string().ok()?)?,
            "BOOL" => match scan.skip().ok()? {
                literal @ ("true" | "false") => out.extend_from_slice(literal.as_bytes()),
                _ => return None,
            },
            "NULL" => match scan.skip().ok()? {
                "true" => out.extend_from_slice(b"null"),
                _ => return None,
            },
            "M" => object(scan, out, members, &[])?,
            "L" => elements_text(scan, out, |scan, out| plain_text(scan, out, members))?,
            "SS" | "BS" => elements_text(scan, out, |scan, out| {
                push_read(out, &scan.string().ok()?);
                Some(())
            })?,
            "NS" => elements_text(scan, out, |scan, out| {
                number_text(out, &scan.string().ok()?)
            })?,
            _ => return None,
        }
        // A typed value holds one entry.
        scan.object_next().ok()?.is_none().then_some(())
    }

    /// Writes a string read from the text as serde_json writes it. One the text holds without
    /// an escape is copied as it is: the text is JSON (`Scan`'s rule), so such a string holds
    /// no quote, backslash or control character, nothing serde_json would escape.
    #[inline]
    #[allow(clippy::ptr_arg)] // the variant is what counts: borrowed means no escape
    fn push_read(out: &mut Vec<u8>, read: &Cow<'_, str>) {
        match read {
            Cow::Borrowed(text) => {
                out.reserve(text.len() + 2);
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
            }
            Cow::Owned(text) => push_str(out, text),
        }
    }

    /// An `N`'s number as JSON writes it: the text itself when it is a plain integer (the
    /// commonest, and what its `Number` writes), else its `Number`'s digits.
    fn number_text(out: &mut Vec<u8>, text: &str) -> Option<()> {
        if super::integer_of(text).is_some() {
            out.extend_from_slice(text.as_bytes());
        } else {
            out.extend_from_slice(super::number_of(text)?.as_str().as_bytes());
        }
        Some(())
    }

    /// An array written as plain JSON, each element by `element`.
    fn elements_text<'a>(
        scan: &mut Scan<'a>,
        out: &mut Vec<u8>,
        mut element: impl FnMut(&mut Scan<'a>, &mut Vec<u8>) -> Option<()>,
    ) -> Option<()> {
        out.push(b'[');
        if scan.array_first().ok()? {
            loop {
                element(scan, out)?;
                if !scan.array_next().ok()? {
                    break;
                }
                out.push(b',');
            }
        }
        out.push(b']');
        Some(())
    }

    /// An item, or an `M`'s insides: attribute names to typed values.
    pub(super) fn item(scan: &mut Scan<'_>) -> Option<Value> {
        let mut out = Map::new();
        let mut name = scan.object_first().ok()?;
        while let Some(attribute) = name {
            let value = typed(scan)?;
            out.insert(attribute.into_owned(), value);
            name = scan.object_next().ok()?;
        }
        Some(Value::Object(out))
    }

    /// One typed value: `{tag: inner}`.
    fn typed(scan: &mut Scan<'_>) -> Option<Value> {
        let tag = scan.object_first().ok()??;
        let value = match tag.as_ref() {
            "S" | "B" => Value::String(scan.string().ok()?.into_owned()),
            "N" => Value::Number(super::number_of(&scan.string().ok()?)?),
            "BOOL" => match scan.skip().ok()? {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return None,
            },
            "NULL" => match scan.skip().ok()? {
                "true" => Value::Null,
                _ => return None,
            },
            "M" => item(scan)?,
            "L" => Value::Array(elements(scan, typed)?),
            "SS" | "BS" => Value::Array(elements(scan, |scan| {
                scan.string().ok().map(|s| Value::String(s.into_owned()))
            })?),
            "NS" => Value::Array(elements(scan, |scan| {
                super::number_of(&scan.string().ok()?).map(Value::Number)
            })?),
            _ => return None,
        };
        // A typed value holds one entry.
        scan.object_next().ok()?.is_none().then_some(value)
    }

    /// An array's elements, each read by `element`.
    fn elements(
        scan: &mut Scan<'_>,
        element: impl Fn(&mut Scan<'_>) -> Option<Value>,
    ) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        if scan.array_first().ok()? {
            loop {
                out.push(element(scan)?);
                if !scan.array_next().ok()? {
                    break;
                }
            }
        }
        Some(out)
    }
}

/// A typed value's one `{tag: inner}` entry; `None` when it is not an object of exactly one.
fn single_entry(typed: &Value) -> Option<(&str, &Value)> {
    let obj = typed.as_object()?;
    let mut entries = obj.iter();
    let (tag, inner) = entries.next()?;
    entries.next().is_none().then_some((tag.as_str(), inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unmarshalls_every_dynamodb_type() {
        let typed = json!({
            "s": {"S": "hello"},
            "n": {"N": "42"},
            "f": {"N": "-1.5"},
            "b": {"B": "aGk="},
            "t": {"BOOL": true},
            "z": {"NULL": true},
            "m": {"M": {"inner": {"S": "x"}, "deep": {"M": {"k": {"N": "1"}}}}},
            "l": {"L": [{"S": "a"}, {"N": "2"}, {"L": []}]},
            "ss": {"SS": ["a", "b"]},
            "ns": {"NS": ["1", "2.5"]},
            "bs": {"BS": ["aGk=", "aG8="]}
        });
        let plain = item(typed.as_object().expect("object")).expect("valid");
        assert_eq!(
            plain,
            json!({
                "s": "hello", "n": 42, "f": -1.5, "b": "aGk=", "t": true, "z": null,
                "m": {"inner": "x", "deep": {"k": 1}},
                "l": ["a", 2, []],
                "ss": ["a", "b"], "ns": [1, 2.5], "bs": ["aGk=", "aG8="]
            })
        );
    }

    #[test]
    fn numbers_beyond_f64_keep_every_digit() {
        let big = "123456789012345678901234567890.123456789";
        let plain = value(&json!({"N": big}), "n").expect("valid");
        assert_eq!(plain.to_string(), big);
    }

    #[test]
    fn dynamodb_only_number_forms_are_normalised() {
        for (input, expected) in [
            ("+5", "5"),
            (".5", "0.5"),
            ("5.", "5"),
            ("007", "7"),
            ("-0.25", "-0.25"),
        ] {
            let plain = value(&json!({"N": input}), "n").expect("valid");
            assert_eq!(plain.to_string(), expected, "for {input}");
        }
    }

    /// Plain JSON → DynamoDB JSON, the way the SDKs marshal documents (lists as `L`, objects
    /// as `M`, numbers as `N` strings with the same digits).
    fn marshal(v: &Value) -> Value {
        match v {
            Value::Null => json!({"NULL": true}),
            Value::Bool(b) => json!({"BOOL": b}),
            Value::Number(n) => json!({"N": n.to_string()}),
            Value::String(s) => json!({"S": s}),
            Value::Array(items) => json!({"L": items.iter().map(marshal).collect::<Vec<_>>()}),
            Value::Object(m) => {
                json!({"M": m.iter().map(|(k, v)| (k.clone(), marshal(v))).collect::<Map<_, _>>()})
            }
        }
    }

    fn plain_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            // Beyond f64: up to 38 digits, as DynamoDB allows, with a fraction.
            ("[1-9][0-9]{0,37}", "[0-9]{0,10}[1-9]").prop_map(|(i, f)| format!("{i}.{f}")),
            "-?[1-9][0-9]{20,37}",
        ]
        .prop_map(|text| serde_json::from_str::<Value>(&text).expect("a JSON number"));
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number,
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn unmarshall_inverts_marshal_exactly_for_any_nested_value(v in plain_value()) {
            let typed = marshal(&v);
            let back = value(&typed, "v").expect("marshalled JSON is valid DynamoDB JSON");
            // Compare the JSON text: numbers must keep every digit, not just compare equal.
            proptest::prop_assert_eq!(back.to_string(), v.to_string());
        }
    }

    proptest::proptest! {
        /// A number that is JSON already is kept as serde_json parses it; the normalisation,
        /// which it skips, would have given the same text.
        #[test]
        fn json_numbers_skip_a_normalisation_that_would_change_nothing(
            text in "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
        ) {
            let kept = value(&json!({"N": text}), "n").expect("a JSON number");
            let normalised = normalised(&text).expect("valid");
            proptest::prop_assert_eq!(kept.to_string(), normalised.to_string());
        }
    }

    proptest::proptest! {
        /// A plain integer taken without a JSON parse is the number a parse gives, digit for
        /// digit; beyond 64 bits, or not as JSON writes it, it is left to the parse.
        #[test]
        fn plain_integers_are_the_numbers_a_parse_gives(
            text in "[-+]?0*(0|[1-9][0-9]{0,24})"
        ) {
            let parsed = text.parse::<Number>().ok().map(|n| n.to_string());
            match plain_integer(&text) {
                Some(n) => {
                    proptest::prop_assert_eq!(Some(n.to_string()), parsed.clone());
                    proptest::prop_assert_eq!(n.to_string(), text.clone());
                }
                None => proptest::prop_assert!(
                    parsed.is_none() || text == "-0" || text.len() > 18,
                    "{} was left to the parse", text
                ),
            }
            proptest::prop_assert_eq!(
                number_of(&text).map(|n| n.to_string()),
                parsed.or_else(|| normalised(&text).map(|n| n.to_string()))
            );
        }
    }

    proptest::proptest! {
        /// The text written straight from the typed item is the plain tree's text, extra
        /// fields merged in name order as if they were in the item.
        #[test]
        fn item_text_is_the_plain_items_text(
            v in plain_value(),
            extra in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", ".{0,6}", 0..3),
        ) {
            let typed = match marshal(&v) {
                Value::Object(mut m) => match m.remove("M") {
                    Some(Value::Object(item)) => item,
                    _ => Map::new(),
                },
                _ => Map::new(),
            };
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .filter(|(k, _)| !typed.contains_key(*k))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut plain = item(&typed).expect("valid");
            if let Value::Object(map) = &mut plain {
                for (k, v) in &extra {
                    map.insert((*k).to_owned(), Value::String((*v).to_owned()));
                }
            }
            proptest::prop_assert_eq!(item_text(&typed, &extra).expect("valid"), plain.to_string());
        }
    }

    /// Typed-looking JSON, well-formed or not: known and unknown tags, inner values of every
    /// kind, objects of two entries, values that are no object.
    fn typed_ish() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let tag = prop::sample::select(vec![
            "S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS", "X",
        ]);
        let scalar = prop_oneof![
            Just(json!("x")),
            Just(json!("12345678901234567890.5")),
            Just(json!("+5")),
            Just(json!("1e")),
            Just(json!(7)),
            Just(json!(true)),
            Just(json!(false)),
            Just(Value::Null),
        ];
        let leaf = (tag.clone(), scalar.clone()).prop_map(|(t, v)| json!({ t: v }));
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                4 => (tag.clone(), proptest::collection::btree_map("[a-c]", inner.clone(), 0..3))
                    .prop_map(|(t, m)| json!({ t: m })),
                4 => (tag.clone(), proptest::collection::vec(inner.clone(), 0..3))
                    .prop_map(|(t, l)| json!({ t: l })),
                2 => (tag.clone(), proptest::collection::vec(scalar.clone(), 0..3))
                    .prop_map(|(t, l)| json!({ t: l })),
                1 => (inner.clone(), scalar.clone()).prop_map(|(mut v, extra)| {
                    if let Value::Object(m) = &mut v {
                        m.insert("Z".into(), extra);
                    }
                    v
                }),
                1 => scalar.clone(),
            ]
        })
    }

    /// What a typed tree makes of an item's text: its [`item`], `None` when it is no object.
    fn item_of_tree(text: &str) -> Result<Option<Value>, UnmarshallError> {
        match serde_json::from_str::<Value>(text).expect("json") {
            Value::Object(typed) => item(&typed).map(Some),
            _ => Ok(None),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Read straight from the text, an item unmarshalls as its typed tree does: the same
        /// plain JSON to the digit, or the same error.
        #[test]
        fn item_of_text_is_item_of_the_typed_tree(
            v in plain_value(),
            odd in proptest::collection::btree_map("[a-d]", typed_ish(), 0..4),
        ) {
            let Some(Value::Object(mut typed)) = marshal(&v).get_mut("M").map(Value::take) else {
                return Ok(());
            };
            let text = Value::Object(typed.clone()).to_string();
            let fast = item_of_text(&text).map(|p| p.map(|p| p.to_string()));
            let tree = item_of_tree(&text).map(|p| p.map(|p| p.to_string()));
            proptest::prop_assert_eq!(&fast, &tree);
            proptest::prop_assert!(fast.is_ok(), "a marshalled item is valid");
            // ... and read without the typed tree's way.
            let read = text::item(&mut Scan::new(&text));
            proptest::prop_assert!(read.is_some(), "{}", text);
            typed.extend(odd);
            let text = Value::Object(typed).to_string();
            let fast = item_of_text(&text).map(|p| p.map(|p| p.to_string()));
            let tree = item_of_tree(&text).map(|p| p.map(|p| p.to_string()));
            proptest::prop_assert_eq!(fast, tree, "{}", text);
        }
    }

    /// `value`'s JSON text with every object's members in an order drawn from `seed`, as
    /// DynamoDB Streams, which keeps no order, may send an item's attributes.
    fn shuffled_text(value: &Value, seed: &mut u64, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut members: Vec<_> = map.iter().collect();
                for i in (1..members.len()).rev() {
                    *seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let j = usize::try_from((*seed >> 33) % (i as u64 + 1)).expect("small");
                    members.swap(i, j);
                }
                out.push('{');
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    shuffled_text(v, seed, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    shuffled_text(v, seed, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    /// The plain text the tree's way gives for an item's text and fields to add (those whose
    /// names the item does not hold), as the router writes it.
    fn item_text_of_tree(
        text: &str,
        extra: &[(&str, &str)],
    ) -> Result<Option<String>, UnmarshallError> {
        Ok(item_of_tree(text)?.map(|mut plain| {
            if let Value::Object(map) = &mut plain {
                for (k, v) in extra {
                    if !map.contains_key(*k) {
                        map.insert((*k).to_owned(), Value::String((*v).to_owned()));
                    }
                }
            }
            plain.to_string()
        }))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Written while read, in whatever order the text holds its names, an item's plain text
        /// is the tree's, fields added in name order; or it is left to the tree's way (`None`),
        /// only for a text the tree's way refuses.
        #[test]
        fn item_text_of_text_is_the_trees_text_in_any_member_order(
            v in plain_value(),
            odd in proptest::collection::btree_map("[a-d]", typed_ish(), 0..3),
            extra in proptest::collection::btree_map("[a-d_][a-zA-Z0-9_]{0,3}", ".{0,6}", 0..3),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let Some(Value::Object(mut typed)) = marshal(&v).get_mut("M").map(Value::take) else {
                return Ok(());
            };
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut seed = seed;
            let mut text = String::new();
            shuffled_text(&Value::Object(typed.clone()), &mut seed, &mut text);
            // Fields to add come in no particular order.
            let mut unordered = extra.clone();
            if seed % 2 == 1 {
                unordered.reverse();
            }
            let fast = item_text_of_text(&text, unordered);
            let tree = item_text_of_tree(&text, &extra).expect("a marshalled item is valid");
            proptest::prop_assert_eq!(&fast, &tree, "{}", text);
            typed.extend(odd);
            let mut text = String::new();
            shuffled_text(&Value::Object(typed), &mut seed, &mut text);
            let tree = item_text_of_tree(&text, &extra);
            match item_text_of_text(&text, extra.clone()) {
                Some(fast) => proptest::prop_assert_eq!(Ok(Some(fast)), tree, "{}", text),
                // Names do not repeat here: only a value the tree refuses is left to it.
                None => proptest::prop_assert!(tree.is_err(), "{} gave {:?}", text, tree),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// An item key's values read without making the item are the plain item's, and they
        /// are read whenever every attribute is a string (`S`, `B`); from the text too, in
        /// name order, and in any other order they are the same or left to the item's way.
        #[test]
        fn string_values_are_the_plain_items_values(
            strings in proptest::collection::btree_map(
                "[a-e]{1,3}",
                proptest::prop_oneof![
                    proptest::strategy::Strategy::prop_map(".{0,6}", |s| json!({"S": s})),
                    proptest::strategy::Strategy::prop_map("[A-Za-z0-9+/=]{0,8}", |s| {
                        json!({"B": s})
                    }),
                ],
                0..4,
            ),
            odd in proptest::collection::btree_map("[a-e]{1,3}", typed_ish(), 0..2),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut with_odd = strings.clone();
            with_odd.extend(odd);
            for typed in [strings, with_odd] {
                let typed: Map<String, Value> = typed.into_iter().collect();
                let expected: Option<Vec<String>> = item(&typed).ok().and_then(|plain| {
                    plain
                        .as_object()?
                        .values()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect()
                });
                let owned = |values: Vec<Cow<'_, str>>| -> Vec<String> {
                    values.into_iter().map(Cow::into_owned).collect()
                };
                proptest::prop_assert_eq!(string_values(&typed).map(owned), expected.clone());
                let text = Value::Object(typed.clone()).to_string();
                proptest::prop_assert_eq!(string_values_of_text(&text).map(owned), expected.clone(), "{}", text);
                let mut seed = seed;
                let mut shuffled = String::new();
                shuffled_text(&Value::Object(typed), &mut seed, &mut shuffled);
                if let Some(values) = string_values_of_text(&shuffled) {
                    proptest::prop_assert_eq!(Some(owned(values)), expected, "{}", shuffled);
                }
            }
        }
    }

    #[test]
    fn string_values_of_text_leaves_repeated_names_and_odd_values_to_the_item() {
        for text in [
            r#"{"a": {"S": "x"}, "a": {"S": "y"}}"#,
            r#"{"b": {"S": "x"}, "a": {"S": "y"}}"#,
            r#"{"a": {"S": "x", "S": "y"}}"#,
            r#"{"a": {"N": "1"}}"#,
            r#"{"a": {"S": 1}}"#,
            r#"{"a": {}}"#,
            r#"[1]"#,
            r#""Keys""#,
        ] {
            assert_eq!(string_values_of_text(text), None, "{text}");
        }
        assert_eq!(
            string_values_of_text(r#"{"a": {"S": "x\"y"}, "b": {"B": "AQ=="}}"#),
            Some(vec![Cow::Borrowed("x\"y"), Cow::Borrowed("AQ==")])
        );
        assert_eq!(string_values_of_text("{}"), Some(vec![]));
    }

    #[test]
    fn item_text_of_text_leaves_repeated_names_and_non_objects_to_the_tree() {
        for text in [
            r#"{"a": {"X": 1}, "a": {"S": "x"}}"#,
            r#"{"b": {"S": "x"}, "a": {"N": "1"}, "b": {"S": "y"}}"#,
            r#"{"a": {"M": {"b": {"N": "1"}, "b": {"N": "2"}}}}"#,
            r#"{"a": {"S": "x", "S": "y"}}"#,
            r#"{"a": {"NULL": false}}"#,
            r#"{"a": {"NS": ["1", "x"]}}"#,
            r#"[1]"#,
            r#""NewImage""#,
            r#"null"#,
        ] {
            assert_eq!(item_text_of_text(text, Vec::new()), None, "{text}");
        }
        // Names and strings with escapes are written as serde_json escapes them.
        let text = r#"{"q\"b": {"S": "\u0041\n"}, "q\u0041": {"SS": ["\/"]}}"#;
        assert_eq!(
            item_text_of_text(text, Vec::new()),
            item_text_of_tree(text, &[]).expect("valid")
        );
        // An added field whose name the item holds is not added; the others are, in name order.
        let text = r#"{"z": {"S": "1"}, "id": {"S": "own"}, "b": {"BOOL": true}}"#;
        let extra = [("id", "evt"), ("a", "t"), ("y", "u")];
        assert_eq!(
            item_text_of_text(text, extra.to_vec()).as_deref(),
            Some(r#"{"a":"t","b":true,"id":"own","y":"u","z":"1"}"#)
        );
    }

    #[test]
    fn item_of_text_reads_repeated_keys_and_non_objects_as_the_tree_does() {
        for text in [
            // The later of two entries wins, even when the earlier one is malformed.
            r#"{"a": {"X": 1}, "a": {"S": "x"}}"#,
            r#"{"a": {"S": "x"}, "a": {"X": 1}}"#,
            r#"{"a": {"S": "x", "S": "y"}}"#,
            r#"{"a": {"M": {"b": {"N": "1"}, "b": {"N": "2"}}}}"#,
            r#"{"a": {"NULL": false}}"#,
            r#"{"a": {"NS": ["1", "x"]}}"#,
            r#"{}"#,
            r#"[1]"#,
            r#""NewImage""#,
            r#"null"#,
        ] {
            assert_eq!(item_of_text(text), item_of_tree(text), "{text}");
        }
    }

    #[test]
    fn item_text_fails_as_item_does() {
        for typed in [
            json!({"a": {"M": {"b": {"X": 1}}}}),
            json!({"a": {"L": [{"S": "x"}, {"M": {"k": {"NS": ["1", "x"]}}}]}}),
            json!({"a": {"NS": ["1", 2]}}),
            json!({"a": {"S": "x", "N": "1"}}),
            json!({"a": {"N": "1e"}}),
        ] {
            let typed = typed.as_object().expect("object");
            assert_eq!(
                item_text(typed, &[("z", "y")]),
                Err(item(typed).expect_err("malformed"))
            );
        }
    }

    #[test]
    fn malformed_values_name_their_path() {
        let err = item(
            json!({"a": {"M": {"b": {"X": 1}}}})
                .as_object()
                .expect("object"),
        )
        .expect_err("X is no type");
        assert_eq!(err, UnmarshallError::NotTyped { path: "a.b".into() });
        let err = value(
            &json!({"L": [{"S": "x"}, {"M": {"k": {"NS": ["1", "x"]}}}]}),
            "v",
        )
        .expect_err("x is no number");
        assert_eq!(
            err,
            UnmarshallError::InvalidNumber {
                path: "v[1].k[1]".into(),
                value: "x".into()
            }
        );
        let err = value(&json!({"N": "12abc"}), "n").expect_err("not a number");
        assert!(matches!(err, UnmarshallError::InvalidNumber { .. }));
    }
}
