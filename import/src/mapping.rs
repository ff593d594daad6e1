//! How an old system's CSV export becomes v1 records: a mapping file (TOML) names, for each field
//! of the record contract, the column that holds it, or a value every row shares; diagnoses and
//! assessments come from repeated columns. `docs/import.md` shows one.
//!
//! ```toml
//! [fields]
//! record_id = "VisitId"
//! "organization.oid" = { value = "1.2.246.10.12345678.10.1" }
//! "patient.hetu" = "SSN"
//! # …
//! [[diagnoses]]
//! icd10 = "Dg1"
//! primary = true
//! [[assessments]]
//! instrument = "Scale1"
//! score = "Score1"
//! date = "ScaleDate1"
//! ```
//!
//! An empty cell is a field left out. `patient.given` and `therapist.given` hold the given names
//! separated by spaces; `session.minutes` and scores are numbers. The gateway checks every record
//! as it checks one sent alone: the mapping only moves values into place.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::ImportError;

/// Every field a mapping may fill, and whether a record must have it.
const FIELDS: [(&str, bool); 23] = [
    ("record_id", true),
    ("organization.oid", true),
    ("organization.name", true),
    ("patient.hetu", true),
    ("patient.given", true),
    ("patient.family", true),
    ("patient.birth_date", false),
    ("patient.gender", false),
    ("therapist.terhikki", true),
    ("therapist.given", true),
    ("therapist.family", true),
    ("therapist.profession", true),
    ("service_event.oid", true),
    ("service_event.start", true),
    ("service_event.end", false),
    ("session.start", true),
    ("session.minutes", true),
    ("session.modality", true),
    ("session.setting", true),
    ("note.kind", true),
    ("note.text", true),
    ("risk.suicide", false),
    ("plan", false),
];

/// Where a field's value comes from.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum Cell {
    /// A column of the export, by its header.
    Column(String),
    /// The same value on every row.
    Value { value: String },
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DiagnosisColumns {
    pub icd10: String,
    /// Whether this column holds the primary diagnosis.
    #[serde(default)]
    pub primary: bool,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AssessmentColumns {
    pub instrument: String,
    pub score: String,
    pub date: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub fields: BTreeMap<String, Cell>,
    #[serde(default)]
    pub diagnoses: Vec<DiagnosisColumns>,
    #[serde(default)]
    pub assessments: Vec<AssessmentColumns>,
}

/// The mapping of the exports `vaitio dev generate --format csv` writes.
pub const GENERATED: &str = include_str!("../mappings/generated.toml");

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ImportError::file(path, e))?;
        Mapping::parse(&text).map_err(|e| ImportError::file(path, e))
    }

    pub fn parse(text: &str) -> Result<Mapping, String> {
        let mapping: Mapping = toml::from_str(text).map_err(|e| format!("not a column mapping: {e}"))?;
        for name in mapping.fields.keys() {
            if !FIELDS.iter().any(|(field, _)| field == name) {
                return Err(format!("'{name}' is not a field of the record contract"));
            }
        }
        let missing: Vec<&str> = FIELDS
            .iter()
            .filter(|(field, required)| *required && !mapping.fields.contains_key(*field))
            .map(|(field, _)| *field)
            .collect();
        if !missing.is_empty() {
            return Err(format!("the mapping gives no column for {}", missing.join(", ")));
        }
        Ok(mapping)
    }

    /// Every column the mapping reads, in its order.
    pub fn columns(&self) -> Vec<&str> {
        let fields = FIELDS.iter().filter_map(|(field, _)| match self.fields.get(*field) {
            Some(Cell::Column(column)) => Some(column.as_str()),
            _ => None,
        });
        let diagnoses = self.diagnoses.iter().map(|d| d.icd10.as_str());
        let assessments =
            self.assessments.iter().flat_map(|a| [a.instrument.as_str(), a.score.as_str(), a.date.as_str()]);
        fields.chain(diagnoses).chain(assessments).collect()
    }

    /// The mapping bound to an export's header: each column's position, or which are missing.
    pub fn bind(&self, header: &csv::StringRecord) -> Result<Bound, ImportError> {
        let mut positions = BTreeMap::new();
        let mut missing = Vec::new();
        for column in self.columns() {
            match header.iter().position(|name| name.trim() == column) {
                Some(at) => {
                    positions.insert(column.to_owned(), at);
                }
                None => missing.push(column),
            }
        }
        if !missing.is_empty() {
            return Err(ImportError::Usage(format!("the export has no column {}", missing.join(", "))));
        }
        Ok(Bound { mapping: self.clone(), positions })
    }

    /// A record's values in this mapping's columns (the generator's CSV): the inverse of
    /// [`Bound::record`] for a mapping without shared values.
    pub fn row(&self, record: &Value) -> Vec<String> {
        let text = |value: &Value| match value {
            Value::Null => String::new(),
            Value::String(text) => text.clone(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
            other => other.to_string(),
        };
        let mut row: Vec<String> = FIELDS
            .iter()
            .filter(|(field, _)| matches!(self.fields.get(*field), Some(Cell::Column(_))))
            .map(|(field, _)| text(field.split('.').fold(record, |value, part| &value[part])))
            .collect();
        for (n, _) in self.diagnoses.iter().enumerate() {
            row.push(text(&record["diagnoses"][n]["icd10"]));
        }
        for (n, _) in self.assessments.iter().enumerate() {
            let assessment = &record["assessments"][n];
            row.extend([text(&assessment["instrument"]), text(&assessment["score"]), text(&assessment["date"])]);
        }
        row
    }
}

