/// HL7 v3 security labels the gateway understands (ActCode sensitivity and confidentiality).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityLabel {
    /// `PSYTHPN`: psychotherapy note.
    PsychotherapyNote,
    /// `PSY`: psychiatry information.
    Psychiatry,
    /// `MH`: mental health information.
    MentalHealth,
    /// Confidentiality `R`: restricted.
    Restricted,
    /// Confidentiality `V`: very restricted.
    VeryRestricted,
}

impl SecurityLabel {
    /// The labels' code systems, as used in `meta.security`.
    pub const ACT_CODE: &'static str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    pub const CONFIDENTIALITY: &'static str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

    /// Reads a `meta.security` coding; `None` for labels this policy does not act on.
    pub fn from_coding(system: &str, code: &str) -> Option<Self> {
        match system {
            Self::ACT_CODE if matches!(code, "PSYTHPN" | "PSY" | "MH") => Self::from_code(code),
            Self::CONFIDENTIALITY if matches!(code, "R" | "V") => Self::from_code(code),
            _ => None,
        }
    }

    /// The compact code stored beside a resource so decisions need no decryption.
    pub fn code(self) -> &'static str {
        match self {
            Self::PsychotherapyNote => "PSYTHPN",
            Self::Psychiatry => "PSY",
            Self::MentalHealth => "MH",
            Self::Restricted => "R",
            Self::VeryRestricted => "V",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "PSYTHPN" => Some(Self::PsychotherapyNote),
            "PSY" => Some(Self::Psychiatry),
            "MH" => Some(Self::MentalHealth),
            "R" => Some(Self::Restricted),
            "V" => Some(Self::VeryRestricted),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_codes() {
        for label in [
            SecurityLabel::PsychotherapyNote,
            SecurityLabel::Psychiatry,
            SecurityLabel::MentalHealth,
            SecurityLabel::Restricted,
            SecurityLabel::VeryRestricted,
        ] {
            assert_eq!(SecurityLabel::from_code(label.code()), Some(label));
        }
        assert_eq!(
            SecurityLabel::from_coding(SecurityLabel::ACT_CODE, "PSYTHPN"),
            Some(SecurityLabel::PsychotherapyNote)
        );
        assert_eq!(SecurityLabel::from_coding(SecurityLabel::ACT_CODE, "R"), None);
        assert_eq!(SecurityLabel::from_coding("http://example.org", "PSYTHPN"), None);
    }
}
