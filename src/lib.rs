//! Joyfull Hub: the GraphQL backend of a multi-tool AI dashboard.
//!
//! `main.rs` parses the command line; everything it runs is wired here, so the tests build exactly the
//! application that production serves.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod cache;
pub mod clock;
pub mod config;
pub mod db;
pub mod dev;
pub mod error;
pub mod gateway;
pub mod graphql;
pub mod http;
pub mod kept;
pub mod keys;
pub mod mail;
pub mod notifications;
pub mod pacing;
pub mod secrets;
pub mod server;
pub mod sweeper;
pub mod system;
pub mod telemetry;
pub mod tools;
pub mod usage;
pub mod users;
pub mod verbatim;
pub mod webhooks;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::config::{Config, ConnectionLimits};
use crate::db::Database;
use crate::secrets::Keys;

/// `joyfull-hub serve`: opens the database (owning one if needed), migrates, serves until SIGTERM or
/// SIGINT, drains in-flight requests, then stops the owned database.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let keys = Keys::resolve(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (HUB_LISTEN)", config.listen))?;
    let mut database = Database::open(&config).await?;
    let grace = config.shutdown_timeout;
    let limits = config.connections;
    let state = match AppState::new(config, database.pool.clone(), keys) {
        Ok(state) => state,
        Err(e) => {
            database.close().await;
            return Err(e);
        }
    };
    if let Err(e) = seed_admin(&state).await {
        database.close().await;
        return Err(e);
    }
    if state.config.demo_seed {
        let address = listener
            .local_addr()
            .context("cannot read the listening address")?;
        if let Err(e) = dev::demo::seed(&state, address).await {
            database.close().await;
            return Err(e);
        }
    }
    let background = start_background(&state, &database.url);
    // As the runtime has it (`HUB_WORKER_THREADS` and its default, see `Config`).
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let router = http::router(state);
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    tracing::info!(
        workers,
        "serving GraphQL at http://{address}/graphql (GraphiQL in a browser, POST for clients)"
    );
    // A database the hub cannot bring back also stops it, with that reason as its exit message.
    let lost = database.lost();
    let lost_reason = Arc::new(std::sync::Mutex::new(None));
    let reason = lost_reason.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            why = lost => {
                *reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
            }
        }
    };
    let served = serve_on(listener, router, stop, grace, limits).await;
    drop(background);
    database.close().await;
    tracing::info!("stopped");
    let lost = lost_reason
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    match lost {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => served,
    }
}

/// The server's background tasks; dropping this stops them.
pub struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts the sweeper and the listener for live usage and cache invalidations (which needs its own
/// connection to `database_url`).
pub fn start_background(state: &AppState, database_url: &str) -> Background {
    Background(vec![
        sweeper::spawn(state.clone(), std::time::Duration::from_secs(60)),
        usage::roller::spawn(state.clone()),
        mail::outbox::spawn(state.clone()),
        pacing::service::spawn_give_back(state.clone()),
        billing::slice_return::spawn(state.clone()),
        notifications::outbox::spawn(state.clone()),
        webhooks::delivery::spawn(state.clone()),
        db::vitals::spawn_probe(
            state.pool.clone(),
            state.vitals.clone(),
            state.config.liveness.probe_every(),
        ),
        db::listener::spawn(
            database_url.to_owned(),
            vec![
                state.live.clone(),
                state.notices.clone(),
                state.caches.clone(),
            ],
            db::listener::Liveness::default(),
        ),
    ])
}

/// `HUB_ADMIN_EMAIL` + `HUB_ADMIN_PASSWORD`: created if absent, never overwritten.
async fn seed_admin(state: &AppState) -> anyhow::Result<()> {
    let Some((email, password)) = &state.config.admin_seed else {
        return Ok(());
    };
    let outcome = users::service::create_admin(
        &state.pool,
        &state.hasher,
        email,
        password.expose(),
        "Administrator",
    )
    .await
    .map_err(|e| anyhow::anyhow!("HUB_ADMIN_EMAIL/HUB_ADMIN_PASSWORD: {}", e.public_message()))?;
    if outcome == users::service::AdminSeed::AlreadyExists {
        tracing::info!("the administrator from HUB_ADMIN_EMAIL exists already; left unchanged");
    }
    Ok(())
}

/// `joyfull-hub create-admin`: creates an administrator unless the address is taken. Works while a
/// server runs on the same data directory (it then uses that server's database).
pub async fn create_admin(
    config: Config,
    email: &str,
    password: &str,
    name: &str,
) -> anyhow::Result<()> {
    let database = Database::open_shared(&config).await?;
    let hasher = auth::password::PasswordHasher::new(&config.auth)?;
    let outcome =
        users::service::create_admin(&database.pool, &hasher, email, password, name).await;
    database.close().await;
    match outcome.map_err(|e| anyhow::anyhow!("{}", e.public_message()))? {
        users::service::AdminSeed::Created(id) => {
            println!("created administrator {email} (id {id})");
            Ok(())
        }
        users::service::AdminSeed::AlreadyExists => {
            anyhow::bail!("an account with the address {email} exists already; it was not changed")
        }
    }
}

/// `joyfull-hub generate-usage`: synthetic data for performance measurements.
pub async fn generate_usage(config: Config, plan: dev::generate::Plan) -> anyhow::Result<()> {
    let database = Database::open_shared(&config).await?;
    let result = dev::generate::generate(&database.pool, &config, plan).await;
    database.close().await;
    let took = result?;
    println!(
        "generated {} usage rows for {} users in {:.1} s",
        plan.rows,
        plan.users,
        took.as_secs_f64()
    );
    Ok(())
}

/// `joyfull-hub migrate`: applies pending migrations and exits.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let database = Database::open_shared(&config).await?;
    database.close().await;
    tracing::info!("the database schema is up to date");
    Ok(())
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish for at
/// most `grace` before returning (see [`server`] for the connection limits).
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    limits: ConnectionLimits,
) -> anyhow::Result<()> {
    server::serve(listener, router, limits, shutdown, grace).await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
