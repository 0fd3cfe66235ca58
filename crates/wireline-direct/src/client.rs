//! The outbound HTTP client: the only one in Wireline.
//!
//! reqwest on rustls with the `ring` provider (no C toolchain beyond `cc` needed): TLS 1.3
//! preferred, 1.2 the minimum, certificates always verified against the Mozilla roots
//! (`webpki-roots`, the same on every machine) plus an optional extra CA file per service for
//! sandboxes. Plain `http://` is allowed by config validation only for loopback hosts.
//! Redirects are never followed (a proxy hands 3xx back to the agent; a redirect to another
//! host could otherwise carry the injected credential away). Connections are pooled; HTTP/2 is
//! used where the server offers it over ALPN.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wireline_config::model::MinTls;
use wireline_policy::{AttemptError, Response};

/// Builds a client trusting the Mozilla roots and, if given, the certificates in `ca_file`.
pub fn build(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    build_with(ca_file, MinTls::Tls12)
}

/// Like [`build`], accepting TLS `min_tls` and newer (1.2 is the floor: rustls implements
/// nothing older, so no setting can lower it).
pub fn build_with(ca_file: Option<&Path>, min_tls: MinTls) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certificates = CertificateDer::pem_file_iter(path).map_err(|error| {
            format!(
                "cannot read ca_file {} ({error}); give a PEM file of CA certificates",
                path.display()
            )
        })?;
        let mut added = 0;
        for certificate in certificates {
            let certificate = certificate.map_err(|error| {
                format!("ca_file {} is not valid PEM ({error})", path.display())
            })?;
            roots
                .add(certificate)
                .map_err(|error| format!("ca_file {}: {error}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "ca_file {} holds no certificate; give a PEM file of CA certificates",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    let versions: &[&rustls::SupportedProtocolVersion] = match min_tls {
        MinTls::Tls12 => &BOTH,
        MinTls::Tls13 => &ONLY_13,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|error| format!("TLS setup failed: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {}", error.without_url()))
}

/// One upstream request, ready to send (cloned for each attempt).
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Method.
    pub method: http::Method,
    /// Full URL, credential query parameter included.
    pub url: url::Url,
    /// Headers, credential included.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Sends one attempt. Errors never include the URL (it may carry a credential in its query).
pub async fn send(
    client: &reqwest::Client,
    request: &Outbound,
    max_response: u64,
) -> Result<Response, AttemptError> {
    // Built as a `Request`, not through `RequestBuilder::headers`, which would insert each
    // header again into a map of its own.
    let mut outgoing = reqwest::Request::new(request.method.clone(), request.url.clone());
    *outgoing.headers_mut() = request.headers.clone();
    *outgoing.body_mut() = Some(request.body.clone().into());
    let mut response = client.execute(outgoing).await.map_err(classify)?;
    let status = response.status().as_u16();
    // Taken whole: every value as its bytes, text or not.
    let headers = std::mem::take(response.headers_mut());
    // A body that comes in one chunk (most API replies) is kept as it is; only a second chunk
    // starts a copy.
    let mut first = Bytes::new();
    let mut rest: Option<BytesMut> = None;
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        let so_far = rest.as_ref().map_or(first.len(), BytesMut::len);
        if (so_far + chunk.len()) as u64 > max_response {
            return Err(AttemptError::Failed(format!(
                "the response is larger than max_response ({max_response} bytes); raise [services.NAME] max_response"
            )));
        }
        match &mut rest {
            Some(body) => body.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let mut body = BytesMut::from(std::mem::take(&mut first));
                body.extend_from_slice(&chunk);
                rest = Some(body);
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body: rest.map_or(first, BytesMut::freeze),
    })
}

fn classify(error: reqwest::Error) -> AttemptError {
    let connect = error.is_connect();
    let error = error.without_url();
    // Walk the sources for the useful part (refused, DNS, certificate).
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        detail = format!("{detail}: {inner}");
        source = inner.source();
    }
    if detail.contains("certificate") {
        detail.push_str(
            "; if the service uses a private or sandbox CA, set [services.NAME] ca_file to its PEM",
        );
    }
    if detail.contains("ProtocolVersion") || detail.contains("protocol version") {
        detail.push_str(
            "; the service does not speak the TLS version [services.NAME] min_tls asks for (TLS 1.2 is the floor)",
        );
    }
    if connect {
        AttemptError::NotSent(detail)
    } else {
        AttemptError::Failed(detail)
    }
}
