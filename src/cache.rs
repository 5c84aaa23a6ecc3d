//! Read-through caches of the rows nearly every request reads: API keys, the callers they stand for
//! and their profiles (`me`), tools, and the whole tool catalogue (tens of rows that change a few times
//! a day, listed by every dashboard). They spare an invocation two database round trips, a catalogue
//! page two queries and a dashboard's `me` one; PostgreSQL stays the only truth.
//!
//! Correct across server instances: a trigger on `api_keys`, `users` and `tools` sends a notification
//! on the `hub_cache` channel when a row that matters here changes (see the `cache_invalidation`
//! migration), whoever changed it; every instance's listener (`db::listener`) drops that entry. A write
//! made through this instance also drops its entries at once, so the next request here sees it; other
//! instances see it when the notification arrives (milliseconds).
//!
//! The caches are used only while this instance's listener is connected: connecting and losing the
//! connection both empty them, so a missed notification can never leave a stale entry. A read from the
//! database is only cached when no invalidation happened since it started (an epoch counter), so a
//! slow read cannot put back what a notification has just dropped. Entries also expire after
//! [`TTL`], and each table holds at most [`CAPACITY`] entries (it is emptied when full).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::billing::model::Entitlement;
use crate::keys::model::ApiKeyRow;
use crate::tools::model::ToolRow;
use crate::users::model::{UserAccess, UserProfile};

/// The notification channel of the `cache_invalidation` trigger.
pub const CHANNEL: &str = "hub_cache";
/// How long an entry may be served without being read again.
pub const TTL: Duration = Duration::from_secs(60);
/// Most entries per table.
pub const CAPACITY: usize = 100_000;

/// The `api_keys` cache key of a key hash: lower-case hex, as PostgreSQL's `encode(…, 'hex')`.
pub fn key_of(hash: &[u8]) -> String {
    crate::secrets::hex(hash)
}

/// Whether entries may be served, and how many invalidations happened so far.
#[derive(Default)]
struct Freshness {
    live: AtomicBool,
    epoch: AtomicU64,
}

/// Taken before reading from the database; the row read is cached only if the ticket is still current.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(Option<u64>);

