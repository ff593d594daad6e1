//! The audit event: a typed record of one audited action, rendered as a FHIR R4 AuditEvent shaped
//! after IHE Basic Audit Log Patterns (BALP).
//!
//! It holds identifiers and pseudonyms only. There is no field for a name, a HETU or clinical
//! text, so none can be recorded by mistake; the one free text is a professional's stated reason
//! for emergency access, which the law asks to be recorded and shown to the patient.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base64;
use crate::time::UnixMillis;
use crate::AuditError;

/// `who.identifier.system` of a patient, known only by pseudonym.
pub const PATIENT_PSEUDONYM: &str = "https://fhir.vaitio.fi/sid/patient-pseudonym";
/// `who.identifier.system` of a practitioner: the Terhikki (Valvira) registration number.
pub const TERHIKKI: &str = "urn:oid:1.2.246.537.26";
/// `who.identifier.system` of an organisation, whose value is `urn:oid:<organisation OID>`.
pub const URI: &str = "urn:ietf:rfc:3986";
/// `who.identifier.system` of an auditor or administrator: the subject their identity provider
/// asserts.
pub const STAFF_SUBJECT: &str = "https://fhir.vaitio.fi/sid/staff-subject";
/// `who.identifier.system` of a client: the SHA-256 thumbprint of its TLS certificate, as in
/// RFC 8705's `x5t#S256`.
pub const CLIENT_CERTIFICATE: &str = "https://fhir.vaitio.fi/sid/client-certificate-sha256";
/// The professional roles (the `consent` crate's `Role` codes).
pub const PROFESSIONAL_ROLE: &str = "https://fhir.vaitio.fi/CodeSystem/professional-role";
/// `auditor` and `administrator`.
pub const STAFF_ROLE: &str = "https://fhir.vaitio.fi/CodeSystem/staff-role";
/// `who.identifier.system` of an operator at the host's console: `user@host`.
pub const HOST_ACCOUNT: &str = "https://fhir.vaitio.fi/sid/host-account";
/// Purposes of use.
pub const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const AUTHZ_SUBTYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType";
/// Vaitio's own security alerts, for what DICOM's list has no code.
const VAITIO_ALERT: &str = "https://fhir.vaitio.fi/CodeSystem/security-alert";
const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ROLE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleClass";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// One audited action.
///
/// Serialised as the [canonical bytes](AuditEvent::canonical_bytes): members in the order of the
/// fields here, absent options and empty lists left out, unknown members refused on reading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub action: Action,
    pub outcome: Outcome,
    pub recorded: UnixMillis,
    pub agent: Agent,
    /// The gateway instance that recorded the event, e.g. `fhir.clinic.example/gateway-1`.
    pub observer: String,
    /// The resources acted on. A search names none: its query says what was asked, and BALP
    /// records no results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceRef>,
    /// The patient whose data this is, by pseudonym; BALP's patient entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// A search's query as the caller sanitised it (for instance its parameter names only). It is
    /// recorded as given, so the caller must leave out anything that is not an identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The decision that allowed or refused the action, when one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentDecision>,
    /// How many of the patient's resources the event stands for when it lists only some: a
    /// search lists what it returned on its page (or withheld up to there) and counts all it
    /// judged, so an entry's size does not grow with the patient's record. `None` when every
    /// resource is listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// The kind of action. Each maps to BALP's `type`, `subtype` and `action` as
/// [`AuditEvent::to_fhir`] documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Read,
    Vread,
    History,
    Search,
    Update,
    Delete,
    /// A clinic's record submitted and stored as a document.
    Submission,
    /// `$validate`.
    Validate,
    /// A patient's Consent written or withdrawn.
    ConsentChange,
    /// A consent decision, permit or deny.
    ConsentDecision,
    /// Emergency access (`ETREAT`/`BTG`) granted or attempted.
    BreakTheGlass,
    /// An authentication refused: a bad token, a token not bound to the connection's certificate.
    AuthenticationRefused,
    /// An operator command: key rotation, certificate issue or revocation, migration.
    AdministratorAction,
    /// A principal reached more patients (or was refused more often) than a deployment's
    /// threshold allows: the alert itself, a patient's flag that their data was reached in such
    /// a pattern, an alert cleared, or a request refused or slowed while the alert holds.
    UnusualAccess,
}

/// How the action ended (`AuditEvent.outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// `0`
    #[serde(rename = "0")]
    Success,
    /// `4`: refused or denied; the request was well-formed.
    #[serde(rename = "4")]
    MinorFailure,
    /// `8`: the action failed.
    #[serde(rename = "8")]
    SeriousFailure,
    /// `12`: the action failed and the system may be compromised.
    #[serde(rename = "12")]
    MajorFailure,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
            Outcome::MajorFailure => "12",
        }
    }
}

