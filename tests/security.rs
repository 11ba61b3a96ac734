//! Attacks that have let requests past real authenticating gateways, one
//! group of tests per class. Every test sends raw bytes over a real socket
//! to a gateway on 127.0.0.1 and checks both the response and what the
//! recording upstream received: nothing, or exactly the canonical request.
//!
//! In the tables below, a `None` error code marks a request that hyper
//! rejects while parsing the request head, before the gateway receives it.
//! hyper's responses are a bare 400 or 431 without a JSON body.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use common::http::parse_response;
use common::{HttpResponse, TestGateway};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::authz::{permissions, ORGANIZATION_USER, WORKSPACE_ADMIN, WORKSPACE_VIEWER};
use portcullis::config::Config;
use portcullis::credential::{KeyHash, KeyKind, SecretKey};
use portcullis::server::Server;
use portcullis::store::sqlite::NewKey;
use portcullis::store::{KeyRecord, PrincipalRecord, SqliteStore, Store, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use uuid::Uuid;

/// How long a test waits for the gateway to close a connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Cache lifetimes for the revocation tests: one second each.
const SHORT_CACHE: &str = "[cache]\nttl = \"1s\"\nnegative_ttl = \"1s\"\n";

/// How long past a cache lifetime a change may take to show. It covers
/// moka's expiry granularity and a slow test machine.
const CACHE_SLACK: Duration = Duration::from_secs(3);

/// A request that the gateway must never run, hidden in the body of another.
const SMUGGLED: &str = "GET /api/v1/admin/users HTTP/1.1\r\nHost: gw\r\n\r\n";

// === Fixtures ===

/// A gateway with the keys that the attack cases use.
struct Fixture {
    gw: TestGateway,
    /// A Workspace Viewer of workspace A (the gateway's default workspace):
    /// it may read runs but not manage the workspace.
    viewer: SecretKey,
    viewer_user: Uuid,
    /// A Workspace Admin of workspace A only, so it needs no X-Tenant-Id.
    admin: SecretKey,
    /// A second workspace of the same organization.
    workspace_b: Uuid,
    /// A Workspace Viewer of workspace B only.
    viewer_b: SecretKey,
}

impl Fixture {
    async fn start() -> Self {
        Self::from_gateway(TestGateway::start().await)
    }

    fn from_gateway(gw: TestGateway) -> Self {
        let (viewer_user, viewer) = gw.member("viewer@acme.test", gw.workspace, WORKSPACE_VIEWER);
        let (_, admin) = gw.member("admin-a@acme.test", gw.workspace, WORKSPACE_ADMIN);
        let workspace_b = gw.store.create_workspace(gw.org, "B").expect("workspace B");
        let (_, viewer_b) = gw.member("viewer-b@acme.test", workspace_b, WORKSPACE_VIEWER);
        Self {
            gw,
            viewer,
            viewer_user,
            admin,
            workspace_b,
            viewer_b,
        }
    }

    /// Checks that the upstream's last request carries exactly the
    /// viewer's identity in workspace A, one copy of each header.
    fn assert_viewer_identity(&self) {
        let seen = self.gw.upstream.last();
        let workspace = self.gw.workspace.to_string();
        let expected = [
            ("x-auth-user-id", self.viewer_user.to_string()),
            ("x-auth-org-id", self.gw.org.to_string()),
            ("x-auth-workspace-id", workspace.clone()),
            ("x-tenant-id", workspace),
            ("x-auth-role", WORKSPACE_VIEWER.to_string()),
            ("x-auth-permissions", viewer_permissions()),
            ("x-auth-key-kind", "pat".to_string()),
            ("x-auth-retention-tier", "base".to_string()),
        ];
        for (name, value) in expected {
            assert_eq!(seen.values(name), vec![value], "upstream header {name}");
        }
        assert_eq!(seen.values("x-auth-key-id").len(), 1, "x-auth-key-id");
        assert_eq!(seen.value("x-auth-service-account-id"), None);
    }
}

/// Builds the viewer's permission list as the gateway sends it: the
/// workspace role's and the Organization User's, sorted and comma-separated.
fn viewer_permissions() -> String {
    joined_permissions(
        permissions::workspace_viewer(),
        permissions::organization_user(),
    )
}

fn joined_permissions(workspace: Vec<String>, organization: Vec<String>) -> String {
    let mut all = workspace;
    all.extend(organization);
    all.sort();
    all.dedup();
    all.join(",")
}

/// Looks up the id of a key by its display prefix.
fn key_id(gw: &TestGateway, key: &SecretKey) -> Uuid {
    gw.store
        .list_keys(gw.org)
        .expect("list keys")
        .into_iter()
        .find(|k| k.display_prefix == key.display_prefix())
        .expect("the key is stored")
        .id
}

/// Opens a second connection to the gateway's SQLite file, as another
/// process would.
fn open_db(gw: &TestGateway) -> rusqlite::Connection {
    rusqlite::Connection::open(&gw.db_path).expect("open the store file")
}

/// Makes every key lookup fail by renaming the keys table away.
fn take_key_table_offline(gw: &TestGateway) {
    open_db(gw)
        .execute_batch("ALTER TABLE api_keys RENAME TO api_keys_offline")
        .expect("rename api_keys");
}

fn bring_key_table_back(gw: &TestGateway) {
    open_db(gw)
        .execute_batch("ALTER TABLE api_keys_offline RENAME TO api_keys")
        .expect("rename api_keys back");
}

// === Raw requests ===

/// What came back on one connection.
struct Exchange {
    raw: Vec<u8>,
    /// The gateway closed the connection within [`CLOSE_TIMEOUT`].
    closed: bool,
}

impl Exchange {
    fn response(&self) -> HttpResponse {
        parse_response(&self.raw).unwrap_or_else(|| {
            panic!(
                "no complete response: {:?}",
                String::from_utf8_lossy(&self.raw)
            )
        })
    }

    /// Counts the status lines received. Bodies here are JSON, so a status
    /// line cannot hide in one.
    fn response_count(&self) -> usize {
        let text = String::from_utf8_lossy(&self.raw);
        text.matches("HTTP/1.1 ").count() + text.matches("HTTP/1.0 ").count()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// Writes `bytes` on a new connection and reads until the gateway closes it
/// or [`CLOSE_TIMEOUT`] passes.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Exchange {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The gateway may close before it has read everything, so a failed
    // write is not a test failure here.
    let _ = stream.write_all(bytes).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(CLOSE_TIMEOUT, read_until_close(&mut stream, &mut raw)).await;
    Exchange {
        raw,
        closed: read.is_ok(),
    }
}

async fn read_until_close(stream: &mut TcpStream, raw: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// Builds a `GET` request head with `Connection: close` and the given
/// header lines.
fn get_request(target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Sends `GET target` with `key` and checks the status and error code.
async fn assert_get_rejected(gw: &TestGateway, target: &str, key: &str, status: u16, code: &str) {
    let response = gw.get(target, &[("x-api-key", key)]).await;
    assert_eq!(response.status, status, "GET {target}: {}", response.text());
    assert_eq!(response.error_code(), code, "GET {target}");
}

/// Sends `GET target` with `key` and checks that the upstream received
/// exactly `forwarded` as its request target.
async fn assert_forwarded_as(gw: &TestGateway, target: &str, key: &str, forwarded: &str) {
    let before = gw.upstream.count();
    let response = gw.get(target, &[("x-api-key", key)]).await;
    assert_eq!(response.status, 200, "GET {target}: {}", response.text());
    assert_eq!(gw.upstream.count(), before + 1, "GET {target}");
    assert_eq!(gw.upstream.last().target, forwarded, "GET {target}");
}

/// Returns true if a forwarded target has a `.` or `..` segment, raw or
/// percent-encoded.
fn has_dot_segment(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

// === 1. Dot segments ===

#[tokio::test]
async fn dot_segments_cannot_reach_admin() {
    let fx = Fixture::start().await;
    let viewer = fx.viewer.expose();
    for target in [
        "/api/v1/info/../admin/users",
        "/api/v1/runs/../admin/users",
        "/api/v1/runs/1/../../admin/users",
        "/api/v1/info/./../admin/users",
        "/api/v1/./admin/users",
        "/api/v1/runs/../../v1/admin/users",
        "/../api/v1/admin/users",
        "/api/../api/v1/admin/users",
        "/api/v1/runs/1/./../../admin/./users",
        "/api/v1/runs/..",
    ] {
        let expected = if target.ends_with("/runs/..") {
            // `/api/v1/runs/..` is `/api/v1/`, which no route matches.
            (404, "no_route")
        } else {
            (403, "forbidden")
        };
        assert_get_rejected(&fx.gw, target, viewer, expected.0, expected.1).await;
    }

    // Without a key, the admin route, not the public one, is judged.
    let response = fx.gw.get("/api/v1/info/../admin/users", &[]).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.error_code(), "missing_api_key");
    assert_eq!(fx.gw.upstream.count(), 0);
}

#[tokio::test]
async fn dot_segments_are_removed_before_forwarding() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    for (target, forwarded) in [
        ("/api/v1/runs/a/../b", "/api/v1/runs/b"),
        ("/api/v1/runs/./1", "/api/v1/runs/1"),
        ("/api/v1/admin/../info", "/api/v1/info"),
        ("/api/v1/runs/x/../1?q=../a", "/api/v1/runs/1?q=../a"),
        ("/api/v1/runs/1/.", "/api/v1/runs/1/"),
        ("/api/v1/runs/1/2/..", "/api/v1/runs/1/"),
        ("/../../api/v1/runs/1", "/api/v1/runs/1"),
    ] {
        assert_forwarded_as(&gw, target, key, forwarded).await;
    }
    for seen in gw.upstream.requests() {
        assert!(!has_dot_segment(&seen.target), "{} forwarded", seen.target);
    }
}

// === 2. Encoded dots ===

#[tokio::test]
async fn encoded_dot_segments_cannot_reach_admin() {
    let fx = Fixture::start().await;
    let viewer = fx.viewer.expose();
    for target in [
        "/api/v1/info/%2e%2e/admin/users",
        "/api/v1/info/%2E%2E/admin/users",
        "/api/v1/info/%2e%2E/admin/users",
        "/api/v1/info/%2E%2e/admin/users",
        "/api/v1/info/.%2E/admin/users",
        "/api/v1/info/.%2e/admin/users",
        "/api/v1/info/%2e./admin/users",
        "/api/v1/info/%2E./admin/users",
        "/api/v1/info/.%2E/admin",
        "/api/v1/runs/1/%2e%2e/%2e%2e/admin/users",
        "/api/v1/runs/%2e/%2e%2e/admin/users",
        "/api/v1/%2e/admin/users",
        "/api/v1/%2E/admin/users",
        // Encoded unreserved letters are decoded too.
        "/api/v1/%61dmin/users",
        "/api/v1/%61%64%6d%69%6e/users",
        "/api/%76%31/admin/users",
        "/api/v1/info/%2e%2e//admin/users",
    ] {
        assert_get_rejected(&fx.gw, target, viewer, 403, "forbidden").await;
    }
    assert_eq!(fx.gw.upstream.count(), 0);
}

#[tokio::test]
async fn encoded_dot_segments_are_forwarded_resolved() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    for (target, forwarded) in [
        ("/api/v1/runs/a/%2e%2E/b", "/api/v1/runs/b"),
        ("/api/v1/runs/a/.%2e/b", "/api/v1/runs/b"),
        ("/api/v1/runs/a/%2E./b", "/api/v1/runs/b"),
        ("/api/v1/runs/%2e/1", "/api/v1/runs/1"),
        ("/api/v1/runs/%31", "/api/v1/runs/1"),
        // Other encodings are kept, with uppercase hex digits.
        ("/api/v1/runs/caf%c3%a9", "/api/v1/runs/caf%C3%A9"),
        ("/api/v1/runs/a%20b", "/api/v1/runs/a%20b"),
    ] {
        assert_forwarded_as(&gw, target, key, forwarded).await;
    }
    for seen in gw.upstream.requests() {
        assert!(!has_dot_segment(&seen.target), "{} forwarded", seen.target);
    }
}

/// Double encoding: `%25` is never decoded, so `%252e` is a segment named
/// `%2e` to the gateway, and the gateway forwards it byte for byte. An
/// upstream that decodes once also reads a literal `%2e`, not a dot segment.
/// RFC 3986 section 2.4 forbids decoding the same string twice, so an
/// upstream that does is out of the gateway's reach.
#[tokio::test]
async fn double_encoded_dots_are_not_decoded_twice() {
    let fx = Fixture::start().await;
    let viewer = fx.viewer.expose();
    for target in [
        "/api/v1/info/%252e%252e/admin/users",
        "/api/v1/info/%252E%252E/admin/users",
        "/api/v1/info/%25%32%65%25%32%65/admin/users",
    ] {
        assert_get_rejected(&fx.gw, target, viewer, 404, "no_route").await;
    }
    assert_eq!(fx.gw.upstream.count(), 0);

    let admin = fx.admin.expose();
    for (target, forwarded) in [
        (
            "/api/v1/runs/%252e%252e/admin/users",
            "/api/v1/runs/%252e%252e/admin/users",
        ),
        ("/api/v1/runs/%252F/x", "/api/v1/runs/%252F/x"),
        // `%32` and `%65` are unreserved, so they are decoded once: the
        // result is the same single-encoded `%252e` as above.
        (
            "/api/v1/runs/%25%32%65%25%32%65/x",
            "/api/v1/runs/%252e%252e/x",
        ),
    ] {
        assert_forwarded_as(&fx.gw, target, admin, forwarded).await;
    }
}

// === 3. Encoded separators, NUL and doubled slashes ===

#[tokio::test]
async fn encoded_separators_and_nul_are_rejected() {
    let fx = Fixture::start().await;
    for key in [fx.viewer.expose(), fx.admin.expose()] {
        for target in [
            "/api/v1/admin%2Fusers",
            "/api/v1/admin%2fusers",
            "/api/v1/runs/1%2F..%2F..%2Fadmin",
            "/api/v1/runs/%2e%2e%2f%2e%2e%2fadmin",
            "/api/v1/admin%5Cusers",
            "/api/v1/admin%5cusers",
            "/api/v1/runs/..%5C..%5Cadmin",
            "/api/v1/runs/1%00",
            "/api/v1/admin%00/users",
            "/api/v1/runs/%00/../../admin/users",
            "/api/v1/runs/1%0a",
            "/api/v1/runs/1%0D%0AX-Auth-Role:%20admin",
            "/api/v1/runs\\..\\admin\\users",
            "/api/v1/runs/..\\..\\admin",
        ] {
            assert_get_rejected(&fx.gw, target, key, 400, "invalid_path").await;
        }
    }
    assert_eq!(fx.gw.upstream.count(), 0);
}

#[tokio::test]
async fn raw_nul_and_control_bytes_are_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let mut requests: Vec<Vec<u8>> = Vec::new();
    for target in [
        &b"/api/v1/runs/1\0"[..],
        b"/api/v1/admin\0/users",
        b"/api/v1/runs/\x01",
        b"/api/v1/runs/\x7f",
    ] {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: gw\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        requests.push(request);
    }
    // NUL in a header value.
    let mut request = get_request("/api/v1/runs/1", &[("x-api-key", key)]);
    request.truncate(request.len() - 2);
    request.extend_from_slice(b"X-Note: a\0b\r\n\r\n");
    requests.push(request);

    for request in requests {
        let exchange = exchange(gw.addr, &request).await;
        let response = exchange.response();
        assert_eq!(
            response.status,
            400,
            "{:?}",
            String::from_utf8_lossy(&request)
        );
    }
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test]
async fn doubled_slashes_are_merged_for_matching_and_forwarding() {
    let fx = Fixture::start().await;
    let viewer = fx.viewer.expose();
    for target in [
        "//api/v1/admin/users",
        "///api/v1/admin/users",
        "/api//v1/admin/users",
        "/api/v1//admin/users",
        "/api/v1/admin//users",
        "//api//v1//admin//users//",
        "//api/v1/info/..//admin/users",
    ] {
        assert_get_rejected(&fx.gw, target, viewer, 403, "forbidden").await;
    }
    assert_eq!(fx.gw.upstream.count(), 0);

    let admin = fx.admin.expose();
    for (target, forwarded) in [
        ("//api/v1/runs//1", "/api/v1/runs/1"),
        ("/api/v1/runs///1/", "/api/v1/runs/1/"),
        ("/api//v1/info", "/api/v1/info"),
    ] {
        assert_forwarded_as(&fx.gw, target, admin, forwarded).await;
    }
}

// === 4. Fragment in the request line ===

#[tokio::test]
async fn fragment_in_request_line_is_rejected() {
    let fx = Fixture::start().await;
    for target in [
        "/api/v1/admin#/api/v1/info",
        "/api/v1/admin/users#/../../info",
        "/api/v1/info#/../admin/users",
        "/api/v1/info#",
        "/api/v1/runs/1#x",
        "/api/v1/runs/1?q=1#x",
        "/#/api/v1/info",
    ] {
        for key in [None, Some(fx.viewer.expose()), Some(fx.admin.expose())] {
            let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
            let response = fx.gw.get(target, &headers).await;
            assert_eq!(response.status, 400, "GET {target}: {}", response.text());
            assert_eq!(response.error_code(), "invalid_path", "GET {target}");
        }
    }
    assert_eq!(fx.gw.upstream.count(), 0);

    // An encoded `#` is an ordinary character of the path.
    let admin = fx.admin.expose();
    assert_forwarded_as(&fx.gw, "/api/v1/runs/a%23b", admin, "/api/v1/runs/a%23b").await;
}

// === 5. Path parameters ===

#[tokio::test]
async fn path_parameters_are_rejected() {
    let fx = Fixture::start().await;
    for key in [fx.viewer.expose(), fx.admin.expose()] {
        for target in [
            "/api/v1/info/..;/admin/users",
            "/api/v1/info/..;/admin",
            "/api/v1/info/..;x=1/admin",
            "/api/v1/admin;x=1/users",
            "/api/v1;/admin/users",
            "/api/v1/runs/1;jsessionid=abc",
            "/;/api/v1/admin/users",
            "/api/v1/runs/1;",
            "/api/v1/info/..%3B/admin/users",
            "/api/v1/info/..%3b/admin/users",
            "/api/v1/admin%3Bx=1/users",
        ] {
            assert_get_rejected(&fx.gw, target, key, 400, "invalid_path").await;
        }
    }
    assert_eq!(fx.gw.upstream.count(), 0);

    // `;` in the query is not a path parameter.
    let admin = fx.admin.expose();
    assert_forwarded_as(
        &fx.gw,
        "/api/v1/runs/1?a=1;b=2",
        admin,
        "/api/v1/runs/1?a=1;b=2",
    )
    .await;
}

// === 6. Hop-by-hop abuse ===

#[tokio::test]
async fn connection_header_cannot_remove_injected_identity() {
    let fx = Fixture::start().await;
    let key = fx.viewer.expose();
    let workspace_b = fx.workspace_b.to_string();
    let cases: &[&[&str]] = &[
        &["keep-alive, X-Auth-Workspace-Id, X-Tenant-Id"],
        &["X-Auth-Role"],
        &["x-auth-user-id, x-auth-org-id"],
        &["X-AUTH-PERMISSIONS,X-AUTH-KEY-ID,X-AUTH-KEY-KIND"],
        &["x-auth-retention-tier"],
        &["X_Auth_Role, X_Tenant_Id"],
        &["close, x-tenant-id, x-forwarded-for"],
        // Two Connection lines, each naming identity headers.
        &["X-Auth-Workspace-Id", "X-Auth-Role, x-auth-user-id"],
    ];
    for connection in cases {
        let mut headers = vec![
            ("x-api-key", key),
            ("X-Auth-Role", "WORKSPACE_ADMIN"),
            ("X-Auth-Workspace-Id", workspace_b.as_str()),
        ];
        headers.extend(connection.iter().map(|value| ("Connection", *value)));
        let before = fx.gw.upstream.count();
        let response = fx.gw.get("/api/v1/runs/1", &headers).await;
        assert_eq!(response.status, 200, "{connection:?}: {}", response.text());
        assert_eq!(fx.gw.upstream.count(), before + 1);
        fx.assert_viewer_identity();
        let seen = fx.gw.upstream.last();
        assert_eq!(seen.value("connection"), None, "{connection:?}");
    }
}

#[tokio::test]
async fn connection_named_headers_do_not_reach_upstream() {
    let gw = TestGateway::start().await;
    let response = gw
        .get(
            "/api/v1/info",
            &[
                ("Connection", "X-Private, x-other"),
                ("X-Private", "hop"),
                ("X-Other", "hop"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"),
                ("Upgrade", "websocket"),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = gw.upstream.last();
    for name in [
        "x-private",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert_eq!(seen.value(name), None, "{name} reached the upstream");
    }
}

// === 7. Spoofed identity ===

/// The identity header names the gateway injects, in canonical spelling.
const IDENTITY_NAMES: &[&str] = &[
    "X-Auth-User-Id",
    "X-Auth-Service-Account-Id",
    "X-Auth-Org-Id",
    "X-Auth-Workspace-Id",
    "X-Auth-Role",
    "X-Auth-Permissions",
    "X-Auth-Key-Id",
    "X-Auth-Key-Kind",
    "X-Auth-Retention-Tier",
];

/// Spellings a client may use for one header name: letter case and `_`
/// for `-`.
fn spellings(name: &str) -> Vec<String> {
    let underscored = name.replace('-', "_");
    vec![
        name.to_string(),
        name.to_ascii_lowercase(),
        name.to_ascii_uppercase(),
        underscored.clone(),
        underscored.to_ascii_lowercase(),
        underscored.to_ascii_uppercase(),
        // Mixed separators, as in `x-auth_role`.
        name.to_ascii_lowercase().replacen('-', "_", 2),
    ]
}

#[tokio::test]
async fn spoofed_identity_is_replaced_in_every_spelling() {
    let fx = Fixture::start().await;
    let key = fx.viewer.expose();
    let mut headers: Vec<(String, String)> = vec![("x-api-key".into(), key.into())];
    for name in IDENTITY_NAMES {
        for spelling in spellings(name) {
            headers.push((spelling, "spoofed".into()));
        }
    }
    // The tenant header selects the workspace, so only its underscore
    // spellings can carry a foreign value here; the next test covers the rest.
    for spelling in ["X_Tenant_Id", "x_tenant_id", "X_TENANT_ID", "x-tenant_id"] {
        headers.push((spelling.into(), fx.workspace_b.to_string()));
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let response = fx.gw.get("/api/v1/runs/1", &headers).await;
    assert_eq!(response.status, 200, "{}", response.text());

    fx.assert_viewer_identity();
    let seen = fx.gw.upstream.last();
    let workspace_b = fx.workspace_b.to_string();
    for (name, value) in seen.headers.iter() {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!name.as_str().contains('_'), "{name} reached the upstream");
        assert!(
            !value.contains("spoofed"),
            "{name}: {value} reached the upstream"
        );
        assert!(
            !value.contains(&workspace_b),
            "{name}: {value} names workspace B"
        );
    }
}

#[tokio::test]
async fn spoofed_identity_is_removed_on_public_route() {
    let gw = TestGateway::start().await;
    let mut headers: Vec<(String, String)> = Vec::new();
    for name in IDENTITY_NAMES.iter().chain(&["X-Tenant-Id"]) {
        for spelling in spellings(name) {
            headers.push((spelling, "spoofed".into()));
        }
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let response = gw.get("/api/v1/info", &headers).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = gw.upstream.last();
    for (name, value) in seen.headers.iter() {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains("spoofed"),
            "{name} reached a public route"
        );
    }
}

#[tokio::test]
async fn service_key_gets_no_spoofed_user_id() {
    let gw = TestGateway::start().await;
    let account = gw
        .store
        .create_service_account(gw.org, "ingest", ORGANIZATION_USER)
        .expect("service account");
    gw.store
        .add_service_account_workspace(account, gw.workspace, WORKSPACE_VIEWER)
        .expect("service account workspace");
    let key = gw.key(KeyKind::Service, |k| k.service_account_id = Some(account));
    let response = gw
        .get(
            "/api/v1/runs/1",
            &[
                ("x-api-key", key.expose()),
                ("X-Auth-User-Id", "someone"),
                ("x_auth_user_id", "someone"),
                ("X-Auth-Service-Account-Id", "robot"),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = gw.upstream.last();
    assert_eq!(seen.value("x-auth-user-id"), None);
    assert_eq!(
        seen.values("x-auth-service-account-id"),
        vec![account.to_string()]
    );
}

/// Header lines, and the status and error code that they must get.
type HeaderCase<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn tenant_header_cannot_reach_another_workspace() {
    let fx = Fixture::start().await;
    let viewer = fx.viewer.expose();
    let workspace_a = fx.gw.workspace.to_string();
    let workspace_b = fx.workspace_b.to_string();
    let both = format!("{workspace_a}, {workspace_b}");
    let cases: Vec<HeaderCase<'_>> = vec![
        (
            vec![("x-api-key", viewer), ("X-Tenant-Id", &workspace_b)],
            403,
            "workspace_forbidden",
        ),
        (
            vec![("x-api-key", viewer), ("X-TENANT-ID", &workspace_b)],
            403,
            "workspace_forbidden",
        ),
        (
            vec![("x-api-key", viewer), ("X-Tenant-Id", &both)],
            400,
            "invalid_tenant_id",
        ),
        (
            vec![
                ("x-api-key", viewer),
                ("X-Tenant-Id", &workspace_a),
                ("x-tenant-id", &workspace_b),
            ],
            400,
            "bad_request",
        ),
        (
            vec![
                ("x-api-key", fx.viewer_b.expose()),
                ("X-Tenant-Id", &workspace_a),
            ],
            403,
            "workspace_forbidden",
        ),
    ];
    for (headers, status, code) in cases {
        let response = fx.gw.get("/api/v1/runs/1", &headers).await;
        assert_eq!(response.status, status, "{headers:?}: {}", response.text());
        assert_eq!(response.error_code(), code, "{headers:?}");
    }
    assert_eq!(fx.gw.upstream.count(), 0);

    // An underscore spelling does not select a workspace and is removed.
    let response = fx
        .gw
        .get(
            "/api/v1/runs/1",
            &[
                ("x-api-key", viewer),
                ("X-Tenant-Id", &workspace_a),
                ("X_Tenant_Id", &workspace_b),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    fx.assert_viewer_identity();
}

#[tokio::test]
async fn header_name_with_whitespace_is_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    for line in [
        "X-Auth-Role : WORKSPACE_ADMIN",
        "X-Auth-Role\t: WORKSPACE_ADMIN",
        " X-Auth-Role: WORKSPACE_ADMIN",
        "x-api-key : lsv2_pt_other",
    ] {
        let request = format!(
            "GET /api/v1/runs/1 HTTP/1.1\r\nHost: gw\r\nx-api-key: {key}\r\n{line}\r\nConnection: close\r\n\r\n"
        );
        let exchange = exchange(gw.addr, request.as_bytes()).await;
        assert_eq!(exchange.response().status, 400, "{line:?}");
    }
    assert_eq!(gw.upstream.count(), 0);
}

// === 8. Two credentials ===

#[tokio::test]
async fn two_credentials_are_rejected_in_every_shape() {
    let fx = Fixture::start().await;
    let admin = fx.admin.expose();
    let viewer = fx.viewer.expose();
    let bearer_admin = format!("Bearer {admin}");
    let bearer_viewer = format!("Bearer {viewer}");
    let list = format!("{viewer}, {admin}");
    let list_tight = format!("{viewer},{admin}");
    let list_trailing = format!("{admin},");
    let bearer_list = format!("Bearer {viewer}, Bearer {admin}");
    let bearer_list_tight = format!("Bearer {viewer},{admin}");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("x-api-key", viewer), ("x-api-key", admin)],
        vec![("x-api-key", admin), ("x-api-key", viewer)],
        vec![("x-api-key", admin), ("x-api-key", admin)],
        vec![("X-API-KEY", viewer), ("x-api-key", admin)],
        vec![("x-api-key", &list)],
        vec![("x-api-key", &list_tight)],
        vec![("x-api-key", &list_trailing)],
        vec![
            ("Authorization", &bearer_viewer),
            ("Authorization", &bearer_admin),
        ],
        vec![
            ("Authorization", &bearer_admin),
            ("authorization", &bearer_admin),
        ],
        vec![("Authorization", &bearer_list)],
        vec![("Authorization", &bearer_list_tight)],
        vec![("x-api-key", viewer), ("Authorization", &bearer_admin)],
        vec![("Authorization", &bearer_viewer), ("x-api-key", admin)],
        vec![
            ("x-api-key", admin),
            ("Authorization", "Basic dXNlcjpwYXNz"),
        ],
        vec![("x-api-key", admin), ("Authorization", "Bearer")],
        vec![("x-api-key", ""), ("Authorization", &bearer_admin)],
        vec![
            ("x-api-key", "lsv2_pt_not-a-key"),
            ("Authorization", &bearer_admin),
        ],
        // Underscore spellings that some upstream servers read as x-api-key.
        vec![("x-api-key", viewer), ("x_api_key", admin)],
        vec![("x_api_key", admin), ("x-api-key", viewer)],
        vec![("Authorization", &bearer_viewer), ("X_API_KEY", admin)],
        vec![("x-api-key", viewer), ("x-api_key", admin)],
    ];
    for headers in cases {
        let response = fx.gw.get("/api/v1/runs/1", &headers).await;
        assert_eq!(response.status, 400, "{headers:?}: {}", response.text());
        assert_eq!(response.error_code(), "multiple_credentials", "{headers:?}");
    }
    assert_eq!(fx.gw.upstream.count(), 0);

    // One key sent in both headers is one credential.
    let response = fx
        .gw
        .get(
            "/api/v1/runs/1",
            &[("x-api-key", viewer), ("Authorization", &bearer_viewer)],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    fx.assert_viewer_identity();
}

#[tokio::test]
async fn credential_copies_never_reach_upstream() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    // A public route reads no credential but must not pass one on.
    let response = gw
        .get(
            "/api/v1/info",
            &[
                ("x_api_key", key),
                ("X-Api-Key", key),
                ("Authorization", "Bearer x"),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = gw.upstream.last();
    for name in ["x-api-key", "x_api_key", "authorization"] {
        assert_eq!(seen.value(name), None, "{name} reached the upstream");
    }

    // An underscore spelling alone is not read as a credential.
    let response = gw.get("/api/v1/runs/1", &[("x_api_key", key)]).await;
    assert_eq!(response.status, 401, "{}", response.text());
    assert_eq!(response.error_code(), "missing_api_key");
    assert_eq!(gw.upstream.count(), 1);
}

// === 9. Request smuggling ===

/// Builds a `POST /api/v1/runs` head with the admin key and `framing` as
/// its framing header lines, followed by `body`.
fn post_with_framing(key: &str, version: &str, framing: &str, body: &str) -> Vec<u8> {
    format!("POST /api/v1/runs {version}\r\nHost: gw\r\nx-api-key: {key}\r\n{framing}\r\n{body}")
        .into_bytes()
}

/// Checks that `request` got one 400, that the gateway closed the
/// connection, and that nothing reached the upstream. `code` is `None`
/// where hyper rejects the head itself.
async fn assert_smuggling_rejected(gw: &TestGateway, request: &[u8], code: Option<&str>) {
    let request_text = String::from_utf8_lossy(request).into_owned();
    let exchange = exchange(gw.addr, request).await;
    let response = exchange.response();
    assert_eq!(
        response.status,
        400,
        "{request_text:?}: {}",
        exchange.text()
    );
    if let Some(code) = code {
        assert_eq!(response.error_code(), code, "{request_text:?}");
        assert_eq!(
            response.header("connection"),
            Some("close"),
            "{request_text:?}"
        );
    }
    assert!(
        exchange.closed,
        "the connection stayed open after {request_text:?}"
    );
    assert_eq!(
        exchange.response_count(),
        1,
        "{request_text:?}: {}",
        exchange.text()
    );
    assert_eq!(
        gw.upstream.count(),
        0,
        "{request_text:?} reached the upstream"
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let chunked_body = format!("0\r\n\r\n{SMUGGLED}");
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "content-length: 5\r\ntransfer-encoding: chunked\r\n",
        "CONTENT-LENGTH: 5\r\nTRANSFER-ENCODING: CHUNKED\r\n",
        "Transfer-encoding: Chunked\r\nContent-length: 5\r\n",
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
        "Content-Length: 48\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let request = post_with_framing(key, "HTTP/1.1", framing, &chunked_body);
        assert_smuggling_rejected(&gw, &request, Some("ambiguous_framing")).await;
    }
}

#[tokio::test]
async fn transfer_encoding_other_than_chunked_is_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let body = format!("0\r\n\r\n{SMUGGLED}");
    // hyper rejects a transfer coding list that does not end in chunked.
    for framing in [
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding:\x0bchunked\r\n",
    ] {
        let request = post_with_framing(key, "HTTP/1.1", framing, &body);
        assert_smuggling_rejected(&gw, &request, None).await;
    }
    // hyper accepts these; the gateway rejects them.
    for framing in [
        "Transfer-Encoding: identity, chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: ,chunked\r\n",
    ] {
        let request = post_with_framing(key, "HTTP/1.1", framing, &body);
        assert_smuggling_rejected(&gw, &request, Some("ambiguous_framing")).await;
    }
}

#[tokio::test]
async fn malformed_content_length_is_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let body = format!("hello{SMUGGLED}");
    // hyper rejects these while parsing the head.
    for framing in [
        "Content-Length: +5\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: 5,5\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 5.0\r\n",
        "Content-Length: 1e1\r\n",
        "Content-Length:\r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 6\r\nContent-Length: 5\r\n",
        "Content-Length : 5\r\n",
    ] {
        let request = post_with_framing(key, "HTTP/1.1", framing, &body);
        assert_smuggling_rejected(&gw, &request, None).await;
    }
    // hyper accepts a repeated equal value; the gateway rejects it.
    let request = post_with_framing(
        key,
        "HTTP/1.1",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        &body,
    );
    assert_smuggling_rejected(&gw, &request, Some("ambiguous_framing")).await;
}

#[tokio::test]
async fn chunked_on_http_1_0_is_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let body = format!("0\r\n\r\n{SMUGGLED}");
    for framing in [
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let request = post_with_framing(key, "HTTP/1.0", framing, &body);
        assert_smuggling_rejected(&gw, &request, None).await;
    }
}

#[tokio::test]
async fn obsolete_line_folding_is_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let body = format!("0\r\n\r\n{SMUGGLED}");
    for framing in [
        "Transfer-Encoding:\r\n chunked\r\n",
        "Transfer-Encoding: identity\r\n chunked\r\n",
        "Content-Length: 5\r\n\t6\r\n",
        "X-Note: a\r\n b\r\n",
        "X-Auth-Role: viewer\r\n WORKSPACE_ADMIN\r\n",
    ] {
        let request = post_with_framing(key, "HTTP/1.1", framing, &body);
        assert_smuggling_rejected(&gw, &request, None).await;
    }
}

#[tokio::test]
async fn smuggling_after_a_valid_request_is_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let mut bytes = post_with_framing(
        key,
        "HTTP/1.1",
        "Transfer-Encoding: chunked\r\n",
        "2\r\n{}\r\n0\r\n\r\n",
    );
    bytes.extend(post_with_framing(
        key,
        "HTTP/1.1",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
    ));

    let exchange = exchange(gw.addr, &bytes).await;
    assert!(exchange.closed, "{}", exchange.text());
    assert_eq!(exchange.response_count(), 2, "{}", exchange.text());
    assert!(
        exchange.text().starts_with("HTTP/1.1 200"),
        "{}",
        exchange.text()
    );
    assert!(
        exchange.text().contains("HTTP/1.1 400"),
        "{}",
        exchange.text()
    );
    assert!(
        exchange.text().contains("ambiguous_framing"),
        "{}",
        exchange.text()
    );
    assert_eq!(gw.upstream.count(), 1);
    assert_eq!(gw.upstream.last().target, "/api/v1/runs");
}

#[tokio::test]
async fn well_framed_requests_share_a_connection() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let mut bytes = Vec::new();
    bytes.extend(post_with_framing(
        key,
        "HTTP/1.1",
        "Content-Length: 2\r\n",
        "{}",
    ));
    bytes.extend(post_with_framing(
        key,
        "HTTP/1.1",
        "Transfer-Encoding: chunked\r\n",
        "2\r\n{}\r\n0\r\n\r\n",
    ));
    bytes.extend(post_with_framing(
        key,
        "HTTP/1.1",
        "Transfer-Encoding: Chunked\r\n",
        "1;ext=\"a\"\r\n{\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n",
    ));
    bytes.extend(post_with_framing(
        key,
        "HTTP/1.1",
        "Content-Length: 0\r\n",
        "",
    ));
    bytes.extend(get_request("/api/v1/runs/5", &[("x-api-key", key)]));

    let exchange = exchange(gw.addr, &bytes).await;
    assert!(exchange.closed, "{}", exchange.text());
    assert_eq!(exchange.response_count(), 5, "{}", exchange.text());
    assert_eq!(
        exchange.text().matches("HTTP/1.1 200").count(),
        5,
        "{}",
        exchange.text()
    );

    let bodies: Vec<u64> = gw
        .upstream
        .requests()
        .iter()
        .map(|r| r.body_bytes)
        .collect();
    assert_eq!(bodies, vec![2, 2, 2, 0, 0]);
    assert_eq!(gw.upstream.last().target, "/api/v1/runs/5");
}

