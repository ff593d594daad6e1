//! Reading a patient's choices from a FHIR R4 Consent. The shapes understood are listed in the
//! crate documentation; anything else is refused with the FHIRPath of the element, because a
//! provision read wrongly or skipped would release what the patient withheld.

use serde_json::{Map, Value};

use crate::time::{DateTime, DATE_TIME};
use crate::{ConsentError, Role};

/// `Consent.scope` of a patient's privacy choices.
pub const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// HL7 v3 ActReason: the purposes of use `ETREAT` and `BTG` in a deny provision.
pub const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// The identifier system of an organisation (and of a service event) named by OID.
pub const URI: &str = "urn:ietf:rfc:3986";
/// The identifier system of Terhikki (Valvira) professional registration numbers.
pub const TERHIKKI: &str = "urn:oid:1.2.246.537.26";

const EMERGENCY_PURPOSES: [&str; 2] = ["ETREAT", "BTG"];

/// One FHIR Consent, checked and lifted into the choices it expresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientConsent {
    id: Option<String>,
    active: bool,
    recorded: Option<DateTime>,
    provisions: Vec<Provision>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Permit,
    Deny,
}

/// Whom a provision is about. One actor matches a professional by organisation, by registration
/// number, or by role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Actor {
    /// Organisation OID, without `urn:oid:`.
    Organisation(String),
    /// Terhikki number.
    Practitioner(String),
    Role(Role),
}

/// `Consent.provision.period`: each bound as FHIR wrote it, resolved against "now" at compile
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Period {
    pub start: Option<DateTime>,
    pub end: Option<DateTime>,
}

/// One provision, with the conditions of the provisions it is nested in: a nested provision
/// applies only inside its parent's scope, so every level's conditions must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Provision {
    pub effect: Effect,
    /// FHIRPath, for the audit log.
    pub path: String,
    pub periods: Vec<Period>,
    /// Per level, the actors of which one must match.
    pub actors: Vec<Vec<Actor>>,
    /// Per level, the service-event OIDs of which one must be the resource's.
    pub service_events: Vec<Vec<String>>,
    /// Set by a purpose of `ETREAT`/`BTG` on a deny (here or in a parent): emergency access may
    /// not override this denial.
    pub holds_in_emergency: bool,
}

impl PatientConsent {
    /// Reads one FHIR R4 Consent in the shapes the crate documentation lists.
    pub fn from_fhir(consent: &Value) -> Result<PatientConsent, ConsentError> {
        let root = object(consent, "Consent")?;
        allow_only(root, "Consent", ROOT_ELEMENTS)?;
        if root.get("resourceType").and_then(Value::as_str) != Some("Consent") {
            return Err(ConsentError::new("Consent.resourceType", "\"Consent\""));
        }
        let id = string(root, "Consent", "id")?.map(str::to_owned);
        let active = match string(root, "Consent", "status")? {
            Some("active") => true,
            Some("draft" | "proposed" | "rejected" | "inactive" | "entered-in-error") => false,
            _ => {
                return Err(ConsentError::new(
                    "Consent.status",
                    "one of active, draft, proposed, rejected, inactive, entered-in-error",
                ))
            }
        };
        let scope = root.get("scope").ok_or_else(|| ConsentError::new("Consent.scope", "patient-privacy"))?;
        if !codings(scope, "Consent.scope")?.iter().any(|c| c.is(CONSENT_SCOPE, "patient-privacy")) {
            return Err(ConsentError::new("Consent.scope", format!("a coding {CONSENT_SCOPE}#patient-privacy")));
        }
        let recorded = string(root, "Consent", "dateTime")?
            .map(|text| DateTime::parse(text).ok_or_else(|| ConsentError::new("Consent.dateTime", DATE_TIME)))
            .transpose()?;
        let provision = root.get("provision").ok_or_else(|| {
            ConsentError::new("Consent.provision", "a provision: a Consent without one expresses no choice")
        })?;
        let mut provisions = Vec::new();
        read_provision(provision, "Consent.provision".into(), &Scope::default(), &mut provisions)?;
        Ok(PatientConsent { id, active, recorded, provisions })
    }

    /// `Consent.id`, named in the audit record of a decision this Consent made.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Only an `active` Consent counts.
    pub fn is_active(&self) -> bool {
        self.active
    }

