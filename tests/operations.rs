//! What an operator relies on: metrics, health, reload, request ids, body
//! and header guards, CORS, and a graceful stop.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{send, TestGateway};
use portcullis::authz::WORKSPACE_VIEWER;
use portcullis::config::Config;
use portcullis::credential::KeyHash;
use portcullis::server::Server;
use portcullis::store::{KeyRecord, PrincipalRecord, SqliteStore, Store, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

/// Reads one sample from Prometheus text: the value of the line that
/// starts with `series` exactly (name and labels as rendered).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn scrape(gw: &TestGateway) -> String {
    let response = send(gw.metrics_addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(response.status, 200);
    response.text()
}

/// Replaces a file in one step, as editors and config tools do.
fn replace_file(path: &std::path::Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// Polls `check` until it returns true, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn metrics_count_known_traffic() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    for _ in 0..3 {
        assert_eq!(
            gw.get("/api/v1/runs", &[("x-api-key", key)]).await.status,
            200
        );
    }
    assert_eq!(gw.get("/api/v1/runs", &[]).await.status, 401);
    assert_eq!(gw.get("/nowhere", &[]).await.status, 404);
    assert_eq!(gw.get("/down/x", &[]).await.status, 502);

    let text = scrape(&gw).await;
    let requests = |route: &str, class: &str, outcome: &str| {
        sample(
            &text,
            &format!(
                "portcullis_requests_total{{method=\"GET\",outcome=\"{outcome}\",route=\"{route}\",status_class=\"{class}\"}}"
            ),
        )
    };
    assert_eq!(requests("runs-read", "2xx", "forwarded"), Some(3.0));
    assert_eq!(requests("runs-read", "4xx", "rejected"), Some(1.0));
    assert_eq!(requests("none", "4xx", "rejected"), Some(1.0));
    assert_eq!(requests("down", "5xx", "upstream_error"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "portcullis_auth_failures_total{reason=\"missing_api_key\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_upstream_errors_total{kind=\"unavailable\",upstream=\"unreachable\"}"
        ),
        Some(1.0)
    );
    // One miss loads the key; the other two requests hit the cache.
    assert_eq!(
        sample(&text, "portcullis_key_cache_misses_total"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "portcullis_key_cache_hits_total"), Some(2.0));
    assert_eq!(sample(&text, "portcullis_key_cache_entries"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "portcullis_upstream_duration_seconds_count{upstream=\"recorder\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "portcullis_gateway_duration_seconds_count"),
        Some(6.0)
    );
    assert_eq!(
        sample(&text, "portcullis_store_query_duration_seconds_count"),
        Some(1.0)
    );
    assert!(text.contains("portcullis_build_info{version=\""));
    assert!(!text.contains(key), "a key reached the metrics");
    assert!(
        !text.contains("127.0.0.1"),
        "a client address reached the metrics"
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let gw = TestGateway::start().await;
    assert_eq!(
        send(gw.metrics_addr, "GET", "/healthz", &[], b"")
            .await
            .status,
        200
    );
    assert_eq!(
        send(gw.metrics_addr, "GET", "/readyz", &[], b"")
            .await
            .status,
        200
    );
    assert_eq!(
        send(gw.metrics_addr, "GET", "/other", &[], b"")
            .await
            .status,
        404
    );
}

/// A store whose availability the test switches.
struct SwitchableStore {
    inner: SqliteStore,
    down: AtomicBool,
}

#[async_trait]
impl Store for SwitchableStore {
    async fn resolve_key(
        &self,
        hash: KeyHash,
    ) -> Result<Option<(KeyRecord, PrincipalRecord)>, StoreError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(StoreError::Invalid("the test took the store down".into()));
        }
        self.inner.resolve_key(hash).await
    }

    async fn record_key_use(&self, uses: Vec<(Uuid, i64)>) -> Result<(), StoreError> {
        self.inner.record_key_use(uses).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(StoreError::Invalid("the test took the store down".into()));
        }
        self.inner.ping().await
    }
}

#[tokio::test]
async fn readiness_fails_while_store_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\nurl = \"sqlite://{}\"\nbootstrap = false\n",
        dir.path().join("p.db").display()
    );
    let config = Config::from_toml(&text).unwrap();
    let store = Arc::new(SwitchableStore {
        inner: SqliteStore::open(&dir.path().join("p.db")).unwrap(),
        down: AtomicBool::new(false),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let server =
        Server::from_listener(listener, config, store.clone()).with_metrics_listener(metrics);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));

    assert_eq!(
        send(metrics_addr, "GET", "/readyz", &[], b"").await.status,
        200
    );
    store.down.store(true, Ordering::Relaxed);
    assert_eq!(
        send(metrics_addr, "GET", "/readyz", &[], b"").await.status,
        503
    );
    assert_eq!(
        send(metrics_addr, "GET", "/healthz", &[], b"").await.status,
        200
    );
    store.down.store(false, Ordering::Relaxed);
    assert_eq!(
        send(metrics_addr, "GET", "/readyz", &[], b"").await.status,
        200
    );

    let _ = tx.send(());
    task.await.unwrap();
}

