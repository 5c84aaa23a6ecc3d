//! Group commit for metering: every finished or refused invocation hands its settlement to the meter
//! and waits until a transaction holding it has committed, so the answer still leaves only after its
//! usage row is durable. Settlements that arrive while a batch is being written wait for the next one,
//! which writes them all at once — one statement, one commit, one flush — instead of one transaction
//! each. At low load a batch holds a single settlement and nothing waits.
//!
//! That statement spans three domains on purpose (billing's counters, the usage log and its rollups,
//! the gateway's idempotency keys): a settlement is atomic. Each part is its owner's SQL, bound by its
//! owner; the meter only assembles them (`db::compose`) and writes no table itself.
//!
//! The batching itself is `db::batch`: two writers take turns, so one batch can be filled while the
//! other is committing, and a failed batch is written again one settlement at a time, so one bad
//! settlement cannot fail the others; a batch lost with the database is written again once it is back,
//! unless its usage rows show it committed. Each batch locks subscriptions in key order, so two batches
//! never deadlock. Row locks are held until a commit is on disk, so the writers keep apart where they
//! can: the rollups are added after the answer (`usage::roll`), and the live-usage notifications go
//! out after the commit, from a connection of their own (a transaction that notifies holds a
//! database-wide lock through its commit, which would make the two writers' commits take turns).
//! A notification lost to a crash between the two costs a live feed one event; the usage row is kept.

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::repo::{self as idempotency, KeyOutcomeColumns};
use crate::billing::model::{PlanTier, Reservation};
use crate::billing::settlement as billing;
use crate::db::DbPool;
use crate::db::batch::{BatchStatement, Batcher};
use crate::db::cached::CachedExt;
use crate::db::compose;
use crate::db::vitals::Vitals;
use crate::error::AppResult;
use crate::usage::backlog::Backlog;
use crate::usage::model::UsageEvent;
use crate::usage::record as usage;

/// Writers: transactions that may be open at once.
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
    /// The caller's plan tier at the time (`None` without a subscription).
    pub tier: Option<PlanTier>,
    /// Settled with `event.tokens_used`; `None` for refused calls, which reserved nothing.
    pub reservation: Option<Reservation>,
    /// The API key to count the tokens to, when the call was made by a key with limits of its own.
    pub limited_key: Option<uuid::Uuid>,
    pub key: Option<(String, KeyOutcome)>,
}

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Meter {
    batcher: Batcher<Settle>,
    publisher: Batcher<Publish>,
    roll_backlog: Arc<Backlog>,
}

impl Meter {
    /// Starts the writers on the current Tokio runtime; they stop when the last `Meter` is dropped.
    /// Each call metered counts toward the roller's next roll (`roll_backlog`).
    pub fn start(pool: DbPool, vitals: &Arc<Vitals>, roll_backlog: Arc<Backlog>) -> Self {
        Self {
            batcher: Batcher::start(
                pool.clone(),
                Settle,
                WRITERS,
                "settlement",
                Arc::clone(vitals),
            ),
            publisher: Batcher::start(pool, Publish, 1, "usage_notification", Arc::clone(vitals)),
            roll_backlog,
        }
    }

    /// Returns once the settlement is committed; its live-usage notification follows.
    pub async fn write(&self, settlement: Settlement) -> AppResult<()> {
        let payload = serde_json::to_string(&settlement.event);
        self.batcher.submit(settlement).await?;
        self.roll_backlog.metered();
        match payload {
            Ok(payload) => self.publisher.send(payload),
            Err(e) => tracing::warn!(error = %e, "a usage event has no live notification"),
        }
        Ok(())
    }
}

/// Live-usage notifications, after their usage rows committed. Losing one in a database crash costs
/// a live feed an event, so their commits do not wait for the disk. A batch's events travel together,
/// as JSON arrays (see [`pack`]): each notification costs PostgreSQL a queue entry and a delivery to
/// every listening instance, whatever its size.
struct Publish;

/// Most bytes in one notification's payload (PostgreSQL refuses 8 000 and more).
const PAYLOAD_LIMIT: usize = 7_900;