/// Who asked, from where, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub who: Who,
    /// SHA-256 thumbprint of the connection's client certificate (RFC 8705 `x5t#S256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// The client's network address, as the listener saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<PurposeOfUse>,
    /// The professional's stated reason for emergency access, recorded as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The person (or nobody) behind a request, by identifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Who {
    /// A healthcare professional acting for an organisation.
    Practitioner {
        /// Terhikki registration number.
        terhikki: String,
        /// A code of [`PROFESSIONAL_ROLE`], e.g. `psychotherapist`.
        role: String,
        /// Organisation OID, bare (`1.2.246.10.…`).
        organisation: String,
    },
    /// A patient, by pseudonym.
    Patient {
        pseudonym: String,
    },
    Auditor {
        subject: String,
        organisation: String,
    },
    Administrator {
        subject: String,
        organisation: String,
    },
    /// A person at the gateway host's console, running the operator command line (`vaitio
    /// migrate`, `vaitio audit export`), by operating-system account as `user@host`. The host's
    /// own login is the authentication; no token or certificate is involved.
    Operator {
        account: String,
    },
    /// No verified identity, as in a refused authentication; the client certificate and address
    /// still say where the request came from.
    Unidentified,
}

/// Purpose of use (HL7 v3 ActReason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PurposeOfUse {
    /// `TREAT`
    #[serde(rename = "TREAT")]
    Treatment,
    /// `ETREAT`
    #[serde(rename = "ETREAT")]
    EmergencyTreatment,
    /// `BTG`
    #[serde(rename = "BTG")]
    BreakTheGlass,
    /// `PATRQT`: a patient's own request.
    #[serde(rename = "PATRQT")]
    PatientRequested,
    /// `HCOMPL`: an auditor's compliance review.
    #[serde(rename = "HCOMPL")]
    Compliance,
    /// `HSYSADMIN`: operating the system.
    #[serde(rename = "HSYSADMIN")]
    SystemAdministration,
}

impl PurposeOfUse {
    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::BreakTheGlass => "BTG",
            PurposeOfUse::PatientRequested => "PATRQT",
            PurposeOfUse::Compliance => "HCOMPL",
            PurposeOfUse::SystemAdministration => "HSYSADMIN",
        }
    }
}

/// A resource version acted on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
    /// `meta.versionId`, when the action concerned one version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl ResourceRef {
    /// The FHIR literal reference: `Type/id` or `Type/id/_history/version`.
    pub fn reference(&self) -> String {
        match &self.version {
            Some(version) => format!("{}/{}/_history/{version}", self.resource_type, self.id),
            None => format!("{}/{}", self.resource_type, self.id),
        }
    }
}

/// A consent decision as the audit log records it: never shown to the requester.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentDecision {
    pub decision: Decision,
    /// The rule that decided (the `consent` crate's `Rule`, e.g. `PatientDenied`).
    pub rule: String,
    /// `Consent.id` of the deciding patient Consent, when one decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    /// FHIRPath of the deciding provision within it, e.g. `Consent.provision.provision[0]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Permit,
    Deny,
}

impl Decision {
    pub fn code(self) -> &'static str {
        match self {
            Decision::Permit => "permit",
            Decision::Deny => "deny",
        }
    }
}

