//! Plans, subscriptions and the token quota.
//!
//! - Plans are rows (seeded by a migration, changed by admins); nothing about prices or limits is in code.
//! - A subscription's state is derived from its stored dates and the clock: a period that ended is rolled
//!   forward (renewed, downgraded as scheduled, or expired) the next time anything touches it, and a
//!   sweeper makes that explicit in the background, so nothing depends on a job running at the boundary.
//! - Quota is reserved atomically under the subscription's row lock before work starts, then settled with
//!   the actual count or released: no lost update and no overspend, across any number of server processes.
//!   Reservations are leases; one left behind by a crash expires and its tokens return. A busy user's
//!   instance leases a slice of what is left and grants calls from it in memory (`slices`).
//! - Every change is recorded as a subscription event (for billing and, later, webhooks).
//! - Paid plans are paid through a provider (`payment`, `paid_plans`, `provider_events`, `stripe`), or
//!   granted by an administrator (`grant`).

pub mod batch;
pub mod entitlement;
pub mod grant;
pub mod graphql;
pub mod key_spending;
pub mod model;
pub mod paid_plans;
pub mod payment;
pub mod periods;
pub mod plans;
pub mod provider_events;
pub mod quota;
pub mod renewal;
pub mod repo;
pub mod service;
pub mod settlement;
pub mod slice_return;
pub mod slices;
pub mod stripe;
