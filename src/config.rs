//! Settings: the only module that reads environment variables.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `RLSGATE_BACKEND` | `auto`, `container`, `local` or `external` | `auto` |
//! | `RLSGATE_PG_IMAGE` | container image as `NAME:TAG` | [`DEFAULT_IMAGE`] |
//! | `RLSGATE_PG_BINDIR` | directory holding `initdb` and `postgres` for the local backend | `pg_config --bindir`, then Debian's locations |
//! | `RLSGATE_PG_OS_USER` | unprivileged OS user that runs the local server when rlsgate runs as root | `postgres` if it exists, else `nobody` |
//! | `RLSGATE_DATABASE_URL` | superuser URL of an existing server (external backend), and of the database `check` and `setup` use without `--database-url` | none |
//! | `RLSGATE_RUNTIME_URL` | the runtime's login URL for `check` without `--runtime-url` | none |
//! | `RLSGATE_REQUIRE_BACKENDS` | comma list of backends the test suite must exercise instead of skipping (`container,local`) | none |
//! | `DOCKER_HOST` | the Docker daemon's address (`unix:///...` or `tcp://...`) | Docker's default socket |
//! | `RLSGATE_KEEP` | `never`, `on-failure` or `always`: keep test databases for post-mortem | `on-failure` |

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::secret::redact_url;

/// The pinned default image: a supported major on the official image's smallest variant.
pub const DEFAULT_IMAGE: &str = "postgres:17-alpine";

/// Which backend to provision PostgreSQL with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendChoice {
    /// Container when Docker is reachable and the image is present or pullable, else local.
    Auto,
    /// A testcontainers-managed container.
    Container,
    /// Local server binaries, run in a temporary directory.
    Local,
    /// An existing server given by a superuser URL.
    External,
}

impl BackendChoice {
    /// The names accepted by [`FromStr`], in order.
    pub const NAMES: [&'static str; 4] = ["auto", "container", "local", "external"];

    /// The lowercase name of the choice.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Container => "container",
            Self::Local => "local",
            Self::External => "external",
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "container" | "docker" | "testcontainers" => Ok(Self::Container),
            "local" | "embedded" => Ok(Self::Local),
            "external" | "url" => Ok(Self::External),
            other => Err(Error::config(format!(
                "unknown backend '{other}'; use one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// A container image reference, `NAME:TAG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Repository name, possibly with a registry host (`localhost:5000/pg`).
    pub name: String,
    /// The tag; never empty.
    pub tag: String,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let after_slash = s.rfind('/').map_or(0, |i| i + 1);
        let bad = || {
            Error::config(format!(
                "image '{s}' is not of the form NAME:TAG; set RLSGATE_PG_IMAGE to e.g. {DEFAULT_IMAGE} \
                 (pin a tag: an untagged image drifts)"
            ))
        };
        let colon = s[after_slash..].rfind(':').ok_or_else(bad)? + after_slash;
        let (name, tag) = (&s[..colon], &s[colon + 1..]);
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
        };
        if !valid(name) || !valid(tag) || tag.contains('/') {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

/// When to keep a test database for post-mortem instead of dropping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepPolicy {
    /// Always drop.
    Never,
    /// Keep when the test failed (panicked) or the caller asked to keep it.
    OnFailure,
    /// Always keep.
    Always,
}

impl FromStr for KeepPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" | "0" | "false" => Ok(Self::Never),
            "on-failure" | "" => Ok(Self::OnFailure),
            "always" | "1" | "true" => Ok(Self::Always),
            other => Err(Error::config(format!(
                "unknown keep policy '{other}' in RLSGATE_KEEP; use never, on-failure or always"
            ))),
        }
    }
}

/// Everything the harness can be configured with from the environment. `Debug` masks the
/// passwords of its URLs.
#[derive(Clone)]
pub struct Settings {
    /// The backend to use.
    pub backend: BackendChoice,
    /// The container image.
    pub image: ImageRef,
    /// Explicit directory of server binaries for the local backend.
    pub bindir: Option<PathBuf>,
    /// OS user for the local server when running as root.
    pub os_user: Option<String>,
    /// Superuser URL of an existing server or database (`RLSGATE_DATABASE_URL`): the external
    /// backend's server, and the database `check` and `setup` use when no flag names one.
    pub database_url: Option<String>,
    /// The runtime's login URL for `check` (`RLSGATE_RUNTIME_URL`), when no flag gives one.
    pub runtime_url: Option<String>,
    /// Backends the test suite must exercise (a missing one fails instead of skipping).
    pub required_backends: Vec<BackendChoice>,
    /// When to keep test databases.
    pub keep: KeepPolicy,
    /// The Docker daemon's address; `None` for Docker's default.
    pub docker_host: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            image: DEFAULT_IMAGE.parse().expect("the default image parses"),
            bindir: None,
            os_user: None,
            database_url: None,
            runtime_url: None,
            required_backends: Vec::new(),
            keep: KeepPolicy::OnFailure,
            docker_host: None,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = |u: &Option<String>| u.as_deref().map(redact_url);
        f.debug_struct("Settings")
            .field("backend", &self.backend)
            .field("image", &self.image)
            .field("bindir", &self.bindir)
            .field("os_user", &self.os_user)
            .field("database_url", &url(&self.database_url))
            .field("runtime_url", &url(&self.runtime_url))
            .field("required_backends", &self.required_backends)
            .field("keep", &self.keep)
            .field("docker_host", &self.docker_host)
            .finish()
    }
}