/// `(system, code, display)`
type Code = (&'static str, &'static str, &'static str);

impl Action {
    /// The action's name in the canonical bytes, e.g. `read`, `consent-change`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Vread => "vread",
            Action::History => "history",
            Action::Search => "search",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Submission => "submission",
            Action::Validate => "validate",
            Action::ConsentChange => "consent-change",
            Action::ConsentDecision => "consent-decision",
            Action::BreakTheGlass => "break-the-glass",
            Action::AuthenticationRefused => "authentication-refused",
            Action::AdministratorAction => "administrator-action",
            Action::UnusualAccess => "unusual-access",
        }
    }

    /// BALP's `type`, `subtype` and `action` for this kind of action.
    fn codes(self) -> (Code, Code, &'static str) {
        const REST: Code = (EVENT_TYPE, "rest", "Restful Operation");
        const SECURITY_ALERT: Code = (DCM, "110113", "Security Alert");
        let interaction = |code| (RESTFUL_INTERACTION, code, code);
        match self {
            Action::Create => (REST, interaction("create"), "C"),
            Action::Read => (REST, interaction("read"), "R"),
            Action::Vread => (REST, interaction("vread"), "R"),
            Action::History => (REST, interaction("history"), "R"),
            // BALP's Query profiles use `rest`/`search` with action E, not DICOM's older 110112.
            Action::Search => (REST, interaction("search"), "E"),
            Action::Update => (REST, interaction("update"), "U"),
            Action::Delete => (REST, interaction("delete"), "D"),
            Action::Submission => ((DCM, "110107", "Import"), interaction("create"), "C"),
            Action::Validate => (REST, interaction("operation"), "E"),
            Action::ConsentChange => (REST, interaction("update"), "U"),
            Action::ConsentDecision => (
                SECURITY_ALERT,
                (AUTHZ_SUBTYPE, "AuthZ-Consent", "Authorization Decision using Roles and Consent"),
                "E",
            ),
            Action::BreakTheGlass => (SECURITY_ALERT, (DCM, "110127", "Emergency Override Started"), "E"),
            Action::AuthenticationRefused => ((DCM, "110114", "User Authentication"), (DCM, "110122", "Login"), "E"),
            Action::AdministratorAction => (SECURITY_ALERT, (DCM, "110132", "Use of Restricted Function"), "E"),
            Action::UnusualAccess => {
                (SECURITY_ALERT, (VAITIO_ALERT, "unusual-access-pattern", "Unusual access pattern"), "E")
            }
        }
    }
}

impl AuditEvent {
    /// The FHIR R4 AuditEvent.
    ///
    /// | action | `type` | `subtype` | `action` |
    /// | --- | --- | --- | --- |
    /// | create, read, vread, history, update, delete | `audit-event-type#rest` | `restful-interaction` of the same name | C, R, R, R, U, D |
    /// | search | `audit-event-type#rest` | `restful-interaction#search` | E |
    /// | submission | DCM `110107` Import | `restful-interaction#create` | C |
    /// | validate | `audit-event-type#rest` | `restful-interaction#operation` | E |
    /// | consent change | `audit-event-type#rest` | `restful-interaction#update` | U |
    /// | consent decision | DCM `110113` Security Alert | BALP `AuthZsubType#AuthZ-Consent` | E |
    /// | break-the-glass | DCM `110113` Security Alert | DCM `110127` Emergency Override Started | E |
    /// | authentication refused | DCM `110114` User Authentication | DCM `110122` Login | E |
    /// | administrator action | DCM `110113` Security Alert | DCM `110132` Use of Restricted Function | E |
    /// | unusual access | DCM `110113` Security Alert | Vaitio `security-alert#unusual-access-pattern` | E |
    ///
    /// Agents, as BALP records a server-side event: the requester (`requestor: true`, type
    /// `v3-ParticipationType#IRCP`, `who.identifier`, `role`, `purposeOfUse` whose `text` is the
    /// emergency reason); the organisation it acts for (type `v3-RoleClass#PROV`); the client
    /// (DICOM `110153` Source Role ID: certificate thumbprint and `network` address, type `2`);
    /// the gateway (DICOM `110152` Destination Role ID). Entities: each resource (`what.reference`,
    /// type `2` System Object, role `4` Domain Resource); the patient (`what.identifier` under
    /// [`PATIENT_PSEUDONYM`], type `1` Person, role `1` Patient); a search's query (type `2`, role
    /// `24` Query, base64 in `query`, as given in `description`); the consent decision (type
    /// `resource-types#Consent`, `what.reference` the deciding Consent, `detail` `decision`,
    /// `rule` and `provision`).
    ///
    /// Members appear in the order written here: `resourceType`, `type`, `subtype`, `action`,
    /// `recorded`, `outcome`, `agent`, `source`, `entity`, and within each element in the order
    /// of the `Fhir*` structs' fields.
    pub fn to_fhir(&self) -> Value {
        serde_json::to_value(self.fhir()).expect("an AuditEvent has string keys and no failing member")
    }

