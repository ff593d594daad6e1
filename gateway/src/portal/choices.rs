//! A patient's choices in plain language, and the FHIR Consents that express them: the portal
//! writes exactly the shapes the API documents (`docs/api.md`, "Patient choices"), so that a
//! choice made here goes through the same validation and the same enforcement as one sent by
//! an app, and reads back any Consent in those shapes for the list of restrictions.

use consent::Role;
use serde_json::{json, Value};

const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const URI: &str = "urn:ietf:rfc:3986";
const TERHIKKI: &str = "urn:oid:1.2.246.537.26";

/// One choice a patient can make in the portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Nobody at this organisation (OID) receives the patient's data.
    DenyOrganisation(String),
    /// Nobody receives the data of this service event (OID).
    DenyServiceEvent(String),
    /// No professional of this role receives the patient's data.
    DenyRole(Role),
    /// No professional receives the patient's data.
    DenyEveryone,
    /// This practitioner (Terhikki number) does not receive the patient's data.
    DenyPractitioner(String),
    /// This practitioner (Terhikki number) may read the patient's therapy notes.
    PermitPractitioner(String),
    /// Emergency access (break-the-glass) opens nothing of the patient's.
    DenyEmergency,
    /// A Consent in a shape the portal does not write (an app's nested provisions): listed and
    /// withdrawable, described in general terms.
    Other,
}

/// A choice with the dates it holds between, both optional (`YYYY-MM-DD`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restriction {
    pub choice: Choice,
    pub from: Option<String>,
    pub until: Option<String>,
}

fn recipient(system: &str, value: &str) -> Value {
    json!({"role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
           "reference": {"identifier": {"system": system, "value": value}}})
}