#[tokio::test]
async fn absolute_form_must_match_host() {
    let fx = Fixture::start().await;
    let admin = fx.admin.expose();
    let addr = fx.gw.addr;
    for (target, host) in [
        (
            "http://evil.example/api/v1/runs/1".to_string(),
            addr.to_string(),
        ),
        (
            format!("http://{addr}/api/v1/runs/1"),
            "evil.example".to_string(),
        ),
        (
            format!("http://{addr}/api/v1/runs/1"),
            format!("{addr}.evil"),
        ),
    ] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {admin}\r\nConnection: close\r\n\r\n"
        );
        let exchange = exchange(addr, request.as_bytes()).await;
        let response = exchange.response();
        assert_eq!(response.status, 400, "{target} with Host {host}");
        assert_eq!(response.error_code(), "ambiguous_host", "{target}");
    }

    // Two Host headers are as ambiguous as a mismatch.
    let request = format!(
        "GET /api/v1/runs/1 HTTP/1.1\r\nHost: {addr}\r\nHost: evil.example\r\nx-api-key: {admin}\r\nConnection: close\r\n\r\n"
    );
    let response = exchange(addr, request.as_bytes()).await.response();
    assert_eq!(response.status, 400);
    assert_eq!(response.error_code(), "ambiguous_host");
    assert_eq!(fx.gw.upstream.count(), 0);

    // A matching absolute form is forwarded in origin form, canonicalized.
    let request = format!(
        "GET http://{addr}/api/v1/runs/x/../1 HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {admin}\r\nConnection: close\r\n\r\n"
    );
    let response = exchange(addr, request.as_bytes()).await.response();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(fx.gw.upstream.last().target, "/api/v1/runs/1");

    // Dot segments in an absolute form are judged like any other.
    let request = format!(
        "GET http://{addr}/api/v1/info/../admin/users HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {}\r\nConnection: close\r\n\r\n",
        fx.viewer.expose()
    );
    let response = exchange(addr, request.as_bytes()).await.response();
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(fx.gw.upstream.count(), 1);
}