/// One cached table.
pub struct Table<K, V> {
    freshness: Arc<Freshness>,
    entries: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Table<K, V> {
    fn new(freshness: Arc<Freshness>) -> Self {
        Self {
            freshness,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached value, if the caches are live and it has not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        if !self.freshness.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let (value, loaded) = entries.get(key)?;
        (loaded.elapsed() < TTL).then(|| value.clone())
    }

    /// Caches `value`, unless something was invalidated since `ticket` was taken.
    pub fn put(&self, ticket: Ticket, key: K, value: V) {
        let Ticket(Some(epoch)) = ticket else { return };
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: an invalidation bumps the epoch before it takes the lock to remove.
        if self.freshness.epoch.load(Ordering::Acquire) != epoch
            || !self.freshness.live.load(Ordering::Acquire)
        {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// The cached value, else `load`'s, cached on the way (unless invalidated meanwhile).
    pub async fn get_or_load<E>(
        &self,
        key: K,
        load: impl Future<Output = Result<Option<V>, E>>,
    ) -> Result<Option<V>, E> {
        if let Some(value) = self.get(&key) {
            return Ok(Some(value));
        }
        let ticket = self.ticket();
        let value = load.await?;
        if let Some(value) = &value {
            self.put(ticket, key, value.clone());
        }
        Ok(value)
    }

    fn ticket(&self) -> Ticket {
        if self.freshness.live.load(Ordering::Acquire) {
            Ticket(Some(self.freshness.epoch.load(Ordering::Acquire)))
        } else {
            Ticket(None)
        }
    }

    /// Changes a cached value in place (for fields this instance itself just wrote).
    pub fn update(&self, key: &K, change: impl FnOnce(&mut V)) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some((value, _)) = entries.get_mut(key) {
            change(value);
        }
    }

    fn remove_where(&self, mut stale: impl FnMut(&K, &V) -> bool) {
        self.freshness.epoch.fetch_add(1, Ordering::AcqRel);
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|key, (value, _)| !stale(key, value));
    }

    fn remove(&self, key: &K) {
        self.freshness.epoch.fetch_add(1, Ordering::AcqRel);
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }

    fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The caches of one server instance.
pub struct Caches {
    freshness: Arc<Freshness>,
    /// API keys by the SHA-256 of the key, in lower-case hex (see [`key_of`]).
    pub api_keys: Table<String, ApiKeyRow>,
    /// What authentication needs of a user, by id.
    pub users: Table<Uuid, UserAccess>,
    /// What a user sees of their own account (`me`), by id; dropped with the user's entry.
    pub profiles: Table<Uuid, UserProfile>,
    /// Tools by id (deleted and disabled ones included; callers filter).
    pub tools: Table<Uuid, Arc<ToolRow>>,
    /// The whole catalogue (live tools, disabled ones included) in the database's `(name, id)` order,
    /// dropped whenever any tool changes.
    pub catalogue: Table<(), Arc<Vec<ToolRow>>>,
    /// The sessions of a user that were ended while their access tokens may still be unexpired, by user
    /// id (dropped with the user's entry: the `ended_sessions` trigger notifies as `user:<id>`).
    pub ended_sessions: Table<Uuid, Arc<Vec<Uuid>>>,
    /// Each user's current subscription's entitlement (`None`: no current subscription).
    pub entitlements: Table<Uuid, Option<Entitlement>>,
    barriers: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl Default for Caches {
    fn default() -> Self {
        let freshness = Arc::new(Freshness::default());
        Self {
            api_keys: Table::new(freshness.clone()),
            users: Table::new(freshness.clone()),
            profiles: Table::new(freshness.clone()),
            tools: Table::new(freshness.clone()),
            catalogue: Table::new(freshness.clone()),
            ended_sessions: Table::new(freshness.clone()),
            entitlements: Table::new(freshness.clone()),
            freshness,
            barriers: Mutex::new(HashMap::new()),
        }
    }
}

impl Caches {
    /// Take before reading a row to cache.
    pub fn ticket(&self) -> Ticket {
        self.users.ticket()
    }

    /// The listener connected (`true`) or lost its connection (`false`): either way, everything
    /// cached so far is dropped.
    pub fn set_live(&self, live: bool) {
        self.freshness.live.store(false, Ordering::Release);
        self.freshness.epoch.fetch_add(1, Ordering::AcqRel);
        self.api_keys.clear();
        self.users.clear();
        self.profiles.clear();
        self.tools.clear();
        self.catalogue.clear();
        self.ended_sessions.clear();
        self.entitlements.clear();
        self.freshness.live.store(live, Ordering::Release);
    }

    /// Whether entries are being served (the listener is connected).
    pub fn is_live(&self) -> bool {
        self.freshness.live.load(Ordering::Acquire)
    }

    /// Drops every user's entitlement (a plan changed).
    pub fn forget_entitlements(&self) {
        self.entitlements.remove_where(|_, _| true);
    }

    /// Drops a user, their profile, their ended sessions, their entitlement and every API key of theirs.
    pub fn invalidate_user(&self, id: Uuid) {
        self.users.remove(&id);
        self.profiles.remove(&id);
        self.ended_sessions.remove(&id);
        self.entitlements.remove(&id);
        self.api_keys.remove_where(|_, key| key.user_id == id);
    }

    pub fn invalidate_tool(&self, id: Uuid) {
        self.tools.remove(&id);
        self.catalogue.remove(&());
    }

    /// Applies one notification from the `hub_cache` channel.
    pub fn apply(&self, payload: &str) {
        let parsed = payload.split_once(':');
        match parsed {
            Some(("api_key", hash)) => self.api_keys.remove(&hash.to_owned()),
            Some(("user", id)) => match Uuid::parse_str(id) {
                Ok(id) => self.invalidate_user(id),
                Err(_) => self.set_live(self.is_live()),
            },
            Some(("tool", id)) => match Uuid::parse_str(id) {
                Ok(id) => self.invalidate_tool(id),
                Err(_) => self.set_live(self.is_live()),
            },
            Some(("barrier", token)) => {
                let waiter = self
                    .barriers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(token);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
            }
            // Unknown: forget everything rather than risk a stale entry.
            _ => self.set_live(self.is_live()),
        }
    }

    /// Waits until every invalidation committed before this call has reached this instance (for a
    /// write made outside the application, such as SQL typed by an operator or a test). Returns at
    /// once when the caches are not live.
    pub async fn sync(&self, pool: &crate::db::DbPool) -> anyhow::Result<()> {
        use diesel_async::RunQueryDsl;
        if !self.is_live() {
            return Ok(());
        }
        let token = Uuid::new_v4().to_string();
        let (done, arrived) = oneshot::channel();
        self.barriers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), done);
        let mut conn = pool.get().await?;
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(CHANNEL)
            .bind::<diesel::sql_types::Text, _>(format!("barrier:{token}"))
            .execute(&mut conn)
            .await?;
        drop(conn);
        let waited = tokio::time::timeout(Duration::from_secs(5), arrived).await;
        if !matches!(waited, Ok(Ok(()))) {
            self.barriers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&token);
            // The listener is not keeping up: start again from empty.
            self.set_live(self.is_live());
        }
        Ok(())
    }
}

impl crate::db::listener::Subscriber for Caches {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn connected(&self, up: bool) {
        self.set_live(up);
    }

