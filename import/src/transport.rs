//! One HTTP/2 stream to the gateway over TLS with the clinic's certificate: the records go up as
//! the answers come down. HTTP/2's flow control holds each side to what the other has read, so
//! neither the client nor the gateway buffers more than a window of the stream.

use std::future::poll_fn;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::SendStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::ImportError;

/// Where and as whom: the same flags as `vaitio-conformance`.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The gateway's base URL, `https://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub base_url: String,
    /// The CA certificate (PEM) that signed the gateway's server certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: std::path::PathBuf,
    /// The organisation's client certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: std::path::PathBuf,
    /// The private key of the client certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: std::path::PathBuf,
    /// The practitioner's bearer token, bound to the client certificate.
    #[arg(long, env = "VAITIO_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: String,
}

fn pem_error(path: &Path, cause: impl std::fmt::Display) -> ImportError {
    ImportError::file(path, cause)
}

fn tls_config(target: &Target) -> Result<rustls::ClientConfig, ImportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&target.ca).map_err(|e| pem_error(&target.ca, e))? {
        let cert = cert.map_err(|e| pem_error(&target.ca, e))?;
        roots.add(cert).map_err(|e| pem_error(&target.ca, e))?;
    }
    let chain = CertificateDer::pem_file_iter(&target.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(&target.cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&target.key).map_err(|e| pem_error(&target.key, e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| ImportError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// An open request: the body to send on, and the answer to come.
pub struct Exchange {
    pub send: SendStream<Bytes>,
    pub response: ResponseFuture,
}

/// Connects, and starts `POST {base_url}{path}` with an NDJSON body still to be sent.
pub async fn start(target: &Target, path: &str) -> Result<Exchange, ImportError> {
    let url: http::Uri = format!("{}{path}", target.base_url.trim_end_matches('/'))
        .parse()
        .map_err(|_| ImportError::Usage(format!("--base-url {} is not a URL", target.base_url)))?;
    if url.scheme_str() != Some("https") {
        return Err(ImportError::Usage("--base-url must be an https:// URL".into()));
    }
    let host = url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_u16().unwrap_or(443);
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| ImportError::Usage(format!("{host} is not a host name")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(target)?));
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|cause| ImportError::Connection(format!("cannot connect to {host}:{port}: {cause}")))?;
    let _ = tcp.set_nodelay(true);
    let tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|cause| ImportError::Connection(format!("TLS with {host}:{port} failed: {cause}")))?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(ImportError::Connection("the gateway did not agree to HTTP/2".into()));
    }
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(connection_error)?;
    tokio::spawn(async move {
        // Ends when the stream does; an error shows on the stream itself.
        let _ = connection.await;
    });
    let mut client = client.ready().await.map_err(connection_error)?;
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/x-ndjson")
        .header(http::header::ACCEPT, "application/x-ndjson")
        .header(http::header::AUTHORIZATION, format!("Bearer {}", target.token))
        .body(())
        .map_err(|e| ImportError::Usage(e.to_string()))?;
    let (response, send) = client.send_request(request, false).map_err(connection_error)?;
    Ok(Exchange { send, response })
}

pub fn connection_error(error: h2::Error) -> ImportError {
    ImportError::Connection(format!("the connection to the gateway failed: {error}"))
}

/// Sends `data` as the gateway's window allows.
pub async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), ImportError> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(0)) => continue,
            Some(Ok(granted)) => {
                let piece = data.split_to(granted.min(data.len()));
                send.send_data(piece, false).map_err(connection_error)?;
            }
            Some(Err(error)) => return Err(connection_error(error)),
            None => return Err(ImportError::Connection("the gateway closed the stream".into())),
        }
    }
    Ok(())
}
