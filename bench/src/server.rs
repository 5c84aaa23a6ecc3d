//! The processes under test: the release server on its own PostgreSQL, and the local upstream.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::load::{self, Prepared};

pub const ADMIN_EMAIL: &str = "bench-admin@example.com";
pub const ADMIN_PASSWORD: &str = "Bench-Admin-Passw0rd!";

/// The directory of this executable (`target/release`), where the server binary is built too.
fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this executable has no directory")
}

/// `cargo build --release --bin joyfull-hub`, so the server measured is the current source.
pub async fn build_server() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the release server…");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--package",
            "joyfull-hub",
            "--bin",
            "joyfull-hub",
        ])
        .status()
        .await
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the server failed");
    }
    Ok(())
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    let mut file = std::fs::File::open("/dev/urandom").context("cannot read /dev/urandom")?;
    std::io::Read::read_exact(&mut file, &mut buffer)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// The server's environment: production mode, fresh secrets, its data under `dir`.
pub struct Environment {
    vars: Vec<(&'static str, String)>,
    dir: PathBuf,
}

impl Environment {
    pub fn new(dir: &Path, log_filter: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        Ok(Self {
            vars: vec![
                ("HUB_ENV", "production".into()),
                ("HUB_DATA_DIR", dir.join("data").display().to_string()),
                ("HUB_JWT_SECRET", random_hex(32)?),
                ("HUB_ENCRYPTION_KEY", random_hex(32)?),
                ("HUB_ADMIN_EMAIL", ADMIN_EMAIL.into()),
                ("HUB_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
                // The suite registers its users from one address and keeps its tokens for a while.
                ("HUB_REGISTRATIONS_PER_HOUR", "1000000".into()),
                ("HUB_ACCESS_TOKEN_TTL_SECS", "7200".into()),
                // The suite's upstream runs on loopback, which production refuses unless allowed.
                ("HUB_ALLOW_PRIVATE_UPSTREAMS", "true".into()),
                // The login storm gives each user an address of its own through X-Forwarded-For.
                ("HUB_TRUSTED_PROXIES", "127.0.0.1/32".into()),
                // Its readers and callers run far beyond a person's query budget; the budget is still
                // spent (one pacing round trip per request), never refused.
                ("HUB_QUERY_POINTS_PER_MINUTE", "1000000000".into()),
                // Its users never open a verification mail.
                ("HUB_REQUIRE_VERIFIED_EMAIL", "false".into()),
                // Nor pay: paid plans are approved at once (a named opt-in in production).
                ("HUB_PAYMENT_PROVIDER", "manual".into()),
                ("RUST_LOG", log_filter.into()),
            ],
            dir,
        })
    }

    fn command(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut command = Command::new(binary_dir()?.join("joyfull-hub"));
        command.args(args).env_remove("DATABASE_URL");
        for (key, value) in &self.vars {
            command.env(key, value);
        }
        Ok(command)
    }

    fn log_file(&self, name: &str) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))?)
    }

    /// Makes sure the database holds `rows` usage rows (generated once, remembered in a marker file).
    pub async fn ensure_usage_rows(&self, rows: i64) -> anyhow::Result<()> {
        let marker = self.dir.join("usage-rows");
        let have: i64 = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if have >= rows {
            return Ok(());
        }
        let missing = rows - have;
        eprintln!(
            "generating {missing} usage rows (once; later runs reuse them, see {})…",
            marker.display()
        );
        let started = Instant::now();
        let log = self.log_file("generate.log")?;
        let status = self
            .command(&[
                "generate-usage",
                "--rows",
                &missing.to_string(),
                "--users",
                "1000",
                "--tools",
                "20",
                "--days",
                "365",
            ])?
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .await?;
        if !status.success() {
            bail!(
                "generate-usage failed; see {}",
                self.dir.join("generate.log").display()
            );
        }
        std::fs::write(&marker, rows.to_string())?;
        eprintln!("generated in {:.0} s", started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The `postgres` database of the server's own PostgreSQL while it runs (from its
    /// `postmaster.pid`: line 5 is the socket directory, line 8 the status).
    pub fn cluster_url(&self) -> Option<String> {
        let pid_file = std::fs::read_to_string(
            self.dir
                .join("data")
                .join("postgres")
                .join("postmaster.pid"),
        )
        .ok()?;
        let lines: Vec<&str> = pid_file.lines().collect();
        if lines.get(7)?.trim() != "ready" {
            return None;
        }
        let socket_dir: String = lines
            .get(4)?
            .trim()
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let port = lines.get(3)?.trim();
        Some(format!(
            "postgresql:///postgres?user=postgres&host={socket_dir}&port={port}"
        ))
    }

    /// Starts the server on a free loopback port and waits until it is ready.
    pub async fn start_server(&self) -> anyhow::Result<Server> {
        let address = free_address()?;
        let log = self.log_file("server.log")?;
        let mut command = self.command(&["serve"])?;
        command
            .env("HUB_LISTEN", address.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().context("cannot start the server")?;
        let server = Server { child, address };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok((200, _)) = load::request(address, &Prepared::get("/ready")).await {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not become ready; see {}",
                    self.dir.join("server.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The running server.
pub struct Server {
    child: Child,
    pub address: SocketAddr,
}

impl Server {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server gracefully (SIGTERM), so it stops its PostgreSQL too.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }

    /// A GraphQL request, as the user of `token` (a JWT or an API key) when given.
    pub async fn graphql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut prepared = Prepared::post_json(
            "/graphql",
            &json!({ "query": query, "variables": variables }),
        );
        if let Some(token) = token {
            prepared = prepared.header("authorization", format!("Bearer {token}"));
        }
        // As a well-behaved client does: an error the server calls retryable is tried again after the
        // wait it asks for, a few times.
        let mut attempts = 0;
        loop {
            let (_, body) = load::request(self.address, &prepared).await?;
            let body: Value = serde_json::from_slice(&body)?;
            let retry_after = body["errors"]
                .as_array()
                .and_then(|errors| errors.first())
                .filter(|error| error["extensions"]["retryable"] == true)
                .map(|error| error["extensions"]["retryAfter"].as_u64().unwrap_or(1));
            match retry_after {
                Some(seconds) if attempts < 5 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(seconds.clamp(1, 5))).await;
                }
                _ => return Ok(body),
            }
        }
    }
}

/// A helper process of the suite (the local upstream, the bare baseline) and where it listens.
pub struct Helper {
    child: Child,
    pub address: SocketAddr,
}

impl Helper {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

pub async fn start_upstream() -> anyhow::Result<Helper> {
    start_helper("upstream", &[]).await
}

/// Starts the bare framework baseline (`bench hello`) in a process of its own, relaying `upstream`;
/// with `database` (a cluster's URL), its metered relay writes usage rows there.
pub async fn start_hello(upstream: SocketAddr, database: Option<&str>) -> anyhow::Result<Helper> {
    let mut env = vec![(crate::hello::UPSTREAM_ENV, upstream.to_string())];
    if let Some(url) = database {
        env.push((crate::floor_meter::DATABASE_ENV, url.to_owned()));
    }
    start_helper("hello", &env).await
}

/// Starts this binary's `command` in a process of its own and reads the address it listens on.
async fn start_helper(command: &str, env: &[(&str, String)]) -> anyhow::Result<Helper> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg(command)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the {command} process"))?;
    let stdout = child.stdout.take().context("no output")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .with_context(|| format!("the {command} process did not start"))??
        .with_context(|| format!("the {command} process exited"))?;
    let address = line
        .strip_prefix("listening ")
        .with_context(|| format!("unexpected output of the {command} process"))?
        .parse()?;
    Ok(Helper { child, address })
}

/// Samples a process's resident set size while running; `peak_mib` reads the highest so far.
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system, in clock ticks) of a process, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields that follow start after its closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The machine's CPU time so far over all its CPUs, and of it the time its hypervisor gave to something
/// else ("steal"), in clock ticks, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let fields: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .filter_map(|field| field.parse().ok())
        .collect();
    Some((fields.iter().sum(), *fields.get(7)?))
}

