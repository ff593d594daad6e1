//! Rotating the index (HMAC) key: a new version names new patients and tokens at once, and a
//! re-index moves everything stored under older versions to it, while the gateway serves.
//!
//! A patient is moved in one transaction: their data key row is locked first, their bodies are
//! opened, the HETU (or, for a temporary Patient, the id) that named them is found again by
//! recomputing the old pseudonym, and every row of theirs is filed under the new pseudonym:
//! bodies sealed again (the pseudonym is bound into each), heads, versions, search rows, the
//! Consent generation, and the data key wrapped for its new scope. Resources of no patient
//! (practitioners, organisations) keep their rows and get their identifier tokens recomputed.
//!
//! A gateway files a write for a patient not yet moved under the pseudonym their rows have
//! (`Store::patient_for_write`), and the writer refuses such a write if the patient was moved
//! before it committed (`apply::check_not_moved`), so that no row is left behind under an old
//! pseudonym. Until the re-index is recorded done, lookups try every version.
//!
//! Every step may be repeated: a moved patient has no data key under the old pseudonym, so a
//! second run finds nothing more to do for them. The audit log is never rewritten.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use diesel::prelude::*;
use fhir_profiles::ResourceType;
use serde_json::{Map, Value};

use crate::apply::identifier_tokens;
use crate::crypto::{pseudonym_version, seal_body, BodyBinding, CryptoError, Pseudonymizer, SecretKey};
use crate::db::schema::{
    consent_generations, data_keys, key_versions, patient_aliases, resource_heads, resource_versions, search_dates,
    search_tokens,
};
use crate::db::{on_backend, write_transaction, DbConnection};
use crate::error::StoreError;
use crate::index_keys::index_key_id;
use crate::kek::{KekVersion, VERSIONS_FRESH_FOR};
use crate::keys::data_key_row;
use crate::resource::SHARED_SCOPE;
use crate::rotation::{mark_done, read_versions_of, record_version_of, INDEX};
use crate::rows::{Head, TokenRow, VersionRow};
use crate::seal::sealed_listing;
use crate::store::Store;
use crate::time::now_millis;

/// Patients moved in one transaction, unless the operator says otherwise: a patient's bodies are
/// opened and sealed again inside it, so it is kept shorter than a KEK rotation's batch.
pub const REINDEX_BATCH: usize = 50;

/// Where an index key rotation stands.
#[derive(Clone, Debug)]
pub struct IndexRotation {
    pub target: KekVersion,
    /// Whether it resumes one an earlier run began.
    pub resumed: bool,
    /// Patients (data keys) still named under an older version.
    pub remaining: u64,
}

/// What a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reindexed {
    pub patients: usize,
    pub versions: usize,
    /// Patients whose name could not be found again in their bodies: left where they are, and
    /// reported; the rotation does not finish while they remain.
    pub unmovable: usize,
}

/// A re-index run's place: the last data key (by name) a pass has looked at, so that a pass reads
/// on rather than over the dead index entries moved keys leave on PostgreSQL.
#[derive(Default)]
pub struct ReindexCursor {
    after: Mutex<String>,
}

impl ReindexCursor {
    fn get(&self) -> String {
        self.after.lock().map(|after| after.clone()).unwrap_or_default()
    }

    fn set(&self, scope: &str) {
        if let Ok(mut after) = self.after.lock() {
            scope.clone_into(&mut after);
        }
    }

    /// Starts the next pass from the first data key.
    pub fn new_pass(&self) {
        self.set("");
    }
}

/// Where a walk over the resources of no patient has got to: type, time of last change, id (the
/// order of the index by patient).
pub type SharedCursor = (String, i64, String);

/// The `LIKE` pattern of the names made under `version` (`vN-…`). Names are compared with
/// `LIKE` and equality only, never by range: a database's collation may order `-` and `.` as it
/// likes (PostgreSQL under a locale ignores them at first), so the data keys are walked in
/// whatever order it keeps and filtered by what a name says of its version.
fn named_under(version: u32) -> String {
    format!("v{version}-%")
}

