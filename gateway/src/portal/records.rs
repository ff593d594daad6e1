//! What the portal reads, always as the signed-in patient through the one enforcement point, in
//! the blocking pool: the patient's documents (listed, and one opened for a person to read),
//! their restrictions, and the names of the professionals and organisations that appear in
//! them. Every read of the patient's data is committed to the audit log before it is shown.

use std::collections::HashMap;
use std::sync::Arc;

use audit_log::{Action, Agent};
use consent::Principal;
use fhir_profiles::listing::{person_name, profession, Listing};
use fhir_profiles::{icd10_text, ResourceType};
use serde_json::Value;
use store::cache::BoundedMap;
use store::{Criterion, Head, ListedHead, Store, Stored};

use crate::enforce::{Enforcement, Gate, Released};
use crate::error::GatewayError;
use crate::portal::choices::Restriction;

const TERHIKKI: &str = "urn:oid:1.2.246.537.26";
const URI: &str = "urn:ietf:rfc:3986";

/// The signed-in patient's reads: who they are to the enforcement point and the audit log.
pub struct Reader {
    pub principal: Principal,
    pub agent: Agent,
    pub enforcement: Arc<Enforcement>,
    pub directory: Arc<Directory>,
}

/// Organisation OIDs, and (service event OID, organisation OID) pairs.
pub type Holders = (Vec<String>, Vec<(String, String)>);

/// One document as the list shows it.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub id: String,
    /// The Composition's date (FHIR dateTime).
    pub date: String,
    pub organisation: String,
    pub service_event: Option<String>,
    /// The service event for a person: its type and the day it began, from the document.
    pub service_event_label: Option<(String, String)>,
    pub kind: String,
    pub author: String,
    pub profession: Option<String>,
    pub restricted: bool,
}

/// One document opened for its patient: the narrative as paragraphs of text, never markup.
#[derive(Debug, Default)]
pub struct Document {
    pub summary: Summary,
    pub note: Vec<String>,
    /// Code, its text, whether primary.
    pub diagnoses: Vec<(String, String, bool)>,
    /// Instrument, score, date.
    pub assessments: Vec<(String, String, String)>,
    pub risk: Vec<String>,
    pub plan: Vec<String>,
}

/// A restriction of the patient's as stored: its Consent's id and version.
#[derive(Clone, Debug)]
pub struct StoredRestriction {
    pub id: String,
    pub restriction: Restriction,
}

/// Names of practitioners ("name, profession") and organisations by identifier, read from the
/// directory resources clinics submit, and kept by the node: names seldom change, and the
/// access log names the same few people again and again.
pub struct Directory {
    names: BoundedMap<Option<String>>,
    /// Each patient's data holders, briefly: the access log's filter lists them on every page.
    holders: BoundedMap<(std::time::Instant, Arc<Holders>)>,
}

/// How long a patient's list of holders is reused: a new organisation appears in the filter
/// after at most this long.
const HOLDERS_FOR: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for Directory {
    fn default() -> Self {
        Directory { names: BoundedMap::new(4096), holders: BoundedMap::new(4096) }
    }
}

impl Directory {
    /// The name of a practitioner (Terhikki number) or organisation (OID), if `vouching` (an
    /// organisation's OID: the practitioner's, or the organisation itself) has submitted one.
    /// Any clinic may file a directory resource under any identifier, so a name another clinic
    /// filed is not shown: it could put any name on a clinic's staff in patients' logs.
    /// Directory resources are nobody's clinical data: this gate is not recorded.
    pub fn name(
        &self,
        gate: &Gate<'_>,
        store: &Store,
        kind: ResourceType,
        identifier: &str,
        vouching: &str,
    ) -> Option<String> {
        let key = format!("{kind}|{identifier}|{vouching}");
        if let Some(known) = self.names.get(&key) {
            return known;
        }
        let (system, value) = match kind {
            ResourceType::Practitioner => (TERHIKKI, identifier.to_owned()),
            _ => (URI, format!("urn:oid:{identifier}")),
        };
        let found = (|| -> Result<Option<String>, GatewayError> {
            let Some(id) = store.id_by_identifier(kind, system, &value, |_| true)? else { return Ok(None) };
            let Some(row) = store.current(kind, &id)? else { return Ok(None) };
            if row.author().0 != Some(vouching) {
                return Ok(None);
            }
            let Some(body) = gate.open_if_released(row)? else { return Ok(None) };
            let json: Value = serde_json::from_slice(&body).unwrap_or_default();
            Ok(match kind {
                ResourceType::Practitioner => person_name(&json).map(|name| match profession(&json) {
                    Some(profession) => format!("{name}, {profession}"),
                    None => name,
                }),
                _ => json["name"].as_str().map(str::to_owned),
            })
        })();
        match found {
            Ok(name) => {
                self.names.put(&key, name.clone());
                name
            }
            // Not remembered: the next page asks again.
            Err(_) => None,
        }
    }
}

