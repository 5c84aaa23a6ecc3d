//! Group commit for metering: every finished or refused invocation hands its settlement to the meter
//! and waits until a transaction holding it has committed, so the answer still leaves only after its
//! usage row is durable. Settlements that arrive while a batch is being written wait for the next one,
//! which writes them all at once — one statement, one commit, one flush — instead of one transaction
//! each. At low load a batch holds a single settlement and nothing waits.
//!
//! That statement spans three domains on purpose (billing's counters, the usage log and its rollups,
//! the gateway's idempotency keys): a settlement is atomic, and its parts are each domain's SQL.
//!
//! The batching itself is `db::batch`: two writers take turns, so one batch can be filled while the
//! other is committing, and a failed batch is written again one settlement at a time, so one bad
//! settlement cannot fail the others. Each batch locks subscriptions and rollup rows in key order, so
//! two batches never deadlock. Row locks are held until a commit is on disk, so the writers keep apart
//! where they can: each adds to its own shard of the platform rollups, and the live-usage notifications
//! go out after the commit, from a connection of their own (a transaction that notifies holds a
//! database-wide lock through its commit, which would make the two writers' commits take turns).
//! A notification lost to a crash between the two costs a live feed one event; the usage row is kept.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use diesel::QueryableByName;
use diesel::sql_types::{
    Array, BigInt, Bool, Date, Integer, Jsonb, Nullable, SmallInt, Text, Timestamptz,
    Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::billing::model::Reservation;
use crate::db::DbPool;
use crate::db::batch::{BatchStatement, Batcher};
use crate::db::cached::CachedExt;
use crate::error::AppResult;
use crate::usage::model::UsageEvent;
use crate::usage::repo as usage;

/// Writers: transactions that may be open at once (and shards of the platform rollups).
const WRITERS: usize = 2;

/// What an idempotency key becomes once its call is metered.
#[derive(Debug, Clone)]
pub enum KeyOutcome {
    /// The call succeeded: keep its answer for replays.
    Complete(serde_json::Value),
    /// The call failed or was refused: free the key so a retry runs.
    Abandon,
}

/// One invocation's metering: its usage row, the reservation to settle and its idempotency key.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub event: UsageEvent,
    /// The caller's plan tier at the time (`NONE` without a subscription).
    pub tier: String,
    /// Settled with `event.tokens_used`; `None` for refused calls, which reserved nothing.
    pub reservation: Option<Reservation>,
    pub key: Option<(String, KeyOutcome)>,
}

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Meter {
    batcher: Batcher<Settle>,
    publisher: Batcher<Publish>,
}

impl Meter {
    /// Starts the writers on the current Tokio runtime; they stop when the last `Meter` is dropped.
    pub fn start(pool: DbPool) -> Self {
        Self {
            batcher: Batcher::start(pool.clone(), Settle, WRITERS, "settlement"),
            publisher: Batcher::start(pool, Publish, 1, "usage_notification"),
        }
    }

    /// Returns once the settlement is committed; its live-usage notification follows.
    pub async fn write(&self, settlement: Settlement) -> AppResult<()> {
        let payload = serde_json::to_string(&settlement.event);
        self.batcher.submit(settlement).await?;
        match payload {
            Ok(payload) => self.publisher.send(payload),
            Err(e) => tracing::warn!(error = %e, "a usage event has no live notification"),
        }
        Ok(())
    }
}

/// Live-usage notifications, after their usage rows committed. Losing one in a database crash costs
/// a live feed an event, so their commits do not wait for the disk.
struct Publish;

impl BatchStatement for Publish {
    type Request = String;
    type Response = ();

    const SETTINGS: &'static str =
        "SET plan_cache_mode = force_generic_plan; SET synchronous_commit = off";

    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        _writer: usize,
        payloads: &[&String],
    ) -> AppResult<Vec<()>> {
        diesel::sql_query("SELECT count(pg_notify($1, p)) AS n FROM unnest($2::text[]) AS m(p)")
            .bind::<Text, _>(crate::usage::live::CHANNEL)
            .bind::<Array<Text>, _>(payloads)
            .cached()
            .get_result::<Counted>(conn)
            .await?;
        Ok(vec![(); payloads.len()])
    }
}

/// The settlement statement, for the batcher.
struct Settle;

impl BatchStatement for Settle {
    type Request = Settlement;
    type Response = ();

    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        writer: usize,
        requests: &[&Settlement],
    ) -> AppResult<Vec<()>> {
        let shard = i16::try_from(writer).unwrap_or(0);
        write_batch(conn, shard, requests).await?;
        Ok(vec![(); requests.len()])
    }
}

/// Settles the reservations (`$1` subscriptions in id order, `$2` reservations, `$3` tokens used per
/// subscription) — the subscriptions are locked in id order first, so concurrent batches and
/// reservations cannot deadlock on them. (`FOR NO KEY UPDATE` would let other transactions'
/// foreign-key checks through, but then a reservation can deadlock with them; it was tried and reverted.)
const SETTLE_CTES: &str = "\
    locked AS (SELECT id FROM subscriptions WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE), \
    taken AS (DELETE FROM quota_reservations WHERE id = ANY($2::uuid[]) RETURNING subscription_id, tokens), \
    charged AS (UPDATE subscriptions s \
                SET tokens_reserved = GREATEST(s.tokens_reserved - coalesce( \
                      (SELECT sum(t.tokens) FROM taken t WHERE t.subscription_id = s.id), 0)::bigint, 0), \
                    tokens_used = s.tokens_used + u.used \
                FROM unnest($1::uuid[], $3::bigint[]) AS u(id, used) JOIN locked l ON l.id = u.id \
                WHERE s.id = u.id RETURNING 1)";

