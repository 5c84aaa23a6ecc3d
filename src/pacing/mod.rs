//! Request pacing shared by every instance, for what has no subscription row to hold its pace (each
//! credential's query points, anonymous addresses): GCRA per subject in `request_pacing`, weighted by
//! cost, batched like the other hot statements (`db::batch`), with busy subjects spending from slices
//! held in memory (`slices`). Plans' and keys' call rates are paced by billing's reservation statement
//! instead, under the subscription's lock.

pub mod batch;
pub mod repo;
pub mod service;
pub mod slices;
