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
        // The load these tests drive is over every plan's request rate; rates have tests of their own.
        .env("HUB_ENFORCE_REQUEST_RATES", "false")
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
    post_graphql(hub, request_id, json!({ "query": "{ __typename }" })).await
}

async fn post_graphql(hub: &Hub, request_id: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/graphql", hub.port))
        .header("x-request-id", request_id)
        .json(&body)
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
    let refused = post_graphql(
        &hub,
        "lifecycle-check-2",
        json!({
            "query": "mutation L($input: LoginInput!) { login(input: $input) { accessToken } }",
            "variables": { "input": { "email": "nobody@example.com", "password": "not the password" } }
        }),
    )
    .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
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
    // So does a line logged inside a span of the request's own (the login's).
    let failed: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "login failed")
        .unwrap_or_else(|| panic!("no failed login logged: {log}"));
    assert_eq!(
        failed["span"]["request_id"], "lifecycle-check-2",
        "{failed}"
    );
    assert_eq!(failed["span"]["name"], "login", "{failed}");

    // Requests run on a thread per core, also beside its own PostgreSQL.
    let serving = log
        .lines()
        .find(|l| l.contains("serving GraphQL"))
        .unwrap_or_else(|| panic!("no start-up line: {log}"));
    let serving: Value = serde_json::from_str(serving).unwrap();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    assert_eq!(serving["fields"]["workers"], cores, "{serving}");

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

    let mut owned = OwnedPostgres::start(&data_dir, &options).unwrap();

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

/// A hub serving from a new data directory named after `name`.
async fn fresh_hub(name: &str) -> (PathBuf, Hub) {
    let data_dir = test_root().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut hub = start_hub(&data_dir, "log");
    wait_ready(&mut hub).await;
    (data_dir, hub)
}

/// SIGKILLs the owned cluster's postmaster, as a crash or the OOM killer would.
fn kill_postmaster(data_dir: &Path) {
    kill_pid(&postmaster_pid(data_dir));
}

fn kill_pid(pid: &str) {
    let killed = Command::new("kill").args(["-KILL", pid]).status().unwrap();
    assert!(killed.success(), "kill -KILL {pid}");
}

/// The process id of the owned cluster's postmaster (the first line of its `postmaster.pid`).
fn postmaster_pid(data_dir: &Path) -> String {
    let pid_file =
        std::fs::read_to_string(data_dir.join("postgres").join("postmaster.pid")).unwrap();
    pid_file.lines().next().unwrap().trim().to_owned()
}

/// Invokes `tool` as `token` until `stop`; the ids of acknowledged invocations, and the codes of refusals.
async fn invoke_until(
    port: u16,
    token: String,
    tool: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<String>, Vec<String>) {
    let client = reqwest::Client::new();
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    while !std::sync::atomic::AtomicBool::load(&stop, std::sync::atomic::Ordering::Relaxed) {
        let answer = client
            .post(format!("http://127.0.0.1:{port}/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": "mutation($t: ID!) { invokeTool(toolId: $t, input: {messages: [{role: \"user\", content: \"hi\"}]}) { id } }",
                           "variables": { "t": tool } }))
            .send()
            .await;
        let Ok(answer) = answer else {
            refused.push("NO_ANSWER".to_owned());
            continue;
        };
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        match body["data"]["invokeTool"]["id"].as_str() {
            Some(id) => acknowledged.push(id.to_owned()),
            None => {
                refused.push(
                    body["errors"][0]["extensions"]["code"]
                        .as_str()
                        .unwrap_or("NONE")
                        .to_owned(),
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (acknowledged, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_postgres_is_restarted_under_load_and_no_acknowledged_invocation_is_lost() {
    let (data_dir, mut hub) = fresh_hub("db-crash").await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/graphql", hub.port);
    let call = |body: Value, token: Option<String>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut request = client.post(url).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let registered = call(json!({ "query": "mutation { register(input: {name: \"Ada\", email: \"ada@example.com\", password: \"Corr3ct-Horse!\"}) { accessToken } }" }), None).await;
    let token = registered["data"]["register"]["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    let subscribed = call(
        json!({ "query": "mutation { subscribe(tier: ENTERPRISE) { status } }" }),
        Some(token.clone()),
    )
    .await;
    assert_eq!(
        subscribed["data"]["subscribe"]["status"], "ACTIVE",
        "{subscribed}"
    );
    let tools = call(
        json!({ "query": "{ tools(search: \"demo\") { nodes { id } } }" }),
        None,
    )
    .await;
    let tool = tools["data"]["tools"]["nodes"][0]["id"]
        .as_str()
        .expect("a demo tool")
        .to_owned();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(invoke_until(
                hub.port,
                token.clone(),
                tool.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill_postmaster(&data_dir);
    let killed = Instant::now();

    // Ready again (and invoking) within 10 s.
    let mut was_unready = false;
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{}/ready", hub.port))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if ready == 503 {
            was_unready = true;
        }
        if ready == 200 && was_unready {
            break;
        }
        assert!(hub.child.try_wait().unwrap().is_none(), "the hub exited");
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "not ready again within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back_after = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for client in clients {
        let (ids, codes) = client.await.unwrap();
        acknowledged.extend(ids);
        refused.extend(codes);
    }

    let mut conn = AsyncPgConnection::establish(&socket_url(&data_dir))
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let ids: Vec<uuid::Uuid> = acknowledged.iter().map(|id| id.parse().unwrap()).collect();
    let stored: Count =
        diesel::sql_query("SELECT count(*) AS n FROM usage_events WHERE id = ANY($1)")
            .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&ids)
            .get_result(&mut conn)
            .await
            .unwrap();
    let served_after = call(json!({ "query": "{ __typename }" }), None).await;
    drop(conn);
    signal(&hub, "TERM");
    wait_exit(&mut hub, Duration::from_secs(60));

    assert!(
        acknowledged.len() > 10,
        "the load ran: {} calls",
        acknowledged.len()
    );
    assert_eq!(
        stored.n as usize,
        acknowledged.len(),
        "every acknowledged invocation is in the log"
    );
    assert!(
        refused.iter().all(|code| code == "SERVICE_UNAVAILABLE"),
        "refusals in the gap are retryable: {refused:?}"
    );
    assert_eq!(served_after["data"]["__typename"], "Query");
    eprintln!(
        "ready again {back_after:?} after the kill; {} acknowledged, {} refused",
        acknowledged.len(),
        refused.len()
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_that_cannot_come_back_stops_the_hub_with_one_clear_line() {
    let (data_dir, mut hub) = fresh_hub("db-gone").await;
    let pgdata = data_dir.join("postgres");
    let postmaster = postmaster_pid(&data_dir);
    std::fs::rename(&pgdata, data_dir.join("moved-away")).unwrap();
    kill_pid(&postmaster);
    let status = wait_exit(&mut hub, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(hub.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();

    assert!(!status.success(), "{status}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "joyfull-hub: the owned PostgreSQL cannot be restarted: its data directory"
        ) && last.ends_with("is gone"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}
