//! Reading the configuration: the environment over an optional `KEY=VALUE` file, every value parsed and
//! every mistake collected, so one start-up reports them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::{http_header_safe, is_plain_http_url, parse_key_hex, weak_secret};
use super::*;

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
        let database_read_url = get("DATABASE_READ_URL").map(Secret::new);
        for (key, url) in [
            ("DATABASE_URL", &database_url),
            ("DATABASE_READ_URL", &database_read_url),
        ] {
            if let Some(url) = url {
                let url = url.expose();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    errors.push(format!(
                        "{key} must be a PostgreSQL URL such as postgres://user:password@host:5432/dbname"
                    ));
                }
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
        let db_startup_wait = Duration::from_secs(number("HUB_DB_STARTUP_WAIT_SECS", 60, 0, 3600));
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
            points_per_minute: number(
                "HUB_QUERY_POINTS_PER_MINUTE",
                u64::from(d.points_per_minute),
                0,
                1_000_000_000,
            ) as u32,
            anonymous_queries_per_minute: number(
                "HUB_ANONYMOUS_QUERIES_PER_MINUTE",
                u64::from(d.anonymous_queries_per_minute),
                0,
                1_000_000,
            ) as u32,
            max_batch: number("HUB_GRAPHQL_MAX_BATCH", d.max_batch as u64, 1, 1000) as usize,
            max_query_bytes: number(
                "HUB_GRAPHQL_MAX_QUERY_BYTES",
                d.max_query_bytes as u64,
                256,
                1024 * 1024,
            ) as usize,
            persisted_queries_bytes: number(
                "HUB_PERSISTED_QUERIES_BYTES",
                d.persisted_queries_bytes as u64,
                0,
                1024 * 1024 * 1024,
            ) as usize,
        };

        let usage_retention_days = number("HUB_USAGE_RETENTION_DAYS", 400, 0, 36_500) as u32;
        let breaker_threshold = number("HUB_BREAKER_THRESHOLD", 5, 1, 1000) as u32;
        let breaker_cooldown =
            Duration::from_millis(number("HUB_BREAKER_COOLDOWN_MS", 30_000, 10, 3_600_000));
        let d = LivenessLimits::default();
        let liveness = LivenessLimits {
            database_silence: Duration::from_secs(number(
                "HUB_LIVENESS_DB_SECS",
                d.database_silence.as_secs(),
                1,
                86_400,
            )),
            batch_running: Duration::from_secs(number(
                "HUB_LIVENESS_BATCH_SECS",
                d.batch_running.as_secs(),
                1,
                86_400,
            )),
        };
        let d = ConnectionLimits::default();
        let connections = ConnectionLimits {
            header_read_timeout: Duration::from_secs(number(
                "HUB_HEADER_READ_TIMEOUT_SECS",
                d.header_read_timeout.as_secs(),
                1,
                300,
            )),
            max_connections: number(
                "HUB_MAX_CONNECTIONS",
                d.max_connections as u64,
                1,
                1_000_000,
            ) as usize,
            ws_init_timeout: Duration::from_secs(number(
                "HUB_WS_INIT_TIMEOUT_SECS",
                d.ws_init_timeout.as_secs(),
                1,
                300,
            )),
            ws_max_operations: number(
                "HUB_WS_MAX_OPERATIONS",
                d.ws_max_operations as u64,
                1,
                100_000,
            ) as usize,
        };
        let max_tokens_per_call =
            number("HUB_MAX_TOKENS_PER_CALL", 10_000_000, 1, 1_000_000_000_000) as i64;
        let cores = std::thread::available_parallelism().map_or(2, usize::from) as u64;
        let worker_threads = number("HUB_WORKER_THREADS", worker_threads(cores), 1, 1024) as usize;
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
            refresh_family_lifetime: Duration::from_secs(
                number("HUB_SESSION_MAX_DAYS", 90, 1, 3650) * 86_400,
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

        let ide_assets_url = get("HUB_IDE_ASSETS_URL")
            .unwrap_or_else(|| DEFAULT_IDE_ASSETS_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        if !is_plain_http_url(&ide_assets_url) {
            errors.push(format!(
                "HUB_IDE_ASSETS_URL={ide_assets_url} must be an http(s) URL without quotes, spaces or angle brackets, such as {DEFAULT_IDE_ASSETS_URL}"
            ));
        }
        let otlp_endpoint = get("HUB_OTLP_ENDPOINT");
        if let Some(endpoint) = &otlp_endpoint
            && !is_plain_http_url(endpoint)
        {
            errors.push(format!(
                "HUB_OTLP_ENDPOINT={endpoint} must be the http(s) URL of an OTLP collector, such as http://127.0.0.1:4318"
            ));
        }
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
        let dashboard = flag("HUB_DASHBOARD", !production);
        let require_verified_email = flag("HUB_REQUIRE_VERIFIED_EMAIL", production);
        let gateway = GatewaySettings {
            breaker_threshold,
            breaker_cooldown,
            max_tokens_per_call,
            allow_private_upstreams: flag("HUB_ALLOW_PRIVATE_UPSTREAMS", !production),
            enforce_request_rates: flag("HUB_ENFORCE_REQUEST_RATES", true),
        };

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

        let trusted_proxies = get("HUB_TRUSTED_PROXIES")
            .map(|v| {
                v.split(',')
                    .filter(|entry| !entry.trim().is_empty())
                    .filter_map(|entry| {
                        let parsed = Cidr::parse(entry);
                        if parsed.is_none() {
                            errors.push(format!(
                                "HUB_TRUSTED_PROXIES entry `{}` must be an address or a block such as 10.0.0.0/8",
                                entry.trim()
                            ));
                        }
                        parsed
                    })
                    .collect()
            })
            .unwrap_or_default();

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
        let metrics_token = get("HUB_METRICS_TOKEN").map(Secret::new);
        if let Some(token) = &metrics_token
            && token.expose().len() < 16
        {
            errors.push(
                "HUB_METRICS_TOKEN must have at least 16 characters, e.g. `openssl rand -hex 16`"
                    .into(),
            );
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

        let payments = payment_settings(&get, production, &mut errors);

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Self {
            environment,
            listen,
            data_dir,
            database_url,
            database_read_url,
            db_pool_size,
            worker_threads,
            db_acquire_timeout,
            db_startup_wait,
            jwt_secret,
            encryption_key,
            introspection,
            ide_assets_url,
            otlp_endpoint,
            liveness,
            cors_origins,
            request_timeout,
            max_body_bytes,
            shutdown_timeout,
            log_format,
            graphql,
            auth,
            mail,
            payments,
            admin_seed,
            demo_seed,
            dashboard,
            gateway,
            usage_retention_days,
            metrics_token,
            require_verified_email,
            trusted_proxies,
            connections,
        })
    }
}

