//! Harvesting detection's marks as rows, and their insert inside the writer's transaction (the
//! rest of detection's storage is `watch.rs`).

use diesel::prelude::*;

use crate::db::schema::reach_marks;
use crate::db::{on_backend, DbConnection};
use crate::error::StoreError;

/// A principal reached a patient in a minute (epoch minutes).
#[derive(Insertable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = reach_marks)]
pub struct ReachMark {
    pub principal: String,
    pub minute: i64,
    pub patient: String,
    /// Whether what the principal asked of the patient was withheld or refused.
    pub withheld: bool,
}

/// Inserts marks inside the writer's transaction; one already there is left as it is.
pub(crate) fn insert_marks(conn: &mut DbConnection, marks: &[ReachMark]) -> Result<(), StoreError> {
    for mark in marks {
        let insert = diesel::insert_into(reach_marks::table).values(mark).on_conflict_do_nothing();
        on_backend!(&mut *conn, |c| insert.execute(c))?;
    }
    Ok(())
}
