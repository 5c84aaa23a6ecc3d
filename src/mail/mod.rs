//! Outgoing mail. A message is queued in `mail_outbox` in the same transaction as the change that causes
//! it (`outbox::enqueue_in`), so a crash or an SMTP outage after the commit only delays it; delivery
//! workers in every instance claim due messages and send them (`outbox`), retrying with backoff, and the
//! table is the sent/failed log administrators read (`admin.mailLog`).

pub mod graphql;
pub mod model;
pub mod outbox;
pub mod repo;
pub mod transport;
