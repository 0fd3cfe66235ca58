//! A `[services.NAME.poll]` section resolved against its preset into a complete spec, so
//! `check` can tell what is missing and the poller never guesses.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{Poll, PollPreset, TimeFormat};

/// How the next page is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextPage {
    /// One page per poll.
    None,
    /// This query parameter gets the last item's id (`starting_after`).
    Cursor(String),
    /// The `Link: <...>; rel="next"` header.
    Link,
    /// A next-page URL at this dotted path of the body.
    Body(String),
    /// This query parameter counts pages from 1.
    Page(String),
}

/// A complete poll definition.
#[derive(Debug, Clone, PartialEq)]
pub struct PollSpec {
    /// Interval between polls (jitter is added by the scheduler).
    pub every: Duration,
    /// Hybrid: this poll reconciles the webhook path.
    pub reconcile: bool,
    /// Path below `base_url`.
    pub path: String,
    /// Fixed query parameters.
    pub query: BTreeMap<String, String>,
    /// Dotted path to the items (`""`: the body is the list).
    pub items: String,
    /// Dotted path to an item's id.
    pub id: String,
    /// Dotted path to an item's time, if the source has one.
    pub time: Option<String>,
    /// Dotted path to an item's type.
    pub item_type: Option<String>,
    /// Query parameter for the watermark.
    pub since_param: Option<String>,
    /// How the watermark is written.
    pub since_format: TimeFormat,
    /// How far behind the watermark to read again.
    pub overlap: Duration,
    /// Pagination.
    pub next: NextPage,
    /// Dotted path to a "more pages" boolean.
    pub has_more: Option<String>,
    /// Pages per poll at most.
    pub max_pages: u32,
    /// With `reconcile`: the webhook miss share that raises an alert.
    pub miss_alert: f64,
    /// Intervals without watermark progress that raise an alert.
    pub stall_alert: Option<u32>,
    /// Each poll continues after the last item ever read (`next` must be a cursor).
    pub id_cursor: bool,
}

impl PollSpec {
    /// The spec for one entry of `sources`: `{source}` replaced in the path and query values.
    pub fn for_source(&self, source: &str) -> PollSpec {
        let mut spec = self.clone();
        spec.path = spec.path.replace("{source}", source);
        for value in spec.query.values_mut() {
            *value = value.replace("{source}", source);
        }
        spec
    }
}

impl Poll {
    /// The spec: the preset's values, overridden by what the section sets. The error says
    /// which key is missing or malformed and how to fix it.
    pub fn spec(&self) -> Result<PollSpec, (String, String)> {
        let preset = self.preset.unwrap_or(PollPreset::JsonList);
        let (path, items, id, time, item_type, since, format, overlap, next, has_more) =
            match preset {
                PollPreset::StripeEvents => (
                    Some("/v1/events"),
                    "data",
                    "id",
                    Some("created"),
                    Some("type"),
                    Some("created[gte]"),
                    TimeFormat::Unix,
                    Duration::from_secs(300),
                    "cursor:starting_after",
                    Some("has_more"),
                ),
                PollPreset::GithubEvents => (
                    None,
                    "",
                    "id",
                    Some("created_at"),
                    Some("type"),
                    None,
                    TimeFormat::Rfc3339,
                    Duration::ZERO,
                    "link",
                    None,
                ),
                PollPreset::JsonList => (
                    None,
                    "",
                    "id",
                    None,
                    None,
                    None,
                    TimeFormat::Unix,
                    Duration::ZERO,
                    "none",
                    None,
                ),
            };
        let mut query = match preset {
            PollPreset::StripeEvents => BTreeMap::from([("limit".to_owned(), "100".to_owned())]),
            PollPreset::GithubEvents => BTreeMap::from([("per_page".to_owned(), "100".to_owned())]),
            PollPreset::JsonList => BTreeMap::new(),
        };
        query.extend(self.query.clone());
        let path = self
            .path
            .clone()
            .or(path.map(str::to_owned))
            .ok_or_else(|| {
                (
                    "path".to_owned(),
                    "say which endpoint to poll, e.g. path = \"/v1/items\" (below base_url)"
                        .to_owned(),
                )
            })?;
        if !path.starts_with('/') {
            return Err((
                "path".to_owned(),
                format!("\"{path}\" must start with / (it is below base_url)"),
            ));
        }
        let next_text = self.next.as_deref().unwrap_or(next);
        let next = parse_next(next_text).ok_or_else(|| {
            (
                "next".to_owned(),
                format!("\"{next_text}\" is not a pagination; write cursor:PARAM, link, body:FIELD, page:PARAM or none"),
            )
        })?;
        if self.id_cursor && !matches!(next, NextPage::Cursor(_)) {
            return Err((
                "id_cursor".to_owned(),
                "id_cursor continues after the last item's id, so it needs next = \"cursor:PARAM\" (e.g. cursor:starting_after)".to_owned(),
            ));
        }
        let time = self.time.clone().or(time.map(str::to_owned));
        let since_param = self.since_param.clone().or(since.map(str::to_owned));
        if since_param.is_some() && time.is_none() {
            return Err((
                "since_param".to_owned(),
                "a watermark needs the items' time: set time = \"FIELD\" (the field holding each item's time)".to_owned(),
            ));
        }
        let every = self.every.map(|d| d.get()).unwrap_or(if self.reconcile {
            Duration::from_secs(15 * 60)
        } else {
            Duration::from_secs(60)
        });
        if every < Duration::from_secs(1) {
            return Err((
                "every".to_owned(),
                "poll at most once a second; write \"1s\" or more".to_owned(),
            ));
        }
        Ok(PollSpec {
            every,
            reconcile: self.reconcile,
            path,
            query,
            items: self.items.clone().unwrap_or_else(|| items.to_owned()),
            id: self.id.clone().unwrap_or_else(|| id.to_owned()),
            time,
            item_type: self.item_type.clone().or(item_type.map(str::to_owned)),
            since_param,
            since_format: self.since_format.unwrap_or(format),
            overlap: self.overlap.map_or(overlap, |d| d.get()),
            next,
            has_more: self.has_more.clone().or(has_more.map(str::to_owned)),
            max_pages: self.max_pages.unwrap_or(100).max(1),
            miss_alert: self.miss_alert,
            stall_alert: self.stall_alert,
            id_cursor: self.id_cursor,
        })
    }
}

fn parse_next(text: &str) -> Option<NextPage> {
    let field = |rest: &str| (!rest.trim().is_empty()).then(|| rest.trim().to_owned());
    Some(match text.split_once(':') {
        None if text == "none" => NextPage::None,
        None if text == "link" => NextPage::Link,
        Some(("cursor", rest)) => NextPage::Cursor(field(rest)?),
        Some(("body", rest)) => NextPage::Body(field(rest)?),
        Some(("page", rest)) => NextPage::Page(field(rest)?),
        _ => return None,
    })
}
