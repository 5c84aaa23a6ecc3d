//! Password hashing with Argon2id, on the blocking pool, with a bound on how many hashes run at once:
//! a login storm queues for a permit instead of taking every thread the rest of the server needs.
//! The queue is bounded by time: from the hashes ahead and the recent average hash time, a new request
//! knows its expected wait, and when that exceeds `HUB_MAX_HASH_WAIT_MS` it is refused at once with
//! `RATE_LIMITED` and a `retryAfter`, so accepted requests stay fast under any load (load shedding).
//! Unknown accounts are checked against a dummy hash, so they cost the same time as a wrong password.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher as _, Version};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::AuthSettings;
use crate::error::AppError;

/// See the module documentation.
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    concurrency: usize,
    /// Hashes waiting or running.
    pending: Arc<AtomicUsize>,
    /// Moving average of one hash's time, in microseconds.
    average_micros: Arc<AtomicU64>,
    max_wait: Duration,
    dummy_hash: Arc<str>,
    memory: Arc<MemoryPool>,
}

/// Argon2's working memory (19 MiB at the default cost), kept between hashes. Allocating it per hash
/// made the allocator keep hundreds of MiB resident under a login storm; reusing one buffer per
/// concurrent hash bounds the memory and saves the page faults of touching fresh memory each time.
struct MemoryPool {
    blocks: usize,
    free: std::sync::Mutex<Vec<Vec<Block>>>,
    keep: usize,
}

impl MemoryPool {
    /// Runs `work` with a buffer from the pool (a fresh one when none is free), then keeps the buffer.
    fn with<T>(&self, work: impl FnOnce(&mut Vec<Block>) -> T) -> T {
        let reused = self.free.lock().ok().and_then(|mut free| free.pop());
        let mut blocks = reused.unwrap_or_else(|| vec![Block::new(); self.blocks]);
        let result = work(&mut blocks);
        if let Ok(mut free) = self.free.lock()
            && free.len() < self.keep
            && blocks.len() == self.blocks
        {
            free.push(blocks);
        }
        result
    }
}

/// Argon2id of `password` with a fresh 16-byte salt, computed in `memory`, as a PHC string.
fn hash_with(memory: &mut Vec<Block>, params: Params, password: &[u8]) -> anyhow::Result<String> {
    // 16 bytes from the operating system's CSPRNG (a v4 UUID's randomness source).
    let salt = *uuid::Uuid::new_v4().as_bytes();
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::new());
    }
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password, &salt, &mut out, memory.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("{e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("{e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("{e}"))?),
    };
    Ok(phc.to_string())
}

/// Recomputes a PHC string's hash (with its own algorithm, version, cost and salt) in `memory`, and
/// compares in constant time. Hashes needing more memory than the pool's buffers get their own.
fn verify_with(memory: &mut Vec<Block>, password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::new());
    }
    let mut out = vec![0u8; expected.len()];
    if Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt.as_ref(), &mut out, memory.as_mut_slice())
        .is_err()
    {
        return false;
    }
    out.iter()
        .zip(expected.as_bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
        && out.len() == expected.len()
}

/// Where a hash's time went: queued for a hashing slot (a permit), then hashing on the blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashTiming {
    pub queued: Duration,
    pub hashed: Duration,
}

