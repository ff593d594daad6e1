//! Writing: a request's resources and audit records, sealed on the request's thread and
//! committed by the node's writer, all in one transaction or not at all.

use std::sync::Arc;

use fhir_profiles::ResourceType;

use crate::apply::Pending;
use crate::audit::AuditRecord;
use crate::error::StoreError;
use crate::marks::ReachMark;
use crate::resource::{NewKeys, NewResource, Write, WriteKind, Written};
use crate::rows::Head;
use crate::seal::seal_new_versions;
use crate::store::Store;

impl Store {
    /// Stores a new resource as version 1 of `id` (a fresh, server-chosen id).
    pub fn create(
        &self,
        resource: NewResource,
        id: &str,
        audit: Vec<AuditRecord>,
    ) -> Result<(Head, Vec<u8>), StoreError> {
        self.write_one(Write { resource, id: id.to_owned(), kind: WriteKind::Create }, audit)
    }

    /// Stores a new version of `id`. `if_match` is the version the client last saw, if it said.
    /// A Patient keeps the pseudonym it was created with: its HETU cannot change under it.
    pub fn update(
        &self,
        resource: NewResource,
        id: &str,
        if_match: Option<i64>,
        audit: Vec<AuditRecord>,
    ) -> Result<(Head, Vec<u8>), StoreError> {
        self.write_one(Write { resource, id: id.to_owned(), kind: WriteKind::Update(if_match) }, audit)
    }

    fn write_one(&self, write: Write, audit: Vec<AuditRecord>) -> Result<(Head, Vec<u8>), StoreError> {
        self.write_all(vec![write], audit)?
            .pop()
            .flatten()
            .ok_or_else(|| StoreError::Internal("a create or update wrote nothing".into()))
    }

    /// Commits the audit records of a request that wrote nothing (a read, a search, a refusal),
    /// together with those of concurrent requests; returns once they are durable. A request
    /// whose records cannot be written must not answer with data.
    pub fn record(&self, audit: Vec<AuditRecord>) -> Result<(), StoreError> {
        self.record_with_marks(audit, Vec::new())
    }

    /// [`Store::record`], with harvesting detection's marks of which patients the request
    /// reached, written in the same transaction.
    pub fn record_with_marks(&self, audit: Vec<AuditRecord>, marks: Vec<ReachMark>) -> Result<(), StoreError> {
        let pending = Pending { writes: Arc::new(Vec::new()), keys: Vec::new(), sealed: Vec::new(), audit, marks };
        self.inner.writer.submit(pending).map(drop)
    }

    /// Writes every resource in one transaction: all of them, or none. Returns, in order, what
    /// each write stored (`None` for a [`WriteKind::CreateIfAbsent`] that found its resource).
    ///
    /// A patient's first data key is inserted in the same transaction, so a new patient's first
    /// document costs one commit. Two writers racing to create the same key or the same
    /// resource meet a unique violation; the loser runs again once and then sees the winner's
    /// rows.
    ///
    /// `audit` is appended to the audit log in the same transaction: the records of the change
    /// commit with it, or neither does.
    pub fn write_all(&self, writes: Vec<Write>, audit: Vec<AuditRecord>) -> Result<Written, StoreError> {
        let writes = Arc::new(writes);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let keys = self.data_keys_for(&writes, attempt == 1)?;
            let sealed = seal_new_versions(&writes, &keys)?;
            // Only a derived id or a new data key can meet a concurrent writer's equal row; any
            // other conflict would only repeat.
            let may_race = keys.iter().any(|(_, _, wrapped)| wrapped.is_some())
                || writes.iter().any(|write| matches!(write.kind, WriteKind::CreateIfAbsent));
            let pending =
                Pending { writes: writes.clone(), keys: keys.clone(), sealed, audit: audit.clone(), marks: Vec::new() };
            match self.inner.writer.submit(pending) {
                Err(StoreError::Conflict(_)) if attempt < 3 && may_race => continue,
                Ok(written) => {
                    // Only keys that committed are cached.
                    for (scope, key, _) in keys {
                        self.inner.keys.remember(&scope, key);
                    }
                    return Ok(written);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The data key of each scope the writes need, generated (and wrapped) where none exists yet.
    /// Outside the transaction: unwrapping is CPU work and may read.
    ///
    /// On the `first` attempt, the scope of a Patient these writes create is not looked up: a
    /// new patient has no key yet (a new patient's first document is most of ingest, and the
    /// lookup was one query of every such submission). Where a key exists all the same (another
    /// request created it a moment ago, or a second Patient resource carries the same HETU),
    /// inserting the new one meets it, and the next attempt looks it up.
    fn data_keys_for(&self, writes: &[Write], first: bool) -> Result<NewKeys, StoreError> {
        let mut keys: NewKeys = Vec::new();
        for write in writes {
            let scope = write.resource.scope();
            if keys.iter().any(|(s, _, _)| s == scope) {
                continue;
            }
            let new_patient = first
                && write.resource.resource_type == ResourceType::Patient
                && matches!(write.kind, WriteKind::Create | WriteKind::CreateIfAbsent)
                && self.inner.keys.cached(scope).is_none();
            let stored = if new_patient { None } else { self.inner.keys.stored(scope)? };
            match stored {
                Some(key) => keys.push((scope.to_owned(), key, None)),
                None => {
                    let (key, wrapped) = self.inner.keys.generate(scope)?;
                    keys.push((scope.to_owned(), key, Some(wrapped)));
                }
            }
        }
        Ok(keys)
    }
}
