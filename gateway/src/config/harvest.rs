//! Harvesting detection's settings, lifted from the raw values: the thresholds over a sliding
//! window and what an alert does to its principal's requests.

use super::{refuse, ConfigError, Raw};

/// What the gateway does about a professional who reaches unusually many patients.
#[derive(Clone, Debug, PartialEq)]
pub struct HarvestPolicy {
    pub enabled: bool,
    pub window_seconds: i64,
    pub practitioner_patients: u64,
    pub organisation_patients: u64,
    pub certificate_patients: u64,
    pub break_the_glass_patients: u64,
    pub withheld_share: f64,
    pub withheld_minimum: u64,
    pub response: HarvestResponse,
    pub slow_millis: u64,
    /// `None`: until an auditor clears it.
    pub block_seconds: Option<i64>,
}

/// What an alert does to its principal's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HarvestResponse {
    /// 429 Too Many Requests, with Retry-After and an OperationOutcome.
    Refuse,
    /// Each request waits before it is worked on.
    Slow,
}

pub(super) fn policy(raw: &Raw) -> Result<HarvestPolicy, ConfigError> {
    let window_seconds: i64 = raw.required("harvest.window_seconds", "a number of seconds")?;
    if !(60..=86_400).contains(&window_seconds) {
        return refuse("harvest.window_seconds must be between 60 and 86400");
    }
    let withheld_share: f64 = raw.required("harvest.withheld_share", "a share between 0 and 1")?;
    if !(0.0..=1.0).contains(&withheld_share) {
        return refuse("harvest.withheld_share must be between 0 and 1");
    }
    let response = match raw.text("harvest.response").as_deref() {
        Some("refuse") => HarvestResponse::Refuse,
        Some("slow") => HarvestResponse::Slow,
        other => return refuse(format!("harvest.response must be refuse or slow, not '{}'", other.unwrap_or(""))),
    };
    let block_seconds: i64 = raw.required("harvest.block_seconds", "a number of seconds")?;
    Ok(HarvestPolicy {
        enabled: raw.required("harvest.enabled", "true or false")?,
        window_seconds,
        practitioner_patients: raw.required("harvest.practitioner_patients", "a whole number")?,
        organisation_patients: raw.required("harvest.organisation_patients", "a whole number")?,
        certificate_patients: raw.required("harvest.certificate_patients", "a whole number")?,
        break_the_glass_patients: raw.required("harvest.break_the_glass_patients", "a whole number")?,
        withheld_share,
        withheld_minimum: raw.required("harvest.withheld_minimum", "a whole number")?,
        response,
        slow_millis: raw.required("harvest.slow_millis", "a number of milliseconds")?,
        block_seconds: (block_seconds > 0).then_some(block_seconds),
    })
}
