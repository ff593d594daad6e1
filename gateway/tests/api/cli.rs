//! The `vaitio` binary as an operator runs it: first run in an empty folder, restarts, refusals
//! of unsafe configurations, migrations, and logs that hold no identity codes.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::support::*;
use vaitio_conformance::client::{Client, Target};

/// The `vaitio` binary, run in `dir`, with none of the caller's `VAITIO_*` settings (the log
/// filter aside): what it does must come from its arguments and the folder.
pub fn vaitio(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vaitio"));
    command.current_dir(dir);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("VAITIO_") && name != "VAITIO_LOG") {
        command.env_remove(name);
    }
    command
}

/// Starts `vaitio serve` on a free port and returns the child and the example request it printed.
fn serve(dir: &Path) -> (Child, String) {
    let mut child = vaitio(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("Try: curl --cacert "), "unexpected first line: {line:?}");
    (child, line)
}

fn stop(mut child: Child) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    log
}

/// A psychotherapist's client, with a certificate and a token made by the CLI itself, for the
/// gateway whose folder is `dir`, at `base_url` (a node's, or a load balancer's).
pub fn clinic_client(dir: &Path, base_url: &str) -> Client {
    if !dir.join("clinic/cert.pem").exists() {
        let issued = vaitio(dir)
            .args(["certs", "issue-org", "--org-oid", ORG, "--name", "Example Clinic", "--out", "clinic"])
            .output()
            .unwrap();
        assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    }
    let token = vaitio(dir)
        .args([
            "dev",
            "token",
            "--role",
            "psychotherapist",
            "--org",
            ORG,
            "--sub",
            THERAPIST,
            "--cert",
            "clinic/cert.pem",
        ])
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap();
    assert_eq!(token.lines().count(), 1, "dev token prints the token alone");
    Client::new(Target {
        base_url: base_url.to_owned(),
        ca: Some(dir.join("vaitio-data/pki/ca.pem")),
        cert: Some(dir.join("clinic/cert.pem")),
        key: Some(dir.join("clinic/key.pem")),
        token: Some(token.trim().to_owned()),
    })
    .unwrap()
}

/// The client for the gateway that printed `example` (its "Try: curl …" line).
fn client_for(dir: &Path, example: &str) -> Client {
    let url = example.split_whitespace().last().unwrap();
    clinic_client(dir, &url.trim_end_matches("/metadata").replace("127.0.0.1", "localhost"))
}

#[test]
fn first_run_in_an_empty_folder_serves_and_a_restart_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let (child, example) = serve(dir.path());
    let client = client_for(dir.path(), &example);
    assert_eq!(client.get("/metadata").unwrap().status, 200);
    let created = client.post_json("/Patient", &patient(HETU)).unwrap();
    assert_eq!(created.status, 201);
    let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();
    let composition = client.post_json("/Composition", &note_composition(&id, NOTE)).unwrap();
    assert_eq!(composition.status, 201);
    assert_eq!(
        client.get(&format!("/Patient?identifier=urn:oid:1.2.246.21|{HETU}")).unwrap().json().unwrap()["total"],
        1
    );
    assert_eq!(client.post_json("/Patient", &patient("131052-308U")).unwrap().status, 422);
    let log = stop(child);
    assert!(log.contains("DEVELOPMENT MODE"), "{log}");
    assert!(log.contains("(generated now)"));
    for secret in [HETU, "131052", FAMILY, GIVEN, NOTE] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [
            "vaitio-data/keys/kek.hex",
            "vaitio-data/keys/index.hex",
            "vaitio-data/pki/ca-key.pem",
            "vaitio-data/pki/server/key.pem",
        ] {
            let mode = std::fs::metadata(dir.path().join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
    }

    let (child, example) = serve(dir.path());
    let client = client_for(dir.path(), &example);
    let read = client.get(&format!("/Patient/{id}")).unwrap();
    assert_eq!(read.status, 200, "the data did not survive a restart");
    assert!(read.text().contains(FAMILY));
    let log = stop(child);
    assert!(!log.contains("(generated now)"), "keys were generated again on restart");
}

fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)], reason: &str) {
    let mut command = vaitio(dir);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if waited > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "{args:?} succeeded");
    assert!(stderr.contains(reason), "{args:?}: expected {reason:?} in {stderr:?}");
}

