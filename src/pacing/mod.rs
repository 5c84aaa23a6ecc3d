//! Request pacing shared by every instance, for callers that have no subscription row to hold their
//! pace (anonymous addresses): GCRA per subject in `request_pacing`, weighted by cost, batched like the
//! other hot statements (`db::batch`). Plans' and keys' rates are paced by billing's reservation
//! statement instead, under the subscription's lock.

pub mod batch;
pub mod repo;
pub mod service;
