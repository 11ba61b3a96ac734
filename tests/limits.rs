//! Rate limits, the failed-authentication throttle and monthly usage
//! limits, against a running gateway with a manual clock: tests move time
//! forward instead of sleeping.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{create_key, send, HttpResponse, Upstream};
use portcullis::authz::{ORGANIZATION_USER, WORKSPACE_EDITOR};
use portcullis::config::Config;
use portcullis::credential::{KeyKind, SecretKey};
use portcullis::identity::RetentionTier;
use portcullis::limits::{ManualClock, RateScope};
use portcullis::proxy::Gateway;
use portcullis::server::Server;
use portcullis::store::{RateOverrideRecord, SqliteStore, UsageCounter};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use uuid::Uuid;

/// 2025-01-31T23:00:00Z: one hour before a month boundary.
const START_UNIX_SECS: u64 = 1_738_364_400;
/// 2025-02-01T00:00:00Z.
const NEXT_MONTH_UNIX_SECS: i64 = 1_738_368_000;
/// `[limits.rate]` without the shipped per-key default, so that each test
/// sets only the limit it exercises.
const NO_RATE_LIMITS: &str = "[limits.rate]\nper_key = 0\n";

/// A store with one organization and workspace, an upstream that records
/// requests, and the clock every gateway started from it uses.
struct Fixture {
    upstream: Upstream,
    store: SqliteStore,
    db: PathBuf,
    org: Uuid,
    workspace: Uuid,
    admin: Uuid,
    admin_key: SecretKey,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// A gateway serving on 127.0.0.1.
struct Running {
    addr: std::net::SocketAddr,
    gateway: Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    async fn new() -> Self {
        let upstream = Upstream::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("portcullis.db");
        let store = SqliteStore::open(&db).expect("open store");
        let setup = store
            .setup("Acme", "Default", "admin@acme.test", "enterprise")
            .expect("setup");
        let admin_key = create_key(&store, KeyKind::Personal, setup.organization_id, |k| {
            k.user_id = Some(setup.user_id)
        });
        Self {
            upstream,
            store,
            db,
            org: setup.organization_id,
            workspace: setup.workspace_id,
            admin: setup.user_id,
            admin_key,
            clock: Arc::new(ManualClock::starting_at(Duration::from_secs(
                START_UNIX_SECS,
            ))),
            _dir: dir,
        }
    }

    /// Another personal access token of the Organization Admin.
    fn admin_key(&self) -> SecretKey {
        create_key(&self.store, KeyKind::Personal, self.org, |k| {
            k.user_id = Some(self.admin)
        })
    }

    /// Starts a gateway on the fixture's store. `limits` is appended to the
    /// file; `ingest` is appended to the `runs-ingest` rule, which counts
    /// traces.
    async fn serve(&self, limits: &str, ingest: &str) -> Running {
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
id = "runs-ingest"
path = "/api/v1/runs/**"
methods = ["POST", "PATCH"]
permission = "runs:create"
upstream = "recorder"
usage = "traces"
{ingest}

{limits}
"#,
            db = self.db.display(),
            up = self.upstream.addr,
        );
        let config = Config::from_toml(&text).expect("test config is valid");
        let store: Arc<SqliteStore> = Arc::new(self.store.clone());
        let gateway = Gateway::new(Arc::new(config), store)
            .expect("the test upstreams need no TLS files")
            .with_clock(self.clock.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = Server::from_gateway(listener, gateway);
        let gateway = server.gateway().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Running {
            addr,
            gateway,
            shutdown: Some(tx),
            task: Some(task),
        }
    }
}

impl Running {
    async fn get(&self, path: &str, key: &SecretKey) -> HttpResponse {
        send(self.addr, "GET", path, &[("x-api-key", key.expose())], b"").await
    }

    async fn post(&self, key: &SecretKey) -> HttpResponse {
        send(
            self.addr,
            "POST",
            "/api/v1/runs/batch",
            &[("x-api-key", key.expose())],
            b"{}",
        )
        .await
    }