impl Store {
    /// Begins an index key rotation, or resumes the one an earlier run left unfinished: a new
    /// version's key file is made beside the first (or found, if a run made it and stopped) and
    /// the version recorded. Gateways name new patients under it within a few seconds.
    pub fn begin_index_rotation(&self) -> Result<IndexRotation, StoreError> {
        let index = &self.inner.index;
        let versions = index.prepare(&mut *self.conn()?)?;
        let newest = versions
            .iter()
            .max_by_key(|v| v.version)
            .cloned()
            .ok_or_else(|| StoreError::Internal("no index key version is recorded".into()))?;
        if newest.rewrapped_at.is_none() {
            let remaining = self.index_remaining(&newest)?;
            return Ok(IndexRotation { target: newest, resumed: true, remaining });
        }
        let files = index.files().ok_or_else(|| {
            StoreError::Crypto(CryptoError::Unavailable("this process holds one index key and makes no others".into()))
        })?;
        let version = newest.version + 1;
        let path = files.path(version);
        let key = if path.exists() { SecretKey::from_file(&path)? } else { SecretKey::generate_file(&path)? };
        record_version_of(&mut *self.conn()?, INDEX, version, &index_key_id(&key), false)?;
        let versions = index.prepare(&mut *self.conn()?)?;
        let target = versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| StoreError::Internal("a recorded key version is not found".into()))?;
        let remaining = self.index_remaining(&target)?;
        Ok(IndexRotation { target, resumed: false, remaining })
    }

    /// Waits until every gateway has read the versions again, so that none names a new patient
    /// under an older version after the re-index has passed it.
    pub fn wait_for_gateways(&self) {
        std::thread::sleep(VERSIONS_FRESH_FOR + std::time::Duration::from_secs(1));
    }

    /// Patients (data keys) named under a version older than `target`, counted through the data
    /// keys' primary key. An operator's question, not a request's.
    pub fn index_remaining(&self, target: &KekVersion) -> Result<u64, StoreError> {
        let count: i64 = data_keys::table
            .filter(data_keys::scope.ne(SHARED_SCOPE))
            .filter(data_keys::scope.not_like(named_under(target.version)))
            .count()
            .get_result(&mut *self.conn()?)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Moves the next `batch` patients named under an older version than `target` to it, in one
    /// transaction; `None` when this pass has none left.
    pub fn reindex_batch(
        &self,
        target: &KekVersion,
        cursor: &ReindexCursor,
        batch: usize,
    ) -> Result<Option<Reindexed>, StoreError> {
        let index = self.index_keys();
        let to = index
            .version(target.version)
            .ok_or_else(|| StoreError::Crypto(CryptoError::Unavailable("the new index key does not open".into())))?;
        let scopes: Vec<String> = data_keys::table
            .filter(data_keys::scope.gt(cursor.get()))
            .filter(data_keys::scope.ne(SHARED_SCOPE))
            .filter(data_keys::scope.not_like(named_under(target.version)))
            .order(data_keys::scope)
            .limit(i64::try_from(batch.max(1)).unwrap_or(i64::MAX))
            .select(data_keys::scope)
            .load(&mut *self.conn()?)?;
        let Some(last) = scopes.last() else { return Ok(None) };
        cursor.set(last);
        let mut conn = self.conn()?;
        let done = write_transaction(&mut conn, |conn| {
            let mut done = Reindexed::default();
            for scope in &scopes {
                let version = pseudonym_version(scope);
                let from = index.version(version).ok_or_else(|| {
                    StoreError::Crypto(CryptoError::Unavailable(format!("index key version {version} does not open")))
                })?;
                match self.move_patient(conn, scope, &from, &to)? {
                    Some(versions) => {
                        done.patients += 1;
                        done.versions += versions;
                    }
                    None => done.unmovable += 1,
                }
            }
            Ok(done)
        })?;
        Ok(Some(done))
    }

    /// Moves the patient of data key `scope` (named under `from`) to their name under `to`;
    /// answers how many versions it moved, or `None` when their name was not found again.
    fn move_patient(
        &self,
        conn: &mut DbConnection,
        scope: &str,
        from: &Pseudonymizer,
        to: &Pseudonymizer,
    ) -> Result<Option<usize>, StoreError> {
        // The key row first, locked: a writer files a not-yet-moved patient's rows only while
        // this row is there (it takes it FOR SHARE), so none can commit under the old name after
        // this transaction has read the patient's rows.
        let Some((kek_id, wrapped)) = data_key_row(conn, scope, true)? else {
            return Ok(Some(0));
        };
        let key = self.inner.keys.unwrap_row(scope, &kek_id, &wrapped)?;
        let heads: Vec<(String, String, i64)> = resource_heads::table
            .filter(resource_heads::patient.eq(scope))
            .select((resource_heads::resource_type, resource_heads::id, resource_heads::version))
            .load(conn)?;
        let current: HashSet<(&str, &str, i64)> =
            heads.iter().map(|(resource_type, id, version)| (resource_type.as_str(), id.as_str(), *version)).collect();
        let mut rows: Vec<(VersionRow, Vec<u8>, Map<String, Value>)> = Vec::new();
        for (resource_type, id, _) in &heads {
            let versions: Vec<VersionRow> = resource_versions::table
                .filter(resource_versions::resource_type.eq(resource_type))
                .filter(resource_versions::id.eq(id))
                .select(VersionRow::as_select())
                .load(conn)?;
            for row in versions {
                if row.key_scope != scope {
                    tracing::error!(version = from.version(), "a patient's version is sealed under another scope");
                    return Ok(None);
                }
                let plain = crate::crypto::open_body(&key, &row.binding(), &row.body)?;
                let json = serde_json::from_slice(&plain)
                    .map_err(|_| StoreError::Damaged("a stored body is not a JSON object".into()))?;
                rows.push((row, plain, json));
            }
        }
        let Some(name) = rows.iter().find_map(|(row, _, json)| new_name(row, json, scope, from, to)) else {
            tracing::error!(version = from.version(), "a patient's pseudonym was not found again in their bodies");
            return Ok(None);
        };
        // The patient's key under the new name: theirs, wrapped for the new scope, or the key a
        // write made under the new name meanwhile (every body is sealed again under it).
        let key = match data_key_row(conn, &name, true)? {
            Some((kek_id, wrapped)) => self.inner.keys.unwrap_row(&name, &kek_id, &wrapped)?,
            None => {
                let wrapped = self.inner.keys.wrap_for(&name, &key)?;
                let row = (
                    data_keys::scope.eq(&name),
                    data_keys::kek_id.eq(&wrapped.kek_id),
                    data_keys::wrapped_key.eq(&wrapped.bytes),
                    data_keys::created_at.eq(now_millis()),
                );
                on_backend!(&mut *conn, |c| diesel::insert_into(data_keys::table).values(row).execute(c))?;
                key
            }
        };
        diesel::delete(search_tokens::table.filter(search_tokens::patient.eq(scope))).execute(conn)?;
        let mut types = BTreeSet::new();
        for (row, plain, json) in &rows {
            types.insert(row.resource_type.clone());
            // The same bytes, sealed again: bound to the new name and scope.
            let binding = BodyBinding { key_scope: &name, patient: Some(&name), ..row.binding() };
            let sealed = seal_body(&key, &binding, plain)?;
            diesel::update(
                resource_versions::table
                    .filter(resource_versions::resource_type.eq(&row.resource_type))
                    .filter(resource_versions::id.eq(&row.id))
                    .filter(resource_versions::version.eq(row.version)),
            )
            .set((
                resource_versions::patient.eq(&name),
                resource_versions::key_scope.eq(&name),
                resource_versions::body.eq(sealed),
            ))
            .execute(conn)?;
            // A document's listing is bound to the name too: made again from its current
            // version (which also gives one to a document stored before listings).
            let listed = row.resource_type == ResourceType::Bundle.as_str();
            if listed && current.contains(&(row.resource_type.as_str(), row.id.as_str(), row.version)) {
                // None for a Bundle that is no document: no listing left bound to the old name.
                let listing = sealed_listing(json, &key, &binding)?;
                diesel::update(
                    resource_heads::table
                        .filter(resource_heads::resource_type.eq(&row.resource_type))
                        .filter(resource_heads::id.eq(&row.id)),
                )
                .set(resource_heads::listing.eq(listing))
                .execute(conn)?;
            }
            insert_tokens(conn, to, row, json, Some(&name))?;
        }
        diesel::update(resource_heads::table.filter(resource_heads::patient.eq(scope)))
            .set(resource_heads::patient.eq(&name))
            .execute(conn)?;
        for resource_type in &types {
            diesel::update(
                search_dates::table
                    .filter(search_dates::resource_type.eq(resource_type))
                    .filter(search_dates::patient.eq(scope)),
            )
            .set(search_dates::patient.eq(&name))
            .execute(conn)?;
        }
        move_consent_generation(conn, scope, &name)?;
        // The names they had, for the audit log's older entries: this one, and those it had.
        diesel::update(patient_aliases::table.filter(patient_aliases::patient.eq(scope)))
            .set(patient_aliases::patient.eq(&name))
            .execute(conn)?;
        let alias = (patient_aliases::patient.eq(&name), patient_aliases::earlier.eq(scope));
        on_backend!(&mut *conn, |c| diesel::insert_into(patient_aliases::table)
            .values(alias)
            .on_conflict_do_nothing()
            .execute(c))?;
        diesel::delete(data_keys::table.filter(data_keys::scope.eq(scope))).execute(conn)?;
        Ok(Some(rows.len()))
    }

    /// Recomputes the identifier tokens of the next `batch` resources that belong to no patient
    /// (after `after`: type, time of last change, id), in one transaction; answers the last one
    /// done, `None` when there are none left.
    pub fn reindex_shared_batch(
        &self,
        target: &KekVersion,
        after: Option<&SharedCursor>,
        batch: usize,
    ) -> Result<Option<(SharedCursor, usize)>, StoreError> {
        let index = self.index_keys();
        let to = index
            .version(target.version)
            .ok_or_else(|| StoreError::Crypto(CryptoError::Unavailable("the new index key does not open".into())))?;
        let older: Vec<Pseudonymizer> = index.every().into_iter().filter(|p| p.version() != target.version).collect();
        let (rt, updated, id) = after.cloned().unwrap_or_default();
        // Through the index by patient (NULL here), type, time and id.
        let heads: Vec<Head> = resource_heads::table
            .filter(resource_heads::patient.is_null())
            .filter(
                resource_heads::resource_type.gt(&rt).or(resource_heads::resource_type.eq(&rt).and(
                    resource_heads::last_updated
                        .gt(updated)
                        .or(resource_heads::last_updated.eq(updated).and(resource_heads::id.gt(&id))),
                )),
            )
            .order((resource_heads::resource_type, resource_heads::last_updated, resource_heads::id))
            .limit(i64::try_from(batch.max(1)).unwrap_or(i64::MAX))
            .select(Head::as_select())
            .load(&mut *self.conn()?)?;
        let Some(last) = heads.last().map(|h| (h.resource_type.clone(), h.last_updated, h.id.clone())) else {
            return Ok(None);
        };
        let Some(key) = self.inner.keys.stored(SHARED_SCOPE)? else {
            return Ok(Some((last, 0)));
        };
        let mut conn = self.conn()?;
        let done = write_transaction(&mut conn, |conn| {
            let mut done = 0;
            for head in &heads {
                let versions: Vec<VersionRow> = resource_versions::table
                    .filter(resource_versions::resource_type.eq(&head.resource_type))
                    .filter(resource_versions::id.eq(&head.id))
                    .select(VersionRow::as_select())
                    .load(conn)?;
                for row in versions.iter().filter(|row| row.key_scope == SHARED_SCOPE) {
                    let plain = crate::crypto::open_body(&key, &row.binding(), &row.body)?;
                    let json: Map<String, Value> = serde_json::from_slice(&plain)
                        .map_err(|_| StoreError::Damaged("a stored body is not a JSON object".into()))?;
                    // The rows under each older version are found by recomputing them (a row
                    // of no patient is found by its key alone), then replaced.
                    for old in &older {
                        for (param, token, _) in tokens_of(old, row, &json) {
                            diesel::delete(
                                search_tokens::table
                                    .filter(search_tokens::resource_type.eq(&row.resource_type))
                                    .filter(search_tokens::param.eq(param))
                                    .filter(search_tokens::token.eq(&token))
                                    .filter(search_tokens::id.eq(&row.id))
                                    .filter(search_tokens::version.eq(row.version)),
                            )
                            .execute(conn)?;
                        }
                    }
                    insert_tokens(conn, &to, row, &json, None)?;
                    done += 1;
                }
            }
            Ok(done)
        })?;
        Ok(Some((last, done)))
    }

    /// Records the re-index to `target` done: lookups stop trying older versions.
    pub fn finish_index_rotation(&self, target: &KekVersion) -> Result<(), StoreError> {
        if self.index_remaining(target)? > 0 {
            return Err(StoreError::Conflict("patients remain under an older index key version".into()));
        }
        mark_done(&mut *self.conn()?, INDEX, target.version)?;
        self.inner.index.prepare(&mut *self.conn()?)?;
        Ok(())
    }

    /// The names a re-index moved the patient `pseudonym` from (at most one a rotation).
    pub fn earlier_names(&self, pseudonym: &str) -> Result<Vec<String>, StoreError> {
        Ok(patient_aliases::table
            .filter(patient_aliases::patient.eq(pseudonym))
            .select(patient_aliases::earlier)
            .limit(64)
            .load(&mut *self.conn()?)?)
    }

    /// Records a re-index's progress beside its version, for `/metrics`.
    pub fn record_reindex_progress(&self, target: &KekVersion, moved: u64, to_move: u64) -> Result<(), StoreError> {
        let (moved, to_move) = (i64::try_from(moved).unwrap_or(i64::MAX), i64::try_from(to_move).unwrap_or(i64::MAX));
        write_transaction(&mut *self.conn()?, |conn| {
            diesel::update(
                key_versions::table
                    .filter(key_versions::purpose.eq(INDEX))
                    .filter(key_versions::version.eq(i64::from(target.version))),
            )
            .set((key_versions::moved.eq(moved), key_versions::to_move.eq(to_move)))
            .execute(conn)?;
            Ok(())
        })
    }

    /// The re-index under way, if this node knows of one: its version, patients moved and of how
    /// many (as last recorded). One row read by its key.
    pub fn reindex_progress(&self) -> Result<Option<(u32, u64, u64)>, StoreError> {
        let index = self.index_keys();
        if !index.reindexing() {
            return Ok(None);
        }
        let version = index.current().version();
        let row: Option<(Option<i64>, Option<i64>)> = key_versions::table
            .filter(key_versions::purpose.eq(INDEX))
            .filter(key_versions::version.eq(i64::from(version)))
            .select((key_versions::moved, key_versions::to_move))
            .get_result(&mut *self.conn()?)
            .optional()?;
        let count = |n: Option<i64>| u64::try_from(n.unwrap_or(0)).unwrap_or(0);
        Ok(row.map(|(moved, to_move)| (version, count(moved), count(to_move))))
    }

    /// The index key's versions as recorded.
    pub fn index_key_versions(&self) -> Result<Vec<KekVersion>, StoreError> {
        read_versions_of(&mut *self.conn()?, INDEX)
    }
}