    /// The bytes that are stored, hashed into the log and exported: the compact JSON of this
    /// struct (see the crate's README), about 500 bytes for a read. The FHIR AuditEvent is
    /// rendered from them when the log is read ([`AuditEvent::from_canonical`], then
    /// [`AuditEvent::to_fhir`]).
    ///
    /// Only the writer serialises; a verifier hashes the stored bytes as they are, so the form
    /// needs to be fixed, not reproducible by others. It is not the FHIR rendering (about 2.3 kB)
    /// because every read writes one: at a few thousand reads a second the rendering filled a
    /// database page per read and made the log's checkpoints, and `audit verify`, four times the
    /// work.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(640);
        serde_json::to_writer(&mut bytes, self).expect("an AuditEvent has string keys and no failing member");
        bytes
    }

    /// Reads canonical bytes back. Unknown members are refused: bytes written by a later format
    /// are not silently read as this one.
    pub fn from_canonical(bytes: &[u8]) -> Result<AuditEvent, AuditError> {
        serde_json::from_slice(bytes).map_err(|_| AuditError::EventUnreadable)
    }

    fn fhir(&self) -> FhirEvent<'_> {
        let (event_type, subtype, action) = self.action.codes();
        let mut entity: Vec<FhirEntity<'_>> = self.resources.iter().map(FhirEntity::resource).collect();
        entity.extend(self.patient.as_deref().map(|patient| {
            let mut entity = FhirEntity::patient(patient);
            entity
                .detail
                .extend(self.count.map(|count| Detail { detail_type: "count", value: Cow::Owned(count.to_string()) }));
            entity
        }));
        entity.extend(self.query.as_deref().map(FhirEntity::query));
        entity.extend(self.consent.as_ref().map(FhirEntity::consent));
        FhirEvent {
            resource_type: "AuditEvent",
            event_type: Coding::shown(event_type),
            subtype: [Coding::shown(subtype)],
            action,
            recorded: self.recorded.to_string(),
            outcome: self.outcome.code(),
            agent: self.agent.fhir(&self.observer),
            source: FhirSource {
                observer: Reference::display(&self.observer),
                source_type: [Coding::new(SOURCE_TYPE, "4")],
            },
            entity,
        }
    }
}

impl Agent {
    fn fhir<'a>(&'a self, observer: &'a str) -> Vec<FhirAgent<'a>> {
        let mut agents = Vec::with_capacity(4);
        let (who, role, organisation) = match &self.who {
            Who::Practitioner { terhikki, role, organisation } => (
                Some(Reference::identifier(TERHIKKI, terhikki)),
                Some((PROFESSIONAL_ROLE, role.as_str())),
                Some(organisation),
            ),
            Who::Patient { pseudonym } => {
                (Some(Reference::identifier(PATIENT_PSEUDONYM, pseudonym)), Some((ROLE_CLASS, "PAT")), None)
            }
            Who::Auditor { subject, organisation } => {
                (Some(Reference::identifier(STAFF_SUBJECT, subject)), Some((STAFF_ROLE, "auditor")), Some(organisation))
            }
            Who::Administrator { subject, organisation } => (
                Some(Reference::identifier(STAFF_SUBJECT, subject)),
                Some((STAFF_ROLE, "administrator")),
                Some(organisation),
            ),
            Who::Operator { account } => {
                (Some(Reference::identifier(HOST_ACCOUNT, account)), Some((STAFF_ROLE, "administrator")), None)
            }
            Who::Unidentified => (None, None, None),
        };
        let purpose = (self.purpose.is_some() || self.reason.is_some()).then(|| {
            [Concept {
                coding: self.purpose.map(|purpose| [Coding::new(ACT_REASON, purpose.code())]),
                text: self.reason.as_deref(),
            }]
        });
        agents.push(FhirAgent {
            purpose_of_use: purpose,
            role: role.map(|(system, code)| [Concept::coded(system, code)]),
            who,
            ..FhirAgent::new(PARTICIPATION_TYPE, "IRCP", true)
        });
        if let Some(organisation) = organisation {
            agents.push(FhirAgent {
                who: Some(Reference {
                    identifier: Some(Identifier { system: URI, value: Cow::Owned(format!("urn:oid:{organisation}")) }),
                    ..Reference::default()
                }),
                ..FhirAgent::new(ROLE_CLASS, "PROV", false)
            });
        }
        if self.client_certificate.is_some() || self.address.is_some() {
            agents.push(FhirAgent {
                who: self
                    .client_certificate
                    .as_deref()
                    .map(|thumbprint| Reference::identifier(CLIENT_CERTIFICATE, thumbprint)),
                network: self.address.as_deref().map(|address| Network { address, network_type: "2" }),
                ..FhirAgent::new(DCM, "110153", false)
            });
        }
        agents.push(FhirAgent { who: Some(Reference::display(observer)), ..FhirAgent::new(DCM, "110152", false) });
        agents
    }
}

// The FHIR shapes an event is rendered through. Field order is member order in the output.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FhirEvent<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    event_type: Coding<'a>,
    subtype: [Coding<'a>; 1],
    action: &'static str,
    recorded: String,
    outcome: &'static str,
    agent: Vec<FhirAgent<'a>>,
    source: FhirSource<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entity: Vec<FhirEntity<'a>>,
}

