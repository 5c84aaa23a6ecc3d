//! Slices of a subscription's tokens and request rate that an instance holds in memory, so a busy
//! user's calls are granted without a round trip each.
//!
//! A call that its user's slice covers draws on it here: its tokens (when the plan has a token limit)
//! and one request (when the plan's rate is enforced). A call it does not cover goes to the
//! reservation statement (`reserve/`), asking beyond its own cost for a slice for the next calls; the
//! statement grants at most a quarter of what is left, so near a limit slices shrink to exact
//! reservations. A slice is a reservation row like a call's own, holding its tokens in the
//! subscription's reserved counter, and its requests move the subscription's shared pace: every
//! instance together keeps to the limit and the rate, and a slice only decides where they are spent.
//!
//! The slice asked for doubles while slices run out within [`QUICK`] of their lease, up to
//! [`MAX_CALLS`] calls' worth, and is zero otherwise, so a user calling now and then reserves exactly
//! and concurrently. A slice is drawn on only while the entitlement it was leased under is the one
//! cached (any change to the subscription or its plan ends it), within [`DRAWING`] of its lease on
//! billing's clock, by calls whose lease ends before the slice's row expires. What a slice holds
//! unspent when it is replaced, or after [`IDLE`] without a draw, is given back (`slice_return`);
//! one lost in a crash expires with its row, erring on the strict side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{Entitlement, Pace, PlanTier, Reservation, UnspentSlice as Owed};

/// A slice spent within this long of its lease makes the next one twice as large.
pub const QUICK: Duration = Duration::from_secs(1);
/// A slice not drawn on for this long is given back.
pub const IDLE: Duration = Duration::from_secs(1);
/// A slice is drawn on for at most this long after its lease (billing's clock).
pub const DRAWING: chrono::TimeDelta = super::model::SLICE_DRAWING;
/// The largest slice, in calls.
pub const MAX_CALLS: u32 = 256;

/// What one lease granted beyond its request (see [`TokenSlice::leased`]).
#[derive(Debug, Clone)]
pub struct Lease {
    /// The reservation row holding the slice's tokens.
    pub row: Uuid,
    pub subscription_id: Uuid,
    pub tier: PlanTier,
    /// The entitlement the slice was leased under (`Entitlement::loaded`).
    pub entitlement: u64,
    /// Billing's "now" at the lease, and when the row expires.
    pub leased_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Tokens to hand out; `None` when the plan has no token limit.
    pub tokens: Option<i64>,
    /// Requests to hand out and the plan's rate; `None` when no rate is enforced.
    pub rate: Option<Rate>,
}

impl Lease {
    /// Whether a call could draw on it.
    fn drawable(&self) -> bool {
        self.tokens.is_none_or(|left| left > 0) && self.rate.is_none_or(|rate| rate.requests > 0)
    }
}

/// A slice's requests at the plan's rate.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub requests: u32,
    pub requests_per_minute: u32,
    /// Requests the shared pace had left besides the slice's, and until its burst was back, at the lease.
    pub shared_left: u32,
    pub shared_full_in: Duration,
}

impl Rate {
    fn every_ms(&self) -> f64 {
        60_000.0 / f64::from(self.requests_per_minute.max(1))
    }

    fn burst(&self) -> u32 {
        self.requests_per_minute.div_ceil(6).max(1)
    }
}

/// A call drawn on a slice: the reservation standing for it, the tier and where the pace stands.
#[derive(Debug, Clone, Copy)]
pub struct Drawn {
    pub reservation: Reservation,
    pub tier: PlanTier,
    pub pace: Option<Pace>,
}

/// One user's slice on this instance.
#[derive(Debug)]
pub struct TokenSlice {
    lease: Option<Lease>,
    /// Calls' worth asked for at the last lease.
    asked: u32,
    /// When the last lease was answered, and whether it granted nothing it was asked for.
    answered_at: Option<Instant>,
    starved: bool,
    used_at: Instant,
}

impl TokenSlice {
    fn new() -> Self {
        Self {
            lease: None,
            asked: 0,
            answered_at: None,
            starved: false,
            used_at: Instant::now(),
        }
    }

