//! Reading resources by id: heads, versions, histories, and the consent generations the
//! enforcement point asks for. Nothing here decrypts (see `opener.rs`).

use std::collections::HashMap;

use diesel::prelude::*;
use fhir_profiles::ResourceType;

use crate::db::on_backend;
use crate::db::schema::{consent_generations, resource_heads, resource_versions};
use crate::error::StoreError;
use crate::rows::{head_on, Head, VersionRow};
use crate::store::Store;

/// Bound on ids in one `IN (...)` list: SQLite limits bound parameters per statement.
pub(crate) const CHUNK: usize = 500;

impl Store {
    /// The pseudonym of a stored Patient, `None` when there is no such Patient.
    pub fn patient_pseudonym(&self, patient_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.head(ResourceType::Patient, patient_id)?.and_then(|head| head.patient))
    }

    pub fn head(&self, resource_type: ResourceType, id: &str) -> Result<Option<Head>, StoreError> {
        Ok(head_on(&mut *self.conn()?, resource_type.as_str(), id)?)
    }

    /// The current version of a resource, found through its head in one query (a read by id).
    pub fn current(&self, resource_type: ResourceType, id: &str) -> Result<Option<VersionRow>, StoreError> {
        let current = resource_heads::table
            .filter(resource_heads::resource_type.eq(resource_type.as_str()))
            .filter(resource_heads::id.eq(id))
            .select(resource_heads::version)
            .single_value();
        let query = resource_versions::table
            .filter(resource_versions::resource_type.eq(resource_type.as_str()))
            .filter(resource_versions::id.eq(id))
            .filter(resource_versions::version.nullable().eq(current));
        Ok(on_backend!(&mut *self.conn()?, |conn| query.select(VersionRow::as_select()).get_result(conn).optional())?)
    }

    /// One version of a resource (the current one is named by its head).
    pub fn version(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: i64,
    ) -> Result<Option<VersionRow>, StoreError> {
        let query = resource_versions::table
            .filter(resource_versions::resource_type.eq(resource_type.as_str()))
            .filter(resource_versions::id.eq(id))
            .filter(resource_versions::version.eq(version));
        Ok(on_backend!(&mut *self.conn()?, |conn| query.select(VersionRow::as_select()).get_result(conn).optional())?)
    }

    /// Every version, newest first.
    pub fn history(&self, resource_type: ResourceType, id: &str) -> Result<Vec<VersionRow>, StoreError> {
        Ok(resource_versions::table
            .filter(resource_versions::resource_type.eq(resource_type.as_str()))
            .filter(resource_versions::id.eq(id))
            .order(resource_versions::version.desc())
            .select(VersionRow::as_select())
            .load(&mut self.conn()?)?)
    }

    /// The current versions of these heads (of any types), in the heads' order: one query per
    /// type and chunk of ids (older versions of the same ids are skipped in memory; they are
    /// few).
    pub fn current_versions<'h>(
        &self,
        heads: impl ExactSizeIterator<Item = &'h Head> + Clone,
    ) -> Result<Vec<VersionRow>, StoreError> {
        let mut wanted: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
        for head in heads.clone() {
            wanted.entry(head.resource_type.as_str()).or_default().insert(head.id.as_str(), head.version);
        }
        let mut found: HashMap<(String, String), VersionRow> = HashMap::with_capacity(heads.len());
        let mut conn = self.conn()?;
        for (resource_type, versions) in &wanted {
            let ids: Vec<&str> = versions.keys().copied().collect();
            for chunk in ids.chunks(CHUNK) {
                let rows: Vec<VersionRow> = resource_versions::table
                    .filter(resource_versions::resource_type.eq(resource_type))
                    .filter(resource_versions::id.eq_any(chunk))
                    .select(VersionRow::as_select())
                    .load(&mut conn)?;
                for row in rows {
                    if versions.get(row.id.as_str()) == Some(&row.version) {
                        found.insert((row.resource_type.clone(), row.id.clone()), row);
                    }
                }
            }
        }
        heads
            .map(|head| {
                let key = (head.resource_type.clone(), head.id.clone());
                found.remove(&key).ok_or_else(|| StoreError::Damaged("a head without its version".into()))
            })
            .collect()
    }

    /// The generation of each patient's Consents (how many Consent writes they have had), for
    /// the patients that have any. A patient missing from the answer has never had a Consent.
    pub fn consent_generations(&self, patients: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
        let mut generations = HashMap::new();
        if patients.is_empty() {
            return Ok(generations);
        }
        let mut conn = self.conn()?;
        let columns = (consent_generations::patient, consent_generations::generation);
        if let [patient] = patients {
            // The common case (a read): a statement SQLite keeps prepared, unlike an IN list.
            let query = consent_generations::table.filter(consent_generations::patient.eq(patient)).select(columns);
            let row: Option<(String, i64)> = on_backend!(&mut *conn, |conn| query.get_result(conn).optional())?;
            generations.extend(row);
            return Ok(generations);
        }
        for chunk in patients.chunks(CHUNK) {
            let rows: Vec<(String, i64)> = consent_generations::table
                .filter(consent_generations::patient.eq_any(chunk))
                .select(columns)
                .load(&mut conn)?;
            generations.extend(rows);
        }
        Ok(generations)
    }
}
