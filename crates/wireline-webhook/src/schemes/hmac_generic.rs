//! The generic scheme, for providers without a built-in one: a configured header, algorithm
//! (SHA-256 or SHA-1), encoding (hex or base64), prefix, and signed-content template
//! (`{body}`, `{timestamp}`, `{header:NAME}` around literal text).

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use wireline_config::model::{HmacAlgorithm, HmacWebhook, SignatureEncoding};

use super::{Incoming, Keys, Refusal, Verified, unbase64, unhex};

/// A piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Body,
    Timestamp,
    Header(String),
}

/// The configured generic scheme.
#[derive(Debug)]
pub struct Generic {
    header: String,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: String,
    parts: Vec<Part>,
    timestamp_header: Option<String>,
}

impl Generic {
    /// From the config (the template was checked by `wireline check`).
    pub fn new(config: &HmacWebhook) -> Self {
        let mut parts = Vec::new();
        let mut rest = config.signed.as_str();
        while let Some(start) = rest.find('{') {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let name = &rest[start + 1..start + end];
            parts.push(match name {
                "body" => Part::Body,
                "timestamp" => Part::Timestamp,
                _ => Part::Header(name.strip_prefix("header:").unwrap_or(name).to_owned()),
            });
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Self {
            header: config.header.clone(),
            algorithm: config.algorithm,
            encoding: config.encoding,
            prefix: config.prefix.clone(),
            parts,
            timestamp_header: config.timestamp_header.clone(),
        }
    }

    pub(super) fn verify(&self, keys: &Keys, incoming: &Incoming<'_>) -> Result<Verified, Refusal> {
        let header = incoming.required(&self.header)?;
        let encoded =
            header
                .strip_prefix(self.prefix.as_str())
                .ok_or_else(|| Refusal::Malformed {
                    header: self.header.clone(),
                    why: format!("it does not start with {:?}", self.prefix),
                })?;
        let signature = match self.encoding {
            SignatureEncoding::Hex => unhex(&self.header, encoded)?,
            SignatureEncoding::Base64 => unbase64(&self.header, encoded)?,
        };
        let timestamp = match &self.timestamp_header {
            Some(name) => Some(incoming.required(name)?),
            None => None,
        };
        let mut content: Vec<&[u8]> = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            content.push(match part {
                Part::Literal(text) => text.as_bytes(),
                Part::Body => incoming.body,
                Part::Timestamp => timestamp.unwrap_or_default().as_bytes(),
                Part::Header(name) => incoming.required(name)?.as_bytes(),
            });
        }
        let matches = keys.iter().any(|key| match self.algorithm {
            HmacAlgorithm::Sha256 => check::<Hmac<Sha256>>(key, &content, &signature),
            HmacAlgorithm::Sha1 => check::<Hmac<Sha1>>(key, &content, &signature),
        });
        if !matches {
            return Err(Refusal::Mismatch);
        }
        if let (Some(name), Some(timestamp)) = (&self.timestamp_header, timestamp) {
            incoming.fresh(name, timestamp)?;
        }
        Ok(Verified::default())
    }
}

fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], content: &[&[u8]], signature: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return false;
    };
    for part in content {
        mac.update(part);
    }
    mac.verify_slice(signature).is_ok()
}