/// The text of a generated narrative `div`, as paragraphs: tags dropped, entities read. What
/// comes out is text, escaped again when it is written into a page.
pub fn paragraphs(div: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut rest = div;
    while let Some(start) = rest.find('<') {
        current.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else { break };
        let tag = &rest[start + 1..start + end];
        if tag.starts_with("/p") || tag.starts_with("br") || tag.starts_with("/li") || tag.starts_with("/div") {
            out.push(std::mem::take(&mut current));
        }
        rest = &rest[start + end + 1..];
    }
    current.push_str(rest);
    out.push(current);
    out.into_iter()
        .map(|p| {
            p.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

impl Reader {
    pub fn store(&self) -> &Store {
        self.enforcement.store()
    }

    /// The name the patient's rows are filed under now (see `Store::patient_name_now`).
    pub fn pseudonym(&self) -> Result<String, GatewayError> {
        Ok(self.store().patient_name_now(&self.pseudonyms())?)
    }

    /// Every name the patient has had, newest first: what their audit entries name them by.
    pub fn pseudonyms(&self) -> Vec<String> {
        self.principal.own_pseudonyms().unwrap_or_default()
    }

    /// The patient's heads of one type, through the index by patient.
    fn heads(&self, resource_type: ResourceType) -> Result<Vec<Head>, GatewayError> {
        Ok(self.store().search(resource_type, &[Criterion::Patients(self.pseudonyms())])?)
    }

    /// The stored Patient of the signed-in patient, the one their Consents name.
    pub fn patient_id(&self) -> Result<Option<String>, GatewayError> {
        Ok(self.heads(ResourceType::Patient)?.into_iter().next().map(|head| head.id))
    }

    /// A page of the patient's documents, the most recently filed first, and how many there are.
    pub fn documents(&self, offset: usize, count: usize) -> Result<(usize, Vec<Summary>), GatewayError> {
        let gate = self.gate();
        let restrictions = self.restrictions_with(&gate)?;
        // A patient receives every row of their own (`consent::receives_all_of`): the database
        // pages and counts their documents, and the gate judges the page.
        let me = self.pseudonym()?;
        // Each document is listed from the listing its head carries, not from the document.
        let (total, rows) = self.store().patient_page_listed(ResourceType::Bundle, &me, offset, count)?;
        let rows = gate.release_patient_page(&me, rows)?;
        let total = usize::try_from(total).unwrap_or(0);
        let mut summaries = Vec::with_capacity(rows.len());
        for row in &rows {
            // A listing that does not read (none should) is made again from the document.
            let listing = match gate.open_listing(row)?.and_then(|l| serde_json::from_slice(&l).ok()) {
                Some(listing) => Some(listing),
                None => self.listing_from_body(&gate, row)?,
            };
            let head = &row.get().head;
            summaries.push(summary_of(&head.id, listing, head.service_event.as_deref(), &restrictions));
        }
        gate.record(Action::Search, &self.agent, Some("portal: my documents"))?;
        Ok((total, summaries))
    }

    /// The listing of a document stored before listings were: read from the version its head
    /// names.
    fn listing_from_body(&self, gate: &Gate<'_>, row: &Released<ListedHead>) -> Result<Option<Listing>, GatewayError> {
        let head = &row.get().head;
        let Some(version) = self.store().version(ResourceType::Bundle, &head.id, head.version)? else {
            return Ok(None);
        };
        let Some(body) = gate.open_version_of(row, version)? else { return Ok(None) };
        Ok(Listing::of_document(&body, head.service_event.as_deref()))
    }

    /// One document of the patient's; `None` for one that is not theirs or does not exist,
    /// which the page answers alike.
    pub fn document(&self, id: &str) -> Result<Option<Document>, GatewayError> {
        let gate = self.gate();
        let restrictions = self.restrictions_with(&gate)?;
        let Some(row) = self.store().current(ResourceType::Bundle, id)? else {
            gate.record_not_found(Action::Read, &self.agent)?;
            return Ok(None);
        };
        let service_event = row.service_event.clone();
        let Some(body) = gate.open_if_released(row)? else {
            gate.record_not_found(Action::Read, &self.agent)?;
            return Ok(None);
        };
        gate.record(Action::Read, &self.agent, None)?;
        Ok(Some(document(id, &body, service_event.as_deref(), &restrictions)))
    }

    /// The patient's restrictions in force, read as themselves (their own data), recorded.
    pub fn restrictions(&self) -> Result<Vec<StoredRestriction>, GatewayError> {
        let gate = self.gate();
        let restrictions = self.restrictions_with(&gate)?;
        gate.record(Action::Search, &self.agent, Some("portal: my restrictions"))?;
        Ok(restrictions)
    }

    fn restrictions_with(&self, gate: &Gate<'_>) -> Result<Vec<StoredRestriction>, GatewayError> {
        Ok(self
            .consents_with(gate)?
            .into_iter()
            .filter_map(|(id, json)| Some(StoredRestriction { id, restriction: Restriction::from_consent(&json)? }))
            .collect())
    }

    /// The patient's Consents (current versions), by id, judged by `gate`; the caller records.
    pub fn consents_with(&self, gate: &Gate<'_>) -> Result<Vec<(String, Value)>, GatewayError> {
        let heads = gate.release(self.heads(ResourceType::Consent)?)?;
        // Their current versions in one query, each judged again as a version.
        let rows = gate.release(self.store().current_versions(heads.iter().map(Released::get))?)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let body = gate.open(row)?;
            out.push((row.get().id.clone(), serde_json::from_slice(&body).unwrap_or_default()));
        }
        Ok(out)
    }

    /// A gate for this patient, for reads the caller records.
    pub fn gate(&self) -> Gate<'_> {
        self.enforcement.gate(&self.principal)
    }

    /// Every head of the patient's clinical data, for the preview: each type the API serves
    /// about a patient, except their own Consents, which no one else receives.
    pub fn clinical_heads(&self) -> Result<Vec<Head>, GatewayError> {
        let mut heads = Vec::new();
        for resource_type in ResourceType::ALL {
            if resource_type.is_patient_data()
                && !matches!(resource_type, ResourceType::Consent | ResourceType::AuditEvent)
            {
                heads.extend(self.heads(resource_type)?);
            }
        }
        Ok(heads)
    }

    /// The organisations that hold the patient's data, by OID, and the service events of their
    /// documents with the organisation that recorded each.
    pub fn holders(&self) -> Result<Arc<Holders>, GatewayError> {
        let pseudonyms = self.pseudonyms();
        let key = pseudonyms.first().map_or("", String::as_str);
        if let Some((at, holders)) = self.directory.holders.get(key) {
            if at.elapsed() < HOLDERS_FOR {
                return Ok(holders);
            }
        }
        let mut organisations = Vec::new();
        let mut events = Vec::new();
        for head in self.heads(ResourceType::Bundle)? {
            if let Some(org) = &head.author_org {
                if !organisations.contains(org) {
                    organisations.push(org.clone());
                }
                if let Some(event) = &head.service_event {
                    if !events.iter().any(|(e, _)| e == event) {
                        events.push((event.clone(), org.clone()));
                    }
                }
            }
        }
        let holders = Arc::new((organisations, events));
        self.directory.holders.put(key, (std::time::Instant::now(), holders.clone()));
        Ok(holders)
    }

    /// The organisations whose professionals reached the patient's data lately (the newest 500
    /// entries of their access log), for choosing one to deny.
    pub fn readers(&self) -> Result<Vec<String>, GatewayError> {
        let query = store::audit::LogQuery {
            patients: Some(self.pseudonyms()),
            count: 500,
            without_total: true,
            ..store::audit::LogQuery::default()
        };
        let (_, entries) = self.store().read_log(&query)?;
        let mut organisations: Vec<String> = Vec::new();
        for (_, bytes) in entries {
            if let Ok(audit_log::AuditEvent {
                agent: Agent { who: audit_log::Who::Practitioner { organisation, .. }, .. },
                ..
            }) = audit_log::AuditEvent::from_canonical(&bytes)
            {
                if !organisations.contains(&organisation) {
                    organisations.push(organisation);
                }
            }
        }
        Ok(organisations)
    }

    /// The name of a practitioner of `organisation`, as that organisation filed it, or `None`.
    pub fn practitioner_name(&self, terhikki: &str, organisation: &str) -> Option<String> {
        let gate = self.enforcement.gate(&self.principal);
        self.directory.name(&gate, self.store(), ResourceType::Practitioner, terhikki, organisation)
    }

    /// The name of an organisation, as it filed it itself, or `None`.
    pub fn organisation_name(&self, oid: &str) -> Option<String> {
        self.directory.name(&self.enforcement.gate(&self.principal), self.store(), ResourceType::Organization, oid, oid)
    }

    /// The names of the organisation OIDs, in a map (each looked up once).
    pub fn organisation_names(&self, oids: impl IntoIterator<Item = String>) -> HashMap<String, String> {
        oids.into_iter().filter_map(|oid| self.organisation_name(&oid).map(|name| (oid, name))).collect()
    }
}

/// The entries of a document Bundle by `fullUrl`.
fn entries(bundle: &Value) -> HashMap<&str, &Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["fullUrl"].as_str()?, &e["resource"])))
        .collect()
}