/// Events (each a JSON object) as JSON arrays of at most [`PAYLOAD_LIMIT`] bytes, in their order; an
/// event too large to share a payload travels alone.
fn pack(events: &[&String]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for event in events {
        if !current.is_empty() && current.len() + event.len() + 2 > PAYLOAD_LIMIT {
            current.push(']');
            payloads.push(std::mem::take(&mut current));
        }
        current.push(if current.is_empty() { '[' } else { ',' });
        current.push_str(event);
    }
    if !current.is_empty() {
        current.push(']');
        payloads.push(current);
    }
    payloads
}

impl BatchStatement for Publish {
    type Request = String;
    type Response = ();

    const SETTINGS: &'static str =
        "SET plan_cache_mode = force_generic_plan; SET synchronous_commit = off";

    /// A live feed may run this much behind, so that at low load one notification carries the
    /// events of many calls rather than a transaction each.
    const GATHER: Duration = Duration::from_millis(20);

    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        _writer: usize,
        events: &[&String],
    ) -> AppResult<Vec<()>> {
        diesel::sql_query("SELECT count(pg_notify($1, p)) AS n FROM unnest($2::text[]) AS m(p)")
            .bind::<Text, _>(crate::usage::live::CHANNEL)
            .bind::<Array<Text>, _>(pack(events))
            .cached()
            .get_result::<Counted>(conn)
            .await?;
        Ok(vec![(); events.len()])
    }
}

/// The settlement statement, for the batcher.
struct Settle;

impl BatchStatement for Settle {
    type Request = Settlement;
    type Response = ();

    /// As long as liveness lets a writer hold a batch by default (`HUB_LIVENESS_BATCH_SECS`): the
    /// usage of a call the upstream already answered outlives a database restart or failover of up to
    /// a minute.
    const RETRY_AFTER_LOSS: Duration = Duration::from_secs(60);

    /// A batch's usage rows commit together, so its first row tells.
    async fn committed(
        &self,
        conn: &mut AsyncPgConnection,
        requests: &[&Settlement],
    ) -> AppResult<Option<Vec<()>>> {
        let Some(first) = requests.first() else {
            return Ok(Some(Vec::new()));
        };
        let recorded = usage::recorded(conn, first.event.id).await?;
        Ok(recorded.then(|| vec![(); requests.len()]))
    }

    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        _writer: usize,
        requests: &[&Settlement],
    ) -> AppResult<Vec<()>> {
        write_batch(conn, requests).await?;
        Ok(vec![(); requests.len()])
    }
}

/// A whole batch in one statement (one round trip, one commit), assembled from each owner's part:
/// billing settles the reservations (the parts its [`billing::Shape`] needs), usage writes the rows,
/// and idempotency keys are settled when the batch has any (`settles_keys`).
fn statement(shape: billing::Shape, settles_keys: bool) -> &'static str {
    /// Each shape's statement without and with the idempotency keys' part, composed on first use.
    type Pair = LazyLock<(String, String)>;
    static NOTHING_HELD: Pair = LazyLock::new(|| pair(billing::Shape::NothingHeld));
    static HELD: Pair = LazyLock::new(|| pair(billing::Shape::Held));
    static HELD_WITH_KEYS: Pair = LazyLock::new(|| pair(billing::Shape::HeldWithKeys));
    fn pair(shape: billing::Shape) -> (String, String) {
        (compose(shape, false), compose(shape, true))
    }
    let (without_keys, with_keys) = match shape {
        billing::Shape::NothingHeld => &*NOTHING_HELD,
        billing::Shape::Held => &*HELD,
        billing::Shape::HeldWithKeys => &*HELD_WITH_KEYS,
    };
    if settles_keys {
        with_keys
    } else {
        without_keys
    }
}

fn compose(shape: billing::Shape, settles_keys: bool) -> String {
    let mut parts: Vec<&compose::Part> = billing::settlement_parts(shape).to_vec();
    parts.push(usage::record_part());
    if settles_keys {
        parts.push(&idempotency::KEY_OUTCOMES);
    }
    compose::with_parts(&parts, "SELECT 1::bigint AS n")
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    #[expect(dead_code, reason = "read only to run the statement")]
    n: i64,
}

