//! Settling invocations' reservations, as billing's part of the meter's one statement (see
//! `db::compose` and `gateway::meter`). Kept apart from `service` because the meter lives in the shared
//! state that services receive.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::model::Reservation;
use super::repo;
use crate::db::compose::{Composed, Part};

/// What settling a batch involves, which decides the parts of its statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// No call holds a reservation (no limit constrains them): the reservations are left out.
    NothingHeld,
    /// Some calls draw on reservations.
    Held,
    /// Some calls draw on reservations, and some were made by keys with limits of their own.
    HeldWithKeys,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::NothingHeld, Shape::Held, Shape::HeldWithKeys];

    /// The shape of settling `settled` (see [`Settlements`]).
    pub fn of(settled: &[(Reservation, i64, Option<Uuid>)]) -> Self {
        if settled.iter().any(|(_, _, key)| key.is_some()) {
            Shape::HeldWithKeys
        } else if settled
            .iter()
            .any(|(reservation, _, _)| reservation.is_held())
        {
            Shape::Held
        } else {
            Shape::NothingHeld
        }
    }
}

/// The settlement parts of the meter's statement (see `db::compose`): the one place where invocations'
/// reservations are settled, in the transaction that writes their usage rows. Each part is in the
/// statement only when a batch of its `shape` needs it, since every part costs PostgreSQL its
/// executor's start-up, whether or not it touches a row.
pub fn settlement_parts(shape: Shape) -> &'static [&'static Part] {
    match shape {
        Shape::NothingHeld => &[
            &repo::SETTLE_LOCK,
            &repo::SETTLE_NOTHING_HELD,
            &repo::SETTLE_CHARGE,
        ],
        Shape::Held => &[&repo::SETTLE_LOCK, &repo::SETTLE_HELD, &repo::SETTLE_CHARGE],
        Shape::HeldWithKeys => &[
            &repo::SETTLE_LOCK,
            &repo::SETTLE_HELD,
            &repo::SETTLE_CHARGE,
            &repo::SETTLE_KEYS,
        ],
    }
}

/// A batch's settlements, gathered once: the [`Shape`] that picks the statement's parts, and the
/// values that [`Settlements::bind`] binds into them. Each reservation is settled with the tokens its
/// call used (a negative count charges nothing), counted to the key with limits that made the call, if
/// any; the call's `tokens` are what it drew on the reservation (all of it, unless the reservation is a
/// slice). A reservation whose lease already expired still charges the usage; its reserved tokens were
/// returned by then. One that holds nothing ([`Reservation::unheld`]) only counts the usage to its
/// subscription.
pub struct Settlements {
    shape: Shape,
    used: BTreeMap<Uuid, i64>,
    keys: BTreeMap<Uuid, (i64, Uuid)>,
    reservations: Vec<Uuid>,
    drawn: Vec<i64>,
}

impl Settlements {
    pub fn of(settled: &[(Reservation, i64, Option<Uuid>)]) -> Self {
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
        Self {
            shape: Shape::of(settled),
            used,
            keys,
            reservations,
            drawn,
        }
    }

    /// Which parts ([`settlement_parts`]) the statement must hold for these settlements.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Binds the parts of [`Self::shape`], in their order.
    pub fn bind(self, query: Composed<'_>) -> Composed<'_> {
        let query = repo::bind_settle_lock(query, self.used.keys().copied().collect());
        let query = match self.shape {
            Shape::NothingHeld => query,
            Shape::Held | Shape::HeldWithKeys => {
                repo::bind_settle_held(query, self.reservations, self.drawn)
            }
        };
        let query = repo::bind_settle_charge(query, &self.used);
        match self.shape {
            Shape::HeldWithKeys => repo::bind_settle_keys(query, &self.keys),
            Shape::NothingHeld | Shape::Held => query,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_the_reservation_parts_only_when_a_call_holds_one() {
        let subscription = Uuid::new_v4();
        let unheld = (Reservation::unheld(subscription), 42, None);
        let held = (
            Reservation {
                id: Uuid::new_v4(),
                subscription_id: subscription,
                tokens: 100,
            },
            42,
            None,
        );
        let by_key = (held.0, 42, Some(Uuid::new_v4()));

        assert_eq!(Shape::of(&[unheld, unheld]), Shape::NothingHeld);
        assert_eq!(Shape::of(&[]), Shape::NothingHeld);
        assert_eq!(Shape::of(&[unheld, held]), Shape::Held);
        assert_eq!(Shape::of(&[held, by_key, unheld]), Shape::HeldWithKeys);

        let sql = |shape| {
            settlement_parts(shape)
                .iter()
                .map(|part| part.sql)
                .collect::<String>()
        };
        assert!(!sql(Shape::NothingHeld).contains("quota_reservations"));
        assert!(sql(Shape::Held).contains("quota_reservations"));
        assert!(!sql(Shape::Held).contains("api_key_spending"));
        assert!(sql(Shape::HeldWithKeys).contains("api_key_spending"));
    }
}