/// The children of a process (of all its threads).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// CPU time used so far by the process that answers (the hub, or a bare server) and, apart, by all
/// the descendants of the hub (its PostgreSQL, which a bare server's metered relay writes to as well).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSnapshot {
    pub server_ticks: u64,
    pub descendants_ticks: u64,
    /// The machine's: all CPU time, and the time taken by its host (see [`machine_ticks`]).
    pub machine_ticks: u64,
    pub stolen_ticks: u64,
}

impl CpuSnapshot {
    /// `answering`'s own time, and the time of `hub`'s descendants.
    pub fn take(answering: Option<u32>, hub: Option<u32>) -> Self {
        let mut descendants_ticks = 0;
        let mut pending = hub.map(children).unwrap_or_default();
        while let Some(child) = pending.pop() {
            descendants_ticks += cpu_ticks(child).unwrap_or(0);
            pending.extend(children(child));
        }
        let (machine_ticks, stolen_ticks) = machine_ticks().unwrap_or_default();
        Self {
            server_ticks: answering.and_then(cpu_ticks).unwrap_or(0),
            descendants_ticks,
            machine_ticks,
            stolen_ticks,
        }
    }

    /// The share of the machine's CPU time its host took since `earlier` (0 to 1): while it does, every
    /// process here stops, so latencies measured then are not the server's alone.
    pub fn stolen_since(&self, earlier: &Self) -> f64 {
        let all = self.machine_ticks.saturating_sub(earlier.machine_ticks);
        let stolen = self.stolen_ticks.saturating_sub(earlier.stolen_ticks);
        if all == 0 {
            0.0
        } else {
            stolen as f64 / all as f64
        }
    }

