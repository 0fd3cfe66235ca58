//! One poll of one source: read pages from the checkpoint on, append the items, checkpoint
//! after every page.
//!
//! The watermark (the newest item time fully synced) moves only when a sync finishes: a
//! newest-first source (Stripe) is read from the top down, so until the last page is read an
//! older item may still be missing. A sync cut short (a crash, a failed page, `max_pages`)
//! resumes from its last checkpointed page with the same filter. Each poll re-reads an
//! `overlap` behind the watermark for late items and items that share a timestamp; they are
//! dropped by their ids, by the store's unique append.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wireline_config::model::TimeFormat;
use wireline_config::poll::{NextPage, PollSpec};
use wireline_core::json::{at, text as scalar};
use wireline_core::{Event, Problem, ProblemKind};
use wireline_direct::{Caller, Direct, ProxyRequest};
use wireline_store::Store;
use wireline_webhook::delivery::Head;

/// Where a sync in progress goes next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PageRef {
    /// The first page.
    First,
    /// The cursor parameter's value (the last item's id).
    Cursor(String),
    /// A next-page URL (from `Link` or the body), relative to `base_url`.
    Url(String),
    /// A page number.
    Page(u32),
}

/// A sync in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The next page.
    pub next: PageRef,
    /// The watermark filter of this sync (unix seconds), kept for every page of it.
    pub since: Option<i64>,
    /// The newest item time seen in this sync.
    pub newest: Option<i64>,
    /// Validators of this sync's first page, kept once the sync finishes.
    pub etag: Option<String>,
    /// `Last-Modified` of this sync's first page.
    pub last_modified: Option<String>,
}

/// A source's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The newest item time (unix seconds) of the last finished sync.
    pub watermark: Option<i64>,
    /// A sync that has not finished.
    pub run: Option<Run>,
    /// `ETag` of the last finished sync's first page (sent as `If-None-Match`).
    pub etag: Option<String>,
    /// `Last-Modified` of it (sent as `If-Modified-Since`).
    pub last_modified: Option<String>,
    /// The earliest next poll the provider allows (`X-Poll-Interval`), unix seconds.
    pub not_before: Option<i64>,
    /// With `id_cursor`: the last item ever read; the next poll continues after it.
    #[serde(default)]
    pub last_id: Option<String>,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Pages fetched (a 304 counts as one).
    pub pages: u32,
    /// Items new to the log.
    pub new: u64,
    /// Items already in the log (overlap, or seen first by the webhook).
    pub duplicates: u64,
    /// True when the sync reached its end (else it continues at the next poll).
    pub finished: bool,
    /// The provider answered 304 Not Modified.
    pub not_modified: bool,
    /// The provider's `X-Poll-Interval`, seconds.
    pub poll_interval: Option<u64>,
}

/// One source: a service's poll spec and where its checkpoint lives.
pub struct Source {
    /// The service.
    pub service: String,
    /// The entry of `sources` this is, if the service polls several.
    pub name: Option<String>,
    /// The spec.
    pub spec: PollSpec,
    /// The service's `base_url` (next-page URLs must stay below it).
    pub base_url: url::Url,
    /// Where subjects are in items (`[events] subjects`).
    pub subjects: wireline_webhook::Subjects,
}

impl Source {
    /// The checkpoint's name in the store.
    pub fn checkpoint_name(&self) -> String {
        match &self.name {
            Some(name) => format!("poll:{}:{name}", self.service),
            None => format!("poll:{}", self.service),
        }
    }