/// Sends one HTTP/2 request with prior knowledge, with `host` as an extra
/// `host` header next to the `:authority` taken from `uri`.
async fn http2_get(addr: SocketAddr, uri: &str, host: Option<&str>, key: &str) -> (u16, Bytes) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut request = http::Request::get(uri).header("x-api-key", key);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let request = request.body(Empty::<Bytes>::new()).expect("request");
    let response = sender.send_request(request).await.expect("HTTP/2 response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

#[tokio::test]
async fn http2_host_must_match_authority() {
    let fx = Fixture::start().await;
    let addr = fx.gw.addr;
    let admin = fx.admin.expose();
    let uri = format!("http://{addr}/api/v1/runs/1");

    let (status, body) = http2_get(addr, &uri, Some("evil.example"), admin).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("ambiguous_host"));
    assert_eq!(fx.gw.upstream.count(), 0);

    let (status, _) = http2_get(addr, &uri, Some(&addr.to_string()), admin).await;
    assert_eq!(status, 200);
    let (status, _) = http2_get(addr, &uri, None, admin).await;
    assert_eq!(status, 200);
    assert_eq!(fx.gw.upstream.last().target, "/api/v1/runs/1");

    // The path of an HTTP/2 request is canonicalized like any other.
    let uri = format!("http://{addr}/api/v1/info/%2e%2e/admin/users");
    let (status, _) = http2_get(addr, &uri, None, fx.viewer.expose()).await;
    assert_eq!(status, 403);
    assert_eq!(fx.gw.upstream.count(), 2);
}

