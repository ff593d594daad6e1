//! The end of retention: which patients' records have reached the end of the time the law keeps
//! them. By default 12 years after the date of death, or 120 years after the birth date (read
//! from the HETU) when no date of death is known. Death is known from a `Patient.deceasedDateTime`
//! that a clinic has submitted.

use chrono::{Months, NaiveDate};
use fhir_profiles::Hetu;
use serde_json::Value;

/// The rule, in whole years.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionRule {
    pub years_after_death: u32,
    pub years_after_birth: u32,
}

impl Default for RetentionRule {
    fn default() -> Self {
        RetentionRule { years_after_death: 12, years_after_birth: 120 }
    }
}

/// What a Patient resource tells of the end of its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Kept until this day.
    Until(NaiveDate),
    /// Neither a date of death nor a HETU with a birth date: kept.
    Unknown,
}

impl RetentionRule {
    /// The end of retention of the patient `patient` (a stored Patient resource).
    pub fn of(&self, patient: &Value) -> Retention {
        let death = patient["deceasedDateTime"].as_str().and_then(|d| d.get(..10)).and_then(|d| d.parse().ok());
        let years = |date: NaiveDate, years: u32| date.checked_add_months(Months::new(years.saturating_mul(12)));
        if let Some(end) = death.and_then(|death| years(death, self.years_after_death)) {
            return Retention::Until(end);
        }
        let birth = patient["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["system"] == "urn:oid:1.2.246.21")
            .find_map(|i| Hetu::parse(i["value"].as_str()?).ok()?.birth_date());
        match birth.and_then(|birth| years(birth, self.years_after_birth)) {
            Some(end) => Retention::Until(end),
            None => Retention::Unknown,
        }
    }

    /// Whether the patient's records are past retention on `today`.
    pub fn past(&self, patient: &Value, today: NaiveDate) -> bool {
        matches!(self.of(patient), Retention::Until(end) if end < today)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient(hetu: &str, died: Option<&str>) -> Value {
        let mut patient =
            json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": hetu}]});
        if let Some(died) = died {
            patient["deceasedDateTime"] = died.into();
        }
        patient
    }

    #[test]
    fn twelve_years_after_death_or_a_hundred_and_twenty_after_birth() {
        let rule = RetentionRule::default();
        let today: NaiveDate = "2026-12-04".parse().unwrap();
        assert!(rule.past(&patient("131052-308T", Some("2013-12-03T10:00:00+02:00")), today), "died 13 years ago");
        assert!(!rule.past(&patient("131052-308T", Some("2015-12-04")), today), "died 11 years ago");
        assert_eq!(
            rule.of(&patient("131052-308T", Some("2014-12-04"))),
            Retention::Until("2026-12-04".parse().unwrap())
        );
        assert!(!rule.past(&patient("131052-308T", Some("2014-12-04")), today), "the last day is kept");
        // No date of death: 120 years from the birth date in the HETU (1952: kept; 1899: past).
        assert!(!rule.past(&patient("131052-308T", None), today));
        assert_eq!(rule.of(&patient("010199+0022", None)), Retention::Until("2019-01-01".parse().unwrap()));
        assert!(rule.past(&patient("010199+0022", None), today));
        // Neither: kept.
        assert_eq!(rule.of(&json!({"resourceType": "Patient"})), Retention::Unknown);
        assert!(!rule.past(&json!({"resourceType": "Patient"}), today));
        let short = RetentionRule { years_after_death: 1, years_after_birth: 120 };
        assert!(short.past(&patient("131052-308T", Some("2025-01-01")), today));
    }
}
