//! Search parameters: which ones each type supports, the facts extracted from a resource at write
//! time to answer them, and the parsing of query values.
//!
//! What is indexed is deliberately narrow: identifiers (which the gateway turns into keyed HMAC
//! tokens before they reach the database) and dates. Names, addresses and free text are never
//! indexed, so no search parameter can test them.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::json::Member;
use crate::resource_type::ResourceType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    Date,
    Reference,
}

impl ParamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
        }
    }
}

/// A search parameter a resource type supports.
#[derive(Clone, Copy, Debug)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The canonical URL of its definition, for the CapabilityStatement.
    pub definition: &'static str,
    pub documentation: &'static str,
}

const ID: SearchParam = SearchParam {
    name: "_id",
    kind: ParamKind::Token,
    definition: "http://hl7.org/fhir/SearchParameter/Resource-id",
    documentation: "Logical id of the resource",
};
const LAST_UPDATED: SearchParam = SearchParam {
    name: "_lastUpdated",
    kind: ParamKind::Date,
    definition: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
    documentation: "When the resource version was stored (prefixes eq, ne, lt, le, gt, ge)",
};
const IDENTIFIER: SearchParam = SearchParam {
    name: "identifier",
    kind: ParamKind::Token,
    definition: "http://hl7.org/fhir/SearchParameter/clinical-identifier",
    documentation: "system|value or value; matched through keyed HMAC tokens, exact match only",
};
const PATIENT: SearchParam = SearchParam {
    name: "patient",
    kind: ParamKind::Reference,
    definition: "http://hl7.org/fhir/SearchParameter/clinical-patient",
    documentation: "Patient/{id}, {id}, or with :identifier a HETU as urn:oid:1.2.246.21|{hetu}",
};
const DATE: SearchParam = SearchParam {
    name: "date",
    kind: ParamKind::Date,
    definition: "http://hl7.org/fhir/SearchParameter/clinical-date",
    documentation: "The clinically relevant date or period (prefixes eq, ne, lt, le, gt, ge)",
};

/// The parameters of `resource_type`, common ones first.
pub fn search_params(resource_type: ResourceType) -> Vec<SearchParam> {
    let mut params = vec![ID, LAST_UPDATED];
    use ResourceType::*;
    match resource_type {
        Patient | Practitioner | Organization => params.push(IDENTIFIER),
        Encounter | Observation | Composition | Consent => params.extend([IDENTIFIER, PATIENT, DATE]),
        Condition => params.extend([
            IDENTIFIER,
            PATIENT,
            SearchParam {
                name: "recorded-date",
                kind: ParamKind::Date,
                definition: "http://hl7.org/fhir/SearchParameter/Condition-recorded-date",
                documentation: "Date the condition was first recorded",
            },
        ]),
        Bundle => params.extend([
            SearchParam {
                name: "identifier",
                kind: ParamKind::Token,
                definition: "http://hl7.org/fhir/SearchParameter/Bundle-identifier",
                documentation: "The document's persistent identifier (system|value), as an HMAC token",
            },
            SearchParam {
                name: "patient",
                kind: ParamKind::Reference,
                definition: "https://fhir.vaitio.fi/SearchParameter/Bundle-patient",
                documentation:
                    "Documents whose Composition.subject is this patient (Patient/{id}, or :identifier with a HETU)",
            },
            SearchParam {
                name: "timestamp",
                kind: ParamKind::Date,
                definition: "http://hl7.org/fhir/SearchParameter/Bundle-timestamp",
                documentation: "When the document was assembled",
            },
        ]),
        AuditEvent => params.extend([
            SearchParam {
                name: "patient",
                kind: ParamKind::Reference,
                definition: "http://hl7.org/fhir/SearchParameter/AuditEvent-patient",
                documentation: "Events about this patient: Patient/{id}, or with :identifier a HETU (urn:oid:1.2.246.21|{hetu}) \
                    or a pseudonym (https://fhir.vaitio.fi/sid/patient-pseudonym|{pseudonym}). A patient sees only their own",
            },
            SearchParam {
                name: "date",
                kind: ParamKind::Date,
                definition: "http://hl7.org/fhir/SearchParameter/AuditEvent-date",
                documentation: "When the event was recorded (prefixes eq, ne, lt, le, gt, ge)",
            },
            SearchParam {
                name: "agent",
                kind: ParamKind::Token,
                definition: "https://fhir.vaitio.fi/SearchParameter/AuditEvent-agent",
                documentation: "The acting practitioner's Terhikki number, a staff subject, or a patient pseudonym",
            },
            SearchParam {
                name: "organization",
                kind: ParamKind::Token,
                definition: "https://fhir.vaitio.fi/SearchParameter/AuditEvent-organization",
                documentation: "The acting organisation's OID",
            },
        ]),
    }
    params
}

