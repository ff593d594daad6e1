//! The clock, in the two forms stored rows and FHIR use.

/// Now, in milliseconds since the epoch: what every stored timestamp holds.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A FHIR `instant` of epoch milliseconds.
pub fn instant(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
