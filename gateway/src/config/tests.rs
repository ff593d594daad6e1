//! Tests of the settings: defaults, the file, flags over the file, refusals, and the table in docs/configuration.md.

use super::*;

fn args() -> ConfigArgs {
    ConfigArgs::default()
}

#[test]
fn no_configuration_means_development_on_loopback() {
    let config = Config::resolve(&args()).unwrap();
    assert_eq!(config.mode, Mode::Development);
    assert_eq!(config.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(config.database, DatabaseUrl::Sqlite("vaitio-data/vaitio.sqlite3".into()));
    assert_eq!(config.tls_minimum, TlsMinimum::Tls13);
    assert!(matches!(&config.kek, KekSettings::File(file) if file.starts_with("vaitio-data")));
    assert_eq!(config.policy, consent::Policy::default(), "the declared defaults are the design's");
    assert_eq!(config.audit_checkpoint_entries, store::audit::CHECKPOINT_ENTRIES);
    assert_eq!(config.audit_checkpoint_millis, store::audit::CHECKPOINT_MILLIS);
    assert_eq!((config.default_count, config.max_count, config.max_body_bytes), (20, 100, 2 * 1024 * 1024));
    assert_eq!(
        config.operator_organisation.as_deref(),
        Some(DEVELOPMENT_ORGANISATION),
        "the example clinic operates it"
    );
}

#[test]
fn the_operator_organisation_is_an_oid() {
    let named = Config::resolve(&args().with("operator_organisation", "1.2.246.10.99999999.10.1")).unwrap();
    assert_eq!(named.operator_organisation.as_deref(), Some("1.2.246.10.99999999.10.1"));
    let wrong = Config::resolve(&args().with("operator_organisation", "urn:oid:1.2.3")).unwrap_err();
    assert!(wrong.0.contains("operator_organisation must be an OID"), "{}", wrong.0);
}

#[test]
fn unsafe_configurations_are_refused_with_a_reason() {
    let plaintext = args().with("plaintext_listen", "0.0.0.0:80");
    assert!(Config::resolve(&plaintext).unwrap_err().0.contains("no plaintext listener"));
    let exposed = args().with("listen", "0.0.0.0:8443");
    assert!(Config::resolve(&exposed).unwrap_err().0.contains("loopback"));
    let production = args().with("mode", "production");
    assert!(Config::resolve(&production).unwrap_err().0.contains("never generates"));
    let missing = args().with("mode", "production").with("tls.cert", "/nonexistent/cert.pem");
    assert!(Config::resolve(&missing).unwrap_err().0.contains("does not exist"));
    let typo = args().with("database_url", "postgress://localhost/v");
    assert!(Config::resolve(&typo).unwrap_err().0.contains("unknown database scheme"));
    let url = args().with("listen", "http://127.0.0.1:8080");
    assert!(Config::resolve(&url).is_err());
    let not_a_number = args().with("db_pool_size", "many");
    assert!(Config::resolve(&not_a_number).unwrap_err().0.contains("db_pool_size must be a whole number"));
}

#[test]
fn a_token_is_configured_whole_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("module.so");
    std::fs::write(&module, b"").unwrap();
    let module = module.display().to_string();
    let stray = args().with("keys.pkcs11_token", "vaitio");
    assert!(Config::resolve(&stray).unwrap_err().0.contains("needs keys.pkcs11_module"));
    let unnamed = args().with("keys.pkcs11_module", module.clone());
    assert!(Config::resolve(&unnamed).unwrap_err().0.contains("keys.pkcs11_token"));
    let both =
        args().with("keys.pkcs11_module", module.clone()).with("keys.pkcs11_token", "v").with("keys.pkcs11_slot", "1");
    assert!(Config::resolve(&both).unwrap_err().0.contains("not both"));
    let absent = args().with("keys.pkcs11_module", "/nonexistent/module.so").with("keys.pkcs11_token", "v");
    assert!(Config::resolve(&absent).unwrap_err().0.contains("does not exist"));
    let token = Config::resolve(&args().with("keys.pkcs11_module", module.clone()).with("keys.pkcs11_token", "vaitio"))
        .unwrap();
    let KekSettings::Token(token) = token.kek else { panic!("a token") };
    assert_eq!((&token.token, token.key_label.as_str()), (&hsm::TokenChoice::Label("vaitio".into()), "vaitio-kek"));
    // The PIN: from its file, which others may not read, or from the environment; never a setting.
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    let with_pin = TokenConfig { pin_file: Some(pin.clone()), ..token };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(with_pin.settings().unwrap_err().contains("chmod 600"));
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(format!("{:?}", with_pin.settings().unwrap().pin), "Pin(<redacted>)");
    assert!(SETTINGS.iter().all(|s| !s.key.ends_with("pkcs11_pin")), "the PIN itself is never a setting");
}

