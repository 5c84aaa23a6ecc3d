//! Settling invocations' reservations, as billing's part of the meter's one statement (see
//! `db::compose` and `gateway::meter`). Kept apart from `service` because the meter lives in the shared
//! state that services receive.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::model::Reservation;
use super::repo;
use crate::db::compose::{Composed, Part};

/// The settlement part of the meter's statement (see `db::compose`): the one place where invocations'
/// reservations are settled, in the transaction that writes their usage rows.
pub fn settlement_part() -> &'static Part {
    &repo::SETTLE_BATCH
}

/// Binds the settlement part: each reservation is settled with the tokens its call used (a negative
/// count charges nothing), counted to the API key that made the call if any. A reservation whose lease
/// already expired still charges the usage; its reserved tokens were returned by then.
pub fn bind_settlements<'a>(
    query: Composed<'a>,
    settled: impl IntoIterator<Item = (Reservation, i64, Option<Uuid>)>,
) -> Composed<'a> {
    let mut used: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut keys: BTreeMap<Uuid, (i64, Uuid)> = BTreeMap::new();
    let mut reservations = Vec::new();
    for (reservation, tokens, key) in settled {
        *used.entry(reservation.subscription_id).or_default() += tokens.max(0);
        if let Some(key) = key {
            keys.entry(key)
                .or_insert((0, reservation.subscription_id))
                .0 += tokens.max(0);
        }
        reservations.push(reservation.id);
    }
    repo::bind_settle_batch(query, &used, reservations, &keys)
}