impl Restriction {
    /// The FHIR Consent of this restriction for the stored Patient `patient_id`, dated `now`
    /// (an RFC 3339 instant).
    pub fn to_consent(&self, patient_id: &str, now: &str) -> Value {
        let mut provision = match &self.choice {
            Choice::DenyOrganisation(oid) => {
                json!({"type": "deny", "actor": [recipient(URI, &format!("urn:oid:{oid}"))]})
            }
            Choice::DenyServiceEvent(oid) => json!({"type": "deny", "data": [{"meaning": "related",
                "reference": {"identifier": {"system": URI, "value": format!("urn:oid:{oid}")}}}]}),
            Choice::DenyRole(role) => json!({"type": "deny", "actor": [{"role": {"coding": [
                {"system": Role::CODE_SYSTEM, "code": role.as_str()}]}, "reference": {"display": role.as_str()}}]}),
            Choice::DenyEveryone | Choice::Other => json!({"type": "deny"}),
            Choice::DenyPractitioner(terhikki) => json!({"type": "deny", "actor": [recipient(TERHIKKI, terhikki)]}),
            Choice::PermitPractitioner(terhikki) => json!({"type": "permit", "actor": [recipient(TERHIKKI, terhikki)]}),
            Choice::DenyEmergency => json!({"type": "deny", "purpose": [{"system": ACT_REASON, "code": "ETREAT"}]}),
        };
        let mut period = serde_json::Map::new();
        if let Some(from) = &self.from {
            period.insert("start".into(), json!(from));
        }
        if let Some(until) = &self.until {
            period.insert("end".into(), json!(until));
        }
        if !period.is_empty() {
            provision["period"] = Value::Object(period);
        }
        let policy = if matches!(self.choice, Choice::PermitPractitioner(_)) { "OPTIN" } else { "OPTOUT" };
        json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{patient_id}")},
            "dateTime": now,
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": policy}]},
            "provision": provision,
        })
    }

    /// Reads an active Consent's top provision back into a restriction; `None` for an inactive
    /// one (withdrawn).
    pub fn from_consent(consent: &Value) -> Option<Restriction> {
        if consent["status"] != "active" {
            return None;
        }
        let provision = &consent["provision"];
        let period = &provision["period"];
        let date = |key: &str| period[key].as_str().map(|d| d.chars().take(10).collect());
        let (from, until) = (date("start"), date("end"));
        let choice = Self::choice_of(provision).unwrap_or(Choice::Other);
        Some(Restriction { choice, from, until })
    }

    fn choice_of(provision: &Value) -> Option<Choice> {
        let object = provision.as_object()?;
        // Nested provisions are an app's own; the portal describes only the shapes it writes.
        if object.keys().any(|k| !matches!(k.as_str(), "type" | "actor" | "data" | "purpose" | "period")) {
            return None;
        }
        let deny = provision["type"] == "deny";
        let identifier = |value: &Value| -> Option<(String, String)> {
            let id = &value["reference"]["identifier"];
            Some((id["system"].as_str()?.to_owned(), id["value"].as_str()?.to_owned()))
        };
        let parts = ["actor", "data", "purpose"].map(|k| provision.get(k).and_then(Value::as_array));
        match parts {
            [None, None, None] if deny => Some(Choice::DenyEveryone),
            [Some(actors), None, None] if actors.len() == 1 => {
                let actor = &actors[0];
                match identifier(actor) {
                    Some((system, value)) if system == URI && deny => {
                        value.strip_prefix("urn:oid:").map(|oid| Choice::DenyOrganisation(oid.to_owned()))
                    }
                    Some((system, value)) if system == TERHIKKI => {
                        Some(if deny { Choice::DenyPractitioner(value) } else { Choice::PermitPractitioner(value) })
                    }
                    None if deny => {
                        actor["role"]["coding"][0]["code"].as_str().and_then(Role::parse).map(Choice::DenyRole)
                    }
                    _ => None,
                }
            }
            [None, Some(data), None] if deny && data.len() == 1 => {
                identifier(&data[0]).filter(|(system, _)| system == URI).and_then(|(_, value)| {
                    value.strip_prefix("urn:oid:").map(|oid| Choice::DenyServiceEvent(oid.to_owned()))
                })
            }
            [None, None, Some(purposes)] if deny => {
                purposes.iter().any(|p| p["code"] == "ETREAT").then_some(Choice::DenyEmergency)
            }
            _ => None,
        }
    }

    /// Whether this restriction keeps a document of service event `service_event` from anyone:
    /// every denial but a service event's covers all of the patient's documents.
    pub fn covers(&self, service_event: Option<&str>) -> bool {
        match &self.choice {
            Choice::DenyServiceEvent(oid) => service_event == Some(oid.as_str()),
            Choice::PermitPractitioner(_) => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_reads_back_as_itself_and_passes_the_consent_crate() {
        let choices = [
            Choice::DenyOrganisation("1.2.246.10.87654321.10.1".into()),
            Choice::DenyServiceEvent("1.2.246.10.12345678.10.1.77.1".into()),
            Choice::DenyRole(Role::Physician),
            Choice::DenyEveryone,
            Choice::DenyPractitioner("10012345678".into()),
            Choice::PermitPractitioner("10012345678".into()),
            Choice::DenyEmergency,
        ];
        for choice in choices {
            for (from, until) in [(None, None), (Some("2026-01-01".to_owned()), Some("2027-01-01".to_owned()))] {
                let restriction = Restriction { choice: choice.clone(), from, until };
                let consent = restriction.to_consent("p-1", "2026-12-03T10:00:00Z");
                consent::PatientConsent::from_fhir(&consent).unwrap_or_else(|e| panic!("{choice:?}: {e}"));
                assert_eq!(Restriction::from_consent(&consent), Some(restriction));
            }
        }
        let mut withdrawn = Restriction { choice: Choice::DenyEveryone, from: None, until: None }.to_consent("p", "x");
        withdrawn["status"] = json!("inactive");
        assert_eq!(Restriction::from_consent(&withdrawn), None);
        let nested = json!({"status": "active", "provision": {"type": "permit", "provision": [{"type": "deny"}]}});
        assert_eq!(Restriction::from_consent(&nested).map(|r| r.choice), Some(Choice::Other));
    }
}
