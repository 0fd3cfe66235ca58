//! Real TLS on loopback: a private CA (rcgen), an HTTPS upstream (tokio-rustls + hyper), and
//! the Direct API's client verifying it only when the service's `ca_file` trusts that CA.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the HTTPS upstream saw: the HTTP version, the TLS version and the Authorization header.
#[derive(Debug, Clone)]
pub struct Seen {
    pub http: Version,
    pub tls: Option<rustls::ProtocolVersion>,
    pub authorization: Option<String>,
}

pub struct HttpsUpstream {
    pub port: u16,
    /// The CA certificate (PEM) that signed the server's certificate.
    pub ca_pem: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Starts an HTTPS server for `localhost` and 127.0.0.1 with a fresh private CA.
pub async fn start() -> HttpsUpstream {
    start_with(false).await
}

/// Like [`start`]; with `tls12_only` the server speaks TLS 1.2 and nothing newer.
pub async fn start_with(tls12_only: bool) -> HttpsUpstream {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_server = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen_by_server);
            tokio::spawn(async move {
                // A client refusing the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let version = tls.get_ref().1.protocol_version();
                let app =
                    Router::new().fallback(move |http: Version, headers: HeaderMap| async move {
                        seen.lock().expect("lock").push(Seen {
                            http,
                            tls: version,
                            authorization: headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                        });
                        ([("content-type", "application/json")], "{\"secure\":true}")
                    });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    HttpsUpstream {
        port,
        ca_pem: ca_cert.pem(),
        seen,
    }
}