/// The patient's name under `to`, if this version's body carries what named them under `from`:
/// a HETU identifier whose pseudonym under `from` is `scope`, or (a Patient with none) its id.
fn new_name(
    row: &VersionRow,
    json: &Map<String, Value>,
    scope: &str,
    from: &Pseudonymizer,
    to: &Pseudonymizer,
) -> Option<String> {
    let mut hetus = Vec::new();
    collect_hetus(&Value::Object(json.clone()), &mut hetus);
    for code in hetus {
        if let Ok(hetu) = fhir_profiles::Hetu::parse(&code) {
            if from.patient_from_hetu(&hetu) == scope {
                return Some(to.patient_from_hetu(&hetu));
            }
        }
    }
    (row.resource_type == ResourceType::Patient.as_str() && from.patient_from_id(&row.id) == scope)
        .then(|| to.patient_from_id(&row.id))
}

/// Every identifier value whose system is the HETU's, anywhere in a resource (a Patient's own,
/// or a document's embedded Patient).
fn collect_hetus(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let (Some(Value::String(system)), Some(Value::String(code))) =
                (object.get("system"), object.get("value"))
            {
                if system == fhir_profiles::HETU_SYSTEM {
                    found.push(code.clone());
                }
            }
            object.values().for_each(|v| collect_hetus(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_hetus(v, found)),
        _ => {}
    }
}

