//! Shopify: `X-Shopify-Hmac-Sha256: BASE64`, HMAC-SHA256 over the body. No timestamp is
//! signed; the webhook id (`X-Shopify-Webhook-Id`, the dedupe key) is the replay defence. The
//! topic (`X-Shopify-Topic`, e.g. `orders/create`) becomes the type with `/` written as `.`
//! (`shopify.orders.create`), so type patterns such as `shopify.orders.*` work.

use super::{Incoming, Keys, Refusal, Verified, any_sha256, unbase64};

const HEADER: &str = "X-Shopify-Hmac-Sha256";

pub(super) fn verify(keys: &Keys, incoming: &Incoming<'_>) -> Result<Verified, Refusal> {
    let signature = unbase64(HEADER, incoming.required(HEADER)?)?;
    if !any_sha256(keys, &[incoming.body], &[signature]) {
        return Err(Refusal::Mismatch);
    }
    Ok(Verified {
        id: incoming.text("X-Shopify-Webhook-Id"),
        event_type: incoming
            .text("X-Shopify-Topic")
            .map(|t| t.replace('/', ".")),
    })
}
