//! What harvesting detection keeps: marks of which principal reached which patient in which
//! minute, and the alerts raised when a principal crossed a threshold. The gateway decides what
//! a principal is, what the thresholds are and what an alert does; this stores and counts.
//!
//! Marks ride with a request's audit records through the writer (one row per principal, minute
//! and patient, however often the patient was read in that minute), so they cost no commit of
//! their own; a count reads one principal's marks of the window through the primary key.

use diesel::prelude::*;

use crate::audit::{append, AuditRecord};
use crate::db::schema::{access_alerts, reach_marks};
use crate::db::{on_backend, write_transaction};
use crate::error::StoreError;
pub use crate::marks::ReachMark;
use crate::store::Store;
use crate::time::now_millis;

/// An alert as stored.
#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = access_alerts)]
pub struct AccessAlert {
    pub id: String,
    pub principal: String,
    pub organisation: Option<String>,
    pub raised_at: i64,
    /// When it lapses by itself; `None`: when an auditor clears it.
    pub until: Option<i64>,
    /// Distinct patients reached in the window when it was raised, and how many of them only
    /// with refusals.
    pub patients: i64,
    pub withheld: i64,
    /// Which threshold it crossed, in words.
    pub threshold: String,
    pub cleared_at: Option<i64>,
    pub cleared_by: Option<String>,
    pub clear_reason: Option<String>,
}

impl AccessAlert {
    /// Whether it holds at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.cleared_at.is_none() && self.until.is_none_or(|until| until > now)
    }
}

/// An alert to raise.
#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = access_alerts)]
pub struct NewAlert {
    pub id: String,
    pub principal: String,
    pub organisation: Option<String>,
    pub raised_at: i64,
    pub until: Option<i64>,
    pub patients: i64,
    pub withheld: i64,
    pub threshold: String,
}

/// What an auditor asks of the alerts; every filter ANDed.
#[derive(Default, Clone, Debug)]
pub struct AlertQuery {
    pub id: Option<String>,
    pub principal: Option<String>,
    pub organisation: Option<String>,
    /// Raised between, in epoch milliseconds, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub offset: usize,
    pub count: usize,
}

impl Store {
    /// How many distinct patients `principal` reached from `since_minute` on, and how many of
    /// them only with refusals.
    pub fn reach(&self, principal: &str, since_minute: i64) -> Result<(u64, u64), StoreError> {
        let rows: Vec<(String, bool)> = reach_marks::table
            .filter(reach_marks::principal.eq(principal))
            .filter(reach_marks::minute.ge(since_minute))
            .select((reach_marks::patient, reach_marks::withheld))
            .load(&mut self.conn()?)?;
        let mut patients: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
        for (patient, withheld) in &rows {
            // Withheld only if every sighting in the window was.
            *patients.entry(patient.as_str()).or_insert(true) &= *withheld;
        }
        let withheld = patients.values().filter(|withheld| **withheld).count();
        Ok((patients.len() as u64, withheld as u64))
    }

    /// The alerts that hold now: the principals the gateway slows or refuses.
    pub fn active_alerts(&self) -> Result<Vec<AccessAlert>, StoreError> {
        let now = now_millis();
        let open: Vec<AccessAlert> = access_alerts::table
            .filter(access_alerts::cleared_at.is_null())
            .select(AccessAlert::as_select())
            .load(&mut self.conn()?)?;
        Ok(open.into_iter().filter(|alert| alert.active(now)).collect())
    }

