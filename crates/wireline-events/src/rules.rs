//! Trigger rules, evaluated in memory: sequence, absence and threshold per subject.
//!
//! [`Rules`] is pure: events go in ([`Rules::apply`]), fired rules come out, the clock is an
//! argument ([`Rules::due`]), and every change to a subject's state is remembered until
//! [`Rules::changes`] hands it over for storing. The runner (`runner.rs`) adds the log, the
//! store and the clock. Keeping this free of IO is what lets the benchmark and the tests drive
//! a week of events in milliseconds.
//!
//! Memory: a pending absence timer is one map entry (subject, time, offset, id of the event
//! that started it) and one heap entry sharing the subject; about 150 bytes for short ids.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use wireline_config::model::Trigger;
use wireline_core::{Offset, TypeGlob};
use wireline_store::Change;

/// An event as rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Its offset in the log.
    pub offset: Offset,
    /// Its CloudEvents id.
    pub id: &'a str,
    /// Its type.
    pub ty: &'a str,
    /// Its subject.
    pub subject: &'a str,
    /// Its `time`.
    pub time: Timestamp,
}

/// One event that took part in a rule firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The event's time, in microseconds since the epoch.
    #[serde(rename = "t")]
    pub time_us: i64,
    /// Its offset.
    #[serde(rename = "o")]
    pub offset: u64,
    /// Its id.
    #[serde(rename = "i")]
    pub id: Box<str>,
}

impl Mark {
    fn of(event: &Seen<'_>) -> Self {
        Self {
            time_us: event.time.as_microsecond(),
            offset: event.offset.0,
            id: event.id.into(),
        }
    }

