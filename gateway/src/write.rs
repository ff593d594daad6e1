//! The write path, shared by every way data comes in: `POST /{type}` (a document Bundle among
//! them), `PUT /{type}/{id}` and `POST /psychotherapy-records`. A resource is read and checked
//! (`fhir-profiles`), filed under its patient's pseudonym with its labels, author and service
//! event (`prepare`), and stored with the audit record of the change in one transaction. The
//! writer gets back what they wrote, as stored, whatever the patient's restrictions: an answer
//! shaped by them would tell a clinic the patient has restricted it. Reading it afterwards
//! passes the enforcement point like any read.
//!
//! A clinic's record becomes a document whose ids derive from the organisation and the record
//! id with the index key, so the same record sent again yields the same document (nothing new
//! written), and a changed record becomes a new version of that document.

use audit_log::{Action, Agent, Outcome, ResourceRef};
use consent::{PatientConsent, Principal, SecurityLabel};
use fhir_profiles::record::CheckedRecord;
use fhir_profiles::search::index_facts;
use fhir_profiles::translate::{translate, DocumentIds, TERHIKKI_SYSTEM};
use fhir_profiles::{
    document_custodian, parse_resource, parse_translated, ParsedResource, PatientLink, ProfileError, ResourceType,
    ServiceEventLink, HETU_SYSTEM,
};
use serde_json::Value;
use store::audit::AuditRecord;
use store::time::{instant, now_millis};
use store::{Head, NewResource, Store, Stored, Write, WriteKind};

use crate::audit;
use crate::enforce::Enforcement;
use crate::error::{printable, GatewayError};

/// What filing a clinic's record did: the import's per-line status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filing {
    /// A new document.
    Created,
    /// A new version of the record's document.
    NewVersion,
    /// The same record again: nothing written but the audit record.
    Unchanged,
}

impl Filing {
    pub fn as_str(self) -> &'static str {
        match self {
            Filing::Created => "created",
            Filing::NewVersion => "new version",
            Filing::Unchanged => "unchanged",
        }
    }
}

/// What a write stored, and the body its writer gets back: what they wrote, as stored. It is
/// theirs whatever the patient's restrictions (they sent it), and an answer that depended on
/// them would tell a clinic the patient has restricted it, and so that the patient is in the
/// register. A resent record answers with the stored document, which is what was sent.
pub struct Filed {
    /// Whether a new resource (or document) was created, rather than a new version or nothing.
    pub created: bool,
    pub head: Head,
    pub body: Vec<u8>,
}

/// Only the types a client may write: the access log is the gateway's own.
pub fn ensure_writable(resource_type: ResourceType) -> Result<(), GatewayError> {
    if resource_type.is_writable() {
        Ok(())
    } else {
        Err(GatewayError::MethodNotAllowed(format!("{resource_type} is read-only: only the gateway writes it")))
    }
}

/// Who writes a resource of this type, recorded as its author: healthcare professionals write
/// clinical records (as organisation and practitioner); a patient writes their own Consents and
/// nothing else (no author: the Consent names its patient). Auditors and administrators write
/// nothing.
pub fn author(principal: &Principal, resource_type: ResourceType) -> Result<Option<(String, String)>, GatewayError> {
    match (principal, resource_type) {
        (Principal::Patient { .. }, ResourceType::Consent) => Ok(None),
        (_, ResourceType::Consent) => Err(GatewayError::Forbidden(
            "a patient's Consents are written by the patient, through their own token".into(),
        )),
        (Principal::Professional(professional), _) => {
            Ok(Some((professional.organisation.clone(), professional.practitioner.clone())))
        }
        (other, _) => Err(GatewayError::Forbidden(format!("a {} does not write clinical records", other.kind()))),
    }
}

/// `POST /{type}`: a new resource under a server-chosen id.
pub fn create(
    enforcement: &Enforcement,
    principal: &Principal,
    agent: &Agent,
    resource_type: ResourceType,
    bytes: &[u8],
) -> Result<Filed, GatewayError> {
    let writer = author(principal, resource_type)?;
    let store = enforcement.store();
    let parsed = parse_resource(resource_type, bytes)?;
    check_own_consent(store, principal, &parsed)?;
    // The server assigns ids on create; the pseudonym of a Patient without a HETU derives
    // from that id, so the id is chosen before the pseudonym.
    let id = uuid::Uuid::new_v4().to_string();
    let resource = prepare(store, parsed, Some(&id), writer)?;
    let record = write_record(agent, resource_type, &id, 1, resource.patient.clone());
    let (head, body) = store.create(resource, &id, vec![record])?;
    Ok(Filed { created: true, head, body })
}

