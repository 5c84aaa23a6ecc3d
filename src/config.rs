//! Configuration: read once at start from the environment (optionally merged over a `KEY=VALUE` file),
//! validated as a whole, so a person sees every mistake at once in sentences they understand.
//!
//! Secrets that development may generate live in [`crate::secrets`]; this module only parses.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 1000,
            max_aliases: 30,
            max_batch: 10,
            max_query_bytes: 32 * 1024,
        }
    }
}

/// Default request threads on `cores` cores. A PostgreSQL the hub owns runs on the same cores, and
/// every call waits for it: a worker thread per core leaves it none to itself, so threads and database
/// processes take turns (on 2 cores, one worker used a fifth less CPU per invocation and cut its p99).
fn worker_threads(cores: u64, owned_database: bool) -> u64 {
    if owned_database {
        cores.saturating_sub(1).max(1)
    } else {
        cores.max(1)
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `DATABASE_URL`; `None` means "start and own a private PostgreSQL under the data dir".
    pub database_url: Option<Secret<String>>,
    pub db_pool_size: usize,
    pub db_acquire_timeout: Duration,
    /// `HUB_WORKER_THREADS`: threads running requests. Default: one per core, less one when the hub
    /// starts its own PostgreSQL, which then shares this machine's cores (see `worker_threads`).
    pub worker_threads: usize,
    /// `HUB_JWT_SECRET` as given; development generates one when absent (see `secrets`).
    pub jwt_secret: Option<Secret<String>>,
    /// `HUB_ENCRYPTION_KEY` as given (64 hex characters); same rule.
    pub encryption_key: Option<Secret<String>>,
    /// GraphQL introspection and the GraphiQL/Playground pages.
    pub introspection: bool,
    pub cors_origins: Option<CorsOrigins>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub graphql: GraphqlLimits,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    /// `HUB_ADMIN_EMAIL` + `HUB_ADMIN_PASSWORD`: an admin created at start if absent, never overwritten.
    pub admin_seed: Option<(String, Secret<String>)>,
    /// `HUB_DEMO_SEED`: serve the mock upstream and seed the demo tools (development only).
    pub demo_seed: bool,
    pub gateway: GatewaySettings,
    /// Days raw usage rows are kept (daily rollups stay); 0 keeps them forever.
    pub usage_retention_days: u32,
}

/// How the gateway treats failing upstreams.
#[derive(Debug, Clone, Copy)]
pub struct GatewaySettings {
    /// Consecutive failures that open a tool's circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit refuses calls before a probe.
    pub breaker_cooldown: Duration,
}

/// Lifetimes of credentials and the cost of password hashing.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
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

/// Minimum length of `HUB_JWT_SECRET` in production.
pub const MIN_SECRET_LEN: usize = 32;

impl Config {
    /// Reads the process environment, over the optional `KEY=VALUE` file named by `HUB_CONFIG_FILE`
    /// (or `file` when given on the command line). Environment variables win over the file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("HUB_CONFIG_FILE").map(PathBuf::from));
        let mut merged = match file {
            Some(path) => read_env_file(&path).map_err(|e| ConfigError(vec![e]))?,
            None => HashMap::new(),
        };
        merged.extend(env);
        Self::from_lookup(|key| merged.get(key).cloned())
    }

    /// Parses and validates configuration from any key lookup (the environment, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut errors = Vec::new();
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let environment = match get("HUB_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                errors.push(format!(
                    "HUB_ENV={other} is not an environment: use `development` or `production`"
                ));
                Environment::Development
            }
        };
        let production = environment == Environment::Production;

        let listen = match get("HUB_LISTEN") {
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
            Some(v) => v.parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "HUB_LISTEN={v} is not a socket address: write it like 127.0.0.1:8000 or 0.0.0.0:8000"
                ));
                SocketAddr::from(([127, 0, 0, 1], 8000))
            }),
        };
        let data_dir = PathBuf::from(get("HUB_DATA_DIR").unwrap_or_else(|| "./data".into()));

        let database_url = get("DATABASE_URL").map(Secret::new);
        if let Some(url) = &database_url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                errors.push(
                    "DATABASE_URL must be a PostgreSQL URL such as postgres://user:password@host:5432/dbname"
                        .into(),
                );
            }
        }

        let mut number = |key: &str, default: u64, min: u64, max: u64| -> u64 {
            match get(key) {
                None => default,
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        errors.push(format!(
                            "{key}={v} must be a whole number from {min} to {max} (default {default})"
                        ));
                        default
                    }
                },
            }
        };
        let db_pool_size = number("HUB_DB_POOL_SIZE", 16, 1, 1000) as usize;
        let db_acquire_timeout = Duration::from_secs(number("HUB_DB_TIMEOUT_SECS", 5, 1, 300));
        let request_timeout = Duration::from_secs(number("HUB_REQUEST_TIMEOUT_SECS", 30, 1, 3600));
        let max_body_bytes =
            number("HUB_MAX_BODY_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024) as usize;
        let shutdown_timeout = Duration::from_secs(number("HUB_SHUTDOWN_TIMEOUT_SECS", 20, 1, 600));
        let d = GraphqlLimits::default();
        let graphql = GraphqlLimits {
            max_depth: number("HUB_GRAPHQL_MAX_DEPTH", d.max_depth as u64, 2, 100) as usize,
            max_complexity: number(
                "HUB_GRAPHQL_MAX_COMPLEXITY",
                d.max_complexity as u64,
                10,
                1_000_000,
            ) as usize,
            max_aliases: number("HUB_GRAPHQL_MAX_ALIASES", d.max_aliases as u64, 0, 10_000)
                as usize,
            max_batch: number("HUB_GRAPHQL_MAX_BATCH", d.max_batch as u64, 1, 1000) as usize,
            max_query_bytes: number(
                "HUB_GRAPHQL_MAX_QUERY_BYTES",
                d.max_query_bytes as u64,
                256,
                1024 * 1024,
            ) as usize,
        };

        let usage_retention_days = number("HUB_USAGE_RETENTION_DAYS", 400, 0, 36_500) as u32;
        let gateway = GatewaySettings {
            breaker_threshold: number("HUB_BREAKER_THRESHOLD", 5, 1, 1000) as u32,
            breaker_cooldown: Duration::from_millis(number(
                "HUB_BREAKER_COOLDOWN_MS",
                30_000,
                10,
                3_600_000,
            )),
        };
        let cores = std::thread::available_parallelism().map_or(2, usize::from) as u64;
        let worker_threads = number(
            "HUB_WORKER_THREADS",
            worker_threads(cores, database_url.is_none()),
            1,
            1024,
        ) as usize;
        let auth = AuthSettings {
            access_token_ttl: Duration::from_secs(number(
                "HUB_ACCESS_TOKEN_TTL_SECS",
                900,
                30,
                86_400,
            )),
            refresh_token_ttl: Duration::from_secs(
                number("HUB_REFRESH_TOKEN_TTL_DAYS", 30, 1, 365) * 86_400,
            ),
            reset_token_ttl: Duration::from_secs(
                number("HUB_RESET_TOKEN_TTL_HOURS", 24, 1, 168) * 3600,
            ),
            verify_token_ttl: Duration::from_secs(
                number("HUB_VERIFY_TOKEN_TTL_HOURS", 72, 1, 720) * 3600,
            ),
            argon2_memory_kib: number("HUB_ARGON2_MEMORY_KIB", 19_456, 1024, 1_048_576) as u32,
            argon2_iterations: number("HUB_ARGON2_ITERATIONS", 2, 1, 20) as u32,
            argon2_parallelism: number("HUB_ARGON2_PARALLELISM", 1, 1, 16) as u32,
            max_concurrent_hashes: number("HUB_MAX_CONCURRENT_HASHES", cores, 1, 256) as usize,
            registrations_per_hour: number("HUB_REGISTRATIONS_PER_HOUR", 20, 1, 1_000_000) as u32,
            max_hash_wait: Duration::from_millis(number("HUB_MAX_HASH_WAIT_MS", 250, 1, 60_000)),
        };

        let mut flag = |key: &str, default: bool| -> bool {
            match get(key).map(|v| v.to_ascii_lowercase()).as_deref() {
                None => default,
                Some("1" | "true" | "yes" | "on") => true,
                Some("0" | "false" | "no" | "off") => false,
                Some(other) => {
                    errors.push(format!("{key}={other} must be true or false"));
                    default
                }
            }
        };
        let introspection = flag("HUB_INTROSPECTION", !production);
        let demo_seed = flag("HUB_DEMO_SEED", !production);

        let log_format = match get("HUB_LOG_FORMAT").as_deref() {
            None if production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some("pretty" | "text") => LogFormat::Pretty,
            Some(other) => {
                errors.push(format!("HUB_LOG_FORMAT={other} must be `pretty` or `json`"));
                LogFormat::Pretty
            }
        };

        let cors_origins = match get("HUB_CORS_ORIGINS") {
            // Bearer credentials, no cookies: any origin is harmless while developing.
            None if production => None,
            None => Some(CorsOrigins::Any),
            Some(v) if v == "*" => Some(CorsOrigins::Any),
            Some(v) => {
                let list: Vec<String> = v.split(',').map(|o| o.trim().to_owned()).collect();
                for origin in &list {
                    let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                        && !origin.ends_with('/')
                        && http_header_safe(origin);
                    if !valid {
                        errors.push(format!(
                            "HUB_CORS_ORIGINS entry `{origin}` must be an origin like https://app.example.com (scheme and host, no path or trailing slash), or the whole value `*`"
                        ));
                    }
                }
                Some(CorsOrigins::List(list))
            }
        };

        let smtp_url = get("HUB_SMTP_URL").map(Secret::new);
        if let Some(url) = &smtp_url
            && !(url.expose().starts_with("smtp://") || url.expose().starts_with("smtps://"))
        {
            errors.push(
                "HUB_SMTP_URL must look like smtp://host:port or smtps://user:password@host".into(),
            );
        }
        let public_url = get("HUB_PUBLIC_URL")
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            errors.push(format!(
                "HUB_PUBLIC_URL={public_url} must be an http(s) address, e.g. https://hub.example.com"
            ));
        }
        let mail = MailSettings {
            smtp_url,
            from: get("HUB_MAIL_FROM")
                .unwrap_or_else(|| "Joyfull Hub <no-reply@joyfull.local>".into()),
            public_url,
        };
        let admin_seed = match (get("HUB_ADMIN_EMAIL"), get("HUB_ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => Some((email, Secret::new(password))),
            (None, None) => None,
            _ => {
                errors.push(
                    "HUB_ADMIN_EMAIL and HUB_ADMIN_PASSWORD go together: set both or neither"
                        .into(),
                );
                None
            }
        };

        if production && demo_seed {
            errors.push(
                "HUB_DEMO_SEED cannot be on when HUB_ENV=production: demo tools and the mock upstream are for development".into(),
            );
        }

        let jwt_secret = get("HUB_JWT_SECRET").map(Secret::new);
        match &jwt_secret {
            Some(secret) => {
                if production && let Some(why) = weak_secret(secret.expose()) {
                    errors.push(format!(
                        "HUB_JWT_SECRET is too weak for production: {why}; generate one with `openssl rand -hex 32`"
                    ));
                }
            }
            None if production => errors.push(
                "HUB_JWT_SECRET is required when HUB_ENV=production: set at least 32 random characters, e.g. `openssl rand -hex 32`"
                    .into(),
            ),
            None => {}
        }
        let encryption_key = get("HUB_ENCRYPTION_KEY").map(Secret::new);
        match &encryption_key {
            Some(key) if parse_key_hex(key.expose()).is_none() => errors.push(
                "HUB_ENCRYPTION_KEY must be 64 hexadecimal characters (32 random bytes), e.g. `openssl rand -hex 32`"
                    .into(),
            ),
            Some(_) => {}
            None if production => errors.push(
                "HUB_ENCRYPTION_KEY is required when HUB_ENV=production: set 64 hexadecimal characters, e.g. `openssl rand -hex 32`"
                    .into(),
            ),
            None => {}
        }

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Self {
            environment,
            listen,
            data_dir,
            database_url,
            db_pool_size,
            worker_threads,
            db_acquire_timeout,
            jwt_secret,
            encryption_key,
            introspection,
            cors_origins,
            request_timeout,
            max_body_bytes,
            shutdown_timeout,
            log_format,
            graphql,
            auth,
            mail,
            admin_seed,
            demo_seed,
            gateway,
            usage_retention_days,
        })
    }
}

