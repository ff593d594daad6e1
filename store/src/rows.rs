//! The rows of the resource tables as Rust types, the one join that keeps an index's rows of
//! current versions only, and identifier tokens as the index files and finds them.

use diesel::prelude::*;

use crate::crypto::Pseudonymizer;
use crate::db::schema::{data_keys, resource_heads, resource_versions, search_dates, search_tokens};
use crate::db::DbConnection;

/// The join of an index table (`search_tokens`, `search_dates`) to the heads that keeps only
/// the rows of each resource's current version: the one rule that makes old versions' index
/// rows invisible, for every query that reads an index.
macro_rules! current_version_of {
    ($index:ident) => {
        $crate::db::schema::resource_heads::table.on($crate::db::schema::resource_heads::resource_type
            .eq($index::resource_type)
            .and($crate::db::schema::resource_heads::id.eq($index::id))
            .and($crate::db::schema::resource_heads::version.eq($index::version)))
    };
}
pub(crate) use current_version_of;

/// What the enforcement point reads of a stored row: never the body.
pub trait Stored {
    fn resource_type(&self) -> &str;
    fn id(&self) -> &str;
    fn version(&self) -> i64;
    fn patient(&self) -> Option<&str>;
    fn security_labels(&self) -> &str;
    fn author(&self) -> (Option<&str>, Option<&str>);
    /// The bare OID of the service event the row belongs to.
    fn service_event(&self) -> Option<&str>;
}

/// A resource's current version and the metadata decisions are taken on.
#[derive(Queryable, Selectable, Insertable, Clone, Debug)]
#[diesel(table_name = resource_heads, treat_none_as_default_value = false)]
pub struct Head {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub patient: Option<String>,
    pub security_labels: String,
    pub author_org: Option<String>,
    pub author_practitioner: Option<String>,
    pub last_updated: i64,
    pub service_event: Option<String>,
}

/// A head with its document's sealed listing (`seal::sealed_listing`), as the list of a
/// patient's documents reads it: every other read of heads leaves the listing out. Judged like
/// its head; its listing is opened only through the [`crate::Opener`].
#[derive(Clone)]
pub struct ListedHead {
    pub head: Head,
    pub(crate) listing: Option<Vec<u8>>,
}

impl ListedHead {
    /// What its listing was sealed bound to: its current version's binding, under its patient's
    /// key (only a patient's documents have listings).
    pub(crate) fn binding(&self) -> Option<crate::crypto::BodyBinding<'_>> {
        Some(binding_of(&self.head, self.head.patient.as_deref()?))
    }
}

/// One version of a resource: its metadata in clear, its body sealed.
#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = resource_versions, treat_none_as_default_value = false)]
pub struct VersionRow {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub patient: Option<String>,
    pub key_scope: String,
    pub security_labels: String,
    pub author_org: Option<String>,
    pub author_practitioner: Option<String>,
    pub last_updated: i64,
    pub method: String,
    pub body: Vec<u8>,
    pub service_event: Option<String>,
}

impl VersionRow {
    /// What the version's body was sealed bound to.
    pub(crate) fn binding(&self) -> crate::crypto::BodyBinding<'_> {
        binding_of(self, &self.key_scope)
    }
}

/// What a row's sealed bytes are bound to: its decision metadata, under the key of `key_scope`.
fn binding_of<'a>(row: &'a impl Stored, key_scope: &'a str) -> crate::crypto::BodyBinding<'a> {
    crate::crypto::BodyBinding {
        resource_type: row.resource_type(),
        id: row.id(),
        version: row.version(),
        key_scope,
        patient: row.patient(),
        security_labels: row.security_labels(),
        author: row.author(),
        service_event: row.service_event(),
    }
}

