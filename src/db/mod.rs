//! The database: the connection pool, the embedded migrations, and the owned PostgreSQL cluster used
//! when `DATABASE_URL` is unset. Only this module and the domains' `repo.rs` files touch [`schema`].

pub mod batch;
pub mod cached;
pub mod compose;
pub mod embedded;
pub mod feed;
pub mod listener;
pub mod schema;
pub mod supervisor;
pub mod text_enum;
pub mod vitals;

use std::time::Duration;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::Config;

/// The shared pool of PostgreSQL connections.
pub type DbPool = Pool<AsyncPgConnection>;

/// The SQL migrations under `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Name of the database the owned cluster serves the application from.
pub const OWNED_DATABASE: &str = "joyfull_hub";

/// Builds a pool that waits at most `acquire_timeout` for a connection, so an exhausted pool answers a
/// retryable error instead of hanging the request.
pub fn build_pool(url: &str, size: usize, acquire_timeout: Duration) -> anyhow::Result<DbPool> {
    // No test query on every checkout (it cost a round trip per use of the pool): a connection the
    // server closed fails its first statement with a retryable error and is then discarded.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(acquire_timeout))
        .create_timeout(Some(acquire_timeout))
        .recycle_timeout(Some(acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("cannot build the database pool")
}

/// Builds the pool from the configuration.
pub fn pool_for(config: &Config, url: &str) -> anyhow::Result<DbPool> {
    build_pool(url, config.db_pool_size, config.db_acquire_timeout)
}

/// Applies pending migrations. Runs on the blocking pool through diesel-async's sync wrapper (so the
/// binary needs no libpq), under an advisory lock so two instances starting together migrate once.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .context("cannot connect to the database to run migrations")?;
        conn.batch_execute("SELECT pg_advisory_lock(7291001)")
            .context("cannot take the migration lock")?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| anyhow::anyhow!("a migration failed: {e}"));
        conn.batch_execute("SELECT pg_advisory_unlock(7291001)")
            .context("cannot release the migration lock")?;
        applied
    })
    .await
    .context("the migration task stopped unexpectedly")?
}

/// Waits up to `wait` for the server behind `url` to accept a connection, so a hub started beside its
/// database (a compose file, a pod) does not fail while the database is still starting. Only the
/// failures that time can end are waited out (nothing listening yet, a name not yet resolvable, the
/// server starting or shutting down); anything else (a wrong password, a missing database) fails at
/// once, as does the last failure when the time is up.
pub async fn wait_for_server(url: &str, wait: Duration) -> anyhow::Result<()> {
    use diesel_async::AsyncConnection;

    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        let error = match AsyncPgConnection::establish(url).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let waited = started.elapsed();
        if !server_not_up_yet(&error) || waited + pause > wait {
            anyhow::bail!("cannot connect to the database: {error}");
        }
        tracing::warn!(
            waited_ms = waited.as_millis() as u64,
            error = %error,
            "the database does not answer yet; waiting for it"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Whether a connection failure says the server is not up yet, rather than that it refused this
/// client: no answer at all (nothing listening, no such host yet, no writable host among several),
/// or the server's own "starting up" or "shutting down".
fn server_not_up_yet(error: &diesel::ConnectionError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};

    let diesel::ConnectionError::CouldntSetupConfiguration(Error::DatabaseError(kind, info)) =
        error
    else {
        return false;
    };
    let message = info.message();
    matches!(kind, DatabaseErrorKind::UnableToSendCommand)
        || message.contains("is starting up")
        || message.contains("is shutting down")
        || message.contains("not yet accepting connections")
}

/// Answers whether the database responds to `SELECT 1` within `timeout`.
pub async fn ping(pool: &DbPool, timeout: Duration) -> bool {
    let check = async {
        let mut conn = pool.get().await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
    };
    matches!(tokio::time::timeout(timeout, check).await, Ok(Some(_)))
}

/// Creates `name` on the server behind `admin_url` unless it exists.
pub async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    use diesel::sql_types::Text;
    use diesel_async::AsyncConnection;

    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }

    let mut conn = AsyncPgConnection::establish(admin_url)
        .await
        .context("cannot connect to the PostgreSQL server")?;
    let found: Found =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result(&mut conn)
            .await
            .context("cannot list databases")?;
    if !found.exists {
        diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(name)))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        tracing::info!(database = name, "created the application database");
    }
    Ok(())
}