    fn notify(&self, payload: &str) {
        self.apply(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_served_or_kept_until_live() {
        let caches = Caches::default();
        let id = Uuid::now_v7();
        caches.users.put(caches.ticket(), id, access(id));
        assert_eq!(caches.users.len(), 0);
        caches.set_live(true);
        caches.users.put(caches.ticket(), id, access(id));
        assert!(caches.users.get(&id).is_some());
        caches.set_live(false);
        assert!(caches.users.get(&id).is_none());
        assert_eq!(caches.users.len(), 0);
    }

    #[test]
    fn a_read_that_started_before_an_invalidation_is_not_cached() {
        let caches = Caches::default();
        caches.set_live(true);
        let id = Uuid::now_v7();
        let ticket = caches.ticket();
        caches.apply(&format!("user:{id}"));
        caches.users.put(ticket, id, access(id));
        assert!(caches.users.get(&id).is_none());
        caches.users.put(caches.ticket(), id, access(id));
        assert!(caches.users.get(&id).is_some());
    }

    #[test]
    fn notifications_drop_their_entries_and_a_user_drops_their_keys() {
        let caches = Caches::default();
        caches.set_live(true);
        let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
        let ticket = caches.ticket();
        caches.users.put(ticket, user, access(user));
        caches.users.put(ticket, other, access(other));
        caches.api_keys.put(ticket, key_of(&[1, 2]), key(user));
        caches.api_keys.put(ticket, key_of(&[3, 0xab]), key(other));
        caches.apply("api_key:03ab");
        assert!(caches.api_keys.get(&key_of(&[3, 0xab])).is_none());
        assert!(caches.api_keys.get(&key_of(&[1, 2])).is_some());
        caches.apply(&format!("user:{user}"));
        assert!(caches.users.get(&user).is_none());
        assert!(caches.api_keys.get(&key_of(&[1, 2])).is_none());
        assert!(caches.users.get(&other).is_some());
        caches.apply("something else");
        assert!(caches.users.get(&other).is_none());
        assert!(caches.is_live());
    }

    fn access(id: Uuid) -> UserAccess {
        UserAccess {
            id: crate::users::model::UserId(id),
            role: crate::users::model::Role::User,
            status: crate::users::model::UserStatus::Active,
            session_version: 1,
            deleted: false,
            email_verified: true,
        }
    }

    fn key(user: Uuid) -> ApiKeyRow {
        ApiKeyRow {
            id: Uuid::now_v7(),
            user_id: user,
            name: "k".into(),
            prefix: "jhk_".into(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            created_at: chrono::Utc::now(),
            scopes: vec![crate::keys::model::Scope::Read],
            requests_per_minute: None,
            token_budget: None,
        }
    }
}