impl Settings {
    /// Read the settings from the process environment.
    ///
    /// # Errors
    /// A [`ErrorKind::Config`](crate::ErrorKind::Config) error naming the variable when a value
    /// is malformed.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the settings through `lookup` (for tests and embedding).
    ///
    /// # Errors
    /// As [`Settings::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut settings = Self::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("RLSGATE_BACKEND") {
            settings.backend = v
                .parse()
                .map_err(|e: Error| in_variable(e, "RLSGATE_BACKEND"))?;
        }
        if let Some(v) = get("RLSGATE_PG_IMAGE") {
            settings.image = v.parse()?;
        }
        settings.bindir = get("RLSGATE_PG_BINDIR").map(PathBuf::from);
        settings.os_user = get("RLSGATE_PG_OS_USER");
        settings.database_url = get("RLSGATE_DATABASE_URL");
        settings.runtime_url = get("RLSGATE_RUNTIME_URL");
        if let Some(v) = get("RLSGATE_REQUIRE_BACKENDS") {
            settings.required_backends = v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.parse()
                        .map_err(|e: Error| in_variable(e, "RLSGATE_REQUIRE_BACKENDS"))
                })
                .collect::<Result<_>>()?;
        }
        settings.docker_host = get("DOCKER_HOST");
        if let Some(v) = get("RLSGATE_KEEP") {
            settings.keep = v.parse()?;
        }
        Ok(settings)
    }

    /// True when the test suite must exercise `backend` rather than skip it.
    pub fn requires(&self, backend: BackendChoice) -> bool {
        self.required_backends.contains(&backend)
    }
}

fn in_variable(err: Error, variable: &str) -> Error {
    Error::config(format!("{variable}: {}", err.message()))
}

/// The value of environment variable `name`, when set and not empty (for `rlsgate.toml` keys
/// that name a variable, such as `roles.runtime_url_env`).
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("postgres:17-alpine", "postgres", "17-alpine")]
    #[case("rlsgate/postgres:15", "rlsgate/postgres", "15")]
    #[case("localhost:5000/pg:16.4", "localhost:5000/pg", "16.4")]
    fn image_refs_parse(#[case] input: &str, #[case] name: &str, #[case] tag: &str) {
        let image: ImageRef = input.parse().unwrap();
        assert_eq!((image.name.as_str(), image.tag.as_str()), (name, tag));
        assert_eq!(image.to_string(), input);
    }

    #[rstest]
    #[case("postgres")]
    #[case("localhost:5000/pg")]
    #[case("postgres:")]
    #[case(":15")]
    #[case("pg sql:15")]
    fn untagged_or_malformed_images_are_refused(#[case] input: &str) {
        let err = input.parse::<ImageRef>().unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains("RLSGATE_PG_IMAGE"), "{err}");
    }

    #[test]
    fn unknown_backend_names_the_choices() {
        let err = Settings::from_lookup(|n| (n == "RLSGATE_BACKEND").then(|| "podman".into()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "RLSGATE_BACKEND: unknown backend 'podman'; use one of auto, container, local, external"
        );
    }

    #[test]
    fn settings_default_when_nothing_is_set() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.backend, BackendChoice::Auto);
        assert_eq!(s.image.to_string(), DEFAULT_IMAGE);
        assert_eq!(s.keep, KeepPolicy::OnFailure);
        assert!(s.required_backends.is_empty());
    }

    #[test]
    fn required_backends_parse_as_a_list() {
        let s = Settings::from_lookup(|n| {
            (n == "RLSGATE_REQUIRE_BACKENDS").then(|| "container, local".into())
        })
        .unwrap();
        assert!(s.requires(BackendChoice::Container) && s.requires(BackendChoice::Local));
        assert!(!s.requires(BackendChoice::External));
    }

    #[test]
    fn debug_masks_the_passwords_of_urls_and_the_runtime_url_comes_from_the_environment() {
        let settings = Settings::from_lookup(|n| match n {
            "RLSGATE_DATABASE_URL" => Some("postgres://root:hunter2@db:5432/app".into()),
            "RLSGATE_RUNTIME_URL" => Some("postgres://app_user:swordfish@db/app".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            settings.runtime_url.as_deref(),
            Some("postgres://app_user:swordfish@db/app")
        );
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
        assert!(shown.contains("postgres://root:***@db:5432/app"), "{shown}");
    }
}
