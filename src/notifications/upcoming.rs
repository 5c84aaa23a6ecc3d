//! Notices of what is about to happen, found by the sweeper: a paid plan renewing within three days, an
//! API key expiring within seven. Each is recorded once (per period, per key), however often the sweep
//! runs and on however many instances.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::model::EventType;
use super::record::record_once_in;
use crate::app::AppState;
use crate::error::AppResult;

/// How long before a renewal its notice goes out.
const RENEWAL_NOTICE: Duration = Duration::from_secs(3 * 86_400);
/// How long before a key's expiry its notice goes out.
const EXPIRY_NOTICE: Duration = Duration::from_secs(7 * 86_400);

pub async fn sweep(app: &AppState, now: DateTime<Utc>) -> AppResult<()> {
    let renewing = crate::billing::service::renewing_soon(app, now, RENEWAL_NOTICE).await?;
    let expiring = crate::keys::service::expiring_soon(app, now, EXPIRY_NOTICE).await?;
    let mut conn = app.pool.get().await?;
    for subscription in renewing {
        let key = format!(
            "subscription.renewing:{}:{}",
            subscription.id,
            subscription.current_period_end.timestamp()
        );
        let payload = json!({
            "subscriptionId": subscription.id,
            "tier": subscription.tier,
            "renewsAt": subscription.current_period_end,
        });
        record_once_in(
            &mut conn,
            EventType::SubscriptionRenewing,
            Some(subscription.user_id),
            payload,
            &key,
        )
        .await?;
    }
    for api_key in expiring {
        let payload = json!({
            "keyId": api_key.id,
            "name": api_key.name,
            "prefix": api_key.prefix,
            "expiresAt": api_key.expires_at,
        });
        let key = format!("api_key.expiring:{}", api_key.id);
        record_once_in(
            &mut conn,
            EventType::ApiKeyExpiring,
            Some(api_key.user_id),
            payload,
            &key,
        )
        .await?;
    }
    Ok(())
}
