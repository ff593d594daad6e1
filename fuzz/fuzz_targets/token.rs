//! Token and claims parsing. The first byte chooses the attack:
//! - even: the rest is an `Authorization` header as sent; a header nobody signed never makes a
//!   principal;
//! - odd: the rest is a claims set, which the development issuer signs; whatever principal it
//!   makes obeys the binding rules (the certificate's organisation, a Terhikki number, a valid
//!   HETU), and anything else is refused.
#![no_main]

use std::sync::OnceLock;

use certs::{OrganisationOid, PeerIdentity};
use consent::Principal;
use identity::{Claims, Identity};
use libfuzzer_sys::fuzz_target;

const ORGANISATION: &str = "1.2.246.10.12345678.10.1";
const THUMBPRINT: &str = "fuzz-thumbprint";

struct Setup {
    identity: Identity,
    key: std::path::PathBuf,
    peer: PeerIdentity,
    _dir: tempfile::TempDir,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("dev-issuer.pem");
        let mut identity =
            Identity::new("vaitio", Box::new(|hetu| vec![format!("pseudonym-of-{}", hetu.expose().len())]));
        identity.trust_development_issuer(&key).unwrap();
        let peer = PeerIdentity {
            thumbprint: THUMBPRINT.to_owned(),
            organisation: Some(OrganisationOid::parse(ORGANISATION).unwrap()),
            serial: "1".to_owned(),
        };
        Setup { identity, key, peer, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let setup = setup();
    if selector % 2 == 0 {
        let Ok(header) = std::str::from_utf8(rest) else { return };
        let made = setup.identity.principal(Some(header), Some(&setup.peer));
        assert!(made.is_err(), "an unsigned header made a principal");
        return;
    }
    let Ok(claims) = serde_json::from_slice::<Claims>(rest) else { return };
    let Ok(token) = identity::mint_development_token(&setup.key, &claims) else { return };
    let header = format!("Bearer {token}");
    let Ok(principal) = setup.identity.principal(Some(&header), Some(&setup.peer)) else { return };
    match principal {
        Principal::Professional(professional) => {
            assert_eq!(professional.organisation, ORGANISATION);
            assert_eq!(claims.cnf.and_then(|c| c.x5t_s256).as_deref(), Some(THUMBPRINT));
            assert!(
                professional.practitioner.len() == 11 && professional.practitioner.bytes().all(|b| b.is_ascii_digit())
            );
        }
        Principal::Auditor { organisation, subject } | Principal::Administrator { organisation, subject } => {
            assert_eq!(organisation, ORGANISATION);
            assert!(!subject.is_empty() && subject.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b)));
        }
        Principal::Patient { .. } => {
            assert!(fhir_profiles::Hetu::parse(&claims.sub).is_ok());
        }
        Principal::Anonymous => panic!("a verified token made an anonymous principal"),
    }
});
