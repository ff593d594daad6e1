//! PostgreSQL's form of a group of creates: each table's rows of the whole group in one
//! statement (`db::unnest`). On PostgreSQL every statement is a round trip and a
//! parse-bind-execute in the server; SQLite runs in-process and writes row by row
//! (`apply.rs`).

use std::collections::HashSet;

use diesel::{PgConnection, RunQueryDsl};

use crate::apply::{conflict, new_key_rows, new_rows, Pending, WriteContext};
use crate::db::unnest::{Column, Unnest};
use crate::error::StoreError;
use crate::resource::{WriteKind, Written};
use crate::time::now_millis;

/// A group's writes when every one creates a resource (ingest's case: a document and its new
/// participants), each table's rows of the whole group in one statement. On PostgreSQL every
/// statement is a round trip and a parse-bind-execute in the server, and the server's CPU per
/// document was as large as the gateway's; this takes the writer's statements from about seven
/// per document to five per group. A `CreateIfAbsent` whose resource exists (its head's insert
/// does nothing) or was created earlier in the group writes nothing. Any other conflict fails
/// the group, which then runs again request by request.
pub(crate) fn write_created(
    conn: &mut PgConnection,
    context: &WriteContext,
    jobs: &[&Pending],
) -> Result<Vec<Written>, StoreError> {
    let now = now_millis();
    let pseudonyms = context.index.current();
    let mut planned: HashSet<(&str, &str)> = HashSet::new();
    let (mut keys, mut versions, mut heads, mut listings, mut tokens, mut dates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Where each planned resource's answer sits in `results`, and whether it may exist already.
    let mut answers: Vec<(usize, usize, bool)> = Vec::new();
    let mut results = Vec::with_capacity(jobs.len());
    for (n, job) in jobs.iter().enumerate() {
        keys.extend(new_key_rows(&job.keys, now));
        let mut written = Vec::with_capacity(job.writes.len());
        for (write, sealed) in job.writes.iter().zip(job.sealed.iter()) {
            let resource_type = write.resource.resource_type.as_str();
            let if_absent = matches!(write.kind, WriteKind::CreateIfAbsent);
            if !planned.insert((resource_type, write.id.as_str())) && if_absent {
                // Created earlier in this group.
                written.push(None);
                continue;
            }
            let ready = sealed.as_ref().ok_or_else(|| StoreError::Internal("no version 1 sealed ahead".into()))?;
            let rows = new_rows(&pseudonyms, write, 1, ready.last_updated, ready.sealed.clone(), false);
            answers.push((n, written.len(), if_absent));
            written.push(Some((rows.head.clone(), ready.plain.clone())));
            versions.push(rows.version);
            heads.push(rows.head);
            listings.push(ready.listing.as_deref());
            tokens.extend(rows.tokens);
            dates.extend(rows.dates);
        }
        results.push(written);
    }
    // One statement a table for the whole group, whose text does not depend on its size
    // (`db::unnest`).
    Unnest::new(
        "data_keys",
        "scope, kek_id, wrapped_key, created_at",
        vec![
            Column::Text(keys.iter().map(|k| k.scope).collect()),
            Column::Text(keys.iter().map(|k| k.kek_id).collect()),
            Column::Binary(keys.iter().map(|k| k.wrapped_key.as_slice()).collect()),
            Column::BigInt(keys.iter().map(|k| k.created_at).collect()),
        ],
    )
    .insert(conn)
    .map_err(conflict)?;
    // The heads first: a `CreateIfAbsent` whose resource exists (stored by an earlier group or
    // another node) inserts no head, and then none of its other rows. One statement for the
    // group; looking each one up first took a round trip a document.
    let inserted: HashSet<(String, String)> = Unnest::new(
        "resource_heads",
        "resource_type, id, version, patient, security_labels, author_org, author_practitioner, last_updated, \
         service_event, listing",
        vec![
            Column::Text(heads.iter().map(|h| h.resource_type.as_str()).collect()),
            Column::Text(heads.iter().map(|h| h.id.as_str()).collect()),
            Column::BigInt(heads.iter().map(|h| h.version).collect()),
            Column::OptionalText(heads.iter().map(|h| h.patient.as_deref()).collect()),
            Column::Text(heads.iter().map(|h| h.security_labels.as_str()).collect()),
            Column::OptionalText(heads.iter().map(|h| h.author_org.as_deref()).collect()),
            Column::OptionalText(heads.iter().map(|h| h.author_practitioner.as_deref()).collect()),
            Column::BigInt(heads.iter().map(|h| h.last_updated).collect()),
            Column::OptionalText(heads.iter().map(|h| h.service_event.as_deref()).collect()),
            Column::OptionalBinary(listings),
        ],
    )
    .then(" ON CONFLICT DO NOTHING RETURNING resource_type, id")
    .get_results::<(String, String)>(conn)?
    .into_iter()
    .collect();
    let is_inserted = |resource_type: &str, id: &str| inserted.contains(&(resource_type.to_owned(), id.to_owned()));
    for ((n, at, if_absent), head) in answers.iter().zip(&heads) {
        if !is_inserted(&head.resource_type, &head.id) {
            if !if_absent {
                // A created resource met an existing one: the group runs again request by
                // request, and this request alone is refused.
                return Err(StoreError::Conflict("the resource was created concurrently".into()));
            }
            results[*n][*at] = None;
        }
    }
    versions.retain(|row| is_inserted(&row.resource_type, &row.id));
    tokens.retain(|row| is_inserted(row.resource_type, row.id));
    dates.retain(|row| is_inserted(row.resource_type, row.id));
    Unnest::new(
        "resource_versions",
        "resource_type, id, version, patient, key_scope, security_labels, author_org, author_practitioner, \
         last_updated, method, body, service_event",
        vec![
            Column::Text(versions.iter().map(|v| v.resource_type.as_str()).collect()),
            Column::Text(versions.iter().map(|v| v.id.as_str()).collect()),
            Column::BigInt(versions.iter().map(|v| v.version).collect()),
            Column::OptionalText(versions.iter().map(|v| v.patient.as_deref()).collect()),
            Column::Text(versions.iter().map(|v| v.key_scope.as_str()).collect()),
            Column::Text(versions.iter().map(|v| v.security_labels.as_str()).collect()),
            Column::OptionalText(versions.iter().map(|v| v.author_org.as_deref()).collect()),
            Column::OptionalText(versions.iter().map(|v| v.author_practitioner.as_deref()).collect()),
            Column::BigInt(versions.iter().map(|v| v.last_updated).collect()),
            Column::Text(versions.iter().map(|v| v.method.as_str()).collect()),
            Column::Binary(versions.iter().map(|v| v.body.as_slice()).collect()),
            Column::OptionalText(versions.iter().map(|v| v.service_event.as_deref()).collect()),
        ],
    )
    .insert(conn)
    .map_err(conflict)?;
    Unnest::new(
        "search_tokens",
        "resource_type, id, param, token, patient, version, system_token",
        vec![
            Column::Text(tokens.iter().map(|t| t.resource_type).collect()),
            Column::Text(tokens.iter().map(|t| t.id).collect()),
            Column::Text(tokens.iter().map(|t| t.param).collect()),
            Column::Text(tokens.iter().map(|t| t.token.as_str()).collect()),
            Column::OptionalText(tokens.iter().map(|t| t.patient).collect()),
            Column::BigInt(tokens.iter().map(|t| t.version).collect()),
            Column::OptionalText(tokens.iter().map(|t| t.system_token.as_deref()).collect()),
        ],
    )
    .insert(conn)
    .map_err(conflict)?;
    Unnest::new(
        "search_dates",
        "resource_type, id, param, range_start, range_end, patient, version",
        vec![
            Column::Text(dates.iter().map(|d| d.resource_type).collect()),
            Column::Text(dates.iter().map(|d| d.id).collect()),
            Column::Text(dates.iter().map(|d| d.param).collect()),
            Column::BigInt(dates.iter().map(|d| d.range_start).collect()),
            Column::BigInt(dates.iter().map(|d| d.range_end).collect()),
            Column::OptionalText(dates.iter().map(|d| d.patient).collect()),
            Column::BigInt(dates.iter().map(|d| d.version).collect()),
        ],
    )
    .insert(conn)
    .map_err(conflict)?;
    Ok(results)
}
