//! The test application: the real router on a random port, over a database of its own.

pub mod browser;
pub mod db;
pub mod fake_stripe;
pub mod faulty_proxy;
pub mod folds;
pub mod metered;
pub mod receiver;
pub mod rolls;
pub mod separate_server;
pub mod smtp;
pub mod sse;
pub mod upstream;
pub mod webdriver;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use joyfull_hub::app::AppState;
use joyfull_hub::clock::ManualClock;
use joyfull_hub::config::{Config, Secret};
use joyfull_hub::secrets::Keys;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use db::TestDb;

/// A password that satisfies the policy.
pub const PASSWORD: &str = "Corr3ct-Horse!";

/// See [`TestApp::catalogue`].
pub struct Catalogue {
    pub root: TestUser,
    pub tool: String,
    pub user: TestUser,
}

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub state: AppState,
    pub data_dir: PathBuf,
    /// Billing's clock: stands still until a test moves it.
    pub clock: Arc<ManualClock>,
    background: Option<joyfull_hub::Background>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A registered user and their session.
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// The application with the default (development) configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// The application with a configuration adjusted by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let db = TestDb::create().await;
        let data_dir = db::test_root().join(format!(
            "app{}-{}",
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        ));
        let mut config = Config::from_lookup(|_| None).expect("the default configuration");
        config.database_url = Some(Secret::new(db.url.clone()));
        config.data_dir = data_dir.clone();
        config.db_pool_size = 4;
        config.db_acquire_timeout = Duration::from_secs(2);
        // Cheaper hashing keeps the suite fast; the benchmark measures the production parameters.
        config.auth.argon2_memory_kib = 4096;
        config.auth.argon2_iterations = 1;
        // Most tests call tools many times a second on the Free plan (10 calls a minute); the tests of
        // request rates (`request_rates.rs`) turn enforcement back on.
        config.gateway.enforce_request_rates = false;
        // Likewise for anonymous queries from 127.0.0.1 (`anonymous_pace.rs` tests them).
        config.graphql.anonymous_queries_per_minute = 0;
        // And for query points (`query_cost.rs` tests them).
        config.graphql.points_per_minute = 0;
        configure(&mut config);
        // A test may point the app at a server of its own; the test database then only holds nothing.
        let url = config
            .database_url
            .as_ref()
            .map_or_else(|| db.url.clone(), |url| url.expose().clone());
        let pool = joyfull_hub::db::pool_for(&config, &url).expect("a pool");
        // Instances that share a database share their keys when the test gives them.
        let keys = match (&config.jwt_secret, &config.encryption_key) {
            (Some(_), Some(_)) => Keys::resolve(&config).expect("the given keys"),
            _ => Keys::generate(),
        };
        let mut state = AppState::new(config, pool, keys).expect("the application state");
        // Microseconds, as PostgreSQL stores them, so times read back compare equal.
        let clock = Arc::new(ManualClock::new(chrono::SubsecRound::trunc_subsecs(
            chrono::Utc::now(),
            6,
        )));
        state.clock = clock.clone();
        let background = joyfull_hub::start_background(&state, &url);
        let router = joyfull_hub::http::router(state.clone());
        let limits = state.config.connections;

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let address = listener.local_addr().expect("the bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(joyfull_hub::serve_on(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
            limits,
        ));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            address,
            client,
            db,
            state,
            data_dir,
            clock,
            background: Some(background),
            stop: Some(stop),
        }
    }

    /// Stops this instance's background work and server at once, as if its process died; its database
    /// stays for other instances.
    pub fn crash(&mut self) {
        self.background.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Billing's "now".
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use joyfull_hub::clock::Clock;
        self.clock.now()
    }

    /// Settles a reservation with `used` tokens exactly as an invocation does: through the meter,
    /// with a usage row (of a tool made for the purpose) in the same transaction. `used` 0 releases it.
    pub async fn settle(&self, reservation: joyfull_hub::billing::model::Reservation, used: i64) {
        use joyfull_hub::gateway::meter::Settlement;
        use joyfull_hub::tools::model::NewTool;
        use joyfull_hub::usage::model::{InvocationStatus, UsageEvent};

        let tool = NewTool {
            id: uuid::Uuid::now_v7(),
            slug: format!("settle-{}", uuid::Uuid::new_v4().simple()),
            name: "Settlement test".into(),
            description: String::new(),
            usage_notes: String::new(),
            category: "test".into(),
            endpoint: "http://127.0.0.1:9/".into(),
            method: "POST".into(),
            headers: serde_json::json!([]),
            timeout_ms: 1000,
            tokens_path: String::new(),
            estimated_tokens: 1,
            max_tokens_per_call: joyfull_hub::tools::service::DEFAULT_MAX_TOKENS_PER_CALL,
            min_tier: joyfull_hub::billing::model::PlanTier::Free,
            enabled: true,
            streams: false,
        };
        joyfull_hub::tools::service::seed(&self.state, &tool)
            .await
            .unwrap();
        let user: uuid::Uuid = self
            .sql_text(&format!(
                "SELECT user_id::text AS t FROM subscriptions WHERE id = '{}'",
                reservation.subscription_id
            ))
            .await
            .parse()
            .unwrap();
        self.state
            .meter
            .write(Settlement {
                event: UsageEvent {
                    id: uuid::Uuid::now_v7(),
                    user_id: user,
                    api_key_id: None,
                    tool_id: tool.id,
                    subscription_id: Some(reservation.subscription_id),
                    tokens_used: used,
                    tokens_estimated: false,
                    status: if used > 0 {
                        InvocationStatus::Success
                    } else {
                        InvocationStatus::Error
                    },
                    error_code: None,
                    latency_ms: 1,
                    created_at: self.clock_now(),
                    tokens_overrun: 0,
                },
                tier: Some(joyfull_hub::billing::model::PlanTier::Free),
                reservation: Some(reservation),
                limited_key: None,
                key: None,
            })
            .await
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// POSTs a GraphQL request and returns the response.
    pub async fn post_graphql(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/graphql"))
            .json(body)
            .send()
            .await
            .expect("POST /graphql")
    }

    /// Runs `query` with `variables` and returns the JSON body.
    pub async fn graphql_with(&self, query: &str, variables: Value) -> Value {
        let response = self
            .post_graphql(&json!({ "query": query, "variables": variables }))
            .await;
        response.json().await.expect("a JSON body")
    }

    /// Runs `query` without variables and returns the JSON body.
    pub async fn graphql(&self, query: &str) -> Value {
        self.graphql_with(query, json!({})).await
    }

    /// Runs `query` with `Authorization: Bearer <token>` (an access token or an API key).
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let body = self.graphql_text_as(token, query, variables).await;
        serde_json::from_str(&body).expect("a JSON body")
    }

    /// `graphql_as`'s object at `path` under `data` (asserted to be one, the answer shown when not).
    pub async fn object_as(
        &self,
        token: &str,
        query: &str,
        variables: Value,
        path: &[&str],
    ) -> Value {
        let body = self.graphql_as(token, query, variables).await;
        let object = path.iter().fold(&body["data"], |value, key| &value[*key]);
        assert!(object.is_object(), "{body}");
        object.clone()
    }

    /// `graphql_as`'s answer as the client receives it, byte for byte.
    pub async fn graphql_text_as(&self, token: &str, query: &str, variables: Value) -> String {
        self.post_text_as(
            "/graphql",
            token,
            &json!({ "query": query, "variables": variables }),
        )
        .await
    }

    /// The body of the answer to `body` POSTed as JSON to `path` with `token`, byte for byte.
    pub async fn post_text_as(&self, path: &str, token: &str, body: &Value) -> String {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .text()
            .await
            .expect("a body")
    }

    /// Registers an account through the API.
    pub async fn register(&self, name: &str, email: &str) -> TestUser {
        let body = self
            .graphql_with(
                "mutation($input: RegisterInput!) { register(input: $input) { accessToken refreshToken user { id email } } }",
                json!({ "input": { "name": name, "email": email, "password": PASSWORD } }),
            )
            .await;
        let payload = &body["data"]["register"];
        assert!(payload.is_object(), "registration failed: {body}");
        TestUser {
            id: payload["user"]["id"].as_str().unwrap().to_owned(),
            email: payload["user"]["email"].as_str().unwrap().to_owned(),
            access_token: payload["accessToken"].as_str().unwrap().to_owned(),
            refresh_token: payload["refreshToken"].as_str().unwrap().to_owned(),
        }
    }

    /// Registers an account and makes it an administrator.
    pub async fn admin(&self, email: &str) -> TestUser {
        let user = self.register("Admin", email).await;
        self.sql(&format!(
            "UPDATE users SET role = 'ADMIN' WHERE id = '{}'",
            user.id
        ))
        .await;
        user
    }

    /// A new API key of `token`'s user with the default scopes: its secret.
    pub async fn api_key(&self, token: &str) -> String {
        let body = self
            .graphql_as(
                token,
                "mutation { createApiKey(input: {name: \"k\"}) { key } }",
                json!({}),
            )
            .await;
        body["data"]["createApiKey"]["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key: {body}"))
            .to_owned()
    }

    /// Creates an API key with the default scopes; returns the key and its id.
    pub async fn api_key_with_id(&self, token: &str) -> (String, String) {
        let body = self
            .graphql_as(
                token,
                "mutation { createApiKey(input: {name: \"k\"}) { key apiKey { id } } }",
                json!({}),
            )
            .await;
        let text = |value: &Value| {
            value
                .as_str()
                .unwrap_or_else(|| panic!("no key: {body}"))
                .to_owned()
        };
        (
            text(&body["data"]["createApiKey"]["key"]),
            text(&body["data"]["createApiKey"]["apiKey"]["id"]),
        )
    }

    /// Sets the tokens a call of `tool` reserves when it states no maximum.
    pub async fn set_estimate(&self, tool: &str, tokens: i64) {
        self.sql(&format!(
            "UPDATE tools SET estimated_tokens = {tokens} WHERE id = '{tool}'"
        ))
        .await;
    }

    /// Subscribes `user` to the Free plan.
    pub async fn subscribe_free(&self, user: &TestUser) {
        let body = self
            .graphql_as(
                &user.access_token,
                "mutation { subscribe(tier: FREE) { status } }",
                json!({}),
            )
            .await;
        assert_eq!(body["data"]["subscribe"]["status"], "ACTIVE", "{body}");
    }

    /// An administrator, a tool calling `endpoint`, and Ada on the Free plan: where most gateway tests
    /// start.
    pub async fn catalogue(&self, endpoint: String) -> Catalogue {
        let root = self.admin("root@example.com").await;
        let tool = self
            .create_tool(&root, json!({ "name": "Echo", "endpoint": endpoint }))
            .await;
        let user = self.register("Ada", "ada@example.com").await;
        self.subscribe_free(&user).await;
        Catalogue { root, tool, user }
    }

    /// Creates a tool as `admin` and returns its id.
    pub async fn create_tool(&self, admin: &TestUser, input: Value) -> String {
        let body = self
            .graphql_as(
                &admin.access_token,
                "mutation($i: ToolInput!) { createTool(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        body["data"]["createTool"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createTool failed: {body}"))
            .to_owned()
    }

    /// Invokes a tool as `token` and returns the response body.
    pub async fn invoke(&self, token: &str, tool: &str, input: Value, key: Option<&str>) -> Value {
        self.graphql_as(
            token,
            "mutation($t: ID!, $i: JSON!, $k: String) { invokeTool(toolId: $t, input: $i, idempotencyKey: $k) { id output tokensUsed tokensEstimated status latencyMs createdAt replayed } }",
            json!({ "t": tool, "i": input, "k": key }),
        )
        .await
    }

    /// Counts the reservation rows written from now on (a test's own trigger on the table), which
    /// [`Self::reservations_made`] reads.
    pub async fn count_reservations(&self) {
        self.sql(
            "CREATE TABLE reservations_made (id uuid NOT NULL); \
             CREATE FUNCTION count_reservation() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN INSERT INTO reservations_made VALUES (NEW.id); RETURN NULL; END $$; \
             CREATE TRIGGER count_reservation AFTER INSERT ON quota_reservations \
             FOR EACH ROW EXECUTE FUNCTION count_reservation();",
        )
        .await;
    }

    pub async fn reservations_made(&self) -> i64 {
        self.sql_number("SELECT count(*) AS n FROM reservations_made")
            .await
    }

    /// The tokens every subscription holds reserved once this instance's idle slices are given back
    /// (`billing::slices`): asked until it is zero, for at most three times their idle time.
    pub async fn tokens_reserved_once_idle(&self) -> i64 {
        let until = std::time::Instant::now() + 3 * joyfull_hub::billing::slices::IDLE;
        loop {
            let reserved = self
                .sql_number(
                    "SELECT coalesce(sum(tokens_reserved), 0)::bigint AS n FROM subscriptions",
                )
                .await;
            if reserved == 0 || std::time::Instant::now() > until {
                return reserved;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits until every usage row is in the rollups (`usage::roll`), rolling them up itself rather
    /// than waiting for the roller's next turn: for assertions on the rollup tables themselves.
    pub async fn rolled_up(&self) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            joyfull_hub::usage::roller::roll_up(&self.state, joyfull_hub::usage::roll::Turn::Wait)
                .await
                .expect("a roll");
            let left = self
                .sql_number(
                    "SELECT count(*) AS n FROM usage_events \
                     WHERE xact >= (SELECT rolled_before FROM usage_roll)",
                )
                .await;
            if left == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < until,
                "{left} usage rows still not rolled up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A single number from SQL (for assertions on what was stored).
    pub async fn sql_number(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Number {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&self.db.url)
            .await
            .expect("connect");
        let number: Number =
            diesel_async::RunQueryDsl::get_result(diesel::sql_query(query), &mut conn)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
        number.n
    }

    /// The database's clock, in milliseconds since the epoch: the clock that request rates and query
    /// points are paced by.
    pub async fn database_clock_ms(&self) -> i64 {
        self.sql_number("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS n")
            .await
    }

    /// A single text `t` from SQL.
    pub async fn sql_text(&self, query: &str) -> String {
        #[derive(diesel::QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let mut conn = AsyncPgConnection::establish(&self.db.url)
            .await
            .expect("connect");
        let text: Text = diesel_async::RunQueryDsl::get_result(diesel::sql_query(query), &mut conn)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        text.t
    }

    /// Logs in through the API and returns the whole response body.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        self.graphql_with(
            "mutation($input: LoginInput!) { login(input: $input) { accessToken refreshToken accessTokenExpiresAt user { id email role } } }",
            json!({ "input": { "email": email, "password": password } }),
        )
        .await
    }

    /// Runs SQL directly on the test's database (to arrange states the API cannot reach yet), then
    /// waits until the server's caches have heard of what it changed, as an operator's change reaches
    /// every instance.
    pub async fn sql(&self, statements: &str) {
        let mut conn = AsyncPgConnection::establish(&self.db.url)
            .await
            .expect("connect");
        conn.batch_execute(statements).await.expect("run SQL");
        self.state
            .caches
            .sync(&self.state.pool)
            .await
            .expect("the caches heard of the change");
    }

    /// Waits for a mailed `.eml` to `to` whose subject contains `subject`, and returns it decoded.
    pub async fn wait_for_mail(&self, to: &str, subject: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(mail) = self.mails().into_iter().find(|m| {
                m.lines().any(|l| l.starts_with("To:") && l.contains(to))
                    && m.lines()
                        .any(|l| l.starts_with("Subject:") && l.contains(subject))
            }) {
                return mail;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {to} about {subject:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every mail written so far, quoted-printable decoded.
    pub fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("mail")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|raw| decode_quoted_printable(&raw))
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Undoes quoted-printable: soft line breaks and `=XX` escapes.
pub fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TestUser {
    pub fn user_id(&self) -> joyfull_hub::users::model::UserId {
        joyfull_hub::users::model::UserId(uuid::Uuid::parse_str(&self.id).unwrap())
    }
}

/// The `token=` value of the first link in a mail.
pub fn token_in(mail: &str) -> String {
    let start = mail.find("token=").expect("a link with a token") + "token=".len();
    mail[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

/// `errors[0].message` of a GraphQL response body.
pub fn error_message(body: &Value) -> &str {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
}

/// `errors[0].extensions.code` of a GraphQL response body.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}
