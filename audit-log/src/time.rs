//! Time as an argument: the crate reads no clock.

use std::fmt;

use crate::AuditError;

/// An instant in whole milliseconds since the Unix epoch (UTC), from 1970 to the end of year 9999:
/// the range a FHIR `instant` can spell. The gateway reads its clock and passes the value in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(u64);

impl UnixMillis {
    /// 10000-01-01T00:00:00Z, the first instant a four-digit year cannot spell.
    const END: u64 = 253_402_300_800_000;

    pub fn new(millis: u64) -> Result<Self, AuditError> {
        if millis < Self::END {
            Ok(UnixMillis(millis))
        } else {
            Err(AuditError::TimeOutOfRange)
        }
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }
}

/// Milliseconds as a JSON integer, in the canonical bytes.
impl serde::Serialize for UnixMillis {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for UnixMillis {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let millis = u64::deserialize(deserializer)?;
        UnixMillis::new(millis).map_err(serde::de::Error::custom)
    }
}

/// The FHIR `instant` in UTC with milliseconds, e.g. `2024-05-01T09:30:00.250Z`.
impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, millis_of_day) = (self.0 / 86_400_000, self.0 % 86_400_000);
        let (year, month, day) = civil_from_days(days);
        let seconds = millis_of_day / 1000;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            millis_of_day % 1000
        )
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that a leap day is the last day of its year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(millis: u64) -> String {
        UnixMillis::new(millis).unwrap().to_string()
    }

    #[test]
    fn renders_fhir_instants() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(instant(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(instant(1_714_555_800_250), "2024-05-01T09:30:00.250Z");
        assert_eq!(instant(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(instant(UnixMillis::END - 1), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn refuses_what_four_digits_cannot_spell() {
        assert!(UnixMillis::new(UnixMillis::END).is_err());
        assert!(UnixMillis::new(u64::MAX).is_err());
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let mut previous = civil_from_days(0);
        for days in 1..(366 * 500) {
            let date = civil_from_days(days);
            let next_day = (previous.0, previous.1, previous.2 + 1);
            let next_month = (previous.0, previous.1 + 1, 1);
            let next_year = (previous.0 + 1, 1, 1);
            assert!(date == next_day || date == next_month || date == next_year, "{previous:?} then {date:?}");
            if date == next_month || date == next_year {
                let year = previous.0;
                let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
                let length = match previous.1 {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(previous.2, length, "{previous:?}");
            }
            previous = date;
        }
    }
}