/// Sets up the owned cluster for serving: the application role (not a superuser), the application
/// database it owns, and everything in its schema owned by it (objects made by earlier versions, which
/// connected as the superuser, change hands). Runs as the superuser, on every start; idempotent.
async fn prepare_owned(owned: &embedded::OwnedPostgres) -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let role = quote_ident(embedded::APPLICATION_ROLE);
    let admin_url = owned.url("postgres");
    let mut admin = AsyncPgConnection::establish(&admin_url)
        .await
        .context("cannot connect to the owned PostgreSQL")?;
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN \
             CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS; \
             END IF; END $$;",
            name = embedded::APPLICATION_ROLE
        ))
        .await
        .context("cannot create the application role")?;
    ensure_database(&admin_url, OWNED_DATABASE).await?;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {role}",
            quote_ident(OWNED_DATABASE)
        ))
        .await
        .context("cannot hand the application database to its role")?;
    drop(admin);
    let mut database = AsyncPgConnection::establish(&owned.url(OWNED_DATABASE))
        .await
        .context("cannot connect to the application database")?;
    database
        .batch_execute(
            &include_str!("hand_over.sql")
                .replace("{role_name}", embedded::APPLICATION_ROLE)
                .replace("{role}", &role),
        )
        .await
        .context("cannot hand the schema to the application role")?;
    Ok(())
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The database the server runs on: the pool, plus the owned cluster when there is one.
pub struct Database {
    pub pool: DbPool,
    /// Where the pool connects (for connections outside it, such as the notification listener).
    pub url: String,
    /// The owned cluster, kept running by its supervisor; `None` with `DATABASE_URL`.
    owned: Option<supervisor::Supervision>,
}

impl Database {
    /// Connects to `DATABASE_URL`, or starts the owned cluster under the data dir; then migrates.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let (url, owned) = match &config.database_url {
            Some(url) => (url.expose().clone(), None),
            None => {
                let data_dir = config.data_dir.clone();
                let owned = tokio::task::spawn_blocking(move || {
                    embedded::OwnedPostgres::start(&data_dir, &embedded::StartOptions::default())
                })
                .await
                .context("the database start-up task stopped unexpectedly")??;
                if let Err(e) = prepare_owned(&owned).await {
                    stop_owned(owned).await;
                    return Err(e);
                }
                (owned.application_url(OWNED_DATABASE), Some(owned))
            }
        };
        if owned.is_none() {
            wait_for_server(&url, config.db_startup_wait).await?;
        }
        let migrated = run_migrations(&url).await;
        let pool = migrated.and_then(|applied| {
            if !applied.is_empty() {
                tracing::info!(count = applied.len(), "applied database migrations");
            }
            pool_for(config, &url)
        });
        match pool {
            Ok(pool) => Ok(Self {
                pool,
                url,
                owned: owned.map(supervisor::Supervision::start),
            }),
            Err(e) => {
                if let Some(owned) = owned {
                    stop_owned(owned).await;
                }
                Err(e)
            }
        }
    }

    /// Like [`Database::open`], but when another hub owns the cluster of this data directory, uses
    /// that running cluster instead of failing (for `migrate` and `create-admin` next to a server).
    pub async fn open_shared(config: &Config) -> anyhow::Result<Self> {
        match Self::open(config).await {
            Err(e) if e.downcast_ref::<embedded::InUse>().is_some() => {
                let url = embedded::running_url(&config.data_dir, OWNED_DATABASE).ok_or(e)?;
                tracing::info!(
                    "using the PostgreSQL of the hub already running on this data directory"
                );
                run_migrations(&url).await?;
                Ok(Self {
                    pool: pool_for(config, &url)?,
                    url,
                    owned: None,
                })
            }
            other => other,
        }
    }

    /// Resolves with the reason when the owned cluster is gone for good and cannot be restarted;
    /// never resolves otherwise (and never with `DATABASE_URL`).
    pub fn lost(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> {
        match &mut self.owned {
            Some(supervision) => Box::pin(supervision.lost()),
            None => Box::pin(std::future::pending()),
        }
    }

    /// Closes the pool and stops the owned cluster, if any.
    pub async fn close(self) {
        self.pool.close();
        if let Some(owned) = self.owned {
            owned.stop().await;
        }
    }
}

/// Stops a cluster that never came under supervision (its set-up failed).
async fn stop_owned(mut owned: embedded::OwnedPostgres) {
    supervisor::stop_in_background(move || owned.stop()).await;
}

/// A page read with one row more than asked (`first + 1`): the page, and whether more rows follow.
pub fn one_page<T>(mut rows: Vec<T>, first: i64) -> (Vec<T>, bool) {
    let limit = usize::try_from(first).unwrap_or(usize::MAX);
    let has_next = rows.len() > limit;
    rows.truncate(limit);
    (rows, has_next)
}
