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
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

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
struct SystemUser {
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
    Some(url_for(Path::new(lines.get(4)?.trim()), database))
}

fn url_for(socket_dir: &Path, database: &str) -> String {
    format!(
        "postgresql:///{database}?user=postgres&host={}&port={PORT}",
        percent_encode(&socket_dir.to_string_lossy())
    )
}

/// The port number names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;

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
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("joyfull-hub-postgres")
            .arg(bin_dir.join("postgres"))
            .arg("-D")
            .arg(&pgdata)
            .arg("-k")
            .arg(&socket_dir)
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
        if let Some(user) = &run_as {
            command.uid(user.uid).gid(user.gid);
        }
        let mut supervisor = command.spawn().context("cannot start PostgreSQL")?;
        let stdin = supervisor.stdin.take();
        let mut owned = Self {
            supervisor,
            stdin,
            bin_dir,
            pgdata,
            socket_dir,
            run_as,
            _lock: lock,
        };
        if let Err(e) = owned.wait_ready(options.startup_timeout, &log_path) {
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

    /// A connection URL for `database` over the private socket.
    pub fn url(&self, database: &str) -> String {
        url_for(&self.socket_dir, database)
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Fast shutdown: lets PostgreSQL end sessions and checkpoint, then waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
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
    fn wait_ready(&mut self, timeout: Duration, log_path: &Path) -> anyhow::Result<()> {
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
                    tail(log_path, 15)
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

/// A directory on PATH holding both `initdb` and `postgres`, else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    find_bin_dir_in(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
}

fn find_bin_dir_in(path: Option<std::ffi::OsString>, versioned_root: &Path) -> Option<PathBuf> {
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = path
        && let Some(dir) = std::env::split_paths(&path).find(|d| complete(d))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(versioned_root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn running_as_root() -> anyhow::Result<bool> {
    // /proc/self belongs to the process's effective user.
    Ok(fs::metadata("/proc/self")
        .context("cannot read /proc/self to learn the effective user")?
        .uid()
        == 0)
}

fn lookup_user(name: &str) -> anyhow::Result<Option<SystemUser>> {
    let passwd = fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    Ok(passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(SystemUser {
            name: name.to_owned(),
            uid,
            gid,
        })
    }))
}

/// Makes `path` a private directory of the cluster's user.
fn own_directory(path: &Path, run_as: Option<&SystemUser>) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("cannot hand {} to user {}", path.display(), user.name))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

/// Runs initdb into a scratch directory and renames it into place, so an interrupted first start
/// never leaves a half-made cluster behind.
fn init_cluster(
    bin_dir: &Path,
    data_dir: &Path,
    pgdata: &Path,
    run_as: Option<&SystemUser>,
) -> anyhow::Result<()> {
    if pgdata.exists()
        && fs::read_dir(pgdata)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists but is not a PostgreSQL data directory: move it away so the hub can create its cluster there",
            pgdata.display()
        );
    }
    let scratch = data_dir.join("postgres.initdb");
    if scratch.exists() {
        fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot remove the leftover {}", scratch.display()))?;
    }
    own_directory(&scratch, run_as)?;
    tracing::info!(data = %pgdata.display(), "creating the owned PostgreSQL cluster (first start)");
    let mut command = Command::new(bin_dir.join("initdb"));
    command
        .arg("-D")
        .arg(&scratch)
        .args([
            "--username=postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ])
        .current_dir(data_dir)
        .env("LC_ALL", "C");
    if let Some(user) = run_as {
        command.uid(user.uid).gid(user.gid);
    }
    let output = command.output().context("cannot run initdb")?;
    if !output.status.success() {
        let hint = if run_as.is_some() {
            "\n(the cluster runs as user `postgres`, which needs search permission on every parent directory of HUB_DATA_DIR)"
        } else {
            ""
        };
        bail!(
            "initdb failed: {}{hint}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    if pgdata.exists() {
        fs::remove_dir(pgdata).with_context(|| format!("cannot replace {}", pgdata.display()))?;
    }
    fs::rename(&scratch, pgdata)
        .with_context(|| format!("cannot move the new cluster to {}", pgdata.display()))
}

/// The socket lives in the data directory unless that path is too long for a Unix socket address
/// (108 bytes); then in a private directory under the system temp dir.
fn socket_dir_for(pgdata: &Path, run_as: Option<&SystemUser>) -> anyhow::Result<PathBuf> {
    if pgdata.as_os_str().len() + ".s.PGSQL.5432.lock".len() + 2 < 100 {
        return Ok(pgdata.to_path_buf());
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    pgdata.hash(&mut hasher);
    let dir = std::env::temp_dir().join(format!("joyfull-hub-pg-{:016x}", hasher.finish()));
    own_directory(&dir, run_as)?;
    Ok(dir)
}

/// Handles what an unclean stop leaves: a stale `postmaster.pid` (removed) or a postmaster that
/// outlived its hub (stopped; nobody else can own it, since we hold the lock).
fn clear_leftovers(
    bin_dir: &Path,
    pgdata: &Path,
    socket_dir: &Path,
    run_as: Option<&SystemUser>,
) -> anyhow::Result<()> {
    let pid_file = pgdata.join("postmaster.pid");
    let Ok(contents) = fs::read_to_string(&pid_file) else {
        return Ok(());
    };
    let pid = contents
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok());
    let alive_postgres = pid.is_some_and(|pid| {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|comm| comm.trim() == "postgres")
            .unwrap_or(false)
    });
    if alive_postgres {
        tracing::warn!(
            pid,
            "a PostgreSQL from an earlier run is still serving this data directory; stopping it first"
        );
        let output = pg_ctl(
            bin_dir,
            pgdata,
            run_as,
            &["stop", "-m", "fast", "-w", "-t", "60"],
        )
        .output()
        .context("cannot run pg_ctl")?;
        if !output.status.success() {
            bail!(
                "cannot stop the PostgreSQL left running on {}: {}",
                pgdata.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    } else {
        tracing::warn!("removing the stale postmaster.pid of an unclean stop");
        fs::remove_file(&pid_file).context("cannot remove the stale postmaster.pid")?;
        let socket_lock = socket_dir.join(format!(".s.PGSQL.{PORT}.lock"));
        if socket_lock.exists() {
            fs::remove_file(&socket_lock).context("cannot remove the stale socket lock")?;
        }
    }
    Ok(())
}

fn pg_ctl(bin_dir: &Path, pgdata: &Path, run_as: Option<&SystemUser>, args: &[&str]) -> Command {
    let mut command = Command::new(bin_dir.join("pg_ctl"));
    command
        .arg("-D")
        .arg(pgdata)
        .args(args)
        .stdin(Stdio::null());
    if let Some(user) = run_as {
        command.uid(user.uid).gid(user.gid);
    }
    command
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::new();
    };
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    all.iter()
        .skip(all.len().saturating_sub(lines))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_found_on_path_first_then_in_the_newest_versioned_directory() {
        let root = std::env::temp_dir().join(format!("jh-bins-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let make = |dir: &Path| {
            fs::create_dir_all(dir).unwrap();
            fs::write(dir.join("initdb"), "").unwrap();
            fs::write(dir.join("postgres"), "").unwrap();
        };
        let versioned = root.join("lib");
        let empty = root.join("empty");
        fs::create_dir_all(&empty).unwrap();

        assert_eq!(
            find_bin_dir_in(Some(empty.clone().into()), &versioned),
            None
        );

        make(&versioned.join("9/bin"));
        make(&versioned.join("15/bin"));
        assert_eq!(
            find_bin_dir_in(Some(empty.clone().into()), &versioned),
            Some(versioned.join("15/bin"))
        );

        make(&root.join("onpath"));
        let path = std::env::join_paths([empty, root.join("onpath")]).unwrap();
        assert_eq!(
            find_bin_dir_in(Some(path), &versioned),
            Some(root.join("onpath"))
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn socket_paths_are_percent_encoded_in_the_url() {
        assert_eq!(percent_encode("/tmp/a b&c"), "/tmp/a%20b%26c");
    }

    #[test]
    fn throwaway_clusters_skip_fsync_and_nothing_listens_on_tcp() {
        assert!(cluster_settings(false).contains(&"fsync=off".to_owned()));
        assert!(!cluster_settings(true).contains(&"fsync=off".to_owned()));
        assert!(cluster_settings(true).contains(&"listen_addresses=".to_owned()));
    }
}
