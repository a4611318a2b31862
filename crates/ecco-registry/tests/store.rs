//! One storage suite, run against SQLite and against a real PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TempDatabase, registration};
use ecco_registry::store::{Backend, Metric, Store, Upsert};
use ecco_registry::wire::FeedbackEntry;

async fn suite(store: &Store) {
    let doc = registration("a", &["llm/chat +summarize"]).capabilities;
    let addrs = vec!["/ip4/127.0.0.1/tcp/1".to_owned()];

    assert_eq!(
        store
            .upsert_agent("peer-a", "a", &doc, &addrs, 1_000)
            .await
            .unwrap(),
        Upsert::Created
    );
    assert_eq!(
        store
            .upsert_agent("peer-a", "a2", &doc, &addrs, 2_000)
            .await
            .unwrap(),
        Upsert::Updated
    );
    assert_eq!(
        store
            .upsert_agent("peer-b", "b", &doc, &[], 2_500)
            .await
            .unwrap(),
        Upsert::Created
    );
    let a = store
        .agent("peer-a")
        .await
        .unwrap()
        .expect("a is registered");
    assert_eq!(
        (a.name.as_str(), a.registered_at, a.updated_at),
        ("a2", 1_000, 2_000)
    );
    assert_eq!(a.document, doc);
    assert_eq!(a.addresses, addrs);

    let beat = store.heartbeat("peer-a", None, 3_000).await.unwrap();
    let beat = beat.expect("a is registered");
    assert_eq!((beat.last_seen, beat.heartbeats), (3_000, 1));
    assert_eq!(beat.addresses, addrs, "no addresses keeps the stored ones");
    let beat = store
        .heartbeat("peer-a", Some(&["/ip4/10.0.0.1/tcp/2".to_owned()]), 4_000)
        .await
        .unwrap()
        .expect("a is registered");
    assert_eq!(beat.addresses, ["/ip4/10.0.0.1/tcp/2"]);
    assert!(
        store
            .heartbeat("nobody", None, 4_000)
            .await
            .unwrap()
            .is_none()
    );
    let a = store.agent("peer-a").await.unwrap().unwrap();
    assert_eq!((a.last_seen, a.heartbeats), (4_000, 2));
    assert_eq!(a.addresses, ["/ip4/10.0.0.1/tcp/2"]);

    let names: Vec<_> = store
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.peer_id)
        .collect();
    assert_eq!(names, ["peer-a", "peer-b"]);

    let feedback = |rater: &str, interaction: &str, rating, at| FeedbackEntry {
        rater: rater.into(),
        agent: "peer-a".into(),
        interaction: interaction.into(),
        capability: "llm/chat".into(),
        success: true,
        latency_ms: 42,
        rating,
        at_ms: at,
    };
    assert!(
        store
            .insert_feedback(&feedback("peer-b", "i1", Some(5), 5_000))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_feedback(&feedback("peer-b", "i1", Some(1), 5_001))
            .await
            .unwrap(),
        "one per rater and interaction"
    );
    assert!(
        store
            .insert_feedback(&feedback("peer-c", "i1", None, 6_000))
            .await
            .unwrap(),
        "another rater may report the same id"
    );
    let reports = store.reports().await.unwrap();
    assert_eq!(reports.len(), 2);
    let (entries, total) = store.feedback_about("peer-a", 1, 0).await.unwrap();
    assert_eq!((entries.len(), total), (1, 2));
    assert_eq!(entries[0].rater, "peer-c", "newest first");
    assert_eq!(entries[0].rating, None);

    let registrations = store.series(Metric::Registrations, 0, 1_000).await.unwrap();
    assert_eq!(
        registrations
            .iter()
            .map(|p| (p.t_ms, p.value))
            .collect::<Vec<_>>(),
        [(1_000, 1), (2_000, 1)]
    );
    let ratings = store.series(Metric::Ratings, 0, 10_000).await.unwrap();
    assert_eq!(ratings.iter().map(|p| p.value).sum::<u64>(), 1);
    let requests = store.series(Metric::Requests, 0, 10_000).await.unwrap();
    assert_eq!(requests.iter().map(|p| p.value).sum::<u64>(), 2);
    let active = store.active_series(0, 60_000).await.unwrap();
    assert_eq!(
        active.iter().map(|p| (p.t_ms, p.value)).collect::<Vec<_>>(),
        [(0, 2)]
    );
    // Heartbeats in a minute already recorded skip the activity insert; the
    // first of a new minute must not.
    for at in [61_000, 62_000, 125_000] {
        assert!(store.heartbeat("peer-a", None, at).await.unwrap().is_some());
    }
    let active = store.active_series(0, 60_000).await.unwrap();
    assert_eq!(
        active.iter().map(|p| (p.t_ms, p.value)).collect::<Vec<_>>(),
        [(0, 2), (60_000, 1), (120_000, 1)]
    );

    assert!(store.deregister("peer-b", 7_000).await.unwrap());
    assert!(!store.deregister("peer-b", 7_000).await.unwrap());
    assert!(store.agent("peer-b").await.unwrap().is_none());
    // Coming back starts a new registration period.
    assert_eq!(
        store
            .upsert_agent("peer-b", "b", &doc, &[], 8_000)
            .await
            .unwrap(),
        Upsert::Created
    );
    assert_eq!(
        store.agent("peer-b").await.unwrap().unwrap().registered_at,
        8_000
    );

    // Retention: analytics rows before the cut go, the rest and the
    // feedback stay.
    assert!(store.prune(60_000).await.unwrap() > 0);
    assert!(
        store
            .series(Metric::Registrations, 0, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    let active = store.active_series(0, 60_000).await.unwrap();
    assert_eq!(
        active.iter().map(|p| (p.t_ms, p.value)).collect::<Vec<_>>(),
        [(60_000, 1), (120_000, 1)]
    );
    assert_eq!(store.reports().await.unwrap().len(), 2);
    assert_eq!(store.prune(60_000).await.unwrap(), 0);

    // An agent's own activity: minutes heard from, per bucket.
    assert!(
        store
            .heartbeat("peer-a", None, 180_000)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .heartbeat("peer-a", None, 200_000)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .heartbeat("peer-a", None, 400_000)
            .await
            .unwrap()
            .is_some()
    );
    let five_minutes = store.activity_of("peer-a", 0, 5).await.unwrap();
    assert_eq!(
        five_minutes
            .iter()
            .map(|p| (p.t_ms, p.value))
            .collect::<Vec<_>>(),
        [(0, 3), (300_000, 1)],
        "minutes 1, 2 and 3 (minute 0 was pruned), then minute 6"
    );
    let recent = store.activity_of("peer-a", 4, 1).await.unwrap();
    assert_eq!(
        recent.iter().map(|p| (p.t_ms, p.value)).collect::<Vec<_>>(),
        [(360_000, 1)]
    );
    assert!(store.activity_of("nobody", 0, 5).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_passes_the_storage_suite_and_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("registry.db").display());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    suite(&store).await;
    store.close().await;
    // Reopening applies no migration twice and finds everything.
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.agents().await.unwrap().len(), 2);
    assert_eq!(store.reports().await.unwrap().len(), 2);
}

