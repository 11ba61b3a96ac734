//! The request path end to end: a real gateway on a real socket in front of
//! a recording upstream, with a real SQLite store.

mod common;

use common::{send, send_raw, TestGateway};
use portcullis::authz::{ORGANIZATION_USER, WORKSPACE_ADMIN, WORKSPACE_EDITOR, WORKSPACE_VIEWER};
use portcullis::credential::KeyKind;
use portcullis::store::unix_now;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IDENTITY_HEADERS: &[&str] = &[
    "x-auth-user-id",
    "x-auth-org-id",
    "x-auth-workspace-id",
    "x-tenant-id",
    "x-auth-role",
    "x-auth-permissions",
    "x-auth-key-id",
    "x-auth-key-kind",
];

#[tokio::test]
async fn personal_token_is_accepted_with_identity() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let response = gw.get("/api/v1/runs/1", &[("x-api-key", key)]).await;
    assert_eq!(response.status, 200, "{}", response.text());

    let seen = gw.upstream.last();
    assert_eq!(seen.target, "/api/v1/runs/1");
    assert_eq!(seen.value("x-auth-user-id"), Some(gw.admin.to_string()));
    assert_eq!(seen.value("x-auth-org-id"), Some(gw.org.to_string()));
    assert_eq!(
        seen.value("x-auth-workspace-id"),
        Some(gw.workspace.to_string())
    );
    assert_eq!(seen.value("x-tenant-id"), Some(gw.workspace.to_string()));
    assert_eq!(seen.value("x-auth-role").as_deref(), Some(WORKSPACE_ADMIN));
    assert_eq!(seen.value("x-auth-key-kind").as_deref(), Some("pat"));
    assert!(seen.value("x-auth-key-id").is_some());
    let permissions = seen.value("x-auth-permissions").unwrap();
    assert!(permissions.split(',').any(|p| p == "runs:read"));
}

