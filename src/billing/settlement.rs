//! Settling invocations' reservations, as billing's part of the meter's one statement (see
//! `db::compose` and `gateway::meter`). Kept apart from `service` because the meter lives in the shared
//! state that services receive.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::model::Reservation;
use super::repo;
use crate::db::compose::{Composed, Part};

/// The settlement parts of the meter's statement (see `db::compose`): the one place where invocations'
/// reservations are settled, in the transaction that writes their usage rows. A batch with calls made
/// by keys with limits of their own also settles what those keys spent (`counts_keys`); the others
/// leave that part out, which keeps the common statement small.
pub fn settlement_parts(counts_keys: bool) -> &'static [&'static Part] {
    if counts_keys {
        &[&repo::SETTLE_BATCH, &repo::SETTLE_KEYS]
    } else {
        &[&repo::SETTLE_BATCH]
    }
}

/// Whether settling `settled` needs the keys' part: some call was made by a key with limits.
pub fn counts_keys(settled: &[(Reservation, i64, Option<Uuid>)]) -> bool {
    settled.iter().any(|(_, _, key)| key.is_some())
}

/// Binds the settlement parts: each reservation is settled with the tokens its call used (a negative
/// count charges nothing), counted to the key with limits that made the call, if any; the call's
/// `tokens` are what it drew on the reservation (all of it, unless the reservation is a slice). A reservation
/// whose lease already expired still charges the usage; its reserved tokens were returned by then. One
/// that holds nothing ([`Reservation::unheld`]) only counts the usage to its subscription.
pub fn bind_settlements<'a>(
    query: Composed<'a>,
    settled: &[(Reservation, i64, Option<Uuid>)],
) -> Composed<'a> {
    let counts_keys = counts_keys(settled);
    let mut used: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut keys: BTreeMap<Uuid, (i64, Uuid)> = BTreeMap::new();
    let mut reservations = Vec::new();
    let mut drawn = Vec::new();
    for (reservation, tokens, key) in settled {
        let tokens = *tokens;
        *used.entry(reservation.subscription_id).or_default() += tokens.max(0);
        if let Some(key) = *key {
            keys.entry(key)
                .or_insert((0, reservation.subscription_id))
                .0 += tokens.max(0);
        }
        if reservation.is_held() {
            reservations.push(reservation.id);
            drawn.push(reservation.tokens);
        }
    }
    let query = repo::bind_settle_batch(query, &used, reservations, drawn);
    if counts_keys {
        repo::bind_settle_keys(query, &keys)
    } else {
        query
    }
}