    /// Stops the gateway and waits until it has written its counters.
    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> &'a str {
    response
        .header(name)
        .unwrap_or_else(|| panic!("the response has no {name} header"))
}

fn seconds(response: &HttpResponse, name: &str) -> u64 {
    header(response, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number of seconds"))
}

#[tokio::test]
async fn burst_over_key_limit_gets_429_then_passes() {
    let fx = Fixture::new().await;
    let gw = fx
        .serve("[limits.rate]\nper_key = 3\nperiod = \"1m\"\n", "")
        .await;
    for i in 0..3 {
        let response = gw.get("/api/v1/runs/1", &fx.admin_key).await;
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
    }

    let limited = gw.get("/api/v1/runs/1", &fx.admin_key).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.error_code(), "rate_limited");
    assert_eq!(header(&limited, "ratelimit-limit"), "3");
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    // One request comes back every 60 s / 3 = 20 s.
    let retry_after = seconds(&limited, "retry-after");
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(seconds(&limited, "ratelimit-reset"), retry_after);
    assert!(
        limited.text().contains("this API key"),
        "{}",
        limited.text()
    );
    assert_eq!(
        fx.upstream.count(),
        3,
        "a limited request reached the upstream"
    );

    fx.clock.advance(Duration::from_secs(60));
    for i in 0..3 {
        let response = gw.get("/api/v1/runs/1", &fx.admin_key).await;
        assert_eq!(response.status, 200, "request {i} after the period");
    }
    let counters = gw.gateway.limits().counters();
    assert_eq!(counters.rate_limited(RateScope::Key), 1);
}

#[tokio::test]
async fn keys_have_independent_budgets() {
    let fx = Fixture::new().await;
    let gw = fx.serve("[limits.rate]\nper_key = 2\n", "").await;
    let other = fx.admin_key();
    for _ in 0..2 {
        assert_eq!(gw.get("/api/v1/runs/1", &fx.admin_key).await.status, 200);
    }
    assert_eq!(gw.get("/api/v1/runs/1", &fx.admin_key).await.status, 429);
    for i in 0..2 {
        let response = gw.get("/api/v1/runs/1", &other).await;
        assert_eq!(response.status, 200, "second key, request {i}");
    }
    assert_eq!(gw.get("/api/v1/runs/1", &other).await.status, 429);
}

#[tokio::test]
async fn workspace_limit_is_shared_by_its_keys() {
    let fx = Fixture::new().await;
    let gw = fx
        .serve("[limits.rate]\nper_key = 0\nper_workspace = 3\n", "")
        .await;
    let second_key = fx.admin_key();
    assert_eq!(gw.get("/api/v1/runs/1", &fx.admin_key).await.status, 200);
    assert_eq!(gw.get("/api/v1/runs/1", &second_key).await.status, 200);
    assert_eq!(gw.get("/api/v1/runs/1", &fx.admin_key).await.status, 200);

    let limited = gw.get("/api/v1/runs/1", &second_key).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(
        limited.text().contains("this workspace"),
        "{}",
        limited.text()
    );
    assert_eq!(header(&limited, "ratelimit-limit"), "3");

    // A key of another workspace has its own budget.
    let other = fx.store.create_workspace(fx.org, "Other").unwrap();
    let user = fx.store.create_user("dev@acme.test").unwrap();
    fx.store
        .add_organization_member(fx.org, user, ORGANIZATION_USER)
        .unwrap();
    fx.store
        .add_workspace_member(other, user, WORKSPACE_EDITOR)
        .unwrap();
    let outsider = create_key(&fx.store, KeyKind::Personal, fx.org, |k| {
        k.user_id = Some(user)
    });
    let response = gw.get("/api/v1/runs/1", &outsider).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn route_override_replaces_default() {
    let fx = Fixture::new().await;
    let gw = fx
        .serve(
            "[limits.rate]\nper_key = 2\n",
            "rate_limit = { per_key = 5, period = \"1m\" }",
        )
        .await;
    for i in 0..5 {
        let response = gw.post(&fx.admin_key).await;
        assert_eq!(
            response.status,
            200,
            "ingest request {i}: {}",
            response.text()
        );
    }
    let limited = gw.post(&fx.admin_key).await;
    assert_eq!(limited.status, 429);
    assert_eq!(header(&limited, "ratelimit-limit"), "5");

    // Routes without an override share the default budget, apart from the
    // ingest route's.
    for _ in 0..2 {
        assert_eq!(gw.get("/api/v1/runs/1", &fx.admin_key).await.status, 200);
    }
    let limited = gw.get("/api/v1/runs/1", &fx.admin_key).await;
    assert_eq!(limited.status, 429);
    assert_eq!(header(&limited, "ratelimit-limit"), "2");
}

#[tokio::test]
async fn stored_workspace_override_replaces_default() {
    let fx = Fixture::new().await;
    fx.store
        .set_rate_override(
            fx.workspace,
            Some(RateOverrideRecord {
                workspace_id: fx.workspace,
                per_key: Some(1),
                per_workspace: None,
                period: Duration::from_secs(60),
            }),
        )
        .unwrap();
    let gw = fx.serve("[limits.rate]\nper_key = 100\n", "").await;
    assert_eq!(gw.get("/api/v1/runs/1", &fx.admin_key).await.status, 200);
    let limited = gw.get("/api/v1/runs/1", &fx.admin_key).await;
    assert_eq!(limited.status, 429);
    assert_eq!(header(&limited, "ratelimit-limit"), "1");

    // Removing the override takes effect at the next refresh.
    fx.store.set_rate_override(fx.workspace, None).unwrap();
    gw.gateway.limits().refresh().await;
    assert_eq!(gw.get("/api/v1/runs/1", &fx.admin_key).await.status, 200);
}

#[tokio::test]
async fn failed_auth_throttle_engages_and_releases() {
    let fx = Fixture::new().await;
    let limits = "[limits.failed_auth]\nmax_failures = 3\nperiod = \"1m\"\nblock_for = \"30s\"\n";
    let gw = fx.serve(limits, "").await;
    let unknown = SecretKey::generate(KeyKind::Personal);
    for i in 0..4 {
        let response = gw.get("/api/v1/runs/1", &unknown).await;
        assert_eq!(response.status, 401, "invalid key {i}");
    }
    let counters = gw.gateway.limits().counters();
    assert_eq!(counters.auth_failures(), 4);
    assert_eq!(counters.addresses_blocked(), 1);

    // Blocked: even a valid key gets 429, before any lookup.
    let blocked = gw.get("/api/v1/runs/1", &fx.admin_key).await;
    assert_eq!(blocked.status, 429, "{}", blocked.text());
    assert_eq!(blocked.error_code(), "rate_limited");
    let retry_after = seconds(&blocked, "retry-after");
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(counters.throttled_requests(), 1);
    // Routes that need no key stay open.
    let public = send(gw.addr, "GET", "/api/v1/info", &[], b"").await;
    assert_eq!(public.status, 200);

    fx.clock.advance(Duration::from_secs(31));
    let released = gw.get("/api/v1/runs/1", &fx.admin_key).await;
    assert_eq!(released.status, 200, "{}", released.text());
}

#[tokio::test]
async fn usage_limit_rejects_first_request_over_it() {
    let fx = Fixture::new().await;
    fx.store
        .set_usage_limit(fx.workspace, UsageCounter::AllTraces, Some(3))
        .unwrap();
    let gw = fx.serve(NO_RATE_LIMITS, "").await;
    for i in 0..3 {
        let response = gw.post(&fx.admin_key).await;
        assert_eq!(response.status, 200, "trace {i}: {}", response.text());
    }
    let over = gw.post(&fx.admin_key).await;
    assert_eq!(over.status, 429, "{}", over.text());
    assert_eq!(over.error_code(), "usage_limit_exceeded");
    let body = over.json();
    assert_eq!(body["limit"], "all_traces");
    assert_eq!(body["limit_value"], 3);
    assert_eq!(body["resets_at"], "2025-02-01T00:00:00Z");
    let until_reset = NEXT_MONTH_UNIX_SECS as u64 - START_UNIX_SECS;
    assert_eq!(seconds(&over, "retry-after"), until_reset);
    assert_eq!(
        fx.upstream.count(),
        3,
        "a request over the limit reached the upstream"
    );

    // Reads are not metered.
    assert_eq!(gw.get("/api/v1/runs/1", &fx.admin_key).await.status, 200);
    let usage = gw.gateway.limits().current_usage(fx.workspace);
    assert_eq!(usage.month, "2025-01");
    assert_eq!(usage.all_traces, 3);
    assert_eq!(usage.all_traces_limit, Some(3));

    // The count starts again in February.
    fx.clock.advance(Duration::from_secs(until_reset));
    let response = gw.post(&fx.admin_key).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let usage = gw.gateway.limits().current_usage(fx.workspace);
    assert_eq!(usage.month, "2025-02");
    assert_eq!(usage.all_traces, 1);
    assert_eq!(
        gw.gateway
            .limits()
            .counters()
            .usage_limit_exceeded(UsageCounter::AllTraces),
        1
    );
}

#[tokio::test]
async fn extended_retention_counts_and_reaches_upstream() {
    let fx = Fixture::new().await;
    fx.store
        .set_retention_tier(fx.workspace, RetentionTier::Extended)
        .unwrap();
    fx.store
        .set_usage_limit(fx.workspace, UsageCounter::ExtendedTraces, Some(4))
        .unwrap();
    let gw = fx.serve(NO_RATE_LIMITS, "usage_cost = 2").await;
    for i in 0..2 {
        let response = gw.post(&fx.admin_key).await;
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
    }
    let seen = fx.upstream.last();
    assert_eq!(
        seen.values("x-auth-retention-tier"),
        vec!["extended".to_string()]
    );

    let over = gw.post(&fx.admin_key).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.json()["limit"], "extended_traces");
    assert_eq!(over.json()["limit_value"], 4);
    let usage = gw.gateway.limits().current_usage(fx.workspace);
    assert_eq!(usage.all_traces, 4, "the rejected request was counted");
    assert_eq!(usage.extended_traces, 4);
}

#[tokio::test]
async fn base_retention_reaches_upstream() {
    let fx = Fixture::new().await;
    let gw = fx.serve(NO_RATE_LIMITS, "").await;
    assert_eq!(gw.post(&fx.admin_key).await.status, 200);
    let seen = fx.upstream.last();
    assert_eq!(
        seen.values("x-auth-retention-tier"),
        vec!["base".to_string()]
    );
    let usage = gw.gateway.limits().current_usage(fx.workspace);
    assert_eq!(usage.all_traces, 1);
    assert_eq!(usage.extended_traces, 0);
}

#[tokio::test]
async fn usage_counters_survive_restart() {
    let fx = Fixture::new().await;
    fx.store
        .set_usage_limit(fx.workspace, UsageCounter::AllTraces, Some(3))
        .unwrap();
    let gw = fx.serve(NO_RATE_LIMITS, "").await;
    for _ in 0..2 {
        assert_eq!(gw.post(&fx.admin_key).await.status, 200);
    }
    gw.stop().await;
    let stored = fx
        .store
        .usage_for_workspace(fx.workspace, "2025-01")
        .unwrap();
    assert_eq!(stored.all_traces, 2, "shutdown did not write the counters");
    assert_eq!(stored.all_traces_limit, Some(3));

    let gw = fx.serve(NO_RATE_LIMITS, "").await;
    assert_eq!(gw.post(&fx.admin_key).await.status, 200);
    let over = gw.post(&fx.admin_key).await;
    assert_eq!(over.status, 429, "the restarted gateway forgot the usage");
    gw.stop().await;
    let stored = fx
        .store
        .usage_for_workspace(fx.workspace, "2025-01")
        .unwrap();
    assert_eq!(stored.all_traces, 3);
}

#[tokio::test]
async fn usage_route_must_need_a_key() {
    let text = r#"
[[upstreams]]
name = "api"
url = "http://127.0.0.1:1"

[[routes]]
id = "open"
path = "/open"
methods = ["POST"]
permission = "public"
upstream = "api"
usage = "traces"
"#;
    let error = Config::from_toml(text).expect_err("a public usage route is rejected");
    assert_eq!(error.field(), "routes[0].usage");
    assert_eq!(error.line(), Some(12));
}
