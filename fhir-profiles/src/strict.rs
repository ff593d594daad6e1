//! JSON as the gateway accepts it: a member given twice is refused (a Consent whose meaning
//! depends on which of two `provision`s the parser keeps is no Consent), and so is a string
//! holding a control character other than tab, carriage return and line feed, which FHIR's
//! `string` forbids. Both are named by their path; no submitted value is echoed.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{printable_name, without_values, Issue, IssueCode, ProfileError};

/// Reads `bytes` as JSON, refusing duplicate members and control characters.
pub fn read(bytes: &[u8]) -> Result<Value, ProfileError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut refusal = None;
    let value = Strict { path: String::from("$"), refusal: &mut refusal }.deserialize(&mut deserializer);
    if let Some(issue) = refusal {
        return Err(ProfileError::structure(issue));
    }
    let value = value.map_err(|e| ProfileError::MalformedJson(without_values(&json_error(&e))))?;
    deserializer.end().map_err(|e| ProfileError::MalformedJson(without_values(&json_error(&e))))?;
    Ok(value)
}

/// serde_json's messages carry line and column and never the offending text.
pub(crate) fn json_error(error: &serde_json::Error) -> String {
    match error.classify() {
        serde_json::error::Category::Eof => "the JSON ends early".to_owned(),
        _ => error.to_string(),
    }
}

/// Whether `text` holds a character FHIR's `string` does not allow.
fn forbidden(text: &str) -> bool {
    text.chars().any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n'))
}

/// Builds a [`Value`] as serde_json would, and stops at the first duplicate or control
/// character, keeping the refusal (with its path) aside from serde's own error.
struct Strict<'r> {
    path: String,
    refusal: &'r mut Option<Issue>,
}

impl Strict<'_> {
    fn refuse<E: de::Error>(&mut self, issue: Issue) -> E {
        *self.refusal = Some(issue);
        E::custom("refused")
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Value, E> {
        if forbidden(v) {
            let issue = Issue::new(IssueCode::Value, "a string holds a control character, which FHIR strings may not")
                .at(self.path.clone());
            return Err(self.refuse(issue));
        }
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.visit_str(&v)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(Strict { path, refusal: &mut *self.refusal })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}.{}", self.path, printable_name(&key));
            if forbidden(&key) {
                let issue =
                    Issue::new(IssueCode::Structure, "a member's name holds a control character").at(self.path.clone());
                return Err(self.refuse(issue));
            }
            if members.contains_key(&key) {
                let issue = Issue::new(IssueCode::Structure, "a member is given more than once").at(path);
                return Err(self.refuse(issue));
            }
            let value = map.next_value_seed(Strict { path, refusal: &mut *self.refusal })?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> Issue {
        match read(json.as_bytes()) {
            Err(ProfileError::Structure(issues)) => issues[0].clone(),
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn a_member_given_twice_is_refused_by_its_path() {
        let issue = refused(r#"{"resourceType": "Consent", "provision": {"type": "deny", "type": "permit"}}"#);
        assert_eq!(issue.expression.as_deref(), Some("$.provision.type"));
        assert!(issue.diagnostics.contains("more than once"));
        let issue = refused(r#"{"a": [{"b": 1}, {"c": 1, "c": 2}]}"#);
        assert_eq!(issue.expression.as_deref(), Some("$.a[1].c"));
    }

    #[test]
    fn control_characters_are_refused_but_tab_and_line_ends_kept() {
        let issue = refused("{\"name\": [{\"family\": \"Vir\\u0000tanen\"}]}");
        assert_eq!(issue.expression.as_deref(), Some("$.name[0].family"));
        assert!(!issue.diagnostics.contains("Vir"), "the value is not echoed");
        refused("{\"x\": \"a\\u001fb\"}");
        refused("{\"a\\u0001\": 1}");
        let kept = read(b"{\"text\": \"line\\none\\r\\n\\tindented\", \"n\": 1.5, \"list\": [true, null]}").unwrap();
        assert_eq!(kept["text"], "line\none\r\n\tindented");
        assert_eq!(kept, serde_json::from_str::<Value>(&kept.to_string()).unwrap());
    }

    #[test]
    fn malformed_json_is_refused_without_echoing_it() {
        assert!(matches!(read(b"{\"a\": "), Err(ProfileError::MalformedJson(_))));
        assert!(matches!(read(b"{} {}"), Err(ProfileError::MalformedJson(_))));
        assert!(matches!(read(&[0xff, 0xfe]), Err(ProfileError::MalformedJson(_))));
    }
}
