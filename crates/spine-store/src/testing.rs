//! For the test suites of every crate with a PostgreSQL backend (feature `testing`).

/// A fresh, empty database on the test server (`OPENSPINE_TEST_DATABASE_URL`), named
/// `<prefix>_<random>`, and its URL; `None` when no server is given. With
/// `OPENSPINE_REQUIRE_SHARED_BACKEND=1` (the test command sets it) a missing server is a
/// failure, not a skip: a suite must not pass by running only on SQLite.
pub async fn fresh_database(prefix: &str) -> Option<String> {
    use sqlx::Connection;
    let Ok(server) = std::env::var("OPENSPINE_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("OPENSPINE_REQUIRE_SHARED_BACKEND").as_deref() != Ok("1"),
            "OPENSPINE_REQUIRE_SHARED_BACKEND=1 but OPENSPINE_TEST_DATABASE_URL is not set"
        );
        return None;
    };
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("the test PostgreSQL server answers");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("a database can be created");
    let _ = admin.close().await;
    let (base, _) = server
        .rsplit_once('/')
        .expect("OPENSPINE_TEST_DATABASE_URL has a path");
    Some(format!("{base}/{name}"))
}