    /// The event's time.
    pub fn time(&self) -> Timestamp {
        Timestamp::from_microsecond(self.time_us).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// A rule that fired: what the derived event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The rule's index in the config's `[[triggers]]`.
    pub rule: usize,
    /// The subject.
    pub subject: Arc<str>,
    /// When the pattern completed (the time of the derived event).
    pub time: Timestamp,
    /// The event that completed the pattern (or, for absence, the one whose wait ran out);
    /// its offset names the derived event, so a repeat after a crash is a duplicate.
    pub causation: Mark,
    /// The event that started the pattern.
    pub correlation: Mark,
    /// Every event that took part, oldest first.
    pub causes: Vec<Mark>,
}

/// One rule's matching state.
enum Kind {
    Sequence {
        first: TypeGlob,
        then: TypeGlob,
        within: i64,
        starts: HashMap<Arc<str>, Mark>,
        swept: usize,
    },
    Absence {
        first: TypeGlob,
        missing: TypeGlob,
        within: i64,
        pending: HashMap<Arc<str>, Mark>,
        /// Deadlines, earliest first; an entry whose map entry changed is skipped.
        due: BinaryHeap<Reverse<(i64, u64, Arc<str>)>>,
    },
    Threshold {
        event: TypeGlob,
        count: usize,
        within: i64,
        windows: HashMap<Arc<str>, VecDeque<Mark>>,
        swept: usize,
    },
}

struct Rule {
    name: String,
    kind: Kind,
}

/// Every configured rule, with its state.
pub struct Rules {
    rules: Vec<Rule>,
    /// Per event type, the rules that may care (filled as types are seen).
    interested: HashMap<Box<str>, Vec<usize>>,
    /// (rule, subject) whose state changed since the last [`Rules::changes`].
    dirty: HashSet<(usize, Arc<str>)>,
}

fn micros(duration: wireline_core::Duration) -> i64 {
    i64::try_from(duration.get().as_micros()).unwrap_or(i64::MAX)
}

/// The state store namespace of a rule's per-subject state.
pub fn namespace(rule: &str) -> String {
    format!("trigger:{rule}")
}

impl Rules {
    /// The rules of a valid config (a rule without a kind is skipped; `check` refuses it).
    pub fn new(triggers: &[Trigger]) -> Self {
        let rules = triggers
            .iter()
            .filter_map(|trigger| {
                let kind = if let Some(rule) = &trigger.sequence {
                    Kind::Sequence {
                        first: rule.first.clone(),
                        then: rule.then.clone(),
                        within: micros(rule.within),
                        starts: HashMap::new(),
                        swept: 0,
                    }
                } else if let Some(rule) = &trigger.absence {
                    Kind::Absence {
                        first: rule.first.clone(),
                        missing: rule.missing.clone(),
                        within: micros(rule.within),
                        pending: HashMap::new(),
                        due: BinaryHeap::new(),
                    }
                } else {
                    let rule = trigger.threshold.as_ref()?;
                    Kind::Threshold {
                        event: rule.event.clone(),
                        count: usize::try_from(rule.count).unwrap_or(usize::MAX).max(1),
                        within: micros(rule.within),
                        windows: HashMap::new(),
                        swept: 0,
                    }
                };
                Some(Rule {
                    name: trigger.name.clone(),
                    kind,
                })
            })
            .collect();
        Self {
            rules,
            interested: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name of rule `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.rules[index].name
    }

    /// How many absence timers are pending, over all rules.
    pub fn pending_timers(&self) -> usize {
        self.rules
            .iter()
            .map(|rule| match &rule.kind {
                Kind::Absence { pending, .. } => pending.len(),
                _ => 0,
            })
            .sum()
    }

    /// Restores a subject's stored state for the rule named `rule` (from [`Rules::changes`]
    /// of an earlier run). Unknown rules and unreadable values are ignored.
    pub fn load(&mut self, rule: &str, subject: &str, value: &[u8]) {
        let Some(rule) = self.rules.iter_mut().find(|r| r.name == rule) else {
            return;
        };
        let subject: Arc<str> = subject.into();
        match &mut rule.kind {
            Kind::Sequence { starts, .. } => {
                if let Ok(mark) = serde_json::from_slice(value) {
                    starts.insert(subject, mark);
                }
            }
            Kind::Absence {
                within,
                pending,
                due,
                ..
            } => {
                if let Ok(mark) = serde_json::from_slice::<Mark>(value) {
                    due.push(Reverse((
                        mark.time_us + *within,
                        mark.offset,
                        subject.clone(),
                    )));
                    pending.insert(subject, mark);
                }
            }
            Kind::Threshold { windows, .. } => {
                if let Ok(window) = serde_json::from_slice(value) {
                    windows.insert(subject, window);
                }
            }
        }
    }

    fn interested(&mut self, ty: &str) -> &[usize] {
        if !self.interested.contains_key(ty) {
            let indexes = self
                .rules
                .iter()
                .enumerate()
                .filter(|(_, rule)| match &rule.kind {
                    Kind::Sequence { first, then, .. } => first.matches(ty) || then.matches(ty),
                    Kind::Absence { first, missing, .. } => {
                        first.matches(ty) || missing.matches(ty)
                    }
                    Kind::Threshold { event, .. } => event.matches(ty),
                })
                .map(|(index, _)| index)
                .collect();
            self.interested.insert(ty.into(), indexes);
        }
        self.interested.get(ty).map_or(&[], Vec::as_slice)
    }

    /// Feeds one event (in log order) to every rule; appends what fired to `fired`.
    pub fn apply(&mut self, event: &Seen<'_>, fired: &mut Vec<Fired>) {
        let indexes = self.interested(event.ty).to_vec();
        if indexes.is_empty() {
            return;
        }
        let subject: Arc<str> = event.subject.into();
        let time = event.time.as_microsecond();
        for index in indexes {
            let changed = match &mut self.rules[index].kind {
                Kind::Sequence {
                    first,
                    then,
                    within,
                    starts,
                    ..
                } => {
                    let mut changed = false;
                    let mut completed = false;
                    // `then` first: an event matching both completes a waiting sequence
                    // rather than restarting it.
                    if then.matches(event.ty)
                        && let Some(start) = starts.get(&subject)
                        && start.offset < event.offset.0
                        && time >= start.time_us
                        && time - start.time_us <= *within
                    {
                        let start = starts.remove(&subject).unwrap_or_else(|| Mark::of(event));
                        let done = Mark::of(event);
                        fired.push(Fired {
                            rule: index,
                            subject: subject.clone(),
                            time: event.time,
                            causation: done.clone(),
                            correlation: start.clone(),
                            causes: vec![start, done],
                        });
                        changed = true;
                        completed = true;
                    }
                    if !completed && first.matches(event.ty) {
                        // The latest start counts: the window runs from the newest `first`.
                        starts.insert(subject.clone(), Mark::of(event));
                        changed = true;
                    }
                    changed
                }
                Kind::Absence {
                    first,
                    missing,
                    within,
                    pending,
                    due,
                } => {
                    let mut changed = false;
                    // `missing` first: with first == missing (inactivity) a new event both
                    // ends the old wait and starts a new one.
                    if missing.matches(event.ty)
                        && let Entry::Occupied(entry) = pending.entry(subject.clone())
                        && entry.get().offset < event.offset.0
                        && time <= entry.get().time_us + *within
                    {
                        entry.remove();
                        changed = true;
                    }
                    if first.matches(event.ty)
                        && let Entry::Vacant(entry) = pending.entry(subject.clone())
                    {
                        // The first `first` counts: a second signup does not push the
                        // deadline back.
                        let mark = Mark::of(event);
                        due.push(Reverse((time + *within, mark.offset, subject.clone())));
                        entry.insert(mark);
                        changed = true;
                    }
                    changed
                }
                Kind::Threshold {
                    count,
                    within,
                    windows,
                    ..
                } => {
                    let window = windows.entry(subject.clone()).or_default();
                    while window.front().is_some_and(|m| m.time_us < time - *within) {
                        window.pop_front();
                    }
                    window.push_back(Mark::of(event));
                    if window.len() >= *count {
                        let causes: Vec<Mark> = window.drain(..).collect();
                        windows.remove(&subject);
                        fired.push(Fired {
                            rule: index,
                            subject: subject.clone(),
                            time: event.time,
                            causation: causes.last().cloned().unwrap_or_else(|| Mark::of(event)),
                            correlation: causes.first().cloned().unwrap_or_else(|| Mark::of(event)),
                            causes,
                        });
                    }
                    true
                }
            };
            if changed {
                self.dirty.insert((index, subject.clone()));
            }
        }
    }

    /// The earliest pending absence deadline, if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.rules
            .iter()
            .filter_map(|rule| match &rule.kind {
                Kind::Absence { due, .. } => due.peek().map(|Reverse((at, _, _))| *at),
                _ => None,
            })
            .min()
            .and_then(|at| Timestamp::from_microsecond(at).ok())
    }

    /// Fires every absence whose deadline is at or before `now` (appending to `fired`), and
    /// forgets sequence starts and threshold windows too old to matter.
    pub fn due(&mut self, now: Timestamp, fired: &mut Vec<Fired>) {
        let now_us = now.as_microsecond();
        for (index, rule) in self.rules.iter_mut().enumerate() {
            match &mut rule.kind {
                Kind::Absence {
                    within,
                    pending,
                    due,
                    ..
                } => {
                    while let Some(Reverse((at, offset, _))) = due.peek() {
                        if *at > now_us {
                            break;
                        }
                        let (at, offset) = (*at, *offset);
                        let Some(Reverse((_, _, subject))) = due.pop() else {
                            break;
                        };
                        // Skip heap entries whose wait was cancelled or replaced.
                        if !pending.get(&subject).is_some_and(|mark| {
                            mark.offset == offset && mark.time_us + *within == at
                        }) {
                            continue;
                        }
                        let Some(start) = pending.remove(&subject) else {
                            continue;
                        };
                        self.dirty.insert((index, subject.clone()));
                        fired.push(Fired {
                            rule: index,
                            subject,
                            time: Timestamp::from_microsecond(at).unwrap_or(now),
                            causation: start.clone(),
                            correlation: start.clone(),
                            causes: vec![start],
                        });
                    }
                }
                Kind::Sequence {
                    within,
                    starts,
                    swept,
                    ..
                } => {
                    // Amortised: sweep when the map has doubled since the last sweep. The
                    // stored copies expire by themselves.
                    if starts.len() > 2 * *swept + 1024 {
                        starts.retain(|_, mark| mark.time_us + *within >= now_us);
                        *swept = starts.len();
                    }
                }
                Kind::Threshold {
                    within,
                    windows,
                    swept,
                    ..
                } => {
                    if windows.len() > 2 * *swept + 1024 {
                        windows.retain(|_, window| {
                            window.back().is_some_and(|m| m.time_us + *within >= now_us)
                        });
                        *swept = windows.len();
                    }
                }
            }
        }
    }

    /// The state changes since the last call, as store changes (namespace
    /// [`namespace`]`(rule)`, key the subject). Sequence starts and threshold windows expire
    /// in the store when they can no longer match.
    pub fn changes(&mut self) -> Vec<Change> {
        let mut changes = Vec::with_capacity(self.dirty.len());
        for (index, subject) in self.dirty.drain() {
            let rule = &self.rules[index];
            let namespace = namespace(&rule.name);
            let key = subject.to_string();
            let (value, expires) = match &rule.kind {
                Kind::Sequence { starts, within, .. } => match starts.get(&subject) {
                    Some(mark) => (
                        serde_json::to_vec(mark).ok(),
                        Timestamp::from_microsecond(mark.time_us + *within).ok(),
                    ),
                    None => (None, None),
                },
                Kind::Absence { pending, .. } => (
                    pending
                        .get(&subject)
                        .and_then(|m| serde_json::to_vec(m).ok()),
                    None,
                ),
                Kind::Threshold {
                    windows, within, ..
                } => match windows.get(&subject) {
                    Some(window) if !window.is_empty() => (
                        serde_json::to_vec(window).ok(),
                        window
                            .back()
                            .and_then(|m| Timestamp::from_microsecond(m.time_us + *within).ok()),
                    ),
                    _ => (None, None),
                },
            };
            changes.push(match value {
                Some(value) => Change::Put {
                    namespace,
                    key,
                    value,
                    expires,
                },
                None => Change::Delete { namespace, key },
            });
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rules(toml: &str) -> Rules {
        #[derive(serde::Deserialize)]
        struct File {
            triggers: Vec<Trigger>,
        }
        let file: File = toml::from_str(toml).unwrap();
        Rules::new(&file.triggers)
    }

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + hours * 3600).unwrap()
    }

    fn feed(rules: &mut Rules, offset: u64, ty: &str, subject: &str, hours: i64) -> Vec<Fired> {
        let mut fired = Vec::new();
        let id = format!("e{offset}");
        rules.apply(
            &Seen {
                offset: Offset(offset),
                id: &id,
                ty,
                subject,
                time: at(hours),
            },
            &mut fired,
        );
        fired
    }

    #[test]
    fn sequence_fires_once_per_start_within_the_window() {
        let mut r = rules(
            "[[triggers]]\nname = \"s\"\nemit = \"x\"\nsequence = { first = \"signup\", then = \"paid\", within = \"1h\" }\n",
        );
        assert!(feed(&mut r, 1, "signup", "u1", 0).is_empty());
        assert!(feed(&mut r, 2, "paid", "u2", 0).is_empty(), "other subject");
        let fired = feed(&mut r, 3, "paid", "u1", 1);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].correlation.offset, 1);
        assert_eq!(fired[0].causation.offset, 3);
        assert!(
            feed(&mut r, 4, "paid", "u1", 1).is_empty(),
            "once per start"
        );
        feed(&mut r, 5, "signup", "u3", 0);
        assert!(feed(&mut r, 6, "paid", "u3", 2).is_empty(), "too late");
    }

    #[test]
    fn absence_fires_when_the_wait_runs_out_unless_cancelled() {
        let mut r = rules(
            "[[triggers]]\nname = \"a\"\nemit = \"x\"\nabsence = { first = \"signup\", missing = \"login\", within = \"7d\" }\n",
        );
        feed(&mut r, 1, "signup", "u1", 0);
        feed(&mut r, 2, "signup", "u2", 1);
        feed(&mut r, 3, "login", "u2", 100);
        feed(&mut r, 4, "signup", "u1", 5);
        assert_eq!(r.pending_timers(), 1);
        assert_eq!(r.next_deadline(), Some(at(168)));
        let mut fired = Vec::new();
        r.due(at(167), &mut fired);
        assert!(fired.is_empty());
        r.due(at(168), &mut fired);
        assert_eq!(fired.len(), 1);
        assert_eq!(&*fired[0].subject, "u1");
        assert_eq!(
            fired[0].time,
            at(168),
            "the deadline, from the first signup"
        );
        r.due(at(1000), &mut fired);
        assert_eq!(fired.len(), 1, "exactly once");
        assert_eq!(r.pending_timers(), 0);
    }

    #[test]
    fn threshold_counts_in_a_sliding_window_and_starts_afresh() {
        let mut r = rules(
            "[[triggers]]\nname = \"t\"\nemit = \"x\"\nthreshold = { event = \"failed\", count = 3, within = \"24h\" }\n",
        );
        feed(&mut r, 1, "failed", "c", 0);
        feed(&mut r, 2, "failed", "c", 20);
        assert!(
            feed(&mut r, 3, "failed", "c", 30).is_empty(),
            "the first fell out"
        );
        let fired = feed(&mut r, 4, "failed", "c", 40);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            fired[0].causes.iter().map(|m| m.offset).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert!(
            feed(&mut r, 5, "failed", "c", 41).is_empty(),
            "counted afresh"
        );
    }

    #[test]
    fn stored_state_restores_pending_timers() {
        let toml = "[[triggers]]\nname = \"a\"\nemit = \"x\"\nabsence = { first = \"signup\", missing = \"login\", within = \"1h\" }\n";
        let mut before = rules(toml);
        feed(&mut before, 1, "signup", "u1", 0);
        let changes = before.changes();
        let mut after = rules(toml);
        for change in changes {
            if let Change::Put { key, value, .. } = change {
                after.load("a", &key, &value);
            }
        }
        let mut fired = Vec::new();
        after.due(at(1), &mut fired);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].causation.id.as_ref(), "e1");
    }
}