/// `PUT /{type}/{id}`: a new version of a resource the writer may see. `expected` is the
/// version the client last saw, if it said (`If-Match`).
pub fn update(
    enforcement: &Enforcement,
    principal: &Principal,
    agent: &Agent,
    resource_type: ResourceType,
    id: &str,
    expected: Option<i64>,
    bytes: &[u8],
) -> Result<Filed, GatewayError> {
    let writer = author(principal, resource_type)?;
    let store = enforcement.store();
    let parsed = parse_resource(resource_type, bytes)?;
    if parsed.id() != Some(id) {
        return Err(GatewayError::BadRequest("the resource's id must equal the id in the URL".into()));
    }
    let gate = enforcement.gate(principal);
    // A resource the caller may not see is, to them, one that does not exist.
    let Some(current) = gate.released_head(resource_type, id)? else {
        gate.record_not_found(Action::Update, agent)?;
        return Err(GatewayError::not_found(resource_type, id));
    };
    check_own_consent(store, principal, &parsed)?;
    let resource = prepare(store, parsed, Some(id), writer)?;
    let record = write_record(agent, resource_type, id, current.get().version + 1, resource.patient.clone());
    let (head, body) = store.update(resource, id, expected, vec![record])?;
    Ok(Filed { created: false, head, body })
}

/// A Consent is the patient's own: it must name the patient whose token wrote it, and express
/// its choices in the shapes the consent crate enforces, which it refuses naming the element.
/// Anything else is one answer, so a patient cannot probe which Patient ids exist.
fn check_own_consent(store: &Store, principal: &Principal, parsed: &ParsedResource) -> Result<(), GatewayError> {
    let Principal::Patient { .. } = principal else { return Ok(()) };
    // Under any of their names: while a re-index runs, their rows may still have an older one.
    let own = match &parsed.patient {
        PatientLink::Stored(id) => store.patient_pseudonym(id)?.is_some_and(|stored| principal.is_patient(&stored)),
        _ => false,
    };
    if !own {
        return Err(GatewayError::Forbidden("a patient writes only their own Consents".into()));
    }
    PatientConsent::from_fhir(&Value::Object(parsed.json.clone())).map_err(|e| {
        GatewayError::from(ProfileError::business_rule(
            format!("not a choice the gateway can enforce: expected {}", e.expected()),
            e.path(),
        ))
    })?;
    Ok(())
}

/// The service event a resource belongs to: named by the resource, or that of the stored
/// Encounter it points at, which must be the same patient's.
fn service_event(
    store: &Store,
    link: &ServiceEventLink,
    patient: Option<&str>,
) -> Result<Option<String>, GatewayError> {
    match link {
        ServiceEventLink::Oid(oid) => Ok(Some(oid.clone())),
        ServiceEventLink::None => Ok(None),
        ServiceEventLink::Encounter(id) => match store.head(ResourceType::Encounter, id)? {
            Some(encounter) if encounter.patient.is_some() && encounter.patient.as_deref() == patient => {
                Ok(encounter.service_event)
            }
            _ => Err(GatewayError::Unprocessable(format!(
                "the referenced Encounter/{} does not exist for this patient",
                printable(id)
            ))),
        },
    }
}

