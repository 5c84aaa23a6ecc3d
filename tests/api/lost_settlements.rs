//! A call's metering survives losing the database at the worst instants: the connection carrying its
//! settlement cut before the server runs it (nothing committed: the writer writes it again) and after
//! the server committed it but before the answer arrived (the writer finds it committed and does not
//! write it twice). Either way the caller gets its answer, and the usage row, the subscription's
//! counters and the reservation are exactly as after an undisturbed call.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use joyfull_hub::config::Secret;
use serde_json::json;

use crate::helpers::TestApp;
use crate::helpers::faulty_proxy::{Cut, FaultyProxy};
use crate::helpers::separate_server::SeparateServer;

/// A cut and the bytes that mark the message it falls on.
type PendingCut = Option<(Cut, Vec<u8>)>;

/// The cut to arm when the upstream is called, that is once the call's reservation is written and
/// before its settlement is.
#[derive(Clone)]
struct Arming {
    proxy: Arc<FaultyProxy>,
    next: Arc<Mutex<PendingCut>>,
}

async fn arm_then_answer(State(arming): State<Arming>) -> axum::Json<serde_json::Value> {
    if let Some((cut, marker)) = arming.next.lock().unwrap().take() {
        arming.proxy.arm(cut, marker);
    }
    axum::Json(json!({ "usage": { "total_tokens": 42 } }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_cut_off_with_its_connection_is_written_exactly_once() {
    let server = SeparateServer::start("lost-settlements").await;
    let proxy = Arc::new(FaultyProxy::start(server.socket()).await);
    let proxied = format!("postgresql://postgres@127.0.0.1:{}/postgres", proxy.port);
    let app = TestApp::spawn_with(|config| config.database_url = Some(Secret::new(proxied))).await;
    let arming = Arming {
        proxy: proxy.clone(),
        next: Arc::default(),
    };
    let upstream = Router::new()
        .route("/", post(arm_then_answer))
        .with_state(arming.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, upstream).await });

    let root = app.register("Root", "root@example.com").await;
    server
        .execute(&format!(
            "UPDATE users SET role = 'ADMIN' WHERE id = '{}'",
            root.id
        ))
        .await;
    let tool = app
        .create_tool(&root, json!({ "name": "Echo", "endpoint": endpoint }))
        .await;
    let ada = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&ada).await;
    // The settlement binds the tool's id; the call's reservation, written before the upstream is
    // called, is done by the time the cut is armed, so the cut falls on the settlement.
    let marker = uuid::Uuid::parse_str(&tool).unwrap().as_bytes().to_vec();

    for (call, cut) in [Cut::BeforeTheServer, Cut::BeforeTheAnswer]
        .into_iter()
        .enumerate()
    {
        // Rolls also send the tool's id: the cut is armed once nothing is left to roll.
        app.rolled_up().await;
        *arming.next.lock().unwrap() = Some((cut, marker.clone()));
        let answer = app.invoke(&ada.access_token, &tool, json!({}), None).await;

        assert!(answer["errors"].is_null(), "{cut:?}: {answer}");
        assert_eq!(
            answer["data"]["invokeTool"]["status"], "SUCCESS",
            "{answer}"
        );
        assert_eq!(
            proxy.cuts(),
            call + 1,
            "{cut:?}: the settlement's connection was cut"
        );
    }

    let usage_rows = server
        .number("SELECT count(*) AS n FROM usage_events")
        .await;
    let used = server
        .number("SELECT tokens_used AS n FROM subscriptions")
        .await;
    // What a slice of the second call held unspent is given back once idle (`billing::slices`).
    let mut waited = std::time::Duration::ZERO;
    let (reserved, reservations) = loop {
        let reserved = server
            .number("SELECT tokens_reserved AS n FROM subscriptions")
            .await;
        let reservations = server
            .number("SELECT count(*) AS n FROM quota_reservations")
            .await;
        if (reserved, reservations) == (0, 0) || waited > 3 * joyfull_hub::billing::slices::IDLE {
            break (reserved, reservations);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += std::time::Duration::from_millis(50);
    };
    app.rolled_up().await;
    let daily_tokens = server
        .number("SELECT coalesce(sum(tokens), 0)::bigint AS n FROM usage_daily")
        .await;
    assert_eq!(usage_rows, 2);
    assert_eq!(used, 84);
    assert_eq!(reserved, 0);
    assert_eq!(reservations, 0);
    assert_eq!(daily_tokens, 84);
    drop(app);
    server.remove().await;
}
