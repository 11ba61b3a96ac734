//! Test harness for the admin API: a real gateway and a real admin API on
//! 127.0.0.1:0, sharing one authenticator and one SQLite store, with the
//! in-process echo service as the upstream.

#![allow(dead_code)]

#[path = "../common/http.rs"]
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis::admin::{AdminServer, AdminState};
use portcullis::config::Config;
use portcullis::credential::KeyKind;
use portcullis::server::Server;
use portcullis::store::sqlite::NewKey;
use portcullis::store::SqliteStore;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

pub use self::http::HttpResponse;

/// Gateway routes: reading runs needs `runs:read`, creating them
/// `runs:create` and counts as trace usage.
const ROUTES: &str = r#"
[[upstreams]]
name = "echo"
url = "builtin:echo"

[[routes]]
id = "runs-read"
path = "/api/v1/runs/**"
methods = ["GET"]
permission = "runs:read"
upstream = "echo"

[[routes]]
id = "runs-create"
path = "/api/v1/runs/**"
methods = ["POST"]
permission = "runs:create"
upstream = "echo"
usage = "traces"
"#;

/// A running gateway and admin API over one store, with an organization
/// whose owner is an Organization Admin.
pub struct Harness {
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    pub store: SqliteStore,
    pub org: Uuid,
    /// The organization's first workspace.
    pub workspace: Uuid,
    pub owner: Uuid,
    /// A personal access token of the owner.
    pub owner_key: String,
    /// The SQLite file behind `store`.
    pub db: std::path::PathBuf,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts with a shared organization on `plan`.
    pub async fn start(plan: &str) -> Self {
        Self::start_with(plan, false).await
    }

    /// Starts with a shared organization on `plan`, and with the
    /// workspace-admin invitation setting as given.
    pub async fn start_with(plan: &str, workspace_admins_can_invite: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("portcullis.db");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\nbootstrap = false\n{ROUTES}",
            db.display()
        );
        let config = Config::from_toml(&text).expect("test config is valid");
        let store = SqliteStore::open(&db).expect("open store");
        let setup = store
            .setup("Acme", "Default", "owner@acme.test", plan)
            .expect("setup");
        let (_, owner_key) = store
            .create_key(&NewKey {
                kind: KeyKind::Personal,
                organization_id: setup.organization_id,
                user_id: Some(setup.user_id),
                service_account_id: None,
                workspace_id: None,
                description: String::new(),
                expires_at: None,
            })
            .expect("owner key");

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let gateway = listener.local_addr().expect("addr");
        let server = Server::from_listener(listener, config, Arc::new(store.clone()));
        let state = AdminState::new(
            server.gateway().auth().clone(),
            store.clone(),
            workspace_admins_can_invite,
        )
        .with_limits(server.gateway().limits().clone());
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = admin_listener.local_addr().expect("addr");
        let admin_server = AdminServer::from_listener(admin_listener, state);

        let (stop, stopped) = watch::channel(false);
        let mut gateway_stopped = stopped.clone();
        tokio::spawn(server.run(async move {
            let _ = gateway_stopped.changed().await;
        }));
        let mut admin_stopped = stopped;
        tokio::spawn(admin_server.run(async move {
            let _ = admin_stopped.changed().await;
        }));
        Self {
            gateway,
            admin,
            store,
            org: setup.organization_id,
            workspace: setup.workspace_id,
            owner: setup.user_id,
            owner_key: owner_key.expose().to_string(),
            db,
            stop,
            _dir: dir,
        }
    }

    /// Calls the admin API with `key`; a `Value::Null` body sends none.
    pub async fn call(&self, method: &str, path: &str, key: &str, body: Value) -> HttpResponse {
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let mut headers = vec![("x-api-key", key)];
        if !text.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        http::send(self.admin, method, path, &headers, text.as_bytes()).await
    }

    /// Calls the admin API as the owner.
    pub async fn owner(&self, method: &str, path: &str, body: Value) -> HttpResponse {
        self.call(method, path, &self.owner_key.clone(), body).await
    }

    /// Sends `method /api/v1/runs/1` through the gateway, in `workspace`
    /// when given, and returns the response.
    pub async fn gateway(&self, method: &str, key: &str, workspace: Option<Uuid>) -> HttpResponse {
        let tenant = workspace.map(|w| w.to_string());
        let mut headers = vec![("x-api-key", key)];
        if let Some(tenant) = &tenant {
            headers.push(("x-tenant-id", tenant));
        }
        http::send(self.gateway, method, "/api/v1/runs/1", &headers, b"").await
    }

    /// A user who is a member with `org_role`, and `workspace_role` in the
    /// first workspace when given, and the user's personal access token.
    pub fn user(
        &self,
        email: &str,
        org_role: &str,
        workspace_role: Option<&str>,
    ) -> (Uuid, String) {
        let user = self.store.create_user(email).expect("create user");
        self.store
            .add_organization_member(self.org, user, org_role)
            .expect("organization member");
        if let Some(role) = workspace_role {
            self.store
                .add_workspace_member(self.workspace, user, role)
                .expect("workspace member");
        }
        let (_, key) = self
            .store
            .create_key(&NewKey {
                kind: KeyKind::Personal,
                organization_id: self.org,
                user_id: Some(user),
                service_account_id: None,
                workspace_id: None,
                description: String::new(),
                expires_at: None,
            })
            .expect("user key");
        (user, key.expose().to_string())
    }

    /// The number of audit records.
    pub fn audit_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM audit_log")
    }

    /// Runs a `SELECT COUNT(*) …` query on the store file.
    pub fn count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(&self.db).expect("open store file");
        conn.query_row(sql, [], |r| r.get(0)).expect("count query")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The `field` of a JSON error body.
pub fn error_field(response: &HttpResponse) -> String {
    response.json()["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