/// Everything the store needs of a parsed resource: its patient's pseudonym, its labels, its
/// index facts. Runs in the blocking pool (a referenced Patient is looked up).
fn prepare(
    store: &Store,
    parsed: ParsedResource,
    id_for_pseudonym: Option<&str>,
    author: Option<(String, String)>,
) -> Result<NewResource, GatewayError> {
    // A document is filed under the organisation that answers for it: only that organisation
    // may send it.
    if parsed.resource_type == ResourceType::Bundle
        && document_custodian(&parsed.json).as_deref() != author.as_ref().map(|(organisation, _)| organisation.as_str())
    {
        let message = "the document's custodian is not the organisation of the client certificate";
        return Err(ProfileError::business_rule(message, "Bundle.entry[0].resource.custodian").into());
    }
    // A patient is filed under the name their rows have: the index key version in force's, or
    // an older one's while a re-index has not yet moved them.
    let patient = match &parsed.patient {
        PatientLink::Itself => Some(match (parsed.hetus.first(), id_for_pseudonym) {
            (Some(hetu), _) => store.patient_for_write(|p| p.patient_from_hetu(hetu))?,
            (None, Some(id)) => store.patient_for_write(|p| p.patient_from_id(id))?,
            (None, None) => return Err(GatewayError::Internal("a Patient is always written with an id".into())),
        }),
        PatientLink::Stored(patient_id) => Some(store.patient_pseudonym(patient_id)?.ok_or_else(|| {
            GatewayError::Unprocessable(format!("the referenced Patient/{} does not exist", printable(patient_id)))
        })?),
        PatientLink::Embedded(hetu) => Some(store.patient_for_write(|p| p.patient_from_hetu(hetu))?),
        PatientLink::None => None,
    };
    let mut labels: Vec<&str> = parsed
        .security
        .iter()
        .filter_map(|coding| SecurityLabel::from_coding(&coding.system, &coding.code))
        .map(SecurityLabel::code)
        .collect();
    labels.sort_unstable();
    labels.dedup();
    let facts = index_facts(parsed.resource_type, &parsed.json);
    let service_event = service_event(store, &parsed.service_event, patient.as_deref())?;
    let (author_org, author_practitioner) = author.unzip();
    Ok(NewResource {
        resource_type: parsed.resource_type,
        security_labels: labels.join(" "),
        json: parsed.json,
        patient,
        facts,
        author_org,
        author_practitioner,
        service_event,
    })
}

/// The audit record of a create or update, committed with it. A Consent written is a change of
/// the patient's choices.
fn write_record(
    agent: &Agent,
    resource_type: ResourceType,
    id: &str,
    version: i64,
    patient: Option<String>,
) -> AuditRecord {
    let action = match resource_type {
        ResourceType::Consent => Action::ConsentChange,
        _ if version == 1 => Action::Create,
        _ => Action::Update,
    };
    let resource =
        ResourceRef { resource_type: resource_type.to_string(), id: id.to_owned(), version: Some(version.to_string()) };
    AuditRecord::new(&audit::event(action, Outcome::Success, agent, patient, vec![resource], audit::now()))
}

/// `POST /psychotherapy-records`: a checked record filed as a document, by a professional of
/// the organisation the record names. Two submissions of the same new record at once both try
/// to create its document; the one that loses sees the winner's document on a second run and
/// answers as a repeat.
pub fn submit_record(
    enforcement: &Enforcement,
    principal: &Principal,
    agent: &Agent,
    checked: &CheckedRecord,
) -> Result<Filed, GatewayError> {
    let (filing, head, body) = file_retrying(enforcement, principal, agent, checked)?;
    Ok(Filed { created: filing == Filing::Created, head, body })
}

/// One record of a bulk import (`$import`): the same checks, translation, idempotency,
/// encryption and audit as `submit_record`, answered with what was done alone (the import
/// answers no bodies).
pub fn import_record(
    enforcement: &Enforcement,
    principal: &Principal,
    agent: &Agent,
    checked: &CheckedRecord,
) -> Result<Filing, GatewayError> {
    Ok(file_retrying(enforcement, principal, agent, checked)?.0)
}

/// Only a healthcare professional submits a clinic's records.
pub fn submitter(principal: &Principal) -> Result<&consent::Professional, GatewayError> {
    match principal {
        Principal::Professional(professional) => Ok(professional),
        other => Err(GatewayError::Forbidden(format!("a {} does not submit clinical records", other.kind()))),
    }
}

/// A record of the organisation of the client certificate, sent by one of its professionals.
fn own_record<'p>(
    principal: &'p Principal,
    checked: &CheckedRecord,
) -> Result<&'p consent::Professional, GatewayError> {
    let professional = submitter(principal)?;
    if checked.record.organization.oid != professional.organisation {
        let message = "the record's organisation is not the organisation of the client certificate";
        return Err(ProfileError::business_rule(message, "organization.oid").into());
    }
    Ok(professional)
}

/// A dry run of `import_record`: the record is translated and its document checked by the
/// profiles exactly as a filing would, and nothing is stored or looked up.
pub fn check_record(store: &Store, principal: &Principal, checked: &CheckedRecord) -> Result<(), GatewayError> {
    let professional = own_record(principal, checked)?;
    let pseudonyms = store.pseudonyms();
    let (organisation, record_id) = (professional.organisation.as_str(), checked.record.record_id.as_str());
    let ids = DocumentIds::derive(checked, |part| pseudonyms.uuid(&["document", organisation, record_id, part]));
    let document = translate(checked, &ids, &instant(now_millis()));
    parse_translated(ResourceType::Bundle, document).map_err(translation_bug)?;
    Ok(())
}

