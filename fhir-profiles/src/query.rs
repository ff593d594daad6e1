//! A search's query string, read: the filters it asks for on which search parameters, and what
//! it includes. Pure: what the values mean in the database (pseudonyms, patients) is the
//! gateway's to work out. Anything not understood is refused, never ignored: a filter silently
//! dropped would widen what a search returns.

use crate::error::printable_name;
use crate::hetu::HETU_SYSTEM;
use crate::parse::{is_valid_id, stored_patient_id};
use crate::resource_type::ResourceType;
use crate::search::{search_params, DateQuery, ParamKind, TokenQuery};

/// Why a query was refused (HTTP 400). The message names parameters, never their values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct QueryError(String);

/// One parameter of a search, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Ids(Vec<String>),
    Tokens { param: &'static str, values: Vec<TokenQuery> },
    PatientIds(Vec<String>),
    PatientIdentifiers(Vec<TokenQuery>),
    Dates { param: &'static str, queries: Vec<DateQuery> },
    LastUpdated(Vec<DateQuery>),
}

/// What a search adds to its matches: `_include={type}:patient` (the matches' Patients) and, on
/// Patient, `_revinclude={type}:patient` (the resources of those types about the matched
/// patients). Nothing else is supported, so nothing else can be asked of hidden data.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Includes {
    pub patients: bool,
    pub reverse: Vec<ResourceType>,
}

/// A search request, read but not yet resolved against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub filters: Vec<Filter>,
    pub includes: Includes,
}

/// Parameters that shape the answer rather than select resources.
const CONTROL_PARAMS: [&str; 6] = ["_count", "_offset", "_format", "_pretty", "_include", "_revinclude"];

impl SearchQuery {
    pub fn parse(resource_type: ResourceType, params: &[(String, String)]) -> Result<SearchQuery, QueryError> {
        Ok(SearchQuery { filters: filters(resource_type, params)?, includes: includes(resource_type, params)? })
    }

    /// How many ids, identifiers and patients the filters name together (0: none).
    pub fn named(&self) -> usize {
        self.filters
            .iter()
            .map(|filter| match filter {
                Filter::Ids(ids) | Filter::PatientIds(ids) => ids.len().max(1),
                Filter::Tokens { values, .. } | Filter::PatientIdentifiers(values) => values.len(),
                Filter::Dates { .. } | Filter::LastUpdated(_) => 0,
            })
            .sum()
    }