#[test]
fn unsafe_configurations_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    refused(dir.path(), &["serve", "--listen", "0.0.0.0:0"], &[], "loopback only");
    refused(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[("VAITIO_PLAINTEXT_LISTEN", "127.0.0.1:8080")],
        "no plaintext listener",
    );
    refused(dir.path(), &["serve", "--mode", "production", "--listen", "127.0.0.1:0"], &[], "never generates");
    refused(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--database-url", "postgress://localhost/vaitio"],
        &[],
        "unknown database scheme",
    );
    refused(dir.path(), &["serve", "--listen", "http://127.0.0.1:8080"], &[], "HTTPS is implied");
    std::fs::write(dir.path().join("vaitio.toml"), "[tls]\nenabled = false\n").unwrap();
    refused(dir.path(), &["serve", "--config", "vaitio.toml", "--listen", "127.0.0.1:0"], &[], "no plaintext listener");
    std::fs::write(dir.path().join("typo.toml"), "databse_url = \"x\"\n").unwrap();
    refused(dir.path(), &["serve", "--config", "typo.toml"], &[], "unknown field");
    // Production with every file present but a key file others can read.
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let pki = certs::DevPki::ensure(&dir.path().join("pki")).unwrap();
    std::fs::write(keys.join("kek.hex"), "00".repeat(32)).unwrap();
    std::fs::write(keys.join("index.hex"), "11".repeat(32)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(keys.join("kek.hex"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(keys.join("index.hex"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let (cert, key) = (pki.server_cert(), pki.server_key());
        let base = [
            "serve",
            "--mode",
            "production",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--kek-file",
            "keys/kek.hex",
            "--index-key-file",
            "keys/index.hex",
        ];
        refused(dir.path(), &base, &[], "keys.audit_signing_key");
        vaitio::audit::generate_signing_key_file(&keys.join("audit-signing.pem")).unwrap();
        let base = [&base[..], &["--audit-signing-key", "keys/audit-signing.pem"]].concat();
        refused(dir.path(), &base, &[], "needs tls.client_ca");
        let with_ca = [&base[..], &["--tls-client-ca", "pki/ca.pem"]].concat();
        refused(dir.path(), &with_ca, &[], "professional identity provider");
        std::fs::write(dir.path().join("jwks.json"), identity::development_jwks(&dir.path().join("idp.pem")).unwrap())
            .unwrap();
        let complete =
            [&with_ca[..], &["--professional-issuer", "https://idp.test", "--professional-jwks", "jwks.json"]].concat();
        refused(dir.path(), &complete, &[], "lets others read it");
    }
}

#[test]
fn migrate_applies_once_and_help_documents_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let first = vaitio(dir.path()).args(["migrate"]).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite")).unwrap().count();
    let applied = format!("{migrations} migration(s) applied");
    assert!(String::from_utf8_lossy(&first.stdout).starts_with(&applied));
    let again = vaitio(dir.path()).args(["migrate"]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("0 migration(s) applied"));

    // Operator commands are administrator actions in the audit log, by host account.
    let run = |args: &[&str]| {
        let out = vaitio(dir.path()).args(args).env("USER", "ops").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // Every command that changes the deployment, and every credential minted.
    run(&["certs", "init-ca", "--name", "Operator Test CA"]);
    let issued = vaitio(dir.path())
        .args(["certs", "issue-org", "--org-oid", ORG, "--name", "Test Clinic", "--out", "clinic"])
        .env("USER", "ops")
        .output()
        .unwrap();
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let serial = String::from_utf8_lossy(&issued.stdout).split_whitespace().nth(2).unwrap().to_owned();
    run(&["certs", "issue-server", "--dns", "localhost", "--out", "server"]);
    run(&["certs", "revoke", "--serial", &serial]);
    run(&["certs", "list"]);
    run(&[
        "dev",
        "token",
        "--role",
        "psychotherapist",
        "--org",
        ORG,
        "--sub",
        "10012345678",
        "--cert",
        "clinic/cert.pem",
    ]);
    run(&["dev", "token", "--role", "patient", "--sub", HETU]);
    run(&["audit", "verify"]);
    run(&["audit", "export", "--out", "log.ndjson"]);
    let export = std::fs::read_to_string(dir.path().join("log.ndjson")).unwrap();
    let recorded: Vec<(String, String)> = export
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["kind"] == "entry")
        .map(|line| {
            let event = &line["event"];
            assert_eq!(event["action"], "administrator-action", "{event}");
            assert_eq!(event["agent"]["who"]["kind"], "operator", "{event}");
            assert_eq!(event["agent"]["purpose"], "HSYSADMIN", "{event}");
            (event["query"].as_str().unwrap().to_owned(), event["agent"]["who"]["account"].as_str().unwrap().to_owned())
        })
        .collect();
    let commands: Vec<&str> = recorded.iter().map(|(command, _)| command.as_str()).collect();
    assert_eq!(
        commands,
        [
            format!("migrate: {applied}").as_str(),
            "migrate: 0 migration(s) applied",
            "certs init-ca --name \"Operator Test CA\"",
            format!("certs issue-org --org-oid {ORG} --name \"Test Clinic\" --days 365 --start-days 0").as_str(),
            "certs issue-server --dns localhost --days 365",
            format!("certs revoke --serial {serial}").as_str(),
            format!("dev token --role psychotherapist --org {ORG} --sub 10012345678 --ttl 3600").as_str(),
            "dev token --role patient --ttl 3600",
            "audit verify: 8 entries verified",
            "audit export"
        ]
    );
    assert!(recorded[2].1.starts_with("ops@"), "{recorded:?}");
    let help = vaitio(dir.path()).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for documented in [
        "VAITIO_DATABASE_URL",
        "VAITIO_DATA_DIR",
        "VAITIO_LISTEN",
        "VAITIO_KEK_FILE",
        "VAITIO_TLS_MIN_VERSION",
        "--config",
    ] {
        assert!(help.contains(documented), "serve --help does not document {documented}");
    }
}
