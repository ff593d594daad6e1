//! A small HTTPS client for the suite (and the gateway's own tests): rustls with the deployment's
//! CA, an optional client certificate and bearer token, and answers of every status returned as
//! values rather than errors.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName};

/// Why a request, a handshake or the client's configuration failed. A refusal by the server at
/// the HTTP level is not an error: it is an [`Answer`] with its status.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("CA file {}: {source}", path.display())]
    CaFile { path: PathBuf, source: pem::Error },
    #[error("CA file {}: {source}", path.display())]
    CaCertificate { path: PathBuf, source: rustls::Error },
    #[error("certificate {}: {source}", path.display())]
    Certificate { path: PathBuf, source: pem::Error },
    #[error("key {}: {source}", path.display())]
    Key { path: PathBuf, source: pem::Error },
    #[error("--cert and --key go together")]
    CertificateWithoutKey,
    #[error("the base URL must be https://…, not {0}")]
    NotHttps(String),
    #[error("bad port in {0}")]
    BadPort(String),
    #[error("no address")]
    NoAddress,
    #[error("no protocol version after the handshake")]
    NoProtocolVersion,
    /// The request could not be sent or its answer not read: the method and URL, and why.
    #[error("{method} {url}: {source}")]
    Transport { method: String, url: String, source: Box<ureq::Transport> },
    #[error("{method} {url}: {source}")]
    Read { method: String, url: String, source: std::io::Error },
    /// The answer was expected to be JSON: the start of what it was instead.
    #[error("the body is not JSON ({source}): {excerpt}")]
    NotJson { source: serde_json::Error, excerpt: String },
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    ServerName(#[from] InvalidDnsNameError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

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

    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|source| ClientError::NotJson { source, excerpt: self.text_excerpt() })
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
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub token: Option<String>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|source| ClientError::CaFile { path: path.to_owned(), source })?;
            for cert in certs {
                roots.add(cert).map_err(|source| ClientError::CaCertificate { path: path.to_owned(), source })?;
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
) -> Result<rustls::ClientConfig, ClientError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_root_certificates(roots(target.ca.as_deref())?);
    match (&target.cert, &target.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|source| ClientError::Certificate { path: cert.clone(), source })?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|source| ClientError::Key { path: key.clone(), source })?;
            Ok(builder.with_client_auth_cert(chain, key)?)
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(ClientError::CertificateWithoutKey),
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
    pub fn new(target: Target) -> Result<Client, ClientError> {
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
    ) -> Result<Answer, ClientError> {
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
            Err(ureq::Error::Transport(error)) => {
                return Err(ClientError::Transport { method: method.to_owned(), url, source: Box::new(error) })
            }
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| response.header(&name).map(|value| (name.clone(), value.to_owned())))
            .collect();
        let mut body = Vec::new();
        response.into_reader().take(64 * 1024 * 1024).read_to_end(&mut body).map_err(|source| ClientError::Read {
            method: method.to_owned(),
            url,
            source,
        })?;
        Ok(Answer { status, headers, body })
    }

    pub fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.send("GET", path, &[("Accept", "application/fhir+json")], None)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Answer, ClientError> {
        self.send("POST", path, &[("Content-Type", "application/fhir+json")], Some(body.to_string().as_bytes()))
    }

    pub fn put_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let mut headers = vec![("Content-Type", "application/fhir+json")];
        if let Some(etag) = if_match {
            headers.push(("If-Match", etag));
        }
        self.send("PUT", path, &headers, Some(body.to_string().as_bytes()))
    }
}

/// Host and port of an https:// base URL.
pub fn host_port(base_url: &str) -> Result<(String, u16), ClientError> {
    let rest = base_url.strip_prefix("https://").ok_or_else(|| ClientError::NotHttps(base_url.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host.to_owned(), port.parse::<u16>().map_err(|_| ClientError::BadPort(base_url.to_owned()))?)
        }
        _ => (authority.to_owned(), 443),
    };
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

/// Performs a bare TLS handshake offering only `versions`; returns the negotiated version.
pub fn handshake(
    target: &Target,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ProtocolVersion, ClientError> {
    let (host, port) = host_port(&target.base_url)?;
    let config = Arc::new(tls_config(target, versions)?);
    let name = ServerName::try_from(host.clone())?;
    let mut connection = rustls::ClientConnection::new(config, name)?;
    let address = (host.as_str(), port).to_socket_addrs()?.next().ok_or(ClientError::NoAddress)?;
    let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket)?;
    }
    connection.protocol_version().ok_or(ClientError::NoProtocolVersion)
}

/// Sends a plaintext HTTP request to the TLS port; returns what came back (if anything).
pub fn plaintext_probe(target: &Target) -> Result<Vec<u8>, ClientError> {
    let (host, port) = host_port(&target.base_url)?;
    let address = (host.as_str(), port).to_socket_addrs()?.next().ok_or(ClientError::NoAddress)?;
    let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    socket.write_all(format!("GET /metadata HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut answer = Vec::new();
    let _ = socket.take(4096).read_to_end(&mut answer);
    Ok(answer)
}
