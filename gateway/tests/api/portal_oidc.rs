//! The portal's production sign-in, OpenID Connect with PKCE, against an identity provider the
//! test runs over HTTPS on loopback (discovery and JWKS read from it): a good sign-in, and the
//! refusals of a wrong or used `state`, a `state` from another browser, a wrong `nonce`, an
//! expired ID token and a wrong audience. On both backends.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpResponse, HttpServer};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use vaitio::config::OidcSettings;
use vaitio_conformance::client::{Client, Target};

use super::portal::Browser;
use super::support::*;

const CLIENT_ID: &str = "vaitio-portal";
const SECRET: &str = "test-secret-made-by-the-test";

/// How the provider misbehaves in its next ID tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Good,
    WrongNonce,
    Expired,
    WrongAudience,
}

struct Idp {
    issuer: String,
    key: EncodingKey,
    kid: String,
    jwks: String,
    /// code → (nonce, PKCE challenge, redirect URI).
    codes: Mutex<HashMap<String, (String, String, String)>>,
    mode: Mutex<Mode>,
}

fn pkce(verifier: &str) -> String {
    use std::fmt::Write;
    // base64url without padding, written out (the test does not trust the gateway's).
    let digest = Sha256::digest(verifier.as_bytes());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits: String = digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:08b}");
        s
    });
    bits.as_bytes()
        .chunks(6)
        .map(|c| {
            let text = format!("{:0<6}", std::str::from_utf8(c).unwrap());
            char::from(alphabet[usize::from_str_radix(&text, 2).unwrap()])
        })
        .collect()
}

async fn discovery(idp: web::Data<Idp>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "issuer": idp.issuer,
        "authorization_endpoint": format!("{}/authorize", idp.issuer),
        "token_endpoint": format!("{}/token", idp.issuer),
        "jwks_uri": format!("{}/jwks", idp.issuer),
    }))
}

async fn keys(idp: web::Data<Idp>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(idp.jwks.clone())
}

async fn authorize(idp: web::Data<Idp>, query: web::Query<HashMap<String, String>>) -> HttpResponse {
    let q = |name: &str| query.get(name).cloned().unwrap_or_default();
    if q("response_type") != "code"
        || q("client_id") != CLIENT_ID
        || q("code_challenge_method") != "S256"
        || q("scope") != "openid"
    {
        return HttpResponse::BadRequest().body("bad authorization request");
    }
    let code = uuid::Uuid::new_v4().to_string();
    idp.codes.lock().unwrap().insert(code.clone(), (q("nonce"), q("code_challenge"), q("redirect_uri")));
    let location = format!("{}?code={code}&state={}", q("redirect_uri"), q("state"));
    HttpResponse::Found().insert_header(("Location", location)).finish()
}

async fn token(idp: web::Data<Idp>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let f = |name: &str| form.get(name).cloned().unwrap_or_default();
    let Some((nonce, challenge, redirect)) = idp.codes.lock().unwrap().remove(&f("code")) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    };
    if f("grant_type") != "authorization_code"
        || f("client_id") != CLIENT_ID
        || f("client_secret") != SECRET
        || f("redirect_uri") != redirect
        || pkce(&f("code_verifier")) != challenge
    {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    }
    let now = chrono::Utc::now().timestamp();
    let mode = *idp.mode.lock().unwrap();
    let claims = json!({
        "iss": idp.issuer,
        "sub": "citizen-1",
        "aud": if mode == Mode::WrongAudience { "another-client" } else { CLIENT_ID },
        "iat": if mode == Mode::Expired { now - 7200 } else { now },
        "exp": if mode == Mode::Expired { now - 3600 } else { now + 300 },
        "nonce": if mode == Mode::WrongNonce { "another-nonce".to_owned() } else { nonce },
        "hetu": HETU,
    });
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(idp.kid.clone());
    let id_token = encode(&header, &claims, &idp.key).unwrap();
    HttpResponse::Ok().json(json!({"access_token": "unused", "token_type": "Bearer", "id_token": id_token}))
}

