//! What an event says to a person: a title and a sentence or two, from its type and payload.

use serde_json::Value;

use super::model::EventType;

/// The payload's `key` as text (`fallback` when absent).
fn field<'a>(payload: &'a Value, key: &str, fallback: &'a str) -> String {
    match payload.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => fallback.to_owned(),
        Some(other) => other.to_string(),
    }
}

/// A plan's tier as people read it: `PRO` → `Pro`.
fn plan(payload: &Value, key: &str) -> String {
    let tier = field(payload, key, "current");
    let mut letters = tier.chars();
    letters.next().map_or_else(String::new, |first| {
        first
            .to_uppercase()
            .chain(letters.flat_map(char::to_lowercase))
            .collect()
    })
}

/// The title and body of a notice of `event`.
pub fn describe(event: EventType, payload: &Value) -> (String, String) {
    let (title, body) = match event {
        EventType::SubscriptionStarted => (
            format!("Your {} plan has started", plan(payload, "toTier")),
            "Your subscription is active.".to_owned(),
        ),
        EventType::SubscriptionChanged => {
            let (from, to) = (plan(payload, "fromTier"), plan(payload, "toTier"));
            let body = match field(payload, "change", "").as_str() {
                "UPGRADED" => format!("You moved from the {from} plan to the {to} plan."),
                "DOWNGRADE_SCHEDULED" => {
                    format!("You will move to the {to} plan at the end of this period.")
                }
                "DOWNGRADE_CANCELLED" => "The scheduled change of plan was cancelled.".to_owned(),
                "CANCELLED" => format!("Your {from} plan will end at the end of this period."),
                "RESUMED" => format!("Your {from} plan will renew again."),
                "PAYMENT_RECOVERED" => "Your payment went through; your plan continues.".to_owned(),
                other => format!("Your subscription changed ({other})."),
            };
            ("Your subscription changed".to_owned(), body)
        }
        EventType::SubscriptionRenewing => (
            format!("Your {} plan renews soon", plan(payload, "tier")),
            format!(
                "Your plan renews on {}. Nothing to do if you want to keep it.",
                field(payload, "renewsAt", "the end of this period")
            ),
        ),
        EventType::SubscriptionRenewed => (
            format!("A new period of your {} plan has begun", plan(payload, "toTier")),
            "Your tokens for this period are available.".to_owned(),
        ),
        EventType::SubscriptionExpired => (
            format!("Your {} plan has ended", plan(payload, "fromTier")),
            "Choose a plan to keep calling tools.".to_owned(),
        ),
        EventType::PaymentFailed => (
            format!("A payment for your {} plan failed", plan(payload, "toTier")),
            "Update your payment method to keep your plan; it stays until the grace period ends."
                .to_owned(),
        ),
        EventType::QuotaWarning => (
            format!(
                "You have used {} % of this period's tokens",
                field(payload, "percent", "80")
            ),
            format!(
                "{} of {} tokens are used. Upgrade your plan to keep going when they run out.",
                field(payload, "tokensUsed", "?"),
                field(payload, "tokenLimit", "?")
            ),
        ),
        EventType::QuotaExhausted => (
            "You have used all of this period's tokens".to_owned(),
            "Calls that need tokens are refused until the next period. Upgrade your plan to continue now."
                .to_owned(),
        ),
        EventType::ApiKeyCreated => (
            "A new API key was created".to_owned(),
            format!(
                "The key \u{201c}{}\u{201d} ({}\u{2026}) was created. If this was not you, revoke it and change your password.",
                field(payload, "name", ""),
                field(payload, "prefix", "jhk_")
            ),
        ),
        EventType::ApiKeyRevoked => (
            "An API key was revoked".to_owned(),
            format!(
                "The key \u{201c}{}\u{201d} no longer works.",
                field(payload, "name", "")
            ),
        ),
        EventType::ApiKeyExpiring => (
            "An API key expires soon".to_owned(),
            format!(
                "The key \u{201c}{}\u{201d} stops working at {}.",
                field(payload, "name", ""),
                field(payload, "expiresAt", "?")
            ),
        ),
        EventType::PasswordChanged => (
            "Your password was changed".to_owned(),
            "Every session was signed out. If this was not you, reset your password now.".to_owned(),
        ),
        EventType::PasswordReset => (
            "Your password was reset".to_owned(),
            "It was reset with a link sent by mail, and every session was signed out. If this was not you, reset it again and secure your mailbox."
                .to_owned(),
        ),
        EventType::EmailChanged => (
            "Your login address changed".to_owned(),
            format!(
                "The account now signs in as {}.",
                field(payload, "newEmail", "a new address")
            ),
        ),
        EventType::NewLoginAddress => (
            format!("New sign-in from {}", field(payload, "clientIp", "a new address")),
            format!(
                "Your account signed in from {} ({}). If this was not you, change your password.",
                field(payload, "clientIp", "a new address"),
                field(payload, "userAgent", "unknown client")
            ),
        ),
        EventType::ToolCircuitOpened => (
            format!("The {} tool is failing", field(payload, "toolName", "?")),
            "Calls to it are paused after a burst of upstream failures; they resume on their own once it answers again."
                .to_owned(),
        ),
        EventType::ToolUpstreamFailures => (
            format!("The {} tool's upstream keeps failing", field(payload, "toolName", "?")),
            format!(
                "{} calls failed within {} s. Its circuit may stay closed if few callers are affected; check the upstream.",
                field(payload, "failures", "Many"),
                field(payload, "windowSeconds", "60")
            ),
        ),
        EventType::WebhookEndpointDisabled => (
            "A webhook endpoint was disabled".to_owned(),
            format!(
                "{} failed for a day and was disabled; enable it again once it answers.",
                field(payload, "url", "An endpoint")
            ),
        ),
    };
    (title, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_event_type_reads_as_a_sentence_even_without_a_payload() {
        for event in EventType::ALL {
            let (title, body) = describe(*event, &json!({}));
            assert!(
                !title.is_empty() && body.ends_with('.'),
                "{event}: {title} / {body}"
            );
        }
        let (title, body) = describe(
            EventType::QuotaWarning,
            &json!({ "percent": 80, "tokensUsed": 800, "tokenLimit": 1000 }),
        );
        assert_eq!(title, "You have used 80 % of this period's tokens");
        assert!(body.starts_with("800 of 1000 tokens"));
        let (title, _) = describe(EventType::SubscriptionStarted, &json!({ "toTier": "PRO" }));
        assert_eq!(title, "Your Pro plan has started");
    }
}