/// What a stored resource contributes to the search index. Tokens leave this crate in clear and
/// are turned into HMAC tokens by the gateway before storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexFact {
    /// An identifier: `system|value` (system may be absent).
    Token { param: &'static str, system: Option<String>, value: String },
    /// A date or period as inclusive epoch seconds.
    Date { param: &'static str, start: i64, end: i64 },
}

/// Extracts the index facts of a resource (already read by [`crate::parse_resource`]).
pub fn index_facts(resource_type: ResourceType, json: &Map<String, Value>) -> Vec<IndexFact> {
    let mut facts = Vec::new();
    use ResourceType::*;
    match resource_type {
        Composition | Bundle => identifier_facts(json.member("identifier").into_iter(), &mut facts),
        _ => identifier_facts(json.member("identifier").and_then(Value::as_array).into_iter().flatten(), &mut facts),
    }
    let date_param = match resource_type {
        Condition => "recorded-date",
        Bundle => "timestamp",
        _ => "date",
    };
    let date = match resource_type {
        Encounter => json.member("period").and_then(period_range),
        Observation => json
            .member("effectiveDateTime")
            .or_else(|| json.member("effectiveInstant"))
            .and_then(Value::as_str)
            .and_then(date_range)
            .or_else(|| json.member("effectivePeriod").and_then(period_range)),
        Composition => json.member("date").and_then(Value::as_str).and_then(date_range),
        Consent => json.member("dateTime").and_then(Value::as_str).and_then(date_range),
        Condition => json.member("recordedDate").and_then(Value::as_str).and_then(date_range),
        Bundle => json.member("timestamp").and_then(Value::as_str).and_then(date_range),
        AuditEvent => json.member("recorded").and_then(Value::as_str).and_then(date_range),
        Patient | Practitioner | Organization => None,
    };
    if let Some((start, end)) = date {
        facts.push(IndexFact::Date { param: date_param, start, end });
    }
    facts
}

fn identifier_facts<'a>(identifiers: impl Iterator<Item = &'a Value>, facts: &mut Vec<IndexFact>) {
    for identifier in identifiers {
        if let Some(value) = identifier.member("value").and_then(Value::as_str) {
            let system = identifier.member("system").and_then(Value::as_str).map(str::to_owned);
            facts.push(IndexFact::Token { param: "identifier", system, value: value.to_owned() });
        }
    }
}

fn period_range(period: &Value) -> Option<(i64, i64)> {
    let start = period.member("start").and_then(Value::as_str).and_then(date_range).map(|r| r.0);
    let end = period.member("end").and_then(Value::as_str).and_then(date_range).map(|r| r.1);
    if start.is_none() && end.is_none() {
        return None;
    }
    // An open end means the period is ongoing.
    Some((start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)))
}

/// The inclusive range of epoch seconds that a FHIR date, dateTime or instant covers, at its
/// precision: `2026` is the whole year, `2026-03-02` the whole (UTC) day.
pub fn date_range(text: &str) -> Option<(i64, i64)> {
    let day_start = |date: NaiveDate| Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)).timestamp();
    match text.len() {
        4 => {
            let year: i32 = text.parse().ok()?;
            let start = NaiveDate::from_ymd_opt(year, 1, 1)?;
            let next = NaiveDate::from_ymd_opt(year + 1, 1, 1)?;
            Some((day_start(start), day_start(next) - 1))
        }
        7 => {
            let start = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
            let next = if start.month() == 12 {
                NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)?
            };
            Some((day_start(start), day_start(next) - 1))
        }
        10 => {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            Some((day_start(date), day_start(date) + 86_399))
        }
        _ => {
            let instant = DateTime::parse_from_rfc3339(text)
                .map(|d| d.timestamp())
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").map(|d| d.and_utc().timestamp()))
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").map(|d| d.and_utc().timestamp()))
                .ok()?;
            Some((instant, instant))
        }
    }
}

/// A date search's comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatePrefix {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed date search value: the prefix and the inclusive range the value covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateQuery {
    pub prefix: DatePrefix,
    pub start: i64,
    pub end: i64,
}

