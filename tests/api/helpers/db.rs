//! One PostgreSQL per test process, one database per test.
//!
//! With `DATABASE_URL` set the tests use that server; otherwise they start an owned throwaway cluster
//! (fsync off) under the system temp dir, through the same code the server uses. It stops by itself
//! when the test process exits, since its supervisor watches a pipe from this process.
//!
//! A template database is migrated once per process; each test clones it (`CREATE DATABASE … TEMPLATE`)
//! and drops its clone `WITH (FORCE)` when done. Names carry the process id, so leftovers of crashed
//! runs are recognised and swept at start without touching a concurrent run's databases.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use joyfull_hub::db::embedded::{OwnedPostgres, StartOptions};
use joyfull_hub::db::{quote_ident, run_migrations};

enum Server {
    External { url: String },
    Owned(OwnedPostgres),
}

impl Server {
    fn url(&self, database: &str) -> String {
        match self {
            Self::External { url } => with_database(url, database),
            Self::Owned(owned) => owned.url(database),
        }
    }
}

/// Replaces the database name in a `postgres://…/name?…` URL.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// The temp directory test clusters and data dirs live under (readable by the `postgres` user).
pub fn test_root() -> PathBuf {
    let root = std::env::temp_dir().join("joyfull-hub-tests");
    std::fs::create_dir_all(&root).expect("create the test root");
    root
}

fn process_alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

/// Removes what earlier test processes left under the test root, once they (and their PostgreSQL) are gone.
fn sweep_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(test_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("cluster-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let postmaster = std::fs::read_to_string(entry.path().join("postgres/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        if !process_alive(pid) && !postmaster.is_some_and(process_alive) {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Server::External { url },
        _ => {
            sweep_stale_clusters();
            let dir = test_root().join(format!("cluster-{}", std::process::id()));
            let options = StartOptions {
                durable: false,
                startup_timeout: Duration::from_secs(60),
            };
            Server::Owned(OwnedPostgres::start(&dir, &options).expect("start the test PostgreSQL"))
        }
    })
}

async fn admin_connection() -> AsyncPgConnection {
    AsyncPgConnection::establish(&server().url("postgres"))
        .await
        .expect("connect to the test PostgreSQL")
}

/// Creates (once per process) the migrated template and returns its name.
async fn template() -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let mut conn = admin_connection().await;
            sweep_stale_databases(&mut conn).await;
            let name = format!("jh_{}_template", std::process::id());
            diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&name)
            ))
            .execute(&mut conn)
            .await
            .expect("drop an old template");
            diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name)))
                .execute(&mut conn)
                .await
                .expect("create the template database");
            run_migrations(&server().url(&name))
                .await
                .expect("migrate the template database");
            name
        })
        .await
}

async fn sweep_stale_databases(conn: &mut AsyncPgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let names: Vec<Name> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'jh\\_%'")
            .load(conn)
            .await
            .expect("list test databases");
    for Name { datname } in names {
        let pid = datname
            .split('_')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&datname)
            ))
            .execute(conn)
            .await;
        }
    }
}

/// A database of its own for one test; dropped when this value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let template = template().await;
        let name = format!(
            "jh_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = admin_connection().await;
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quote_ident(&name),
            quote_ident(template)
        );
        let mut attempt = 0;
        // Another clone starting at the same instant can briefly hold the template.
        while let Err(e) = diesel::sql_query(&sql).execute(&mut conn).await {
            attempt += 1;
            assert!(attempt < 20, "cannot clone the template database: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            url: server().url(&name),
            name,
        }
    }

    /// Drops the database now, even while the application is connected to it.
    pub async fn drop_now(&self) {
        let mut conn = admin_connection().await;
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        ))
        .execute(&mut conn)
        .await
        .expect("drop the test database");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = server().url("postgres");
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        // Drop may run inside a test's runtime, so the cleanup gets a thread and a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a cleanup runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = AsyncPgConnection::establish(&admin_url).await {
                    let _ = diesel::sql_query(sql).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/app?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
