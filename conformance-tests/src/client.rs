//! A small HTTPS client for the suite (and the gateway's own tests): rustls with the deployment's
//! CA, an optional client certificate and bearer token, and answers of every status returned as
//! values rather than errors.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("the body is not JSON ({e}): {}", self.text_excerpt()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The start of the body, for failure messages.
    pub fn text_excerpt(&self) -> String {
        self.text().chars().take(300).collect()
    }

    /// Whether this is a FHIR OperationOutcome with at least one issue.
    pub fn is_operation_outcome(&self) -> bool {
        self.json().is_ok_and(|v| {
            v["resourceType"] == "OperationOutcome" && v["issue"].as_array().is_some_and(|issues| !issues.is_empty())
        })
    }
}

/// How to reach a deployment.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub base_url: String,
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub token: Option<String>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            for cert in certs {
                roots.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// A rustls client configuration for `target`, offering only `versions`.
pub fn tls_config(
    target: &Target,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(target.ca.as_deref())?);
    match (&target.cert, &target.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("--cert and --key go together".into()),
    }
}

/// A keep-alive HTTPS client for one deployment.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    target: Target,
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn new(target: Target) -> Result<Client, String> {
        let config = Arc::new(tls_config(&target, rustls::ALL_VERSIONS)?);
        Ok(Client::with_config(target, config))
    }

    fn with_config(target: Target, config: Arc<rustls::ClientConfig>) -> Client {
        let agent =
            ureq::AgentBuilder::new().tls_config(config.clone()).timeout(Duration::from_secs(60)).redirects(0).build();
        Client { agent, target, config }
    }

    /// The same client on a new connection (a full TLS handshake on the next request).
    pub fn reconnect(&self) -> Client {
        Client::with_config(self.target.clone(), self.config.clone())
    }

    /// The same connection settings with another bearer token.
    pub fn with_token(&self, token: String) -> Client {
        Client {
            agent: self.agent.clone(),
            target: Target { token: Some(token), ..self.target.clone() },
            config: self.config.clone(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.target.base_url.trim_end_matches('/'), path)
    }

    /// Sends a request; `path` is appended to the base URL unless it is a full URL already.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let url =
            if path.starts_with("https://") || path.starts_with("http://") { path.to_owned() } else { self.url(path) };
        let mut request = self.agent.request(method, &url);
        if let Some(token) = &self.target.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let result = match body {
            Some(body) => request.send_bytes(body),
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(error)) => return Err(format!("{method} {url}: {error}")),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| response.header(&name).map(|value| (name.clone(), value.to_owned())))
            .collect();
        let mut body = Vec::new();
        response
            .into_reader()
            .take(64 * 1024 * 1024)
            .read_to_end(&mut body)
            .map_err(|e| format!("{method} {url}: {e}"))?;
        Ok(Answer { status, headers, body })
    }

    pub fn get(&self, path: &str) -> Result<Answer, String> {
        self.send("GET", path, &[("Accept", "application/fhir+json")], None)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Answer, String> {
        self.send("POST", path, &[("Content-Type", "application/fhir+json")], Some(body.to_string().as_bytes()))
    }

    pub fn put_json(&self, path: &str, body: &serde_json::Value, if_match: Option<&str>) -> Result<Answer, String> {
        let mut headers = vec![("Content-Type", "application/fhir+json")];
        if let Some(etag) = if_match {
            headers.push(("If-Match", etag));
        }
        self.send("PUT", path, &headers, Some(body.to_string().as_bytes()))
    }
}

/// Host and port of an https:// base URL.
pub fn host_port(base_url: &str) -> Result<(String, u16), String> {
    let rest =
        base_url.strip_prefix("https://").ok_or_else(|| format!("the base URL must be https://…, not {base_url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host.to_owned(), port.parse::<u16>().map_err(|_| format!("bad port in {base_url}"))?)
        }
        _ => (authority.to_owned(), 443),
    };
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

/// Performs a bare TLS handshake offering only `versions`; returns the negotiated version.
pub fn handshake(
    target: &Target,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ProtocolVersion, String> {
    let (host, port) = host_port(&target.base_url)?;
    let config = Arc::new(tls_config(target, versions)?);
    let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let mut connection = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let address = (host.as_str(), port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).map_err(|e| e.to_string())?;
    }
    connection.protocol_version().ok_or_else(|| "no protocol version after the handshake".into())
}

/// Sends a plaintext HTTP request to the TLS port; returns what came back (if anything).
pub fn plaintext_probe(target: &Target) -> Result<Vec<u8>, String> {
    let (host, port) = host_port(&target.base_url)?;
    let address = (host.as_str(), port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    socket
        .write_all(format!("GET /metadata HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = socket.take(4096).read_to_end(&mut answer);
    Ok(answer)
}
