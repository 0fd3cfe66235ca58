//! The table of what known providers say in their response headers, given to every service's
//! policy stack as its [`Hints`]: Stripe's retry advice, and rate-limit usage in the forms
//! GitHub, SendGrid, HubSpot, Salesforce and the IETF draft use. Provider quirks live here,
//! beside the outbound client, so the policy crate stays free of any provider's name.

use http::HeaderMap;
use wireline_policy::{Hints, Response};

/// Every provider habit Wireline knows. The headers do not collide across providers, so one
/// table serves every service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known;

impl Hints for Known {
    /// `Stripe-Should-Retry: true|false` (Stripe says whether a retry can succeed).
    fn should_retry(&self, response: &Response) -> Option<bool> {
        match response.header("stripe-should-retry")?.trim() {
            v if v.eq_ignore_ascii_case("true") => Some(true),
            v if v.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    fn usage(&self, headers: &HeaderMap) -> Option<f64> {
        usage(headers)
    }
}

/// The used share a provider reports in its headers, if it does.
///
/// `X-RateLimit-Limit`/`-Remaining` (GitHub, SendGrid, many), `RateLimit-Limit`/`-Remaining`
/// (IETF draft), HubSpot's `X-HubSpot-RateLimit-Max`/`-Remaining`, Salesforce's
/// `Sforce-Limit-Info: api-usage=USED/MAX`. Stripe and Slack send none: local counts serve.
pub fn usage(headers: &HeaderMap) -> Option<f64> {
    let mut limit = None;
    let mut remaining = None;
    let mut best: Option<f64> = None;
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let value = value.trim();
        match name.as_str() {
            "x-ratelimit-limit" | "ratelimit-limit" | "x-hubspot-ratelimit-max" => {
                limit = value
                    .split([',', ';'])
                    .next()
                    .and_then(|v| v.trim().parse::<f64>().ok());
            }
            "x-ratelimit-remaining" | "ratelimit-remaining" | "x-hubspot-ratelimit-remaining" => {
                remaining = value
                    .split([',', ';'])
                    .next()
                    .and_then(|v| v.trim().parse::<f64>().ok());
            }
            "sforce-limit-info" => {
                let usage = value
                    .split(',')
                    .find_map(|part| part.trim().strip_prefix("api-usage="));
                if let Some((used, max)) = usage.and_then(|u| u.split_once('/'))
                    && let (Ok(used), Ok(max)) =
                        (used.trim().parse::<f64>(), max.trim().parse::<f64>())
                    && max > 0.0
                {
                    best = Some(best.map_or(used / max, |b: f64| b.max(used / max)));
                }
            }
            _ => {}
        }
    }
    if let (Some(limit), Some(remaining)) = (limit, remaining)
        && limit > 0.0
    {
        let ratio = (limit - remaining).max(0.0) / limit;
        best = Some(best.map_or(ratio, |b| b.max(ratio)));
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_headers_report_usage_and_retry_advice() {
        let check = |headers: &[(&'static str, &'static str)], expected: Option<f64>| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(*name, http::HeaderValue::from_static(value));
            }
            let got = usage(&map);
            assert_eq!(
                got.map(|r| (r * 1000.0).round() / 1000.0),
                expected,
                "{headers:?}"
            );
        };
        check(
            &[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "900"),
            ],
            Some(0.82),
        );
        check(
            &[("ratelimit-limit", "100"), ("ratelimit-remaining", "50")],
            Some(0.5),
        );
        check(
            &[
                ("x-hubspot-ratelimit-max", "100"),
                ("x-hubspot-ratelimit-remaining", "10"),
            ],
            Some(0.9),
        );
        check(&[("sforce-limit-info", "api-usage=4100/5000")], Some(0.82));
        check(&[("request-id", "req_1")], None);
        let advice = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("stripe-should-retry", http::HeaderValue::from_static(value));
            Known.should_retry(&Response {
                status: 500,
                headers,
                body: bytes::Bytes::new(),
            })
        };
        assert_eq!(
            (advice("false"), advice("True"), advice("maybe")),
            (Some(false), Some(true), None)
        );
    }
}
