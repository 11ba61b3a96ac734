//! Configuration reload on SIGHUP and on a change of the file.
//!
//! A new file is validated in full before it is swapped in; a file that
//! fails validation is logged and counted, and the running configuration
//! stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::proxy::Gateway;

/// How often the file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Watches for SIGHUP and file changes until the task is dropped.
///
/// A changed file is reloaded once it reads the same on two checks in a
/// row, so that a file caught halfway through a write is never loaded.
/// `loaded` is the digest of the file the running configuration came from,
/// taken when it was read, so that a change made before this task first
/// runs is not missed.
pub async fn watch(gateway: Arc<Gateway>, path: PathBuf, loaded: Option<[u8; 32]>) {
    let mut applied = loaded;
    let mut seen = applied;
    let mut interval = tokio::time::interval(WATCH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hangup = hangup_signal();
    loop {
        let signaled = tokio::select! {
            _ = interval.tick() => false,
            () = next_hangup(&mut hangup) => true,
        };
        let current = digest(&path);
        let settled = current.is_some() && current == seen && current != applied;
        seen = current;
        if signaled || (settled && gateway.config().watch_config) {
            applied = current;
            reload(
                &gateway,
                &path,
                if signaled { "SIGHUP" } else { "file change" },
            );
        }
    }
}

/// Loads `path` and puts it in force if it is valid. Returns whether it was.
pub fn reload(gateway: &Gateway, path: &Path, trigger: &str) -> bool {
    match Config::load(path) {
        Ok(config) if config.routes.rules().is_empty() => {
            // An empty or truncated file parses as a valid configuration
            // with no routes, which would reject every request.
            let error = "the new configuration has no route rules";
            failed(gateway, path, trigger, &error)
        }
        Ok(config) => {
            let rules = config.routes.rules().len();
            match gateway.reload(config) {
                Ok(()) => {
                    gateway.metrics().record_reload(true);
                    tracing::info!(config = %path.display(), trigger, rules, "configuration reloaded");
                    true
                }
                Err(error) => failed(gateway, path, trigger, &error),
            }
        }
        Err(error) => failed(gateway, path, trigger, &error),
    }
}

fn failed(gateway: &Gateway, path: &Path, trigger: &str, error: &dyn std::fmt::Display) -> bool {
    gateway.metrics().record_reload(false);
    tracing::error!(
        config = %path.display(),
        trigger,
        %error,
        "configuration reload failed; the running configuration stays"
    );
    false
}

/// SHA-256 of the file's contents, or `None` if it cannot be read.
pub fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(bytes).into())
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload on file change only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(signal: &mut Hangup) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}