/// A coding: with its display for the event's `type` and `subtype`, which a person reading the
/// log looks at first; without elsewhere, where it repeats in every one of millions of events and
/// the code system says it all.
#[derive(Serialize)]
struct Coding<'a> {
    system: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

impl<'a> Coding<'a> {
    fn new(system: &'a str, code: &'a str) -> Self {
        Coding { system, code, display: None }
    }

    fn shown((system, code, display): Code) -> Self {
        Coding { system, code, display: Some(display) }
    }
}

#[derive(Serialize)]
struct Concept<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    coding: Option<[Coding<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

impl<'a> Concept<'a> {
    fn coded(system: &'a str, code: &'a str) -> Self {
        Concept { coding: Some([Coding::new(system, code)]), text: None }
    }
}

#[derive(Serialize)]
struct Identifier<'a> {
    system: &'a str,
    value: Cow<'a, str>,
}

#[derive(Serialize, Default)]
struct Reference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

impl<'a> Reference<'a> {
    fn literal(reference: String) -> Self {
        Reference { reference: Some(reference), ..Reference::default() }
    }

    fn identifier(system: &'a str, value: &'a str) -> Self {
        Reference { identifier: Some(Identifier { system, value: Cow::Borrowed(value) }), ..Reference::default() }
    }

    fn display(display: &'a str) -> Self {
        Reference { display: Some(display), ..Reference::default() }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FhirAgent<'a> {
    #[serde(rename = "type")]
    agent_type: Concept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<[Concept<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    who: Option<Reference<'a>>,
    requestor: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<Network<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose_of_use: Option<[Concept<'a>; 1]>,
}

impl<'a> FhirAgent<'a> {
    fn new(system: &'a str, code: &'a str, requestor: bool) -> Self {
        FhirAgent {
            agent_type: Concept::coded(system, code),
            role: None,
            who: None,
            requestor,
            network: None,
            purpose_of_use: None,
        }
    }
}

#[derive(Serialize)]
struct Network<'a> {
    address: &'a str,
    #[serde(rename = "type")]
    network_type: &'static str,
}

#[derive(Serialize)]
struct FhirSource<'a> {
    observer: Reference<'a>,
    #[serde(rename = "type")]
    source_type: [Coding<'a>; 1],
}

#[derive(Serialize)]
struct FhirEntity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    what: Option<Reference<'a>>,
    #[serde(rename = "type")]
    entity_type: Coding<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detail: Vec<Detail<'a>>,
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(rename = "type")]
    detail_type: &'static str,
    #[serde(rename = "valueString")]
    value: Cow<'a, str>,
}

impl<'a> FhirEntity<'a> {
    fn new(what: Option<Reference<'a>>, entity_type: Coding<'a>, role: Option<Coding<'a>>) -> Self {
        FhirEntity { what, entity_type, role, description: None, query: None, detail: Vec::new() }
    }

    fn resource(resource: &'a ResourceRef) -> Self {
        let what = Reference::literal(resource.reference());
        FhirEntity::new(Some(what), Coding::new(ENTITY_TYPE, "2"), Some(Coding::new(OBJECT_ROLE, "4")))
    }

    fn patient(pseudonym: &'a str) -> Self {
        let what = Reference::identifier(PATIENT_PSEUDONYM, pseudonym);
        FhirEntity::new(Some(what), Coding::new(ENTITY_TYPE, "1"), Some(Coding::new(OBJECT_ROLE, "1")))
    }

    fn query(query: &'a str) -> Self {
        FhirEntity {
            description: Some(query),
            query: Some(base64::encode(query.as_bytes())),
            ..FhirEntity::new(None, Coding::new(ENTITY_TYPE, "2"), Some(Coding::new(OBJECT_ROLE, "24")))
        }
    }

    fn consent(decision: &'a ConsentDecision) -> Self {
        let what = decision.consent_id.as_ref().map(|id| Reference::literal(format!("Consent/{id}")));
        let mut detail = vec![
            Detail { detail_type: "decision", value: Cow::Borrowed(decision.decision.code()) },
            Detail { detail_type: "rule", value: Cow::Borrowed(&decision.rule) },
        ];
        detail.extend(
            decision
                .provision
                .as_deref()
                .map(|provision| Detail { detail_type: "provision", value: Cow::Borrowed(provision) }),
        );
        FhirEntity { detail, ..FhirEntity::new(what, Coding::new(RESOURCE_TYPES, "Consent"), None) }
    }
}

#[cfg(test)]
mod tests;
