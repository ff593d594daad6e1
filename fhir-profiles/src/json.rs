//! Building and reading serde_json trees at the cost the documents need.
//!
//! serde_json's map (an `IndexMap`, to keep FHIR's member order) hashes every name with SipHash,
//! on every insert and every lookup. A FHIR object holds a handful of members, and a
//! document's translation and validation meet some thousand of them: hashing was a quarter of
//! the instructions of a submission's pure stages. Small objects are searched by comparing
//! names instead, and objects are built at their final size.

use serde_json::{Map, Value};

/// Up to this many members, comparing names beats hashing the one looked for.
const SCAN_MEMBERS: usize = 12;

/// A member of a JSON object by name: what `get` does, without hashing small objects.
pub(crate) trait Member {
    fn member(&self, name: &str) -> Option<&Value>;

    /// The member's text, when it is a string.
    fn text(&self, name: &str) -> Option<&str> {
        self.member(name).and_then(Value::as_str)
    }

    /// The member's items, when it is an array; none otherwise.
    fn items(&self, name: &str) -> &[Value] {
        self.member(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl Member for Map<String, Value> {
    fn member(&self, name: &str) -> Option<&Value> {
        if self.len() <= SCAN_MEMBERS {
            self.iter().find(|(key, _)| key.as_str() == name).map(|(_, value)| value)
        } else {
            self.get(name)
        }
    }
}

impl Member for Value {
    fn member(&self, name: &str) -> Option<&Value> {
        self.as_object().and_then(|object| object.member(name))
    }
}

/// An object of these members, in this order, allocated once at its size.
pub(crate) fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    let mut map = Map::with_capacity(N);
    for (name, value) in members {
        map.insert(name.to_owned(), value);
    }
    Value::Object(map)
}

/// An object of these members, in this order, leaving out the absent ones.
pub(crate) fn object_of(members: Vec<(&str, Option<Value>)>) -> Value {
    let mut map = Map::with_capacity(members.len());
    for (name, value) in members.into_iter().filter_map(|(name, value)| Some((name, value?))) {
        map.insert(name.to_owned(), value);
    }
    Value::Object(map)
}

/// A JSON string.
pub(crate) fn string(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_found_in_small_and_large_objects_alike() {
        let small = json!({"a": 1, "b": "two", "c": [3]});
        assert_eq!(small.member("b"), Some(&json!("two")));
        assert_eq!(small.text("b"), Some("two"));
        assert_eq!(small.items("c"), &[json!(3)]);
        assert_eq!(small.member("d"), None);
        assert!(small.items("a").is_empty());
        let large: Map<String, Value> = (0..40).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(large.member("k33"), Some(&json!(33)));
        assert_eq!(large.member("k40"), None);
        assert_eq!(json!([1]).member("a"), None);
    }

    #[test]
    fn objects_keep_their_member_order() {
        let built = object([("resourceType", string("Patient")), ("id", string("p1")), ("active", Value::Bool(true))]);
        assert_eq!(built.to_string(), r#"{"resourceType":"Patient","id":"p1","active":true}"#);
    }
}
