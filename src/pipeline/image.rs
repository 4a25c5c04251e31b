//! A record's images (`NewImage`, `OldImage`, `Keys`) as plain JSON: unmarshalled once per
//! record on first use, with `expand_json` attributes parsed, and shared by the routes.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::unmarshall::{self, UnmarshallError};

/// What becomes the `Detail` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ImageSelector {
    /// The item after the change (absent on REMOVE).
    NewImage,
    /// The item before the change (absent on INSERT).
    OldImage,
    /// The item's key attributes (always present).
    Keys,
}

impl ImageSelector {
    /// The name of this image inside a stream record's `dynamodb` object.
    #[must_use]
    pub fn field(self) -> &'static str {
        match self {
            Self::NewImage => "NewImage",
            Self::OldImage => "OldImage",
            Self::Keys => "Keys",
        }
    }

    /// Its place in a per-image array.
    fn slot(self) -> usize {
        match self {
            Self::NewImage => 0,
            Self::OldImage => 1,
            Self::Keys => 2,
        }
    }
}

/// A stream's `StreamViewType`: which images its records carry (every record carries `Keys`).
/// "KEYS_ONLY, NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES" (DynamoDB API reference,
/// `StreamSpecification`); a stream's view type cannot be changed, only a new stream made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamViewType {
    KeysOnly,
    NewImage,
    OldImage,
    NewAndOldImages,
}

impl StreamViewType {
    /// The API's name for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeysOnly => "KEYS_ONLY",
            Self::NewImage => "NEW_IMAGE",
            Self::OldImage => "OLD_IMAGE",
            Self::NewAndOldImages => "NEW_AND_OLD_IMAGES",
        }
    }

    /// Whether records of such a stream carry `image`.
    #[must_use]
    pub fn holds(self, image: ImageSelector) -> bool {
        match image {
            ImageSelector::Keys => true,
            ImageSelector::NewImage => matches!(self, Self::NewImage | Self::NewAndOldImages),
            ImageSelector::OldImage => matches!(self, Self::OldImage | Self::NewAndOldImages),
        }
    }

    /// The view types that hold `image`, as the API names them, for messages.
    #[must_use]
    pub fn holding(image: ImageSelector) -> Vec<&'static str> {
        [
            Self::KeysOnly,
            Self::NewImage,
            Self::OldImage,
            Self::NewAndOldImages,
        ]
        .into_iter()
        .filter(|v| v.holds(image))
        .map(Self::as_str)
        .collect()
    }
}

impl std::str::FromStr for StreamViewType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "KEYS_ONLY" => Ok(Self::KeysOnly),
            "NEW_IMAGE" => Ok(Self::NewImage),
            "OLD_IMAGE" => Ok(Self::OldImage),
            "NEW_AND_OLD_IMAGES" => Ok(Self::NewAndOldImages),
            other => Err(format!("unknown StreamViewType {other:?}")),
        }
    }
}

/// The images a pattern, template path or ordering key names: `NewImage`/`OldImage` under
/// `dynamodb` in the stream record, or the plain image as a path's first step (`$.NewImage`).
#[must_use]
pub fn image_named(field: &str) -> Option<ImageSelector> {
    match field {
        "NewImage" => Some(ImageSelector::NewImage),
        "OldImage" => Some(ImageSelector::OldImage),
        _ => None,
    }
}

/// The JSON text of the images of a record that routing reads as plain JSON and not whole typed
/// (`$.NewImage…` in a template, an unmarshalled detail):
/// [`crate::pipeline::pattern::fields::ReadFields::parse`] keeps their text instead of building
/// their typed tree, and [`PlainImages`] unmarshalls them straight from it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImageTexts<'t>([Option<&'t str>; 3]);

impl<'t> ImageTexts<'t> {
    /// The text of `image`, if it was kept as text.
    #[must_use]
    pub fn get(&self, image: ImageSelector) -> Option<&'t str> {
        self.0[image.slot()]
    }

    /// Keeps `text` as the text of `image`.
    pub(crate) fn set(&mut self, image: ImageSelector, text: &'t str) {
        self.0[image.slot()] = Some(text);
    }
}

/// A record's images unmarshalled to plain JSON, each made on first use and then shared.
#[derive(Debug)]
pub struct PlainImages<'a> {
    record: &'a Value,
    /// The images kept as text instead of in `record`.
    texts: ImageTexts<'a>,
    /// Top-level attributes holding a JSON document in a string, parsed in every image.
    expand_json: &'a [String],
    /// `NewImage`, `OldImage`, `Keys`.
    cells: [OnceCell<Result<Option<Value>, ImageError>>; 3],
}