/// Files a record; two submissions of the same new record at once both try to create its
/// document, and the one that loses sees the winner's document on a second run.
fn file_retrying(
    enforcement: &Enforcement,
    principal: &Principal,
    agent: &Agent,
    checked: &CheckedRecord,
) -> Result<(Filing, Head, Vec<u8>), GatewayError> {
    own_record(principal, checked)?;
    let file = || file_record(enforcement, principal, checked, agent);
    match file() {
        Err(GatewayError::Conflict(_)) => file(),
        other => other,
    }
}

/// Everything but what changes on every assembly: two documents of the same record compare
/// equal when this is equal.
fn content(mut document: Value) -> Value {
    if let Some(object) = document.as_object_mut() {
        object.remove("meta");
        object.remove("id");
        object.remove("timestamp");
    }
    document
}

/// A record's document ids and its stored document, if any. Ids are derived from the
/// organisation and record id under the index key version in force; a record first filed under
/// an older version keeps the ids it was given then (ids never change), so a repeat looks under
/// every version, newest first.
fn document_ids(
    store: &Store,
    checked: &CheckedRecord,
    organisation: &str,
) -> Result<(DocumentIds, Option<Head>), GatewayError> {
    let record_id = checked.record.record_id.as_str();
    let mut newest = None;
    for pseudonyms in store.index_keys().every() {
        let ids = DocumentIds::derive(checked, |part| pseudonyms.uuid(&["document", organisation, record_id, part]));
        if let Some(head) = store.head(ResourceType::Bundle, &ids.document)? {
            return Ok((ids, Some(head)));
        }
        newest.get_or_insert(ids);
    }
    let ids = newest.ok_or_else(|| GatewayError::Internal("no index key version is held".into()))?;
    Ok((ids, None))
}

