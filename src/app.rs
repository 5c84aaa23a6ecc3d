//! The shared state every handler and resolver reaches: the pool, the configuration, the keys and the
//! metrics handle. Cheap to clone; nothing in it is per-user.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::password::PasswordHasher;
use crate::auth::verified_tokens::VerifiedTokens;
use crate::billing::batch::{Reservations, Reserve};
use crate::billing::payment::Payments;
use crate::billing::stripe::StripeProvider;
use crate::cache::Caches;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, PaymentProviderChoice};
use crate::db::DbPool;
use crate::db::batch::Batcher;
use crate::db::vitals::Vitals;
use crate::gateway::breaker::Breakers;
use crate::gateway::meter::Meter;
use crate::mail::transport::Mailer;
use crate::pacing::batch::Pacer;
use crate::secrets::Keys;
use crate::telemetry::{self, LoaderStats};
use crate::usage::live::LiveUsage;

/// See the module documentation.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: DbPool,
    /// Reads that may lag behind writes (usage history and summaries, platform statistics): the
    /// replica of `DATABASE_READ_URL`, else `pool`. Whatever must see its own writes uses `pool`.
    pub read_pool: DbPool,
    pub keys: Arc<Keys>,
    /// Access tokens whose signature and claims verified, so a repeated token is not verified again.
    pub verified_tokens: Arc<VerifiedTokens>,
    pub metrics: PrometheusHandle,
    /// Bounds the operation-name label of the GraphQL metrics.
    pub operation_labels: Arc<telemetry::BoundedLabels>,
    pub hasher: Arc<PasswordHasher>,
    pub mailer: Arc<Mailer>,
    /// "Now" for billing decisions (tests move it by hand).
    pub clock: Arc<dyn Clock>,
    /// How paid plans are paid for.
    pub payments: Payments,
    /// The one HTTP client for upstream calls (connection reuse across all tools).
    pub http: reqwest::Client,
    /// A circuit breaker per tool.
    pub breakers: Arc<Breakers>,
    /// Bursts of upstream failures per tool, told to administrators.
    pub bursts: Arc<crate::gateway::bursts::Bursts>,
    /// Webhook deliveries this instance may have in flight at once (`webhooks::delivery`).
    pub webhook_slots: Arc<tokio::sync::Semaphore>,
    /// Writes invocations' metering in group-committed batches.
    pub meter: Meter,
    /// Calls metered since the roller last rolled the usage log up (it counts toward the next roll).
    pub roll_backlog: Arc<crate::usage::backlog::Backlog>,
    /// Reserves invocations' quota in batches.
    pub reservations: Reservations,
    /// Slices of busy users' quota that this instance grants calls from in memory.
    pub token_slices: Arc<crate::billing::slices::TokenSlices>,
    /// Paces anonymous addresses, in batches.
    pub pacer: Pacer,
    /// Live usage events for WebSocket subscribers.
    pub live: Arc<LiveUsage>,
    /// New in-app notifications from every instance, through the same listener.
    pub notices: Arc<crate::db::feed::Feed<crate::notifications::model::NotificationRow>>,
    /// API keys, users and tools, kept fresh by the same listener as `live`.
    pub caches: Arc<Caches>,
    /// Catalogue pages as answered, kept with the catalogue snapshot they were cut from.
    pub rendered_pages: Arc<crate::tools::rendered::RenderedPages>,
    pub loader_stats: Arc<LoaderStats>,
    /// When the database last answered and how long batches run, for liveness.
    pub vitals: Arc<Vitals>,
}

impl AppState {
    /// Must run inside a Tokio runtime (it starts the metering writers).
    pub fn new(config: Config, pool: DbPool, keys: Keys) -> anyhow::Result<Self> {
        let keys = Arc::new(keys);
        let http = reqwest::Client::builder()
            .user_agent(concat!("joyfull-hub/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(crate::gateway::destination::Resolver {
                allow_private: config.gateway.allow_private_upstreams,
            })
            .build()?;
        let vitals = Arc::new(Vitals::default());
        let roll_backlog = Arc::new(crate::usage::backlog::Backlog::default());
        let read_pool = match &config.database_read_url {
            Some(url) => crate::db::pool_for(&config, url.expose())?,
            None => pool.clone(),
        };
        Ok(Self {
            live: Arc::new(crate::usage::live::feed()),
            notices: Arc::new(crate::db::feed::Feed::new(
                crate::notifications::model::LIVE_CHANNEL,
            )),
            caches: Arc::new(Caches::default()),
            rendered_pages: Arc::default(),
            loader_stats: Arc::new(LoaderStats::default()),
            http,
            meter: Meter::start(pool.clone(), &vitals, Arc::clone(&roll_backlog)),
            roll_backlog,
            pacer: Pacer::start(pool.clone(), &vitals),
            reservations: Batcher::start(
                pool.clone(),
                Reserve {
                    enforce_rates: config.gateway.enforce_request_rates,
                },
                crate::billing::batch::WRITERS,
                "reservation",
                Arc::clone(&vitals),
            ),
            vitals,
            token_slices: Arc::default(),
            bursts: Arc::default(),
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(
                crate::webhooks::model::IN_FLIGHT,
            )),
            breakers: Arc::new(Breakers::new(
                config.gateway.breaker_threshold,
                config.gateway.breaker_cooldown,
            )),
            payments: payments(&config)?,
            hasher: Arc::new(PasswordHasher::new(&config.auth)?),
            mailer: Arc::new(Mailer::from_config(&config)?),
            config: Arc::new(config),
            read_pool,
            pool,
            verified_tokens: Arc::new(VerifiedTokens::new(Arc::clone(&keys))),
            keys,
            metrics: telemetry::metrics_handle(),
            operation_labels: Arc::new(telemetry::BoundedLabels::new(200)),
            clock: Arc::new(SystemClock),
        })
    }
}

/// The payment provider `config` names.
fn payments(config: &Config) -> anyhow::Result<Payments> {
    Ok(match &config.payments.provider {
        PaymentProviderChoice::Unconfigured => Payments::Unconfigured,
        PaymentProviderChoice::Manual => {
            if config.environment == crate::config::Environment::Production {
                tracing::warn!(
                    "HUB_PAYMENT_PROVIDER=manual in production: every paid plan is granted WITHOUT PAYMENT"
                );
            }
            Payments::Manual
        }
        PaymentProviderChoice::Stripe(settings) => {
            Payments::Provider(Arc::new(StripeProvider::new(settings.clone())?))
        }
    })
}