    /// Raises `alert` unless one holds for its principal (raised by another node a moment ago),
    /// and in the same transaction appends the records `flags` makes of the patients the
    /// principal reached from `since_minute` on (at most `limit` of them): each patient's log
    /// shows the alert. Returns whether this call raised it.
    pub fn raise_alert(
        &self,
        alert: NewAlert,
        since_minute: i64,
        limit: usize,
        flags: impl FnOnce(&[String]) -> Vec<AuditRecord>,
    ) -> Result<bool, StoreError> {
        let signer = self.inner.signer.clone();
        write_transaction(&mut *self.conn()?, |conn| {
            // An alert that lapsed by itself is closed, so that a new one may be raised.
            let lapsed = access_alerts::table
                .filter(access_alerts::principal.eq(&alert.principal))
                .filter(access_alerts::cleared_at.is_null())
                .filter(access_alerts::until.le(alert.raised_at));
            let close = diesel::update(lapsed)
                .set((access_alerts::cleared_at.eq(alert.raised_at), access_alerts::cleared_by.eq("lapsed")));
            on_backend!(&mut *conn, |c| close.execute(c))?;
            let insert = diesel::insert_into(access_alerts::table).values(&alert).on_conflict_do_nothing();
            if on_backend!(&mut *conn, |c| insert.execute(c))? == 0 {
                return Ok(false);
            }
            let patients: Vec<String> = reach_marks::table
                .filter(reach_marks::principal.eq(&alert.principal))
                .filter(reach_marks::minute.ge(since_minute))
                .select(reach_marks::patient)
                .distinct()
                .limit(limit as i64)
                .load(conn)?;
            append(conn, &flags(&patients), &signer, now_millis())?;
            Ok(true)
        })
    }

    /// Clears an active alert, recording who cleared it and why; `record` is appended in the
    /// same transaction. Returns whether there was an active alert of that id.
    pub fn clear_alert(&self, id: &str, by: &str, reason: &str, record: AuditRecord) -> Result<bool, StoreError> {
        let signer = self.inner.signer.clone();
        let now = now_millis();
        write_transaction(&mut *self.conn()?, |conn| {
            let target =
                access_alerts::table.filter(access_alerts::id.eq(id)).filter(access_alerts::cleared_at.is_null());
            let clear = diesel::update(target).set((
                access_alerts::cleared_at.eq(now),
                access_alerts::cleared_by.eq(by),
                access_alerts::clear_reason.eq(reason),
            ));
            if on_backend!(&mut *conn, |c| clear.execute(c))? == 0 {
                return Ok(false);
            }
            append(conn, &[record], &signer, now)?;
            Ok(true)
        })
    }

    /// The alerts an auditor asks for, newest first, a page at a time.
    pub fn alerts(&self, query: &AlertQuery) -> Result<Vec<AccessAlert>, StoreError> {
        use crate::db::schema::access_alerts::dsl as a;
        macro_rules! run {
            ($conn:expr) => {{
                let mut q = a::access_alerts.into_boxed();
                if let Some(id) = &query.id {
                    q = q.filter(a::id.eq(id.clone()));
                }
                if let Some(principal) = &query.principal {
                    q = q.filter(a::principal.eq(principal.clone()));
                }
                if let Some(organisation) = &query.organisation {
                    q = q.filter(a::organisation.eq(organisation.clone()));
                }
                if let Some(from) = query.from {
                    q = q.filter(a::raised_at.ge(from));
                }
                if let Some(to) = query.to {
                    q = q.filter(a::raised_at.le(to));
                }
                q.order((a::raised_at.desc(), a::id.desc()))
                    .offset(query.offset as i64)
                    .limit(query.count as i64)
                    .select(AccessAlert::as_select())
                    .load($conn)?
            }};
        }
        Ok(on_backend!(&mut *self.conn()?, |c| run!(c)))
    }

    /// Deletes the marks of minutes before `before_minute`, a minute at a time (each minute's
    /// marks are bounded by what happened in it); returns how many rows went.
    pub fn purge_marks(&self, before_minute: i64) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let oldest: Option<i64> =
                reach_marks::table.select(diesel::dsl::min(reach_marks::minute)).get_result(&mut self.conn()?)?;
            let Some(minute) = oldest.filter(|minute| *minute < before_minute) else { return Ok(purged) };
            purged += write_transaction(&mut *self.conn()?, |conn| {
                let old = reach_marks::table.filter(reach_marks::minute.eq(minute));
                Ok(on_backend!(&mut *conn, |c| diesel::delete(old).execute(c))?)
            })?;
        }
    }
}
