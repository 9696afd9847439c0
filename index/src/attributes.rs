//! OTLP attributes handed to tantivy's JSON fields by reference.
//!
//! tantivy indexes any type implementing its `Value` trait. Walking the OTLP `KeyValue` list in
//! place spares building an owned object tree (a key and a value string allocated and copied
//! per attribute, per record) only for tantivy to copy it again into its document buffer.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf, Value};

/// An attribute list (a JSON object) or one attribute value, borrowed from a row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AttributeValue<'a> {
    /// A list of attributes: an object keyed by attribute name.
    Object(&'a [KeyValue]),
    /// One value; `None` (an attribute without a value) indexes as null.
    Any(Option<&'a AnyValue>),
}

impl<'a> Value<'a> for AttributeValue<'a> {
    type ArrayIter = ArrayIter<'a>;
    type ObjectIter = ObjectIter<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        let value = match *self {
            AttributeValue::Object(attributes) => {
                return ReferenceValue::Object(ObjectIter(attributes.iter()));
            }
            AttributeValue::Any(value) => value.and_then(|v| v.value.as_ref()),
        };
        let leaf = match value {
            Some(any_value::Value::StringValue(s)) => ReferenceValueLeaf::Str(s),
            Some(any_value::Value::BoolValue(b)) => ReferenceValueLeaf::Bool(*b),
            Some(any_value::Value::IntValue(i)) => ReferenceValueLeaf::I64(*i),
            Some(any_value::Value::DoubleValue(d)) => ReferenceValueLeaf::F64(*d),
            Some(any_value::Value::ArrayValue(array)) => {
                return ReferenceValue::Array(ArrayIter(array.values.iter()));
            }
            Some(any_value::Value::KvlistValue(list)) => {
                return ReferenceValue::Object(ObjectIter(list.values.iter()));
            }
            // Bytes are indexed as their base64 text, which needs an owned string: lists that
            // hold bytes take the owned path (see `has_bytes`).
            Some(any_value::Value::BytesValue(_))
            | Some(any_value::Value::StringValueStrindex(_))
            | None => ReferenceValueLeaf::Null,
        };
        ReferenceValue::Leaf(leaf)
    }
}

/// The elements of an OTLP array value.
#[derive(Debug)]
pub(crate) struct ArrayIter<'a>(std::slice::Iter<'a, AnyValue>);

impl<'a> Iterator for ArrayIter<'a> {
    type Item = AttributeValue<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|v| AttributeValue::Any(Some(v)))
    }
}

/// The entries of an OTLP attribute list.
#[derive(Debug)]
pub(crate) struct ObjectIter<'a>(std::slice::Iter<'a, KeyValue>);

impl<'a> Iterator for ObjectIter<'a> {
    type Item = (&'a str, AttributeValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next()
            .map(|kv| (kv.key.as_str(), AttributeValue::Any(kv.value.as_ref())))
    }
}

/// True when a bytes value occurs anywhere in `attributes` (rare in practice).
pub(crate) fn has_bytes(attributes: &[KeyValue]) -> bool {
    fn any_bytes(value: Option<&AnyValue>) -> bool {
        match value.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::BytesValue(_)) => true,
            Some(any_value::Value::ArrayValue(a)) => a.values.iter().any(|v| any_bytes(Some(v))),
            Some(any_value::Value::KvlistValue(kv)) => has_bytes(&kv.values),
            _ => false,
        }
    }
    attributes.iter().any(|kv| any_bytes(kv.value.as_ref()))
}
