//! The test application: the real router on a random port, over a database of its own.

pub mod db;

use std::net::SocketAddr;
use std::time::Duration;

use joyfull_hub::app::AppState;
use joyfull_hub::config::{Config, Secret};
use joyfull_hub::secrets::Keys;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use db::TestDb;

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDb,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    /// The application with the default (development) configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// The application with a configuration adjusted by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::create().await;
        let mut config = Config::from_lookup(|_| None).expect("the default configuration");
        config.database_url = Some(Secret::new(db.url.clone()));
        config.db_pool_size = 4;
        config.db_acquire_timeout = Duration::from_secs(2);
        configure(&mut config);
        let pool = joyfull_hub::db::pool_for(&config, &db.url).expect("a pool");
        let state = AppState::new(config, pool, Keys::generate());
        let router = joyfull_hub::http::router(state);

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
        ));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            address,
            client,
            db,

            stop: Some(stop),
        }
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
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `errors[0].extensions.code` of a GraphQL response body.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}
