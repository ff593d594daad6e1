//! Against SoftHSM2, a real PKCS#11 module (installed by `./scripts/test`).

use super::*;
use crate::softhsm::SoftToken;

/// One test at a time: taking a token away initialises the module again, which ends the
/// sessions of every other user in the process.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn token(name: &str) -> SoftToken {
    let label = format!("{name}-{}", std::process::id());
    match SoftToken::create(&label, "1234", "vaitio-kek") {
        Ok(token) => token,
        Err(error) => panic!("a SoftHSM2 token ({error}); ./scripts/test installs SoftHSM2 as root"),
    }
}

#[test]
fn data_keys_are_wrapped_inside_the_token_and_the_key_never_leaves_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let soft = token("wrap");
    let custody = TokenCustody::new(Token::load(soft.settings.clone()).unwrap());
    let missing = custody.open(1).err().expect("no key yet").to_string();
    assert!(missing.contains("create-kek"), "{missing}");
    let kek = custody.create(1).unwrap();
    assert_eq!(kek.id(), "pkcs11:vaitio-kek");
    assert_eq!(custody.create(1).unwrap().id(), kek.id(), "made once, then found");
    assert_eq!(custody.label(3), "vaitio-kek.v3");

    let data_key = DataKey::generate().unwrap();
    let wrapped = kek.wrap("patient-1", &data_key).unwrap();
    assert_eq!(wrapped.len(), NONCE_LEN + 32 + 16);
    assert_eq!(kek.unwrap("patient-1", &wrapped).unwrap().expose_secret(), data_key.expose_secret());
    assert!(kek.unwrap("patient-2", &wrapped).is_err(), "bound to its scope");
    assert_ne!(kek.wrap("patient-1", &data_key).unwrap(), wrapped, "a fresh nonce each time");
    let mut altered = wrapped.clone();
    altered[NONCE_LEN] ^= 1;
    assert!(kek.unwrap("patient-1", &altered).is_err());
    // Another version is another key.
    let second = custody.create(2).unwrap();
    assert!(second.unwrap("patient-1", &wrapped).is_err());

    // Signed in with the PIN, a thief asks for the key's value and tries to wrap it out.
    let attempt = custody.token.try_extract("vaitio-kek").unwrap();
    assert!(attempt.refused(), "the token let the key out: {attempt:?}");
}

#[test]
fn an_unplugged_token_is_unavailable_and_comes_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let soft = token("unplug");
    let custody = TokenCustody::new(Token::load(soft.settings.clone()).unwrap());
    let kek = custody.create(1).unwrap();
    let data_key = DataKey::generate().unwrap();
    let wrapped = kek.wrap("p", &data_key).unwrap();

    soft.unplug().unwrap();
    for _ in 0..3 {
        match kek.unwrap("p", &wrapped) {
            Err(CryptoError::Unavailable(_)) => {}
            other => panic!("an unplugged token answered {other:?}"),
        }
    }
    soft.plug_in().unwrap();
    // Back within the second after which the module may be initialised again.
    let started = std::time::Instant::now();
    let opened = loop {
        match kek.unwrap("p", &wrapped) {
            Ok(opened) => break opened,
            Err(CryptoError::Unavailable(_)) if started.elapsed().as_secs() < 3 => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(error) => panic!("the token did not come back: {error}"),
        }
    };
    assert_eq!(opened.expose_secret(), data_key.expose_secret());
}
