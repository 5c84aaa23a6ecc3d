//! Telling people what happened: events recorded in the transaction of the change that causes them
//! (`record`, dispatched by `outbox`), in-app notifications with a live feed, and each user's choice of channels per type of
//! event. Mail goes through `mail::outbox`, webhooks through `webhooks`.

pub mod describe;
pub mod graphql;
pub mod model;
pub mod outbox;
pub mod record;
pub mod repo;
pub mod service;
pub mod upcoming;
