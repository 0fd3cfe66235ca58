//! OAuth 2.0 toward upstream services: client credentials or refresh-token grants, tokens
//! cached and refreshed before they expire, one refresh at a time however many calls wait
//! (single flight), a forced refresh after a 401, refresh-token rotation, an audit event per
//! refresh and an alert when refreshing fails.
//!
//! Written on Wireline's own client rather than the `oauth2` crate: the exchange is one form
//! POST (RFC 6749 §4.4 / §6), and the crate would bring a second HTTP client and TLS stack.
//!
//! A rotated refresh token replaces the configured one in memory at once; with
//! `[security] encryption_key` it is also stored (sealed) so a restart uses it.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};
use wireline_config::model::{Grant, OAuth2};
use wireline_core::{Problem, ProblemKind};
use wireline_store::Store;

/// Refresh at most this long before the token expires...
const LONGEST_MARGIN: Duration = Duration::from_secs(60);

/// ...and at most a fifth of its lifetime before. A fixed margin would make every token that
/// lives a minute or less stale on arrival, and every call would fetch one of its own (a
/// refresh storm with short-lived tokens); a fifth keeps one token serving every caller for
/// most of its life, and is still refreshed well before it expires.
pub(crate) fn refresh_margin(lifetime: Duration) -> Duration {
    LONGEST_MARGIN.min(lifetime / 5)
}
/// The state namespace of rotated refresh tokens (sealed by the encryption wrapper).
pub(crate) const NAMESPACE: &str = "sealed:oauth";

struct Token {
    access: SecretString,
    /// When callers stop using it and refresh: [`refresh_margin`] before it expires.
    refresh_at: Instant,
    /// Counts refreshes, so a forced refresh after a 401 happens once for all waiters.
    generation: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// What the token sources of a service share.
pub(crate) struct Shared {
    /// The service's HTTP client (its CA file and TLS floor apply to the token endpoint too).
    pub(crate) client: reqwest::Client,
    pub(crate) store: Arc<dyn Store>,
    /// Whether rotated refresh tokens are stored (sealed): an encryption key is configured.
    pub(crate) persist: bool,
    pub(crate) recorder: Arc<crate::record::Recorder>,
}

/// One service's tokens, or one agent's own on a service.
pub(crate) struct TokenSource {
    service: String,
    /// The agent whose own OAuth app this is (`[agents.NAME.credentials.SERVICE]`), if any.
    agent: Option<String>,
    config: OAuth2,
    scopes: Vec<String>,
    client: reqwest::Client,
    store: Arc<dyn Store>,
    persist: bool,
    token: Mutex<Option<Token>>,
    refresh_token: std::sync::Mutex<Option<SecretString>>,
    recorder: Arc<crate::record::Recorder>,
}

impl TokenSource {
    pub(crate) fn new(
        service: &str,
        agent: Option<&str>,
        config: &OAuth2,
        scopes: Vec<String>,
        shared: &Shared,
    ) -> Self {
        let refresh = config
            .refresh_token
            .as_ref()
            .and_then(|secret| secret.value())
            .map(|value| SecretString::from(value.expose_secret().to_owned()));
        Self {
            service: service.to_owned(),
            agent: agent.map(str::to_owned),
            config: config.clone(),
            scopes,
            client: shared.client.clone(),
            store: Arc::clone(&shared.store),
            persist: shared.persist,
            token: Mutex::new(None),
            refresh_token: std::sync::Mutex::new(refresh),
            recorder: Arc::clone(&shared.recorder),
        }
    }

    /// A valid access token and its generation. With `after_failure` (the generation that an
    /// upstream refused with 401), refreshes unless another caller already did.
    pub(crate) async fn token(
        &self,
        after_failure: Option<u64>,
    ) -> Result<(SecretString, u64), Problem> {
        // Waiters queue on this lock: the first refreshes, the rest find the new token.
        let mut held = self.token.lock().await;
        if let Some(token) = held.as_ref() {
            let fresh = Instant::now() < token.refresh_at;
            let refused = after_failure == Some(token.generation);
            if fresh && !refused {
                return Ok((token.access.clone(), token.generation));
            }
        }
        let generation = held.as_ref().map_or(1, |t| t.generation + 1);
        let token = self.refresh(generation).await?;
        let out = (token.access.clone(), token.generation);
        *held = Some(token);
        Ok(out)
    }

