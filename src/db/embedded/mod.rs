//! The owned PostgreSQL: when `DATABASE_URL` is unset the hub runs its own private cluster under
//! `$HUB_DATA_DIR/postgres`, from the machine's PostgreSQL server binaries.
//!
//! - It listens on a Unix socket only (no TCP at all), in a directory only its owner can enter, so
//!   password-less local authentication exposes nothing.
//! - PostgreSQL refuses to run as root; when the hub is root the cluster runs as the unprivileged
//!   system user `postgres`.
//! - `$HUB_DATA_DIR/postgres.lock` is held (flock) for the hub's lifetime: a second hub pointed at the
//!   same data directory gets a clear error instead of a corrupted cluster. The kernel drops the lock
//!   when a process dies, so a crash never leaves a stale lock behind.
//! - The postmaster runs under a tiny `sh` supervisor whose standard input is a pipe from the hub. When
//!   the hub closes it — on shutdown, or because the hub died, even by SIGKILL — the supervisor asks
//!   PostgreSQL for a fast shutdown. No postgres process outlives the hub.
//! - A stale `postmaster.pid` left by a crash is removed; an orphaned postmaster of an earlier run is
//!   stopped before the new one starts.
//!
//! Everything here is blocking; call it from `spawn_blocking` on a runtime.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod setup;
#[cfg(test)]
mod tests;

use setup::{
    clear_leftovers, find_bin_dir, init_cluster, lookup_user, percent_encode, pg_ctl,
    running_as_root, socket_dir_for, tail,
};

/// How the cluster is started.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// `false` turns fsync off: for throwaway test clusters only.
    pub durable: bool,
    /// How long to wait for the server to accept connections.
    pub startup_timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            durable: true,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// The unprivileged account that runs the cluster when the hub runs as root.
#[derive(Debug, Clone)]
pub(super) struct SystemUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// A running, owned PostgreSQL cluster. Stop it with [`OwnedPostgres::stop`]; dropping it also
/// triggers a fast shutdown without waiting for it.
#[derive(Debug)]
pub struct OwnedPostgres {
    supervisor: Child,
    stdin: Option<ChildStdin>,
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<SystemUser>,
    log_path: PathBuf,
    options: StartOptions,
    _lock: File,
}

/// Another hub owns the cluster of this data directory.
#[derive(Debug)]
pub struct InUse(pub PathBuf);

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the data directory {} is in use by another running joyfull-hub: stop it first, or point HUB_DATA_DIR elsewhere",
            self.0.display()
        )
    }
}

impl std::error::Error for InUse {}