/// Stores the answers of completed idempotent calls (`$29`–`$32`) and frees the keys of failed ones
/// (`$33`, `$34`).
const KEY_CTES: &str = "\
    completed AS (UPDATE invocation_idempotency i SET usage_event_id = v.e, output = v.o \
                  FROM unnest($29::uuid[], $30::text[], $31::uuid[], $32::jsonb[]) AS v(u, k, e, o) \
                  WHERE i.user_id = v.u AND i.key = v.k RETURNING 1), \
    abandoned AS (DELETE FROM invocation_idempotency i USING unnest($33::uuid[], $34::text[]) AS v(u, k) \
                  WHERE i.user_id = v.u AND i.key = v.k AND i.usage_event_id IS NULL RETURNING 1)";

/// A whole batch in one statement (one round trip, one commit): every data-modifying part runs to
/// completion whatever the final `SELECT` reads.
static STATEMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {SETTLE_CTES}, {}, {KEY_CTES} SELECT count(*) AS n FROM events",
        usage::RECORD_CTES
    )
});

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    #[expect(dead_code, reason = "read only to run the statement")]
    n: i64,
}

/// Writes settlements in one statement (see `STATEMENT`), adding to platform rollup shard `shard`.
async fn write_batch(
    conn: &mut AsyncPgConnection,
    shard: i16,
    settlements: &[&Settlement],
) -> AppResult<()> {
    let mut used: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut reservations = Vec::new();
    let (mut done_users, mut done_keys, mut done_events, mut done_outputs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut freed_users, mut freed_keys) = (Vec::new(), Vec::new());
    for settlement in settlements {
        if let Some(reservation) = settlement.reservation {
            *used.entry(reservation.subscription_id).or_default() +=
                settlement.event.tokens_used.max(0);
            reservations.push(reservation.id);
        }
        match &settlement.key {
            Some((key, KeyOutcome::Complete(answer))) => {
                done_users.push(settlement.event.user_id);
                done_keys.push(key.as_str());
                done_events.push(settlement.event.id);
                done_outputs.push(answer);
            }
            Some((key, KeyOutcome::Abandon)) => {
                freed_users.push(settlement.event.user_id);
                freed_keys.push(key.as_str());
            }
            None => {}
        }
    }
    let rows: Vec<(&UsageEvent, &str)> = settlements
        .iter()
        .map(|s| (&s.event, s.tier.as_str()))
        .collect();
    let columns = usage::batch_columns(&rows);
    let (events, daily, platform) = (columns.events, columns.daily, columns.platform);
    diesel::sql_query(STATEMENT.as_str())
        .bind::<Array<SqlUuid>, _>(used.keys().copied().collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(reservations)
        .bind::<Array<BigInt>, _>(used.values().copied().collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(events.id)
        .bind::<Array<SqlUuid>, _>(events.user_id)
        .bind::<Array<Nullable<SqlUuid>>, _>(events.api_key_id)
        .bind::<Array<SqlUuid>, _>(events.tool_id)
        .bind::<Array<Nullable<SqlUuid>>, _>(events.subscription_id)
        .bind::<Array<BigInt>, _>(events.tokens_used)
        .bind::<Array<Bool>, _>(events.tokens_estimated)
        .bind::<Array<Text>, _>(events.status)
        .bind::<Array<Nullable<Text>>, _>(events.error_code)
        .bind::<Array<Integer>, _>(events.latency_ms)
        .bind::<Array<Timestamptz>, _>(events.created_at)
        .bind::<Array<SqlUuid>, _>(daily.user_id)
        .bind::<Array<SqlUuid>, _>(daily.tool_id)
        .bind::<Array<Date>, _>(daily.day)
        .bind::<Array<BigInt>, _>(daily.invocations)
        .bind::<Array<BigInt>, _>(daily.tokens)
        .bind::<Array<BigInt>, _>(daily.errors)
        .bind::<Array<BigInt>, _>(daily.latency_ms_sum)
        .bind::<Array<Date>, _>(platform.day)
        .bind::<Array<SqlUuid>, _>(platform.tool_id)
        .bind::<Array<Text>, _>(platform.tier)
        .bind::<Array<BigInt>, _>(platform.invocations)
        .bind::<Array<BigInt>, _>(platform.errors)
        .bind::<Array<BigInt>, _>(platform.tokens)
        .bind::<Array<Text>, _>(platform.histogram)
        .bind::<Array<SqlUuid>, _>(done_users)
        .bind::<Array<Text>, _>(done_keys)
        .bind::<Array<SqlUuid>, _>(done_events)
        .bind::<Array<Jsonb>, _>(done_outputs)
        .bind::<Array<SqlUuid>, _>(freed_users)
        .bind::<Array<Text>, _>(freed_keys)
        .bind::<SmallInt, _>(shard)
        .cached()
        .get_result::<Counted>(conn)
        .await?;
    Ok(())
}