#[tokio::test]
async fn postgres_passes_the_storage_suite() {
    let Some(database) = TempDatabase::create("store").await else {
        return;
    };
    let url = database.url.clone();
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    suite(&store).await;
    store.close().await;
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.agents().await.unwrap().len(), 2);
    store.close().await;
}

#[tokio::test]
async fn an_unsupported_url_is_a_clear_error() {
    let e = Store::connect("mysql://x").await.unwrap_err();
    assert!(e.to_string().contains("sqlite:PATH or postgres://"), "{e}");
}

/// 64 registrations of 16 agents at once, then 64 more after every agent
/// deregistered: each must succeed, and exactly one per agent and period
/// counts as a new registration. (On PostgreSQL, deciding by a read first
/// counted racing first registrations twice; on SQLite a read-then-write
/// transaction must take the write lock up front, or the losers fail with
/// `SQLITE_BUSY` at once.)
async fn race(store: &Store) {
    let document = registration("x", &["llm/chat"]).capabilities;
    for (round, base) in [(0, 0_i64), (1, 1_000)] {
        let writes = (0..64).map(|i| {
            let store = store.clone();
            let document = document.clone();
            tokio::spawn(async move {
                let peer = format!("peer-{}", i % 16);
                store
                    .upsert_agent(&peer, "x", &document, &[], base + i64::from(i))
                    .await
            })
        });
        let mut created = 0;
        for write in futures::future::join_all(writes).await {
            if write.unwrap().expect("every registration succeeds") == Upsert::Created {
                created += 1;
            }
        }
        assert_eq!(created, 16, "round {round}: one new registration per agent");
        assert_eq!(store.agents().await.unwrap().len(), 16);
        for i in 0..16 {
            assert!(
                store
                    .deregister(&format!("peer-{i}"), base + 500)
                    .await
                    .unwrap()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_on_sqlite_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("race.db").display());
    let store = Store::connect(&url).await.unwrap();
    race(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_on_postgres_count_once() {
    let Some(database) = TempDatabase::create("race").await else {
        return;
    };
    let store = Store::connect(&database.url).await.unwrap();
    race(&store).await;
    store.close().await;
}