    /// Loads the checkpoint (default when there is none).
    pub async fn checkpoint(&self, store: &dyn Store) -> Result<Checkpoint, Problem> {
        let saved = store
            .load_cursor(&self.checkpoint_name())
            .await
            .map_err(store_problem)?;
        Ok(saved
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    async fn save(&self, store: &dyn Store, checkpoint: &Checkpoint) -> Result<(), Problem> {
        let text = serde_json::to_string(checkpoint).unwrap_or_default();
        store
            .save_cursor(&self.checkpoint_name(), &text)
            .await
            .map_err(store_problem)
    }

    /// Runs one poll: pages from the checkpoint on, at most `max_pages`.
    pub async fn poll(
        &self,
        direct: &Direct,
        store: &Arc<dyn Store>,
        head: Option<&Head>,
    ) -> Result<Outcome, Problem> {
        let mut checkpoint = self.checkpoint(store.as_ref()).await?;
        let mut outcome = Outcome::default();
        let mut run = checkpoint.run.clone().unwrap_or_else(|| Run {
            next: match (&checkpoint.last_id, self.spec.id_cursor) {
                (Some(id), true) => PageRef::Cursor(id.clone()),
                _ => PageRef::First,
            },
            since: checkpoint
                .watermark
                .map(|w| w.saturating_sub(i64::try_from(self.spec.overlap.as_secs()).unwrap_or(0))),
            newest: checkpoint.watermark,
            etag: None,
            last_modified: None,
        });
        while outcome.pages < self.spec.max_pages {
            let first = run.next == PageRef::First;
            let (raw_path, raw_query) = self.request(&run)?;
            let mut headers = HeaderMap::new();
            if first {
                for (name, value) in [
                    ("if-none-match", &checkpoint.etag),
                    ("if-modified-since", &checkpoint.last_modified),
                ] {
                    if let Some(value) = value.as_deref().and_then(|v| v.parse().ok()) {
                        headers.insert(name, value);
                    }
                }
            }
            let reply = direct
                .proxy(ProxyRequest {
                    caller: Caller::Poller,
                    service: self.service.clone(),
                    raw_path,
                    raw_query,
                    method: http::Method::GET,
                    headers,
                    body: Bytes::new(),
                })
                .await?;
            outcome.pages += 1;
            outcome.poll_interval = header(reply.headers(), "x-poll-interval")
                .and_then(|v| v.parse().ok())
                .or(outcome.poll_interval);
            if reply.headers().contains_key("wireline-fallback") {
                // A stale or static answer is not the provider's list: try again later.
                return Err(Problem::new(
                    ProblemKind::UpstreamUnreachable,
                    format!(
                        "{} is failing (the answer was a fallback); the poll resumes at its checkpoint next time",
                        self.service
                    ),
                ));
            }
            if first && reply.status() == http::StatusCode::NOT_MODIFIED {
                outcome.not_modified = true;
                outcome.finished = true;
                checkpoint.run = None;
                self.finish_interval(&mut checkpoint, &outcome);
                self.save(store.as_ref(), &checkpoint).await?;
                return Ok(outcome);
            }
            if !reply.status().is_success() {
                let problem = Problem::new(
                    ProblemKind::UpstreamUnreachable,
                    format!(
                        "{} answered {} to its poll of {}; the poll resumes at its checkpoint next time",
                        self.service,
                        reply.status(),
                        self.spec.path
                    ),
                );
                // The provider's Retry-After (429, 503) pushes the next poll back.
                return Err(
                    match header(reply.headers(), "retry-after")
                        .and_then(|v| wireline_core::retry_after::parse(&v, Timestamp::now()))
                    {
                        Some(wait) => problem
                            .with_retry_after(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
                        None => problem,
                    },
                );
            }
            if first {
                run.etag = header(reply.headers(), "etag");
                run.last_modified = header(reply.headers(), "last-modified");
            }
            let body: Value = serde_json::from_slice(reply.body()).map_err(|error| {
                Problem::new(
                    ProblemKind::UpstreamUnreachable,
                    format!(
                        "{}'s list is not JSON ({error}); check [services.{}.poll] path",
                        self.service, self.service
                    ),
                )
            })?;
            let items = match items_at(&body, &self.spec.items) {
                Some(items) => items,
                None => {
                    return Err(Problem::new(
                        ProblemKind::UpstreamUnreachable,
                        format!(
                            "{}'s list has no array at \"{}\"; set [services.{}.poll] items to where the items are",
                            self.service, self.spec.items, self.service
                        ),
                    ));
                }
            };
            // A page's items are appended together: the store's group commit makes them one
            // durable commit, and they still reach the log in page order (each append is
            // queued when first polled, in order).
            let mut last_id = None;
            let mut appends = Vec::with_capacity(items.len());
            for item in &items {
                let Some(id) = at(item, &self.spec.id).and_then(scalar) else {
                    continue;
                };
                let time = self
                    .spec
                    .time
                    .as_deref()
                    .and_then(|f| at(item, f))
                    .and_then(seconds);
                if let Some(time) = time {
                    run.newest = Some(run.newest.map_or(time, |n| n.max(time)));
                }
                last_id = Some(id.clone());
                appends.push(self.store_item(store, head, id, time, item));
            }
            for duplicate in futures_util::future::join_all(appends).await {
                if duplicate? {
                    outcome.duplicates += 1;
                } else {
                    outcome.new += 1;
                }
            }
            if self.spec.id_cursor && last_id.is_some() {
                checkpoint.last_id.clone_from(&last_id);
            }
            let more = self
                .spec
                .has_more
                .as_deref()
                .and_then(|field| at(&body, field))
                .and_then(Value::as_bool);
            let next = match &self.spec.next {
                NextPage::None => None,
                NextPage::Cursor(_) => last_id
                    .filter(|_| more.unwrap_or(!items.is_empty()))
                    .map(PageRef::Cursor),
                NextPage::Page(_) => {
                    let current = match run.next {
                        PageRef::Page(n) => n,
                        _ => 1,
                    };
                    more.unwrap_or(!items.is_empty())
                        .then_some(PageRef::Page(current + 1))
                }
                NextPage::Link => next_link(reply.headers()).map(PageRef::Url),
                NextPage::Body(field) => at(&body, field)
                    .and_then(Value::as_str)
                    .filter(|url| !url.is_empty())
                    .map(|url| PageRef::Url(url.to_owned())),
            };
            match next {
                Some(next) => {
                    run.next = next;
                    checkpoint.run = Some(run.clone());
                    self.save(store.as_ref(), &checkpoint).await?;
                }
                None => {
                    outcome.finished = true;
                    checkpoint.watermark = run.newest;
                    checkpoint.etag = run.etag.take();
                    checkpoint.last_modified = run.last_modified.take();
                    checkpoint.run = None;
                    self.finish_interval(&mut checkpoint, &outcome);
                    self.save(store.as_ref(), &checkpoint).await?;
                    return Ok(outcome);
                }
            }
        }
        Ok(outcome)
    }

    fn finish_interval(&self, checkpoint: &mut Checkpoint, outcome: &Outcome) {
        checkpoint.not_before = outcome.poll_interval.map(|seconds| {
            Timestamp::now().as_second() + i64::try_from(seconds).unwrap_or(i64::MAX / 2)
        });
    }

    /// The raw path (below base_url, no leading `/`) and query of the page `run` is on.
    fn request(&self, run: &Run) -> Result<(String, Option<String>), Problem> {
        if let PageRef::Url(next) = &run.next {
            return self.below_base(next);
        }
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.spec.query {
            query.append_pair(name, value);
        }
        if let (Some(param), Some(since)) = (&self.spec.since_param, run.since) {
            let since = match self.spec.since_format {
                TimeFormat::Unix => since.to_string(),
                TimeFormat::Rfc3339 => Timestamp::from_second(since)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            };
            query.append_pair(param, &since);
        }
        match (&run.next, &self.spec.next) {
            (PageRef::Cursor(id), NextPage::Cursor(param)) => {
                query.append_pair(param, id);
            }
            (PageRef::Page(n), NextPage::Page(param)) => {
                query.append_pair(param, &n.to_string());
            }
            (PageRef::First, NextPage::Page(param)) => {
                query.append_pair(param, "1");
            }
            _ => {}
        }
        let query = query.finish();
        let base_path = self.base_url.path().trim_end_matches('/');
        let path = format!("{base_path}{}", self.spec.path);
        Ok((
            path.trim_start_matches('/')
                .strip_prefix(base_path.trim_start_matches('/'))
                .unwrap_or(&path)
                .trim_start_matches('/')
                .to_owned(),
            (!query.is_empty()).then_some(query),
        ))
    }

    /// A next-page URL as a raw path and query below `base_url`; anything else is refused,
    /// so a list cannot send the service's credential elsewhere.
    fn below_base(&self, next: &str) -> Result<(String, Option<String>), Problem> {
        let url = self
            .base_url
            .join(next)
            .map_err(|_| forbidden(&self.service, next))?;
        let base_path = self.base_url.path().trim_end_matches('/');
        if url.origin() != self.base_url.origin() || !url.path().starts_with(base_path) {
            return Err(forbidden(&self.service, next));
        }
        let rest = url.path()[base_path.len()..]
            .trim_start_matches('/')
            .to_owned();
        Ok((rest, url.query().map(str::to_owned)))
    }

    /// Appends one item; true if it was already in the log.
    async fn store_item(
        &self,
        store: &Arc<dyn Store>,
        head: Option<&Head>,
        id: String,
        time: Option<i64>,
        item: &Value,
    ) -> Result<bool, Problem> {
        let appended = self.append(store, &id, time, item).await?;
        if !appended.duplicate {
            if let Some(head) = head {
                head.bump(appended.offset);
            }
            return Ok(false);
        }
        // A poll re-reading what the webhook brought is the normal case of the hybrid
        // pattern (99 % of what a reconciling poll reads); it is not recorded, which keeps a
        // reconciliation of 100,000 events to reads (the capture report needs only the
        // webhook's late arrivals and duplicates).
        Ok(true)
    }

    async fn append(
        &self,
        store: &Arc<dyn Store>,
        id: &str,
        time: Option<i64>,
        item: &Value,
    ) -> Result<wireline_store::Appended, Problem> {
        let provider_type = self
            .spec
            .item_type
            .as_deref()
            .and_then(|field| at(item, field))
            .and_then(scalar)
            .unwrap_or_else(|| "item".to_owned());
        let when = time
            .and_then(|t| Timestamp::from_second(t).ok())
            .unwrap_or_else(Timestamp::now);
        let mut event = Event::new(
            id,
            format!("wireline://poll/{}", self.service),
            format!("{}.{provider_type}", self.service),
            when,
            item.clone(),
        );
        event.datacontenttype = Some("application/json".to_owned());
        event.subject = self.subjects.subject(&event.ty, Some(item));
        store
            .append(&wireline_webhook::dedupe_id(&self.service, id), &event)
            .await
            .map_err(store_problem)
    }
}

fn forbidden(service: &str, next: &str) -> Problem {
    Problem::new(
        ProblemKind::ForbiddenTarget,
        format!("{service}'s next-page link {next:?} leaves its base_url; the poll stops there"),
    )
}

fn store_problem(error: wireline_store::StoreError) -> Problem {
    Problem::new(
        ProblemKind::StoreUnavailable,
        format!("the poll checkpoint or its items could not be stored ({error})"),
    )
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The items at `path`: an array there, or with a final `.*` every member of what is there
/// (`results.*` for `{"results": {"open": [..], "closed": [..]}}` gives all of them; members
/// that are arrays are flattened).
fn items_at(body: &Value, path: &str) -> Option<Vec<Value>> {
    if let Some(prefix) = path.strip_suffix(".*").or((path == "*").then_some("")) {
        let members: Vec<&Value> = match at(body, prefix)? {
            Value::Object(map) => map.values().collect(),
            Value::Array(items) => items.iter().collect(),
            _ => return None,
        };
        return Some(
            members
                .into_iter()
                .flat_map(|member| match member {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                })
                .collect(),
        );
    }
    match at(body, path)? {
        Value::Array(items) => Some(items.clone()),
        _ => None,
    }
}

/// Unix seconds from a number or an RFC 3339 string.
fn seconds(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text
            .parse::<Timestamp>()
            .ok()
            .map(|t| t.as_second())
            .or_else(|| text.parse().ok()),
        _ => None,
    }
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers.get_all("link").iter().find_map(|value| {
        value.to_str().ok()?.split(',').find_map(|part| {
            let (target, params) = part.split_once(';')?;
            params
                .split(';')
                .any(|p| {
                    let p = p.trim();
                    p == "rel=\"next\"" || p == "rel=next"
                })
                .then(|| {
                    target
                        .trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned()
                })
        })
    })
}
