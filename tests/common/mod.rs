//! Test harness: a real gateway on 127.0.0.1:0 in front of a real upstream
//! that records every request it receives, with a real SQLite store.

#![allow(dead_code)]

pub mod http;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use portcullis::config::Config;
use portcullis::credential::{KeyKind, SecretKey};
use portcullis::server::Server;
use portcullis::store::sqlite::NewKey;
use portcullis::store::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use uuid::Uuid;

#[allow(unused_imports)]
pub use self::http::{send, send_raw, HttpResponse};
pub use upstream::Upstream;

/// Route rules every test gateway has, in front of the recording upstream.
pub const ROUTES: &str = r#"
[[routes]]
id = "info"
path = "/api/v1/info"
methods = ["GET"]
permission = "public"
upstream = "recorder"

[[routes]]
id = "runs-read"
path = "/api/v1/runs/**"
methods = ["GET"]
permission = "runs:read"
upstream = "recorder"

[[routes]]
id = "runs-create"
path = "/api/v1/runs/**"
methods = ["POST", "PATCH"]
permission = "runs:create"
upstream = "recorder"

[[routes]]
id = "runs-delete"
path = "/api/v1/runs/{run_id}"
methods = ["DELETE"]
permission = "runs:delete"
upstream = "recorder"

[[routes]]
id = "admin"
path = "/api/v1/admin/**"
methods = ["GET", "POST", "DELETE"]
permission = "workspaces:manage"
upstream = "recorder"

[[routes]]
id = "org"
path = "/api/v1/orgs/current"
methods = ["GET"]
permission = "organization:read"
upstream = "recorder"

[[routes]]
id = "stream"
path = "/api/v1/stream/**"
methods = ["GET", "POST"]
permission = "runs:read"
upstream = "recorder"

[[routes]]
id = "forwarded-key"
path = "/api/v1/passthrough"
methods = ["GET"]
permission = "runs:read"
upstream = "recorder"
forward_credential = true

[[routes]]
id = "prefixed"
path = "/svc/**"
methods = ["GET"]
permission = "runs:read"
upstream = "recorder"
strip_prefix = "/svc"

[[routes]]
id = "down"
path = "/down/**"
methods = ["GET"]
permission = "public"
upstream = "unreachable"

[[routes]]
id = "slow"
path = "/slow/**"
methods = ["GET"]
permission = "public"
upstream = "slow"
"#;

/// A running gateway with its upstream, store and fixtures.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub upstream: Upstream,
    pub store: SqliteStore,
    pub org: Uuid,
    pub workspace: Uuid,
    pub admin: Uuid,
    /// A personal access token of the Organization Admin.
    pub admin_key: SecretKey,
    /// The SQLite file behind `store`, for tests that open it themselves.
    pub db_path: PathBuf,
    /// The metrics and health listener.
    pub metrics_addr: std::net::SocketAddr,
    /// The config file the gateway reloads from.
    pub config_path: PathBuf,
    /// The text first written to `config_path`.
    pub config_text: String,
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a gateway with [`ROUTES`] and an enterprise organization.
    pub async fn start() -> Self {
        Self::start_with("", "enterprise").await
    }

    /// Starts a gateway; `extra` is appended to the config file.
    pub async fn start_with(extra: &str, plan: &str) -> Self {
        let upstream = Upstream::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let db: PathBuf = dir.path().join("portcullis.db");
        let unreachable = closed_port().await;
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{db}"
bootstrap = false

[[upstreams]]
name = "recorder"
url = "http://{up}"
timeout = "5s"

[[upstreams]]
name = "unreachable"
url = "http://{unreachable}"
connect_timeout = "1s"

[[upstreams]]
name = "slow"
url = "http://{up}"
timeout = "200ms"
{ROUTES}
{extra}
"#,
            db = db.display(),
            up = upstream.addr,
        );
        let config = Config::from_toml(&text).expect("test config is valid");
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, &text).expect("write config");
        let store = SqliteStore::open(&db).expect("open store");
        let setup = store
            .setup("Acme", "Default", "admin@acme.test", plan)
            .expect("setup");
        let admin_key = create_key(&store, KeyKind::Personal, setup.organization_id, |k| {
            k.user_id = Some(setup.user_id)
        });

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics_addr = metrics_listener.local_addr().expect("addr");
        let server = Server::from_listener(listener, config, Arc::new(store.clone()))
            .with_metrics_listener(metrics_listener)
            .with_config_path(config_path.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            upstream,
            store,
            org: setup.organization_id,
            workspace: setup.workspace_id,
            admin: setup.user_id,
            admin_key,
            db_path: db,
            metrics_addr,
            config_path,
            config_text: text,
            _dir: dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Creates a key in the gateway's organization.
    pub fn key(&self, kind: KeyKind, fill: impl FnOnce(&mut NewKey)) -> SecretKey {
        create_key(&self.store, kind, self.org, fill)
    }

    /// A user who is an Organization User with `role` in `workspace`, and
    /// that user's personal access token.
    pub fn member(&self, email: &str, workspace: Uuid, role: &str) -> (Uuid, SecretKey) {
        let user = self.store.create_user(email).expect("create user");
        self.store
            .add_organization_member(self.org, user, portcullis::authz::ORGANIZATION_USER)
            .expect("org member");
        self.store
            .add_workspace_member(workspace, user, role)
            .expect("workspace member");
        let key = self.key(KeyKind::Personal, |k| k.user_id = Some(user));
        (user, key)
    }

    /// Sends a request with the given extra header lines.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        send(self.addr, "GET", path, headers, b"").await
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn create_key(
    store: &SqliteStore,
    kind: KeyKind,
    org: Uuid,
    fill: impl FnOnce(&mut NewKey),
) -> SecretKey {
    let mut new = NewKey {
        kind,
        organization_id: org,
        user_id: None,
        service_account_id: None,
        workspace_id: None,
        description: String::new(),
        expires_at: None,
    };
    fill(&mut new);
    store.create_key(&new).expect("create key").1
}

/// An address on which nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}