    pub(crate) fn recorded(&self) -> Option<DateTime> {
        self.recorded
    }

    pub(crate) fn provisions(&self) -> &[Provision] {
        &self.provisions
    }
}

/// Elements of a Consent that are read, or that carry nothing a decision depends on (the
/// patient is the one whose Consents the caller loaded; `policy` and `policyRule`, which R4
/// requires one of, name the base rules, which are the deployment's [`crate::Policy`]).
/// `implicitRules`, `modifierExtension` and anything else are refused.
const ROOT_ELEMENTS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "language",
    "text",
    "extension",
    "identifier",
    "status",
    "scope",
    "category",
    "patient",
    "dateTime",
    "performer",
    "organization",
    "sourceAttachment",
    "sourceReference",
    "policy",
    "policyRule",
    "verification",
    "provision",
];

/// What a nested provision inherits from the provisions around it.
#[derive(Clone, Default)]
struct Scope {
    effect: Option<Effect>,
    periods: Vec<Period>,
    actors: Vec<Vec<Actor>>,
    service_events: Vec<Vec<String>>,
    holds_in_emergency: bool,
}

fn read_provision(value: &Value, path: String, outer: &Scope, out: &mut Vec<Provision>) -> Result<(), ConsentError> {
    let provision = object(value, &path)?;
    allow_only(provision, &path, &["id", "extension", "type", "period", "actor", "purpose", "data", "provision"])?;
    let effect = match string(provision, &path, "type")? {
        Some("permit") => Effect::Permit,
        Some("deny") => Effect::Deny,
        _ => return Err(ConsentError::new(format!("{path}.type"), "permit or deny")),
    };
    if outer.effect == Some(Effect::Deny) && effect == Effect::Permit {
        // Deny overrides permit, so this permit could never take effect: refuse it rather than
        // let the patient believe it does.
        return Err(ConsentError::new(
            format!("{path}.type"),
            "deny: a permit nested in a deny never takes effect, since deny overrides permit",
        ));
    }
    let mut scope = outer.clone();
    scope.effect = Some(effect);

    if let Some(period) = provision.get("period") {
        scope.periods.push(read_period(period, &format!("{path}.period"))?);
    }
    if let Some(actors) = array(provision, &path, "actor")? {
        let actors = actors
            .iter()
            .enumerate()
            .map(|(i, actor)| read_actor(actor, &format!("{path}.actor[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if effect == Effect::Permit {
            if let Some(i) = actors.iter().position(|actor| !matches!(actor, Actor::Practitioner(_))) {
                // A permit opens notes; it must name the people it opens them to.
                return Err(ConsentError::new(
                    format!("{path}.actor[{i}]"),
                    format!("a practitioner ({TERHIKKI}): a permit names people, not organisations or roles"),
                ));
            }
        }
        scope.actors.push(actors);
    }
    if let Some(purposes) = array(provision, &path, "purpose")? {
        if effect == Effect::Permit {
            return Err(ConsentError::new(format!("{path}.purpose"), "no purpose on a permit"));
        }
        for (i, purpose) in purposes.iter().enumerate() {
            let purpose_path = format!("{path}.purpose[{i}]");
            let coding = Coding::read(purpose, &purpose_path)?;
            if !EMERGENCY_PURPOSES.iter().any(|code| coding.is(ACT_REASON, code)) {
                return Err(ConsentError::new(purpose_path, format!("{ACT_REASON}#ETREAT or #BTG")));
            }
        }
        scope.holds_in_emergency = true;
    }
    if let Some(data) = array(provision, &path, "data")? {
        let service_events = data
            .iter()
            .enumerate()
            .map(|(i, data)| read_service_event(data, &format!("{path}.data[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        scope.service_events.push(service_events);
    }

    match effect {
        Effect::Permit if scope.actors.is_empty() => {
            if !scope.service_events.is_empty() {
                return Err(ConsentError::new(
                    format!("{path}.actor"),
                    "the practitioners this permit is for: a permit for everyone is not a patient choice",
                ));
            }
            // A permit naming no one is the base of a Consent whose nested provisions are the
            // exceptions; it grants nothing beyond the deployment's defaults.
        }
        _ => out.push(Provision {
            effect,
            path: path.clone(),
            periods: scope.periods.clone(),
            actors: scope.actors.clone(),
            service_events: scope.service_events.clone(),
            holds_in_emergency: scope.holds_in_emergency,
        }),
    }

    if let Some(nested) = array(provision, &path, "provision")? {
        for (i, child) in nested.iter().enumerate() {
            read_provision(child, format!("{path}.provision[{i}]"), &scope, out)?;
        }
    }
    Ok(())
}

fn read_period(value: &Value, path: &str) -> Result<Period, ConsentError> {
    let period = object(value, path)?;
    allow_only(period, path, &["id", "extension", "start", "end"])?;
    let bound = |key: &str| -> Result<Option<DateTime>, ConsentError> {
        string(period, path, key)?
            .map(|text| DateTime::parse(text).ok_or_else(|| ConsentError::new(format!("{path}.{key}"), DATE_TIME)))
            .transpose()
    };
    let (start, end) = (bound("start")?, bound("end")?);
    if let (Some(start), Some(end)) = (start, end) {
        if start.start.0 >= end.end.1 {
            return Err(ConsentError::new(format!("{path}.end"), "a time after the start"));
        }
    }
    Ok(Period { start, end })
}

fn read_actor(value: &Value, path: &str) -> Result<Actor, ConsentError> {
    let actor = object(value, path)?;
    allow_only(actor, path, &["id", "extension", "role", "reference"])?;
    let roles = match actor.get("role") {
        Some(role) => codings(role, &format!("{path}.role"))?,
        None => Vec::new(),
    };
    let professional_roles: Vec<&Coding> = roles.iter().filter(|c| c.system == Some(Role::CODE_SYSTEM)).collect();
    // R4 requires `actor.reference`, but a role is a class of professionals with no resource to
    // point at: beside a professional role the reference may name it for people (`display`)
    // and nothing else.
    let named_only = |reference: &Value| reference.as_object().is_some_and(|r| r.keys().all(|key| key == "display"));
    let reference = actor.get("reference").filter(|reference| professional_roles.is_empty() || !named_only(reference));
    match reference {
        Some(reference) => {
            // With a reference the role says how the actor takes part (any code will do); a
            // professional role as well would make the actor "that role at that organisation",
            // a shape not offered.
            if !professional_roles.is_empty() {
                return Err(ConsentError::new(
                    format!("{path}.role"),
                    "no professional role beside a reference: an actor is an organisation, a practitioner or a role",
                ));
            }
            let (system, value) = identifier(reference, &format!("{path}.reference"))?;
            match system {
                URI => Ok(Actor::Organisation(oid(value, &format!("{path}.reference.identifier.value"))?)),
                TERHIKKI if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                    Ok(Actor::Practitioner(value.to_owned()))
                }
                TERHIKKI => {
                    Err(ConsentError::new(format!("{path}.reference.identifier.value"), "a Terhikki number (digits)"))
                }
                _ => Err(ConsentError::new(
                    format!("{path}.reference.identifier.system"),
                    format!("{URI} (an organisation OID) or {TERHIKKI} (a practitioner)"),
                )),
            }
        }
        None => {
            let [coding] = professional_roles.as_slice() else {
                return Err(ConsentError::new(
                    format!("{path}.role"),
                    format!("one coding from {} when the actor has no reference", Role::CODE_SYSTEM),
                ));
            };
            coding.code.and_then(Role::parse).map(Actor::Role).ok_or_else(|| {
                ConsentError::new(
                    format!("{path}.role"),
                    "a professional role: psychotherapist, psychologist, psychiatrist, physician or nurse",
                )
            })
        }
    }
}

fn read_service_event(value: &Value, path: &str) -> Result<String, ConsentError> {
    let data = object(value, path)?;
    allow_only(data, path, &["id", "extension", "meaning", "reference"])?;
    if string(data, path, "meaning")? != Some("related") {
        return Err(ConsentError::new(
            format!("{path}.meaning"),
            "related: the data named is everything about a service event",
        ));
    }
    let reference =
        data.get("reference").ok_or_else(|| ConsentError::new(format!("{path}.reference"), "the service event"))?;
    let (system, value) = identifier(reference, &format!("{path}.reference"))?;
    if system != URI {
        return Err(ConsentError::new(
            format!("{path}.reference.identifier.system"),
            format!("{URI}: a service event is named by its OID"),
        ));
    }
    oid(value, &format!("{path}.reference.identifier.value"))
}

/// A Reference by `identifier` (system and value). A literal `reference` is refused: this crate
/// resolves nothing, so it could not tell whom it names.
fn identifier<'v>(value: &'v Value, path: &str) -> Result<(&'v str, &'v str), ConsentError> {
    let reference = object(value, path)?;
    allow_only(reference, path, &["id", "extension", "identifier", "type", "display"])?;
    let identifier_path = format!("{path}.identifier");
    let identifier = reference
        .get("identifier")
        .ok_or_else(|| ConsentError::new(&identifier_path, "an identifier with system and value"))?;
    let identifier = object(identifier, &identifier_path)?;
    allow_only(identifier, &identifier_path, &["id", "extension", "use", "type", "system", "value"])?;
    match (string(identifier, &identifier_path, "system")?, string(identifier, &identifier_path, "value")?) {
        (Some(system), Some(value)) => Ok((system, value)),
        _ => Err(ConsentError::new(identifier_path, "an identifier with system and value")),
    }
}

/// `urn:oid:1.2.246...` to the bare OID, the form `ResourceMeta` and `Professional` hold.
fn oid(value: &str, path: &str) -> Result<String, ConsentError> {
    let bare = value.strip_prefix("urn:oid:").filter(|oid| {
        let mut arcs = oid.split('.');
        matches!(arcs.next(), Some("0" | "1" | "2"))
            && oid.contains('.')
            && arcs.all(|arc| {
                !arc.is_empty() && arc.bytes().all(|c| c.is_ascii_digit()) && (arc == "0" || !arc.starts_with('0'))
            })
    });
    bare.map(str::to_owned).ok_or_else(|| ConsentError::new(path, "urn:oid: followed by an OID"))
}

struct Coding<'v> {
    system: Option<&'v str>,
    code: Option<&'v str>,
}

impl<'v> Coding<'v> {
    fn read(value: &'v Value, path: &str) -> Result<Self, ConsentError> {
        let coding = object(value, path)?;
        allow_only(coding, path, &["id", "extension", "system", "version", "code", "display", "userSelected"])?;
        Ok(Coding { system: string(coding, path, "system")?, code: string(coding, path, "code")? })
    }

    fn is(&self, system: &str, code: &str) -> bool {
        self.system == Some(system) && self.code == Some(code)
    }
}

/// The codings of a CodeableConcept. Several codings are translations of one concept, so a
/// caller may look for the system it knows among them.
fn codings<'v>(value: &'v Value, path: &str) -> Result<Vec<Coding<'v>>, ConsentError> {
    let concept = object(value, path)?;
    allow_only(concept, path, &["id", "extension", "coding", "text"])?;
    let codings = array(concept, path, "coding")?.unwrap_or_default();
    codings.iter().enumerate().map(|(i, coding)| Coding::read(coding, &format!("{path}.coding[{i}]"))).collect()
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, ConsentError> {
    value.as_object().ok_or_else(|| ConsentError::new(path, "a JSON object"))
}

fn allow_only(object: &Map<String, Value>, path: &str, understood: &[&str]) -> Result<(), ConsentError> {
    match object.keys().find(|key| !understood.contains(&key.as_str())) {
        Some(key) => Err(ConsentError::new(
            format!("{path}.{key}"),
            format!(
                "absent: not understood here, and refused rather than ignored (understood: {})",
                understood.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn string<'v>(object: &'v Map<String, Value>, path: &str, key: &str) -> Result<Option<&'v str>, ConsentError> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ConsentError::new(format!("{path}.{key}"), "a string")),
    }
}

/// FHIR JSON has no empty arrays, so an empty one is refused like a wrong type.
fn array<'v>(object: &'v Map<String, Value>, path: &str, key: &str) -> Result<Option<&'v [Value]>, ConsentError> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) if !items.is_empty() => Ok(Some(items)),
        Some(_) => Err(ConsentError::new(format!("{path}.{key}"), "a non-empty array")),
    }
}