/// Heads and versions carry the same decision metadata under the same column names.
macro_rules! stored {
    // A row that wraps one of these, judged as it.
    ($row:ty => $inner:ident) => {
        impl Stored for $row {
            fn resource_type(&self) -> &str {
                self.$inner.resource_type()
            }
            fn id(&self) -> &str {
                self.$inner.id()
            }
            fn version(&self) -> i64 {
                self.$inner.version()
            }
            fn patient(&self) -> Option<&str> {
                self.$inner.patient()
            }
            fn security_labels(&self) -> &str {
                self.$inner.security_labels()
            }
            fn author(&self) -> (Option<&str>, Option<&str>) {
                self.$inner.author()
            }
            fn service_event(&self) -> Option<&str> {
                self.$inner.service_event()
            }
        }
    };
    ($($row:ty),*) => {$(
        impl Stored for $row {
            fn resource_type(&self) -> &str {
                &self.resource_type
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn version(&self) -> i64 {
                self.version
            }
            fn patient(&self) -> Option<&str> {
                self.patient.as_deref()
            }
            fn security_labels(&self) -> &str {
                &self.security_labels
            }
            fn author(&self) -> (Option<&str>, Option<&str>) {
                (self.author_org.as_deref(), self.author_practitioner.as_deref())
            }
            fn service_event(&self) -> Option<&str> {
                self.service_event.as_deref()
            }
        }
    )*};
}
stored!(Head, VersionRow);
stored!(ListedHead => head);

/// An index row belongs to one version of its resource and a write never changes or removes
/// one: a new version adds its own rows, and every query joins the head to keep only the
/// current version's (`current_version_of!`). So a write never reads or deletes index rows, and
/// the rows can be keyed for lookup alone (the table is its own search index) rather than also
/// by resource. (Only a re-index to a new index key replaces them, `reindex.rs`.)
#[derive(Insertable)]
#[diesel(table_name = search_tokens, treat_none_as_default_value = false)]
pub(crate) struct TokenRow<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub param: &'a str,
    pub token: String,
    pub patient: Option<&'a str>,
    pub version: i64,
    pub system_token: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = search_dates, treat_none_as_default_value = false)]
pub(crate) struct DateRow<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub param: &'a str,
    pub range_start: i64,
    pub range_end: i64,
    pub patient: Option<&'a str>,
    pub version: i64,
}

#[derive(Insertable)]
#[diesel(table_name = data_keys)]
pub(crate) struct NewDataKey<'a> {
    pub scope: &'a str,
    pub kek_id: &'a str,
    pub wrapped_key: Vec<u8>,
    pub created_at: i64,
}

/// What a token search asks of an identifier, in the terms of the index: the identifier's
/// any-system token (`value` in any system), and, for `system|value` or `|value`, the token
/// of that exact form.
///
/// An identifier is filed in one row, under `any` with `exact` beside it (`system_token`);
/// rows written before migration 7, and a second identifier of one resource with the same
/// value in another system, are filed under `exact` alone, with no `system_token`. Every
/// lookup reads both forms: the rows whose key is `any` or `exact`, then [`TokenMatch::admits`].
#[derive(Clone, Debug)]
pub struct TokenMatch {
    pub any: String,
    pub exact: Option<String>,
}

impl TokenMatch {
    /// An identifier as it is filed and asked for exactly: `system|value`, or `|value` for one
    /// without a system. The one place that pairs the two tokens, for writes and lookups alike.
    pub fn exact(pseudonyms: &Pseudonymizer, param: &str, system: Option<&str>, value: &str) -> TokenMatch {
        TokenMatch {
            any: pseudonyms.token_any_system(param, value),
            exact: Some(pseudonyms.token(param, system, value)),
        }
    }

    /// `value` in any system.
    pub fn any_system(pseudonyms: &Pseudonymizer, param: &str, value: &str) -> TokenMatch {
        TokenMatch { any: pseudonyms.token_any_system(param, value), exact: None }
    }

    /// Whether an index row (its key and its `system_token`) is an identifier this asks for.
    pub fn admits(&self, token: &str, system_token: Option<&str>) -> bool {
        match &self.exact {
            None => token == self.any,
            Some(exact) => match system_token {
                Some(system_token) => token == self.any && system_token == exact,
                None => token == exact,
            },
        }
    }

    /// The keys to read: the rows any of `matches` may admit are filed under these.
    pub(crate) fn keys(matches: &[TokenMatch]) -> Vec<&str> {
        let mut keys: Vec<&str> =
            matches.iter().flat_map(|m| std::iter::once(m.any.as_str()).chain(m.exact.as_deref())).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// A resource's head, looked up on the concrete connection (a prepared statement found by the
/// query's type): by the API's reads, and by the writer before an update.
pub(crate) fn head_on(conn: &mut DbConnection, resource_type: &str, id: &str) -> diesel::QueryResult<Option<Head>> {
    let query =
        resource_heads::table.filter(resource_heads::resource_type.eq(resource_type)).filter(resource_heads::id.eq(id));
    crate::db::on_backend!(conn, |c| query.select(Head::as_select()).get_result(c).optional())
}
