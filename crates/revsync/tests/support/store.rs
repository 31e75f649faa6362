//! Fresh stores for tests: a SQLite file in a temporary directory, or a PostgreSQL schema of
//! its own in the database named by `REVSYNC_TEST_POSTGRES_URL` (set by `.ci/run`).

use revsync::store::{OpenOptions, SqlStore};

/// Environment variable naming the PostgreSQL database the tests may use.
pub const POSTGRES_ENV: &str = "REVSYNC_TEST_POSTGRES_URL";

/// A store plus whatever keeps it alive (the temporary directory).
pub struct TestStore {
    pub store: SqlStore,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("revsync.db").display());
    let store = revsync::store::open(&url, &OpenOptions::default())
        .await
        .expect("open sqlite store");
    TestStore {
        store,
        url,
        _dir: Some(dir),
    }
}

/// A fresh schema in the test PostgreSQL, or `None` (with a clear SKIPPED line) when the
/// environment names none.
pub async fn postgres(test: &str) -> Option<TestStore> {
    let Ok(base) = std::env::var(POSTGRES_ENV) else {
        eprintln!("SKIPPED {test} on PostgreSQL: {POSTGRES_ENV} is not set");
        return None;
    };
    let schema = format!("t_{}", uuid_like());
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={base} is set but unreachable: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create schema");
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let store = revsync::store::open(&url, &OpenOptions::default())
        .await
        .expect("open postgres store");
    Some(TestStore {
        store,
        url,
        _dir: None,
    })
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| char::from(b'a' + rng.gen_range(0..26)))
        .collect()
}
