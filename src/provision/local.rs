//! The local backend: `initdb` into a temporary directory and a `postgres` process on a free
//! port bound to 127.0.0.1, run as an unprivileged OS user when rlsgate runs as root.
//!
//! Durability is relaxed for speed where a *process* crash cannot lose data: `fsync=off` and
//! `full_page_writes=off` (the OS page cache survives a server crash), while
//! `synchronous_commit` stays on so a commit the harness saw survives an immediate stop.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::provision::Endpoint;
use crate::provision::owner::{Owner, pid_alive};

const DIR_PREFIX: &str = "rlsgate-pg-";
const OWNER_FILE: &str = "rlsgate-owner";
const KEPT_FILE: &str = "rlsgate-kept";

/// A running local server and its directory.
pub(crate) struct LocalInstance {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
}

/// Where the server binaries are, or why none were found.
///
/// # Errors
/// A provisioning error listing where it looked and how to fix it.
pub(crate) fn find_bindir(settings: &Settings) -> Result<PathBuf> {
    if let Some(dir) = &settings.bindir {
        return if has_server_binaries(dir) {
            Ok(dir.clone())
        } else {
            Err(Error::provisioning(format!(
                "RLSGATE_PG_BINDIR={} holds no initdb and postgres; point it at the directory \
                 `pg_config --bindir` prints",
                dir.display()
            )))
        };
    }
    let mut looked = Vec::new();
    for dir in candidate_bindirs() {
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        looked.push(dir.display().to_string());
    }
    Err(Error::provisioning(format!(
        "no PostgreSQL server binaries (initdb, postgres) found (looked in: {}); install them \
         (Debian: apt-get install postgresql), set RLSGATE_PG_BINDIR, or use RLSGATE_BACKEND=container",
        if looked.is_empty() {
            "nothing".into()
        } else {
            looked.join(", ")
        }
    )))
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "postgres"].iter().all(|b| {
        fs::metadata(dir.join(b)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Where a PostgreSQL client `program` (pgbench, psql) may be: in `RLSGATE_PG_BINDIR`, then
/// where the server binaries are looked for; only paths that exist.
pub(crate) fn program_candidates(settings: &Settings, program: &str) -> Vec<PathBuf> {
    settings
        .bindir
        .iter()
        .cloned()
        .chain(candidate_bindirs())
        .map(|dir| dir.join(program))
        .filter(|path| path.is_file())
        .collect()
}

/// `pg_config --bindir`, then Debian's versioned directories (newest first), then the source
/// install default, then `PATH`.
fn candidate_bindirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.extend(debian.into_iter().map(|(_, p)| p));
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.dedup();
    dirs
}

/// The (uid, gid) to run the server as: `None` when not root.
fn server_user(settings: &Settings) -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let candidates: Vec<&str> = match &settings.os_user {
        Some(u) => vec![u.as_str()],
        None => vec!["postgres", "nobody"],
    };
    for name in &candidates {
        if let Some(ids) = lookup_user(name)
            && ids.0 != 0
        {
            return Ok(Some(ids));
        }
    }
    Err(Error::provisioning(format!(
        "rlsgate runs as root and postgres refuses to, but no unprivileged user ({}) exists to run \
         it; create one or set RLSGATE_PG_OS_USER to an existing unprivileged user",
        candidates.join(", ")
    )))
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we read two integers
    // before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

fn chown(path: &Path, user: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("giving {} to uid {uid}", path.display()), e))?;
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Error::io("reading the free port", e))?
        .port())
}