#[tokio::test]
async fn bearer_token_is_accepted() {
    let gw = TestGateway::start().await;
    let bearer = format!("Bearer {}", gw.admin_key.expose());
    let response = gw.get("/api/v1/runs", &[("Authorization", &bearer)]).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn service_key_acts_with_account_role() {
    let gw = TestGateway::start().await;
    let account = gw
        .store
        .create_service_account(gw.org, "ingest", ORGANIZATION_USER)
        .unwrap();
    gw.store
        .add_service_account_workspace(account, gw.workspace, WORKSPACE_EDITOR)
        .unwrap();
    let key = gw.key(KeyKind::Service, |k| k.service_account_id = Some(account));

    let response = gw.get("/api/v1/runs", &[("x-api-key", key.expose())]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = gw.upstream.last();
    assert_eq!(
        seen.value("x-auth-service-account-id"),
        Some(account.to_string())
    );
    assert_eq!(seen.value("x-auth-user-id"), None);
    assert_eq!(seen.value("x-auth-role").as_deref(), Some(WORKSPACE_EDITOR));
    assert_eq!(seen.value("x-auth-key-kind").as_deref(), Some("service"));

    // Editors do not manage the workspace.
    let response = gw
        .get("/api/v1/admin/users", &[("x-api-key", key.expose())])
        .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.error_code(), "forbidden");
}

#[tokio::test]
async fn legacy_key_works_before_sunset_and_is_rejected_after() {
    // A sunset far in the future: the key still works.
    let gw = TestGateway::start_with(
        "[credentials]\nlegacy_sunset = \"2999-01-01\"\n",
        "enterprise",
    )
    .await;
    let key = gw.key(KeyKind::Legacy, |k| k.workspace_id = Some(gw.workspace));
    let response = gw.get("/api/v1/runs", &[("x-api-key", key.expose())]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = gw.upstream.last();
    assert_eq!(seen.value("x-auth-key-kind").as_deref(), Some("legacy"));
    assert_eq!(
        seen.value("x-auth-workspace-id"),
        Some(gw.workspace.to_string())
    );
    // Full create, read, update and delete, but no workspace management.
    let delete = send(
        gw.addr,
        "DELETE",
        "/api/v1/runs/1",
        &[("x-api-key", key.expose())],
        b"",
    )
    .await;
    assert_eq!(delete.status, 200);
    let admin = gw
        .get("/api/v1/admin/users", &[("x-api-key", key.expose())])
        .await;
    assert_eq!(admin.status, 403);

    // The default sunset, 2024-08-15, has passed.
    let gw = TestGateway::start().await;
    let key = gw.key(KeyKind::Legacy, |k| k.workspace_id = Some(gw.workspace));
    let response = gw.get("/api/v1/runs", &[("x-api-key", key.expose())]).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.error_code(), "legacy_api_key_retired");
    let detail = response.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("personal access token"), "{detail}");
    assert!(detail.contains("service key"), "{detail}");
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test]
async fn bad_keys_get_401_with_their_code() {
    let gw = TestGateway::start().await;
    let expired = gw.key(KeyKind::Personal, |k| {
        k.user_id = Some(gw.admin);
        k.expires_at = Some(unix_now() - 1);
    });
    let revoked = gw.key(KeyKind::Personal, |k| k.user_id = Some(gw.admin));
    let revoked_id = gw
        .store
        .list_keys(gw.org)
        .unwrap()
        .into_iter()
        .find(|k| k.display_prefix == revoked.display_prefix())
        .unwrap()
        .id;
    assert!(gw.store.revoke_key(revoked_id).unwrap());
    let unknown = portcullis::credential::SecretKey::generate(KeyKind::Personal);
    let mut mistyped = gw.admin_key.expose().to_string();
    let last = mistyped.pop().unwrap();
    mistyped.push(if last == '0' { '1' } else { '0' });

    let cases = [
        (mistyped.as_str(), "invalid_api_key"),
        ("lsv2_pt_not-a-key", "invalid_api_key"),
        ("sk-something-else", "invalid_api_key"),
        (unknown.expose(), "invalid_api_key"),
        (expired.expose(), "api_key_expired"),
        (revoked.expose(), "api_key_revoked"),
    ];
    for (key, code) in cases {
        let response = gw.get("/api/v1/runs", &[("x-api-key", key)]).await;
        assert_eq!(response.status, 401, "key {code}");
        assert_eq!(response.error_code(), code);
        assert!(
            !response.text().contains(key),
            "the error body repeats the key"
        );
    }
    let missing = gw.get("/api/v1/runs", &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.error_code(), "missing_api_key");
    assert_eq!(
        gw.upstream.count(),
        0,
        "a rejected request reached the upstream"
    );
}

#[tokio::test]
async fn workspace_is_chosen_by_tenant_header() {
    let gw = TestGateway::start().await;
    let second = gw.store.create_workspace(gw.org, "Second").unwrap();
    let third = gw.store.create_workspace(gw.org, "Third").unwrap();
    let (_, key) = gw.member("dev@acme.test", gw.workspace, WORKSPACE_EDITOR);
    let user = gw.store.user_by_email("dev@acme.test").unwrap().unwrap();
    gw.store
        .add_workspace_member(second, user, WORKSPACE_VIEWER)
        .unwrap();
    let key = key.expose();

    // Two reachable workspaces and no header.
    let response = gw.get("/api/v1/runs", &[("x-api-key", key)]).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.error_code(), "org_scoped_key_requires_workspace");

    // The header picks the workspace, and the role there.
    let second_id = second.to_string();
    let response = gw
        .get(
            "/api/v1/runs",
            &[("x-api-key", key), ("X-Tenant-Id", &second_id)],
        )
        .await;
    assert_eq!(response.status, 200);
    let seen = gw.upstream.last();
    assert_eq!(seen.value("x-auth-workspace-id"), Some(second_id.clone()));
    assert_eq!(seen.value("x-auth-role").as_deref(), Some(WORKSPACE_VIEWER));

    // Viewer in the second workspace cannot write there.
    let post = send(
        gw.addr,
        "POST",
        "/api/v1/runs",
        &[("x-api-key", key), ("X-Tenant-Id", &second_id)],
        b"{}",
    )
    .await;
    assert_eq!(post.status, 403);
    assert_eq!(post.error_code(), "forbidden");
    assert!(post.text().contains("runs:create"));

    // A workspace the user is not a member of.
    let response = gw
        .get(
            "/api/v1/runs",
            &[("x-api-key", key), ("X-Tenant-Id", &third.to_string())],
        )
        .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.error_code(), "workspace_forbidden");

    // Not a UUID.
    let response = gw
        .get(
            "/api/v1/runs",
            &[("x-api-key", key), ("X-Tenant-Id", "default")],
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.error_code(), "invalid_tenant_id");
}