    /// The HETUs an `identifier` filter names.
    pub fn hetus(&self) -> Vec<String> {
        self.filters
            .iter()
            .filter_map(|filter| match filter {
                Filter::Tokens { values, .. } => Some(values.iter().filter_map(|v| match v {
                    TokenQuery::System { system, value } if system == HETU_SYSTEM => Some(value.clone()),
                    _ => None,
                })),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

fn refused(message: String) -> QueryError {
    QueryError(message)
}

fn filters(resource_type: ResourceType, params: &[(String, String)]) -> Result<Vec<Filter>, QueryError> {
    let supported = search_params(resource_type);
    let mut filters = Vec::new();
    for (raw_name, value) in params {
        if CONTROL_PARAMS.contains(&raw_name.as_str()) {
            continue;
        }
        let printable = printable_name(raw_name);
        let (name, modifier) = match raw_name.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (raw_name.as_str(), None),
        };
        // Both would test values of resources other than the ones returned, which the caller may
        // not be allowed to see; refused rather than answered from hidden data.
        if name.contains('.') {
            return Err(refused(format!("chained search ('{printable}') is not supported")));
        }
        if name == "_has" {
            return Err(refused("reverse chaining (_has) is not supported".into()));
        }
        let Some(param) = supported.iter().find(|p| p.name == name) else {
            return Err(refused(format!(
                "unknown or unsupported search parameter '{printable}' for {resource_type}; supported: {}",
                supported.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            )));
        };
        let values: Vec<&str> = value.split(',').collect();
        if values.iter().any(|v| v.is_empty()) {
            return Err(refused(format!("search parameter '{printable}' has an empty value")));
        }
        let filter = match (param.name, param.kind, modifier) {
            ("_id", _, None) => {
                Filter::Ids(values.iter().filter(|v| is_valid_id(v)).map(|v| (*v).to_owned()).collect())
            }
            ("_lastUpdated", _, None) => Filter::LastUpdated(date_queries(&values, &printable)?),
            (_, ParamKind::Date, None) => {
                Filter::Dates { param: param.name, queries: date_queries(&values, &printable)? }
            }
            (_, ParamKind::Token, None) => {
                Filter::Tokens { param: param.name, values: token_queries(&values, &printable)? }
            }
            (_, ParamKind::Reference, None) => Filter::PatientIds(
                values
                    .iter()
                    .map(|v| {
                        let id = stored_patient_id(v).unwrap_or(v);
                        if is_valid_id(id) {
                            Ok(id.to_owned())
                        } else {
                            Err(refused(format!("'{printable}' takes Patient/{{id}} or {{id}}")))
                        }
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (_, ParamKind::Reference, Some("identifier")) => {
                Filter::PatientIdentifiers(token_queries(&values, &printable)?)
            }
            _ => return Err(refused(format!("modifier in '{printable}' is not supported"))),
        };
        filters.push(filter);
    }
    Ok(filters)
}

fn date_queries(values: &[&str], name: &str) -> Result<Vec<DateQuery>, QueryError> {
    values
        .iter()
        .map(|v| {
            DateQuery::parse(v).ok_or_else(|| {
                refused(format!("'{name}' takes a FHIR date with an optional prefix (eq, ne, lt, le, gt, ge)"))
            })
        })
        .collect()
}

fn token_queries(values: &[&str], name: &str) -> Result<Vec<TokenQuery>, QueryError> {
    values
        .iter()
        .map(|v| TokenQuery::parse(v).ok_or_else(|| refused(format!("'{name}' takes system|value, |value or value"))))
        .collect()
}

fn includes(resource_type: ResourceType, params: &[(String, String)]) -> Result<Includes, QueryError> {
    let mut includes = Includes::default();
    for (name, value) in params {
        let reverse = match name.as_str() {
            "_include" => false,
            "_revinclude" => true,
            other if other.starts_with("_include:") || other.starts_with("_revinclude:") => {
                return Err(refused(format!("'{}' is not supported: includes do not iterate", printable_name(other))))
            }
            _ => continue,
        };
        let not_supported = || {
            refused(if reverse {
                "_revinclude takes {type}:patient, on a Patient search".into()
            } else {
                format!("_include takes {resource_type}:patient")
            })
        };
        let (source, param) = value.split_once(':').ok_or_else(not_supported)?;
        let source: ResourceType = source.parse().map_err(|()| not_supported())?;
        let patient_param = search_params(source).iter().any(|p| p.name == "patient" && p.kind == ParamKind::Reference);
        if param != "patient" || !patient_param {
            return Err(not_supported());
        }
        if reverse {
            if resource_type != ResourceType::Patient {
                return Err(not_supported());
            }
            if !includes.reverse.contains(&source) {
                includes.reverse.push(source);
            }
        } else {
            if source != resource_type {
                return Err(not_supported());
            }
            includes.patients = true;
        }
    }
    Ok(includes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(resource_type: ResourceType, text: &[(&str, &str)]) -> Result<SearchQuery, QueryError> {
        let params: Vec<(String, String)> = text.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        SearchQuery::parse(resource_type, &params)
    }

    #[test]
    fn what_a_search_names_is_counted() {
        let read = query(
            ResourceType::Encounter,
            &[("patient", "Patient/a,b"), ("date", "ge2026-01-01"), ("_count", "5"), ("_include", "Encounter:patient")],
        )
        .unwrap();
        assert_eq!(read.named(), 2);
        assert!(read.includes.patients);
        let hetu = query(ResourceType::Patient, &[("identifier", "urn:oid:1.2.246.21|010101A900R,other|x")]).unwrap();
        assert_eq!(hetu.hetus(), vec!["010101A900R".to_owned()]);
        assert_eq!(query(ResourceType::Encounter, &[("date", "2026")]).unwrap().named(), 0);
    }

    #[test]
    fn what_is_not_understood_is_refused_without_its_value() {
        for (name, value) in [
            ("subject.name", "x"),
            ("_has", "Observation:patient:code=1"),
            ("name", "010101A900R"),
            ("patient", "Patient/<script>"),
            ("date", "010101A900R"),
            ("identifier", ""),
            ("patient:missing", "true"),
            ("_include:iterate", "Encounter:patient"),
        ] {
            let error = query(ResourceType::Encounter, &[(name, value)]).unwrap_err().to_string();
            assert!(!error.contains("010101A900R") && !error.contains('<'), "{name}: {error}");
        }
        assert!(query(ResourceType::Encounter, &[("_revinclude", "Encounter:patient")]).is_err());
        // A parameter named with data is refused without naming it.
        let error = query(ResourceType::Patient, &[("131052-308T", "x")]).unwrap_err().to_string();
        assert!(!error.contains("131052"), "{error}");
        assert!(query(ResourceType::Encounter, &[("_include", "Patient:link")]).is_err());
    }
}