    /// Draws a call of `tokens` to a tool of `min_tier`, leased until `expires_at`, at billing's `now`,
    /// for a user currently entitled as `entitlement`; `None` when the slice does not cover it.
    pub fn draw(
        &mut self,
        tokens: i64,
        min_tier: PlanTier,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        entitlement: &Entitlement,
    ) -> Option<Drawn> {
        let lease = self.lease.as_mut()?;
        let current = lease.entitlement == entitlement.loaded
            && lease.subscription_id == entitlement.subscription_id
            && entitlement.runs_until > now
            && entitlement.reaches.contains(&min_tier)
            && now < lease.leased_at + DRAWING
            && expires_at <= lease.expires_at;
        let tokens = tokens.max(1);
        let covered = current
            && lease.tokens.is_none_or(|left| left >= tokens)
            && lease.rate.is_none_or(|rate| rate.requests >= 1);
        if !covered {
            return None;
        }
        if let Some(left) = lease.tokens.as_mut() {
            *left -= tokens;
        }
        if let Some(rate) = lease.rate.as_mut() {
            rate.requests -= 1;
        }
        self.used_at = Instant::now();
        let since = self.answered_at.map(|at| at.elapsed()).unwrap_or_default();
        let pace = lease.rate.map(|rate| {
            let regained = (since.as_secs_f64() * 1000.0 / rate.every_ms()).floor() as u64;
            let left = u64::from(rate.shared_left) + regained + u64::from(rate.requests);
            Pace {
                requests_per_minute: rate.requests_per_minute,
                burst_left: u32::try_from(left.min(u64::from(rate.burst()))).unwrap_or(u32::MAX),
                full_in: rate.shared_full_in.saturating_sub(since),
            }
        });
        Some(Drawn {
            reservation: Reservation {
                id: lease.row,
                subscription_id: lease.subscription_id,
                tokens: if lease.tokens.is_some() { tokens } else { 0 },
            },
            tier: lease.tier,
            pace,
        })
    }

    /// Calls' worth to ask for beyond the next call, and notes that it goes to the statement.
    pub fn next_ask(&mut self) -> u32 {
        let recent = self.answered_at.is_some_and(|at| at.elapsed() < QUICK);
        self.asked = match (recent, self.starved) {
            (true, false) => self.asked.saturating_mul(2).clamp(1, MAX_CALLS),
            _ => 0,
        };
        if self.asked == 0 {
            self.answered_at = Some(Instant::now());
            self.starved = false;
        }
        self.asked
    }

    /// Records the statement's answer to a call that asked for a slice: `lease` when it granted one.
    /// What the slice it replaces held unspent is owed back.
    pub fn leased(&mut self, lease: Option<Lease>) -> Option<Owed> {
        let now = Instant::now();
        self.starved = !lease.as_ref().is_some_and(Lease::drawable);
        self.answered_at = Some(now);
        self.used_at = now;
        let old = std::mem::replace(&mut self.lease, lease);
        old.and_then(owed)
    }

    /// Gives the slice up: what it held unspent.
    fn give_up(&mut self) -> Option<Owed> {
        self.lease.take().and_then(owed)
    }
}

/// What `lease` holds unspent, if anything.
fn owed(lease: Lease) -> Option<Owed> {
    let tokens = lease.tokens.unwrap_or(0).max(0);
    let pace_ms = lease
        .rate
        .map_or(0.0, |rate| f64::from(rate.requests) * rate.every_ms());
    (tokens > 0 || pace_ms > 0.0).then_some(Owed {
        row: lease.row,
        subscription_id: lease.subscription_id,
        tokens,
        pace_ms,
    })
}

/// Every user's slice on this instance, and what replaced slices owe back. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct TokenSlices {
    users: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<TokenSlice>>>>,
    owed: Mutex<Vec<Owed>>,
}

