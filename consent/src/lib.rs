//! The policy decision point.
//!
//! Every path by which clinical data leaves the gateway asks [`decide`] first. The crate is pure
//! (no I/O, no HTTP, no SQL) so that the rules can be tested and fuzzed alone.
//!
//! The rules here are the deployment's defaults before any patient choice, as the design brief
//! states them:
//!
//! 1. Nobody without a verified identity gets anything.
//! 2. Administrators and auditors operate and inspect the system; they never receive a patient's
//!    clinical content (directory resources, Practitioner and Organization, are not clinical).
//! 3. A patient receives their own data and nobody else's.
//! 4. Content labelled `PSYTHPN` (psychotherapy note) or confidentiality `V` is released only to
//!    the practitioner who wrote it, in the organisation that wrote it. Break-the-glass does not
//!    open it.
//! 5. Other professionals acting for treatment (`TREAT`, or `ETREAT`/`BTG` with a stated reason,
//!    which is flagged) receive the rest of a patient's data.
//!
//! The patient's own Consents (denials override permits) are combined on top of these defaults
//! by the consent capability; the shape of the call stays the same.

use std::fmt;

mod labels;
mod principal;

pub use labels::SecurityLabel;
pub use principal::{Principal, Professional, Purpose, Role};

/// What is about to be released: the metadata kept in clear beside each encrypted resource, so
/// that a decision never needs the clinical payload.
#[derive(Clone, Debug)]
pub struct ResourceMeta<'a> {
    pub resource_type: &'a str,
    /// The patient pseudonym (keyed HMAC); `None` for resources that belong to no patient
    /// (Practitioner, Organization).
    pub patient: Option<&'a str>,
    pub security_labels: &'a [SecurityLabel],
    /// The organisation OID and the practitioner (Terhikki number) that wrote this version.
    pub author_organisation: Option<&'a str>,
    pub author_practitioner: Option<&'a str>,
}

/// Which rule decided; recorded in the audit log, never shown to the requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    NoIdentity,
    DirectoryResource,
    StaffSeeNoClinicalContent,
    OwnData,
    AnotherPatientsData,
    NoteAuthor,
    NoteRestrictedToAuthor,
    Treatment,
    BreakTheGlass,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Permit(Rule),
    Deny(Rule),
}

impl Decision {
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit(_))
    }

    pub fn rule(&self) -> Rule {
        match self {
            Decision::Permit(rule) | Decision::Deny(rule) => *rule,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Decides whether `principal` may receive the resource described by `meta`.
pub fn decide(principal: &Principal, meta: &ResourceMeta<'_>) -> Decision {
    use Decision::{Deny, Permit};
    let Some(patient) = meta.patient else {
        return match principal {
            Principal::Anonymous => Deny(Rule::NoIdentity),
            _ => Permit(Rule::DirectoryResource),
        };
    };
    match principal {
        Principal::Anonymous => Deny(Rule::NoIdentity),
        Principal::Auditor { .. } | Principal::Administrator { .. } => Deny(Rule::StaffSeeNoClinicalContent),
        Principal::Patient { pseudonym } => {
            if pseudonym == patient {
                Permit(Rule::OwnData)
            } else {
                Deny(Rule::AnotherPatientsData)
            }
        }
        Principal::Professional(professional) => {
            let restricted = meta
                .security_labels
                .iter()
                .any(|label| matches!(label, SecurityLabel::PsychotherapyNote | SecurityLabel::VeryRestricted));
            if restricted {
                let author = meta.author_organisation == Some(professional.organisation.as_str())
                    && meta.author_practitioner == Some(professional.practitioner.as_str());
                return if author { Permit(Rule::NoteAuthor) } else { Deny(Rule::NoteRestrictedToAuthor) };
            }
            match professional.purpose {
                Purpose::Treatment => Permit(Rule::Treatment),
                Purpose::EmergencyTreatment | Purpose::BreakTheGlass => Permit(Rule::BreakTheGlass),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "1.2.246.10.12345678.10.1";
    const OTHER_ORG: &str = "1.2.246.10.87654321.10.1";

    fn meta<'a>(patient: Option<&'a str>, labels: &'a [SecurityLabel]) -> ResourceMeta<'a> {
        ResourceMeta {
            resource_type: "Composition",
            patient,
            security_labels: labels,
            author_organisation: Some(ORG),
            author_practitioner: Some("10012345678"),
        }
    }

    fn professional(role: Role, org: &str, practitioner: &str, purpose: Purpose) -> Principal {
        Principal::Professional(Professional {
            practitioner: practitioner.into(),
            role,
            organisation: org.into(),
            purpose,
            reason: (purpose != Purpose::Treatment).then(|| "unconscious patient".into()),
        })
    }

    const NOTE: &[SecurityLabel] = &[SecurityLabel::PsychotherapyNote, SecurityLabel::Restricted];

    #[test]
    fn only_the_authoring_therapist_reads_a_note() {
        let author = professional(Role::Psychotherapist, ORG, "10012345678", Purpose::Treatment);
        assert_eq!(decide(&author, &meta(Some("p1"), NOTE)), Decision::Permit(Rule::NoteAuthor));
        for other in [
            professional(Role::Psychotherapist, ORG, "10099999999", Purpose::Treatment),
            professional(Role::Physician, ORG, "10088888888", Purpose::Treatment),
            professional(Role::Physician, OTHER_ORG, "10088888888", Purpose::Treatment),
            professional(Role::Nurse, ORG, "10077777777", Purpose::BreakTheGlass),
            professional(Role::Psychotherapist, OTHER_ORG, "10012345678", Purpose::Treatment),
        ] {
            assert_eq!(
                decide(&other, &meta(Some("p1"), NOTE)),
                Decision::Deny(Rule::NoteRestrictedToAuthor),
                "{other:?}"
            );
        }
    }

    #[test]
    fn treating_professionals_see_non_note_data_and_break_the_glass_is_marked() {
        let gp = professional(Role::Physician, OTHER_ORG, "10088888888", Purpose::Treatment);
        assert_eq!(decide(&gp, &meta(Some("p1"), &[SecurityLabel::Restricted])), Decision::Permit(Rule::Treatment));
        let emergency = professional(Role::Nurse, OTHER_ORG, "10077777777", Purpose::EmergencyTreatment);
        assert_eq!(decide(&emergency, &meta(Some("p1"), &[])), Decision::Permit(Rule::BreakTheGlass));
    }

    #[test]
    fn patients_see_their_own_data_only() {
        let patient = Principal::Patient { pseudonym: "p1".into() };
        assert!(decide(&patient, &meta(Some("p1"), NOTE)).is_permit());
        assert_eq!(decide(&patient, &meta(Some("p2"), &[])), Decision::Deny(Rule::AnotherPatientsData));
    }

    #[test]
    fn staff_and_strangers_get_no_clinical_content() {
        for principal in [
            Principal::Anonymous,
            Principal::Auditor { subject: "a1".into(), organisation: ORG.into() },
            Principal::Administrator { subject: "admin1".into(), organisation: ORG.into() },
        ] {
            assert!(!decide(&principal, &meta(Some("p1"), &[])).is_permit(), "{principal:?}");
        }
        assert!(!decide(&Principal::Anonymous, &meta(None, &[])).is_permit());
        let admin = Principal::Administrator { subject: "admin1".into(), organisation: ORG.into() };
        assert_eq!(decide(&admin, &meta(None, &[])), Decision::Permit(Rule::DirectoryResource));
    }
}
