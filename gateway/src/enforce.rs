//! The one enforcement point: every path that returns clinical data passes its rows through
//! [`release`] before anything is decrypted, and only a [`Released`] row can be opened (see
//! `Store::open`). A handler that forgot to ask would not compile.

use consent::{decide, Principal, ResourceMeta, SecurityLabel};

use crate::store::Stored;

/// A row the principal may receive. Constructed only here.
pub struct Released<T>(T);

impl<T> Released<T> {
    pub fn get(&self) -> &T {
        &self.0
    }
}

fn labels(codes: &str) -> Vec<SecurityLabel> {
    codes.split_whitespace().filter_map(SecurityLabel::from_code).collect()
}

/// Whether `principal` may receive `row`.
pub fn permits<T: Stored>(principal: &Principal, row: &T) -> bool {
    let labels = labels(row.security_labels());
    let (author_organisation, author_practitioner) = row.author();
    let meta = ResourceMeta {
        resource_type: row.resource_type(),
        patient: row.patient(),
        security_labels: &labels,
        author_organisation,
        author_practitioner,
        // Rows do not record their service event yet; patient choices by service event arrive
        // with the Consent API (issue #5).
        service_event: None,
    };
    decide(principal, &meta).is_permit()
}

/// Keeps the rows `principal` may receive, in order. Callers count and page only what this
/// returns, so totals and page sizes reveal nothing about what was withheld.
pub fn release<T: Stored>(principal: &Principal, rows: Vec<T>) -> Vec<Released<T>> {
    rows.into_iter().filter(|row| permits(principal, row)).map(Released).collect()
}

/// One row: `None` when withheld, which callers answer exactly like an absent resource.
pub fn release_one<T: Stored>(principal: &Principal, row: T) -> Option<Released<T>> {
    permits(principal, &row).then_some(Released(row))
}