/// A document's line in the list, from its listing (`None` for one that was unreadable).
fn summary_of(
    id: &str,
    listing: Option<Listing>,
    service_event: Option<&str>,
    restrictions: &[StoredRestriction],
) -> Summary {
    let listing = listing.unwrap_or_default();
    Summary {
        id: id.to_owned(),
        date: listing.date,
        organisation: listing.organisation,
        service_event: service_event.map(str::to_owned),
        service_event_label: listing.service_event,
        kind: listing.kind,
        author: listing.author,
        profession: listing.profession,
        restricted: restrictions.iter().any(|r| r.restriction.covers(service_event)),
    }
}

fn document(id: &str, body: &[u8], service_event: Option<&str>, restrictions: &[StoredRestriction]) -> Document {
    let bundle: Value = serde_json::from_slice(body).unwrap_or_default();
    let bundle = &bundle;
    let entries = entries(bundle);
    let composition = &bundle["entry"][0]["resource"];
    let listing = bundle.as_object().and_then(|bundle| Listing::of_bundle(bundle, service_event));
    let mut document =
        Document { summary: summary_of(id, listing, service_event, restrictions), ..Document::default() };
    for section in composition["section"].as_array().into_iter().flatten() {
        let text = paragraphs(section["text"]["div"].as_str().unwrap_or(""));
        let referenced = section["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["reference"].as_str().and_then(|r| entries.get(r).copied()));
        match section["code"]["coding"][0]["code"].as_str() {
            Some("61150-9") => document.note.extend(text),
            Some("11450-4") => {
                for condition in referenced {
                    let code = condition["code"]["coding"][0]["code"].as_str().unwrap_or("").to_owned();
                    let text = icd10_text(&code).unwrap_or("").to_owned();
                    document.diagnoses.push((code, text, false));
                }
                // The session Encounter ranks them: rank 1 is the primary diagnosis.
                if let Some(first) = document.diagnoses.first_mut() {
                    first.2 = true;
                }
            }
            Some("51848-0") => {
                for observation in referenced {
                    let name = observation["code"]["text"]
                        .as_str()
                        .or_else(|| observation["code"]["coding"][0]["display"].as_str())
                        .unwrap_or("");
                    let value = observation["valueInteger"]
                        .as_i64()
                        .map(|v| v.to_string())
                        .or_else(|| observation["valueQuantity"]["value"].as_f64().map(|v| v.to_string()))
                        .unwrap_or_default();
                    let date = observation["effectiveDateTime"].as_str().unwrap_or("");
                    document.assessments.push((name.to_owned(), value, date.to_owned()));
                }
                document.risk.extend(text.into_iter().filter(|p| p.to_ascii_lowercase().contains("risk")));
            }
            Some("18776-5") => document.plan.extend(text),
            _ => {}
        }
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrative_becomes_text_paragraphs() {
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Mood &lt;script&gt;alert(1)&lt;/script&gt; &amp; sleep</p><p>Second</p></div>";
        assert_eq!(paragraphs(div), vec!["Mood <script>alert(1)</script> & sleep", "Second"]);
        assert!(paragraphs("<div><p></p></div>").is_empty());
    }

    #[test]
    fn the_example_document_reads_for_a_person() {
        let bundle: Value = serde_json::from_str(include_str!("../../../docs/example-document.json")).unwrap();
        let body = serde_json::to_vec(&bundle).unwrap();
        let document = document("b-1", &body, Some("1.2.246.10.12345678.10.1.77.1"), &[]);
        assert_eq!(document.summary.organisation, "Example Therapy Clinic");
        assert_eq!(document.summary.author, "Anna Korhonen");
        assert_eq!(document.summary.profession.as_deref(), Some("psychotherapist"));
        assert_eq!(document.note, vec!["Mood lower this week; sleep improved. Worked on behavioural activation."]);
        assert_eq!(document.diagnoses, vec![("F32.1".into(), "Depressive episode".into(), true)]);
        assert_eq!(document.assessments, vec![("PHQ-9".into(), "14".into(), "2026-03-02".into())]);
        assert_eq!(document.risk, vec!["Suicide risk: low"]);
        assert_eq!(document.plan.len(), 1);
        assert!(!document.summary.restricted);
        let label = Some(("Psychotherapy (regime/therapy)".to_owned(), "2026-01-10".to_owned()));
        assert_eq!(document.summary.service_event_label, label);
        assert_eq!(document.summary.date, "2026-03-02T14:00:00+02:00");
        assert_eq!(document.summary.kind, "Psychotherapy session note");
    }
}