/// The identifier tokens of a stored version under `pseudonyms`.
fn tokens_of(
    pseudonyms: &Pseudonymizer,
    row: &VersionRow,
    json: &Map<String, Value>,
) -> Vec<(&'static str, String, Option<String>)> {
    let Ok(resource_type) = row.resource_type.parse::<ResourceType>() else { return Vec::new() };
    identifier_tokens(pseudonyms, &fhir_profiles::search::index_facts(resource_type, json))
}

/// Files a stored version's identifier tokens under `pseudonyms`.
fn insert_tokens(
    conn: &mut DbConnection,
    pseudonyms: &Pseudonymizer,
    row: &VersionRow,
    json: &Map<String, Value>,
    patient: Option<&str>,
) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    for (param, token, system_token) in tokens_of(pseudonyms, row, json) {
        if !seen.insert((param, token.clone())) {
            continue;
        }
        let token = TokenRow {
            resource_type: &row.resource_type,
            id: &row.id,
            param,
            token,
            patient,
            version: row.version,
            system_token,
        };
        on_backend!(&mut *conn, |c| diesel::insert_into(search_tokens::table)
            .values(&token)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    Ok(())
}

/// The patient's Consent generation under their new name: above both the old and any new one,
/// so every node compiles their Consents afresh.
fn move_consent_generation(conn: &mut DbConnection, from: &str, to: &str) -> Result<(), StoreError> {
    let generation = |conn: &mut DbConnection, patient: &str| -> Result<Option<i64>, StoreError> {
        Ok(consent_generations::table
            .filter(consent_generations::patient.eq(patient))
            .select(consent_generations::generation)
            .get_result(conn)
            .optional()?)
    };
    let (old, new) = (generation(conn, from)?, generation(conn, to)?);
    let Some(highest) = old.max(new) else { return Ok(()) };
    diesel::delete(consent_generations::table.filter(consent_generations::patient.eq(from))).execute(conn)?;
    let values = (consent_generations::patient.eq(to), consent_generations::generation.eq(highest + 1));
    match new {
        Some(_) => {
            diesel::update(consent_generations::table.filter(consent_generations::patient.eq(to)))
                .set(consent_generations::generation.eq(highest + 1))
                .execute(conn)?;
        }
        None => {
            on_backend!(&mut *conn, |c| diesel::insert_into(consent_generations::table).values(values).execute(c))?;
        }
    }
    Ok(())
}
