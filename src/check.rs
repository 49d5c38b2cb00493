//! The library's entry point for a project's own tests: [`Project`] checks the schema an
//! `rlsgate.toml` describes, from `#[test]`, `#[tokio::test]` (either flavour) or rstest, and
//! [`Report::assert_holds`] fails the test with the problems and how to reproduce each.
//! [`evidence::review`](fn@crate::evidence::review) gives the redacted text to snapshot with insta,
//! so a changed privilege or policy shows up in the pull request as a snapshot change.
//!
//! The CLI's `rlsgate check --config` goes through the same [`Project`].
//!
//! # Example
//!
//! ```no_run
//! #[tokio::test]
//! async fn tenants_stay_apart() {
//!     let report = rlsgate::Project::from_config("rlsgate.toml")
//!         .unwrap()
//!         .cases(16)
//!         .check()
//!         .await
//!         .unwrap();
//!     report.assert_holds();
//!     // With insta: the reviewed evidence beside the test, diffed in the pull request.
//!     // insta::assert_snapshot!("rls-evidence", rlsgate::evidence::review(&report));
//! }
//! # fn main() {}
//! ```

use std::path::Path;

use tokio::runtime::RuntimeFlavor;

use crate::campaign::ProjectOptions;
use crate::config::Settings;
use crate::error::{Error, ErrorKind, Result};
use crate::project::ProjectConfig;
use crate::project::target::Source;
use crate::report::{Report, Verdict};

/// A project to check: its `rlsgate.toml`, where its schema is, and how many random DML
/// sequences to run. Built with [`Project::from_config`] and the builder methods; checked with
/// [`Project::check`] (async) or [`Project::check_blocking`].
#[derive(Debug, Clone)]
pub struct Project {
    config: ProjectConfig,
    settings: Option<Settings>,
    source: Source,
    options: ProjectOptions,
}

