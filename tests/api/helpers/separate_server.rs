//! A PostgreSQL server of a test's own, migrated, on its own socket: for tests that stop, restart or
//! cut the server under the hub without touching the other tests' server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use joyfull_hub::db::embedded::{OwnedPostgres, StartOptions};

use super::db::test_root;

pub struct SeparateServer {
    server: Arc<Mutex<OwnedPostgres>>,
    /// The `postgres` database's URL when it started.
    pub url: String,
    dir: PathBuf,
}

impl SeparateServer {
    pub async fn start(name: &str) -> Self {
        let dir = test_root().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let start_dir = dir.clone();
        let server = tokio::task::spawn_blocking(move || {
            let options = StartOptions {
                durable: false,
                ..StartOptions::default()
            };
            OwnedPostgres::start(&start_dir, &options)
        })
        .await
        .unwrap()
        .expect("a separate PostgreSQL");
        let url = server.url("postgres");
        joyfull_hub::db::run_migrations(&url)
            .await
            .expect("migrated");
        Self {
            server: Arc::new(Mutex::new(server)),
            url,
            dir,
        }
    }

    /// Runs `work` on the server's handle, off the runtime (stopping and starting block).
    pub async fn on<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut OwnedPostgres) -> T + Send + 'static,
    ) -> T {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || work(&mut server.lock().unwrap()))
            .await
            .unwrap()
    }

    /// The `postgres` database's URL now (a restart may change it).
    pub async fn current_url(&self) -> String {
        self.on(|s| s.url("postgres")).await
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> PathBuf {
        let dir = self
            .url
            .split("host=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .expect("a socket host")
            .replace("%2F", "/");
        PathBuf::from(dir).join(".s.PGSQL.5432")
    }

    /// A single number from SQL, for assertions on what was stored.
    pub async fn number(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Number {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&self.current_url().await)
            .await
            .expect("connect to the separate server");
        diesel::sql_query(query)
            .get_result::<Number>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .n
    }

    /// Runs a statement, for setting up what a test needs.
    pub async fn execute(&self, statement: &str) {
        let mut conn = AsyncPgConnection::establish(&self.current_url().await)
            .await
            .expect("connect to the separate server");
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    /// Stops the server and removes its files.
    pub async fn remove(self) {
        self.on(|s| s.stop()).await.ok();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
