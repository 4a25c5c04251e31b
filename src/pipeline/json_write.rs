//! Writing JSON text byte for byte as `serde_json::to_writer` writes it (compact), without its
//! per-character escape loop for the common string that needs no escape.
//!
//! Templates, the matcher's pruned event and entries write a few short strings a record;
//! through serde_json each cost about 150 instructions (BENCHMARKS.md, issue #28). A string
//! is checked for a byte to escape eight bytes at a time, and copied whole when it has none;
//! one that has goes through serde_json, so the escapes are its own.

use serde_json::Value;

/// Appends `text` as a JSON string.
pub fn push_str(out: &mut Vec<u8>, text: &str) {
    if needs_escape(text.as_bytes()) {
        // Writing a string into memory cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Appends `value` as compact JSON text.
pub fn push_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Every digit as read (`arbitrary_precision`), as serde_json writes it.
        Value::Number(n) => out.extend_from_slice(n.as_str().as_bytes()),
        Value::String(s) => push_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (key, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_str(out, key);
                out.push(b':');
                push_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Whether `bytes` hold one serde_json escapes: a control character, `"` or `\`.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGHS: u64 = ONES << 7;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        let mut chunk = [0; 8];
        chunk.copy_from_slice(word);
        let chunk = u64::from_le_bytes(chunk);
        let quote = chunk ^ QUOTES;
        let backslash = chunk ^ BACKSLASHES;
        // A byte below 0x20, or one equal to `"` or `\` (a zero byte once xor-ed with it).
        let found = (chunk.wrapping_sub(ONES * 0x20)
            | quote.wrapping_sub(ONES)
            | backslash.wrapping_sub(ONES))
            & !chunk
            & HIGHS;
        // `!chunk`: bytes of 0x80 and above (UTF-8's multi-byte sequences) never count; a
        // borrow only flags bytes above a true match, so `found` is non-zero exactly when
        // there is one.
        if found != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::scan::tests::value;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn writes_what_serde_json_writes(value in value()) {
            let mut out = Vec::new();
            push_value(&mut out, &value);
            prop_assert_eq!(String::from_utf8(out).expect("utf-8"), value.to_string());
        }
    }

    #[test]
    fn every_byte_serde_json_escapes_is_found_at_every_offset() {
        for byte in 0_u8..=0x7f {
            for at in 0..17 {
                let mut text = "x".repeat(17);
                text.replace_range(at..=at, &char::from(byte).to_string());
                let escaped = serde_json::to_string(&text).expect("text") != format!("\"{text}\"");
                assert_eq!(needs_escape(text.as_bytes()), escaped, "{byte:#x} at {at}");
            }
        }
    }
}
