//! The container backend: a testcontainers-managed PostgreSQL container whose port is
//! published on 127.0.0.1 only, labelled so that leftovers of killed runs can be swept.
//!
//! The image is configuration (`RLSGATE_PG_IMAGE`). It may be an official `postgres` image or one
//! built by `scripts/build-postgres-image.sh`; both honour `POSTGRES_USER`/`POSTGRES_PASSWORD`.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use testcontainers::bollard::Docker;
use testcontainers::bollard::models::PortBinding;
use testcontainers::bollard::query_parameters::{
    CreateImageOptions, ListContainersOptions, RemoveContainerOptions, RenameContainerOptions,
};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::config::{ImageRef, Settings};
use crate::error::{Error, Result};
use crate::provision::Endpoint;
use crate::provision::owner::Owner;

const LABEL: &str = "rlsgate.managed";
const PID_LABEL: &str = "rlsgate.pid";
const PIDNS_LABEL: &str = "rlsgate.pidns";
const KEPT_PREFIX: &str = "rlsgate-kept-";

/// A running container.
pub(crate) struct ContainerInstance {
    container: Option<ContainerAsync<GenericImage>>,
    image: ImageRef,
    settings: Settings,
}

/// A client for the Docker daemon, after a successful ping.
///
/// # Errors
/// A provisioning error naming the daemon's address and the fix.
pub(crate) async fn docker(settings: &Settings) -> Result<Docker> {
    let host = settings
        .docker_host
        .clone()
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let unreachable = |why: String| {
        Error::provisioning(format!(
            "docker is not reachable at {host} ({why}); start the daemon (dockerd) or set RLSGATE_BACKEND=local"
        ))
    };
    let timeout = 10;
    let connected = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_socket(path, timeout, testcontainers::bollard::API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(&host, timeout, testcontainers::bollard::API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_local_defaults()
    };
    let docker = connected.map_err(|e| unreachable(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("no answer within 5 s".into())),
    }
}

/// Whether `image` is present locally (nothing is pulled).
pub(crate) async fn image_present(docker: &Docker, image: &ImageRef) -> bool {
    docker.inspect_image(&image.to_string()).await.is_ok()
}

/// Whether `image` is present locally, pulling it if it is not.
///
/// # Errors
/// A provisioning error naming the image and the fix when it is neither present nor pullable.
pub(crate) async fn ensure_image(docker: &Docker, image: &ImageRef) -> Result<&'static str> {
    if image_present(docker, image).await {
        return Ok("present");
    }
    let options = CreateImageOptions {
        from_image: Some(image.name.clone()),
        tag: Some(image.tag.clone()),
        ..Default::default()
    };
    let mut pull = docker.create_image(Some(options), None, None);
    let mut failure = None;
    let pulled = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(step) = pull.next().await {
            if let Err(e) = step {
                failure = Some(e.to_string());
                break;
            }
        }
    })
    .await;
    match (pulled, failure) {
        (Ok(()), None) if docker.inspect_image(&image.to_string()).await.is_ok() => Ok("pulled"),
        (Ok(()), failure) => Err(Error::provisioning(format!(
            "image {image} is not present and cannot be pulled ({}); build one with \
             `scripts/build-postgres-image.sh 15` and set RLSGATE_PG_IMAGE=rlsgate/postgres:15, \
             or set RLSGATE_BACKEND=local",
            failure.unwrap_or_else(|| "the pull finished without it".into())
        ))),
        (Err(_), _) => Err(Error::provisioning(format!(
            "pulling image {image} took over 300 s; pull it by hand (docker pull {image}) or set RLSGATE_BACKEND=local"
        ))),
    }
}

