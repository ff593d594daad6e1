//! Searching: the heads that match a request's criteria, through the index tables, and the
//! lookup of a stored resource by identifier.

use std::collections::HashSet;

use diesel::prelude::*;
use fhir_profiles::search::DateQuery;
use fhir_profiles::ResourceType;

use crate::db::schema::{resource_heads, search_dates, search_tokens};
use crate::db::{on_backend, DbConnection};
use crate::error::StoreError;
use crate::read::CHUNK;
use crate::rows::{current_version_of, Head, ListedHead, TokenMatch};
use crate::store::Store;

/// A search criterion; several are ANDed, the values inside one are ORed.
pub enum Criterion {
    Ids(Vec<String>),
    Tokens { param: String, tokens: Vec<TokenMatch> },
    Patients(Vec<String>),
    Dates { param: String, queries: Vec<DateQuery> },
    LastUpdated(Vec<DateQuery>),
}

impl Store {
    /// The oldest stored resource of a type carrying an identifier whose id is `usable`. An
    /// internal lookup for resolving a document's participants: callers must not reveal the
    /// result. Answers are remembered: resources are never deleted, so an id once found stays
    /// right, and every submission of a known patient skips the queries.
    pub fn id_by_identifier(
        &self,
        resource_type: ResourceType,
        system: &str,
        value: &str,
        usable: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, StoreError> {
        // Under the version in force, then (while a re-index is unfinished) under older ones.
        self.index_keys().complete()?;
        for pseudonyms in self.index_keys().lookup() {
            if let Some(id) = self.id_by_token(&pseudonyms, resource_type, system, value, &usable)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    fn id_by_token(
        &self,
        pseudonyms: &crate::crypto::Pseudonymizer,
        resource_type: ResourceType,
        system: &str,
        value: &str,
        usable: &impl Fn(&str) -> bool,
    ) -> Result<Option<String>, StoreError> {
        let wanted = TokenMatch::exact(pseudonyms, "identifier", Some(system), value);
        let exact = wanted.exact.as_deref().unwrap_or_default();
        let key = format!("{resource_type}|{exact}");
        if let Some(id) = self.inner.known_ids.get(&key) {
            return Ok(Some(id));
        }
        // One statement, prepared once per connection: a new patient's first document misses the
        // cache and comes here, so this runs for most submissions. Each key is its own branch of a
        // UNION ALL, an equality on the key's leading columns: PostgreSQL planned `token = $1
        // OR token = $2` (and `= ANY`) on a fresh database as a filter over every identifier row
        // of the type, which made each lookup a scan (78 ms at 8,000 patients).
        let rt = resource_type.as_str();
        let mut conn = self.conn()?;
        macro_rules! filed_under {
            ($token:expr) => {
                search_tokens::table
                    .inner_join(current_version_of!(search_tokens))
                    .filter(search_tokens::resource_type.eq(rt))
                    .filter(search_tokens::param.eq("identifier"))
                    .filter(search_tokens::token.eq($token))
                    .select((
                        resource_heads::last_updated,
                        resource_heads::id,
                        search_tokens::token,
                        search_tokens::system_token,
                    ))
            };
        }
        let rows: Vec<(i64, String, String, Option<String>)> =
            on_backend!(&mut *conn, |c| { filed_under!(wanted.any.as_str()).union_all(filed_under!(exact)).load(c) })?;
        let mut matches: Vec<(i64, String)> = rows
            .into_iter()
            .filter(|(_, _, token, system_token)| wanted.admits(token, system_token.as_deref()))
            .map(|(updated, id, _, _)| (updated, id))
            .collect();
        matches.sort();
        let found = matches.into_iter().map(|(_, id)| id).find(|id| usable(id));
        if let Some(id) = &found {
            self.inner.known_ids.put(&key, id.clone());
        }
        Ok(found)
    }

    /// Remembers the id of a resource just committed with this identifier.
    pub fn remember_identifier(&self, resource_type: ResourceType, system: &str, value: &str, id: &str) {
        let token = self.pseudonyms().token("identifier", Some(system), value);
        self.inner.known_ids.put(&format!("{resource_type}|{token}"), id.to_owned());
    }

    /// A page of one patient's resources of a type, the most recently changed first (ties by
    /// id), each head with its sealed listing, and how many there are: paged and counted in the
    /// database through the index by patient, type, time, id and version, then each head by its
    /// key. No version and no body is read. Only for a reader who receives every resource of
    /// this patient (the caller's enforcement point says whether), so that the count and the page
    /// are those that judging every row would give.
    pub fn patient_page_listed(
        &self,
        resource_type: ResourceType,
        patient: &str,
        offset: usize,
        count: usize,
    ) -> Result<(i64, Vec<ListedHead>), StoreError> {
        let rt = resource_type.as_str();
        let mut conn = self.conn()?;
        let total: i64 = resource_heads::table
            .filter(resource_heads::patient.eq(patient))
            .filter(resource_heads::resource_type.eq(rt))
            .count()
            .get_result(&mut *conn)?;
        let rows = resource_heads::table
            .filter(resource_heads::patient.eq(patient))
            .filter(resource_heads::resource_type.eq(rt))
            .order((resource_heads::last_updated.desc(), resource_heads::id.desc()))
            .offset(i64::try_from(offset).unwrap_or(i64::MAX))
            .limit(i64::try_from(count).unwrap_or(i64::MAX))
            .select((Head::as_select(), resource_heads::listing))
            .load::<(Head, Option<Vec<u8>>)>(&mut *conn)?;
        Ok((total, rows.into_iter().map(|(head, listing)| ListedHead { head, listing }).collect()))
    }

    /// The heads matching every criterion, oldest change first. Nothing is decrypted here; the
    /// caller releases, counts and pages.
    ///
    /// A search is bounded by what it names: at least one criterion must be ids, identifier
    /// tokens or patients, each read through an index on what it names. Dates and the time of
    /// the last change only narrow what those found (the dates through the index by patient), so
    /// no search reads a type as a whole and none costs more as the database grows beyond the
    /// named resources and patients.
    pub fn search(&self, resource_type: ResourceType, criteria: &[Criterion]) -> Result<Vec<Head>, StoreError> {
        let rt = resource_type.as_str();
        let mut conn = self.conn()?;
        // Named by patients alone (a patient's own data, the portal, `$everything`): their heads
        // in one query through the index by patient, rather than ids first and heads by id.
        let naming: Vec<&Criterion> =
            criteria.iter().filter(|c| !matches!(c, Criterion::Dates { .. } | Criterion::LastUpdated(_))).collect();
        if let [Criterion::Patients(patients)] = naming.as_slice() {
            let mut heads = Vec::new();
            for chunk in patients.chunks(CHUNK) {
                heads.extend(
                    resource_heads::table
                        .filter(resource_heads::resource_type.eq(rt))
                        .filter(resource_heads::patient.eq_any(chunk))
                        .select(Head::as_select())
                        .load::<Head>(&mut conn)?,
                );
            }
            return narrowed(&mut conn, rt, criteria, heads);
        }
        let mut candidates: Option<HashSet<String>> = None;
        let narrow = |candidates: &mut Option<HashSet<String>>, found: HashSet<String>| {
            *candidates = Some(match candidates.take() {
                Some(current) => current.intersection(&found).cloned().collect(),
                None => found,
            });
        };
        for criterion in criteria {
            let found: HashSet<String> = match criterion {
                Criterion::Ids(ids) => ids.iter().cloned().collect(),
                Criterion::Tokens { param, tokens } => {
                    let mut found = HashSet::new();
                    for chunk in TokenMatch::keys(tokens).chunks(CHUNK) {
                        let rows: Vec<(String, String, Option<String>)> = search_tokens::table
                            .inner_join(current_version_of!(search_tokens))
                            .filter(search_tokens::resource_type.eq(rt))
                            .filter(search_tokens::param.eq(param))
                            .filter(search_tokens::token.eq_any(chunk))
                            .select((search_tokens::id, search_tokens::token, search_tokens::system_token))
                            .load(&mut conn)?;
                        found.extend(rows.into_iter().filter_map(|(id, token, system_token)| {
                            tokens.iter().any(|m| m.admits(&token, system_token.as_deref())).then_some(id)
                        }));
                    }
                    found
                }
                Criterion::Patients(patients) => {
                    let mut found = HashSet::new();
                    for chunk in patients.chunks(CHUNK) {
                        found.extend(
                            resource_heads::table
                                .filter(resource_heads::resource_type.eq(rt))
                                .filter(resource_heads::patient.eq_any(chunk))
                                .select(resource_heads::id)
                                .load::<String>(&mut conn)?,
                        );
                    }
                    found
                }
                Criterion::Dates { .. } | Criterion::LastUpdated(_) => continue,
            };
            narrow(&mut candidates, found);
        }
        let Some(ids) = candidates else {
            return Err(StoreError::Internal(format!(
                "a search of {rt} named no ids, identifiers or patients: it would read every {rt}"
            )));
        };
        let ids: Vec<String> = ids.into_iter().collect();
        let mut heads = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            heads.extend(
                resource_heads::table
                    .filter(resource_heads::resource_type.eq(rt))
                    .filter(resource_heads::id.eq_any(chunk))
                    .select(Head::as_select())
                    .load::<Head>(&mut conn)?,
            );
        }
        narrowed(&mut conn, rt, criteria, heads)
    }
}

/// The heads the naming criteria found, narrowed by the dates among `criteria`, oldest change
/// first.
fn narrowed(
    conn: &mut DbConnection,
    rt: &str,
    criteria: &[Criterion],
    mut heads: Vec<Head>,
) -> Result<Vec<Head>, StoreError> {
    for criterion in criteria {
        match criterion {
            Criterion::Dates { param, queries } => {
                let dated = dated_ids(conn, rt, param, queries, &heads)?;
                heads.retain(|head| dated.contains(&head.id));
            }
            Criterion::LastUpdated(queries) => heads.retain(|head| {
                let second = head.last_updated.div_euclid(1000);
                queries.iter().any(|q| q.matches(second, second))
            }),
            _ => {}
        }
    }
    heads.sort_by(|a, b| (a.last_updated, &a.id).cmp(&(b.last_updated, &b.id)));
    Ok(heads)
}

/// The ids among `heads` with a date of `param` that one of `queries` matches: the date rows of
/// the heads' patients, read through the index by patient.
fn dated_ids(
    conn: &mut DbConnection,
    rt: &str,
    param: &str,
    queries: &[DateQuery],
    heads: &[Head],
) -> Result<HashSet<String>, StoreError> {
    let mut patients: Vec<&str> = heads.iter().filter_map(|head| head.patient.as_deref()).collect();
    patients.sort_unstable();
    patients.dedup();
    let wanted: HashSet<&str> = heads.iter().map(|head| head.id.as_str()).collect();
    let mut dated = HashSet::new();
    for chunk in patients.chunks(CHUNK) {
        let rows: Vec<(String, i64, i64)> = search_dates::table
            .inner_join(current_version_of!(search_dates))
            .filter(search_dates::resource_type.eq(rt))
            .filter(search_dates::patient.eq_any(chunk))
            .filter(search_dates::param.eq(param))
            .select((search_dates::id, search_dates::range_start, search_dates::range_end))
            .load(conn)?;
        dated.extend(rows.into_iter().filter_map(|(id, start, end)| {
            (wanted.contains(id.as_str()) && queries.iter().any(|q| q.matches(start, end))).then_some(id)
        }));
    }
    Ok(dated)
}