/// Counts a hash as pending until dropped (also when its request is cancelled).
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PasswordHasher {
    pub fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let started = Instant::now();
        let dummy_hash = argon2
            .hash_password(uuid::Uuid::new_v4().to_string().as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot compute the dummy hash: {e}"))
            .context("password hashing does not work")?
            .to_string();
        let first_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let concurrency = settings.max_concurrent_hashes.max(1);
        let blocks = params.block_count();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            pending: Arc::new(AtomicUsize::new(0)),
            average_micros: Arc::new(AtomicU64::new(first_micros.max(1))),
            max_wait: settings.max_hash_wait,
            dummy_hash: dummy_hash.into(),
            memory: Arc::new(MemoryPool {
                blocks,
                free: std::sync::Mutex::new(Vec::new()),
                keep: concurrency,
            }),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=…`) for `password`, with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let params = self.params.clone();
        let password = password.to_owned();
        let memory = Arc::clone(&self.memory);
        self.run(move || {
            memory
                .with(|blocks| hash_with(blocks, params, password.as_bytes()))
                .map_err(|e| AppError::internal(anyhow::anyhow!("hashing a password failed: {e}")))
        })
        .await?
    }

    /// Whether `password` matches `hash`; with `None` (unknown account) it checks the dummy hash and
    /// answers false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AppError> {
        Ok(self.verify_timed(password, hash).await?.0)
    }

    /// [`PasswordHasher::verify`], with how long the check queued for a hashing slot and how long the
    /// hash took.
    pub async fn verify_timed(
        &self,
        password: &str,
        hash: Option<&str>,
    ) -> Result<(bool, HashTiming), AppError> {
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.to_owned();
        let memory = Arc::clone(&self.memory);
        let (matches, timing) = self
            .run_timed(move || {
                memory.with(|blocks| verify_with(blocks, password.as_bytes(), &hash))
            })
            .await?;
        Ok((known && matches, timing))
    }

    /// How long a hash that arrives now can expect to wait before it starts.
    fn expected_wait(&self, ahead: usize) -> Duration {
        let queued = ahead.saturating_sub(self.concurrency.saturating_sub(1));
        let rounds = u64::try_from(queued.div_ceil(self.concurrency)).unwrap_or(u64::MAX);
        Duration::from_micros(
            self.average_micros
                .load(Ordering::Relaxed)
                .saturating_mul(rounds),
        )
    }

    /// Refuses at once (`RATE_LIMITED`) when a hash started now would wait longer than allowed, so
    /// callers can shed a request before doing any other work for it.
    pub fn admit(&self) -> Result<(), AppError> {
        self.check(self.pending.load(Ordering::Relaxed))
    }

    fn check(&self, ahead: usize) -> Result<(), AppError> {
        let wait = self.expected_wait(ahead);
        if wait > self.max_wait {
            metrics::counter!("password_hashes_shed_total").increment(1);
            return Err(AppError::RateLimited {
                message: "The server is busy checking passwords; try again in a moment.".into(),
                retry_after: wait.as_secs().max(1),
            });
        }
        Ok(())
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        Ok(self.run_timed(work).await?.0)
    }

    async fn run_timed<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(T, HashTiming), AppError> {
        let arrived = Instant::now();
        let ahead = self.pending.fetch_add(1, Ordering::Relaxed);
        let _pending = Pending(Arc::clone(&self.pending));
        self.check(ahead)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("hash permits closed: {e}")))?;
        let queued = arrived.elapsed();
        let span = tracing::Span::current();
        let average = Arc::clone(&self.average_micros);
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = span.in_scope(work);
            let hashed = started.elapsed();
            let took = u64::try_from(hashed.as_micros()).unwrap_or(u64::MAX);
            // An exponential moving average (1/8 weight), so a burst of slow hashes moves it quickly.
            let _ = average.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some((old.saturating_mul(7).saturating_add(took) / 8).max(1))
            });
            (result, HashTiming { queued, hashed })
        })
        .instrument(tracing::Span::current())
        .await
        .map_err(|e| AppError::internal(anyhow::anyhow!("the hashing task failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(&Config::from_lookup(|_| None).unwrap().auth).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = hasher();
        let hash = hasher.hash("Corr3ct-Horse").await.unwrap();

        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify("Corr3ct-Horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("wrong", Some(&hash)).await.unwrap());
        // A standard PHC string: the reference verifier accepts it too.
        use argon2::PasswordVerifier as _;
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"Corr3ct-Horse", &parsed)
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_check_that_waits_for_the_slot_reports_the_wait_apart_from_the_hash() {
        let mut settings = Config::from_lookup(|_| None).unwrap().auth;
        settings.max_concurrent_hashes = 1;
        let hasher = Arc::new(PasswordHasher::new(&settings).unwrap());
        let hash = hasher.hash("Corr3ct-Horse").await.unwrap();

        let (matches, free) = hasher
            .verify_timed("Corr3ct-Horse", Some(&hash))
            .await
            .unwrap();
        assert!(matches);
        assert!(free.hashed > Duration::ZERO);
        assert!(free.queued < Duration::from_millis(100), "{free:?}");

        // The only slot is taken for 300 ms: the check queues that long, and its hash is counted apart.
        let slot = hasher.permits.clone().acquire_owned().await.unwrap();
        let waiting = {
            let (hasher, hash) = (hasher.clone(), hash.clone());
            tokio::spawn(async move { hasher.verify_timed("Corr3ct-Horse", Some(&hash)).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(slot);
        let (matches, queued) = waiting.await.unwrap().unwrap();
        assert!(matches);
        // The waiter starts queueing a moment after the slot's 300 ms began.
        assert!(queued.queued >= Duration::from_millis(250), "{queued:?}");
        assert!(queued.hashed > Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_wait_budget_hashes_are_refused_at_once_and_the_rest_succeed() {
        let mut settings = Config::from_lookup(|_| None).unwrap().auth;
        settings.max_concurrent_hashes = 1;
        settings.max_hash_wait = Duration::from_millis(1);
        let hasher = Arc::new(PasswordHasher::new(&settings).unwrap());
        let hash = hasher.hash("Corr3ct-Horse").await.unwrap();

        let started = Instant::now();
        let attempts: Vec<_> = (0..6)
            .map(|_| {
                let hasher = Arc::clone(&hasher);
                let hash = hash.clone();
                tokio::spawn(async move {
                    let begun = Instant::now();
                    (
                        hasher.verify("Corr3ct-Horse", Some(&hash)).await,
                        begun.elapsed(),
                    )
                })
            })
            .collect();
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for attempt in attempts {
            match attempt.await.unwrap() {
                (Ok(true), took) => accepted.push(took),
                (Err(AppError::RateLimited { retry_after, .. }), took) => {
                    assert!(retry_after >= 1);
                    refused.push(took);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let quickest_hash = accepted.iter().min().copied();
        assert!(quickest_hash.is_some(), "the first hash runs");
        assert!(!refused.is_empty(), "hashes beyond the budget are shed");
        assert!(
            refused.iter().all(|took| Some(*took) < quickest_hash),
            "refusals come before any hash is done: {refused:?}, hashes {accepted:?} (all took {:?})",
            started.elapsed()
        );
        assert_eq!(hasher.pending.load(Ordering::Relaxed), 0);
        // Once the queue drains, hashes are accepted again.
        assert!(hasher.verify("Corr3ct-Horse", Some(&hash)).await.unwrap());
    }

    #[test]
    fn hashes_verify_with_their_own_parameters_in_reused_memory() {
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let cheap_hash = cheap.hash_password(b"Corr3ct-Horse").unwrap().to_string();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x10, Params::default())
            .hash_password(b"Corr3ct-Horse")
            .unwrap()
            .to_string();
        let mut memory = Vec::new();

        assert!(verify_with(&mut memory, b"Corr3ct-Horse", &cheap_hash));
        assert!(!verify_with(&mut memory, b"Corr3ct-Horsf", &cheap_hash));
        assert!(
            verify_with(&mut memory, b"Corr3ct-Horse", &argon2i),
            "{argon2i}"
        );
        assert!(!verify_with(&mut memory, b"", &argon2i));
        assert!(!verify_with(&mut memory, b"Corr3ct-Horse", "not a hash"));
        assert!(!verify_with(
            &mut memory,
            b"Corr3ct-Horse",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ"
        ));
        // The buffer grew to the largest cost seen and is reused from then on.
        assert_eq!(memory.len(), Params::default().block_count());
    }

    #[tokio::test]
    async fn verifying_reuses_one_buffer_per_concurrent_hash() {
        let hasher = hasher();
        let hash = hasher.hash("Corr3ct-Horse").await.unwrap();
        for _ in 0..5 {
            assert!(hasher.verify("Corr3ct-Horse", Some(&hash)).await.unwrap());
        }
        let kept = hasher.memory.free.lock().unwrap().len();
        assert_eq!(kept, 1, "sequential verifications share one buffer");
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let hasher = hasher();
        assert!(!hasher.verify("anything", None).await.unwrap());
    }
}