impl ContainerInstance {
    /// Start a container of `settings.image` whose superuser `postgres` has `password`.
    pub(crate) async fn start(settings: &Settings, password: &str) -> Result<(Self, Endpoint)> {
        let docker = docker(settings).await?;
        sweep(&docker, false).await;
        ensure_image(&docker, &settings.image).await?;
        let owner = Owner::current();
        let request = GenericImage::new(settings.image.name.clone(), settings.image.tag.clone())
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::Nothing)
            .with_env_var("POSTGRES_USER", "postgres")
            .with_env_var("POSTGRES_PASSWORD", password)
            .with_env_var("POSTGRES_DB", "postgres")
            .with_cmd([
                "postgres",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=on",
                "-c",
                "max_connections=300",
            ])
            .with_label(LABEL, "true")
            .with_label(PID_LABEL, owner.pid().to_string())
            .with_label(PIDNS_LABEL, owner.namespace())
            .with_startup_timeout(Duration::from_secs(60))
            .with_host_config_modifier(|host| {
                // Publish on loopback only, on a port Docker picks.
                host.publish_all_ports = Some(false);
                host.port_bindings = Some(HashMap::from([(
                    "5432/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )]));
            });
        let container = request.start().await.map_err(|e| {
            Error::provisioning(format!(
                "cannot start a container of {}: {e}; check `docker run {}` by hand or set RLSGATE_BACKEND=local",
                settings.image, settings.image
            ))
        })?;
        let instance = Self {
            container: Some(container),
            image: settings.image.clone(),
            settings: settings.clone(),
        };
        let endpoint = instance.endpoint().await?;
        Ok((instance, endpoint))
    }

    fn container(&self) -> &ContainerAsync<GenericImage> {
        self.container
            .as_ref()
            .expect("the container lives until drop")
    }

    /// Where the server answers now (the host port changes when the container restarts).
    pub(crate) async fn endpoint(&self) -> Result<Endpoint> {
        let port = self
            .container()
            .get_host_port_ipv4(5432.tcp())
            .await
            .map_err(|e| {
                Error::provisioning(format!("reading the published port of {}: {e}", self.image))
            })?;
        Ok(Endpoint {
            host: "127.0.0.1".into(),
            port,
        })
    }

    /// Kill the server (no shutdown), start the container again, and return the new endpoint.
    pub(crate) async fn crash_and_restart(&self) -> Result<Endpoint> {
        let c = self.container();
        c.stop_with_timeout(Some(0))
            .await
            .map_err(|e| Error::provisioning(format!("killing the container: {e}")))?;
        c.start()
            .await
            .map_err(|e| Error::provisioning(format!("restarting the container: {e}")))?;
        self.endpoint().await
    }

    /// The container id.
    pub(crate) fn id(&self) -> &str {
        self.container().id()
    }

    /// Leave the container running for post-mortem; `rlsgate clean` removes it later.
    pub(crate) fn keep(&mut self) {
        if let Some(container) = self.container.take() {
            let id = container.id().to_string();
            // Forgetting the handle skips testcontainers' remove-on-drop.
            std::mem::forget(container);
            let settings = self.settings.clone();
            crate::provision::run_detached(async move {
                if let Ok(docker) = docker(&settings).await {
                    let name = format!("{KEPT_PREFIX}{}", &id[..12]);
                    let _ = docker
                        .rename_container(&id, RenameContainerOptions { name })
                        .await;
                }
            });
        }
    }
}

impl Drop for ContainerInstance {
    fn drop(&mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        // testcontainers removes the container in its own Drop, which needs a runtime context.
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(container);
        } else if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            let _guard = rt.enter();
            drop(container);
        }
    }
}

/// Remove rlsgate's containers whose owner process is gone (and, with `kept`, those kept for
/// post-mortem). Returns the ids removed.
pub(crate) async fn sweep(docker: &Docker, kept: bool) -> Vec<String> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL}=true")],
        )])),
        ..Default::default()
    };
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for c in containers {
        let Some(id) = c.id else { continue };
        let is_kept = c
            .names
            .unwrap_or_default()
            .iter()
            .any(|n| n.trim_start_matches('/').starts_with(KEPT_PREFIX));
        let labels = c.labels.unwrap_or_default();
        let owner_alive = labels
            .get(PID_LABEL)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|pid| {
                Owner::new(pid, labels.get(PIDNS_LABEL).map(String::as_str)).is_alive()
            });
        if (is_kept && !kept) || (!is_kept && owner_alive) {
            continue;
        }
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        if docker.remove_container(&id, Some(options)).await.is_ok() {
            if !kept {
                eprintln!(
                    "rlsgate: removed a container left by a killed run: {}",
                    &id[..12.min(id.len())]
                );
            }
            removed.push(id);
        }
    }
    removed
}