    /// Where a rotated refresh token is kept: per service, and per agent for an agent's own.
    fn state_key(&self) -> String {
        match &self.agent {
            Some(agent) => format!("{}:{agent}", self.service),
            None => self.service.clone(),
        }
    }

    /// The config table these settings come from, for error messages.
    fn table(&self) -> String {
        match &self.agent {
            Some(agent) => format!("[agents.{agent}.credentials.{}.oauth2]", self.service),
            None => format!("[services.{}.auth.oauth2]", self.service),
        }
    }

    async fn stored_refresh_token(&self) -> Option<SecretString> {
        if !self.persist {
            return None;
        }
        let bytes = self
            .store
            .get(NAMESPACE, &self.state_key(), jiff::Timestamp::now())
            .await
            .ok()
            .flatten()?;
        String::from_utf8(bytes).ok().map(SecretString::from)
    }

    async fn refresh(&self, generation: u64) -> Result<Token, Problem> {
        let secret = self
            .config
            .client_secret
            .value()
            .map(|s| s.expose_secret().to_owned())
            .unwrap_or_default();
        if self.config.grant == Grant::RefreshToken
            && generation == 1
            && let Some(stored) = self.stored_refresh_token().await
        {
            *self
                .refresh_token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stored);
        }
        // The form is built whole before the next await (its serializer is not Send).
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            match self.config.grant {
                Grant::ClientCredentials => {
                    form.append_pair("grant_type", "client_credentials");
                }
                Grant::RefreshToken => {
                    let refresh = self
                        .refresh_token
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .as_ref()
                        .map(|t| t.expose_secret().to_owned())
                        .unwrap_or_default();
                    form.append_pair("grant_type", "refresh_token");
                    form.append_pair("refresh_token", &refresh);
                }
            }
            if !self.scopes.is_empty() {
                form.append_pair("scope", &self.scopes.join(" "));
            }
            form.finish()
        };
        let sent = self
            .client
            .post(&self.config.token_url)
            .basic_auth(&self.config.client_id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .timeout(Duration::from_secs(15))
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Err(self.failed(format!(
                    "the token endpoint did not answer ({})",
                    error.without_url()
                )));
            }
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            // RFC 6749 §5.2: an `error` code such as invalid_grant; never echo the body whole.
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "no error code".to_owned());
            return Err(self.failed(format!(
                "the token endpoint refused the {} grant with {status} ({code})",
                grant_name(self.config.grant)
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            self.failed("the token endpoint's answer has no access_token".to_owned())
        })?;
        // Bounded, so an absurd `expires_in` cannot overflow the clock arithmetic below.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600).min(366 * 24 * 3600));
        if let Some(rotated) = &parsed.refresh_token {
            // Rotation: the new refresh token replaces the old one at once (the old one may
            // already be revoked by the provider), and durably where it can be sealed.
            *self
                .refresh_token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(SecretString::from(rotated.clone()));
            if self.persist
                && let Err(error) = self
                    .store
                    .put(NAMESPACE, &self.state_key(), rotated.as_bytes(), None)
                    .await
            {
                warn!(service = %self.service, agent = ?self.agent, %error, "the rotated refresh token was not stored; a restart would use the configured one");
            }
        }
        let granted = parsed
            .scope
            .clone()
            .unwrap_or_else(|| self.scopes.join(" "));
        info!(service = %self.service, agent = ?self.agent, scopes = %granted, expires_in = lifetime.as_secs(), "OAuth token refreshed");
        self.recorder.oauth_refreshed(
            &self.service,
            self.agent.as_deref(),
            &granted,
            lifetime.as_secs(),
            parsed.refresh_token.is_some(),
        );
        Ok(Token {
            access: SecretString::from(parsed.access_token),
            refresh_at: Instant::now() + lifetime - refresh_margin(lifetime),
            generation,
        })
    }

    fn failed(&self, why: String) -> Problem {
        self.recorder
            .oauth_failed(&self.service, self.agent.as_deref(), &why);
        Problem::new(
            ProblemKind::CredentialExpired,
            format!(
                "{}: no OAuth token: {why}; check {} (client secret, refresh token, revoked consent) and the provider's app settings",
                self.service,
                self.table()
            ),
        )
    }
}