/// Why a secret is too weak, or `None` when it is acceptable.
pub fn weak_secret(secret: &str) -> Option<&'static str> {
    const KNOWN_WEAK: [&str; 6] = [
        "secret", "changeme", "password", "jwt", "example", "default",
    ];
    let lower = secret.to_ascii_lowercase();
    if secret.len() < MIN_SECRET_LEN {
        return Some("it is shorter than 32 characters");
    }
    let mut distinct: Vec<char> = secret.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 10 {
        return Some("it repeats too few different characters");
    }
    if KNOWN_WEAK.iter().any(|w| lower.contains(w)) {
        return Some("it contains a well-known placeholder word");
    }
    None
}

/// Parses a 32-byte key written as 64 hexadecimal characters.
pub fn parse_key_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

fn http_header_safe(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads a `KEY=VALUE` file: blank lines and `#` comments are skipped, values may be quoted.
fn read_env_file(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let mut values = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "{}:{}: expected KEY=VALUE",
                path.display(),
                number + 1
            ));
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        values.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_a_development_server_on_port_8000() {
        let config = config(&[]).unwrap();
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.listen.to_string(), "127.0.0.1:8000");
        assert!(config.introspection);
        assert_eq!(config.cors_origins, Some(CorsOrigins::Any));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn production_refuses_missing_secrets_and_names_both() {
        let err = config(&[("HUB_ENV", "production")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("HUB_JWT_SECRET is required"), "{text}");
        assert!(text.contains("HUB_ENCRYPTION_KEY is required"), "{text}");
    }

    #[test]
    fn production_refuses_a_weak_jwt_secret() {
        let key = "ab".repeat(32);
        let err = config(&[
            ("HUB_ENV", "production"),
            (
                "HUB_JWT_SECRET",
                "changeme-changeme-changeme-changeme-123456789",
            ),
            ("HUB_ENCRYPTION_KEY", &key),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("too weak"), "{err}");
        let err = config(&[
            ("HUB_ENV", "production"),
            ("HUB_JWT_SECRET", "short"),
            ("HUB_ENCRYPTION_KEY", &key),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("shorter than 32"), "{err}");
    }

    #[test]
    fn production_with_strong_secrets_turns_conveniences_off() {
        let config = config(&[
            ("HUB_ENV", "production"),
            ("HUB_JWT_SECRET", "k3J9x2Qw8Zr5Tn1Vb7Mc4Ld6Fs0Gh2Pj9Ya5Ue"),
            (
                "HUB_ENCRYPTION_KEY",
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            ),
        ])
        .unwrap();
        assert!(!config.introspection);
        assert_eq!(config.cors_origins, None);
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(format!("{config:?}").contains("[redacted]"));
        assert!(!format!("{config:?}").contains("k3J9x2Qw8"));
    }

    #[test]
    fn an_owned_database_keeps_a_core_for_itself() {
        assert_eq!(worker_threads(2, true), 1);
        assert_eq!(worker_threads(1, true), 1);
        assert_eq!(worker_threads(8, true), 7);
        assert_eq!(worker_threads(2, false), 2);
        let external = config(&[("DATABASE_URL", "postgres://h/db")]).unwrap();
        let owned = config(&[]).unwrap();
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        assert_eq!(external.worker_threads, cores);
        assert_eq!(owned.worker_threads, cores.saturating_sub(1).max(1));
        let set = config(&[("HUB_WORKER_THREADS", "3")]).unwrap();
        assert_eq!(set.worker_threads, 3);
        assert!(config(&[("HUB_WORKER_THREADS", "0")]).is_err());
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let err = config(&[
            ("HUB_LISTEN", "nowhere"),
            ("HUB_DB_POOL_SIZE", "0"),
            ("HUB_INTROSPECTION", "maybe"),
            ("HUB_CORS_ORIGINS", "https://ok.example, ftp://bad/"),
            ("DATABASE_URL", "mysql://x"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
    }

    #[test]
    fn a_config_file_is_parsed_with_quotes_and_comments() {
        let dir = std::env::temp_dir().join(format!("jh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hub.env");
        std::fs::write(
            &path,
            "# comment\nHUB_LISTEN=\"0.0.0.0:9000\"\nexport HUB_ENV='development'\n",
        )
        .unwrap();
        let values = read_env_file(&path).unwrap();
        assert_eq!(values.get("HUB_LISTEN").unwrap(), "0.0.0.0:9000");
        assert_eq!(values.get("HUB_ENV").unwrap(), "development");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