/// Reads a `KEY=VALUE` file: blank lines and `#` comments are skipped, values may be quoted.
pub(super) fn read_env_file(path: &Path) -> Result<HashMap<String, String>, String> {
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

/// `HUB_PAYMENT_PROVIDER` and what it needs.
fn payment_settings(
    get: &impl Fn(&str) -> Option<String>,
    production: bool,
    errors: &mut Vec<String>,
) -> PaymentSettings {
    let grace_days = match get("HUB_PAYMENT_GRACE_DAYS") {
        None => 7,
        Some(v) => match v.parse::<u64>() {
            Ok(days) if days <= 60 => days,
            _ => {
                errors.push(format!(
                    "HUB_PAYMENT_GRACE_DAYS={v} must be a whole number of days from 0 to 60"
                ));
                7
            }
        },
    };
    let provider = match get("HUB_PAYMENT_PROVIDER").as_deref() {
        None if production => PaymentProviderChoice::Unconfigured,
        None | Some("manual") => PaymentProviderChoice::Manual,
        Some("none") => PaymentProviderChoice::Unconfigured,
        Some("stripe") => stripe_settings(get, production, errors),
        Some(other) => {
            errors.push(format!(
                "HUB_PAYMENT_PROVIDER={other} is not a provider: use `stripe`, `manual` (development) or `none`"
            ));
            PaymentProviderChoice::Unconfigured
        }
    };
    if !matches!(provider, PaymentProviderChoice::Stripe(_)) {
        for key in [
            "HUB_STRIPE_SECRET_KEY",
            "HUB_STRIPE_WEBHOOK_SECRETS",
            "HUB_STRIPE_PRICE_PRO",
            "HUB_STRIPE_PRICE_ENTERPRISE",
        ] {
            if get(key).is_some() {
                errors.push(format!(
                    "{key} is set but HUB_PAYMENT_PROVIDER is not `stripe`: set HUB_PAYMENT_PROVIDER=stripe to bill through Stripe"
                ));
            }
        }
    }
    PaymentSettings {
        provider,
        grace: Duration::from_secs(grace_days * 24 * 3600),
    }
}

fn stripe_settings(
    get: &impl Fn(&str) -> Option<String>,
    production: bool,
    errors: &mut Vec<String>,
) -> PaymentProviderChoice {
    let mut required = |key: &str, prefixes: &[&str], example: &str| -> String {
        match get(key) {
            Some(v) if prefixes.iter().any(|p| v.starts_with(p)) && http_header_safe(&v) => v,
            Some(_) => {
                errors.push(format!("{key} must start with {}", prefixes.join(" or ")));
                String::new()
            }
            None => {
                errors.push(format!(
                    "{key} is required with HUB_PAYMENT_PROVIDER=stripe (from the Stripe dashboard, e.g. {example})"
                ));
                String::new()
            }
        }
    };
    let secret_key = required("HUB_STRIPE_SECRET_KEY", &["sk_", "rk_"], "sk_live_…");
    let price_pro = required("HUB_STRIPE_PRICE_PRO", &["price_"], "price_1Pro…");
    let price_enterprise = required("HUB_STRIPE_PRICE_ENTERPRISE", &["price_"], "price_1Ent…");
    let webhook_secrets: Vec<Secret<String>> = get("HUB_STRIPE_WEBHOOK_SECRETS")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Secret::new(s.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    if webhook_secrets.is_empty() {
        errors.push(
            "HUB_STRIPE_WEBHOOK_SECRETS is required with HUB_PAYMENT_PROVIDER=stripe: the webhook endpoint's signing secret (whsec_…), several comma-separated while rotating"
                .into(),
        );
    } else if webhook_secrets
        .iter()
        .any(|s| !s.expose().starts_with("whsec_"))
    {
        errors.push("each of HUB_STRIPE_WEBHOOK_SECRETS must start with whsec_".into());
    }
    if !price_pro.is_empty() && price_pro == price_enterprise {
        errors.push(
            "HUB_STRIPE_PRICE_PRO and HUB_STRIPE_PRICE_ENTERPRISE must be different prices".into(),
        );
    }
    let api_url = get("HUB_STRIPE_API_URL")
        .unwrap_or_else(|| "https://api.stripe.com".into())
        .trim_end_matches('/')
        .to_owned();
    if !is_plain_http_url(&api_url) || (production && !api_url.starts_with("https://")) {
        errors.push(format!(
            "HUB_STRIPE_API_URL={api_url} must be an https address (http is accepted outside production)"
        ));
    }
    PaymentProviderChoice::Stripe(StripeSettings {
        secret_key: Secret::new(secret_key),
        webhook_secrets,
        price_pro,
        price_enterprise,
        api_url,
        tolerance: Duration::from_secs(300),
    })
}
