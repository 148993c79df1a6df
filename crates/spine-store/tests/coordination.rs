//! One suite for both coordination backends: every test runs on a real SQLite file and,
//! when `OPENSPINE_TEST_DATABASE_URL` is set (the test command sets it), on a fresh
//! PostgreSQL database. "Two nodes" are two store handles on one database.

use chrono::{TimeDelta, Utc};
use spine_store::{Coordination, PgCoordination, SqliteCoordination};
use std::sync::Arc;
use std::time::Duration;

struct Backend {
    name: &'static str,
    /// Two handles on one store, as two nodes would have.
    a: Arc<dyn Coordination>,
    b: Arc<dyn Coordination>,
    _dir: tempfile::TempDir,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordination.db");
    let mut all = vec![Backend {
        name: "sqlite",
        a: Arc::new(SqliteCoordination::open(&path).await.unwrap()),
        b: Arc::new(SqliteCoordination::open(&path).await.unwrap()),
        _dir: dir,
    }];
    if let Some(url) = spine_store::testing::fresh_database("c").await {
        // Both nodes start at once: creating the tables must not race.
        let (a, b) = tokio::join!(
            PgCoordination::connect(&url, 4),
            PgCoordination::connect(&url, 4)
        );
        all.push(Backend {
            name: "postgres",
            a: Arc::new(a.unwrap()),
            b: Arc::new(b.unwrap()),
            _dir: tempfile::tempdir().unwrap(),
        });
    }
    all
}