impl LocalInstance {
    /// Initialise a cluster whose superuser `postgres` has `password`, and start it.
    pub(crate) fn start(settings: &Settings, password: &str) -> Result<(Self, Endpoint)> {
        sweep_leftovers();
        let bindir = find_bindir(settings)?;
        let user = server_user(settings)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory for the local server", e))?
            .keep();
        let mut instance = Self {
            dir,
            bindir,
            port: 0,
            user,
            child: Mutex::new(None),
        };
        instance.init(password)?;
        let mut last = None;
        for _ in 0..3 {
            instance.port = free_port()?;
            match instance.spawn() {
                Ok(()) => {
                    let endpoint = Endpoint {
                        host: "127.0.0.1".into(),
                        port: instance.port,
                    };
                    return Ok((instance, endpoint));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts were made"))
    }

    fn init(&self, password: &str) -> Result<()> {
        fs::write(self.dir.join(OWNER_FILE), Owner::current().to_string())
            .map_err(|e| Error::io("writing the owner marker", e))?;
        let pwfile = self.dir.join("pwfile");
        fs::write(&pwfile, format!("{password}\n"))
            .map_err(|e| Error::io("writing the password file", e))?;
        chown(&self.dir, self.user)?;
        chown(&pwfile, self.user)?;
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| Error::io(format!("running {}/initdb", self.bindir.display()), e))?;
        let _ = fs::remove_file(&pwfile);
        if !output.status.success() {
            return Err(Error::provisioning(format!(
                "initdb failed in {}: {}; check that {} is writable by the server's OS user",
                self.dir.display(),
                String::from_utf8_lossy(&output.stderr).trim(),
                self.dir.display()
            )));
        }
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Start the postmaster and wait until it accepts TCP connections.
    fn spawn(&self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .map_err(|e| Error::io("opening the server log", e))?;
        chown(&self.log(), self.user)?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io("opening the server log", e))?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "synchronous_commit=on", "-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| Error::io(format!("starting {}/postgres", self.bindir.display()), e))?;
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(Error::provisioning(format!(
                    "the local server exited ({status}) before accepting connections: {}",
                    self.log_tail()
                )));
            }
            // Readiness is a real TCP accept by the postmaster; the caller then connects.
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.data().join("postmaster.pid").exists()
                && self.postmaster_ready()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::provisioning(format!(
                    "the local server did not accept connections within 30 s: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The postmaster writes "ready" as the status line of postmaster.pid once it accepts.
    fn postmaster_ready(&self) -> bool {
        fs::read_to_string(self.data().join("postmaster.pid"))
            .is_ok_and(|s| s.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(self.log()) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Immediate stop (SIGQUIT: no shutdown checkpoint, crash recovery on the next start), then
    /// start again on the same port.
    pub(crate) fn crash_and_restart(&self) -> Result<()> {
        self.signal_and_wait(libc::SIGQUIT, Duration::from_secs(10));
        self.spawn()
    }

    fn signal_and_wait(&self, signal: i32, patience: Duration) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        // SAFETY: kill with a pid we spawned and still own.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The directory holding the cluster.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leave the server running for post-mortem; `rlsgate clean` removes it later.
    pub(crate) fn keep(&self) {
        let _ = fs::write(self.dir.join(KEPT_FILE), "");
        self.child.lock().unwrap().take();
    }
}

impl Drop for LocalInstance {
    fn drop(&mut self) {
        if self.dir.join(KEPT_FILE).exists() {
            return;
        }
        // Fast shutdown: roll back open transactions, disconnect, checkpoint.
        self.signal_and_wait(libc::SIGINT, Duration::from_secs(10));
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Remove servers left behind by killed runs (their owner process is gone). With `kept`, also
/// remove servers kept for post-mortem. Returns the directories removed.
pub(crate) fn sweep_leftovers_with(kept: bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return removed;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let is_ours = entry.file_name().to_string_lossy().starts_with(DIR_PREFIX);
        let Ok(owner) = fs::read_to_string(path.join(OWNER_FILE)) else {
            continue;
        };
        let owner_alive = Owner::parse(&owner).is_some_and(|o| o.is_alive());
        let is_kept = path.join(KEPT_FILE).exists();
        if !is_ours || (owner_alive && !is_kept) || (is_kept && !kept) {
            continue;
        }
        if let Ok(pidfile) = fs::read_to_string(path.join("data/postmaster.pid"))
            && let Some(pid) = pidfile
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
            && pid_alive(pid)
        {
            // SAFETY: a postmaster pid read from our own marker directory.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

fn sweep_leftovers() {
    for dir in sweep_leftovers_with(false) {
        eprintln!(
            "rlsgate: removed a local server left by a killed run: {}",
            dir.display()
        );
    }
}
