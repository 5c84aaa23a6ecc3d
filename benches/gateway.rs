//! The hub's added latency per invocation: 50 concurrent callers invoke a tool through the hub, and
//! the same callers call the tool's upstream directly; the difference is what the hub adds (auth, plan
//! and quota checks, the reservation, metering in PostgreSQL).
//!
//! Run: `cargo bench --bench gateway` (uses `DATABASE_URL` when set, else a private cluster in a temp
//! dir). Knobs: `BENCH_CONCURRENCY` (default 50), `BENCH_REQUESTS` per caller (default 20), and
//! `BENCH_USERS` (default: one per caller). With `BENCH_USERS=1` every caller spends the same quota, so
//! their reservations queue on that subscription's row lock: the worst case, measured on purpose.
#![expect(
    clippy::indexing_slicing,
    reason = "indexing a serde_json::Value by key yields Null when absent; it never panics"
)]

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::post;
use common::{env_number, percentile};
use joyfull_hub::app::AppState;
use joyfull_hub::config::Config;
use joyfull_hub::db::Database;
use joyfull_hub::secrets::Keys;
use serde_json::{Value, json};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `callers` tasks doing `requests` sequential calls each; returns every latency, sorted.
async fn load<F, Fut>(
    callers: usize,
    requests: usize,
    call: F,
) -> anyhow::Result<(Vec<Duration>, Duration)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(requests);
                for _ in 0..requests {
                    let begun = Instant::now();
                    call().await?;
                    samples.push(begun.elapsed());
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let wall = started.elapsed();
    all.sort();
    Ok((all, wall))
}

fn report(name: &str, samples: &[Duration], wall: Duration) {
    println!(
        "{name:<22} n={:<5} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   {:>7.0} calls/s",
        samples.len(),
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 99.0)),
        ms(percentile(samples, 100.0)),
        samples.len() as f64 / wall.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let callers = env_number("BENCH_CONCURRENCY", 50);
    let requests = env_number("BENCH_REQUESTS", 20);

    // The upstream: an OpenAI-style answer with a usage block, on a local port.
    let upstream = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            axum::Json(json!({
                "choices": [{ "message": { "role": "assistant", "content": "ok" } }],
                "usage": { "prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10 }
            }))
        }),
    );
    let upstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_url = format!(
        "http://{}/v1/chat/completions",
        upstream_listener.local_addr()?
    );
    tokio::spawn(async move { axum::serve(upstream_listener, upstream).await });

    // The hub.
    let dir = std::env::temp_dir().join(format!("joyfull-hub-bench-gw-{}", std::process::id()));
    // Every benchmark user registers from 127.0.0.1: lift the per-address limit on new accounts.
    let mut config = Config::from_lookup(|key| match key {
        "HUB_REGISTRATIONS_PER_HOUR" => Some("1000000".into()),
        _ => std::env::var(key).ok(),
    })?;
    config.data_dir = dir.clone();
    config.demo_seed = false;
    if std::env::var("HUB_DB_POOL_SIZE").is_err() {
        config.db_pool_size = 32;
    }
    let pool_size = config.db_pool_size;
    let database = Database::open(&config).await?;
    let state = AppState::new(config, database.pool.clone(), Keys::generate())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub = format!("http://{}/graphql", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(joyfull_hub::serve_on(
        listener,
        joyfull_hub::http::router(state.clone()),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let gql = |token: Option<&str>, query: &str, variables: Value| {
        let mut request = client
            .post(&hub)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { anyhow::Ok(request.send().await?.json::<Value>().await?) }
    };

    let user_count = env_number("BENCH_USERS", callers).max(1);
    let mut tokens = Vec::with_capacity(user_count);
    let mut user_id = String::new();
    for _ in 0..user_count {
        let email = format!("bench-{}@example.com", uuid::Uuid::new_v4());
        let registered = gql(
            None,
            "mutation($i: RegisterInput!) { register(input: $i) { accessToken user { id } } }",
            json!({ "i": { "name": "Bench", "email": email, "password": "Bench-Passw0rd!" } }),
        )
        .await?;
        let token = registered["data"]["register"]["accessToken"]
            .as_str()
            .context("register")?
            .to_owned();
        user_id = registered["data"]["register"]["user"]["id"]
            .as_str()
            .context("user id")?
            .to_owned();
        gql(
            Some(&token),
            "mutation { subscribe(tier: ENTERPRISE) { status } }",
            json!({}),
        )
        .await?;
        tokens.push(token);
    }
    let token = tokens.last().cloned().context("no user")?;
    let mut conn = database.pool.get().await?;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE users SET role = 'ADMIN' WHERE id = '{user_id}'"
        )),
        &mut conn,
    )
    .await?;
    drop(conn);
    let created = gql(
        Some(&token),
        "mutation($i: ToolInputObject!) { createTool(input: $i) { id } }",
        json!({ "i": { "name": format!("bench {}", uuid::Uuid::new_v4()), "endpoint": upstream_url, "estimatedTokens": 10 } }),
    )
    .await?;
    let tool = created["data"]["createTool"]["id"]
        .as_str()
        .context("createTool")?
        .to_owned();

    let direct = {
        let client = client.clone();
        let url = upstream_url.clone();
        move || {
            let request = client
                .post(&url)
                .json(&json!({ "messages": [{ "role": "user", "content": "hi" }] }));
            async move {
                let body: Value = request.send().await?.json().await?;
                anyhow::ensure!(body["usage"]["total_tokens"] == 10, "bad upstream answer");
                Ok(())
            }
        }
    };
    let next_user = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let through_hub = {
        let client = client.clone();
        let hub = hub.clone();
        let tokens = std::sync::Arc::new(tokens);
        move || {
            let turn = next_user.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let token = tokens.get(turn % tokens.len()).cloned().unwrap_or_default();
            let request = client.post(&hub).bearer_auth(&token).json(&json!({
                "query": "mutation($t: ID!, $i: JSON!) { invokeTool(toolId: $t, input: $i) { tokensUsed } }",
                "variables": { "t": tool, "i": { "messages": [{ "role": "user", "content": "hi" }] } }
            }));
            async move {
                let body: Value = request.send().await?.json().await?;
                anyhow::ensure!(
                    body["data"]["invokeTool"]["tokensUsed"] == 10,
                    "invocation failed: {body}"
                );
                Ok(())
            }
        }
    };

    println!(
        "gateway benchmark: {callers} concurrent callers x {requests} calls, {user_count} users, pool {pool_size}, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    load(callers, 4, direct.clone()).await?; // warm-up
    load(callers, 4, through_hub.clone()).await?;
    let (direct_samples, direct_wall) = load(callers, requests, direct).await?;
    report("upstream directly", &direct_samples, direct_wall);
    let (hub_samples, hub_wall) = load(callers, requests, through_hub).await?;
    report("through the hub", &hub_samples, hub_wall);
    println!(
        "added by the hub: p50 {:+.2} ms, p99 {:+.2} ms ({:.1}x the direct p99)",
        ms(percentile(&hub_samples, 50.0)) - ms(percentile(&direct_samples, 50.0)),
        ms(percentile(&hub_samples, 99.0)) - ms(percentile(&direct_samples, 99.0)),
        ms(percentile(&hub_samples, 99.0)) / ms(percentile(&direct_samples, 99.0)).max(0.001)
    );

    let _ = stop.send(());
    server.await??;
    database.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