#[tokio::test]
async fn single_workspace_needs_no_header() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.member("solo@acme.test", gw.workspace, WORKSPACE_VIEWER);
    let response = gw.get("/api/v1/runs", &[("x-api-key", key.expose())]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        gw.upstream.last().value("x-auth-workspace-id"),
        Some(gw.workspace.to_string())
    );
}

#[tokio::test]
async fn organization_admin_reaches_every_workspace() {
    let gw = TestGateway::start().await;
    let other = gw.store.create_workspace(gw.org, "Other").unwrap();
    let other_id = other.to_string();
    // The admin is a member of the first workspace only.
    let response = gw
        .get(
            "/api/v1/admin/users",
            &[
                ("x-api-key", gw.admin_key.expose()),
                ("X-Tenant-Id", &other_id),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = gw.upstream.last();
    assert_eq!(seen.value("x-auth-workspace-id"), Some(other_id));
    assert_eq!(seen.value("x-auth-role").as_deref(), Some(WORKSPACE_ADMIN));
}

#[tokio::test]
async fn organization_permission_comes_from_organization_role() {
    let gw = TestGateway::start().await;
    let (_, viewer) = gw.member("viewer@acme.test", gw.workspace, WORKSPACE_VIEWER);
    let response = gw
        .get("/api/v1/orgs/current", &[("x-api-key", viewer.expose())])
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn cached_read_does_not_pass_a_write() {
    let gw = TestGateway::start().await;
    let (_, viewer) = gw.member("reader@acme.test", gw.workspace, WORKSPACE_VIEWER);
    let key = viewer.expose();
    assert_eq!(
        gw.get("/api/v1/runs", &[("x-api-key", key)]).await.status,
        200
    );
    let write = send(
        gw.addr,
        "POST",
        "/api/v1/runs",
        &[("x-api-key", key)],
        b"{}",
    )
    .await;
    assert_eq!(write.status, 403);
    assert_eq!(write.error_code(), "forbidden");
    assert_eq!(gw.upstream.count(), 1);
}

#[tokio::test]
async fn unmatched_request_gets_no_route() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    for (method, path) in [
        ("GET", "/api/v1/unknown"),
        ("GET", "/"),
        ("PUT", "/api/v1/runs/1"),
        ("DELETE", "/api/v1/runs"),
        ("GET", "/api/v1/infox"),
    ] {
        let response = send(gw.addr, method, path, &[("x-api-key", key)], b"").await;
        assert_eq!(response.status, 404, "{method} {path}");
        assert_eq!(response.error_code(), "no_route");
    }
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test]
async fn public_route_needs_no_key_and_gets_no_identity() {
    let gw = TestGateway::start().await;
    let response = gw.get("/api/v1/info", &[("X-Auth-Role", "admin")]).await;
    assert_eq!(response.status, 200);
    let seen = gw.upstream.last();
    for name in IDENTITY_HEADERS {
        assert_eq!(seen.value(name), None, "{name} reached a public route");
    }
}

#[tokio::test]
async fn spoofed_identity_headers_are_removed() {
    let gw = TestGateway::start().await;
    let (_, key) = gw.member("spoof@acme.test", gw.workspace, WORKSPACE_VIEWER);
    let response = gw
        .get(
            "/api/v1/runs",
            &[
                ("x-api-key", key.expose()),
                ("X-Auth-Role", "WORKSPACE_ADMIN"),
                ("x-auth-role", "admin"),
                ("X_Auth_Role", "admin"),
                ("x_AUTH_role", "admin"),
                (
                    "X-Auth-Workspace-Id",
                    "00000000-0000-0000-0000-000000000000",
                ),
                (
                    "X_Auth_Workspace_Id",
                    "00000000-0000-0000-0000-000000000000",
                ),
                ("X-Auth-User-Id", "someone-else"),
                ("X-Auth-Service-Account-Id", "robot"),
                ("X-Auth-Permissions", "workspaces:manage"),
                ("X-Auth-Retention-Tier", "extended"),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = gw.upstream.last();
    assert_eq!(
        seen.values("x-auth-role"),
        vec![WORKSPACE_VIEWER.to_string()]
    );
    assert_eq!(
        seen.values("x-auth-workspace-id"),
        vec![gw.workspace.to_string()]
    );
    assert_eq!(
        seen.values("x-auth-retention-tier"),
        vec!["base".to_string()]
    );
    assert_eq!(seen.value("x-auth-service-account-id"), None);
    assert!(!seen
        .value("x-auth-permissions")
        .unwrap()
        .contains("workspaces:manage"));
    for (name, _) in seen.headers.iter() {
        assert!(!name.as_str().contains('_'), "{name} reached the upstream");
    }
}

#[tokio::test]
async fn connection_named_headers_are_removed_but_identity_arrives() {
    let gw = TestGateway::start().await;
    let raw = format!(
        "GET /api/v1/runs HTTP/1.1\r\nHost: gw\r\nx-api-key: {}\r\n\
         Connection: keep-alive, X-Auth-Workspace-Id, X-Tenant-Id, X-Private\r\n\
         X-Private: secret-hop\r\nKeep-Alive: timeout=5\r\n\r\n",
        gw.admin_key.expose()
    );
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let seen = gw.upstream.last();
    assert_eq!(seen.value("x-private"), None);
    assert_eq!(seen.value("keep-alive"), None);
    for name in IDENTITY_HEADERS {
        assert!(seen.value(name).is_some(), "{name} is missing upstream");
    }
    assert_eq!(seen.value("x-tenant-id"), Some(gw.workspace.to_string()));
}

#[tokio::test]
async fn upstream_hop_by_hop_headers_are_removed_from_response() {
    let gw = TestGateway::start().await;
    let response = gw.get("/api/v1/info", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-upstream-private"), None);
}

#[tokio::test]
async fn credentials_are_not_forwarded() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    gw.get("/api/v1/runs", &[("x-api-key", key)]).await;
    let bearer = format!("Bearer {key}");
    gw.get("/api/v1/runs", &[("Authorization", &bearer)]).await;
    let requests = gw.upstream.requests();
    assert_eq!(requests.len(), 2);
    for seen in requests {
        assert_eq!(seen.value("x-api-key"), None);
        assert_eq!(seen.value("authorization"), None);
        for (_, value) in seen.headers.iter() {
            assert!(!String::from_utf8_lossy(value.as_bytes()).contains(&key[8..]));
        }
    }

    // A route may ask for the credential.
    gw.get("/api/v1/passthrough", &[("x-api-key", key)]).await;
    assert_eq!(gw.upstream.last().value("x-api-key").as_deref(), Some(key));
}

#[tokio::test]
async fn forwarded_headers_are_set_for_this_hop() {
    let gw = TestGateway::start().await;
    gw.get(
        "/api/v1/info",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=6.6.6.6;host=evil.example"),
            ("X-Real-IP", "6.6.6.6"),
        ],
    )
    .await;
    let seen = gw.upstream.last();
    assert_eq!(
        seen.value("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.values("x-forwarded-proto"), vec!["http".to_string()]);
    assert_eq!(seen.values("x-forwarded-host"), vec![gw.addr.to_string()]);
    assert_eq!(seen.value("forwarded"), None);
    assert_eq!(seen.value("x-real-ip"), None);
}

#[tokio::test]
async fn strip_prefix_and_query_are_forwarded() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let response = gw
        .get("/svc/items/7?limit=5&q=a%20b", &[("x-api-key", key)])
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(gw.upstream.last().target, "/items/7?limit=5&q=a%20b");
    gw.get("/svc", &[("x-api-key", key)]).await;
    assert_eq!(gw.upstream.last().target, "/");
}

#[tokio::test]
async fn unreachable_upstream_gets_502() {
    let gw = TestGateway::start().await;
    let response = gw.get("/down/x", &[]).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.error_code(), "upstream_unavailable");
}

#[tokio::test]
async fn slow_upstream_gets_504() {
    let gw = TestGateway::start().await;
    let response = gw.get("/slow/x", &[]).await;
    assert_eq!(response.status, 504);
    assert_eq!(response.error_code(), "upstream_timeout");
}

#[tokio::test]
async fn server_sent_events_stream_event_by_event() {
    let gw = TestGateway::start().await;
    let request = format!(
        "GET /api/v1/stream/sse HTTP/1.1\r\nHost: gw\r\nx-api-key: {}\r\nConnection: close\r\n\r\n",
        gw.admin_key.expose()
    );
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();

    // The upstream holds its second event until released, so the first can
    // only arrive here if the gateway streams.
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&received).contains("data: first") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the first event");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&received).contains("data: second"));
    gw.upstream.release_stream();
    stream.read_to_end(&mut received).await.unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("text/event-stream"));
    assert!(text.contains("data: second"));
}

#[tokio::test]
async fn several_credentials_are_rejected() {
    let gw = TestGateway::start().await;
    let key = gw.admin_key.expose();
    let other = gw.key(KeyKind::Personal, |k| k.user_id = Some(gw.admin));
    let other = other.expose();
    let bearer_other = format!("Bearer {other}");
    let bearer_same = format!("Bearer {key}");
    let list = format!("{key}, {other}");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("x-api-key", key), ("x-api-key", other)],
        vec![("x-api-key", &list)],
        vec![
            ("Authorization", &bearer_same),
            ("Authorization", &bearer_other),
        ],
        vec![("x-api-key", key), ("Authorization", &bearer_other)],
        vec![("x-api-key", key), ("Authorization", "Basic dXNlcjpwYXNz")],
    ];
    for headers in cases {
        let response = gw.get("/api/v1/runs", &headers).await;
        assert_eq!(response.status, 400, "{headers:?}");
        assert_eq!(response.error_code(), "multiple_credentials");
    }
    // The same key in both headers is one credential.
    let same = gw
        .get(
            "/api/v1/runs",
            &[("x-api-key", key), ("Authorization", &bearer_same)],
        )
        .await;
    assert_eq!(same.status, 200);
    assert_eq!(gw.upstream.count(), 1);
}

