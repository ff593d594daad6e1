//! A document's line in a list: its date, organisation, service event, kind and author, read
//! from a stored document Bundle. The store seals it beside the document when the document is
//! written (from the submitted tree, which costs no parsing), so that listing a patient's
//! documents opens a few hundred bytes a document rather than the whole document, whatever the
//! length of its note.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a list shows of a document. Only what the document itself says: whether a patient's
/// restriction covers it is decided when it is shown. Stored listings outlive this type: a
/// field added later is read as its default from those sealed before.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Listing {
    /// The Composition's date, as written.
    pub date: String,
    /// The custodian Organization's name.
    pub organisation: String,
    /// The service event Encounter's type and the day it began.
    pub service_event: Option<(String, String)>,
    /// The Composition's title, or its type's display.
    pub kind: String,
    /// The author's name.
    pub author: String,
    pub profession: Option<String>,
}

impl Listing {
    /// The listing of a document Bundle, from its tree (as submitted, or as stored: the id and
    /// meta a store stamps on it are not read); `None` for a Bundle with no entries. Only the
    /// first entry (the Composition) and the entries it names are read.
    pub fn of_bundle(bundle: &Map<String, Value>, service_event: Option<&str>) -> Option<Listing> {
        let entries = bundle.get("entry")?.as_array()?;
        let composition = &entries.first()?["resource"];
        let find = |reference: &Value| -> Option<&Value> {
            let reference = reference["reference"].as_str()?;
            entries.iter().find(|e| e["fullUrl"].as_str() == Some(reference)).map(|e| &e["resource"])
        };
        let author = find(&composition["author"][0]);
        let organisation = find(&composition["custodian"]).filter(|o| o["resourceType"] == "Organization");
        let text = |value: &Value| value.as_str().map(str::to_owned);
        Some(Listing {
            date: text(&composition["date"]).unwrap_or_default(),
            organisation: organisation.and_then(|o| text(&o["name"])).unwrap_or_default(),
            service_event: service_event.and_then(|event| event_label(entries, event)),
            kind: text(&composition["title"])
                .or_else(|| text(&composition["type"]["coding"][0]["display"]))
                .unwrap_or_default(),
            author: author.and_then(person_name).unwrap_or_default(),
            profession: author.and_then(profession),
        })
    }

    /// The listing of a stored document's bytes; `None` for bytes that are not a Bundle with
    /// entries.
    pub fn of_document(body: &[u8], service_event: Option<&str>) -> Option<Listing> {
        Listing::of_bundle(&serde_json::from_slice(body).ok()?, service_event)
    }
}

/// A Practitioner's (or any HumanName holder's) first name as one line: given names, family.
pub fn person_name(json: &Value) -> Option<String> {
    let name = json["name"].as_array()?.first()?;
    let given: Vec<&str> = name["given"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let family = name["family"].as_str().unwrap_or("");
    let full = format!("{} {family}", given.join(" "));
    let full = full.trim();
    (!full.is_empty()).then(|| full.to_owned())
}

/// A Practitioner's first qualification, as its text.
pub fn profession(json: &Value) -> Option<String> {
    json["qualification"].as_array()?.first()?["code"]["text"].as_str().map(str::to_owned)
}

/// The service event Encounter of a document (the one whose identifier is the event's OID):
/// its type's display and the day it began.
fn event_label(entries: &[Value], service_event: &str) -> Option<(String, String)> {
    let wanted = format!("urn:oid:{service_event}");
    entries.iter().map(|e| &e["resource"]).find_map(|resource| {
        if resource["resourceType"] != "Encounter" {
            return None;
        }
        if !resource["identifier"].as_array()?.iter().any(|i| i["value"].as_str() == Some(wanted.as_str())) {
            return None;
        }
        let display = resource["type"][0]["coding"][0]["display"].as_str()?.to_owned();
        let start = resource["period"]["start"].as_str().unwrap_or("").chars().take(10).collect();
        Some((display, start))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_document_lists_its_date_organisation_event_kind_and_author() {
        let body = include_bytes!("../../docs/example-document.json");
        let listing = Listing::of_document(body, Some("1.2.246.10.12345678.10.1.77.1")).unwrap();
        assert_eq!(listing.organisation, "Example Therapy Clinic");
        assert_eq!(listing.author, "Anna Korhonen");
        assert_eq!(listing.profession.as_deref(), Some("psychotherapist"));
        assert_eq!(listing.date, "2026-03-02T14:00:00+02:00");
        assert_eq!(listing.kind, "Psychotherapy session note");
        let event = Some(("Psychotherapy (regime/therapy)".to_owned(), "2026-01-10".to_owned()));
        assert_eq!(listing.service_event, event);
        // Another service event's document names no event of this one's.
        assert_eq!(Listing::of_document(body, Some("1.2.3")).unwrap().service_event, None);
    }

    #[test]
    fn bytes_that_are_not_a_document_have_no_listing() {
        assert_eq!(Listing::of_document(b"not json", None), None);
        assert_eq!(Listing::of_document(br#"{"resourceType":"Bundle"}"#, None), None);
        assert_eq!(Listing::of_document(br#"{"resourceType":"Bundle","entry":"x"}"#, None), None);
    }
}
