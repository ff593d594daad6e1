//! The registry of the suite: every case, in the order the cases run. What a case is, and the
//! helpers the case files share, are in `case.rs`.

use crate::case::Case;

/// All cases, in the order they run.
pub fn all() -> Vec<Case> {
    let mut cases = crate::api::cases();
    cases.extend(crate::identity::cases());
    cases.extend(crate::submission::cases());
    cases.extend(crate::consent::cases());
    cases.extend(crate::audit::cases());
    cases.extend(crate::portal::cases());
    cases
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::case::{Context, Credential, IdentityOptions, Outcome};
    use crate::client::{Client, Target};

    /// The cases that run against any deployment, with no credential at all.
    const WITHOUT_CREDENTIALS: &[&str] =
        &["CAP-01", "TLS-01", "TLS-02", "TLS-03", "ERR-08", "IDN-13", "IDN-14", "POR-01", "POR-02"];

    /// A context for a deployment on a closed loopback port: a case that sent a request would
    /// get no answer and fail (or, refused, pass), never skip.
    fn context(target: Target, identity: IdentityOptions) -> Context {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = Target { base_url: format!("https://127.0.0.1:{closed}"), ..target };
        Context { client: Client::new(target).unwrap(), max_body_bytes: 1024, identity, harvest_limit: None }
    }

    /// An organisation certificate and key of a throwaway CA, written under `dir`.
    fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
        let ca = certs::CertificateAuthority::init(dir, "Conformance unit test").unwrap();
        let oid = certs::OrganisationOid::parse("1.2.246.10.12345678.10.1").unwrap();
        ca.issue_org(&oid, "Unit test", certs::Validity::default()).unwrap().write_to(&dir.join("org"), &ca).unwrap();
        (dir.join("org/cert.pem"), dir.join("org/key.pem"))
    }

    #[test]
    fn ids_are_unique_and_only_the_listed_cases_need_no_credentials() {
        let cases = all();
        let ids: HashSet<&str> = cases.iter().map(|case| case.id).collect();
        assert_eq!(ids.len(), cases.len(), "a case id is used twice");
        let free: Vec<&str> = cases.iter().filter(|case| case.needs.is_empty()).map(|case| case.id).collect();
        assert_eq!(free, WITHOUT_CREDENTIALS);
        // The cases that act as anyone but the run's practitioner sign tokens with the issuer key.
        for case in cases.iter().filter(|c| ["CNS-", "AUD-"].iter().any(|p| c.id.starts_with(p))) {
            assert!(case.needs.contains(&Credential::IssuerKey), "{} does not declare --issuer-key", case.id);
        }
    }

    #[test]
    fn without_credentials_a_case_that_needs_one_is_skipped_naming_it_and_the_others_run() {
        let ctx = context(Target::default(), IdentityOptions::default());
        let mut skipped = 0;
        for case in all() {
            if case.needs.is_empty() {
                assert_eq!(case.skip_reason(&ctx), None, "{}", case.id);
                continue;
            }
            // Through `outcome`, as the runner calls it: the skip comes before any request.
            let Outcome::Skip(reason) = case.outcome(&ctx) else {
                panic!("{} needs {:?} and was not skipped without it", case.id, case.needs);
            };
            for credential in case.needs {
                assert!(reason.contains(credential.options()), "{}: {reason:?} does not name {credential:?}", case.id);
            }
            skipped += 1;
        }
        assert_eq!(skipped, all().len() - WITHOUT_CREDENTIALS.len());
    }

    #[test]
    fn with_every_credential_no_case_is_skipped_for_want_of_one() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate(dir.path());
        let given = (cert.clone(), key.clone());
        let target = Target { cert: Some(cert), key: Some(key), token: Some("a.b.c".into()), ..Target::default() };
        let identity = IdentityOptions {
            issuer_key: Some(dir.path().join("ca-key.pem")),
            expired: Some(given.clone()),
            not_yet_valid: Some(given.clone()),
            revoked: Some(given),
            allows_tls12: false,
        };
        let ctx = context(target, identity);
        for case in all() {
            assert_eq!(case.skip_reason(&ctx), None, "{}", case.id);
        }
    }

    #[test]
    fn a_skip_names_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        // A token without a certificate: the submission cases still need the certificate.
        let ctx = context(Target { token: Some("a.b.c".into()), ..Target::default() }, IdentityOptions::default());
        let submission = all().into_iter().find(|case| case.id == "SUB-01").unwrap();
        let reason = submission.skip_reason(&ctx).unwrap();
        assert!(reason.contains("--cert/--key") && !reason.contains("--token"), "{reason}");
        // One refused certificate given: its case runs, the others are skipped.
        let identity = IdentityOptions { expired: Some(certificate(dir.path())), ..IdentityOptions::default() };
        let ctx = context(Target::default(), identity);
        let reason = |id: &str| all().into_iter().find(|case| case.id == id).unwrap().skip_reason(&ctx);
        assert_eq!(reason("IDN-15"), None);
        assert!(reason("IDN-16").unwrap().contains("--not-yet-valid-cert/--not-yet-valid-key"));
        assert!(reason("IDN-17").unwrap().contains("--revoked-cert/--revoked-key"));
    }
}
