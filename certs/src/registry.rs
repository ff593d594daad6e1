//! What the CA has issued and revoked, kept beside it in the PKI folder: `issued/<serial>.pem`,
//! `revoked.txt` (serial and time, one a line), `crlnumber`, and the signed `crl.pem` that the
//! gateway reads.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::x509::extension::AuthorityKeyIdentifier;
use openssl::x509::{X509Builder, X509CrlBuilder, X509Extension, X509RevokedBuilder, X509};

use crate::identity::PeerIdentity;
use crate::{io_error, write_file, CertificateAuthority, CertsError, Issued};

pub const CRL_FILE: &str = "crl.pem";
const REVOKED_FILE: &str = "revoked.txt";
const CRL_NUMBER_FILE: &str = "crlnumber";
const DAY: i64 = 86_400;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// When a certificate is valid: from `start_days` days from now (negative for the past) for
/// `days` days. Tests and conformance runs use the odd values to make expired and not-yet-valid
/// certificates.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub start_days: i64,
    pub days: i64,
}

impl Default for Validity {
    fn default() -> Self {
        Validity { start_days: 0, days: 365 }
    }
}

impl Validity {
    pub(crate) fn not_before(&self) -> i64 {
        // A minute of slack for clocks that run a little behind.
        now() + self.start_days * DAY - 60
    }

    pub(crate) fn not_after(&self) -> i64 {
        now() + (self.start_days + self.days) * DAY
    }
}

/// One issued certificate, as `vaitio certs list` shows it.
#[derive(Clone, Debug)]
pub struct IssuedRecord {
    pub serial: String,
    pub subject: String,
    pub organisation: Option<String>,
    pub not_before: String,
    pub not_after: String,
    pub revoked: bool,
}

fn serial_of(pem: &[u8]) -> Result<String, CertsError> {
    let cert = X509::from_pem(pem)?;
    Ok(cert.serial_number().to_bn()?.to_hex_str()?.to_string())
}

fn revoked_serials(dir: &Path) -> Result<Vec<(String, i64)>, CertsError> {
    let path = dir.join(REVOKED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(&path)(error)),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect())
}

impl Issued {
    /// The certificate's serial, in upper-case hex as `list` prints it.
    pub fn serial(&self) -> Result<String, CertsError> {
        serial_of(&self.cert_pem)
    }
}

impl CertificateAuthority {
    /// Keeps a copy of an issued certificate in `<pki>/issued/`, for `list` and `revoke`.
    pub fn record(&self, pki: &Path, issued: &Issued) -> Result<String, CertsError> {
        let serial = issued.serial()?;
        let dir = pki.join("issued");
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        write_file(&dir.join(format!("{serial}.pem")), &issued.cert_pem, false)?;
        Ok(serial)
    }

    /// Revokes an issued certificate and writes a new CRL; returns the CRL's path.
    pub fn revoke(&self, pki: &Path, serial: &str) -> Result<PathBuf, CertsError> {
        let serial = serial.trim().trim_start_matches("0x").to_ascii_uppercase();
        if !pki.join("issued").join(format!("{serial}.pem")).exists() {
            return Err(CertsError::Invalid(format!(
                "no certificate with serial {serial} was issued by this CA (see `certs list`)"
            )));
        }
        let mut revoked = revoked_serials(pki)?;
        if !revoked.iter().any(|(s, _)| *s == serial) {
            revoked.push((serial, now()));
            let text: String = revoked.iter().map(|(s, t)| format!("{s} {t}\n")).collect();
            write_file(&pki.join(REVOKED_FILE), text.as_bytes(), false)?;
        }
        self.write_crl(pki)
    }

    /// Signs a CRL of every revoked serial (valid 30 days; re-run `revoke` or `crl` to renew).
    pub fn write_crl(&self, pki: &Path) -> Result<PathBuf, CertsError> {
        let number_path = pki.join(CRL_NUMBER_FILE);
        let number: u64 = fs::read_to_string(&number_path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0) + 1;
        let mut crl = X509CrlBuilder::new()?;
        crl.set_issuer_name(self.cert.subject_name())?;
        crl.set_last_update(Asn1Time::from_unix(now() - 60)?.as_ref())?;
        crl.set_next_update(Asn1Time::from_unix(now() + 30 * DAY)?.as_ref())?;
        for (serial, time) in revoked_serials(pki)? {
            let mut entry = X509RevokedBuilder::new()?;
            let serial: Asn1Integer = BigNum::from_hex_str(&serial)?.to_asn1_integer()?;
            entry.set_serial_number(&serial)?;
            entry.set_revocation_date(Asn1Time::from_unix(time)?.as_ref())?;
            crl.add_revoked(entry.build())?;
        }
        let context_builder = X509Builder::new()?;
        let aki =
            AuthorityKeyIdentifier::new().keyid(true).build(&context_builder.x509v3_context(Some(&self.cert), None))?;
        crl.append_extension(aki)?;
        crl.append_extension(X509Extension::new_from_der(
            Asn1Object::from_str("2.5.29.20")?.as_ref(),
            false,
            Asn1OctetString::new_from_bytes(&der_integer(number))?.as_ref(),
        )?)?;
        crl.sort()?;
        crl.sign(&self.key, MessageDigest::sha256())?;
        let crl = crl.build()?;
        let path = pki.join(CRL_FILE);
        write_file(&path, &crl.to_pem()?, false)?;
        write_file(&number_path, number.to_string().as_bytes(), false)?;
        Ok(path)
    }
}

/// DER of a non-negative INTEGER.
fn der_integer(value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    if bytes.is_empty() || bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    let mut der = vec![0x02, bytes.len() as u8];
    der.extend(bytes);
    der
}

/// Every certificate issued from the PKI in `pki`, oldest expiry first.
pub fn list(pki: &Path) -> Result<Vec<IssuedRecord>, CertsError> {
    let dir = pki.join("issued");
    let revoked: Vec<String> = revoked_serials(pki)?.into_iter().map(|(s, _)| s).collect();
    let mut records = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(records),
        Err(error) => return Err(io_error(&dir)(error)),
    };
    for entry in entries {
        let path = entry.map_err(io_error(&dir))?.path();
        let pem = fs::read(&path).map_err(io_error(&path))?;
        let cert = X509::from_pem(&pem)?;
        let identity = PeerIdentity::from_der(&cert.to_der()?)?;
        let subject = cert
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_default();
        records.push(IssuedRecord {
            revoked: revoked.contains(&identity.serial),
            serial: identity.serial,
            subject,
            organisation: identity.organisation.map(|o| o.to_string()),
            not_before: cert.not_before().to_string(),
            not_after: cert.not_after().to_string(),
        });
    }
    records.sort_by(|a, b| a.serial.cmp(&b.serial));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(der_integer(1), vec![2, 1, 1]);
        assert_eq!(der_integer(128), vec![2, 2, 0, 128]);
        assert_eq!(der_integer(0), vec![2, 1, 0]);
    }
}