/// The URL of the cluster another hub runs on `data_dir`, when it is ready (read from its
/// `postmaster.pid`: line 5 is the socket directory, line 8 the status).
pub fn running_url(data_dir: &Path, database: &str) -> Option<String> {
    let pid_file = fs::read_to_string(data_dir.join("postgres").join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    if lines.get(7)?.trim() != "ready" {
        return None;
    }
    Some(url_for(
        Path::new(lines.get(4)?.trim()),
        database,
        APPLICATION_ROLE,
    ))
}

fn url_for(socket_dir: &Path, database: &str, user: &str) -> String {
    format!(
        "postgresql:///{database}?user={user}&host={}&port={PORT}",
        percent_encode(&socket_dir.to_string_lossy())
    )
}

/// The role the server connects as: it owns the application database and its schema, and is not a
/// superuser (see `db::prepare_owned`).
pub const APPLICATION_ROLE: &str = "joyfull_hub";

/// The port number names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
pub(super) const PORT: u16 = 5432;

const SUPERVISOR: &str = r#"
exec 3<&0 0</dev/null
"$@" 3<&- &
pg=$!
( cat <&3 >/dev/null; kill -INT "$pg" 2>/dev/null ) &
watcher=$!
exec 3<&-
trap 'kill -INT "$pg" 2>/dev/null' INT TERM HUP
wait "$pg"
status=$?
while kill -0 "$pg" 2>/dev/null; do wait "$pg"; status=$?; done
kill "$watcher" 2>/dev/null
exit "$status"
"#;

impl OwnedPostgres {
    /// Initialises the cluster on first use, then starts it and waits until it accepts connections.
    pub fn start(data_dir: &Path, options: &StartOptions) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir().context(
            "no PostgreSQL server binaries found (looked for initdb and postgres on PATH and in /usr/lib/postgresql/*/bin): \
             install them (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL to an existing server",
        )?;
        fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", data_dir.display()))?;

        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join("postgres.lock"))
            .context("cannot open the cluster lock file")?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(InUse(data_dir).into()),
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).context("cannot lock the data directory");
            }
        }

        let run_as = if running_as_root()? {
            let user = lookup_user("postgres")?.context(
                "PostgreSQL refuses to run as root and there is no unprivileged system user `postgres` to run it as: \
                 create one (useradd --system postgres), run the hub as an ordinary user, or set DATABASE_URL",
            )?;
            tracing::info!(
                user = %user.name,
                "the hub runs as root, which PostgreSQL refuses; running the owned cluster as system user `{}`",
                user.name
            );
            Some(user)
        } else {
            None
        };

        let pgdata = data_dir.join("postgres");
        if !pgdata.join("PG_VERSION").is_file() {
            init_cluster(&bin_dir, &data_dir, &pgdata, run_as.as_ref())?;
        }
        let socket_dir = socket_dir_for(&pgdata, run_as.as_ref())?;
        clear_leftovers(&bin_dir, &pgdata, &socket_dir, run_as.as_ref())?;

        let log_path = data_dir.join("postgres.log");
        let (supervisor, stdin) = launch(
            &bin_dir,
            &pgdata,
            &socket_dir,
            run_as.as_ref(),
            &log_path,
            options,
        )?;
        let mut owned = Self {
            supervisor,
            stdin,
            bin_dir,
            pgdata,
            socket_dir,
            run_as,
            log_path,
            options: options.clone(),
            _lock: lock,
        };
        if let Err(e) = owned.wait_ready() {
            let _ = owned.shutdown();
            return Err(e);
        }
        tracing::info!(
            data = %owned.pgdata.display(),
            socket = %owned.socket_dir.display(),
            "owned PostgreSQL is ready"
        );
        Ok(owned)
    }

    /// Whether PostgreSQL has exited (crashed or killed: the hub never stops it but through `stop`).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.supervisor.try_wait().ok().flatten()
    }

    /// Whether the cluster's files are still there.
    pub fn cluster_exists(&self) -> bool {
        self.pgdata.join("PG_VERSION").is_file()
    }

    /// Starts PostgreSQL again after it exited; it runs crash recovery from its WAL as on any start.
    /// Fails for good when the cluster's files are gone.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if !self.cluster_exists() {
            bail!(
                "the owned PostgreSQL cannot be restarted: its data directory {} is gone",
                self.pgdata.display()
            );
        }
        drop(self.stdin.take());
        let _ = self.supervisor.wait();
        clear_leftovers(
            &self.bin_dir,
            &self.pgdata,
            &self.socket_dir,
            self.run_as.as_ref(),
        )?;
        let (supervisor, stdin) = launch(
            &self.bin_dir,
            &self.pgdata,
            &self.socket_dir,
            self.run_as.as_ref(),
            &self.log_path,
            &self.options,
        )?;
        self.supervisor = supervisor;
        self.stdin = stdin;
        self.wait_ready()
    }

    /// A connection URL for `database` over the private socket.
    /// A superuser's URL, for setting the cluster up.
    pub fn url(&self, database: &str) -> String {
        url_for(&self.socket_dir, database, "postgres")
    }

    /// The application role's URL, for serving.
    pub fn application_url(&self, database: &str) -> String {
        url_for(&self.socket_dir, database, APPLICATION_ROLE)
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Fast shutdown: lets PostgreSQL end sessions and checkpoint, then waits for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.shutdown() {
            tracing::info!("owned PostgreSQL stopped");
            Ok(())
        } else {
            bail!("PostgreSQL did not stop in time; it was stopped immediately")
        }
    }

    /// Returns whether the fast shutdown completed in time.
    fn shutdown(&mut self) -> bool {
        // Closing the pipe is the signal; see `SUPERVISOR`.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.supervisor.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        tracing::warn!("PostgreSQL ignored the fast shutdown; stopping it immediately");
        let _ = self
            .pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"])
            .output();
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
        false
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        pg_ctl(&self.bin_dir, &self.pgdata, self.run_as.as_ref(), args)
    }

    /// Waits until `postmaster.pid` says `ready` and the socket exists, or the server exits.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let timeout = self.options.startup_timeout;
        let log_path = self.log_path.clone();
        let deadline = Instant::now() + timeout;
        let socket = self.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        loop {
            if let Some(status) = self
                .supervisor
                .try_wait()
                .context("cannot watch PostgreSQL")?
            {
                bail!(
                    "PostgreSQL exited during start-up ({status}); its log {} ends with:\n{}",
                    log_path.display(),
                    tail(&log_path, 15)
                );
            }
            let ready = fs::read_to_string(self.pgdata.join("postmaster.pid"))
                .map(|pid_file| pid_file.lines().nth(7).map(str::trim) == Some("ready"))
                .unwrap_or(false);
            if ready && socket.exists() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "PostgreSQL did not become ready within {} s; see {}",
                    timeout.as_secs(),
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OwnedPostgres {
    fn drop(&mut self) {
        // Without waiting: the supervisor shuts PostgreSQL down once its stdin closes.
        drop(self.stdin.take());
    }
}

/// Starts the postmaster under the supervisor shell (see [`SUPERVISOR`]), logging to `log_path`.
fn launch(
    bin_dir: &Path,
    pgdata: &Path,
    socket_dir: &Path,
    run_as: Option<&SystemUser>,
    log_path: &Path,
    options: &StartOptions,
) -> anyhow::Result<(Child, Option<ChildStdin>)> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(SUPERVISOR)
        .arg("joyfull-hub-postgres")
        .arg(bin_dir.join("postgres"))
        .arg("-D")
        .arg(pgdata)
        .arg("-k")
        .arg(socket_dir)
        .arg("-p")
        .arg(PORT.to_string());
    for setting in cluster_settings(options.durable) {
        command.arg("-c").arg(setting);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::from(
            log.try_clone().context("cannot share the log file")?,
        ))
        .stderr(Stdio::from(log))
        // Its own process group: a Ctrl-C meant for the hub must not stop the database before the
        // hub has finished its in-flight requests.
        .process_group(0);
    if let Some(user) = run_as {
        command.uid(user.uid).gid(user.gid);
    }
    let mut supervisor = command.spawn().context("cannot start PostgreSQL")?;
    let stdin = supervisor.stdin.take();
    Ok((supervisor, stdin))
}

fn cluster_settings(durable: bool) -> Vec<String> {
    let mut settings = vec![
        // No TCP: the Unix socket in a private directory is the only way in.
        "listen_addresses=".to_owned(),
        "unix_socket_permissions=0700".to_owned(),
        "max_connections=200".to_owned(),
    ];
    if !durable {
        settings.extend(
            [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ]
            .map(str::to_owned),
        );
    }
    settings
}
