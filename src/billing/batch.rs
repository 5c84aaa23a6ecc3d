//! Quota reservations in batches (see `db::batch`): the invocations that arrive together reserve in
//! one statement (`reserve/`). A request the batch does not grant is explained by
//! `quota::spend`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::model::PlanTier;
use super::repo::{self, BatchReservation, Reserved};
use crate::db::batch::{BatchStatement, Batcher};
use crate::error::AppResult;

/// Writers: reservation transactions that may be open at once.
pub const WRITERS: usize = 2;

/// One invocation's reservation request.
pub struct ReserveRequest {
    /// The reservation's id, if granted.
    pub id: Uuid,
    pub user: Uuid,
    pub tokens: i64,
    /// Billing's "now" when the request was made.
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The lowest plan tier that may reserve.
    pub min_tier: PlanTier,
    /// The API key making the call (`None` for a signed-in session).
    pub api_key: Option<Uuid>,
    /// Tokens and requests asked for a slice beyond the request's own (`billing::slices`).
    pub slice_tokens: i64,
    pub slice_requests: i32,
}

/// The batched reservation statement; `enforce_rates` applies the plans' request rates.
pub struct Reserve {
    pub enforce_rates: bool,
}

/// Reservations in batches; see the module documentation.
pub type Reservations = Batcher<Reserve>;

impl BatchStatement for Reserve {
    type Request = ReserveRequest;
    type Response = Option<Reserved>;

    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        _writer: usize,
        requests: &[&ReserveRequest],
    ) -> AppResult<Vec<Option<Reserved>>> {
        // The batch's requests were made within moments of each other; the latest "now" decides
        // which periods are running and which leases have expired.
        let now = requests
            .iter()
            .map(|r| r.now)
            .max()
            .unwrap_or_else(Utc::now);
        let batch: Vec<BatchReservation> = requests
            .iter()
            .map(|r| BatchReservation {
                id: r.id,
                user: r.user,
                tokens: r.tokens,
                expires_at: r.expires_at,
                min_tier: r.min_tier,
                api_key: r.api_key,
                slice_tokens: r.slice_tokens,
                slice_requests: r.slice_requests,
            })
            .collect();
        let mut granted: HashMap<Uuid, Reserved> =
            repo::reserve_batch(conn, &batch, now, self.enforce_rates)
                .await?
                .into_iter()
                .map(|g| (g.id, g))
                .collect();
        Ok(requests.iter().map(|r| granted.remove(&r.id)).collect())
    }
}
