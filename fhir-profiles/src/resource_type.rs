use std::fmt;
use std::str::FromStr;

/// The resource types the gateway serves: those the national psychotherapy document is made of,
/// the patient's Consent, and AuditEvent (read-only: only the gateway writes the audit log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Patient,
    Practitioner,
    Organization,
    Encounter,
    Condition,
    Observation,
    Composition,
    Bundle,
    Consent,
    AuditEvent,
}

impl ResourceType {
    pub const ALL: [ResourceType; 10] = [
        ResourceType::Patient,
        ResourceType::Practitioner,
        ResourceType::Organization,
        ResourceType::Encounter,
        ResourceType::Condition,
        ResourceType::Observation,
        ResourceType::Composition,
        ResourceType::Bundle,
        ResourceType::Consent,
        ResourceType::AuditEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Patient => "Patient",
            ResourceType::Practitioner => "Practitioner",
            ResourceType::Organization => "Organization",
            ResourceType::Encounter => "Encounter",
            ResourceType::Condition => "Condition",
            ResourceType::Observation => "Observation",
            ResourceType::Composition => "Composition",
            ResourceType::Bundle => "Bundle",
            ResourceType::Consent => "Consent",
            ResourceType::AuditEvent => "AuditEvent",
        }
    }

    /// Whether clients may create and update resources of this type.
    pub fn is_writable(self) -> bool {
        self != ResourceType::AuditEvent
    }

    /// Whether a resource of this type belongs to one patient and so must name them. Practitioner
    /// and Organization describe the care providers, not a patient.
    pub fn is_patient_data(self) -> bool {
        !matches!(self, ResourceType::Practitioner | ResourceType::Organization)
    }
}

impl FromStr for ResourceType {
    type Err = ();

    fn from_str(name: &str) -> Result<Self, ()> {
        ResourceType::ALL.into_iter().find(|t| t.as_str() == name).ok_or(())
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in ResourceType::ALL {
            assert_eq!(t.as_str().parse::<ResourceType>(), Ok(t));
        }
        assert!("patient".parse::<ResourceType>().is_err());
        assert!("MedicationRequest".parse::<ResourceType>().is_err());
    }
}
