use std::fmt;

/// A professional role, as the professional identity provider asserts it in the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Psychotherapist,
    Psychologist,
    Psychiatrist,
    Physician,
    Nurse,
}

impl Role {
    /// The code system of these roles in a Consent's `provision.actor.role` (the names below are
    /// its codes), so a patient can deny a role.
    pub const CODE_SYSTEM: &'static str = "https://fhir.vaitio.fi/CodeSystem/professional-role";

    pub const ALL: [Role; 5] =
        [Role::Psychotherapist, Role::Psychologist, Role::Psychiatrist, Role::Physician, Role::Nurse];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Psychotherapist => "psychotherapist",
            Role::Psychologist => "psychologist",
            Role::Psychiatrist => "psychiatrist",
            Role::Physician => "physician",
            Role::Nurse => "nurse",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// Purpose of use (HL7 v3 ActReason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// `TREAT`
    Treatment,
    /// `ETREAT`: emergency treatment.
    EmergencyTreatment,
    /// `BTG`: break the glass.
    BreakTheGlass,
}

impl Purpose {
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treatment => "TREAT",
            Purpose::EmergencyTreatment => "ETREAT",
            Purpose::BreakTheGlass => "BTG",
        }
    }

    pub fn parse(code: &str) -> Option<Purpose> {
        match code {
            "TREAT" => Some(Purpose::Treatment),
            "ETREAT" => Some(Purpose::EmergencyTreatment),
            "BTG" => Some(Purpose::BreakTheGlass),
            _ => None,
        }
    }

    /// Emergency access needs a stated reason, which is recorded and shown to the patient.
    pub fn needs_reason(self) -> bool {
        self != Purpose::Treatment
    }
}

/// A healthcare professional acting for an organisation, on a connection whose client
/// certificate the token is bound to.
#[derive(Clone, PartialEq, Eq)]
pub struct Professional {
    /// Terhikki (Valvira) registration number.
    pub practitioner: String,
    pub role: Role,
    /// Organisation OID, the same in the token and in the client certificate.
    pub organisation: String,
    pub purpose: Purpose,
    /// The stated reason for emergency access.
    pub reason: Option<String>,
}

/// Who is asking. Built in exactly one place in the gateway, from the TLS connection and the
/// request's token; nothing else constructs a principal from request data.
#[derive(Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nobody: no verified identity came with the request.
    Anonymous,
    Professional(Professional),
    /// A patient, known only by pseudonym: the HETU in the token is turned into it at once.
    Patient {
        /// Their name under the index key version in force.
        pseudonym: String,
        /// Their names under older versions, newest first: their rows may still be filed under
        /// one while a re-index runs, and the audit log keeps them for good.
        earlier: Vec<String>,
    },
    /// Reads the audit log; never clinical content.
    Auditor {
        subject: String,
        organisation: String,
    },
    /// Operates the system as an individual; never clinical content.
    Administrator {
        subject: String,
        organisation: String,
    },
}

impl Principal {
    /// Whether this is the patient named `pseudonym` (under any version of the index key).
    pub fn is_patient(&self, pseudonym: &str) -> bool {
        match self {
            Principal::Patient { pseudonym: current, earlier } => {
                current == pseudonym || earlier.iter().any(|name| name == pseudonym)
            }
            _ => false,
        }
    }

    /// A patient's every name, newest first; `None` for anyone else.
    pub fn own_pseudonyms(&self) -> Option<Vec<String>> {
        match self {
            Principal::Patient { pseudonym, earlier } => {
                Some(std::iter::once(pseudonym).chain(earlier).cloned().collect())
            }
            _ => None,
        }
    }
    /// A short, non-identifying label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Professional(p) => p.role.as_str(),
            Principal::Patient { .. } => "patient",
            Principal::Auditor { .. } => "auditor",
            Principal::Administrator { .. } => "administrator",
        }
    }
}

impl fmt::Debug for Principal {
    // The Debug form names the kind only: principals carry identifiers that logs need not hold.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.kind())
    }
}

impl fmt::Debug for Professional {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Professional({}, {})", self.role.as_str(), self.purpose.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("janitor"), None);
        for purpose in [Purpose::Treatment, Purpose::EmergencyTreatment, Purpose::BreakTheGlass] {
            assert_eq!(Purpose::parse(purpose.code()), Some(purpose));
        }
        assert!(Purpose::BreakTheGlass.needs_reason() && !Purpose::Treatment.needs_reason());
    }

    #[test]
    fn debug_reveals_no_identity() {
        let patient = Principal::Patient { pseudonym: "abc123".into(), earlier: Vec::new() };
        assert_eq!(format!("{patient:?}"), "Principal(patient)");
    }
}