#[test]
fn the_file_is_read_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vaitio.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:9443\"\nmax_body_bytes = 4096\n[tls]\nmin_version = \"1.2\"\n[search]\nmax_count = 50\n[policy]\nnotes_open_to_break_the_glass = true\n").unwrap();
    let file = || args().with("config", path.display().to_string());
    let from_file = Config::resolve(&file()).unwrap();
    assert_eq!(from_file.listen.port(), 9443);
    assert_eq!(from_file.max_body_bytes, 4096);
    assert_eq!(from_file.tls_minimum, TlsMinimum::Tls12);
    assert_eq!(from_file.max_count, 50);
    assert_eq!(from_file.request_threads, 8 * cores());
    assert!(
        from_file.policy.notes_open_to_break_the_glass && from_file.policy.treating_professionals_see_non_note_data
    );
    let overridden = Config::resolve(&file().with("listen", "127.0.0.1:10443")).unwrap();
    assert_eq!(overridden.listen.port(), 10443);
    std::fs::write(&path, "request_threads = 4\n").unwrap();
    assert_eq!(Config::resolve(&file()).unwrap().request_threads, 4);
    assert_eq!(Config::resolve(&file().with("request_threads", "12")).unwrap().request_threads, 12);
    let none = args().with("request_threads", "0");
    assert!(Config::resolve(&none).unwrap_err().0.contains("request_threads"));
    std::fs::write(&path, "[tls]\nenabled = false\n").unwrap();
    assert!(Config::resolve(&file()).unwrap_err().0.contains("no plaintext listener"));
    std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
    assert!(Config::resolve(&file()).unwrap_err().0.contains("unknown field"));
    std::fs::write(&path, "[policy]\nnotes_open_to_everyone = true\n").unwrap();
    assert!(Config::resolve(&file()).unwrap_err().0.contains("unknown field 'policy.notes_open_to_everyone'"));
    std::fs::write(&path, "[policy]\nnotes_open_to_break_the_glass = \"perhaps\"\n").unwrap();
    assert!(Config::resolve(&file()).unwrap_err().0.contains("true or false"));
    std::fs::write(&path, "[search]\ndefault_count = 0\n").unwrap();
    assert!(Config::resolve(&file()).unwrap_err().0.contains("default_count"));
}

/// Every setting can be given in all three places, under the names its declaration gives.
#[test]
fn every_setting_is_read_from_its_flag_its_variable_and_its_key() {
    use clap::{Args, FromArgMatches};
    let command = ConfigArgs::augment_args(clap::Command::new("vaitio"));
    let flags = ConfigArgs::from_arg_matches(
        &command.clone().try_get_matches_from(["vaitio", "--search-max-count", "40"]).unwrap(),
    )
    .unwrap();
    assert_eq!(Config::resolve(&flags).unwrap().max_count, 40);
    for setting in SETTINGS {
        assert!(setting.env().starts_with("VAITIO_") && !setting.env().contains('-'), "{setting:?}");
        let arg = command.get_arguments().find(|a| a.get_id() == setting.flag).unwrap();
        assert_eq!(arg.get_long(), Some(setting.flag));
        assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(setting.env().as_str()));
    }
    let keys: std::collections::BTreeSet<&str> = SETTINGS.iter().map(|s| s.key).collect();
    assert_eq!(keys.len(), SETTINGS.len(), "a key declared twice");
    let flags: std::collections::BTreeSet<&str> = SETTINGS.iter().map(|s| s.flag).collect();
    assert_eq!(flags.len(), SETTINGS.len(), "a flag declared twice");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.toml");
    std::fs::write(&path, "[audit]\ncheckpoint_entries = 7\ncheckpoint_seconds = 0.5\n").unwrap();
    let config = Config::resolve(&args().with("config", path.display().to_string())).unwrap();
    assert_eq!((config.audit_checkpoint_entries, config.audit_checkpoint_millis), (7, 500));
}

/// The settings table in the operator's guide is the one the declarations make.
#[test]
fn the_documented_settings_table_is_the_declared_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let guide = std::fs::read_to_string(&path).unwrap();
    let table = settings_table();
    assert!(
        guide.contains(&table),
        "{} does not hold the settings table the declarations make; replace it with:\n\n{table}",
        path.display()
    );
}