    /// CPU seconds of the server and of its descendants since `earlier` (processes that ended in
    /// between are not counted).
    pub fn seconds_since(&self, earlier: &Self) -> (f64, f64) {
        // Linux reports these in USER_HZ, 100 per second on every architecture it runs on.
        let seconds = |now: u64, then: u64| now.saturating_sub(then) as f64 / 100.0;
        (
            seconds(self.server_ticks, earlier.server_ticks),
            seconds(self.descendants_ticks, earlier.descendants_ticks),
        )
    }
}

impl RssSampler {
    pub fn start(pid: Option<u32>) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(pid) = pid {
            let (peak, stop) = (peak_kib.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
        Self { peak_kib, stop }
    }

    pub fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_counted_for_the_process_and_apart_for_its_children() {
        let me = std::process::id();
        // A child that burns CPU until it is killed.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 50000000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let before = CpuSnapshot::take(Some(me), Some(me));
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(children(me).contains(&child.id()));
        let after = CpuSnapshot::take(Some(me), Some(me));
        let (own, descendants) = after.seconds_since(&before);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(own >= 0.1, "the test's own 300 ms of spinning: {own} s");
        assert!(descendants > 0.0, "the child's loop: {descendants} s");
        assert_eq!(
            CpuSnapshot::take(None, None).seconds_since(&before),
            (0.0, 0.0),
            "no process, no time"
        );
        assert!(
            after.machine_ticks > before.machine_ticks,
            "the machine's clock runs"
        );
        assert!((0.0..=1.0).contains(&after.stolen_since(&before)));
        let stolen = CpuSnapshot {
            machine_ticks: before.machine_ticks + 200,
            stolen_ticks: before.stolen_ticks + 50,
            ..before
        };
        assert!((stolen.stolen_since(&before) - 0.25).abs() < 1e-9);
        assert!(
            before.stolen_since(&before).abs() < 1e-9,
            "no time, nothing taken"
        );
    }
}
