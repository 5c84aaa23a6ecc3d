//! The real binary with its owned PostgreSQL: first start, reuse of the data, a refused second
//! instance, graceful SIGTERM, and recovery after the hub is killed outright.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::{Value, json};

use crate::helpers::db::test_root;

struct Hub {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Hub {
    /// A failing test must not leave a hub (and its PostgreSQL) running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_hub(data_dir: &Path, log_name: &str) -> Hub {
    let port = free_port();
    let log = data_dir.with_extension(log_name);
    let child = Command::new(env!("CARGO_BIN_EXE_joyfull-hub"))
        .env_remove("DATABASE_URL")
        .env("HUB_DATA_DIR", data_dir)
        .env("HUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("HUB_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Hub { child, port, log }
}

async fn wait_ready(hub: &mut Hub) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let url = format!("http://127.0.0.1:{}/ready", hub.port);
        if let Ok(response) = client.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        if let Some(status) = hub.child.try_wait().unwrap() {
            panic!(
                "the hub exited during start-up: {status}; log: {}",
                std::fs::read_to_string(&hub.log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the hub did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(hub: &Hub, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(hub.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(hub: &mut Hub, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = hub.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the hub did not exit in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line mentions the cluster's data directory.
fn postgres_processes(pgdata: &Path) -> Vec<u32> {
    let needle = pgdata.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains("postgres") && cmdline.contains(&needle)).then_some(pid)
        })
        .collect()
}

fn wait_no_postgres(pgdata: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !postgres_processes(pgdata).is_empty() {
        assert!(
            Instant::now() < deadline,
            "postgres processes left behind: {:?}",
            postgres_processes(pgdata)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn socket_url(data_dir: &Path) -> String {
    format!(
        "postgresql:///joyfull_hub?user=postgres&host={}&port=5432",
        data_dir.join("postgres").display()
    )
}

async fn graphql(hub: &Hub, request_id: &str) -> Value {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/graphql", hub.port))
        .header("x-request-id", request_id)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_owns_its_postgres_keeps_data_and_leaves_nothing_behind() {
    let data_dir = test_root().join(format!("lifecycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let pgdata = data_dir.join("postgres");

    // First start: initdb, migrate, serve.
    let mut hub = start_hub(&data_dir, "log1");
    wait_ready(&mut hub).await;
    assert_eq!(
        graphql(&hub, "lifecycle-check-1").await["data"]["__typename"],
        "Query"
    );
    let mut conn = AsyncPgConnection::establish(&socket_url(&data_dir))
        .await
        .unwrap();
    // The server connects as an application role that owns the schema and is not a superuser.
    #[derive(diesel::QueryableByName, Debug)]
    struct Roles {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        superuser: bool,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        foreign_owned: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        app_sessions: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        superuser_sessions: i64,
    }
    let roles: Roles = diesel::sql_query(
        "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = 'joyfull_hub') AS superuser, \
           (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> 'joyfull_hub') AS foreign_owned, \
           (SELECT count(*) FROM pg_stat_activity WHERE datname = 'joyfull_hub' AND usename = 'joyfull_hub') AS app_sessions, \
           (SELECT count(*) FROM pg_stat_activity WHERE datname = 'joyfull_hub' AND usename = 'postgres' \
              AND pid <> pg_backend_pid()) AS superuser_sessions",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(!roles.superuser, "{roles:?}");
    assert_eq!(roles.foreign_owned, 0, "{roles:?}");
    assert!(roles.app_sessions > 0, "{roles:?}");
    assert_eq!(roles.superuser_sessions, 0, "{roles:?}");
    conn.batch_execute(
        "CREATE TABLE lifecycle_marker (value int); INSERT INTO lifecycle_marker VALUES (42)",
    )
    .await
    .unwrap();
    drop(conn);

    // A second hub on the same data directory is refused with a clear message.
    let mut second = start_hub(&data_dir, "log-second");
    let status = wait_exit(&mut second, Duration::from_secs(30));
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(second.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("in use by another running joyfull-hub"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // SIGTERM: exit 0 and no postgres left.
    signal(&hub, "TERM");
    assert!(wait_exit(&mut hub, Duration::from_secs(60)).success());
    assert!(
        postgres_processes(&pgdata).is_empty(),
        "{:?}",
        postgres_processes(&pgdata)
    );

    // Every request's log line carries its request id.
    let log = std::fs::read_to_string(&hub.log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("lifecycle-check-1"))
        .unwrap_or_else(|| panic!("no log line has the request id: {log}"));
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["span"]["request_id"], "lifecycle-check-1");

    // With its own PostgreSQL on the machine, the hub leaves it a core: one request thread fewer
    // than cores (at least one).
    let serving = log
        .lines()
        .find(|l| l.contains("serving GraphQL"))
        .unwrap_or_else(|| panic!("no start-up line: {log}"));
    let serving: Value = serde_json::from_str(serving).unwrap();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    assert_eq!(
        serving["fields"]["workers"],
        cores.saturating_sub(1).max(1),
        "{serving}"
    );

    // Second start reuses the data.
    let mut hub = start_hub(&data_dir, "log2");
    wait_ready(&mut hub).await;
    let mut conn = AsyncPgConnection::establish(&socket_url(&data_dir))
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Marker {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        value: i32,
    }
    let marker: Marker = diesel::sql_query("SELECT value FROM lifecycle_marker")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(marker.value, 42);
    drop(conn);

    // Killed outright: its postgres still stops, and the next start recovers.
    signal(&hub, "KILL");
    wait_exit(&mut hub, Duration::from_secs(10));
    wait_no_postgres(&pgdata, Duration::from_secs(30));
    let mut hub = start_hub(&data_dir, "log3");
    wait_ready(&mut hub).await;
    assert_eq!(
        graphql(&hub, "after-kill").await["data"]["__typename"],
        "Query"
    );
    signal(&hub, "INT");
    assert!(wait_exit(&mut hub, Duration::from_secs(60)).success());
    assert!(postgres_processes(&pgdata).is_empty());

    let _ = std::fs::remove_dir_all(&data_dir);
    for log in ["log1", "log-second", "log2", "log3"] {
        let _ = std::fs::remove_file(data_dir.with_extension(log));
    }
}

#[test]
fn a_stale_postmaster_pid_from_a_crash_does_not_block_the_next_start() {
    use joyfull_hub::db::embedded::{OwnedPostgres, StartOptions};
    let data_dir = test_root().join(format!("stale-pid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let options = StartOptions {
        durable: false,
        ..StartOptions::default()
    };
    OwnedPostgres::start(&data_dir, &options)
        .unwrap()
        .stop()
        .unwrap();
    // What a power cut leaves: a pid file naming a process that no longer exists ("ready" and all).
    let pid_file = data_dir.join("postgres/postmaster.pid");
    let fake = format!(
        "999999\n{}\n1700000000\n5432\n{}\n\n  5432001         0\nready   \n",
        data_dir.join("postgres").display(),
        data_dir.join("postgres").display()
    );
    std::fs::write(&pid_file, fake).unwrap();

    let owned = OwnedPostgres::start(&data_dir, &options).unwrap();

    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(pid, 999_999);
    owned.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}
