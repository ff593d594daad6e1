use std::fmt;

use chrono::NaiveDate;

/// The OID of the Finnish personal identity code (HETU) as an identifier system.
pub const HETU_SYSTEM: &str = "urn:oid:1.2.246.21";

/// A Finnish personal identity code (*henkilötunnus*) whose date and check character are valid.
///
/// Only [`Hetu::parse`] makes one, so code holding a `Hetu` never re-checks it. `Debug` and
/// `Display` print a placeholder: an identity code must never reach a log by accident; read it
/// with [`Hetu::expose`] where it is really needed (to compute its pseudonym).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Hetu(String);

/// Why a string is not a valid HETU. Never carries the string itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HetuError {
    #[error("a HETU has 11 characters: DDMMYY, a century sign, three digits and a check character")]
    Format,
    #[error("the century sign of the HETU is not one of + - Y X W V U A B C D E F")]
    CenturySign,
    #[error("the HETU's date of birth does not exist")]
    Date,
    #[error("the HETU's individual number must be 002-999")]
    IndividualNumber,
    #[error("the HETU's check character does not match")]
    Checksum,
}

const CHECK_CHARS: &[u8; 31] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";

impl Hetu {
    pub fn parse(code: &str) -> Result<Hetu, HetuError> {
        let bytes = code.as_bytes();
        if bytes.len() != 11 || !code.is_ascii() {
            return Err(HetuError::Format);
        }
        let digits = |range: std::ops::Range<usize>| -> Result<u32, HetuError> {
            let part = &code[range];
            if part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().map_err(|_| HetuError::Format)
            } else {
                Err(HetuError::Format)
            }
        };
        let (day, month, year2) = (digits(0..2)?, digits(2..4)?, digits(4..6)?);
        let century = match bytes[6] {
            b'+' => 1800,
            b'-' | b'Y' | b'X' | b'W' | b'V' | b'U' => 1900,
            b'A' | b'B' | b'C' | b'D' | b'E' | b'F' => 2000,
            _ => return Err(HetuError::CenturySign),
        };
        let individual = digits(7..10)?;
        NaiveDate::from_ymd_opt((century + year2) as i32, month, day).ok_or(HetuError::Date)?;
        if individual < 2 {
            return Err(HetuError::IndividualNumber);
        }
        let number = day * 10_000_000 + month * 100_000 + year2 * 1_000 + individual;
        if CHECK_CHARS[(number % 31) as usize] != bytes[10] {
            return Err(HetuError::Checksum);
        }
        Ok(Hetu(code.to_owned()))
    }

    /// The date of birth the code states.
    pub fn birth_date(&self) -> Option<NaiveDate> {
        let b = self.0.as_bytes();
        let century = match b[6] {
            b'+' => 1800,
            b'A'..=b'F' => 2000,
            _ => 1900,
        };
        let number = |range: std::ops::Range<usize>| self.0[range].parse::<u32>().ok();
        NaiveDate::from_ymd_opt(century + number(4..6)? as i32, number(2..4)?, number(0..2)?)
    }

    /// The code itself. Call sites are few and deliberate: computing a pseudonym.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Individual numbers 900-999 are temporary or test identities, never issued to a person.
    pub fn is_temporary(&self) -> bool {
        self.0[7..10].parse::<u32>().is_ok_and(|n| n >= 900)
    }
}

impl fmt::Debug for Hetu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hetu(<redacted>)")
    }
}

impl fmt::Display for Hetu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hetu>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_codes() {
        // The century sign is not part of the checksum: the same digits are valid in any century.
        for code in ["131052-308T", "131052A308T", "131052Y308T", "010101A900R"] {
            assert!(Hetu::parse(code).is_ok(), "{code}");
        }
        assert!(Hetu::parse("010101A900R").unwrap().is_temporary());
    }

    #[test]
    fn refuses_bad_codes() {
        assert_eq!(Hetu::parse("131052-308U"), Err(HetuError::Checksum));
        assert_eq!(Hetu::parse("131052-308"), Err(HetuError::Format));
        assert_eq!(Hetu::parse("131052Z308T"), Err(HetuError::CenturySign));
        assert_eq!(Hetu::parse("310252-308T"), Err(HetuError::Date));
        assert_eq!(Hetu::parse("13105a-308T"), Err(HetuError::Format));
        assert_eq!(Hetu::parse("131052-001T").unwrap_err(), HetuError::IndividualNumber);
    }

    #[test]
    fn never_prints_the_code() {
        let hetu = Hetu::parse("131052-308T").unwrap();
        assert!(!format!("{hetu:?} {hetu}").contains("131052"));
        assert_eq!(hetu.expose(), "131052-308T");
        assert!(!hetu.is_temporary());
    }
}
