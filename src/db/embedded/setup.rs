//! Preparing and driving the owned cluster on disk: finding the server binaries, the system user it runs
//! as, directories and their owners, `initdb`, leftovers of a crashed run, `pg_ctl`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::{PORT, SystemUser};

/// A directory on PATH holding both `initdb` and `postgres`, else the newest `/usr/lib/postgresql/*/bin`.
pub(super) fn find_bin_dir() -> Option<PathBuf> {
    find_bin_dir_in(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
}

pub(super) fn find_bin_dir_in(
    path: Option<std::ffi::OsString>,
    versioned_root: &Path,
) -> Option<PathBuf> {
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

pub(super) fn running_as_root() -> anyhow::Result<bool> {
    // /proc/self belongs to the process's effective user.
    Ok(fs::metadata("/proc/self")
        .context("cannot read /proc/self to learn the effective user")?
        .uid()
        == 0)
}

pub(super) fn lookup_user(name: &str) -> anyhow::Result<Option<SystemUser>> {
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
pub(super) fn own_directory(path: &Path, run_as: Option<&SystemUser>) -> anyhow::Result<()> {
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
pub(super) fn init_cluster(
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
pub(super) fn socket_dir_for(
    pgdata: &Path,
    run_as: Option<&SystemUser>,
) -> anyhow::Result<PathBuf> {
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
pub(super) fn clear_leftovers(
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

pub(super) fn pg_ctl(
    bin_dir: &Path,
    pgdata: &Path,
    run_as: Option<&SystemUser>,
    args: &[&str],
) -> Command {
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

pub(super) fn tail(path: &Path, lines: usize) -> String {
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

pub(super) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