// === 10. Fail closed ===

#[tokio::test]
async fn failing_store_gets_503_never_200() {
    let gw = TestGateway::start().await;
    let cold = gw.key(KeyKind::Personal, |k| k.user_id = Some(gw.admin));
    let unknown = SecretKey::generate(KeyKind::Personal);
    let service_shaped = SecretKey::generate(KeyKind::Service);
    take_key_table_offline(&gw);

    let bearer = format!("Bearer {}", cold.expose());
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("x-api-key", unknown.expose())],
        vec![("x-api-key", cold.expose())],
        vec![("Authorization", &bearer)],
        vec![("x-api-key", service_shaped.expose())],
    ];
    for headers in &cases {
        let response = gw.get("/api/v1/runs/1", headers).await;
        assert_eq!(response.status, 503, "{headers:?}: {}", response.text());
        assert_eq!(response.error_code(), "store_unavailable");
    }
    assert_eq!(gw.upstream.count(), 0);

    // Failed lookups are not cached: once the store is back, the cold key
    // works and the unknown key is unknown.
    bring_key_table_back(&gw);
    let response = gw
        .get("/api/v1/runs/1", &[("x-api-key", cold.expose())])
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let response = gw
        .get("/api/v1/runs/1", &[("x-api-key", unknown.expose())])
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.error_code(), "invalid_api_key");
}

