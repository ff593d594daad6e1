//! The policy decision point.
//!
//! Every path by which clinical data leaves the gateway asks [`decide`] first. The crate is pure
//! (no I/O, no HTTP, no SQL) so that the rules can be tested and fuzzed alone.
//!
//! This is the first cut, written with the walking skeleton: it knows who is asking
//! ([`Principal`]) and what is being released ([`ResourceMeta`]), and it denies by default. The
//! patient's own Consents, the role rules and the `PSYTHPN` rule arrive with the consent
//! capability; the shape of the call does not change when they do.

use std::fmt;

/// Who is asking. Built in exactly one place in the gateway, from the TLS connection and the
/// request's token; nothing else constructs a principal from request data.
#[derive(Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nobody: no verified identity came with the request.
    Anonymous,
    /// A development-mode request. Exists only when the gateway runs in development mode, which
    /// it announces loudly at start; a production configuration never produces it.
    Development,
}

impl Principal {
    /// A short, non-identifying label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Development => "development",
        }
    }
}

impl fmt::Debug for Principal {
    // Principals will carry identity codes; their Debug form must never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

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
        match (system, code) {
            (Self::ACT_CODE, "PSYTHPN") => Some(Self::PsychotherapyNote),
            (Self::ACT_CODE, "PSY") => Some(Self::Psychiatry),
            (Self::ACT_CODE, "MH") => Some(Self::MentalHealth),
            (Self::CONFIDENTIALITY, "R") => Some(Self::Restricted),
            (Self::CONFIDENTIALITY, "V") => Some(Self::VeryRestricted),
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

/// What is about to be released: the metadata kept in clear beside each encrypted resource, so
/// that a decision never needs the clinical payload.
#[derive(Clone, Debug)]
pub struct ResourceMeta<'a> {
    pub resource_type: &'a str,
    /// The patient pseudonym (keyed HMAC), `None` for resources that belong to no patient
    /// (Practitioner, Organization).
    pub patient: Option<&'a str>,
    pub security_labels: &'a [SecurityLabel],
}

/// Which rule decided; recorded in the audit log, never shown to the requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    NoIdentity,
    DevelopmentMode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Permit(Rule),
    Deny(Rule),
}

impl Decision {
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit(_))
    }
}

/// Decides whether `principal` may receive the resource described by `meta`.
///
/// Deny is the default: a principal the rules do not name gets nothing.
pub fn decide(principal: &Principal, _meta: &ResourceMeta<'_>) -> Decision {
    match principal {
        Principal::Anonymous => Decision::Deny(Rule::NoIdentity),
        Principal::Development => Decision::Permit(Rule::DevelopmentMode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: ResourceMeta<'static> = ResourceMeta {
        resource_type: "Composition",
        patient: Some("p1"),
        security_labels: &[SecurityLabel::PsychotherapyNote, SecurityLabel::Restricted],
    };

    #[test]
    fn anonymous_is_denied() {
        assert_eq!(decide(&Principal::Anonymous, &META), Decision::Deny(Rule::NoIdentity));
    }

    #[test]
    fn development_principal_is_permitted() {
        assert!(decide(&Principal::Development, &META).is_permit());
    }

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
        assert_eq!(SecurityLabel::from_coding("http://example.org", "PSYTHPN"), None);
    }

    #[test]
    fn principal_debug_reveals_no_identity() {
        assert_eq!(format!("{:?}", Principal::Development), "development");
    }
}
