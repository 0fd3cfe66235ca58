//! The trigger runner and projections against the real SQLite store, with a manual clock.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use wireline_config::model::Config;
use wireline_core::{Event, Offset, TypeGlob};
use wireline_events::projection::{self, Projector};
use wireline_events::{Clock, ManualClock, Triggers};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventQuery, Store};
use wireline_webhook::delivery::Head;

fn t0() -> Timestamp {
    "2026-11-02T00:00:00Z".parse().unwrap()
}

fn config(toml: &str) -> Config {
    toml::from_str(toml).unwrap()
}

struct World {
    store: Arc<dyn Store>,
    sqlite: SqliteStore,
    head: Arc<Head>,
    clock: Arc<ManualClock>,
    config: Config,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new(rules: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("w.db")).unwrap();
        Self {
            store: Arc::new(sqlite.clone()),
            sqlite,
            head: Head::new(Offset::START),
            clock: ManualClock::new(t0()),
            config: config(rules),
            _dir: dir,
        }
    }

    async fn start(&self) -> Triggers {
        Triggers::start(
            &self.config,
            Arc::clone(&self.store),
            Arc::clone(&self.head),
            Clock::Manual(Arc::clone(&self.clock)),
        )
        .await
        .unwrap()
    }

    async fn append(&self, id: &str, ty: &str, subject: &str, time: Timestamp) {
        let mut event = Event::new(id, "test", ty, time, serde_json::json!({}));
        event.subject = Some(subject.to_owned());
        let appended = self
            .store
            .append(&format!("test:{id}"), &event)
            .await
            .unwrap();
        self.head.bump(appended.offset);
    }

    /// Waits (bounded) until the runner has applied the whole log and fired what is due now.
    async fn settle(&self, triggers: &Triggers) {
        let mut progress = triggers.progress();
        let now = self.clock.now();
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let head = self.store.head().await.unwrap();
                let reached = progress
                    .wait_for(|p| p.now >= now)
                    .await
                    .map(|p| p.offset)
                    .unwrap();
                if reached >= head {
                    return;
                }
                progress.changed().await.unwrap();
            }
        })
        .await
        .expect("the runner settles");
    }

    async fn derived(&self, ty: &str) -> Vec<Event> {
        self.store
            .query(&EventQuery {
                types: Some(ty.parse().unwrap()),
                ..EventQuery::after(Offset::START, 100_000)
            })
            .await
            .unwrap()
            .iter()
            .map(|stored| stored.event().unwrap())
            .collect()
    }
}

const NO_LOGIN: &str = "[[triggers]]\nname = \"no-login\"\nemit = \"derived.no_login_7d\"\nabsence = { first = \"app.user.signup\", missing = \"app.user.first_login\", within = \"7d\" }\n";

