//! Graceful shutdown as `serve` does it: stop accepting, let in-flight requests finish, but only for so long.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

async fn serve_slow_routes(
    grace: Duration,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let router = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "done"
            }),
        )
        .route(
            "/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(joyfull_hub::serve_on(
        listener,
        router,
        async move {
            let _ = stopped.await;
        },
        grace,
        joyfull_hub::config::ConnectionLimits::default(),
    ));
    (base, stop, server)
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_still_gets_its_answer() {
    let (base, stop, server) = serve_slow_routes(Duration::from_secs(10)).await;
    let in_flight = tokio::spawn(reqwest::get(format!("{base}/slow")));
    tokio::time::sleep(Duration::from_millis(150)).await;

    stop.send(()).unwrap();
    let response = in_flight.await.unwrap().unwrap();

    assert_eq!(response.text().await.unwrap(), "done");
    server.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("{base}/slow")).await.is_err(),
        "new connections must be refused"
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_longer_than_the_grace_period() {
    let (base, stop, server) = serve_slow_routes(Duration::from_millis(300)).await;
    let stuck = tokio::spawn(reqwest::get(format!("{base}/stuck")));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    stuck.abort();
}