#[tokio::test]
async fn corrupt_store_record_gets_503() {
    let gw = TestGateway::start().await;
    let bad_kind = gw.key(KeyKind::Personal, |k| k.user_id = Some(gw.admin));
    let db = open_db(&gw);
    // Another writer (an older build, a manual fix) may not share this
    // schema's CHECK constraints.
    db.execute_batch("PRAGMA ignore_check_constraints = ON")
        .expect("disable CHECK constraints");
    db.execute(
        "UPDATE api_keys SET kind = 'bogus' WHERE id = ?1",
        [key_id(&gw, &bad_kind).to_string()],
    )
    .expect("corrupt the key kind");
    let response = gw
        .get("/api/v1/runs/1", &[("x-api-key", bad_kind.expose())])
        .await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.error_code(), "store_unavailable");

    let bad_workspace = gw.key(KeyKind::Personal, |k| k.user_id = Some(gw.admin));
    db.execute("UPDATE workspaces SET retention_tier = 'forever'", [])
        .expect("corrupt the retention tier");
    let response = gw
        .get("/api/v1/runs/1", &[("x-api-key", bad_workspace.expose())])
        .await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.error_code(), "store_unavailable");
    assert_eq!(gw.upstream.count(), 0);
}

/// A store that fails every call, as a database server that is down would.
struct UnreachableStore;