/// Files a checked record: resolves its participants, translates it, and stores the document
/// (new, a new version, or nothing for an identical repeat) with any new participants, in one
/// transaction. Answers what was done, the document's head and its body.
fn file_record(
    enforcement: &Enforcement,
    principal: &Principal,
    checked: &CheckedRecord,
    agent: &Agent,
) -> Result<(Filing, Head, Vec<u8>), GatewayError> {
    let professional = submitter(principal)?;
    let (organisation, practitioner_id) = (professional.organisation.as_str(), professional.practitioner.as_str());
    let store = enforcement.store();
    let (mut ids, existing) = document_ids(store, checked, organisation)?;
    let record = &checked.record;
    let patient = participant(store, ResourceType::Patient, HETU_SYSTEM, checked.hetu.expose())?;
    let practitioner = participant(store, ResourceType::Practitioner, TERHIKKI_SYSTEM, &record.therapist.terhikki)?;
    let oid = format!("urn:oid:{}", record.organization.oid);
    let organization = participant(store, ResourceType::Organization, "urn:ietf:rfc:3986", &oid)?;
    ids.patient = patient.id().to_owned();
    ids.practitioner = practitioner.id().to_owned();
    ids.organization = organization.id().to_owned();
    let document = translate(checked, &ids, &instant(now_millis()));
    // Compared with the stored version only when there is one: a copy of the whole document
    // was a twentieth of a new submission's time.
    let compared = existing.as_ref().map(|_| content(document.clone()));
    let author = (organisation.to_owned(), practitioner_id.to_owned());
    let mut writes = Vec::new();
    let participants = [
        (&patient, ResourceType::Patient, HETU_SYSTEM, checked.hetu.expose()),
        (&practitioner, ResourceType::Practitioner, TERHIKKI_SYSTEM, record.therapist.terhikki.as_str()),
        (&organization, ResourceType::Organization, "urn:ietf:rfc:3986", oid.as_str()),
    ];
    for (found, resource_type, _, _) in participants {
        if let Participant::New(id) = found {
            let entry = entry_resource(&document, id)?;
            let parsed = parse_translated(resource_type, entry).map_err(translation_bug)?;
            let resource = prepare(store, parsed, Some(id), Some(author.clone()))?;
            writes.push(Write { resource, id: id.clone(), kind: WriteKind::CreateIfAbsent });
        }
    }
    // The profiles and the gateway's rules read what the translation made: a translation bug is
    // refused here, not stored.
    let parsed = parse_translated(ResourceType::Bundle, document).map_err(translation_bug)?;
    let id = ids.document.clone();
    let resource = prepare(store, parsed, Some(&id), Some(author))?;
    let kind = match (existing, compared) {
        (Some(head), Some(compared)) => {
            // Only the therapist who wrote the document may send a new version of it. Asked of
            // authorship, not of the enforcement point: a patient's denial may hide the
            // document even from its author, and must not freeze the author's record.
            let authored = head.author() == (Some(organisation), Some(practitioner_id));
            if !authored {
                // A try at another therapist's document is a use of the patient's record: it is
                // in their log and the auditors', as a refused submission.
                let document = ResourceRef { resource_type: "Bundle".into(), id: head.id.clone(), version: None };
                store.record(vec![submission_record(agent, document, head.patient.clone(), Outcome::MinorFailure)])?;
                return Err(GatewayError::Forbidden(
                    "this record id belongs to a document only its authoring therapist may change".into(),
                ));
            }
            let current = store
                .version(ResourceType::Bundle, &id, head.version)?
                .ok_or_else(|| GatewayError::Internal("the current version vanished".into()))?;
            if let Some(body) = enforcement.gate(principal).authored_version_if_equal(&current, content, &compared)? {
                // Nothing written, but the submission (and what it answered) is recorded. The
                // author gets back the stored document: what they sent, as first filed.
                let resource = ResourceRef {
                    resource_type: "Bundle".into(),
                    id: head.id.clone(),
                    version: Some(head.version.to_string()),
                };
                store.record(vec![submission_record(agent, resource, head.patient.clone(), Outcome::Success)])?;
                return Ok((Filing::Unchanged, head, body));
            }
            WriteKind::Update(Some(head.version))
        }
        _ => WriteKind::Create,
    };
    let version = match &kind {
        WriteKind::Update(Some(current)) => current + 1,
        _ => 1,
    };
    let filing = if matches!(kind, WriteKind::Create) { Filing::Created } else { Filing::NewVersion };
    let record = submission_record(
        agent,
        ResourceRef { resource_type: "Bundle".into(), id: id.clone(), version: Some(version.to_string()) },
        resource.patient.clone(),
        Outcome::Success,
    );
    writes.push(Write { resource, id, kind });
    // The participants, the document and the audit record commit together, or not at all.
    let (head, body) = store
        .write_all(writes, vec![record])?
        .pop()
        .flatten()
        .ok_or_else(|| GatewayError::Internal("the document was not written".into()))?;
    for (found, resource_type, system, value) in participants {
        if let Participant::New(id) = found {
            store.remember_identifier(resource_type, system, value, id);
        }
    }
    Ok((filing, head, body))
}

/// The audit record of a clinic's submission of `document`: done, or refused (`outcome`).
fn submission_record(agent: &Agent, document: ResourceRef, patient: Option<String>, outcome: Outcome) -> AuditRecord {
    AuditRecord::new(&audit::event(Action::Submission, outcome, agent, patient, vec![document], audit::now()))
}

/// A document's Patient, Practitioner or Organization: one stored resource per identifier,
/// shared by every document that names it.
enum Participant {
    /// Stored before, by an earlier document or through the FHIR API.
    Found(String),
    /// Not stored yet: created with the document, under an id derived from the identifier (so
    /// concurrent first documents agree on it).
    New(String),
}

impl Participant {
    fn id(&self) -> &str {
        match self {
            Participant::Found(id) | Participant::New(id) => id,
        }
    }
}

fn participant(
    store: &Store,
    resource_type: ResourceType,
    system: &str,
    value: &str,
) -> Result<Participant, GatewayError> {
    // The document refers to it as `urn:uuid:{id}`, so only a UUID id can be reused.
    let found = store.id_by_identifier(resource_type, system, value, |id| {
        uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
    })?;
    Ok(match found {
        Some(id) => Participant::Found(id),
        None => Participant::New(store.pseudonyms().uuid(&["participant", resource_type.as_str(), system, value])),
    })
}

/// The resource of the document's entry `urn:uuid:{id}`.
fn entry_resource(document: &Value, id: &str) -> Result<Value, GatewayError> {
    let full_url = format!("urn:uuid:{id}");
    document["entry"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["fullUrl"] == full_url.as_str()))
        .map(|entry| entry["resource"].clone())
        .ok_or_else(|| GatewayError::Internal("the translation left out a participant".into()))
}

fn translation_bug(error: ProfileError) -> GatewayError {
    GatewayError::Internal(format!("the translation produced an unreadable document: {error}"))
}
