//! Configuration: read once at start from the environment (optionally merged over a `KEY=VALUE` file),
//! validated as a whole, so a person sees every mistake at once in sentences they understand.
//!
//! Secrets that development may generate live in [`crate::secrets`]; this module only parses.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod checks;
mod load;
#[cfg(test)]
mod tests;

pub use checks::{parse_key_hex, weak_secret};

/// Where the server runs; production is strict about secrets and developer conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Local work: generated secrets, GraphiQL and introspection on, readable logs.
    Development,
    /// A deployment: secrets required, introspection and IDEs off unless enabled, JSON logs.
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Which browser origins may call the API (CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`). Safe for bearer-token APIs: no cookies are used.
    Any,
    /// Only these exact origins, e.g. `https://dashboard.example.com`.
    List(Vec<String>),
}

/// A block of addresses (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let network: std::net::IpAddr = address.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { network, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let (bits, network, ip) = match (self.network, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) => {
                (32, u128::from(u32::from(n)), u128::from(u32::from(i)))
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) => {
                (128, u128::from(n), u128::from(i))
            }
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (network >> shift) == (ip >> shift)
    }
}

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Limits on what one GraphQL request may cost; exceeding one answers `QUERY_TOO_COMPLEX`.
#[derive(Debug, Clone, Copy)]
pub struct GraphqlLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_aliases: usize,
    pub max_batch: usize,
    pub max_query_bytes: usize,
    /// Query text the automatic persisted queries may hold; 0 turns them off.
    pub persisted_queries_bytes: usize,
    /// Query points (see `graphql::cost`) each signed-in user and API key may spend a minute; 0: no
    /// budget.
    pub points_per_minute: u32,
    /// Queries per minute an anonymous client address may send (see `http::anonymous_pace`); 0: no limit.
    pub anonymous_queries_per_minute: u32,
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 5000,
            max_aliases: 30,
            max_batch: 10,
            max_query_bytes: 32 * 1024,
            persisted_queries_bytes: 4 * 1024 * 1024,
            anonymous_queries_per_minute: 120,
            points_per_minute: 60_000,
        }
    }
}

/// Default request threads on `cores` cores: one per core. With the owned PostgreSQL on the same two
/// cores, two threads served reads 10–40 % faster than one, at the same CPU per invocation and the
/// same open-loop latency (docs/performance.md, 2026-12-06).
fn worker_threads(cores: u64) -> u64 {
    cores.max(1)
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `DATABASE_URL`; `None` means "start and own a private PostgreSQL under the data dir".
    pub database_url: Option<Secret<String>>,
    /// `DATABASE_READ_URL`: a replica for reads that may lag (usage history and summaries, platform
    /// statistics); unset, they read from the primary.
    pub database_read_url: Option<Secret<String>>,
    pub db_pool_size: usize,
    pub db_acquire_timeout: Duration,
    /// `HUB_DB_STARTUP_WAIT_SECS`: how long a starting server waits for an external database that does
    /// not answer yet (starting, restarting, its name not yet resolvable) before it gives up.
    pub db_startup_wait: Duration,
    /// `HUB_WORKER_THREADS`: threads running requests. Default: one per core (see `worker_threads`).
    pub worker_threads: usize,
    /// `HUB_JWT_SECRET` as given; development generates one when absent (see `secrets`).
    pub jwt_secret: Option<Secret<String>>,
    /// `HUB_ENCRYPTION_KEY` as given (64 hex characters); same rule.
    pub encryption_key: Option<Secret<String>>,
    /// GraphQL introspection and the GraphiQL/Playground pages.
    pub introspection: bool,
    /// `HUB_IDE_ASSETS_URL`: where the IDE pages load their pinned scripts and styles from, laid out like
    /// the npm CDNs (`<base>/<package>@<version>/<file>`).
    pub ide_assets_url: String,
    /// `HUB_OTLP_ENDPOINT`: the OTLP/HTTP collector traces go to (`/v1/traces` is added); unset, no
    /// exporter runs.
    pub otlp_endpoint: Option<String>,
    pub cors_origins: Option<CorsOrigins>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub graphql: GraphqlLimits,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    pub payments: PaymentSettings,
    /// `HUB_ADMIN_EMAIL` + `HUB_ADMIN_PASSWORD`: an admin created at start if absent, never overwritten.
    pub admin_seed: Option<(String, Secret<String>)>,
    /// `HUB_DEMO_SEED`: serve the mock upstream and seed the demo tools (development only).
    pub demo_seed: bool,
    /// `HUB_DASHBOARD`: serve the reference dashboard at `/app` (and the pages mailed links open).
    pub dashboard: bool,
    pub gateway: GatewaySettings,
    /// Days raw usage rows are kept (daily rollups stay); 0 keeps them forever.
    pub usage_retention_days: u32,
    /// The bearer token `/metrics` asks for. Unset: `/metrics` is open in development and not served
    /// in production.
    pub metrics_token: Option<Secret<String>>,
    /// Until their email address is verified, users may sign in and verify but not invoke tools or
    /// create API keys.
    pub require_verified_email: bool,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers say who the client is; from anyone else
    /// those headers are ignored and the client is the connection's peer.
    pub trusted_proxies: Vec<Cidr>,
    /// Connection limits of HTTP and WebSocket clients.
    pub connections: ConnectionLimits,
    /// When `/health` says the process cannot do its job.
    pub liveness: LivenessLimits,
}

