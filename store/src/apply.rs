//! A request's rows written inside an open transaction of the writer: its new data keys, then
//! each resource's version, head and index rows. On either backend, one statement a row, each
//! prepared once per connection; PostgreSQL's batched form for a group of creates is in
//! `postgres.rs`.

use std::collections::HashSet;
use std::sync::Arc;

use diesel::prelude::*;
use fhir_profiles::search::IndexFact;
use fhir_profiles::ResourceType;

use crate::audit::{append, AuditRecord, AuditSigner};
use crate::crypto::{DataKey, Pseudonymizer};
use crate::db::schema::{
    consent_generations, data_keys, resource_heads, resource_versions, search_dates, search_tokens,
};
use crate::db::{on_backend, DbConnection};
use crate::error::StoreError;
use crate::marks::{insert_marks, ReachMark};
use crate::resource::{key_of, NewKeys, Write, WriteKind, Written};
use crate::rows::{head_on, DateRow, Head, NewDataKey, TokenMatch, TokenRow, VersionRow};
use crate::seal::{stamp_and_seal, Sealed};
use crate::time::now_millis;

/// What writing needs besides the connection.
pub(crate) struct WriteContext {
    pub index: Arc<crate::index_keys::IndexKeys>,
    pub signer: Arc<AuditSigner>,
}

/// Inserts index rows: on PostgreSQL in one statement (each statement is a round trip), on
/// SQLite one by one (in-process; diesel's multi-row insert does not reach SQLite through the
/// connection enum).
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let rows = $rows;
        if !rows.is_empty() {
            match &mut *$conn {
                DbConnection::Postgres(conn) => {
                    diesel::insert_into($table).values(rows).execute(conn)?;
                }
                DbConnection::Sqlite(conn) => {
                    for row in rows.iter() {
                        diesel::insert_into($table).values(row).execute(conn)?;
                    }
                }
            }
        }
    }};
}

/// One request's writes and audit records, waiting for the writer.
pub(crate) struct Pending {
    pub writes: Arc<Vec<Write>>,
    pub keys: NewKeys,
    /// For each of `writes`, its version 1 prepared ahead, when it may create one.
    pub sealed: Vec<Option<Sealed>>,
    pub audit: Vec<AuditRecord>,
    /// Which principals reached which patients: harvesting detection's marks, written with the
    /// audit records.
    pub marks: Vec<ReachMark>,
}

impl Pending {
    /// Whether the request only records (a read, a search, a refusal): no rows, no keys.
    pub fn recording_only(&self) -> bool {
        self.writes.is_empty() && self.keys.is_empty()
    }
}

/// One request's audit records, then its rows: every writer takes the log's head lock before
/// any row lock, so nodes cannot deadlock.
pub(crate) fn write_request(
    conn: &mut DbConnection,
    context: &WriteContext,
    pending: &mut Pending,
) -> Result<Written, StoreError> {
    append(conn, &pending.audit, &context.signer, now_millis())?;
    insert_marks(conn, &pending.marks)?;
    write_rows(conn, context, &pending.keys, &pending.writes, &mut pending.sealed)
}

/// A request's new data keys and resource rows.
pub(crate) fn write_rows(
    conn: &mut DbConnection,
    context: &WriteContext,
    keys: &NewKeys,
    writes: &[Write],
    sealed: &mut [Option<Sealed>],
) -> Result<Written, StoreError> {
    // Tokens are made under the version in force now, whichever version named the patient: a
    // re-index recomputes every token of a patient it moves.
    let pseudonyms = context.index.current();
    check_not_moved(conn, context, keys, writes)?;
    for row in new_key_rows(keys, now_millis()) {
        let insert = diesel::insert_into(data_keys::table).values(&row);
        on_backend!(&mut *conn, |c| insert.execute(c)).map_err(conflict)?;
    }
    writes
        .iter()
        .enumerate()
        .map(|(n, write)| {
            let key = key_of(keys, write.resource.scope())
                .ok_or_else(|| StoreError::Internal("no data key for a write".into()))?;
            // Taken, not copied: the writer owns the job. If the group fails and runs again
            // request by request, a write whose body was taken seals it afresh.
            let prepared = sealed.get_mut(n).and_then(Option::take);
            write_resource(conn, &pseudonyms, write, key, prepared)
        })
        .collect()
}