/// A mapping and the positions of its columns in one export.
pub struct Bound {
    mapping: Mapping,
    positions: BTreeMap<String, usize>,
}

impl Bound {
    fn cell<'r>(&self, row: &'r csv::StringRecord, column: &str) -> Option<&'r str> {
        let at = *self.positions.get(column)?;
        row.get(at).map(str::trim).filter(|cell| !cell.is_empty())
    }

    /// The record a row holds, as the contract's JSON.
    pub fn record(&self, row: &csv::StringRecord) -> Value {
        let mut record = Map::new();
        record.insert("schema".into(), json!("vaitio.psychotherapy-record/v1"));
        for (field, cell) in &self.mapping.fields {
            let value = match cell {
                Cell::Value { value } => Some(value.as_str()),
                Cell::Column(column) => self.cell(row, column),
            };
            let Some(value) = value else { continue };
            let value = match field.as_str() {
                "patient.given" | "therapist.given" => json!(value.split_whitespace().collect::<Vec<_>>()),
                "session.minutes" => number(value),
                _ => json!(value),
            };
            let mut at = &mut record;
            let mut parts = field.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    at.insert(part.to_owned(), value);
                    break;
                }
                let inner = at.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
                match inner {
                    Value::Object(object) => at = object,
                    _ => break,
                }
            }
        }
        let diagnoses: Vec<Value> = self
            .mapping
            .diagnoses
            .iter()
            .filter_map(|d| self.cell(row, &d.icd10).map(|code| json!({"icd10": code, "primary": d.primary})))
            .collect();
        if !diagnoses.is_empty() {
            record.insert("diagnoses".into(), Value::Array(diagnoses));
        }
        let assessments: Vec<Value> = self
            .mapping
            .assessments
            .iter()
            .filter_map(|a| {
                let instrument = self.cell(row, &a.instrument)?;
                let score = self.cell(row, &a.score).map_or(Value::Null, number);
                let date = self.cell(row, &a.date).map_or(Value::Null, |d| json!(d));
                Some(json!({"instrument": instrument, "score": score, "date": date}))
            })
            .collect();
        if !assessments.is_empty() {
            record.insert("assessments".into(), Value::Array(assessments));
        }
        Value::Object(record)
    }
}

/// A whole number where the cell holds one; otherwise the text, for the gateway to refuse.
fn number(cell: &str) -> Value {
    cell.parse::<i64>().map_or_else(|_| json!(cell), |n| json!(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_mapping_reads_and_a_bad_mapping_is_refused_naming_why() {
        let mapping = Mapping::parse(GENERATED).unwrap();
        assert_eq!(mapping.diagnoses.len(), 2);
        assert!(Mapping::parse("[fields]\nrecord_id = \"Id\"\n").unwrap_err().contains("patient.hetu"));
        let unknown = format!("{GENERATED}\n[fields.extra]\nvalue = \"x\"\n");
        assert!(Mapping::parse(&unknown).is_err());
    }

    #[test]
    fn a_row_becomes_the_record_it_was_made_from() {
        let mapping = Mapping::parse(GENERATED).unwrap();
        let record: Value =
            serde_json::from_str(include_str!("../../fhir-profiles/schemas/psychotherapy-record-v1.example.json"))
                .unwrap();
        let header = csv::StringRecord::from(mapping.columns());
        let row = csv::StringRecord::from(mapping.row(&record));
        let read = mapping.bind(&header).unwrap().record(&row);
        // The example's service event has "end": null, which a blank cell leaves out.
        let mut expected = record.clone();
        expected["service_event"].as_object_mut().unwrap().remove("end");
        assert_eq!(read, expected);
        let short = csv::StringRecord::from(vec!["Id"]);
        assert!(mapping.bind(&short).err().unwrap().to_string().contains("no column"));
    }
}