#[async_trait]
impl Store for UnreachableStore {
    async fn resolve_key(
        &self,
        _hash: KeyHash,
    ) -> Result<Option<(KeyRecord, PrincipalRecord)>, StoreError> {
        Err(StoreError::Invalid("connection refused".into()))
    }

    async fn record_key_use(&self, _uses: Vec<(Uuid, i64)>) -> Result<(), StoreError> {
        Err(StoreError::Invalid("connection refused".into()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Invalid("connection refused".into()))
    }
}

#[tokio::test]
async fn unreachable_store_gets_503() {
    let gw = TestGateway::start().await;
    let instance = Instance::start(&gw, "", Arc::new(UnreachableStore)).await;
    for kind in [KeyKind::Personal, KeyKind::Service, KeyKind::Legacy] {
        let key = SecretKey::generate(kind);
        let response = common::send(
            instance.addr,
            "GET",
            "/api/v1/runs/1",
            &[("x-api-key", key.expose())],
            b"",
        )
        .await;
        assert_eq!(response.status, 503, "{kind}: {}", response.text());
        assert_eq!(response.error_code(), "store_unavailable");
    }
    assert_eq!(gw.upstream.count(), 0);

    // Public routes need no lookup, so they still work.
    let response = common::send(instance.addr, "GET", "/api/v1/info", &[], b"").await;
    assert_eq!(response.status, 200);
}

/// Sends one request per header line in `lines` and checks its status and code.
async fn send_malformed(addr: SocketAddr, lines: &[(Vec<u8>, u16, &str)], store_down: bool) {
    for (line, status, code) in lines {
        let mut request =
            b"GET /api/v1/runs/1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n".to_vec();
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n\r\n");
        let response = exchange(addr, &request).await.response();
        let request_text = String::from_utf8_lossy(line).into_owned();
        assert_eq!(
            response.status, *status,
            "{request_text:?}, store down: {store_down}"
        );
        assert_eq!(
            response.error_code(),
            *code,
            "{request_text:?}, store down: {store_down}"
        );
    }
}

#[tokio::test]
async fn malformed_header_bytes_never_pass() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose().as_bytes().to_vec();
    let lines: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"x-api-key: \xff\xfe".to_vec(), 401, "invalid_api_key"),
        (
            b"x-api-key: lsv2_pt_\xff\xfe".to_vec(),
            401,
            "invalid_api_key",
        ),
        (
            [&b"x-api-key: "[..], &key, b"\xff"].concat(),
            401,
            "invalid_api_key",
        ),
        (
            [&b"x-api-key: \xff"[..], &key].concat(),
            401,
            "invalid_api_key",
        ),
        (
            b"Authorization: Bearer \xff\xfe".to_vec(),
            401,
            "invalid_api_key",
        ),
        (
            [&b"Authorization: \xff\xfe "[..], &key].concat(),
            401,
            "invalid_api_key",
        ),
        (
            [&b"x-api-key: "[..], &key, b"\r\nAuthorization: Bearer \xff"].concat(),
            400,
            "multiple_credentials",
        ),
        (
            [&b"x-api-key: "[..], &key, b"\r\nX-Tenant-Id: \xff\xfe"].concat(),
            400,
            "invalid_tenant_id",
        ),
    ];
    send_malformed(gw.addr, &lines, false).await;
    // With the store failing, the malformed values still fail without a lookup.
    take_key_table_offline(&gw);
    send_malformed(gw.addr, &lines, true).await;
    assert_eq!(gw.upstream.count(), 0);
}