fn grant_name(grant: Grant) -> &'static str {
    match grant {
        Grant::ClientCredentials => "client_credentials",
        Grant::RefreshToken => "refresh_token",
    }
}

/// The scopes a service's token asks for: `oauth2.scopes` if set, else the union of its
/// operations' scopes.
pub(crate) fn requested_scopes(
    service: &wireline_config::model::Service,
    oauth2: &OAuth2,
) -> Vec<String> {
    if !oauth2.scopes.is_empty() {
        return oauth2.scopes.clone();
    }
    let mut scopes: Vec<String> = service
        .operations
        .values()
        .flat_map(|op| op.scopes.iter().cloned())
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// The audit data of a refresh (never a token).
pub(crate) fn refresh_data(
    service: &str,
    agent: Option<&str>,
    scopes: &str,
    expires_in: u64,
    rotated: bool,
) -> serde_json::Value {
    json!({ "service": service, "agent": agent, "scopes": scopes, "expires_in": expires_in, "refresh_token_rotated": rotated })
}

/// One call's view of its OAuth token while the stack runs it: the token its attempts send,
/// a renewal when the upstream refuses one with 401 (one refresh for every caller that saw
/// the same token refused), and the problem if no new token could be had.
pub(crate) struct OnRefused<'a> {
    source: &'a TokenSource,
    current: std::sync::Mutex<(SecretString, u64)>,
    failure: std::sync::Mutex<Option<Problem>>,
}

impl<'a> OnRefused<'a> {
    pub(crate) fn new(source: &'a Arc<TokenSource>, token: (SecretString, u64)) -> Self {
        Self {
            source,
            current: std::sync::Mutex::new(token),
            failure: std::sync::Mutex::new(None),
        }
    }

    /// Puts the current token in `headers`; returns its generation.
    pub(crate) fn authorize(&self, headers: &mut http::HeaderMap) -> u64 {
        let current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(value) = bearer(&current.0) {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        current.1
    }

    /// After a 401 to the token of `generation`: a new token in `headers` (true), or false
    /// with the failure kept for [`OnRefused::into_failure`].
    pub(crate) async fn renew(&self, generation: u64, headers: &mut http::HeaderMap) -> bool {
        match self.source.token(Some(generation)).await {
            Ok(token) => {
                let Some(value) = bearer(&token.0) else {
                    return false;
                };
                headers.insert(http::header::AUTHORIZATION, value);
                *self
                    .current
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = token;
                true
            }
            Err(problem) => {
                *self
                    .failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(problem);
                false
            }
        }
    }

    /// Why the token could not be renewed, if it could not.
    pub(crate) fn into_failure(self) -> Option<Problem> {
        self.failure
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `Bearer TOKEN` as a header value marked sensitive (kept out of debug output).
pub(crate) fn bearer(token: &SecretString) -> Option<http::HeaderValue> {
    let mut value =
        http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_fifth_of_the_lifetime_at_most_a_minute() {
        for (lifetime, margin) in [
            (3600, 60_000),
            (300, 60_000),
            (60, 12_000),
            (5, 1_000),
            (1, 200),
            (0, 0),
        ] {
            assert_eq!(
                refresh_margin(Duration::from_secs(lifetime)),
                Duration::from_millis(margin),
                "a token living {lifetime} s"
            );
        }
    }
}