const NEW_ROUTE: &str = r#"
[[routes]]
id = "added"
path = "/api/v1/added"
methods = ["GET"]
permission = "public"
upstream = "recorder"
"#;

#[tokio::test]
async fn reload_changes_routing() {
    let gw = TestGateway::start().await;
    assert_eq!(gw.get("/api/v1/added", &[]).await.status, 404);
    replace_file(&gw.config_path, &format!("{}{NEW_ROUTE}", gw.config_text));
    let routed = eventually(Duration::from_secs(10), || async {
        gw.get("/api/v1/added", &[]).await.status == 200
    })
    .await;
    assert!(routed, "the new route never took effect");
    let text = scrape(&gw).await;
    assert_eq!(
        sample(&text, "portcullis_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "portcullis_config_last_reload_success"),
        Some(1.0)
    );
}

#[tokio::test]
async fn failed_reload_keeps_running_routes() {
    let gw = TestGateway::start().await;
    // The new rule overlaps an existing one, so the file is invalid.
    let overlapping = NEW_ROUTE
        .replace("\"added\"", "\"clash\"")
        .replace("/api/v1/added", "/api/v1/runs/{id}");
    replace_file(&gw.config_path, &format!("{}{overlapping}", gw.config_text));
    let counted = eventually(Duration::from_secs(10), || async {
        let text = scrape(&gw).await;
        sample(&text, "portcullis_config_reloads_total{result=\"failure\"}") == Some(1.0)
    })
    .await;
    assert!(
        counted,
        "the failed reload was not counted: {}",
        scrape(&gw).await
    );
    let text = scrape(&gw).await;
    assert_eq!(
        sample(&text, "portcullis_config_last_reload_success"),
        Some(0.0)
    );
    // The old routes still serve.
    let response = gw
        .get("/api/v1/runs/1", &[("x-api-key", gw.admin_key.expose())])
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(gw.get("/api/v1/info", &[]).await.status, 200);
}

#[tokio::test]
async fn request_id_is_echoed_and_forwarded() {
    let gw = TestGateway::start().await;
    let response = gw
        .get("/api/v1/info", &[("X-Request-Id", "req-42.a")])
        .await;
    assert_eq!(response.header("x-request-id"), Some("req-42.a"));
    assert_eq!(
        gw.upstream.last().value("x-request-id").as_deref(),
        Some("req-42.a")
    );

    // Without one, or with an implausible one, the gateway makes a UUID.
    for headers in [vec![], vec![("X-Request-Id", "has spaces and {braces}")]] {
        let response = gw.get("/api/v1/info", &headers).await;
        let id = response
            .header("x-request-id")
            .expect("a request id")
            .to_string();
        assert!(Uuid::try_parse(&id).is_ok(), "{id}");
        assert_eq!(gw.upstream.last().value("x-request-id"), Some(id));
    }
    // Rejections carry one too.
    assert!(gw
        .get("/nowhere", &[])
        .await
        .header("x-request-id")
        .is_some());
}

const LIMITED_ROUTE: &str = r#"
[[routes]]
id = "small"
path = "/api/v1/small"
methods = ["POST"]
permission = "public"
upstream = "recorder"
max_body_bytes = 16
"#;

#[tokio::test]
async fn oversize_body_gets_413() {
    let gw = TestGateway::start_with(LIMITED_ROUTE, "enterprise").await;
    let fits = send(gw.addr, "POST", "/api/v1/small", &[], &[b'a'; 16]).await;
    assert_eq!(fits.status, 200);
    assert_eq!(gw.upstream.count(), 1);

    // Declared too large: rejected before anything goes upstream.
    let declared = send(gw.addr, "POST", "/api/v1/small", &[], &[b'a'; 17]).await;
    assert_eq!(declared.status, 413);
    assert_eq!(declared.error_code(), "payload_too_large");
    assert_eq!(gw.upstream.count(), 1);

    // Chunked, so the size is known only while streaming.
    let raw = b"POST /api/v1/small HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\
                Transfer-Encoding: chunked\r\n\r\n10\r\naaaaaaaaaaaaaaaa\r\n10\r\naaaaaaaaaaaaaaaa\r\n0\r\n\r\n";
    let response = common::http::parse_response(&common::send_raw(gw.addr, raw).await).unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "payload_too_large");
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    let gw = start_with_server_settings("header_read_timeout = \"1s\"\n").await;
    let mut stream = tokio::net::TcpStream::connect(gw.0).await.unwrap();
    stream
        .write_all(b"GET /api/v1/info HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The read ends when the gateway closes the connection; the bound only
    // keeps a broken gateway from hanging the test.
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the gateway kept a slow client's connection open"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

/// Starts a gateway with extra `[server]` settings and no routes; returns
/// its address and the task's shutdown handle.
async fn start_with_server_settings(
    settings: &str,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{settings}\n[store]\nurl = \"sqlite://{}\"\nbootstrap = false\n",
        dir.path().join("p.db").display()
    );
    let config = Config::from_toml(&text).unwrap();
    let store = SqliteStore::open(&dir.path().join("p.db")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener, config, Arc::new(store));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    (addr, tx, dir)
}

const CORS_ROUTES: &str = r#"
[cors]
allowed_origins = ["https://app.example"]

[[routes]]
id = "cors-answered"
path = "/api/v1/browser/**"
methods = ["GET", "POST"]
permission = "runs:read"
upstream = "recorder"
cors = "answer"

[[routes]]
id = "cors-passed"
path = "/api/v1/passed/**"
methods = ["GET"]
permission = "runs:read"
upstream = "recorder"
cors = "pass"
"#;

#[tokio::test]
async fn cors_preflight_is_answered_without_key() {
    let gw = TestGateway::start_with(CORS_ROUTES, "enterprise").await;
    let preflight = [
        ("Origin", "https://app.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "x-api-key"),
    ];
    let response = send(gw.addr, "OPTIONS", "/api/v1/browser/x", &preflight, b"").await;
    assert_eq!(response.status, 204);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("GET, POST")
    );
    assert!(response
        .header("access-control-allow-headers")
        .unwrap()
        .contains("x-api-key"));
    assert_eq!(gw.upstream.count(), 0);

    // An origin not on the list gets no CORS headers.
    let other = [
        ("Origin", "https://evil.example"),
        ("Access-Control-Request-Method", "GET"),
    ];
    let response = send(gw.addr, "OPTIONS", "/api/v1/browser/x", &other, b"").await;
    assert_eq!(response.status, 403);
    assert_eq!(response.header("access-control-allow-origin"), None);

    // The actual request still needs a key, and carries the CORS header.
    let (_, key) = gw.member("browser@acme.test", gw.workspace, WORKSPACE_VIEWER);
    let response = gw
        .get(
            "/api/v1/browser/x",
            &[
                ("Origin", "https://app.example"),
                ("x-api-key", key.expose()),
            ],
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        gw.get("/api/v1/browser/x", &[("Origin", "https://app.example")])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn cors_preflight_passes_upstream_without_identity() {
    let gw = TestGateway::start_with(CORS_ROUTES, "enterprise").await;
    let preflight = [
        ("Origin", "https://app.example"),
        ("Access-Control-Request-Method", "GET"),
        ("X-Auth-Role", "admin"),
    ];
    let response = send(gw.addr, "OPTIONS", "/api/v1/passed/x", &preflight, b"").await;
    assert_eq!(response.status, 200);
    let seen = gw.upstream.last();
    assert_eq!(seen.method, "OPTIONS");
    assert_eq!(seen.value("x-auth-role"), None);
    // Routes without `cors` do not take preflights.
    let response = send(gw.addr, "OPTIONS", "/api/v1/runs/x", &preflight, b"").await;
    assert_eq!(response.status, 404);
}

#[tokio::test]
async fn malformed_client_body_gets_400_not_upstream_error() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let raw = format!(
        "POST /api/v1/runs HTTP/1.1\r\nHost: gw\r\nx-api-key: {key}\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n"
    );
    let response =
        common::http::parse_response(&common::send_raw(gw.addr, raw.as_bytes()).await).unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.error_code(), "bad_request");
    let text = scrape(&gw).await;
    assert!(
        !text.contains("portcullis_upstream_errors_total{"),
        "a client's body was counted as an upstream error"
    );
}

#[tokio::test]
async fn empty_config_reload_is_rejected() {
    let gw = TestGateway::start().await;
    let text = scrape(&gw).await;
    // The configuration loaded at start counts as a success.
    assert_eq!(
        sample(&text, "portcullis_config_last_reload_success"),
        Some(1.0)
    );

    replace_file(&gw.config_path, "");
    let counted = eventually(Duration::from_secs(10), || async {
        let text = scrape(&gw).await;
        sample(&text, "portcullis_config_reloads_total{result=\"failure\"}") == Some(1.0)
    })
    .await;
    assert!(counted, "the empty file was not rejected");
    assert_eq!(gw.get("/api/v1/info", &[]).await.status, 200);
}