#[tokio::test]
async fn a_key_used_on_one_node_is_refused_on_the_other() {
    for s in backends().await {
        let now = Utc::now();
        let until = now + TimeDelta::days(30);
        assert!(
            s.a.use_once("jti", "app1:abc", until, now).await.unwrap(),
            "{}",
            s.name
        );
        assert!(
            !s.b.use_once("jti", "app1:abc", until, now).await.unwrap(),
            "{}",
            s.name
        );
        assert!(
            !s.a.use_once("jti", "app1:abc", until, now).await.unwrap(),
            "{}",
            s.name
        );
        // Another scope is another namespace.
        assert!(
            s.b.use_once("mesh-token", "app1:abc", until, now)
                .await
                .unwrap(),
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn concurrent_claims_of_one_key_have_exactly_one_winner() {
    for s in backends().await {
        let now = Utc::now();
        let until = now + TimeDelta::minutes(5);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { s.a.clone() } else { s.b.clone() };
            tasks.push(tokio::spawn(async move {
                store.use_once("jti", "race", until, now).await.unwrap()
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1, "{}", s.name);
    }
}

#[tokio::test]
async fn a_claim_that_ended_may_be_made_again_and_a_released_one_at_once() {
    for s in backends().await {
        let now = Utc::now();
        assert!(s
            .a
            .use_once("k", "short", now + TimeDelta::seconds(1), now)
            .await
            .unwrap());
        let later = now + TimeDelta::seconds(5);
        assert!(
            s.b.use_once("k", "short", later + TimeDelta::seconds(60), later)
                .await
                .unwrap(),
            "{}: an ended claim blocks its key",
            s.name
        );
        assert!(s
            .a
            .use_once("k", "retry", now + TimeDelta::hours(1), now)
            .await
            .unwrap());
        s.a.release("k", "retry").await.unwrap();
        assert!(
            s.b.use_once("k", "retry", now + TimeDelta::hours(1), now)
                .await
                .unwrap(),
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn a_record_put_on_one_node_is_read_on_the_other_until_it_ends() {
    for s in backends().await {
        let now = Utc::now();
        s.a.put(
            "access",
            "tok1",
            r#"{"app":"a"}"#,
            now + TimeDelta::seconds(600),
        )
        .await
        .unwrap();
        assert_eq!(
            s.b.get("access", "tok1", now).await.unwrap().as_deref(),
            Some(r#"{"app":"a"}"#),
            "{}",
            s.name
        );
        assert_eq!(
            s.b.get("access", "tok1", now + TimeDelta::seconds(601))
                .await
                .unwrap(),
            None
        );
        assert_eq!(s.b.get("access", "nope", now).await.unwrap(), None);
        // A key longer than any real token is simply unknown, not an error.
        assert_eq!(
            s.b.get("access", &"x".repeat(10_000), now).await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn a_taken_record_is_given_to_one_caller_only() {
    for s in backends().await {
        let now = Utc::now();
        s.a.put("refresh", "r1", "v", now + TimeDelta::hours(12))
            .await
            .unwrap();
        let (x, y) = tokio::join!(
            s.a.take("refresh", "r1", now),
            s.b.take("refresh", "r1", now)
        );
        let got: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
        assert_eq!(got, vec!["v".to_string()], "{}", s.name);
        s.a.put("refresh", "old", "v", now - TimeDelta::seconds(1))
            .await
            .unwrap();
        assert_eq!(
            s.b.take("refresh", "old", now).await.unwrap(),
            None,
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn counts_in_a_window_add_up_across_nodes_and_restart_in_the_next() {
    for s in backends().await {
        let minute = Duration::from_secs(60);
        let start = 1_800_000_000;
        assert_eq!(s.a.count("quota", "app1", start, minute).await.unwrap(), 1);
        assert_eq!(s.b.count("quota", "app1", start, minute).await.unwrap(), 2);
        assert_eq!(
            s.a.count("quota", "app1", start, minute).await.unwrap(),
            3,
            "{}",
            s.name
        );
        assert_eq!(s.b.count("quota", "app2", start, minute).await.unwrap(), 1);
        assert_eq!(
            s.b.count("quota", "app1", start + 60, minute)
                .await
                .unwrap(),
            1,
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn a_lease_is_held_by_one_node_until_it_runs_out() {
    for s in backends().await {
        assert!(s
            .a
            .try_lease("gc", "node-a", Duration::from_secs(60))
            .await
            .unwrap());
        assert!(
            !s.b.try_lease("gc", "node-b", Duration::from_secs(60))
                .await
                .unwrap(),
            "{}",
            s.name
        );
        assert!(
            s.a.try_lease("gc", "node-a", Duration::from_secs(60))
                .await
                .unwrap(),
            "renewal"
        );
        assert!(s
            .a
            .try_lease("short", "node-a", Duration::from_secs(0))
            .await
            .unwrap());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(
            s.b.try_lease("short", "node-b", Duration::from_secs(60))
                .await
                .unwrap(),
            "{}",
            s.name
        );
        s.a.ping().await.unwrap();
    }
}

#[tokio::test]
async fn an_issued_record_survives_reopening_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordination.db");
    let now = Utc::now();
    {
        let s = SqliteCoordination::open(&path).await.unwrap();
        s.put("access", "kept", "v", now + TimeDelta::hours(1))
            .await
            .unwrap();
        assert!(s
            .use_once("jti", "j", now + TimeDelta::hours(1), now)
            .await
            .unwrap());
    }
    let s = SqliteCoordination::open(&path).await.unwrap();
    assert_eq!(
        s.get("access", "kept", now).await.unwrap().as_deref(),
        Some("v")
    );
    assert!(!s
        .use_once("jti", "j", now + TimeDelta::hours(1), now)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_key_with_a_nul_or_too_long_is_refused_alike_on_both_backends() {
    for s in backends().await {
        let now = Utc::now();
        let until = now + TimeDelta::minutes(5);
        assert!(
            s.a.use_once("jti", "a\0b", until, now).await.is_err(),
            "{}",
            s.name
        );
        assert!(
            s.a.use_once("jti", &"k".repeat(600), until, now)
                .await
                .is_err(),
            "{}",
            s.name
        );
        assert_eq!(
            s.a.get("access", "a\0b", now).await.unwrap(),
            None,
            "{}",
            s.name
        );
        assert!(
            s.a.put("access", "k", "v\0", until).await.is_err(),
            "{}",
            s.name
        );
        // The store still works after them.
        assert!(
            s.a.use_once("jti", "fine", until, now).await.unwrap(),
            "{}",
            s.name
        );
    }
}
