//! The end of retention: a patient's rows removed and their data key destroyed
//! (crypto-shredding), with the audit record of it in the same transaction.
//!
//! Which patients are past retention is the gateway's judgement (it reads their Patient
//! resources through the one `Opener`); this only pages the Patient heads for it and destroys
//! what it is told to. The audit log is never touched: its entries name the patient by
//! pseudonym only, and it records the destruction.

use diesel::prelude::*;

use crate::audit::{append, AuditRecord};
use crate::db::schema::{
    consent_generations, data_keys, patient_aliases, resource_heads, resource_versions, search_dates, search_tokens,
};
use crate::db::write_transaction;
use crate::error::StoreError;
use crate::resource::SHARED_SCOPE;
use crate::rows::Head;
use crate::store::Store;
use crate::time::now_millis;

/// What a destruction removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Destroyed {
    /// Resources (heads), of every type.
    pub resources: usize,
    /// Their versions.
    pub versions: usize,
    /// Data keys destroyed: after this, nothing sealed under them opens, wherever a copy of it is.
    pub data_keys: usize,
}

impl Store {
    /// A page of Patient heads in order of id, after `after`: the retention run reads every
    /// patient, a page at a time, through the primary key.
    pub fn patients_after(&self, after: &str, count: usize) -> Result<Vec<Head>, StoreError> {
        Ok(resource_heads::table
            .filter(resource_heads::resource_type.eq("Patient"))
            .filter(resource_heads::id.gt(after))
            .order(resource_heads::id)
            .limit(i64::try_from(count).unwrap_or(i64::MAX))
            .select(Head::as_select())
            .load(&mut *self.conn()?)?)
    }

    /// How many resources the patient (by pseudonym) holds, of every type: the dry run's count.
    pub fn patient_resources(&self, patient: &str) -> Result<usize, StoreError> {
        let count: i64 =
            resource_heads::table.filter(resource_heads::patient.eq(patient)).count().get_result(&mut *self.conn()?)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Removes every resource of the patient `patient` (by pseudonym: heads, versions, search
    /// rows), destroys their data key, and appends `records` (the destruction, as the operator's
    /// action), all in one transaction. The patient's Consent generation is raised rather than
    /// removed, so no cache holds on to their old Consents.
    pub fn destroy_patient(&self, patient: &str, records: &[AuditRecord]) -> Result<Destroyed, StoreError> {
        let signer = self.signer().clone();
        write_transaction(&mut *self.conn()?, |conn| {
            let heads: Vec<(String, String)> = resource_heads::table
                .filter(resource_heads::patient.eq(patient))
                .select((resource_heads::resource_type, resource_heads::id))
                .load(conn)?;
            let mut destroyed = Destroyed { resources: heads.len(), ..Destroyed::default() };
            let mut scopes: Vec<String> = Vec::new();
            for (resource_type, id) in &heads {
                let versions = || {
                    resource_versions::table
                        .filter(resource_versions::resource_type.eq(resource_type))
                        .filter(resource_versions::id.eq(id))
                };
                for scope in versions().select(resource_versions::key_scope).distinct().load::<String>(conn)? {
                    if scope != SHARED_SCOPE && !scopes.contains(&scope) {
                        scopes.push(scope);
                    }
                }
                destroyed.versions += diesel::delete(versions()).execute(conn)?;
            }
            let mut types: Vec<&str> = heads.iter().map(|(t, _)| t.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            for resource_type in types {
                diesel::delete(
                    search_dates::table
                        .filter(search_dates::resource_type.eq(resource_type))
                        .filter(search_dates::patient.eq(patient)),
                )
                .execute(conn)?;
            }
            diesel::delete(search_tokens::table.filter(search_tokens::patient.eq(patient))).execute(conn)?;
            diesel::delete(resource_heads::table.filter(resource_heads::patient.eq(patient))).execute(conn)?;
            if !scopes.iter().any(|s| s == patient) && patient != SHARED_SCOPE {
                scopes.push(patient.to_owned());
            }
            for scope in &scopes {
                destroyed.data_keys +=
                    diesel::delete(data_keys::table.filter(data_keys::scope.eq(scope))).execute(conn)?;
            }
            diesel::delete(patient_aliases::table.filter(patient_aliases::patient.eq(patient))).execute(conn)?;
            diesel::update(consent_generations::table.filter(consent_generations::patient.eq(patient)))
                .set(consent_generations::generation.eq(consent_generations::generation + 1i64))
                .execute(conn)?;
            append(conn, records, &signer, now_millis())?;
            Ok(destroyed)
        })
    }
}
