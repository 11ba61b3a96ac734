//! The key lifecycle through the admin API, over real HTTP, with the
//! gateway of the same process handling the very next request.

mod admin_harness;

use admin_harness::{error_field, Harness};
use portcullis::authz::{ORGANIZATION_USER, WORKSPACE_ADMIN, WORKSPACE_EDITOR};
use portcullis::credential::{KeyKind, SecretKey};
use portcullis::store::sqlite::NewKey;
use portcullis::store::unix_now;
use serde_json::{json, Value};

/// Creates a personal access token for the owner; returns its id and
/// secret.
async fn owner_token(h: &Harness) -> (String, String) {
    let created = h
        .owner("POST", "/v1/keys/pats", json!({"description": "ci"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    (
        body["key"]["id"].as_str().unwrap().to_string(),
        body["api_key"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn personal_token_listed_without_secret() {
    let h = Harness::start("enterprise").await;
    let (id, secret) = owner_token(&h).await;
    assert!(secret.starts_with("lsv2_pt_"));

    let listed = h.owner("GET", "/v1/keys/pats", Value::Null).await;
    assert_eq!(listed.status, 200);
    assert!(!listed.text().contains(&secret), "the list shows a secret");
    let items = listed.json()["items"].as_array().unwrap().clone();
    let key = items
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("the new key is listed");
    for field in [
        "id",
        "kind",
        "display_prefix",
        "description",
        "created_at",
        "expires_at",
        "last_used_at",
    ] {
        assert!(key.get(field).is_some(), "the listing lacks {field}");
    }
    assert_eq!(key["display_prefix"], &secret[..12]);
    assert!(key.get("api_key").is_none());

    let single = h.owner("GET", &format!("/v1/keys/{id}"), Value::Null).await;
    assert!(
        !single.text().contains(&secret),
        "reading a key shows its secret"
    );
}

#[tokio::test]
async fn key_state_changes_apply_on_the_next_request() {
    let h = Harness::start("enterprise").await;
    let (id, secret) = owner_token(&h).await;
    assert_eq!(
        h.gateway("GET", &secret, None).await.status,
        200,
        "warms the cache"
    );

    // Action, body, then the gateway's status and code on the next request.
    let steps = [
        ("disable", "POST", Value::Null, 401, "api_key_disabled"),
        ("enable", "POST", Value::Null, 200, ""),
        (
            "expiry",
            "PUT",
            json!({"expires_at": unix_now() + 3600}),
            200,
            "",
        ),
        ("expiry", "PUT", json!({"expires_at": null}), 200, ""),
        ("revoke", "POST", Value::Null, 401, "api_key_revoked"),
    ];
    for (action, method, body, status, code) in steps {
        let changed = h
            .owner(method, &format!("/v1/keys/{id}/{action}"), body)
            .await;
        assert_eq!(changed.status, 200, "{action}: {}", changed.text());
        let next = h.gateway("GET", &secret, None).await;
        assert_eq!(next.status, status, "after {action}");
        if !code.is_empty() {
            assert_eq!(next.error_code(), code, "after {action}");
        }
    }

    let revived = h
        .owner("POST", &format!("/v1/keys/{id}/enable"), Value::Null)
        .await;
    assert_eq!(revived.status, 409, "a revoked key was re-enabled");
}

#[tokio::test]
async fn expiry_in_the_past_is_rejected() {
    let h = Harness::start("enterprise").await;
    let (id, _) = owner_token(&h).await;
    let response = h
        .owner(
            "PUT",
            &format!("/v1/keys/{id}/expiry"),
            json!({"expires_at": unix_now() - 10}),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(error_field(&response), "expires_at");
}

#[tokio::test]
async fn revoked_key_refused_on_next_request() {
    let h = Harness::start("enterprise").await;
    let (id, secret) = owner_token(&h).await;
    assert_eq!(h.gateway("GET", &secret, None).await.status, 200);
    let revoked = h
        .owner("POST", &format!("/v1/keys/{id}/revoke"), Value::Null)
        .await;
    assert_eq!(revoked.status, 200);
    let next = h.gateway("GET", &secret, None).await;
    assert_eq!(next.status, 401);
    assert_eq!(next.error_code(), "api_key_revoked");
}

#[tokio::test]
async fn removed_member_refused_on_next_request() {
    let h = Harness::start("enterprise").await;
    let (user, key) = h.user(
        "leaver@acme.test",
        ORGANIZATION_USER,
        Some(WORKSPACE_EDITOR),
    );
    assert_eq!(h.gateway("GET", &key, None).await.status, 200);

    let removed = h
        .owner(
            "DELETE",
            &format!("/v1/workspaces/{}/members/{user}", h.workspace),
            Value::Null,
        )
        .await;
    assert_eq!(removed.status, 204);
    let next = h.gateway("GET", &key, None).await;
    assert_eq!(next.status, 403, "after leaving the workspace");
    assert_eq!(next.error_code(), "no_workspace_access");

    h.owner(
        "PUT",
        &format!("/v1/workspaces/{}/members/{user}", h.workspace),
        json!({"role": WORKSPACE_EDITOR}),
    )
    .await;
    assert_eq!(
        h.gateway("GET", &key, None).await.status,
        200,
        "after rejoining"
    );
    let gone = h
        .owner("DELETE", &format!("/v1/members/{user}"), Value::Null)
        .await;
    assert_eq!(gone.status, 204);
    let next = h.gateway("GET", &key, None).await;
    assert_eq!(next.status, 401, "after leaving the organization");
    assert_eq!(next.error_code(), "api_key_revoked");
}

#[tokio::test]
async fn role_change_applies_on_the_very_next_request() {
    let h = Harness::start("enterprise").await;
    let (user, key) = h.user("dev@acme.test", ORGANIZATION_USER, Some(WORKSPACE_EDITOR));
    assert_eq!(h.gateway("POST", &key, None).await.status, 200);
    h.owner(
        "PUT",
        &format!("/v1/workspaces/{}/members/{user}", h.workspace),
        json!({"role": "WORKSPACE_VIEWER"}),
    )
    .await;
    assert_eq!(h.gateway("POST", &key, None).await.status, 403);
}

#[tokio::test]
async fn rotated_key_works_during_grace_period() {
    let h = Harness::start("enterprise").await;
    let (old_id, old) = owner_token(&h).await;

    let rotated = h
        .owner(
            "POST",
            &format!("/v1/keys/{old_id}/rotate"),
            json!({"grace_period_secs": 3600}),
        )
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let new_id = rotated.json()["key"]["id"].as_str().unwrap().to_string();
    let new = rotated.json()["api_key"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(
        h.gateway("GET", &old, None).await.status,
        200,
        "old key in its grace period"
    );
    assert_eq!(h.gateway("GET", &new, None).await.status, 200, "new key");
    let old_record = h
        .owner("GET", &format!("/v1/keys/{old_id}"), Value::Null)
        .await
        .json();
    assert_eq!(old_record["replaced_by"], new_id.as_str());

    let again = h
        .owner("POST", &format!("/v1/keys/{old_id}/rotate"), Value::Null)
        .await;
    assert_eq!(again.status, 409, "a rotated key was rotated again");

    // No grace period: the replaced key stops at once.
    let immediate = h
        .owner(
            "POST",
            &format!("/v1/keys/{new_id}/rotate"),
            json!({"grace_period_secs": 0}),
        )
        .await;
    assert_eq!(immediate.status, 201);
    let next = h.gateway("GET", &new, None).await;
    assert_eq!(next.status, 401);
    assert_eq!(next.error_code(), "api_key_expired");
}

#[tokio::test]
async fn imported_key_works_without_reissue() {
    let h = Harness::start("enterprise").await;
    let outside = SecretKey::generate(KeyKind::Personal);
    let body = json!({
        "kind": "pat",
        "key_hash": outside.hash().to_hex(),
        "display_prefix": outside.display_prefix(),
        "description": "migrated",
        "user_id": h.owner,
    });
    let imported = h.owner("POST", "/v1/keys/import", body.clone()).await;
    assert_eq!(imported.status, 201, "{}", imported.text());
    assert_eq!(h.gateway("GET", outside.expose(), None).await.status, 200);

    let twice = h.owner("POST", "/v1/keys/import", body).await;
    assert_eq!(twice.status, 409);
    assert_eq!(error_field(&twice), "key_hash");

    let cases = [
        (
            json!({"kind": "pat", "key_hash": "abc", "display_prefix": "lsv2_pt_1234", "user_id": h.owner}),
            "key_hash",
        ),
        (
            json!({"kind": "jwt", "key_hash": outside.hash().to_hex(), "display_prefix": "x"}),
            "kind",
        ),
        (
            json!({"kind": "pat", "key_hash": SecretKey::generate(KeyKind::Personal).hash().to_hex(), "display_prefix": "lsv2_sk_1234", "user_id": h.owner}),
            "display_prefix",
        ),
    ];
    for (body, field) in cases {
        let response = h.owner("POST", "/v1/keys/import", body).await;
        assert_eq!(response.status, 400, "{field}: {}", response.text());
        assert_eq!(error_field(&response), field);
    }
}

#[tokio::test]
async fn service_keys_list_includes_legacy_keys() {
    let h = Harness::start("enterprise").await;
    let ws = h.workspace;
    let account = h
        .owner("POST", "/v1/service-accounts", json!({"name": "bot"}))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.owner(
        "PUT",
        &format!("/v1/workspaces/{ws}/service-accounts/{account}"),
        json!({"role": WORKSPACE_EDITOR}),
    )
    .await;
    let created = h
        .owner(
            "POST",
            &format!("/v1/workspaces/{ws}/service-keys"),
            json!({"service_account_id": account}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let secret = created.json()["api_key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("lsv2_sk_"));
    let (_, legacy) = h
        .store
        .create_key(&NewKey {
            kind: KeyKind::Legacy,
            organization_id: h.org,
            user_id: None,
            service_account_id: None,
            workspace_id: Some(ws),
            description: "old".into(),
            expires_at: None,
        })
        .unwrap();

    let listed = h
        .owner(
            "GET",
            &format!("/v1/workspaces/{ws}/service-keys"),
            Value::Null,
        )
        .await;
    let mut kinds: Vec<String> = listed.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["legacy", "service"]);
    assert!(
        !listed.text().contains(&secret),
        "the list shows a service key"
    );
    assert!(
        !listed.text().contains(legacy.expose()),
        "the list shows a legacy key"
    );
}

#[tokio::test]
async fn other_users_tokens_need_member_management() {
    let h = Harness::start("enterprise").await;
    let (owner_key_id, _) = owner_token(&h).await;
    let (_, editor) = h.user("editor@acme.test", ORGANIZATION_USER, Some(WORKSPACE_ADMIN));
    let response = h
        .call(
            "POST",
            &format!("/v1/keys/{owner_key_id}/revoke"),
            &editor,
            Value::Null,
        )
        .await;
    assert_eq!(response.status, 403, "{}", response.text());

    // The same user manages their own token.
    let own = h.call("POST", "/v1/keys/pats", &editor, json!({})).await;
    let own_id = own.json()["key"]["id"].as_str().unwrap().to_string();
    let revoked = h
        .call(
            "POST",
            &format!("/v1/keys/{own_id}/revoke"),
            &editor,
            Value::Null,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
}

#[tokio::test]
async fn audit_log_records_writes_without_secrets() {
    let h = Harness::start("enterprise").await;
    let start = unix_now();
    let (id, secret) = owner_token(&h).await;
    h.owner("POST", &format!("/v1/keys/{id}/revoke"), Value::Null)
        .await;
    h.owner("POST", "/v1/workspaces", json!({"name": "Audited"}))
        .await;

    let log = h.owner("GET", "/v1/audit-log", Value::Null).await;
    assert_eq!(log.status, 200, "{}", log.text());
    assert!(
        !log.text().contains(&secret),
        "the audit log holds a secret"
    );
    let items = log.json()["items"].as_array().unwrap().clone();
    let actions: Vec<&str> = items
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["workspace.create", "key.revoke", "key.create"]);

    let revoke = &items[1];
    let actor = format!("user:{}", h.owner);
    assert_eq!(revoke["actor"], actor.as_str());
    assert_eq!(revoke["target_id"], id.as_str());
    assert_eq!(revoke["before"]["revoked_at"], Value::Null);
    assert!(revoke["after"]["revoked_at"].is_i64());
    assert!(revoke["at"].as_i64().unwrap() >= start);

    // Filters: actor, time range, and paging.
    let by_actor = h
        .owner("GET", &format!("/v1/audit-log?actor={actor}"), Value::Null)
        .await
        .json();
    assert_eq!(by_actor["items"].as_array().unwrap().len(), 3);
    let by_other = h
        .owner("GET", "/v1/audit-log?actor=cli", Value::Null)
        .await
        .json();
    assert_eq!(by_other["items"].as_array().unwrap().len(), 0);
    let future = h
        .owner(
            "GET",
            &format!("/v1/audit-log?since={}", unix_now() + 60),
            Value::Null,
        )
        .await
        .json();
    assert_eq!(future["items"].as_array().unwrap().len(), 0);
    let first = h
        .owner("GET", "/v1/audit-log?limit=1", Value::Null)
        .await
        .json();
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["next"], "1");

    let (_, user) = h.user("user@acme.test", ORGANIZATION_USER, Some(WORKSPACE_ADMIN));
    let forbidden = h.call("GET", "/v1/audit-log", &user, Value::Null).await;
    assert_eq!(
        forbidden.status, 403,
        "an Organization User reads the audit log"
    );
}