// === 11. Revocation ===

/// A second gateway process on the same store file and upstream.
struct Instance {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Instance {
    async fn start(gw: &TestGateway, extra: &str, store: Arc<dyn Store>) -> Self {
        let unreachable = common::closed_port().await;
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
{routes}
{extra}
"#,
            db = gw.db_path.display(),
            up = gw.upstream.addr,
            routes = common::ROUTES,
        );
        let config = Config::from_toml(&text).expect("instance config is valid");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = Server::from_listener(listener, config, store);
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            shutdown: Some(shutdown),
        }
    }

    /// Another gateway with its own cache and its own connection to `gw`'s
    /// store file.
    async fn replica(gw: &TestGateway, extra: &str) -> Self {
        let store = SqliteStore::open(&gw.db_path).expect("open the store file");
        Self::start(gw, extra, Arc::new(store)).await
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Polls `GET /api/v1/runs/1` with `key` on every address in `addrs` until
/// each returns `status` with `code`, then checks that the status stays.
/// Panics if that takes longer than `bound`.
async fn poll_until(
    addrs: &[SocketAddr],
    key: &str,
    status: u16,
    code: Option<&str>,
    bound: Duration,
) {
    let started = Instant::now();
    for &addr in addrs {
        loop {
            let response =
                common::send(addr, "GET", "/api/v1/runs/1", &[("x-api-key", key)], b"").await;
            let matched =
                response.status == status && code.is_none_or(|code| response.error_code() == code);
            if matched {
                break;
            }
            assert!(
                started.elapsed() < bound,
                "{addr} still answers {} after {:?}: {}",
                response.status,
                started.elapsed(),
                response.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for &addr in addrs {
        for _ in 0..3 {
            let response =
                common::send(addr, "GET", "/api/v1/runs/1", &[("x-api-key", key)], b"").await;
            assert_eq!(response.status, status, "{addr} changed its status again");
        }
    }
}

#[tokio::test]
async fn revoked_key_fails_on_every_instance() {
    let fx = Fixture::from_gateway(TestGateway::start_with(SHORT_CACHE, "enterprise").await);
    let replica = Instance::replica(&fx.gw, SHORT_CACHE).await;
    let addrs = [fx.gw.addr, replica.addr];
    let key = fx.viewer.expose();

    // Both instances now hold the key as valid in their caches.
    poll_until(&addrs, key, 200, None, Duration::from_secs(1)).await;

    assert!(fx.gw.store.revoke_key(key_id(&fx.gw, &fx.viewer)).unwrap());
    let bound = Duration::from_secs(1) + CACHE_SLACK;
    poll_until(&addrs, key, 401, Some("api_key_revoked"), bound).await;
}

#[tokio::test]
async fn key_changes_reach_every_instance_within_ttl() {
    let fx = Fixture::from_gateway(TestGateway::start_with(SHORT_CACHE, "enterprise").await);
    let replica = Instance::replica(&fx.gw, SHORT_CACHE).await;
    let addrs = [fx.gw.addr, replica.addr];
    let bound = Duration::from_secs(1) + CACHE_SLACK;

    let expiring = fx
        .gw
        .key(KeyKind::Personal, |k| k.user_id = Some(fx.viewer_user));
    let (leaver, leaver_key) = fx
        .gw
        .member("leaver@acme.test", fx.gw.workspace, WORKSPACE_VIEWER);
    for key in [expiring.expose(), leaver_key.expose()] {
        poll_until(&addrs, key, 200, None, Duration::from_secs(1)).await;
    }

    let past = portcullis::store::unix_now() - 1;
    assert!(fx
        .gw
        .store
        .set_key_expiry(key_id(&fx.gw, &expiring), Some(past))
        .unwrap());
    assert!(fx
        .gw
        .store
        .remove_workspace_member(fx.gw.workspace, leaver)
        .unwrap());
    poll_until(
        &addrs,
        expiring.expose(),
        401,
        Some("api_key_expired"),
        bound,
    )
    .await;
    poll_until(
        &addrs,
        leaver_key.expose(),
        403,
        Some("no_workspace_access"),
        bound,
    )
    .await;
}

#[tokio::test]
async fn unknown_key_works_soon_after_creation() {
    let gw = TestGateway::start_with(SHORT_CACHE, "enterprise").await;
    let replica = Instance::replica(&gw, SHORT_CACHE).await;
    let addrs = [gw.addr, replica.addr];
    let secret = SecretKey::generate(KeyKind::Personal);

    // Both instances now hold the key as unknown.
    poll_until(
        &addrs,
        secret.expose(),
        401,
        Some("invalid_api_key"),
        Duration::from_secs(1),
    )
    .await;

    let new = NewKey {
        kind: KeyKind::Personal,
        organization_id: gw.org,
        user_id: Some(gw.admin),
        service_account_id: None,
        workspace_id: None,
        description: "created after a failed try".into(),
        expires_at: None,
    };
    gw.store
        .insert_key(&new, &secret.hash().0, &secret.display_prefix())
        .expect("insert the key");
    let bound = Duration::from_secs(1) + CACHE_SLACK;
    poll_until(&addrs, secret.expose(), 200, None, bound).await;
}

// === 12. Oversized headers ===

#[tokio::test]
async fn oversized_head_gets_431_before_key_lookup() {
    let gw = TestGateway::start().await;
    let key = SecretKey::generate(KeyKind::Personal);
    let key = key.expose();
    // Any key lookup now returns 503, so a 431 shows that none was made.
    take_key_table_offline(&gw);

    let big = "a".repeat(64 * 1024);
    let many: Vec<(String, String)> = (0..200)
        .map(|i| (format!("X-Filler-{i}"), "b".repeat(400)))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let counted: Vec<(String, String)> = (0..101)
        .map(|i| (format!("X-Count-{i}"), "c".into()))
        .collect();
    let counted: Vec<(&str, &str)> = counted
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();

    let mut requests = vec![
        (
            "one 64 KiB header",
            get_request("/api/v1/runs/1", &[("x-api-key", key), ("X-Padding", &big)]),
        ),
        (
            "a 64 KiB key",
            get_request("/api/v1/runs/1", &[("x-api-key", &big)]),
        ),
        (
            "a 64 KiB identity header",
            get_request(
                "/api/v1/runs/1",
                &[("x-api-key", key), ("X-Auth-Role", &big)],
            ),
        ),
        (
            "80 KiB in 200 headers",
            get_request(
                "/api/v1/runs/1",
                &[&[("x-api-key", key)][..], &many].concat(),
            ),
        ),
        (
            "101 headers",
            get_request(
                "/api/v1/runs/1",
                &[&[("x-api-key", key)][..], &counted].concat(),
            ),
        ),
    ];
    let long_target = format!("/api/v1/runs/{big}");
    requests.push((
        "a 64 KiB request target",
        get_request(&long_target, &[("x-api-key", key)]),
    ));

    for (name, request) in requests {
        let exchange = exchange(gw.addr, &request).await;
        let response = exchange.response();
        assert_eq!(response.status, 431, "{name}: {}", exchange.text());
        assert!(exchange.closed, "{name}: the connection stayed open");
    }
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test]
async fn identity_headers_are_never_truncated() {
    let fx = Fixture::start().await;
    let padding = "p".repeat(48 * 1024);
    let response = fx
        .gw
        .get(
            "/api/v1/runs/1",
            &[("x-api-key", fx.viewer.expose()), ("X-Padding", &padding)],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    fx.assert_viewer_identity();
    let seen = fx.gw.upstream.last();
    assert_eq!(
        seen.value("x-padding").map(|v| v.len()),
        Some(padding.len())
    );

    // The Organization Admin's permission list, the longest, arrives whole.
    let workspace = fx.gw.workspace.to_string();
    let response = fx
        .gw
        .get(
            "/api/v1/runs/1",
            &[
                ("x-api-key", fx.gw.admin_key.expose()),
                ("X-Tenant-Id", &workspace),
                ("X-Padding", &padding),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = fx.gw.upstream.last();
    let expected = joined_permissions(
        permissions::workspace_admin(),
        permissions::organization_admin(),
    );
    assert_eq!(seen.values("x-auth-permissions"), vec![expected]);
    assert_eq!(seen.values("x-auth-workspace-id"), vec![workspace]);
}
