//! Stripe behind [`PaymentProvider`]: Checkout for new paid plans, subscription updates for changes,
//! the Billing Portal for cards, and signed webhooks (`webhook`) for what happened. The few API calls
//! the hub makes are typed here with serde (form-encoded requests, JSON answers), as Stripe documents
//! them; no SDK.

mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::model::PlanTier;
use super::payment::{
    CheckoutRequest, PaymentEvent, PaymentProvider, ProviderFuture, WebhookRefusal,
};
use crate::config::StripeSettings;
use crate::error::AppError;

/// The header Stripe signs webhooks in.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

pub struct StripeProvider {
    settings: StripeSettings,
    http: reqwest::Client,
}

impl StripeProvider {
    pub fn new(settings: StripeSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { settings, http })
    }

    fn price_of(&self, tier: PlanTier) -> Option<&str> {
        match tier {
            PlanTier::Pro => Some(&self.settings.price_pro),
            PlanTier::Enterprise => Some(&self.settings.price_enterprise),
            PlanTier::Free => None,
        }
    }

    fn tier_of(&self, price: &str) -> Option<PlanTier> {
        [PlanTier::Pro, PlanTier::Enterprise]
            .into_iter()
            .find(|tier| self.price_of(*tier) == Some(price))
    }

    /// Sends one API request: form-encoded, authenticated, with an idempotency key on writes.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(String, String)],
    ) -> Result<T, AppError> {
        let url = format!("{}{path}", self.settings.api_url);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(self.settings.secret_key.expose());
        if method == reqwest::Method::POST {
            request = request
                .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                .form(form);
        }
        let response = request.send().await.map_err(|e| {
            tracing::warn!(error = %e, path, "payment provider unreachable");
            unreachable_provider()
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            tracing::warn!(error = %e, path, "payment provider answer lost");
            unreachable_provider()
        })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                tracing::error!(error = %e, path, "payment provider answer not understood");
                unreachable_provider()
            });
        }
        let error = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_default();
        if status == reqwest::StatusCode::PAYMENT_REQUIRED || error.kind == "card_error" {
            tracing::info!(path, code = %error.code, "payment declined");
            return Err(AppError::PaymentRequired(format!(
                "The payment was declined{}: update your card in the billing portal, then try again.",
                if error.message.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", error.message)
                }
            )));
        }
        tracing::error!(%status, path, kind = %error.kind, code = %error.code, message = %error.message, "payment provider refused a request");
        Err(unreachable_provider())
    }

    async fn update_subscription(
        &self,
        subscription: &str,
        form: &[(String, String)],
    ) -> Result<(), AppError> {
        let path = format!("/v1/subscriptions/{}", path_segment(subscription));
        let _: Subscription = self.call(reqwest::Method::POST, &path, form).await?;
        Ok(())
    }

    async fn first_item(&self, subscription: &str) -> Result<String, AppError> {
        let found: Subscription = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/subscriptions/{}", path_segment(subscription)),
                &[],
            )
            .await?;
        found
            .items
            .data
            .into_iter()
            .next()
            .map(|item| item.id)
            .ok_or_else(|| {
                tracing::error!(subscription, "provider subscription without items");
                unreachable_provider()
            })
    }
}

fn unreachable_provider() -> AppError {
    AppError::ProviderUnavailable(
        "The payment provider could not complete the request; nothing was changed. Try again in a moment."
            .into(),
    )
}

/// Ids are the provider's; anything else cannot reach another path.
fn path_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn pair(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_owned(), value.into())
}

impl PaymentProvider for StripeProvider {
    fn checkout<'a>(&'a self, request: CheckoutRequest<'a>) -> ProviderFuture<'a, String> {
        Box::pin(async move {
            let price = self
                .price_of(request.tier)
                .ok_or_else(|| AppError::bad_input("tier", "That plan needs no payment."))?;
            let user = request.user_id.to_string();
            let mut form = vec![
                pair("mode", "subscription"),
                pair("line_items[0][price]", price),
                pair("line_items[0][quantity]", "1"),
                pair("client_reference_id", user.clone()),
                pair("metadata[user_id]", user.clone()),
                pair("metadata[tier]", request.tier.as_db()),
                pair("subscription_data[metadata][user_id]", user),
                pair("subscription_data[metadata][tier]", request.tier.as_db()),
                pair("success_url", request.success_url),
                pair("cancel_url", request.cancel_url),
            ];
            match request.customer {
                Some(customer) => form.push(pair("customer", customer)),
                None => form.push(pair("customer_email", request.email)),
            }
            let session: Session = self
                .call(reqwest::Method::POST, "/v1/checkout/sessions", &form)
                .await?;
            session.url.ok_or_else(|| {
                tracing::error!(session = %session.id, "checkout session without a url");
                unreachable_provider()
            })
        })
    }

    fn change_plan<'a>(
        &'a self,
        subscription: &'a str,
        tier: PlanTier,
        charge_now: bool,
    ) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let price = self
                .price_of(tier)
                .ok_or_else(|| AppError::bad_input("tier", "That plan needs no payment."))?;
            let item = self.first_item(subscription).await?;
            let form = vec![
                pair("items[0][id]", item),
                pair("items[0][price]", price),
                pair("cancel_at_period_end", "false"),
                pair(
                    "proration_behavior",
                    if charge_now { "always_invoice" } else { "none" },
                ),
                pair(
                    "payment_behavior",
                    if charge_now {
                        "error_if_incomplete"
                    } else {
                        "allow_incomplete"
                    },
                ),
            ];
            self.update_subscription(subscription, &form).await
        })
    }

    fn cancel_at_period_end<'a>(
        &'a self,
        subscription: &'a str,
        cancel: bool,
    ) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let form = vec![pair("cancel_at_period_end", cancel.to_string())];
            self.update_subscription(subscription, &form).await
        })
    }

    fn portal<'a>(&'a self, customer: &'a str, return_url: String) -> ProviderFuture<'a, String> {
        Box::pin(async move {
            let form = vec![pair("customer", customer), pair("return_url", return_url)];
            let session: Session = self
                .call(reqwest::Method::POST, "/v1/billing_portal/sessions", &form)
                .await?;
            session.url.ok_or_else(unreachable_provider)
        })
    }

    fn signature_header(&self) -> &'static str {
        SIGNATURE_HEADER
    }

    fn read_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<PaymentEvent, WebhookRefusal> {
        webhook::verify(
            &self.settings.webhook_secrets,
            signature,
            body,
            now,
            self.settings.tolerance,
        )?;
        webhook::read_event(body, |price| self.tier_of(price))
    }
}

/// A Checkout or Billing Portal session.
#[derive(Deserialize)]
struct Session {
    id: String,
    url: Option<String>,
}

#[derive(Deserialize)]
struct Subscription {
    items: List<Item>,
}

#[derive(Deserialize)]
struct List<T> {
    data: Vec<T>,
}

#[derive(Deserialize)]
struct Item {
    id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ProviderError,
}

#[derive(Deserialize, Default)]
struct ProviderError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}