/// Starts the provider with the development PKI's localhost certificate; returns its state.
fn start_idp(pki: &std::path::Path) -> Arc<Idp> {
    let pki = certs::DevPki::ensure(pki).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let key_path = pki.dir.join("test-idp.pem");
    let jwks = identity::development_jwks(&key_path).unwrap();
    let kid = serde_json::from_str::<Value>(&jwks).unwrap()["keys"][0]["kid"].as_str().unwrap().to_owned();
    let idp = Arc::new(Idp {
        issuer: format!("https://localhost:{port}"),
        key: EncodingKey::from_ec_pem(&std::fs::read(&key_path).unwrap()).unwrap(),
        kid,
        jwks,
        codes: Mutex::new(HashMap::new()),
        mode: Mutex::new(Mode::Good),
    });
    let tls = certs::server_config(&pki.server_cert(), &pki.server_key(), certs::TlsMinimum::Tls13, None).unwrap();
    let data = web::Data::from(idp.clone());
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .route("/.well-known/openid-configuration", web::get().to(discovery))
                    .route("/jwks", web::get().to(keys))
                    .route("/authorize", web::get().to(authorize))
                    .route("/token", web::post().to(token))
            })
            .workers(1)
            .listen_rustls_0_23(listener, tls)
            .unwrap()
            .run()
            .await
        })
    });
    idp
}

/// One sign-in: the portal sends the browser to the provider, which sends it back with a code.
/// Returns the callback's path and query as the provider wrote it.
fn to_provider_and_back(browser: &mut Browser, provider: &Client) -> String {
    let begun = browser.get("/portal/login/oidc");
    assert_eq!(begun.status, 303, "{}", begun.text());
    let authorize = begun.header("location").unwrap().to_owned();
    assert!(authorize.contains("code_challenge=") && authorize.contains("code_challenge_method=S256"));
    assert!(!authorize.contains("code_verifier"), "the verifier stays on the server");
    let back = provider.send("GET", &authorize, &[], None).unwrap();
    assert_eq!(back.status, 302, "{}", back.text());
    let callback = back.header("location").unwrap();
    callback[callback.find("/portal/").unwrap()..].to_owned()
}

fn refused(browser: &mut Browser, callback: &str, what: &str) {
    let answer = browser.get(callback);
    assert_eq!(answer.status, 403, "{what}: {}", answer.text());
    assert!(answer.text().contains("Signing in failed"), "{what}");
    assert!(browser.session.is_none(), "{what}: nobody is signed in");
}

#[test]
fn oidc_sign_in_with_pkce_and_its_refusals() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let mut idp = None;
        let spawned = TestGateway::spawn_with(backend, |config| {
            let started = start_idp(&config.data_dir.join("pki"));
            let secret = config.data_dir.join("oidc-secret");
            std::fs::write(&secret, SECRET).unwrap();
            config.oidc = Some(OidcSettings {
                issuer: started.issuer.clone(),
                client_id: CLIENT_ID.into(),
                client_secret: Some(std::fs::read_to_string(&secret).unwrap()),
                redirect_url: Some("https://localhost/portal/login/callback".into()),
                discovery: None,
                jwks: None,
                ca: Some(config.data_dir.join("pki/ca.pem")),
                hetu_claim: "hetu".into(),
            });
            idp = Some(started);
        });
        let Some(gateway) = spawned else { continue };
        let idp = idp.unwrap();
        let provider =
            Client::new(Target { base_url: idp.issuer.clone(), ca: Some(gateway.ca()), ..Target::default() }).unwrap();

        let mut browser = Browser::new(&gateway);
        let login = browser.get("/portal/login");
        assert!(login.text().contains("href=\"/portal/login/oidc\""));
        // A good sign-in.
        let callback = to_provider_and_back(&mut browser, &provider);
        let answer = browser.get(&callback);
        assert_eq!(answer.status, 303, "{}", answer.text());
        assert_eq!(answer.header("location"), Some("/portal/documents"));
        assert!(browser.session.is_some());
        assert_eq!(browser.get("/portal/documents").status, 200);
        // The same answer again: its state was used.
        browser.session = None;
        refused(&mut browser, &callback, "a used state");

        // A state changed on the way back.
        let mut browser = Browser::new(&gateway);
        let callback = to_provider_and_back(&mut browser, &provider);
        let forged = callback.replace("state=", "state=0");
        refused(&mut browser, &forged, "a wrong state");

        // Another browser's sign-in, finished in this one (login CSRF).
        let mut victim = Browser::new(&gateway);
        let mut attacker = Browser::new(&gateway);
        victim.get("/portal/login/oidc");
        let attackers = to_provider_and_back(&mut attacker, &provider);
        refused(&mut victim, &attackers, "a state from another browser");

        for (mode, what) in [
            (Mode::WrongNonce, "a wrong nonce"),
            (Mode::Expired, "an expired ID token"),
            (Mode::WrongAudience, "a wrong audience"),
        ] {
            *idp.mode.lock().unwrap() = mode;
            let mut browser = Browser::new(&gateway);
            let callback = to_provider_and_back(&mut browser, &provider);
            refused(&mut browser, &callback, what);
        }
        *idp.mode.lock().unwrap() = Mode::Good;
    }
}
