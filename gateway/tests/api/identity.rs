//! Identity: every refusal of the identity issue over real TLS handshakes, and what each kind of
//! principal receives under the default rules, on both backends.

use identity::{Claims, DEV_ISSUER, DEV_KID};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use vaitio_conformance::client::Client;

use super::support::*;

/// An authenticated request that names what it looks for (a search must): found or not, 200.
const PROBE: &str = "/Patient?identifier=urn:oid:1.2.246.21|010101A900R";

/// Refused: a failed handshake, or the status with an OperationOutcome.
fn assert_refused(client: &Client, status: u16, what: &str) {
    match client.get(PROBE) {
        Err(_) => assert_eq!(status, 0, "{what}: the handshake failed, expected HTTP {status}"),
        Ok(answer) => {
            assert_eq!(answer.status, status, "{what}: {}", answer.text());
            assert!(answer.is_operation_outcome(), "{what}: {}", answer.text());
            assert!(!answer.text().contains("\"entry\""), "{what}: data in a refusal");
        }
    }
}

/// A handshake refused: the request never got an HTTP answer.
fn assert_handshake_refused(client: &Client, what: &str) {
    assert!(client.get(PROBE).is_err(), "{what}: expected the TLS handshake to fail");
}

fn signed(gateway: &TestGateway, claims: &Claims, alg: Algorithm, kid: &str, key: EncodingKey) -> String {
    let _ = gateway;
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

on_both_backends! {
    fn every_refusal_is_refused_before_a_handler(gateway) {
        let cert = gateway.org_certificate(ORG);
        let good = gateway.claims("psychotherapist", Some(ORG), THERAPIST, Some(&cert.0));
        let key_path = gateway.config.development_issuer_key.clone().unwrap();
        let key_pem = std::fs::read(&key_path).unwrap();
        let with = |claims: &Claims| gateway.client_with(Some(cert.clone()), Some(gateway.token(claims)));

        // The control: the same certificate and a good token are served.
        assert_eq!(with(&good).get(PROBE).unwrap().status, 200);

        // No client certificate; no token; a malformed token.
        assert_refused(&gateway.client_with(None, Some(gateway.token(&good))), 401, "no client certificate");
        assert_refused(&gateway.client_with(Some(cert.clone()), None), 401, "no token");
        assert_refused(&gateway.client_with(Some(cert.clone()), Some("abc.def".into())), 401, "malformed token");

        // alg none.
        let encode = |v: serde_json::Value| certs::base64url(v.to_string().as_bytes());
        let none = format!("{}.{}.", encode(json!({"alg": "none", "typ": "JWT", "kid": DEV_KID})), encode(serde_json::to_value(&good).unwrap()));
        assert_refused(&gateway.client_with(Some(cert.clone()), Some(none)), 401, "alg none");

        // HS256 keyed with the issuer's public key.
        let public = certs::public_key_pem(&key_pem).unwrap();
        let hs256 = signed(&gateway, &good, Algorithm::HS256, DEV_KID, EncodingKey::from_secret(&public).unwrap());
        assert_refused(&gateway.client_with(Some(cert.clone()), Some(hs256)), 401, "HS256 with the public key");

        // Unknown kid, signed with the real key.
        let unknown_kid = signed(&gateway, &good, Algorithm::ES256, "no-such-kid", EncodingKey::from_ec_pem(&key_pem).unwrap());
        assert_refused(&gateway.client_with(Some(cert.clone()), Some(unknown_kid)), 401, "unknown kid");

        // A foreign signing key under the trusted kid.
        let foreign_key = certs::generate_p256_pem().unwrap();
        let forged = signed(&gateway, &good, Algorithm::ES256, DEV_KID, EncodingKey::from_ec_pem(&foreign_key).unwrap());
        assert_refused(&gateway.client_with(Some(cert.clone()), Some(forged)), 401, "signed by another key");

        // Expired, not yet valid, wrong audience, wrong issuer.
        let now = chrono::Utc::now().timestamp();
        assert_refused(&with(&Claims { exp: now - 3600, nbf: Some(now - 7200), ..good.clone() }), 401, "expired");
        assert_refused(&with(&Claims { nbf: Some(now + 3600), exp: now + 7200, ..good.clone() }), 401, "not yet valid");
        assert_refused(&with(&Claims { aud: "another-service".into(), ..good.clone() }), 401, "wrong audience");
        assert_refused(&with(&Claims { iss: "https://untrusted.invalid".into(), ..good.clone() }), 401, "wrong issuer");
        assert_eq!(good.iss, DEV_ISSUER);
        // Issued a day in the future; a subject that is no Terhikki number (a NUL in it, too short).
        assert_refused(&with(&Claims { iat: Some(now + 86_400), ..good.clone() }), 401, "issued in the future");
        assert_refused(&with(&Claims { sub: "1001234\u{0}5678".into(), ..good.clone() }), 401, "a NUL in the subject");
        assert_refused(&with(&Claims { sub: "12345".into(), ..good.clone() }), 401, "not a Terhikki number");
        let staff = gateway.claims("auditor", Some(ORG), "auditor\u{0}1", Some(&cert.0));
        assert_refused(&with(&staff), 401, "a NUL in a staff subject");
        // Two Authorization headers: refused, whichever would have been read.
        let token = gateway.token(&good);
        let request = |authorizations: &[&str]| {
            let headers: String = authorizations.iter().map(|a| format!("Authorization: {a}\r\n")).collect();
            format!("GET {PROBE} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
        };
        let once = gateway.raw(Some(&cert), request(&[&format!("Bearer {token}")]).as_bytes());
        assert!(once.starts_with("HTTP/1.1 200"), "{once}");
        let twice = gateway.raw(Some(&cert), request(&[&format!("Bearer {token}"), "Bearer forged"]).as_bytes());
        assert!(twice.starts_with("HTTP/1.1 401"), "{twice}");
        let twice = gateway.raw(Some(&cert), request(&["Bearer forged", &format!("Bearer {token}")]).as_bytes());
        assert!(twice.starts_with("HTTP/1.1 401"), "{twice}");

        // A valid token minted for another certificate of the same organisation.
        let other_cert = gateway.certificate(ORG, certs::Validity::default(), "second");
        let for_other = gateway.claims("psychotherapist", Some(ORG), THERAPIST, Some(&other_cert.0));
        assert_refused(&with(&for_other), 401, "token for another certificate");
        assert_eq!(gateway.client_with(Some(other_cert), Some(gateway.token(&for_other))).get(PROBE).unwrap().status, 200);
        // No cnf at all.
        assert_refused(&with(&Claims { cnf: None, ..good.clone() }), 401, "unbound token");

        // Organisation mismatch; unknown role; emergency access without a reason.
        assert_refused(&with(&Claims { org: Some(OTHER_ORG.into()), ..good.clone() }), 403, "organisation mismatch");
        assert_refused(&with(&Claims { role: Some("janitor".into()), ..good.clone() }), 403, "unknown role");
        assert_refused(&with(&Claims { purpose: Some("BTG".into()), ..good.clone() }), 403, "BTG without a reason");
        assert_refused(&with(&Claims { purpose: Some("SHOPPING".into()), ..good.clone() }), 403, "unknown purpose");
        assert_eq!(with(&Claims { purpose: Some("BTG".into()), reason: Some("unconscious in the ER".into()), ..good.clone() }).get(PROBE).unwrap().status, 200);

        // A patient token must carry a valid HETU.
        let bad_patient = gateway.claims("patient", None, "131052-308U", None);
        assert_refused(&gateway.client_with(None, Some(gateway.token(&bad_patient))), 401, "patient token without a valid HETU");

        // Certificates: expired, not yet valid, revoked, self-signed, foreign CA. Each with a
        // token bound to it, so the certificate is the only reason to refuse.
        let bound = |cert: (std::path::PathBuf, std::path::PathBuf)| {
            let claims = gateway.claims("psychotherapist", Some(ORG), THERAPIST, Some(&cert.0));
            gateway.client_with(Some(cert), Some(gateway.token(&claims)))
        };
        assert_handshake_refused(&bound(gateway.certificate(ORG, certs::Validity { start_days: -30, days: 10 }, "expired")), "expired certificate");
        assert_handshake_refused(&bound(gateway.certificate(ORG, certs::Validity { start_days: 10, days: 30 }, "future")), "not-yet-valid certificate");
        let revoked = gateway.certificate(ORG, certs::Validity::default(), "revoked");
        assert_eq!(bound(revoked.clone()).get(PROBE).unwrap().status, 200, "before revocation");
        gateway.revoke(&revoked.0);
        assert_handshake_refused(&bound(revoked), "revoked certificate (picked up without a restart)");
        assert_eq!(with(&good).get(PROBE).unwrap().status, 200, "other certificates still work with a CRL in place");
        let elsewhere = tempfile::tempdir().unwrap();
        let foreign_ca = certs::CertificateAuthority::init(elsewhere.path(), "Foreign CA").unwrap();
        foreign_ca.issue_org(&certs::OrganisationOid::parse(ORG).unwrap(), "Impostor", certs::Validity::default()).unwrap().write_to(&elsewhere.path().join("org"), &foreign_ca).unwrap();
        assert_handshake_refused(&bound((elsewhere.path().join("org/cert.pem"), elsewhere.path().join("org/key.pem"))), "foreign CA");
        assert_handshake_refused(&bound((elsewhere.path().join("ca.pem"), elsewhere.path().join("ca-key.pem"))), "self-signed");

        // TLS below the configured minimum (1.3).
        let target = gateway.client.target().clone();
        assert!(vaitio_conformance::client::handshake(&target, &[&rustls::version::TLS12]).is_err(), "TLS 1.2 was accepted");
        assert_eq!(vaitio_conformance::client::handshake(&target, rustls::ALL_VERSIONS).unwrap(), rustls::ProtocolVersion::TLSv1_3);
    }

    fn each_role_sees_what_the_default_rules_allow(gateway) {
        // The authoring psychotherapist writes a patient, a visit and a note.
        let author = &gateway.client;
        let patient_id = author.post_json("/Patient", &patient(HETU)).unwrap().json().unwrap()["id"].as_str().unwrap().to_owned();
        let encounter_id = author.post_json("/Encounter", &encounter(&patient_id, "2026-03-02")).unwrap().json().unwrap()["id"].as_str().unwrap().to_owned();
        let note = author.post_json("/Composition", &note_composition(&patient_id, NOTE)).unwrap();
        assert_eq!(note.status, 201);
        let note_id = note.json().unwrap()["id"].as_str().unwrap().to_owned();
        let other_patient = author.post_json("/Patient", &patient("010101A900R")).unwrap().json().unwrap()["id"].as_str().unwrap().to_owned();

        let sees = |client: &Client, path: &str| client.get(path).unwrap().status;
        let total = |client: &Client, path: &str| client.get(path).unwrap().json().unwrap()["total"].as_u64().unwrap();
        let note_path = format!("/Composition/{note_id}");
        let visit_path = format!("/Encounter/{encounter_id}");
        let notes_of_patient = format!("/Composition?patient={patient_id}");

        // The author reads everything they wrote.
        assert_eq!(sees(author, &note_path), 200);
        assert_eq!(total(author, &notes_of_patient), 1);

        // A GP in the same organisation, a GP elsewhere, another therapist in the same
        // organisation, a nurse: the visit yes, the note never, and nothing tells them it exists.
        for (org, practitioner, role) in [
            (ORG, "10088888888", "physician"),
            (OTHER_ORG, "10088888888", "physician"),
            (ORG, "10099999999", "psychotherapist"),
            (OTHER_ORG, "10077777777", "nurse"),
        ] {
            let client = gateway.professional(org, practitioner, role);
            assert_eq!(sees(&client, &visit_path), 200, "{role} in {org}: the visit");
            let denied = client.get(&note_path).unwrap();
            assert_eq!(denied.status, 404, "{role} in {org}: the note");
            let absent = client.get("/Composition/does-not-exist").unwrap();
            assert_eq!(
                denied.text().replace(&note_id, "X"),
                absent.text().replace("does-not-exist", "X"),
                "withheld and absent must answer alike"
            );
            assert_eq!(total(&client, &notes_of_patient), 0, "{role} in {org}: search total");
            assert_eq!(sees(&client, &format!("{note_path}/_history")), 404);
            assert_eq!(sees(&client, &format!("{note_path}/_history/1")), 404);
        }

        // Break-the-glass opens the visit, not the note.
        let cert = gateway.org_certificate(OTHER_ORG);
        let mut claims = gateway.claims("physician", Some(OTHER_ORG), "10066666666", Some(&cert.0));
        claims.purpose = Some("ETREAT".into());
        claims.reason = Some("unconscious in the emergency room".into());
        let emergency = gateway.client_with(Some(cert), Some(gateway.token(&claims)));
        assert_eq!(sees(&emergency, &visit_path), 200);
        assert_eq!(sees(&emergency, &note_path), 404);

        // The patient sees their own data, the note included, and nobody else's; writes nothing.
        let me = gateway.patient(HETU);
        assert_eq!(sees(&me, &note_path), 200);
        assert_eq!(sees(&me, &format!("/Patient/{patient_id}")), 200);
        assert_eq!(total(&me, &notes_of_patient), 1);
        assert_eq!(sees(&me, &format!("/Patient/{other_patient}")), 404);
        // A patient's search names nothing and still finds only their own data.
        assert_eq!(total(&me, "/Patient"), 1);
        assert_eq!(total(&me, "/Composition"), 1);
        assert_eq!(me.post_json("/Patient", &patient("010101A900R")).unwrap().status, 403);
        let stranger = gateway.patient("010101A900R");
        assert_eq!(sees(&stranger, &note_path), 404);
        assert_eq!(sees(&stranger, &visit_path), 404);
        assert_eq!(total(&stranger, &format!("/Encounter?patient={patient_id}")), 0);

        // Auditors and administrators are individuals who never receive clinical content.
        for role in ["auditor", "administrator"] {
            let staff = gateway.professional(ORG, &format!("staff-{role}"), role);
            assert_eq!(sees(&staff, &note_path), 404, "{role}");
            assert_eq!(sees(&staff, &visit_path), 404, "{role}");
            assert_eq!(sees(&staff, &format!("/Patient/{patient_id}")), 404, "{role}");
            assert_eq!(total(&staff, &format!("/Patient?_id={patient_id}")), 0, "{role}");
            assert_eq!(total(&staff, &notes_of_patient), 0, "{role}");
            assert_eq!(sees(&staff, "/Patient"), 400, "{role}: a search that names no patient");
            assert_eq!(staff.post_json("/Patient", &patient(HETU)).unwrap().status, 403, "{role} wrote a record");
            assert_eq!(sees(&staff, "/metadata"), 200);
        }
    }

    fn tls12_is_accepted_only_when_configured(gateway) {
        let _ = &gateway;
        let relaxed = TestGateway::spawn_with(gateway.backend, |config| config.tls_minimum = certs::TlsMinimum::Tls12).unwrap();
        let target = relaxed.client.target().clone();
        assert_eq!(vaitio_conformance::client::handshake(&target, &[&rustls::version::TLS12]).unwrap(), rustls::ProtocolVersion::TLSv1_2);
        assert_eq!(vaitio_conformance::client::handshake(&target, rustls::ALL_VERSIONS).unwrap(), rustls::ProtocolVersion::TLSv1_3);
    }
}

/// A production configuration: no generated keys, the development issuer not trusted, tokens
/// of the configured professional identity provider accepted.
#[test]
fn production_trusts_only_its_configured_issuer() {
    use vaitio::config::Mode;
    let keys = tempfile::tempdir().unwrap();
    let idp_key = keys.path().join("idp.pem");
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, identity::development_jwks(&idp_key).unwrap()).unwrap();
    let production = TestGateway::spawn_with(Backend::Sqlite, |config| {
        // What an operator provisions: certificates and key files, made before the start.
        let pki = certs::DevPki::ensure(&config.data_dir.join("pki")).unwrap();
        let vaitio::config::KekSettings::File(kek_file) = &config.kek else { panic!("a key file") };
        store::crypto::SecretKey::generate_file(kek_file).unwrap();
        store::crypto::SecretKey::generate_file(&config.index_key_file).unwrap();
        vaitio::audit::generate_signing_key_file(&config.audit_signing_key).unwrap();
        config.tls_cert = pki.server_cert();
        config.tls_key = pki.server_key();
        config.mode = Mode::Production;
        config.development_issuer_key = None;
        config.professional_issuer = Some(("https://idp.test".into(), jwks.clone()));
    })
    .unwrap();
    assert!(!production.config.data_dir.join("keys/dev-issuer.pem").exists(), "production generated a development key");
    let cert = production.org_certificate(ORG);
    let mut claims = production.claims("psychotherapist", Some(ORG), THERAPIST, Some(&cert.0));
    // A development token (here signed with a development key made for the occasion) is refused.
    let dev_key = keys.path().join("dev.pem");
    let dev_token = identity::mint_development_token(&dev_key, &claims).unwrap();
    assert_refused(
        &production.client_with(Some(cert.clone()), Some(dev_token)),
        401,
        "development issuer in production",
    );
    // The identity provider's token is accepted.
    claims.iss = "https://idp.test".into();
    let idp_token = identity::mint_development_token(&idp_key, &claims).unwrap();
    assert_eq!(production.client_with(Some(cert), Some(idp_token)).get(PROBE).unwrap().status, 200);
}