/// A small deterministic generator, so the simulated week is the same on every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absence_over_a_simulated_week_finds_exactly_the_users_who_never_logged_in() {
    let world = World::new(NO_LOGIN).await;
    // 300 users sign up over a week; some log in within 7 days, some later, some never.
    let mut random = Lcg(7);
    let mut events = Vec::new(); // (time, id, type, user)
    let mut expected = BTreeSet::new();
    for user in 0..300 {
        let signup = t0() + (random.next(7 * 24 * 60) as i64).minutes();
        let name = format!("user-{user}");
        events.push((signup, format!("s{user}"), "app.user.signup", name.clone()));
        match random.next(10) {
            0..=5 => {
                let login = signup + (random.next(7 * 24 * 60 - 1) as i64 + 1).minutes();
                events.push((login, format!("l{user}"), "app.user.first_login", name));
            }
            6..=7 => {
                let login = signup + (7 * 24 * 60 + 1 + random.next(3 * 24 * 60) as i64).minutes();
                events.push((
                    login,
                    format!("l{user}"),
                    "app.user.first_login",
                    name.clone(),
                ));
                expected.insert(name);
            }
            _ => {
                expected.insert(name);
            }
        }
    }
    events.sort();
    let mut triggers = world.start().await;
    let mut next = 0;
    // Hour by hour for 18 days: append what has happened, let the runner catch up. On day 4
    // the process "stops" for two days with timers pending, and starts again.
    for hour in 1..=(18 * 24) {
        world.clock.set(t0() + hour.hours());
        if hour == 4 * 24 {
            triggers.shutdown().await;
            world.clock.set(t0() + (6 * 24).hours());
            triggers = world.start().await;
        }
        while next < events.len() && events[next].0 <= world.clock.now() {
            let (time, id, ty, user) = &events[next];
            world.append(id, ty, user, *time).await;
            next += 1;
        }
        world.settle(&triggers).await;
    }
    triggers.shutdown().await;
    let derived = world.derived("derived.no_login_7d").await;
    let mut seen = BTreeMap::<String, usize>::new();
    for event in &derived {
        *seen.entry(event.subject.clone().unwrap()).or_default() += 1;
        assert_eq!(event.source, "wireline://triggers/no-login");
        let user: usize = event.subject.as_ref().unwrap()[5..].parse().unwrap();
        assert_eq!(
            event.extensions["causationid"],
            serde_json::json!(format!("s{user}")),
            "caused by the signup"
        );
        let signup = events.iter().find(|e| e.1 == format!("s{user}")).unwrap().0;
        assert_eq!(
            event.time,
            signup + (7 * 24).hours(),
            "timed at the deadline"
        );
    }
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "exactly the users with no login within 7 days"
    );
    assert!(
        seen.values().all(|&n| n == 1),
        "each exactly once: {seen:?}"
    );
    world.sqlite.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_and_threshold_fire_once_and_keep_their_state_across_restarts() {
    let world = World::new(
        "[[triggers]]\nname = \"activated\"\nemit = \"derived.activated\"\nsequence = { first = \"app.user.signup\", then = \"app.payment.succeeded\", within = \"1h\" }\n[[triggers]]\nname = \"failing\"\nemit = \"derived.failing\"\nthreshold = { event = \"app.payment.failed\", count = 3, within = \"24h\" }\n",
    )
    .await;
    let triggers = world.start().await;
    world.append("s1", "app.user.signup", "u1", t0()).await;
    world.append("s2", "app.user.signup", "u2", t0()).await;
    world.append("f1", "app.payment.failed", "u1", t0()).await;
    world
        .append("f2", "app.payment.failed", "u1", t0() + 1.hours())
        .await;
    world.settle(&triggers).await;
    triggers.shutdown().await;

    let triggers = world.start().await;
    world
        .append("p1", "app.payment.succeeded", "u1", t0() + 30.minutes())
        .await;
    world
        .append("p2", "app.payment.succeeded", "u2", t0() + 2.hours())
        .await;
    world
        .append("p3", "app.payment.succeeded", "u1", t0() + 40.minutes())
        .await;
    world
        .append("f3", "app.payment.failed", "u1", t0() + 2.hours())
        .await;
    world
        .append("f4", "app.payment.failed", "u1", t0() + 3.hours())
        .await;
    world.settle(&triggers).await;
    triggers.shutdown().await;

    let activated = world.derived("derived.activated").await;
    assert_eq!(
        activated.len(),
        1,
        "u1 once; u2 paid too late: {activated:?}"
    );
    assert_eq!(activated[0].subject.as_deref(), Some("u1"));
    assert_eq!(activated[0].extensions["correlationid"], "s1");
    assert_eq!(activated[0].extensions["causationid"], "p1");
    let failing = world.derived("derived.failing").await;
    assert_eq!(
        failing.len(),
        1,
        "the 3rd failure, counted across the restart"
    );
    assert_eq!(failing[0].extensions["causationid"], "f3");
    let causes: Vec<&str> = failing[0].data.as_ref().unwrap()["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(causes, ["f1", "f2", "f3"]);
    world.sqlite.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_the_backlog_cancels_an_overdue_timer_after_a_restart() {
    let world = World::new(NO_LOGIN).await;
    let triggers = world.start().await;
    world.append("s1", "app.user.signup", "u1", t0()).await;
    world.settle(&triggers).await;
    triggers.shutdown().await;
    // While stopped: the login arrives (in time), and the clock passes the deadline.
    world
        .append("l1", "app.user.first_login", "u1", t0() + (6 * 24).hours())
        .await;
    world.clock.set(t0() + (8 * 24).hours());
    let triggers = world.start().await;
    world.settle(&triggers).await;
    triggers.shutdown().await;
    assert!(world.derived("derived.*").await.is_empty());
    world.sqlite.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_projection_equals_the_incremental_one() {
    let world = World::new("").await;
    let types: Vec<TypeGlob> = vec!["app.*".parse().unwrap()];
    let mut projector = Projector::new("customers", types, Arc::clone(&world.store));
    let mut random = Lcg(11);
    let kinds = [
        "app.order.created",
        "app.order.paid",
        "app.ticket.opened",
        "other.noise",
    ];
    let mut id = 0;
    // Bursts of events with the projector catching up between them: incremental upkeep.
    for burst in 0..12 {
        for _ in 0..(50 + random.next(400)) {
            id += 1;
            let subject = format!("cus_{}", random.next(60));
            let ty = kinds[random.next(4) as usize];
            let time = t0() + (burst * 100 + random.next(90) as i64).minutes();
            world.append(&format!("e{id}"), ty, &subject, time).await;
        }
        while projector.step().await.unwrap() {}
    }
    let incremental = projection::list(world.store.as_ref(), "customers", usize::MAX)
        .await
        .unwrap();
    assert!(incremental.len() > 50);
    let one = &incremental[0];
    assert!(
        one.types.keys().all(|t| t.starts_with("app.")),
        "only its types"
    );
    assert_eq!(one.events, one.types.values().map(|t| t.count).sum::<u64>());

    projection::request_rebuild(world.store.as_ref(), "customers")
        .await
        .unwrap();
    assert!(projector.step().await.unwrap(), "the request is taken");
    assert!(
        projection::rebuilding(world.store.as_ref(), "customers")
            .await
            .unwrap()
    );
    assert!(
        projector.step().await.unwrap(),
        "a first page of the rebuild"
    );
    assert_eq!(
        projection::list(world.store.as_ref(), "customers", usize::MAX)
            .await
            .unwrap(),
        incremental,
        "readers see the old generation while the new one is built"
    );
    while projector.step().await.unwrap() {}
    assert!(
        !projection::rebuilding(world.store.as_ref(), "customers")
            .await
            .unwrap()
    );
    let pointer = projection::pointer(world.store.as_ref(), "customers")
        .await
        .unwrap();
    assert_eq!(pointer.current, 2);
    let rebuilt = projection::list(world.store.as_ref(), "customers", usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        rebuilt, incremental,
        "rebuilt from offset 0 == kept up incrementally"
    );
    assert!(
        world
            .store
            .list("projection:customers:1", Timestamp::UNIX_EPOCH, 10)
            .await
            .unwrap()
            .is_empty(),
        "the old generation is dropped"
    );
    assert_eq!(
        projection::position(world.store.as_ref(), "customers")
            .await
            .unwrap(),
        world.store.head().await.unwrap()
    );
    world.sqlite.close().await.unwrap();
}
