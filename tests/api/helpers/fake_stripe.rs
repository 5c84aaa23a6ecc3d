//! A local fake of the parts of Stripe's API the hub calls, answering their documented request and
//! response shapes (form-encoded requests with a bearer secret key; JSON objects and errors), and
//! webhooks signed as Stripe documents it: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{KeyInit, Mac};
use joyfull_hub::config::{PaymentProviderChoice, Secret, StripeSettings};
use serde_json::{Value, json};

pub const SECRET_KEY: &str = "sk_test_hub";
pub const WEBHOOK_SECRET: &str = "whsec_test_hub";
pub const PRICE_PRO: &str = "price_pro_monthly";
pub const PRICE_ENTERPRISE: &str = "price_enterprise_monthly";

/// A request the hub made: method and path, and its form fields.
#[derive(Debug, Clone)]
pub struct Call {
    pub route: String,
    pub form: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Shared {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Answers for the next requests: (status, Stripe error type).
    failures: Arc<Mutex<Vec<(u16, &'static str)>>>,
    /// Each subscription's price.
    prices: Arc<Mutex<HashMap<String, String>>>,
}

pub struct FakeStripe {
    pub url: String,
    shared: Shared,
}

impl FakeStripe {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let router = Router::new()
            .route("/v1/checkout/sessions", post(checkout))
            .route("/v1/billing_portal/sessions", post(portal))
            .route(
                "/v1/subscriptions/{id}",
                get(read_subscription).post(update_subscription),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, shared }
    }

    /// The hub's settings for this fake.
    pub fn provider(&self) -> PaymentProviderChoice {
        PaymentProviderChoice::Stripe(StripeSettings {
            secret_key: Secret::new(SECRET_KEY.into()),
            webhook_secrets: vec![Secret::new(WEBHOOK_SECRET.into())],
            price_pro: PRICE_PRO.into(),
            price_enterprise: PRICE_ENTERPRISE.into(),
            api_url: self.url.clone(),
            tolerance: std::time::Duration::from_secs(300),
        })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// The next request answers `status` with a Stripe error of `kind` (`api_error`, `card_error`).
    pub fn fail_next(&self, status: u16, kind: &'static str) {
        self.shared.failures.lock().unwrap().push((status, kind));
    }

    /// Makes `subscription` exist at `price`.
    pub fn create_subscription(&self, subscription: &str, price: &str) {
        self.shared
            .prices
            .lock()
            .unwrap()
            .insert(subscription.into(), price.into());
    }
}

fn record(shared: &Shared, headers: &HeaderMap, route: String, body: &str) -> Option<Response> {
    let form = url_form(body);
    shared.calls.lock().unwrap().push(Call { route, form });
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {SECRET_KEY}"))
    {
        return Some(error(
            401,
            "invalid_request_error",
            "Invalid API Key provided",
        ));
    }
    let failure = {
        let mut failures = shared.failures.lock().unwrap();
        (!failures.is_empty()).then(|| failures.remove(0))
    };
    failure.map(|(status, kind)| error(status, kind, "Your card was declined."))
}

fn url_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    let code = if kind == "card_error" {
        "card_declined"
    } else {
        ""
    };
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({ "error": { "type": kind, "code": code, "message": message } })),
    )
        .into_response()
}

async fn checkout(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(refusal) = record(
        &shared,
        &headers,
        "POST /v1/checkout/sessions".into(),
        &body,
    ) {
        return refusal;
    }
    let id = format!("cs_test_{}", shared.calls.lock().unwrap().len());
    axum::Json(json!({
        "id": id, "object": "checkout.session", "mode": "subscription", "status": "open",
        "url": format!("https://checkout.stripe.com/c/pay/{id}")
    }))
    .into_response()
}

async fn portal(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(refusal) = record(
        &shared,
        &headers,
        "POST /v1/billing_portal/sessions".into(),
        &body,
    ) {
        return refusal;
    }
    axum::Json(json!({
        "id": "bps_test_1", "object": "billing_portal.session",
        "url": "https://billing.stripe.com/p/session/test_1"
    }))
    .into_response()
}

fn subscription_object(shared: &Shared, id: &str) -> Option<Value> {
    let price = shared.prices.lock().unwrap().get(id).cloned()?;
    Some(json!({
        "id": id, "object": "subscription", "status": "active",
        "items": { "object": "list", "data": [{ "id": format!("si_{id}"), "object": "subscription_item", "price": { "id": price } }] }
    }))
}

async fn read_subscription(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refusal) = record(&shared, &headers, format!("GET /v1/subscriptions/{id}"), "") {
        return refusal;
    }
    match subscription_object(&shared, &id) {
        Some(object) => axum::Json(object).into_response(),
        None => error(404, "invalid_request_error", "No such subscription"),
    }
}

async fn update_subscription(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    if let Some(refusal) = record(
        &shared,
        &headers,
        format!("POST /v1/subscriptions/{id}"),
        &body,
    ) {
        return refusal;
    }
    let form = url_form(&body);
    if let Some(price) = form.get("items[0][price]") {
        if form.get("items[0][id]") != Some(&format!("si_{id}")) {
            return error(400, "invalid_request_error", "No such subscription item");
        }
        shared
            .prices
            .lock()
            .unwrap()
            .insert(id.clone(), price.clone());
    }
    match subscription_object(&shared, &id) {
        Some(object) => axum::Json(object).into_response(),
        None => error(404, "invalid_request_error", "No such subscription"),
    }
}

/// The `Stripe-Signature` header for `body` signed at `timestamp` with `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// An event as Stripe sends it.
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({
        "id": id, "object": "event", "api_version": "2025-03-31.basil", "type": kind,
        "created": created, "livemode": false, "data": { "object": object }
    })
    .to_string()
}
