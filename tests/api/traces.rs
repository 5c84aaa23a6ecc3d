//! OpenTelemetry traces from the real binary, received by a local OTLP/HTTP collector: a span per
//! request named after its GraphQL operation and continuing the client's `traceparent`, a child span for
//! the upstream call whose context reaches the upstream, spans for the SQL, no bound values anywhere;
//! and no exporter at all when `HUB_OTLP_ENDPOINT` is unset.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use joyfull_hub::secrets::hex;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::upstream::Upstream;
use crate::helpers::{PASSWORD, TestApp};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// A local OTLP/HTTP collector keeping every span it is sent.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, spans }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let received = request
        .resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans);
    spans.lock().unwrap().extend(received);
    ""
}

struct Hub {
    child: Child,
    url: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real binary on the test's database, with `env` added.
async fn start_hub(app: &TestApp, env: &[(&str, &str)]) -> Hub {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_joyfull-hub"));
    command
        .env("DATABASE_URL", &app.db.url)
        .env("HUB_DATA_DIR", &app.data_dir)
        .env("HUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("HUB_DEMO_SEED", "false")
        .env("RUST_LOG", "warn")
        .env_remove("HUB_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = reqwest::get(format!("{url}/ready")).await
            && response.status() == 200
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the hub exited during start-up"
        );
        assert!(Instant::now() < deadline, "the hub did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Hub { child, url }
}

async fn graphql(hub: &Hub, token: Option<&str>, headers: &[(&str, &str)], body: Value) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", hub.url))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// Whether `ancestor` is found by walking up from `span` through the parents in `spans`.
fn descends_from(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
    let mut current = span;
    for _ in 0..spans.len() {
        if current.parent_span_id == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == current.parent_span_id) {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    match value {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(number) => Some(number.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_invocation_reaches_the_collector_with_its_upstream_and_database_spans() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let tool = app.catalogue(upstream.url("/headers")).await.tool;
    let collector = Collector::start().await;
    let hub = start_hub(
        &app,
        &[
            ("HUB_OTLP_ENDPOINT", &collector.url),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;

    let login = graphql(
        &hub,
        None,
        &[],
        json!({ "query": "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { accessToken } }",
                "variables": { "e": "ada@example.com", "p": PASSWORD } }),
    )
    .await;
    let token = login["data"]["login"]["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01");
    let invoked = graphql(
        &hub,
        Some(&token),
        &[("traceparent", &traceparent)],
        json!({ "query": "mutation InvokeEcho($t: ID!) { invokeTool(toolId: $t, input: {}) { output } }",
                "operationName": "InvokeEcho", "variables": { "t": tool } }),
    )
    .await;
    let upstream_saw = invoked["data"]["invokeTool"]["output"]["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent reached the upstream: {invoked}"))
        .to_owned();

    let deadline = Instant::now() + Duration::from_secs(15);
    let (request, call) = loop {
        let spans = collector.spans();
        let request = spans
            .iter()
            .find(|s| s.name == "mutation InvokeEcho")
            .cloned();
        let call = spans
            .iter()
            .find(|s| s.name.starts_with("upstream "))
            .cloned();
        if let (Some(request), Some(call)) = (request, call) {
            break (request, call);
        }
        assert!(Instant::now() < deadline, "spans never arrived: {spans:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let spans = collector.spans();

    assert_eq!(
        hex(&request.trace_id),
        TRACE_ID,
        "the client's trace continues"
    );
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN_ID);
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(hex(&call.trace_id), TRACE_ID);
    assert!(
        descends_from(&spans, &call, &request),
        "the upstream call is inside the request"
    );
    assert_eq!(call.kind, 3, "a client span");
    assert_eq!(
        upstream_saw,
        format!("00-{TRACE_ID}-{}-01", hex(&call.span_id)),
        "the upstream is told the call's span"
    );
    let queries: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == request.trace_id && attribute(s, "db.system.name").is_some())
        .collect();
    assert!(
        !queries.is_empty(),
        "no database spans in the trace: {spans:?}"
    );
    assert!(
        queries.iter().all(|q| descends_from(&spans, q, &request)),
        "{queries:?}"
    );
    assert!(
        queries
            .iter()
            .all(|q| attribute(q, "db.query.text").is_some_and(|t| t.starts_with(&q.name))),
        "{queries:?}"
    );
    let everything = format!("{spans:?}");
    assert!(
        !everything.contains("ada@example.com"),
        "a bound value was exported"
    );
    assert!(!everything.contains(PASSWORD), "a password was exported");
    assert!(!everything.contains(&token), "a token was exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_no_exporter_runs_even_with_the_standard_variables_set() {
    let app = TestApp::spawn().await;
    let collector = Collector::start().await;
    let traces_url = format!("{}/v1/traces", collector.url);
    let hub = start_hub(
        &app,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_url),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01");
    for _ in 0..5 {
        graphql(
            &hub,
            None,
            &[("traceparent", &traceparent)],
            json!({ "query": "query Plans { plans { tier } }" }),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(hub);

    assert!(collector.spans().is_empty(), "{:?}", collector.spans());
}
