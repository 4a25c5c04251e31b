//! The part of an event quamina reads: the fields its patterns name, and nothing else.
//!
//! quamina matches an event's JSON text, and reads only the fields on its patterns' paths; it
//! still has to scan past every other byte. A stream record is mostly what no pattern names
//! (the images, sizes, sequence numbers), so serializing it whole for the matcher and
//! scanning it again was about a quarter of the relay's CPU per record (BENCHMARKS.md, issue
//! #28). [`ReadFields`] keeps the union of the patterns' paths, and [`ReadFields::write`]
//! serializes only those.
//!
//! The rules, so that a pattern matches the written text exactly when it matches the whole
//! event:
//! - a path a pattern ends on (its conditions) keeps the event's value there whole;
//! - along a path, an object keeps only the named keys; an array keeps every element, in
//!   order, each pruned the same way (quamina matches through arrays, and tells elements apart
//!   by position, so none may be dropped or moved); a scalar is kept as it is (no pattern's
//!   deeper field can be found in it, kept or not);
//! - a key no pattern names is left out.
//!
//! The same rules also decide what of a record the relay parses at all
//! ([`ReadFields::parse`]): the union of what its patterns, templates and record policy read
//! (`Router::reads`), so a record's tree holds only what routing looks at. An image that
//! routing reads as plain JSON (a template's `$.NewImage…`, an unmarshalled detail,
//! [`ReadFields::add_plain_image`]) and not whole typed is not parsed into a typed tree: its
//! text is kept ([`ImageTexts`]) and unmarshalled, or written as plain text, straight from it
//! when a route renders. Those of its attributes read typed (an event id, a filter's) are in
//! the tree beside it.

use serde_json::{Map, Value};

use crate::pipeline::image::{ImageSelector, ImageTexts};
use crate::pipeline::json_write::{push_str, push_value};
use crate::pipeline::scan::{NotJson, Scan};

/// The union of the field paths of quamina's patterns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadFields {
    /// A pattern ends here: the event's value is kept whole.
    whole: bool,
    /// The keys patterns name below this point.
    children: Children,
    /// This is `dynamodb.<image>`, read as plain JSON: kept as text unless it is read whole
    /// typed (its children, attributes read typed, are parsed beside the text).
    plain: Option<ImageSelector>,
}

/// The keys read below a point, in key order (the order [`ReadFields::write`] writes them).
/// A handful at most: found by a scan that compares lengths first, cheaper per record than a
/// map's search (issue #28).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Children(Vec<(String, ReadFields)>);

impl Children {
    /// The fields read under `key`, added (reading nothing yet) if absent.
    fn entry(&mut self, key: &str) -> &mut ReadFields {
        let at = match self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (key.to_owned(), ReadFields::default()));
                at
            }
        };
        &mut self.0[at].1
    }

    fn get(&self, key: &str) -> Option<&ReadFields> {
        self.0
            .iter()
            .find(|(k, _)| k.len() == key.len() && k == key)
            .map(|(_, read)| read)
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &ReadFields)> {
        self.0.iter().map(|(k, read)| (k, read))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A record parsed by [`ReadFields::parse`]: the tree of what is read typed, and the text of
/// the images read as plain JSON (in the tree, such an image holds only its attributes read
/// typed, if any).
#[derive(Debug)]
pub struct Parsed<'t> {
    pub tree: Value,
    pub images: ImageTexts<'t>,
}

impl ReadFields {
    /// Adds the paths of `pattern` (a `$or`-free quamina pattern).
    pub fn add(&mut self, pattern: &Map<String, Value>) {
        for (key, value) in pattern {
            let child = self.children.entry(key);
            match value {
                Value::Object(nested) => child.add(nested),
                _ => child.whole = true,
            }
        }
    }

    /// Adds a path whose value is read whole (`[]`: the whole event).
    pub fn add_path<S: AsRef<str>>(&mut self, path: &[S]) {
        let mut at = self;
        for key in path {
            if at.whole {
                return;
            }
            at = at.children.entry(key.as_ref());
        }
        at.whole = true;
        at.children.clear();
    }