/// Refuses writes for a patient still named under an older index key version whom a re-index
/// has moved since the write was prepared (their data key is no longer under that name), so that
/// no row is left behind under the old name. On PostgreSQL the key row is taken `FOR SHARE`: a
/// re-index moving the patient waits for this commit, and then moves this write's rows too. The
/// gateway prepares the write again, and finds the new name.
pub(crate) fn check_not_moved(
    conn: &mut DbConnection,
    context: &WriteContext,
    keys: &NewKeys,
    writes: &[Write],
) -> Result<(), StoreError> {
    let current = context.index.current().version();
    if current == 1 {
        return Ok(());
    }
    let mut checked = HashSet::new();
    for scope in writes.iter().filter_map(|w| w.resource.patient.as_deref()) {
        if !crate::resource::older_than(scope, current) || !checked.insert(scope) {
            continue;
        }
        // A key made now under an older name is a moved patient's too: a new patient is named
        // under the version in force.
        let made_now = keys.iter().any(|(s, _, wrapped)| s == scope && wrapped.is_some());
        if made_now || crate::keys::data_key_row(conn, scope, false)?.is_none() {
            return Err(StoreError::Conflict(
                "the patient was moved to a new index key version meanwhile; send it again".into(),
            ));
        }
    }
    Ok(())
}

fn write_resource(
    conn: &mut DbConnection,
    pseudonyms: &Pseudonymizer,
    write: &Write,
    key: &DataKey,
    prepared: Option<Sealed>,
) -> Result<Option<(Head, Vec<u8>)>, StoreError> {
    let Write { resource, id, kind } = write;
    let id = id.as_str();
    let resource_type = resource.resource_type.as_str();
    let current: Option<Head> = match kind {
        // A `CreateIfAbsent` learns whether its resource exists by inserting the head (below):
        // for a new patient's first document the lookup was a miss every time.
        WriteKind::Create | WriteKind::CreateIfAbsent => None,
        WriteKind::Update(_) => head_on(conn, resource_type, id)?,
    };
    let version = match (kind, &current) {
        (WriteKind::Create | WriteKind::CreateIfAbsent, _) => 1,
        (WriteKind::Update(_), None) => {
            return Err(StoreError::NotFound { resource_type: resource_type.to_owned(), id: id.to_owned() })
        }
        (WriteKind::Update(if_match), Some(head)) => {
            if if_match.is_some_and(|expected| expected != head.version) {
                return Err(StoreError::VersionMismatch { current: head.version });
            }
            if head.patient != resource.patient {
                return Err(match resource.resource_type {
                    ResourceType::Patient => StoreError::PatientChanged,
                    _ => StoreError::ResourceChangesPatient,
                });
            }
            head.version + 1
        }
    };
    let updating = current.is_some();
    let Sealed { last_updated, plain: body, sealed, listing } = match prepared.filter(|_| version == 1) {
        Some(ready) => ready,
        None => stamp_and_seal(resource, id, version, now_millis(), key)?,
    };
    let rows = new_rows(pseudonyms, write, version, last_updated, sealed, updating);
    let head = rows.head;
    if !updating {
        let new_head = (&head, resource_heads::listing.eq(listing.as_deref()));
        let inserted = if matches!(kind, WriteKind::CreateIfAbsent) {
            on_backend!(&mut *conn, |c| diesel::insert_into(resource_heads::table)
                .values(new_head)
                .on_conflict_do_nothing()
                .execute(c))?
        } else {
            let insert = diesel::insert_into(resource_heads::table).values(new_head);
            on_backend!(&mut *conn, |c| insert.execute(c)).map_err(conflict)?
        };
        if inserted == 0 {
            // It exists: stored earlier, or by another request of this group.
            return Ok(None);
        }
    }
    // Each statement on the concrete connection, where its prepared statement is found by its
    // type rather than by rendering its SQL (see `on_backend!`).
    let insert = diesel::insert_into(resource_versions::table).values(&rows.version);
    on_backend!(&mut *conn, |c| insert.execute(c)).map_err(conflict)?;
    if updating {
        let target = resource_heads::table
            .filter(resource_heads::resource_type.eq(resource_type))
            .filter(resource_heads::id.eq(id));
        let update = diesel::update(target).set((
            resource_heads::version.eq(version),
            resource_heads::patient.eq(&head.patient),
            resource_heads::security_labels.eq(&head.security_labels),
            resource_heads::author_org.eq(&head.author_org),
            resource_heads::author_practitioner.eq(&head.author_practitioner),
            resource_heads::last_updated.eq(last_updated),
            resource_heads::service_event.eq(&head.service_event),
            resource_heads::listing.eq(listing.as_deref()),
        ));
        on_backend!(&mut *conn, |c| update.execute(c))?;
    }
    if let (ResourceType::Consent, Some(patient)) = (resource.resource_type, resource.patient.as_deref()) {
        // Every node's cache of this patient's compiled Consents is stale from this commit on.
        // (The multi-backend connection has no upsert; each backend has its own.)
        let values = (consent_generations::patient.eq(patient), consent_generations::generation.eq(1i64));
        let raise = consent_generations::generation.eq(consent_generations::generation + 1i64);
        on_backend!(&mut *conn, |c| diesel::insert_into(consent_generations::table)
            .values(values)
            .on_conflict(consent_generations::patient)
            .do_update()
            .set(raise)
            .execute(c))?;
    }
    insert_rows!(conn, search_tokens::table, &rows.tokens);
    insert_rows!(conn, search_dates::table, &rows.dates);
    Ok(Some((head, body)))
}

