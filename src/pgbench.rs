//! pgbench as the yardstick of the worker's throughput: the worker's own statements (context,
//! claim, job row, rollup) as pgbench scripts, one per task kind, run as the worker's login on
//! the worker's database, so `rlsgate bench` can report the worker against what the server does
//! for the same SQL with a C client.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio_postgres::config::Host;
use uuid::Uuid;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::system::worker::{BUDGET_JOB, CLAIM, CONTEXT, INVESTIGATION_JOB, ROLLUP_UPSERT};
use crate::system::{TENANT_SETTING, TaskName};

/// pgbench's query mode: prepared statements over the extended protocol, as the worker's
/// driver sends them, and pgbench's fastest.
pub const MODE: &str = "prepared";

/// A pgbench program found on this machine.
#[derive(Debug, Clone)]
pub struct Pgbench {
    path: PathBuf,
    version: String,
}

impl Pgbench {
    /// pgbench from the server binaries' directories (`RLSGATE_PG_BINDIR`, `pg_config
    /// --bindir`, Debian's, `PATH`), or why there is none.
    ///
    /// # Errors
    /// The reason, for the bench report, when no pgbench runs here.
    pub fn find(settings: &Settings) -> std::result::Result<Self, String> {
        let candidates = crate::provision::program_candidates(settings, "pgbench");
        for path in &candidates {
            let Ok(out) = std::process::Command::new(path).arg("--version").output() else {
                continue;
            };
            if out.status.success() {
                return Ok(Self {
                    path: path.clone(),
                    version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
                });
            }
        }
        Err(format!(
            "pgbench is not installed (looked for {}); install it (Debian: apt-get install \
             postgresql-contrib or postgresql-client) or set RLSGATE_PG_BINDIR",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// The program and its version, e.g. `/usr/lib/postgresql/15/bin/pgbench (pgbench (PostgreSQL) 15.14)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.path.display(), self.version)
    }

    /// The command line of a run at `clients` for `seconds`, as [`Pgbench::run`] runs it (the
    /// login in the environment, the password never on the command line).
    pub fn command(&self, clients: usize, seconds: u64) -> String {
        let scripts: String = TaskName::ALL
            .iter()
            .map(|t| format!(" -f {}.sql@1", script_name(*t)))
            .collect();
        format!(
            "{} -n -M {MODE} -c {clients} -j {jobs} -T {seconds} -D tenant=<uuid> -D setting={TENANT_SETTING} \
             -D local=true -D task=pgbench -D metadata=<json>{scripts}",
            self.path.display(),
            jobs = jobs(clients),
        )
    }

    /// Run the worker's statements for `tenant` with `clients` connections for `seconds`, logged
    /// in with `login`; transactions per second (initial connection time excluded).
    ///
    /// # Errors
    /// A harness error when pgbench cannot start, fails, or prints no rate.
    pub async fn run(
        &self,
        login: &tokio_postgres::Config,
        tenant: Uuid,
        clients: usize,
        seconds: u64,
    ) -> Result<f64> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating pgbench's directory", e))?;
        for task in TaskName::ALL {
            let path = dir.path().join(format!("{}.sql", script_name(task)));
            std::fs::write(&path, script(task))
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        let metadata =
            serde_json::json!({ "task_id": "pgbench", "correlation_id": Uuid::new_v4() });
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.current_dir(dir.path())
            .args(["-n", "-M", MODE])
            .args(["-c", &clients.to_string(), "-j", &jobs(clients).to_string()])
            .args(["-T", &seconds.to_string()])
            .args(["-D", &format!("tenant={tenant}")])
            .args(["-D", &format!("setting={TENANT_SETTING}")])
            .args(["-D", "local=true", "-D", "task=pgbench"])
            .args(["-D", &format!("metadata={metadata}")]);
        for task in TaskName::ALL {
            cmd.args(["-f", &format!("{}.sql@1", script_name(task))]);
        }
        login_env(&mut cmd, login);
        let out = tokio::time::timeout(
            Duration::from_secs(seconds + 60),
            cmd.stdin(Stdio::null()).output(),
        )
        .await
        .map_err(|_| Error::provisioning("pgbench did not finish a minute after its duration"))?
        .map_err(|e| Error::io(format!("running {}", self.path.display()), e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(Error::provisioning(format!(
                "pgbench failed ({}): {}",
                out.status,
                crate::secret::redact_url(stderr.trim())
            )));
        }
        tps(&stdout).ok_or_else(|| {
            Error::provisioning(format!("pgbench printed no tps line: {}", stdout.trim()))
        })
    }
}

/// pgbench threads: one per client, up to the machine's cores.
fn jobs(clients: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    clients.clamp(1, cores)
}

/// The login as libpq's environment variables (the password stays off the command line).
fn login_env(cmd: &mut tokio::process::Command, login: &tokio_postgres::Config) {
    match login.get_hosts().first() {
        Some(Host::Tcp(host)) => {
            cmd.env("PGHOST", host);
        }
        Some(Host::Unix(dir)) => {
            cmd.env("PGHOST", dir);
        }
        None => {}
    }
    if let Some(port) = login.get_ports().first() {
        cmd.env("PGPORT", port.to_string());
    }
    if let Some(user) = login.get_user() {
        cmd.env("PGUSER", user);
    }
    if let Some(password) = login.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(password).as_ref());
    }
    if let Some(db) = login.get_dbname() {
        cmd.env("PGDATABASE", db);
    }
    cmd.env("PGAPPNAME", "rlsgate-pgbench")
        .env_remove("PGSERVICE");
}

/// The script file's name for `task`: its last dotted part.
fn script_name(task: TaskName) -> &'static str {
    task.as_str().rsplit('.').next().unwrap_or("task")
}

