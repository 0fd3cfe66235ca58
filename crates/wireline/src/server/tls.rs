//! HTTPS on the listener (`[server] tls`): rustls, TLS 1.2 and 1.3 (nothing older exists in
//! rustls), HTTP/2 and HTTP/1.1 by ALPN. axum's `serve` speaks plain TCP only, so this is the
//! accept loop for TLS, with the same graceful shutdown: stop accepting, let open connections
//! finish their requests.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tracing::debug;

/// The server config from PEM files; errors name the file and the fix.
pub fn config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect::<Result<_, _>>())
        .map_err(|error| {
            anyhow::anyhow!(
                "[server] tls cert {}: {error}; give the certificate chain as PEM, leaf first",
                cert.display()
            )
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "[server] tls cert {} holds no certificate",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
        anyhow::anyhow!(
            "[server] tls key {}: {error}; give the private key as PEM (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            anyhow::anyhow!("[server] tls: the key does not fit the certificate ({error})")
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over TLS until `stop` fires, then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (stopping, stopped) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(Notify::new());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "accept failed");
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, open, closed) = (
            acceptor.clone(),
            app.clone(),
            Arc::clone(&open),
            Arc::clone(&closed),
        );
        let mut stopped = stopped.clone();
        open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection_with_upgrades(
                        TokioIo::new(tls),
                        TowerToHyperService::new(app),
                    );
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = async { let _ = stopped.wait_for(|stop| *stop).await.map(|_| ()); } => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                }
                Err(error) => debug!(%peer, %error, "TLS handshake failed"),
            }
            if open.fetch_sub(1, Ordering::SeqCst) == 1 {
                closed.notify_waiters();
            }
        });
    }
    let _ = stopping.send(true);
    while open.load(Ordering::SeqCst) > 0 {
        let notified = closed.notified();
        if open.load(Ordering::SeqCst) == 0 {
            break;
        }
        notified.await;
    }
    Ok(())
}
