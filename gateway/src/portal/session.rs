//! Signed-in patients: a random session id in a `__Host-` cookie (`Secure`, `HttpOnly`,
//! `SameSite=Strict`), the patient's pseudonym and a CSRF token kept on the server under the
//! id's SHA-256 (so that the table in memory holds no usable cookie), an idle timeout, and
//! sign-out. A new id is made at every sign-in, so an id planted before it is worth nothing.
//!
//! Sessions live in the node's memory: behind a load balancer, a patient's requests go to the
//! node that signed them in (a lost node signs its patients out, and nothing else is lost).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The session cookie. `__Host-`: only ever set by this host, over HTTPS, for every path.
pub const SESSION_COOKIE: &str = "__Host-vaitio-session";
/// The sign-in form's CSRF cookie, before there is a session (double submit).
pub const SIGN_IN_COOKIE: &str = "__Host-vaitio-sign-in";
/// The remembered language.
pub const LANG_COOKIE: &str = "__Host-vaitio-lang";

/// How many sessions a node holds at most; past it, expired ones are dropped, and a sign-in
/// that still finds no room is refused (503) rather than grow memory without bound.
const MAX_SESSIONS: usize = 100_000;

/// 32 random bytes, as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system's CSPRNG; a failure here is a broken host, and no session may start on it.
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        return String::new();
    }
    hex::encode(bytes)
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

fn key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

#[derive(Clone)]
pub struct Session {
    /// The patient's names, one under each index key version, newest first.
    pub pseudonyms: Vec<String>,
    pub csrf: String,
    last_seen: Instant,
}

pub struct Sessions {
    by_key: Mutex<HashMap<String, Session>>,
    idle: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("no room for another session")]
pub struct Full;

impl Sessions {
    pub fn new(idle: Duration) -> Self {
        Sessions { by_key: Mutex::new(HashMap::new()), idle }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock left the map as it was between two whole operations.
        self.by_key.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session for the patient of `pseudonyms`: its id (the cookie's value) and its CSRF
    /// token.
    pub fn start(&self, pseudonyms: Vec<String>) -> Result<(String, String), Full> {
        let (id, csrf) = (random_token(), random_token());
        if id.is_empty() || csrf.is_empty() {
            return Err(Full);
        }
        let mut sessions = self.lock();
        if sessions.len() >= MAX_SESSIONS {
            let now = Instant::now();
            sessions.retain(|_, s| now.duration_since(s.last_seen) < self.idle);
            if sessions.len() >= MAX_SESSIONS {
                return Err(Full);
            }
        }
        sessions.insert(key(&id), Session { pseudonyms, csrf: csrf.clone(), last_seen: Instant::now() });
        Ok((id, csrf))
    }

    /// The live session of cookie value `id`, its idle clock restarted; an expired one is
    /// ended here.
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = key(id);
        let mut sessions = self.lock();
        let session = sessions.get_mut(&key)?;
        let now = Instant::now();
        if now.duration_since(session.last_seen) >= self.idle {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Whether the session of cookie value `id` is live, without restarting its idle clock: an
    /// open live stream is not the patient's activity.
    pub fn alive(&self, id: &str) -> bool {
        self.lock().get(&key(id)).is_some_and(|s| s.last_seen.elapsed() < self.idle)
    }

    /// Signs out: the id is worth nothing from now on.
    pub fn end(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `Set-Cookie` value for a `__Host-` cookie; `max_age` `Some(0)` deletes it.
pub fn cookie(name: &str, value: &str, http_only: bool, max_age: Option<u64>) -> String {
    let mut cookie = format!("{name}={value}; Path=/; Secure; SameSite=Strict");
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if let Some(seconds) = max_age {
        cookie.push_str(&format!("; Max-Age={seconds}"));
    }
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_expire_and_end() {
        let sessions = Sessions::new(Duration::from_millis(50));
        let (id, csrf) = sessions.start(vec!["p-1".into()]).unwrap();
        let (other, _) = sessions.start(vec!["p-1".into()]).unwrap();
        assert_ne!(id, other, "every sign-in gets a new id");
        assert_eq!(id.len(), 64);
        let session = sessions.get(&id).unwrap();
        assert_eq!(session.pseudonyms, ["p-1"]);
        assert!(same_token(&session.csrf, &csrf));
        assert!(!same_token(&session.csrf, &other));
        assert!(!same_token("", ""));
        sessions.end(&id);
        assert!(sessions.get(&id).is_none(), "signed out");
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&other).is_none(), "idle past the timeout");
        assert!(sessions.is_empty());
    }

    #[test]
    fn cookies_carry_the_host_prefix_attributes() {
        let set = cookie(SESSION_COOKIE, "abc", true, None);
        assert_eq!(set, "__Host-vaitio-session=abc; Path=/; Secure; SameSite=Strict; HttpOnly");
        assert!(cookie(LANG_COOKIE, "fi", false, Some(0)).ends_with("Max-Age=0"));
    }
}