    /// Adds `dynamodb.<image>`, read as plain JSON (unmarshalled): unless something reads it
    /// whole typed too, [`ReadFields::parse`] keeps its text instead of its typed tree.
    pub fn add_plain_image(&mut self, image: ImageSelector) {
        let mut at = self;
        for key in ["dynamodb", image.field()] {
            if at.whole {
                return;
            }
            at = at.children.entry(key);
        }
        at.plain = Some(image);
    }

    /// Whether the top-level field `key` is read (named, or the whole event is).
    #[must_use]
    pub fn reads_key(&self, key: &str) -> bool {
        self.whole || self.children.get(key).is_some()
    }

    /// The image this node is, when its text is kept: read as plain JSON and not whole typed.
    /// An item image whose attributes are also read typed is kept too (those attributes parsed
    /// beside it), as its tree costs more than reading its text twice; `Keys`, an item's key
    /// attributes only, is then parsed whole (its tree is cheaper than a second read).
    fn text_kept(&self) -> Option<ImageSelector> {
        self.plain.filter(|image| {
            !self.whole && (self.children.is_empty() || *image != ImageSelector::Keys)
        })
    }

    /// Parses the JSON text `text` reduced to these fields: the tree of what [`ReadFields::write`]
    /// would write of the whole event, without building the rest; an image read only as plain
    /// JSON is left out of the tree and its text kept ([`ReadFields::add_plain_image`]).
    ///
    /// `text` is JSON this crate wrote (a record's text): what is not kept is stepped over,
    /// its structure checked but not its every byte ([`Scan`]).
    ///
    /// # Errors
    /// `text` is not JSON.
    pub fn parse<'t>(&self, text: &'t str) -> Result<Parsed<'t>, NotJson> {
        let mut scan = Scan::new(text);
        let mut images = ImageTexts::default();
        let tree = self.read(&mut scan, Some(&mut images))?;
        scan.finish()?;
        Ok(Parsed { tree, images })
    }

    /// The value next in `scan`, pruned to these fields. `images`: where the text of an image
    /// read only as plain JSON goes; `None` inside an array (a record's images are
    /// `dynamodb.<image>`, reached through objects only).
    fn read<'t>(
        &self,
        scan: &mut Scan<'t>,
        mut images: Option<&mut ImageTexts<'t>>,
    ) -> Result<Value, NotJson> {
        // An image not kept as text is parsed whole, for its plain JSON; inside an array none
        // is kept (a record's are reached through objects).
        if self.whole || (self.plain.is_some() && (images.is_none() || self.text_kept().is_none()))
        {
            return scan.value();
        }
        match scan.peek()? {
            b'{' => {
                let mut out = Map::new();
                let mut key = scan.object_first()?;
                while let Some(name) = key {
                    match self.children.get(&name) {
                        None => {
                            scan.skip()?;
                        }
                        Some(read) => match (read.text_kept(), images.as_deref_mut()) {
                            (Some(image), Some(images)) if read.children.is_empty() => {
                                images.set(image, scan.skip()?);
                            }
                            // An image read as plain JSON and some of its attributes typed
                            // (an event id, a filter's): those attributes in the tree, and
                            // the whole image's text kept.
                            (Some(image), Some(images)) => {
                                let start = scan.clone();
                                let value = read.read(scan, Some(&mut *images))?;
                                images.set(image, start.text_to(scan));
                                out.insert(name.into_owned(), value);
                            }
                            (_, images) => {
                                let value = read.read(scan, images)?;
                                out.insert(name.into_owned(), value);
                            }
                        },
                    }
                    key = scan.object_next()?;
                }
                Ok(Value::Object(out))
            }
            b'[' => {
                let mut out = Vec::new();
                if scan.array_first()? {
                    loop {
                        out.push(self.read(scan, None)?);
                        if !scan.array_next()? {
                            break;
                        }
                    }
                }
                Ok(Value::Array(out))
            }
            _ => scan.value(),
        }
    }

    /// Appends to `out` the JSON text of `event` reduced to these fields (see the module
    /// documentation).
    pub fn write(&self, event: &Value, out: &mut Vec<u8>) {
        if self.whole {
            push_value(out, event);
            return;
        }
        match event {
            Value::Object(fields) => {
                out.push(b'{');
                let mut first = true;
                for (key, read) in self.children.iter() {
                    let Some(value) = fields.get(key) else {
                        continue;
                    };
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    push_str(out, key);
                    out.push(b':');
                    read.write(value, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write(item, out);
                }
                out.push(b']');
            }
            scalar => push_value(out, scalar),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(patterns: &[Value], event: &Value) -> Value {
        let mut fields = ReadFields::default();
        for p in patterns {
            fields.add(p.as_object().expect("object"));
        }
        let mut out = Vec::new();
        fields.write(event, &mut out);
        serde_json::from_slice(&out).expect("the written text is JSON")
    }

    #[test]
    fn keeps_only_the_named_fields_and_whole_values_where_patterns_end() {
        let record = json!({
            "eventName": "INSERT",
            "eventID": "1",
            "dynamodb": {
                "SizeBytes": 90,
                "NewImage": {"type": {"S": "BookAdded"}, "payload": {"M": {"x": {"N": "1"}}}},
                "Keys": {"pk": {"S": "a"}},
            },
        });
        let patterns = [
            json!({"eventName": ["INSERT"]}),
            json!({"dynamodb": {"NewImage": {"type": {"S": ["BookAdded"]}}}}),
        ];
        assert_eq!(
            written(&patterns, &record),
            json!({"eventName": "INSERT", "dynamodb": {"NewImage": {"type": {"S": "BookAdded"}}}})
        );
        // A pattern ending on an object keeps it whole, whatever else names its insides.
        let whole = [
            json!({"dynamodb": {"Keys": ["x"]}}),
            json!({"dynamodb": {"Keys": {"pk": {"S": ["a"]}}}}),
        ];
        assert_eq!(
            written(&whole, &record),
            json!({"dynamodb": {"Keys": {"pk": {"S": "a"}}}})
        );
    }

    #[test]
    fn arrays_keep_every_element_in_order_and_scalars_stay() {
        let event = json!({"a": [{"b": 1, "c": 2}, 7, {"c": 3}, [{"b": 4}]], "z": 1});
        assert_eq!(
            written(&[json!({"a": {"b": [1]}})], &event),
            json!({"a": [{"b": 1}, 7, {}, [{"b": 4}]]})
        );
    }

    mod parse {
        //! [`ReadFields::parse`] builds exactly the tree of what [`ReadFields::write`] writes,
        //! numbers keeping every digit wherever they sit.
        use super::super::ReadFields;
        use crate::pipeline::pattern::tests::fields_read::{events, KEYS};
        use proptest::prelude::*;
        use serde_json::{json, Value};

        fn leaf() -> impl Strategy<Value = Value> {
            prop::sample::select(vec![
                json!("x"),
                json!("\"quoted\" é"),
                serde_json::from_str::<Value>("12345678901234567890.000000000000000001")
                    .expect("a number"),
                json!(-0.5),
                json!(7),
                json!(true),
                Value::Null,
            ])
        }

        fn event() -> impl Strategy<Value = Value> {
            events(leaf(), 4, 32)
        }

        fn reads() -> impl Strategy<Value = ReadFields> {
            let path = prop::collection::vec(prop::sample::select(KEYS.to_vec()), 0..4);
            prop::collection::vec(path, 0..4).prop_map(|paths| {
                let mut reads = ReadFields::default();
                for path in paths {
                    reads.add_path(&path);
                }
                reads
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]
            #[test]
            fn parses_what_write_writes(reads in reads(), event in event()) {
                let mut out = Vec::new();
                reads.write(&event, &mut out);
                let written: Value = serde_json::from_slice(&out).expect("json");
                let text = event.to_string();
                let parsed = reads.parse(&text).expect("json").tree;
                prop_assert_eq!(&parsed, &written);
                let mut everything = reads.clone();
                everything.add_path::<&str>(&[]);
                prop_assert_eq!(everything.parse(&text).expect("json").tree, event);
            }
        }
    }

    #[test]
    fn no_pattern_reads_nothing() {
        assert_eq!(written(&[], &json!({"a": 1})), json!({}));
    }
}