/// Why a record's image could not be made plain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The image is not valid DynamoDB JSON.
    #[error("cannot unmarshall {image}: {source}")]
    Unmarshall {
        image: &'static str,
        #[source]
        source: UnmarshallError,
    },
    /// An `expand_json` attribute holds a string that is not a JSON document.
    #[error("{image}.{attribute} is not a JSON document: {reason}")]
    NotJson {
        image: &'static str,
        attribute: String,
        reason: String,
    },
}

impl<'a> PlainImages<'a> {
    /// The images of `record`, and of `texts` for those kept as text.
    #[must_use]
    pub fn new(record: &'a Value, texts: ImageTexts<'a>, expand_json: &'a [String]) -> Self {
        Self {
            record,
            texts,
            expand_json,
            cells: Default::default(),
        }
    }

    /// The record's `image` as plain JSON with the `expand_json` attributes parsed, or
    /// `None` when the record has no such image (e.g. `NewImage` of a REMOVE).
    ///
    /// # Errors
    /// [`ImageError`] when the image is malformed or an attribute to expand is not JSON.
    pub fn get(&self, image: ImageSelector) -> Result<Option<&Value>, ImageError> {
        self.cells[image.slot()]
            .get_or_init(|| self.make(image))
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// The record's typed `image` when its plain image is exactly that image unmarshalled (no
    /// attribute to expand), so it can be written as text without building the plain tree;
    /// `None` otherwise. `Some(None)`: the record has no such image.
    #[must_use]
    pub fn typed_only(&self, image: ImageSelector) -> Option<Option<&'a Map<String, Value>>> {
        let in_record = self.texts.get(image).is_none();
        (in_record && self.expand_json.is_empty()).then(|| self.typed(image))
    }

    /// The text of `image` when it was kept as text and its plain image is exactly that text
    /// unmarshalled (no attribute to expand), so the plain text can be written from it
    /// without building a tree ([`unmarshall::item_text_of_text`]).
    #[must_use]
    pub fn text_only(&self, image: ImageSelector) -> Option<&'a str> {
        self.texts
            .get(image)
            .filter(|_| self.expand_json.is_empty())
    }

    fn typed(&self, image: ImageSelector) -> Option<&'a Map<String, Value>> {
        self.record
            .get("dynamodb")
            .and_then(|d| d.get(image.field()))
            .and_then(Value::as_object)
    }

    /// The plain `Keys`' values, in name order, when every key attribute is a string, read
    /// without making the plain `Keys` (issue #28); `None` when it is made already, when an
    /// attribute may be expanded, or for any other `Keys` (the caller then reads the plain
    /// `Keys`).
    #[must_use]
    pub fn key_strings(&self) -> Option<Vec<Cow<'a, str>>> {
        let keys = ImageSelector::Keys;
        if !self.expand_json.is_empty() || self.cells[keys.slot()].get().is_some() {
            return None;
        }
        match (self.texts.get(keys), self.typed(keys)) {
            (Some(text), _) => unmarshall::string_values_of_text(text),
            (None, Some(typed)) => unmarshall::string_values(typed),
            (None, None) => None,
        }
    }

    fn make(&self, image: ImageSelector) -> Result<Option<Value>, ImageError> {
        let name = image.field();
        let unmarshalled = match (self.texts.get(image), self.typed(image)) {
            (Some(text), _) => unmarshall::item_of_text(text),
            (None, Some(typed)) => unmarshall::item(typed).map(Some),
            (None, None) => Ok(None),
        };
        let unmarshalled = unmarshalled.map_err(|source| ImageError::Unmarshall {
            image: name,
            source,
        })?;
        let Some(mut plain) = unmarshalled else {
            return Ok(None);
        };
        if let Value::Object(map) = &mut plain {
            for attribute in self.expand_json {
                if let Some(Value::String(text)) = map.get(attribute) {
                    let doc = serde_json::from_str::<Value>(text)
                        .map_err(|e| e.to_string())
                        .and_then(|doc| match doc {
                            Value::Object(_) | Value::Array(_) => Ok(doc),
                            _ => Err("it is JSON, but not an object or array".to_owned()),
                        })
                        .map_err(|reason| ImageError::NotJson {
                            image: name,
                            attribute: attribute.clone(),
                            reason,
                        })?;
                    map.insert(attribute.clone(), doc);
                }
            }
        }
        Ok(Some(plain))
    }
}
