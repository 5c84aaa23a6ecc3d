//! Login latency with many people logging in at once, over real HTTP and a real PostgreSQL, with the
//! production Argon2id parameters.
//!
//! Run: `cargo bench --bench login` (uses `DATABASE_URL` when set, else a private cluster in a temp dir).
//! Knobs: `BENCH_CONCURRENCY` (default 20), `BENCH_ROUNDS` (default 10).
//!
//! Absolute times depend on the machine, so it also reports the ratio of each figure to the baseline
//! measured in the same run: one login at a time.
#![expect(
    clippy::indexing_slicing,
    reason = "indexing a serde_json::Value by key yields Null when absent; it never panics"
)]

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use common::{env_number, percentile};
use joyfull_hub::app::AppState;
use joyfull_hub::config::Config;
use joyfull_hub::db::Database;
use joyfull_hub::secrets::Keys;
use serde_json::{Value, json};

const PASSWORD: &str = "Bench-Passw0rd!";

async fn login(client: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let body: Value = client
        .post(url)
        .json(&json!({
            "query": "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
            "variables": { "i": { "email": "bench@example.com", "password": PASSWORD } }
        }))
        .send()
        .await?
        .json()
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        body["data"]["login"]["accessToken"].is_string(),
        "login failed: {body}"
    );
    Ok(elapsed)
}

fn report(name: &str, samples: &mut [Duration], baseline: Option<Duration>) -> Duration {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p95, p99, max) = (
        percentile(samples, 50.0),
        percentile(samples, 95.0),
        percentile(samples, 99.0),
        percentile(samples, 100.0),
    );
    let ratio = baseline.map_or_else(String::new, |b| {
        format!("   p99 = {:.1} x baseline p50", ms(p99) / ms(b))
    });
    println!(
        "{name:<28} n={:<4} p50 {:>7.1} ms   p95 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms{ratio}",
        samples.len(),
        ms(p50),
        ms(p95),
        ms(p99),
        ms(max)
    );
    p50
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let concurrency = env_number("BENCH_CONCURRENCY", 20);
    let rounds = env_number("BENCH_ROUNDS", 10);
    let dir = std::env::temp_dir().join(format!("joyfull-hub-bench-{}", std::process::id()));
    // Every benchmark user registers from 127.0.0.1: lift the per-address limit on new accounts.
    let mut config = Config::from_lookup(|key| match key {
        "HUB_REGISTRATIONS_PER_HOUR" => Some("1000000".into()),
        _ => std::env::var(key).ok(),
    })?;
    config.data_dir = dir.clone();
    let database = Database::open(&config).await?;
    let argon = (
        config.auth.argon2_memory_kib,
        config.auth.argon2_iterations,
        config.auth.argon2_parallelism,
    );
    let permits = config.auth.max_concurrent_hashes;
    let state = AppState::new(config, database.pool.clone(), Keys::generate())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(joyfull_hub::serve_on(
        listener,
        joyfull_hub::http::router(state),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let client = reqwest::Client::new();

    let registered: Value = client
        .post(&url)
        .json(&json!({
            "query": "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
            "variables": { "i": { "name": "Bench", "email": "bench@example.com", "password": PASSWORD } }
        }))
        .send()
        .await?
        .json()
        .await?;
    // A second run against the same DATABASE_URL finds the account already there.
    if registered["data"]["register"].is_null() {
        println!(
            "(account exists already: {})",
            registered["errors"][0]["message"]
        );
    }

    println!(
        "login benchmark: Argon2id m={} KiB t={} p={}, {permits} concurrent hashes, {} cores",
        argon.0,
        argon.1,
        argon.2,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    for _ in 0..3 {
        login(&client, &url).await.context("warm-up")?;
    }
    let mut sequential = Vec::new();
    for _ in 0..concurrency {
        sequential.push(login(&client, &url).await?);
    }
    let baseline = report("baseline: one at a time", &mut sequential, None);

    let mut concurrent = Vec::new();
    for _ in 0..rounds {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let client = client.clone();
                let url = url.clone();
                tokio::spawn(async move { login(&client, &url).await })
            })
            .collect();
        for task in tasks {
            concurrent.push(task.await??);
        }
    }
    report(
        &format!("{concurrency} concurrent logins"),
        &mut concurrent,
        Some(baseline),
    );

    let _ = stop.send(());
    server.await??;
    database.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