impl DateQuery {
    pub fn parse(value: &str) -> Option<DateQuery> {
        let (prefix, rest) = match value.get(..2) {
            Some("eq") => (DatePrefix::Eq, &value[2..]),
            Some("ne") => (DatePrefix::Ne, &value[2..]),
            Some("lt") => (DatePrefix::Lt, &value[2..]),
            Some("le") => (DatePrefix::Le, &value[2..]),
            Some("gt") => (DatePrefix::Gt, &value[2..]),
            Some("ge") => (DatePrefix::Ge, &value[2..]),
            _ => (DatePrefix::Eq, value),
        };
        let (start, end) = date_range(rest)?;
        Some(DateQuery { prefix, start, end })
    }

    /// Whether a resource whose date covers `[start, end]` matches, after FHIR's rules for
    /// ranges: `eq` means the value's range contains the resource's, `lt` that the resource's
    /// range reaches below the value, and so on.
    pub fn matches(&self, start: i64, end: i64) -> bool {
        match self.prefix {
            DatePrefix::Eq => start >= self.start && end <= self.end,
            DatePrefix::Ne => !(start >= self.start && end <= self.end),
            DatePrefix::Lt => start < self.start,
            DatePrefix::Le => start <= self.end,
            DatePrefix::Gt => end > self.end,
            DatePrefix::Ge => end >= self.start,
        }
    }
}

/// A token search value: `system|value`, `|value` (no system), `value` (any system).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenQuery {
    AnySystem(String),
    NoSystem(String),
    System { system: String, value: String },
}

impl TokenQuery {
    /// `None` for forms an HMAC index cannot answer (`system|` alone, empty values).
    pub fn parse(text: &str) -> Option<TokenQuery> {
        match text.split_once('|') {
            None if !text.is_empty() => Some(TokenQuery::AnySystem(text.to_owned())),
            Some(("", value)) if !value.is_empty() => Some(TokenQuery::NoSystem(value.to_owned())),
            Some((system, value)) if !system.is_empty() && !value.is_empty() => {
                Some(TokenQuery::System { system: system.to_owned(), value: value.to_owned() })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn date_ranges_follow_precision() {
        let (s, e) = date_range("2026").unwrap();
        assert_eq!(e - s + 1, 365 * 86_400);
        let (s, e) = date_range("2024-02").unwrap();
        assert_eq!(e - s + 1, 29 * 86_400);
        let (s, e) = date_range("2026-03-02").unwrap();
        assert_eq!(e - s + 1, 86_400);
        let (s, e) = date_range("2026-03-02T14:00:00+02:00").unwrap();
        assert_eq!(s, e);
        assert_eq!(s, date_range("2026-03-02T12:00:00Z").unwrap().0);
        assert!(date_range("2026-13-01").is_none());
        assert!(date_range("yesterday").is_none());
    }

    #[test]
    fn date_prefixes_compare_ranges() {
        let day = date_range("2026-03-02").unwrap();
        let q = |s: &str| DateQuery::parse(s).unwrap();
        assert!(q("2026-03").matches(day.0, day.1));
        assert!(!q("2026-04").matches(day.0, day.1));
        assert!(q("lt2026-03-03").matches(day.0, day.1));
        assert!(!q("lt2026-03-02").matches(day.0, day.1));
        assert!(q("ge2026-03-02").matches(day.0, day.1));
        assert!(q("gt2026-03-01").matches(day.0, day.1));
        assert!(!q("gt2026-03-02").matches(day.0, day.1));
        assert!(q("le2026-03-02").matches(day.0, day.1));
        assert!(q("ne2026-03-01").matches(day.0, day.1));
        assert!(DateQuery::parse("xx2026").is_none());
    }

    #[test]
    fn tokens_parse_every_form() {
        assert_eq!(TokenQuery::parse("a"), Some(TokenQuery::AnySystem("a".into())));
        assert_eq!(TokenQuery::parse("|a"), Some(TokenQuery::NoSystem("a".into())));
        assert_eq!(TokenQuery::parse("s|a"), Some(TokenQuery::System { system: "s".into(), value: "a".into() }));
        assert_eq!(TokenQuery::parse("s|"), None);
        assert_eq!(TokenQuery::parse(""), None);
    }

    #[test]
    fn facts_cover_identifiers_and_dates() {
        let encounter = json!({"identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"}],
            "period": {"start": "2026-01-10"}});
        let facts = index_facts(ResourceType::Encounter, encounter.as_object().unwrap());
        assert_eq!(facts.len(), 2);
        assert!(matches!(facts[1], IndexFact::Date { end: i64::MAX, .. }));
        let patient = json!({"name": [{"family": "Virtanen"}], "birthDate": "1952-10-13"});
        assert!(
            index_facts(ResourceType::Patient, patient.as_object().unwrap()).is_empty(),
            "names and birth dates are never indexed"
        );
    }
}