/// The rows of one new version of a resource: the version, its head, and its index rows.
pub(crate) struct NewRows<'a> {
    pub version: VersionRow,
    pub head: Head,
    pub tokens: Vec<TokenRow<'a>>,
    pub dates: Vec<DateRow<'a>>,
}

pub(crate) fn new_rows<'a>(
    pseudonyms: &Pseudonymizer,
    write: &'a Write,
    version: i64,
    last_updated: i64,
    sealed: Vec<u8>,
    updating: bool,
) -> NewRows<'a> {
    let Write { resource, id, .. } = write;
    let resource_type = resource.resource_type.as_str();
    let head = Head {
        resource_type: resource_type.to_owned(),
        id: id.clone(),
        version,
        patient: resource.patient.clone(),
        security_labels: resource.security_labels.clone(),
        author_org: resource.author_org.clone(),
        author_practitioner: resource.author_practitioner.clone(),
        last_updated,
        service_event: resource.service_event.clone(),
    };
    let version = VersionRow {
        resource_type: head.resource_type.clone(),
        id: head.id.clone(),
        version,
        patient: head.patient.clone(),
        key_scope: resource.scope().to_owned(),
        security_labels: head.security_labels.clone(),
        author_org: head.author_org.clone(),
        author_practitioner: head.author_practitioner.clone(),
        last_updated,
        method: if updating { "PUT" } else { "POST" }.to_owned(),
        body: sealed,
        service_event: head.service_event.clone(),
    };
    let patient = resource.patient.as_deref();
    let tokens = identifier_tokens(pseudonyms, &resource.facts)
        .into_iter()
        .map(|(param, token, system_token)| TokenRow {
            resource_type,
            id,
            param,
            token,
            patient,
            version: head.version,
            system_token,
        })
        .collect();
    let mut seen = HashSet::new();
    let dates = resource
        .facts
        .iter()
        .filter_map(|fact| match fact {
            IndexFact::Date { param, start, end } if seen.insert((*param, *start, *end)) => Some(DateRow {
                resource_type,
                id,
                param,
                range_start: *start,
                range_end: *end,
                patient,
                version: head.version,
            }),
            _ => None,
        })
        .collect();
    NewRows { version, head, tokens, dates }
}

/// The rows of a request's newly generated data keys (those it found stored carry no wrapped
/// key and write nothing).
pub(crate) fn new_key_rows(keys: &NewKeys, now: i64) -> impl Iterator<Item = NewDataKey<'_>> {
    keys.iter().filter_map(move |(scope, _, wrapped)| {
        wrapped.as_ref().map(|wrapped| NewDataKey {
            scope,
            kek_id: &wrapped.kek_id,
            wrapped_key: wrapped.bytes.clone(),
            created_at: now,
        })
    })
}

/// The index rows of a resource's identifier facts (parameter, key, `system_token`), without
/// repeats. Each identifier is findable by `system|value`, by `value` alone, and (without a
/// system) by `|value`: it is filed under its any-system token with its exact token beside it.
/// A second identifier with the same value in another system would need the same key again, so
/// it is filed under its exact token alone, as every identifier was before migration 7 (see
/// [`TokenMatch`]).
pub(crate) fn identifier_tokens(
    pseudonyms: &Pseudonymizer,
    facts: &[IndexFact],
) -> Vec<(&'static str, String, Option<String>)> {
    let mut rows = Vec::new();
    let mut keys = HashSet::new();
    let mut exacts = HashSet::new();
    for fact in facts {
        if let IndexFact::Token { param, system, value } = fact {
            let TokenMatch { any, exact } = TokenMatch::exact(pseudonyms, param, system.as_deref(), value);
            let Some(exact) = exact else { continue };
            if !exacts.insert((*param, exact.clone())) {
                continue;
            }
            if keys.insert((*param, any.clone())) {
                rows.push((*param, any, Some(exact)));
            } else if keys.insert((*param, exact.clone())) {
                rows.push((*param, exact, None));
            }
        }
    }
    rows
}

/// A unique violation is another writer's equal row: a conflict the caller may retry.
pub(crate) fn conflict(error: diesel::result::Error) -> StoreError {
    match error {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
            StoreError::Conflict("the resource was changed concurrently; read it again and retry".into())
        }
        other => other.into(),
    }
}