/// How long the database may stay silent, and a batch may run, before `/health` fails.
#[derive(Debug, Clone, Copy)]
pub struct LivenessLimits {
    pub database_silence: Duration,
    pub batch_running: Duration,
}

impl Default for LivenessLimits {
    fn default() -> Self {
        Self {
            database_silence: Duration::from_secs(60),
            batch_running: Duration::from_secs(60),
        }
    }
}

impl LivenessLimits {
    /// How often the database is probed: often enough to notice silence well within the limit.
    pub fn probe_every(&self) -> Duration {
        (self.database_silence / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// What one client connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers (slow clients are cut off).
    pub header_read_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// How long a WebSocket may wait before `connection_init` (then it closes with `4408`).
    pub ws_init_timeout: Duration,
    /// Operations one WebSocket may start (then it closes with `4429`).
    pub ws_max_operations: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            ws_init_timeout: Duration::from_secs(10),
            ws_max_operations: 100,
        }
    }
}

/// How the gateway treats failing upstreams.
#[derive(Debug, Clone, Copy)]
pub struct GatewaySettings {
    /// Consecutive failures that open a tool's circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit refuses calls before a probe.
    pub breaker_cooldown: Duration,
    /// The largest token count an upstream may report for one call; a count outside `0..=` this is
    /// ignored and the estimate charged instead (flagged), so no answer can make a call free or
    /// overflow the counters.
    pub max_tokens_per_call: i64,
    /// Whether tools may call loopback, link-local, private and unique-local addresses (development).
    pub allow_private_upstreams: bool,
    /// Whether plans' requests per minute are enforced on invocations.
    pub enforce_request_rates: bool,
}

/// Lifetimes of credentials and the cost of password hashing.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long a session (a refresh-token family) may be kept alive by refreshing, from its login.
    pub refresh_family_lifetime: Duration,
    pub reset_token_ttl: Duration,
    pub verify_token_ttl: Duration,
    /// Argon2id memory in KiB, iterations and lanes (OWASP: 19456 KiB, 2, 1).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// How many password hashes may run at once (default: the number of cores).
    pub max_concurrent_hashes: usize,
    /// The longest a password hash may expect to wait for its turn; beyond it the request is refused at
    /// once with `RATE_LIMITED` (load shedding) instead of queueing.
    pub max_hash_wait: Duration,
    /// New accounts per client address per hour (the second half of them slowed).
    pub registrations_per_hour: u32,
}

/// How paid plans are paid for (see `billing::payment`).
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// `HUB_PAYMENT_PROVIDER`.
    pub provider: PaymentProviderChoice,
    /// `HUB_PAYMENT_GRACE_DAYS`: how long a subscription whose payment failed keeps its plan.
    pub grace: Duration,
}

/// `HUB_PAYMENT_PROVIDER`: `stripe`, `manual`, or unset (`manual` in development; none in production,
/// where paid plans are then refused).
#[derive(Debug, Clone)]
pub enum PaymentProviderChoice {
    Unconfigured,
    Manual,
    Stripe(StripeSettings),
}

/// The Stripe account the hub bills through.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// `HUB_STRIPE_SECRET_KEY` (`sk_…` or a restricted `rk_…`).
    pub secret_key: Secret<String>,
    /// `HUB_STRIPE_WEBHOOK_SECRETS`: the endpoint's signing secrets (`whsec_…`), comma-separated, so a
    /// rotated secret and its successor both verify.
    pub webhook_secrets: Vec<Secret<String>>,
    /// `HUB_STRIPE_PRICE_PRO` and `HUB_STRIPE_PRICE_ENTERPRISE`: the monthly prices (`price_…`).
    pub price_pro: String,
    pub price_enterprise: String,
    /// `HUB_STRIPE_API_URL`: the API's base (a proxy, or a local fake in tests).
    pub api_url: String,
    /// How far a webhook's signed timestamp may be from now.
    pub tolerance: Duration,
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `HUB_SMTP_URL`; `None` writes each mail as an `.eml` file under `$HUB_DATA_DIR/mail/`.
    pub smtp_url: Option<Secret<String>>,
    pub from: String,
    /// Base of the links in mails (the dashboard's address).
    pub public_url: String,
}

/// Every problem found in the configuration, one sentence each.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// The npm CDN the IDE pages load their assets from unless `HUB_IDE_ASSETS_URL` names a mirror.
pub const DEFAULT_IDE_ASSETS_URL: &str = "https://cdn.jsdelivr.net/npm";

/// Minimum length of `HUB_JWT_SECRET` in production.
pub const MIN_SECRET_LEN: usize = 32;