/// Writes settlements in one statement (see [`statement`]).
async fn write_batch(conn: &mut AsyncPgConnection, settlements: &[&Settlement]) -> AppResult<()> {
    let mut keys = KeyOutcomeColumns::default();
    for settlement in settlements {
        let user = settlement.event.user_id;
        match &settlement.key {
            Some((key, KeyOutcome::Complete(answer))) => {
                keys.done_users.push(user);
                keys.done_keys.push(key.as_str());
                keys.done_events.push(settlement.event.id);
                keys.done_outputs.push(answer);
            }
            Some((key, KeyOutcome::Abandon)) => {
                keys.freed_users.push(user);
                keys.freed_keys.push(key.as_str());
            }
            None => {}
        }
    }
    let rows: Vec<(&UsageEvent, Option<PlanTier>)> =
        settlements.iter().map(|s| (&s.event, s.tier)).collect();
    let settled: Vec<_> = settlements
        .iter()
        .filter_map(|s| {
            s.reservation
                .map(|r| (r, s.event.tokens_used, s.limited_key))
        })
        .collect();
    let settles_keys = !keys.is_empty();
    let settlements = billing::Settlements::of(&settled);
    let statement = statement(settlements.shape(), settles_keys);
    let query = diesel::sql_query(statement).into_boxed();
    let query = settlements.bind(query);
    let query = usage::bind_records(query, &rows);
    let query = if settles_keys {
        idempotency::bind_key_outcomes(query, keys)
    } else {
        query
    };
    query.cached().get_result::<Counted>(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_of_batch_has_its_statement_and_only_a_batch_with_keys_settles_them() {
        for shape in billing::Shape::ALL {
            for settles_keys in [false, true] {
                let sql = statement(shape, settles_keys);
                assert_eq!(sql, compose(shape, settles_keys));
                assert!(sql.contains("INSERT INTO usage_events"));
                assert_eq!(sql.contains("invocation_idempotency"), settles_keys);
            }
        }
    }

    /// `bench/settlement-floor.sh` sends this statement by hand, part by part: it must name the parts
    /// of a batch that holds no reservation, in their order.
    #[test]
    fn the_settlement_floor_script_sends_the_parts_of_a_call_no_limit_constrains() {
        let root = env!("CARGO_MANIFEST_DIR");
        let script = std::fs::read_to_string(format!("{root}/bench/settlement-floor.sh"))
            .expect("bench/settlement-floor.sh");
        let named: Vec<String> = script
            .lines()
            .filter_map(|line| line.trim().strip_prefix("part "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|file| std::fs::read_to_string(format!("{root}/src/{file}")).expect(file))
            .collect();
        let mut parts: Vec<&compose::Part> =
            billing::settlement_parts(billing::Shape::NothingHeld).to_vec();
        parts.push(usage::record_part());
        let sent: Vec<&str> = parts.iter().map(|part| part.sql).collect();
        assert_eq!(named, sent);
    }

    #[test]
    fn events_are_packed_in_order_into_arrays_under_the_payload_limit() {
        let events: Vec<String> = (0..100)
            .map(|n| format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(300)))
            .collect();
        let refs: Vec<&String> = events.iter().collect();
        let payloads = pack(&refs);
        assert!(payloads.len() > 1, "100 events of ~320 bytes need several");
        assert!(payloads.iter().all(|p| p.len() < PAYLOAD_LIMIT));
        let unpacked: Vec<serde_json::Value> = payloads
            .iter()
            .flat_map(|p| serde_json::from_str::<Vec<serde_json::Value>>(p).unwrap_or_default())
            .collect();
        let order: Vec<i64> = unpacked.iter().filter_map(|v| v["n"].as_i64()).collect();
        assert_eq!(order, (0..100).collect::<Vec<i64>>());
        assert!(pack(&[]).is_empty());
        let large = format!(r#"{{"pad":"{}"}}"#, "y".repeat(PAYLOAD_LIMIT));
        let small = "{}".to_owned();
        assert_eq!(
            pack(&[&small, &large, &small]).len(),
            3,
            "an event too large to share travels alone"
        );
    }
}
