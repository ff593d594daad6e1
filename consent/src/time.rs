//! Just enough of FHIR's dateTime to place a Consent's validity period around a moment that the
//! caller supplies. The crate reads no clock: "now" is always an argument.

use crate::ConsentError;

/// An instant, in whole seconds since the Unix epoch (UTC). The gateway reads the clock once per
/// request and passes it in, so a decision is a function of its arguments alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Timestamp(seconds)
    }

    pub const fn unix_seconds(self) -> i64 {
        self.0
    }

    /// Reads a FHIR `instant`: a dateTime to the second, with its zone
    /// (`2024-05-01T12:00:00+03:00`). Fractions of a second are dropped.
    pub fn parse(text: &str) -> Result<Self, ConsentError> {
        match DateTime::parse(text) {
            Some(time) if time.start.0 == time.start.1 && time.end.0 - time.start.0 == 1 => Ok(Timestamp(time.start.0)),
            _ => Err(ConsentError::new("instant", "a dateTime to the second with a zone, e.g. 2024-05-01T12:00:00Z")),
        }
    }
}

/// The span of time a FHIR dateTime denotes. `2024-05` is the whole of May; a value without a
/// time has no zone, so where that span begins and ends is known only to within the world's
/// zones (UTC-12 to UTC+14). Each bound is therefore kept as the earliest and the latest instant
/// it can be, and a caller chooses the reading that fails closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DateTime {
    /// Earliest and latest instant at which the span can begin.
    pub start: (i64, i64),
    /// Earliest and latest instant at which the span can end (exclusive).
    pub end: (i64, i64),
}

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// The zones furthest ahead of and behind UTC.
const AHEAD: i64 = 14 * HOUR;
const BEHIND: i64 = 12 * HOUR;

/// What a dateTime must look like, for error messages.
pub(crate) const DATE_TIME: &str = "a FHIR dateTime: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a zone";

impl DateTime {
    /// Reads FHIR R4 `dateTime`: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or
    /// `YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm)` (a time needs a zone in R4).
    pub fn parse(text: &str) -> Option<DateTime> {
        let b = text.as_bytes();
        let year = number(b, 0, 4)?;
        if year == 0 {
            return None;
        }
        let year = i64::from(year);
        if b.len() == 4 {
            return Some(DateTime::local(days_from_civil(year, 1, 1) * DAY, days_from_civil(year + 1, 1, 1) * DAY));
        }
        expect(b, 4, b'-')?;
        let month = number(b, 5, 2).filter(|m| (1..=12).contains(m))?;
        if b.len() == 7 {
            let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            return Some(DateTime::local(
                days_from_civil(year, month, 1) * DAY,
                days_from_civil(next_year, next_month, 1) * DAY,
            ));
        }
        expect(b, 7, b'-')?;
        let day = number(b, 8, 2).filter(|d| (1..=days_in_month(year, month)).contains(d))?;
        let midnight = days_from_civil(year, month, day) * DAY;
        if b.len() == 10 {
            return Some(DateTime::local(midnight, midnight + DAY));
        }
        expect(b, 10, b'T')?;
        let hour = number(b, 11, 2).filter(|h| *h < 24)?;
        expect(b, 13, b':')?;
        let minute = number(b, 14, 2).filter(|m| *m < 60)?;
        expect(b, 16, b':')?;
        // 60 is a leap second, which R4 allows.
        let second = number(b, 17, 2).filter(|s| *s <= 60)?;
        let mut at = 19;
        if b.get(at) == Some(&b'.') {
            let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            at += 1 + digits;
        }
        let offset = match b.get(at)? {
            b'Z' if b.len() == at + 1 => 0,
            sign @ (b'+' | b'-') if b.len() == at + 6 => {
                let hours = number(b, at + 1, 2)?;
                expect(b, at + 3, b':')?;
                let minutes = number(b, at + 4, 2).filter(|m| *m < 60)?;
                if hours > 14 || (hours == 14 && minutes != 0) {
                    return None;
                }
                let offset = i64::from(hours) * HOUR + i64::from(minutes) * 60;
                if *sign == b'-' {
                    -offset
                } else {
                    offset
                }
            }
            _ => return None,
        };
        let instant = midnight + i64::from(hour) * HOUR + i64::from(minute) * 60 + i64::from(second) - offset;
        Some(DateTime { start: (instant, instant), end: (instant + 1, instant + 1) })
    }

    /// A span given in local time with no zone: it can fall anywhere from UTC+14 to UTC-12.
    fn local(start: i64, end: i64) -> DateTime {
        DateTime { start: (start - AHEAD, start + BEHIND), end: (end - AHEAD, end + BEHIND) }
    }
}

fn number(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let digits = b.get(at..at + len)?;
    digits.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let march_based_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * march_based_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_read_with_their_zone() {
        assert_eq!(Timestamp::parse("1970-01-01T00:00:00Z"), Ok(Timestamp(0)));
        assert_eq!(Timestamp::parse("2024-03-01T02:00:00+02:00").unwrap().unix_seconds(), 1_709_251_200);
        assert_eq!(Timestamp::parse("2024-02-29T23:30:00.125-00:30").unwrap().unix_seconds(), 1_709_251_200);
        for bad in ["2024-03-01", "2024-03-01T02:00:00", "2024-02-30T00:00:00Z", "2024-03-01T24:00:00Z", ""] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partial_dates_denote_their_whole_span_in_any_zone() {
        let day = DateTime::parse("2024-03-01").unwrap();
        assert_eq!(day.start, (1_709_251_200 - AHEAD, 1_709_251_200 + BEHIND));
        assert_eq!(day.end.0 - day.start.0, DAY);
        let february = DateTime::parse("2024-02").unwrap();
        assert_eq!(february.end.0 - february.start.0, 29 * DAY);
        let year = DateTime::parse("2023").unwrap();
        assert_eq!(year.end.0 - year.start.0, 365 * DAY);
        for bad in ["0000", "2024-13", "2023-02-29", "2024-1", "2024-01-01T10:00Z", "2024-01-01T10:00:00+15:00"] {
            assert_eq!(DateTime::parse(bad), None, "{bad}");
        }
    }
}
