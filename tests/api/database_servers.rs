//! The database servers under the hub. An external PostgreSQL that goes away and comes back: requests in
//! the gap fail fast with `SERVICE_UNAVAILABLE`, `/ready` and then `/health` report it, and once the server
//! is back the pool reconnects and writes succeed again. A `DATABASE_URL` naming several hosts finds the
//! writable one. `DATABASE_READ_URL` takes the reads that may lag.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use joyfull_hub::config::{Config, Secret};
use joyfull_hub::db::{Database, ping};
use serde_json::{Value, json};

use crate::helpers::db::test_root;
use crate::helpers::separate_server::SeparateServer;
use crate::helpers::{TestApp, error_code};

async fn status(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.get(path).await;
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

async fn register(app: &TestApp, email: &str) -> Value {
    app.graphql_with(
        "mutation($i: RegisterInput!) { register(input: $i) { accessToken user { id } } }",
        json!({ "i": { "name": "Ada", "email": email, "password": crate::helpers::PASSWORD } }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_and_returns_is_reported_then_served_again() {
    let server = SeparateServer::start("outage").await;
    let url = server.url.clone();
    let app = TestApp::spawn_with(|config| {
        config.database_url = Some(Secret::new(url));
        config.liveness.database_silence = Duration::from_secs(1);
    })
    .await;
    let before = register(&app, "before@example.com").await;
    assert!(
        before["data"]["register"]["user"]["id"].is_string(),
        "{before}"
    );
    assert_eq!(status(&app, "/health").await.0, 200);

    server.on(|s| s.stop()).await.expect("stopped");
    let refused = register(&app, "during@example.com").await;
    let (ready, _) = status(&app, "/ready").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (health, why) = status(&app, "/health").await;
    let caches_live_during_outage = app.state.caches.is_live();

    assert!(
        !caches_live_during_outage,
        "cached rows are not served across the gap"
    );
    assert_eq!(error_code(&refused), "SERVICE_UNAVAILABLE", "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["retryAfter"], 1);
    assert_eq!(ready, 503);
    assert_eq!(health, 503, "{why}");
    assert!(
        why["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("database"),
        "{why}"
    );

    server.on(|s| s.restart()).await.expect("restarted");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let body = register(&app, "after@example.com").await;
        if body["data"]["register"]["user"]["id"].is_string() {
            break body;
        }
        assert!(Instant::now() < deadline, "never served again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(after["errors"].is_null());
    assert_eq!(status(&app, "/ready").await.0, 200);
    assert_eq!(status(&app, "/health").await.0, 200);

    // The listener subscribes again, so the caches serve again and hear of changes made in the database.
    let token = after["data"]["register"]["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    let key = app.api_key(&token).await;
    let caches = app.state.caches.clone();
    eventually("the listener is back", Duration::from_secs(10), move || {
        caches.is_live()
    })
    .await;
    let me = "{ me { id } }";
    assert!(app.graphql_as(&key, me, json!({})).await["data"]["me"]["id"].is_string());
    let revoke_url = server.current_url().await;
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&revoke_url)
            .await
            .unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE api_keys SET revoked_at = now()"),
        &mut conn,
    )
    .await
    .unwrap();
    let revoked_at = Instant::now();
    loop {
        let answer = app.graphql_as(&key, me, json!({})).await;
        if answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "a revoked key still served: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    drop(app);
    server.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_several_hosts_reaches_the_writable_one() {
    let server = SeparateServer::start("multihost").await;
    let url = server.url.clone();
    let live = url
        .split("host=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("a socket host")
        .to_owned();
    let dead = test_root().join("no-server-here");
    // libpq's form for several hosts: in the authority, socket directories percent-encoded.
    let authority = |dir: &str| dir.replace('/', "%2F") + ":5432";
    let several = format!(
        "postgresql://{},{}/postgres?user=postgres&target_session_attrs=read-write",
        authority(&dead.display().to_string()),
        authority(&live.replace("%2F", "/")),
    );
    let app = TestApp::spawn_with(|config| config.database_url = Some(Secret::new(several))).await;

    let body = register(&app, "ada@example.com").await;

    assert!(body["data"]["register"]["user"]["id"].is_string(), "{body}");
    drop(app);
    server.remove().await;
}

/// Usage history, summaries and platform statistics read from `DATABASE_READ_URL`; the call itself and
/// the caller's subscription come from the primary. The "replica" here is another database that never
/// receives the writes, so any read that went to it shows it.
#[tokio::test]
async fn lagging_reads_go_to_the_replica_and_own_writes_come_from_the_primary() {
    let replica = crate::helpers::db::TestDb::create().await;
    let replica_url = replica.url.clone();
    let app = TestApp::spawn_with(move |config| {
        config.database_read_url = Some(Secret::new(replica_url));
    })
    .await;
    let upstream = crate::helpers::upstream::Upstream::start().await;
    let crate::helpers::Catalogue {
        root,
        tool,
        user: ada,
    } = app.catalogue(upstream.url("/ok")).await;

    let call = app.invoke(&ada.access_token, &tool, json!({}), None).await;
    let own = app
        .graphql_as(
            &ada.access_token,
            "{ me { subscription { tokensUsed } } usage { totalCount } usageSummary { totalTokens } }",
            json!({}),
        )
        .await;
    let platform = app
        .graphql_as(
            &root.access_token,
            "{ admin { stats { invocations users { total } } } }",
            json!({}),
        )
        .await;

    assert_eq!(call["data"]["invokeTool"]["tokensUsed"], 42, "{call}");
    assert_eq!(
        own["data"]["me"]["subscription"]["tokensUsed"], 42,
        "the primary: {own}"
    );
    assert_eq!(own["data"]["usage"]["totalCount"], 0, "the replica: {own}");
    assert_eq!(
        own["data"]["usageSummary"]["totalTokens"], 0,
        "the replica: {own}"
    );
    assert_eq!(
        platform["data"]["admin"]["stats"]["invocations"], 0,
        "{platform}"
    );
    assert_eq!(
        platform["data"]["admin"]["stats"]["users"]["total"], 0,
        "{platform}"
    );
}

/// Records what the listener tells its subscriber.
#[derive(Default)]
struct Recorder {
    states: Mutex<Vec<bool>>,
    payloads: Mutex<Vec<String>>,
}

impl Recorder {
    fn heard(&self, payload: &str) -> bool {
        self.payloads.lock().unwrap().iter().any(|p| p == payload)
    }
}

impl joyfull_hub::db::listener::Subscriber for Recorder {
    fn channel(&self) -> &'static str {
        "listener_test"
    }
    fn connected(&self, up: bool) {
        self.states.lock().unwrap().push(up);
    }
    fn notify(&self, payload: &str) {
        self.payloads.lock().unwrap().push(payload.to_owned());
    }
}

async fn eventually(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The listener's self-ping: a connection that silently stops carrying data (nothing closes it) is
/// noticed within the ping's deadline, the subscriber hears the stream is down, and the listener comes
/// back on a fresh connection once the path carries data again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_frozen_listening_connection_is_noticed_and_replaced() {
    let server = SeparateServer::start("frozen-listener").await;
    let url = server.url.clone();
    let proxy = crate::helpers::faulty_proxy::FaultyProxy::start(server.socket()).await;
    let proxied = format!("postgresql://postgres@127.0.0.1:{}/postgres", proxy.port);
    let recorder = Arc::new(Recorder::default());
    let liveness = joyfull_hub::db::listener::Liveness {
        ping_every: Duration::from_millis(200),
        ping_deadline: Duration::from_millis(400),
    };
    let listener = joyfull_hub::db::listener::spawn(proxied, vec![recorder.clone()], liveness);
    let notify = |payload: &'static str| {
        let url = url.clone();
        async move {
            let mut conn =
                <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url)
                    .await
                    .unwrap();
            diesel_async::RunQueryDsl::execute(
                diesel::sql_query(format!("NOTIFY listener_test, '{payload}'")),
                &mut conn,
            )
            .await
            .unwrap();
        }
    };
    eventually("the listener connects", Duration::from_secs(5), || {
        recorder.states.lock().unwrap().as_slice() == [true]
    })
    .await;
    notify("before").await;
    eventually("a notification arrives", Duration::from_secs(5), || {
        recorder.heard("before")
    })
    .await;

    proxy.freeze(true);
    let frozen_at = Instant::now();
    eventually(
        "the frozen stream is noticed",
        Duration::from_secs(3),
        || recorder.states.lock().unwrap().last() == Some(&false),
    )
    .await;
    let noticed_after = frozen_at.elapsed();
    proxy.freeze(false);
    eventually("the listener reconnects", Duration::from_secs(10), || {
        recorder.states.lock().unwrap().ends_with(&[false, true])
    })
    .await;
    notify("after").await;
    eventually("notifications flow again", Duration::from_secs(5), || {
        recorder.heard("after")
    })
    .await;

    assert!(noticed_after < Duration::from_secs(1), "{noticed_after:?}");
    listener.abort();
    server.remove().await;
}

/// A hub started beside its database (a compose file, a pod) may start first: it waits for the server
/// to answer instead of failing, then migrates and serves. A server that answers and refuses (here, a
/// database that does not exist) fails at once, and one that never comes up fails when the wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_started_before_its_database_waits_for_it_and_a_refusal_fails_at_once() {
    let server = SeparateServer::start("late-start").await;
    server.on(|s| s.stop()).await.expect("stopped");
    let mut config = Config::from_lookup(|_| None).expect("the default configuration");
    config.database_url = Some(Secret::new(server.url.clone()));
    config.db_startup_wait = Duration::from_secs(30);

    let started = Instant::now();
    let (opened, restarted) = tokio::join!(Database::open(&config), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.on(|s| s.restart()).await
    });
    restarted.expect("restarted");
    let database = opened.expect("the hub waited for its database");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(ping(&database.pool, Duration::from_secs(2)).await);
    drop(database);

    let missing = server
        .url
        .replacen("///postgres?", "///no_such_database?", 1);
    assert_ne!(missing, server.url);
    config.database_url = Some(Secret::new(missing));
    let started = Instant::now();
    let refused = Database::open(&config).await.err().expect("refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refusal is not waited out"
    );
    assert!(
        refused.to_string().contains("no_such_database"),
        "{refused:#}"
    );

    server.on(|s| s.stop()).await.expect("stopped");
    config.database_url = Some(Secret::new(server.url.clone()));
    config.db_startup_wait = Duration::from_millis(800);
    let started = Instant::now();
    let gone = Database::open(&config).await.err().expect("never up");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        gone.to_string()
            .starts_with("cannot connect to the database"),
        "{gone:#}"
    );
    server.remove().await;
}
