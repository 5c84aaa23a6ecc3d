//! Stripe's webhooks: the `Stripe-Signature` header (`t=<unix time>,v1=<hex>,…`) is HMAC-SHA256 of
//! `<t>.<raw body>` under the endpoint's signing secret. Any `v1` matching any configured secret is
//! accepted (during a rotation Stripe signs with both secrets), compared in constant time; the
//! timestamp must be within the tolerance of now, so a captured request cannot be replayed later.
//!
//! Events read: `checkout.session.completed` and `checkout.session.async_payment_succeeded` (when
//! paid), `invoice.paid`, `invoice.payment_failed`, `customer.subscription.updated` and
//! `customer.subscription.deleted`, in the shapes of API versions before and since 2025-03-31 (an
//! invoice's subscription under `parent.subscription_details`, a subscription's period on its items).
//! Any other type is read as an event without a change.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::billing::model::PlanTier;
use crate::billing::payment::{PaymentChange, PaymentEvent, WebhookRefusal};
use crate::config::Secret;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Checks `header` against `body` under any of `secrets`.
pub fn verify(
    secrets: &[Secret<String>],
    header: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), WebhookRefusal> {
    let header = header.ok_or(WebhookRefusal::MissingSignature)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(crate::secrets::from_hex(value)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookRefusal::BadSignature)?;
    let matches = secrets.iter().any(|secret| {
        signatures.iter().any(|signature| {
            let Ok(mut mac) = HmacSha256::new_from_slice(secret.expose().as_bytes()) else {
                return false;
            };
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(signature).is_ok()
        })
    });
    if !matches {
        return Err(WebhookRefusal::BadSignature);
    }
    let age = now.timestamp().abs_diff(timestamp);
    if age > tolerance.as_secs() {
        return Err(WebhookRefusal::Stale);
    }
    Ok(())
}

/// The signature header Stripe would send for `body` at `timestamp` under `secret`.
#[cfg(test)]
fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("t={timestamp},v1={}", crate::secrets::hex(&digest))
}

/// Reads a verified body; `tier_of` names the tier of a configured price.
pub fn read_event(
    body: &[u8],
    tier_of: impl Fn(&str) -> Option<PlanTier>,
) -> Result<PaymentEvent, WebhookRefusal> {
    let event: Value =
        serde_json::from_slice(body).map_err(|e| WebhookRefusal::Malformed(e.to_string()))?;
    let id = text(at(&event, "/id")).ok_or_else(|| WebhookRefusal::Malformed("no id".into()))?;
    let kind =
        text(at(&event, "/type")).ok_or_else(|| WebhookRefusal::Malformed("no type".into()))?;
    let occurred_at = time(at(&event, "/created"))
        .ok_or_else(|| WebhookRefusal::Malformed("no created time".into()))?;
    let object = at(&event, "/data/object");
    let change = match kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            checkout_paid(object)
        }
        "invoice.paid" => {
            invoice_subscription(object).map(|subscription| PaymentChange::InvoicePaid {
                subscription,
                period: invoice_period(object),
            })
        }
        "invoice.payment_failed" => invoice_subscription(object)
            .map(|subscription| PaymentChange::PaymentFailed { subscription }),
        "customer.subscription.updated" => {
            text(at(object, "/id")).map(|subscription| PaymentChange::SubscriptionUpdated {
                subscription,
                tier: text(at(object, "/items/data/0/price/id")).and_then(|price| tier_of(&price)),
                cancel_at_period_end: at(object, "/cancel_at_period_end")
                    .as_bool()
                    .unwrap_or(false)
                    || !at(object, "/cancel_at").is_null(),
                past_due: matches!(at(object, "/status").as_str(), Some("past_due" | "unpaid")),
                period: subscription_period(object),
            })
        }
        "customer.subscription.deleted" => text(at(object, "/id"))
            .map(|subscription| PaymentChange::SubscriptionEnded { subscription }),
        _ => None,
    };
    Ok(PaymentEvent {
        id,
        kind,
        occurred_at,
        change,
    })
}

fn checkout_paid(session: &Value) -> Option<PaymentChange> {
    if at(session, "/mode").as_str() != Some("subscription")
        || !matches!(
            at(session, "/payment_status").as_str(),
            Some("paid" | "no_payment_required")
        )
    {
        return None;
    }
    let user = text(at(session, "/client_reference_id"))
        .or_else(|| text(at(session, "/metadata/user_id")))?
        .parse()
        .ok()?;
    let tier = PlanTier::parse_db(at(session, "/metadata/tier").as_str()?)?;
    Some(PaymentChange::CheckoutPaid {
        user,
        tier,
        customer: id_of(at(session, "/customer"))?,
        subscription: id_of(at(session, "/subscription"))?,
    })
}

fn invoice_subscription(invoice: &Value) -> Option<String> {
    id_of(at(invoice, "/parent/subscription_details/subscription"))
        .or_else(|| id_of(at(invoice, "/subscription")))
}

/// The period the invoice's subscription line pays for (not the invoice's own `period_*`, which for
/// a renewal is the period before).
fn invoice_period(invoice: &Value) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let lines = at(invoice, "/lines/data").as_array()?;
    lines
        .iter()
        .filter_map(|line| {
            Some((
                time(at(line, "/period/start"))?,
                time(at(line, "/period/end"))?,
            ))
        })
        .max_by_key(|(_, end)| *end)
}

