use std::fmt;

use openssl::hash::MessageDigest;
use openssl::x509::X509;

use crate::CertsError;

/// An organisation OID of the Finnish form `1.2.246.10.<business id>.10.<n>` (SOTE organisation
/// register), possibly with further arcs for a sub-unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OrganisationOid(String);

impl OrganisationOid {
    pub fn parse(text: &str) -> Result<Self, CertsError> {
        let oid = text.strip_prefix("urn:oid:").unwrap_or(text);
        let arcs: Vec<&str> = oid.split('.').collect();
        let numeric = arcs.iter().all(|arc| {
            !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()) && (arc.len() == 1 || !arc.starts_with('0'))
        });
        if !numeric || arcs.len() < 7 || arcs[..4] != ["1", "2", "246", "10"] || arcs[5] != "10" || arcs[4].len() != 8 {
            return Err(CertsError::Invalid(format!(
                "'{}' is not an organisation OID of the form 1.2.246.10.<8-digit business id>.10.<n>",
                oid.chars().filter(|c| c.is_ascii_digit() || *c == '.').take(80).collect::<String>()
            )));
        }
        Ok(OrganisationOid(oid.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrganisationOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Base64url (no padding) of the SHA-256 of a certificate's DER: RFC 8705's `x5t#S256`.
pub fn thumbprint_sha256(der: &[u8]) -> String {
    base64url(&openssl::sha::sha256(der))
}

/// Base64url without padding (RFC 4648 §5), as JOSE uses it.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// What the gateway reads from a client certificate that rustls has already verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// RFC 8705 thumbprint, to compare with a token's `cnf."x5t#S256"`.
    pub thumbprint: String,
    /// The organisation, from the `urn:oid:` SAN URI; `None` when the certificate names none or
    /// its subject disagrees.
    pub organisation: Option<OrganisationOid>,
    pub serial: String,
}

impl PeerIdentity {
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, CertsError> {
        let cert = X509::from_der(der)?;
        let from_san = cert
            .subject_alt_names()
            .into_iter()
            .flatten()
            .filter_map(|name| name.uri().and_then(|uri| uri.strip_prefix("urn:oid:")).map(str::to_owned))
            .find_map(|oid| OrganisationOid::parse(&oid).ok());
        // The subject must say the same, when it says anything: two different claims in one
        // certificate name no organisation.
        let from_subject: Vec<String> = cert
            .subject_name()
            .entries()
            .filter(|e| {
                e.object().nid().short_name().ok() == Some("organizationIdentifier")
                    || e.object().to_string() == "2.5.4.97"
            })
            .filter_map(|e| e.data().to_string().ok())
            .collect();
        let organisation = match (&from_san, from_subject.as_slice()) {
            (Some(oid), []) => Some(oid.clone()),
            (Some(oid), subject) if subject.iter().all(|s| s == oid.as_str()) => Some(oid.clone()),
            _ => None,
        };
        let serial = cert.serial_number().to_bn()?.to_hex_str()?.to_string();
        Ok(PeerIdentity { thumbprint: thumbprint_sha256(der), organisation, serial })
    }

    pub fn digest_of(cert: &X509) -> Result<Vec<u8>, CertsError> {
        Ok(cert.digest(MessageDigest::sha256())?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisation_oids_have_the_finnish_form() {
        assert!(OrganisationOid::parse("1.2.246.10.12345678.10.1").is_ok());
        assert!(OrganisationOid::parse("urn:oid:1.2.246.10.12345678.10.1.77").is_ok());
        assert!(OrganisationOid::parse("1.2.246.10.1234567.10.1").is_err());
        assert!(OrganisationOid::parse("1.2.246.11.12345678.10.1").is_err());
        assert!(OrganisationOid::parse("1.2.246.10.12345678.10").is_err());
        assert!(OrganisationOid::parse("1.2.246.10.12345678.10.x").is_err());
        assert!(OrganisationOid::parse("1.2.246.10.12345678.10.01").is_err());
    }

    #[test]
    fn base64url_matches_rfc4648() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