#[tokio::test]
async fn non_ascii_key_bytes_never_pass() {
    let gw = TestGateway::start().await;
    let mut raw =
        b"GET /api/v1/runs HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nx-api-key: ".to_vec();
    raw.extend_from_slice(b"lsv2_pt_\xff\xfe");
    raw.extend_from_slice(b"\r\n\r\n");
    let response = common::http::parse_response(&send_raw(gw.addr, &raw).await).unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(gw.upstream.count(), 0);
}

#[tokio::test]
async fn revoked_member_key_is_refused_after_removal_in_store() {
    let gw = TestGateway::start().await;
    let (user, key) = gw.member("leaver@acme.test", gw.workspace, WORKSPACE_EDITOR);
    assert!(gw
        .store
        .remove_workspace_member(gw.workspace, user)
        .unwrap());
    let response = gw.get("/api/v1/runs", &[("x-api-key", key.expose())]).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.error_code(), "no_workspace_access");
}

#[tokio::test]
async fn rejected_request_with_unread_body_closes_connection() {
    let gw = TestGateway::start().await;
    let response = send(gw.addr, "POST", "/api/v1/runs", &[], b"{\"name\": \"run\"}").await;
    assert_eq!(response.status, 401);
    assert_eq!(response.header("connection"), Some("close"));
    // Without a body, the connection stays open: a keep-alive client reads
    // the answer and the connection is still usable.
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /api/v1/runs HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
}