fn subscription_period(subscription: &Value) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let item = at(subscription, "/items/data/0");
    let start = time(at(subscription, "/current_period_start"))
        .or_else(|| time(at(item, "/current_period_start")))?;
    let end = time(at(subscription, "/current_period_end"))
        .or_else(|| time(at(item, "/current_period_end")))?;
    Some((start, end))
}

/// An id given as a string, or as an expanded object.
fn id_of(value: &Value) -> Option<String> {
    text(value).or_else(|| text(at(value, "/id")))
}

/// The value at a JSON pointer (`/data/object`), or null.
fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    value.pointer(pointer).unwrap_or(&NULL)
}

fn text(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(value.as_i64()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    fn secrets(list: &[&str]) -> Vec<Secret<String>> {
        list.iter().map(|s| Secret::new((*s).to_owned())).collect()
    }

    #[test]
    fn a_signature_made_with_the_secret_verifies_within_the_tolerance_only() {
        let body = br#"{"id":"evt_1"}"#;
        let now = Utc::now();
        let header = sign(SECRET, now.timestamp(), body);
        let tolerance = Duration::from_secs(300);
        let check = |header: Option<&str>, body: &[u8], at: DateTime<Utc>| {
            verify(&secrets(&[SECRET]), header, body, at, tolerance)
        };

        assert_eq!(check(Some(&header), body, now), Ok(()));
        assert_eq!(
            check(Some(&header), br#"{"id":"evt_2"}"#, now),
            Err(WebhookRefusal::BadSignature)
        );
        assert_eq!(
            check(Some(&header), body, now + chrono::Duration::seconds(301)),
            Err(WebhookRefusal::Stale)
        );
        assert_eq!(
            check(None, body, now),
            Err(WebhookRefusal::MissingSignature)
        );
        assert_eq!(
            check(Some("t=1,v1=zz"), body, now),
            Err(WebhookRefusal::BadSignature)
        );
        let other = sign("whsec_other", now.timestamp(), body);
        assert_eq!(
            check(Some(&other), body, now),
            Err(WebhookRefusal::BadSignature)
        );
    }

    #[test]
    fn any_v1_under_any_configured_secret_verifies_so_secrets_can_rotate() {
        let body = br#"{"id":"evt_1"}"#;
        let now = Utc::now();
        let old = sign("whsec_old", now.timestamp(), body);
        let new = sign("whsec_new", now.timestamp(), body);
        let both = format!("{new},{}", old.split_once(',').unwrap().1);
        let tolerance = Duration::from_secs(300);

        for configured in [
            &["whsec_old"][..],
            &["whsec_new"],
            &["whsec_new", "whsec_old"],
        ] {
            assert_eq!(
                verify(&secrets(configured), Some(&both), body, now, tolerance),
                Ok(()),
                "{configured:?}"
            );
        }
        assert_eq!(
            verify(
                &secrets(&["whsec_new", "whsec_old"]),
                Some(&old),
                body,
                now,
                tolerance
            ),
            Ok(())
        );
    }

    #[test]
    fn invoices_of_both_api_shapes_name_their_subscription_and_the_line_period() {
        let old = serde_json::json!({ "id": "evt_1", "type": "invoice.paid", "created": 1_700_000_000,
            "data": { "object": { "subscription": "sub_1", "period_start": 1, "period_end": 2,
                "lines": { "data": [{ "period": { "start": 1_700_000_000, "end": 1_702_592_000 } }] } } } });
        let new = serde_json::json!({ "id": "evt_2", "type": "invoice.paid", "created": 1_700_000_000,
            "data": { "object": { "parent": { "subscription_details": { "subscription": "sub_1" } },
                "lines": { "data": [{ "period": { "start": 1_700_000_000, "end": 1_702_592_000 } }] } } } });
        for event in [old, new] {
            let read = read_event(event.to_string().as_bytes(), |_| None).unwrap();
            assert_eq!(
                read.change,
                Some(PaymentChange::InvoicePaid {
                    subscription: "sub_1".into(),
                    period: Some((
                        time(&1_700_000_000.into()).unwrap(),
                        time(&1_702_592_000.into()).unwrap()
                    )),
                })
            );
        }
    }

    #[test]
    fn unknown_types_and_unpaid_checkouts_change_nothing() {
        let unknown = serde_json::json!({ "id": "evt_1", "type": "customer.created", "created": 1, "data": { "object": {} } });
        let unpaid = serde_json::json!({ "id": "evt_2", "type": "checkout.session.completed", "created": 1,
            "data": { "object": { "mode": "subscription", "payment_status": "unpaid", "client_reference_id": uuid::Uuid::nil().to_string(),
                "metadata": { "tier": "PRO" }, "customer": "cus_1", "subscription": "sub_1" } } });
        for event in [unknown, unpaid] {
            assert_eq!(
                read_event(event.to_string().as_bytes(), |_| None)
                    .unwrap()
                    .change,
                None
            );
        }
        assert!(read_event(b"not json", |_| None).is_err());
    }
}