impl Project {
    /// The project of an `rlsgate.toml` (or of a directory holding one): its migrations are
    /// applied into a fresh database on the backend the environment selects (see
    /// [`Settings::from_env`]), unless [`database_url`](Self::database_url) names an existing
    /// database.
    ///
    /// # Errors
    /// A config error naming the fix for a missing or malformed file.
    pub fn from_config(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::new(ProjectConfig::load(path.as_ref())?))
    }

    /// The project of a parsed config.
    pub fn new(config: ProjectConfig) -> Self {
        Self {
            config,
            settings: None,
            source: Source::default(),
            options: ProjectOptions::default(),
        }
    }

    /// Random DML sequences to run (default 16).
    #[must_use]
    pub fn cases(mut self, cases: u32) -> Self {
        self.options.cases = cases;
        self
    }

    /// The seed of the generator: the same seed runs the same sequences.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.seed = seed;
        self
    }

    /// Check the existing database of this superuser URL (on a scratch copy, dropped
    /// afterwards) instead of applying the project's migrations. Without it, a project without
    /// migrations uses `RLSGATE_DATABASE_URL`.
    #[must_use]
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.source.database_url = Some(url.into());
        self
    }

    /// The runtime's login URL for an existing database (default: the variable
    /// `roles.runtime_url_env` names, else `RLSGATE_RUNTIME_URL`).
    #[must_use]
    pub fn runtime_url(mut self, url: impl Into<String>) -> Self {
        self.source.runtime_url = Some(url.into());
        self
    }

    /// Check the existing database itself, with probes that roll back, instead of a scratch
    /// copy (`--in-place`).
    #[must_use]
    pub fn in_place(mut self, in_place: bool) -> Self {
        self.source.in_place = in_place;
        self
    }

    /// The backend and image settings (default: [`Settings::from_env`] when the check starts).
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Run only this shard's cases (`--shard K/N`): `rlsgate merge` joins the shards' reports.
    #[must_use]
    pub fn shard(mut self, shard: crate::report::shard::Shard) -> Self {
        self.options.shard = Some(shard);
        self
    }

    /// Print progress lines on stderr.
    #[must_use]
    pub fn progress(mut self, progress: bool) -> Self {
        self.options.progress = progress;
        self
    }

    /// The parsed `rlsgate.toml`.
    pub fn config(&self) -> &ProjectConfig {
        &self.config
    }

    /// Check the project: its database prepared, every probe and the DML property run, the
    /// report returned. Findings are in the report ([`Report::assert_holds`] turns them into a
    /// test failure), never an `Err`. On a current-thread runtime (`#[tokio::test]`'s default)
    /// the check runs on a runtime of its own on a blocking thread; on a multi-threaded one, in
    /// place.
    ///
    /// # Errors
    /// A harness error: a bad config, URL or role (naming the fix), a migration that fails, a
    /// server that cannot be started or reached.
    pub async fn check(&self) -> Result<Report> {
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => self.run().await,
            _ => {
                let project = self.clone();
                tokio::task::spawn_blocking(move || project.check_blocking())
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Io, format!("the check's thread failed: {e}"))
                    })?
            }
        }
    }

    /// [`check`](Self::check) for a synchronous caller (`#[test]`): the check runs on a tokio
    /// runtime of its own, on a thread of its own when the caller is inside a runtime.
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub fn check_blocking(&self) -> Result<Report> {
        let run = || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| {
                    Error::new(ErrorKind::Io, "could not start a tokio runtime").with_source(e)
                })?
                .block_on(self.run())
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return run();
        }
        std::thread::scope(|s| s.spawn(run).join()).unwrap_or_else(|panic| {
            std::panic::resume_unwind(panic);
        })
    }

    /// The check, on the caller's (multi-threaded) runtime.
    async fn run(&self) -> Result<Report> {
        let settings = match &self.settings {
            Some(s) => s.clone(),
            None => Settings::from_env()?,
        };
        let source = self.resolved_source(&settings)?;
        crate::campaign::check_project(&settings, &self.config, &source, &self.options).await
    }

    /// Where the schema is, the environment's URLs standing in for those not given: a project
    /// with migrations is built from them, so `RLSGATE_DATABASE_URL` is then the external
    /// backend's server, not the database; `roles.runtime_url_env`, when its variable is set,
    /// comes before `RLSGATE_RUNTIME_URL`.
    fn resolved_source(&self, settings: &Settings) -> Result<Source> {
        let mut source = self.source.clone();
        if source.database_url.is_none() && self.config.migration_dirs().is_empty() {
            source.database_url = settings.database_url.clone();
        }
        if source.runtime_url.is_none() {
            source.runtime_url = self
                .config
                .roles
                .runtime_url_env
                .as_deref()
                .and_then(crate::config::env_var)
                .or_else(|| settings.runtime_url.clone());
        }
        if self.options.cases == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "cases must be at least 1 (--cases)",
            ));
        }
        if source.in_place && source.database_url.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                "--in-place checks an existing database: give its --database-url (or RLSGATE_DATABASE_URL)",
            ));
        }
        Ok(source)
    }
}

impl Report {
    /// Panic unless the verdict is pass, with the problems (each with its proof and how to
    /// reproduce it), the checks that could not decide, and the command that reproduces the
    /// run: for a project's own tests.
    ///
    /// # Panics
    /// When the verdict is not [`Verdict::Pass`].
    #[track_caller]
    pub fn assert_holds(&self) {
        if self.verdict != Verdict::Pass {
            panic!("{}", self.failure_message());
        }
    }

    /// What [`assert_holds`](Self::assert_holds) says when the verdict is not a pass.
    pub fn failure_message(&self) -> String {
        let mut out = format!("rlsgate: verdict {}\n\n", self.verdict.as_str());
        out.push_str(&crate::evidence::text::verdicts(self));
        let problems = crate::evidence::markdown::problems(self);
        if !problems.is_empty() {
            out.push('\n');
            out.push_str(&problems);
        }
        if let Some(r) = self.project.as_ref().and_then(|p| p.reproduction.as_ref()) {
            out.push_str("\nminimal reproduction:\n");
            out.push_str(r);
            out.push('\n');
        }
        out.push_str(&format!("\nreproduce: {}\n", self.reproduce));
        out
    }
}