/// The pgbench script of one task: the worker's transaction for `task`, statement for
/// statement, with pgbench variables for its parameters and a fresh random request id.
pub fn script(task: TaskName) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\\set request random(1, 1000000000000000)");
    let _ = writeln!(s, "BEGIN;");
    let _ = writeln!(
        s,
        "{};",
        bind(CONTEXT, &["setting", "tenant", "local", "task"])
    );
    let claim = CLAIM.replace("$2", &format!("'{}'", task.as_str()));
    let _ = writeln!(
        s,
        "{} \\gset claim_",
        bind(&claim, &["tenant", "", "request", "metadata"])
    );
    match task.job_table() {
        Some("investigations") => {
            let _ = writeln!(s, "{};", bind(INVESTIGATION_JOB, &["tenant", "request"]));
        }
        Some(_) => {
            let _ = writeln!(s, "{};", bind(BUDGET_JOB, &["tenant", "request"]));
        }
        None => {}
    }
    let _ = writeln!(s, "{};", bind(ROLLUP_UPSERT, &["tenant", "claim_to_char"]));
    let _ = writeln!(s, "COMMIT;");
    s
}

/// `sql` with `$1`, `$2`, ... replaced by the pgbench variables `names` (an empty name leaves
/// its placeholder, already replaced by the caller), highest number first so `$1` never eats
/// the start of `$10`.
fn bind(sql: &str, names: &[&str]) -> String {
    let mut out = sql.to_string();
    for (i, name) in names.iter().enumerate().rev() {
        if !name.is_empty() {
            out = out.replace(&format!("${}", i + 1), &format!(":{name}"));
        }
    }
    out
}

/// The rate from pgbench's `tps = 1234.5 (without initial connection time)` line.
fn tps(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find(|l| l.starts_with("tps = ") && l.contains("without initial connection"))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_the_workers_statements_with_variables() {
        let route = script(TaskName::Route);
        assert!(route.contains(
            "SELECT set_config(:setting, :tenant, :local), set_config('application_name', left(:task, 63), true);"
        ));
        assert!(
            route.contains(
                "VALUES (:tenant, 'app.tasks.llm.route', 'llm_stub', :request, :metadata)"
            )
        );
        assert!(route.contains("\\gset claim_"));
        assert!(route.contains("VALUES (:tenant, :claim_to_char::text::date"));
        assert!(!route.contains('$'), "{route}");
        assert!(!route.contains("investigations"));
        assert!(script(TaskName::Investigation).contains("'stubbed:' || :request"));
        assert!(script(TaskName::BudgetOptimization).contains(":request::text"));
    }

    #[test]
    fn the_rate_is_read_from_the_line_without_connection_time() {
        let out = "number of failed transactions: 0 (0.000%)\n\
                   latency average = 1.2 ms\n\
                   initial connection time = 3.1 ms\n\
                   tps = 5290.123456 (without initial connection time)\n";
        assert_eq!(tps(out), Some(5290.123456));
        assert_eq!(tps("tps = 12 (including connections establishing)\n"), None);
    }
}