impl TokenSlices {
    /// The slice of `user`, created empty at their first call.
    pub fn of(&self, user: Uuid) -> Arc<tokio::sync::Mutex<TokenSlice>> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            users
                .entry(user)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(TokenSlice::new()))),
        )
    }

    /// Notes what a replaced slice owes back, for the next [`Self::take_owed`].
    pub fn owe(&self, owed: Owed) {
        self.owed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(owed);
    }

    /// What replaced slices of `subscription` owe back.
    pub fn take_owed_of(&self, subscription: Uuid) -> Vec<Owed> {
        let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
        let (theirs, others) = std::mem::take(&mut *owed)
            .into_iter()
            .partition(|o| o.subscription_id == subscription);
        *owed = others;
        theirs
    }

    /// What replaced slices and slices not drawn on for [`IDLE`] owe back; idle users are forgotten.
    pub fn take_owed(&self) -> Vec<Owed> {
        let mut owed =
            std::mem::take(&mut *self.owed.lock().unwrap_or_else(PoisonError::into_inner));
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users.retain(|_, slice| {
            let Ok(mut held) = slice.try_lock() else {
                return true;
            };
            if held.used_at.elapsed() < IDLE {
                return true;
            }
            owed.extend(held.give_up());
            drop(held);
            // A call holding the slice keeps it; one arriving later makes a new one.
            Arc::strong_count(slice) > 1
        });
        owed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entitlement(loaded: u64) -> Entitlement {
        Entitlement {
            subscription_id: Uuid::nil(),
            tier: PlanTier::Pro,
            reaches: vec![PlanTier::Free, PlanTier::Pro],
            runs_until: DateTime::<Utc>::MAX_UTC,
            unlimited: false,
            token_limited: true,
            loaded,
        }
    }

    fn lease(at: DateTime<Utc>, tokens: Option<i64>, requests: u32) -> Lease {
        Lease {
            row: Uuid::now_v7(),
            subscription_id: Uuid::nil(),
            tier: PlanTier::Pro,
            entitlement: 1,
            leased_at: at,
            expires_at: at + chrono::TimeDelta::seconds(60),
            tokens,
            rate: Some(Rate {
                requests,
                requests_per_minute: 600,
                shared_left: 10,
                shared_full_in: Duration::from_secs(5),
            }),
        }
    }

    #[test]
    fn a_slice_grows_while_it_runs_out_quickly_and_stops_when_starved() {
        let mut slice = TokenSlice::new();
        assert_eq!(slice.next_ask(), 0, "a first call reserves exactly");
        let asked: Vec<u32> = (0..10)
            .map(|_| {
                let ask = slice.next_ask();
                slice.leased(Some(lease(Utc::now(), Some(100), ask)));
                ask
            })
            .collect();
        assert_eq!(asked, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256]);
        slice.leased(None);
        assert_eq!(
            slice.next_ask(),
            0,
            "nothing to slice: exact and concurrent"
        );
        assert_eq!(slice.next_ask(), 1, "then it tries again");
    }

    #[test]
    fn a_draw_takes_tokens_and_a_request_only_while_the_slice_covers_it() {
        let now = Utc::now();
        let mut slice = TokenSlice::new();
        slice.leased(Some(lease(now, Some(100), 2)));
        let current = entitlement(1);
        let until = now + chrono::TimeDelta::seconds(30);
        let drawn = slice
            .draw(60, PlanTier::Free, until, now, &current)
            .expect("covered");
        assert_eq!(drawn.reservation.tokens, 60);
        assert!(
            slice
                .draw(41, PlanTier::Free, until, now, &current)
                .is_none(),
            "40 tokens left"
        );
        assert!(
            slice
                .draw(40, PlanTier::Free, until, now, &current)
                .is_some()
        );
        assert!(
            slice
                .draw(0, PlanTier::Free, until, now, &current)
                .is_none(),
            "no request left"
        );
    }

    #[test]
    fn a_slice_ends_with_its_entitlement_its_drawing_time_and_its_row() {
        let now = Utc::now();
        let until = now + chrono::TimeDelta::seconds(30);
        let draw = |entitlement: &Entitlement, tier, until, now| {
            let mut slice = TokenSlice::new();
            slice.leased(Some(lease(Utc::now(), Some(100), 5)));
            slice.draw(1, tier, until, now, entitlement).is_some()
        };
        assert!(draw(&entitlement(1), PlanTier::Pro, until, now));
        assert!(
            !draw(&entitlement(2), PlanTier::Pro, until, now),
            "reloaded"
        );
        assert!(
            !draw(&entitlement(1), PlanTier::Enterprise, until, now),
            "tier"
        );
        let later = now + DRAWING + chrono::TimeDelta::milliseconds(10);
        assert!(
            !draw(&entitlement(1), PlanTier::Pro, later, later),
            "drawing time"
        );
        let long = now + chrono::TimeDelta::seconds(61);
        assert!(
            !draw(&entitlement(1), PlanTier::Pro, long, now),
            "outlives the row"
        );
    }

    #[test]
    fn what_a_replaced_or_idle_slice_holds_is_owed_back_once() {
        let slices = TokenSlices::default();
        let user = Uuid::now_v7();
        let slice = slices.of(user);
        let first = lease(Utc::now(), Some(100), 3);
        let row = first.row;
        let mut held = slice.try_lock().unwrap();
        assert_eq!(held.leased(Some(first)), None);
        let owed = held.leased(Some(lease(Utc::now(), None, 0))).unwrap();
        assert_eq!((owed.row, owed.tokens), (row, 100));
        assert!((owed.pace_ms - 300.0).abs() < 1e-9, "{}", owed.pace_ms);
        held.used_at = Instant::now() - IDLE;
        drop(held);
        drop(slice);
        assert!(
            slices.take_owed().is_empty(),
            "a slice with nothing unspent owes nothing"
        );
        assert!(
            slices
                .users
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty(),
            "idle users are forgotten"
        );
    }
}
