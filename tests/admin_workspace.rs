//! The admin API at workspace level, over real HTTP: workspace roles on
//! workspace management, custom roles, invitations, tags and settings.

mod admin_harness;

use admin_harness::{error_field, Harness};
use portcullis::authz::{
    ORGANIZATION_ADMIN, ORGANIZATION_USER, WORKSPACE_ADMIN, WORKSPACE_EDITOR, WORKSPACE_VIEWER,
};
use portcullis::store::sqlite::Actor;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn workspace_roles_on_workspace_management() {
    let h = Harness::start("enterprise").await;
    let ws = h.workspace;
    let account = h
        .owner("POST", "/v1/service-accounts", json!({"name": "ingest"}))
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

    // Role, and whether it may manage (write) and read.
    let roles = [
        (WORKSPACE_ADMIN, true, true),
        (WORKSPACE_EDITOR, false, true),
        (WORKSPACE_VIEWER, false, true),
    ];
    for (i, (role, manages, reads)) in roles.into_iter().enumerate() {
        let (_, key) = h.user(&format!("{role}@acme.test"), ORGANIZATION_USER, Some(role));
        let (target, _) = h.user(&format!("target{i}@acme.test"), ORGANIZATION_USER, None);
        let actions = [
            (
                "rename the workspace",
                "PATCH",
                format!("/v1/workspaces/{ws}"),
                json!({"name": format!("Default {i}")}),
                manages,
            ),
            (
                "add a member",
                "PUT",
                format!("/v1/workspaces/{ws}/members/{target}"),
                json!({"role": WORKSPACE_VIEWER}),
                manages,
            ),
            (
                "create a service key",
                "POST",
                format!("/v1/workspaces/{ws}/service-keys"),
                json!({"service_account_id": account}),
                manages,
            ),
            (
                "create a tag key",
                "POST",
                format!("/v1/workspaces/{ws}/tag-keys"),
                json!({"key": format!("Team {i}")}),
                manages,
            ),
            (
                "read the members",
                "GET",
                format!("/v1/workspaces/{ws}/members"),
                Value::Null,
                reads,
            ),
            (
                "read the service keys",
                "GET",
                format!("/v1/workspaces/{ws}/service-keys"),
                Value::Null,
                reads,
            ),
        ];
        for (name, method, path, body, allowed) in actions {
            let response = h.call(method, &path, &key, body).await;
            if allowed {
                assert!(
                    response.status < 300,
                    "{role} may {name}: {}",
                    response.text()
                );
            } else {
                assert_eq!(
                    response.status,
                    403,
                    "{role} may not {name}: {}",
                    response.text()
                );
            }
        }
    }
}

#[tokio::test]
async fn custom_roles_on_rbac_plan_set_gateway_permissions() {
    let h = Harness::start("enterprise").await;
    let role = h
        .owner(
            "POST",
            "/v1/roles",
            json!({"name": "Run reader", "permissions": ["runs:read", "workspaces:read"]}),
        )
        .await;
    assert_eq!(role.status, 201, "{}", role.text());
    let role = role.json()["id"].as_str().unwrap().to_string();
    let (user, key) = h.user("reader@acme.test", ORGANIZATION_USER, Some(WORKSPACE_ADMIN));

    let assigned = h
        .owner(
            "PUT",
            &format!("/v1/workspaces/{}/members/{user}", h.workspace),
            json!({"role": role}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.text());
    assert_eq!(h.gateway("GET", &key, None).await.status, 200);
    assert_eq!(h.gateway("POST", &key, None).await.status, 403);

    // Editing the role applies to the next gateway request.
    let edited = h
        .owner(
            "PATCH",
            &format!("/v1/roles/{role}"),
            json!({"permissions": ["runs:read", "runs:create"]}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text());
    assert_eq!(h.gateway("POST", &key, None).await.status, 200);

    let in_use = h
        .owner("DELETE", &format!("/v1/roles/{role}"), Value::Null)
        .await;
    assert_eq!(in_use.status, 409);
    assert_eq!(in_use.error_code(), "conflict");

    let builtin = h
        .owner(
            "PATCH",
            &format!("/v1/roles/{WORKSPACE_VIEWER}"),
            json!({"permissions": ["runs:read"]}),
        )
        .await;
    assert_eq!(builtin.status, 403);
    assert_eq!(builtin.error_code(), "builtin_role");
}

#[tokio::test]
async fn custom_roles_need_an_rbac_plan() {
    for plan in ["developer", "plus"] {
        let h = Harness::start(plan).await;
        let created = h
            .owner(
                "POST",
                "/v1/roles",
                json!({"name": "Reader", "permissions": ["runs:read"]}),
            )
            .await;
        assert_eq!(created.status, 403, "{plan}: {}", created.text());
        assert_eq!(created.error_code(), "plan_feature_unavailable", "{plan}");
    }

    // Without RBAC, a Viewer acts as Admin.
    let h = Harness::start("plus").await;
    let (_, key) = h.user(
        "viewer@acme.test",
        ORGANIZATION_USER,
        Some(WORKSPACE_VIEWER),
    );
    assert_eq!(h.gateway("POST", &key, None).await.status, 200);
}

#[tokio::test]
async fn invitations_follow_their_lifecycle() {
    let h = Harness::start("enterprise").await;
    let invited = h
        .owner(
            "POST",
            "/v1/invitations",
            json!({"email": "new@example.test", "workspace_id": h.workspace, "workspace_role": WORKSPACE_VIEWER}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.text());
    let invitation = invited.json()["id"].as_str().unwrap().to_string();
    assert_eq!(invited.json()["state"], "pending");

    let again = h
        .owner(
            "POST",
            "/v1/invitations",
            json!({"email": "NEW@example.test"}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(error_field(&again), "email");

    let listed = h.owner("GET", "/v1/invitations", Value::Null).await.json();
    assert_eq!(listed["items"][0]["email"], "new@example.test");

    // The invitee signs up (a personal organization) and accepts with a
    // token of that organization.
    let invitee = h
        .store
        .create_user_with_personal_org(&Actor::cli(), "new@example.test", "New")
        .unwrap();
    let (_, personal) = h
        .store
        .create_personal_token(
            &Actor::cli(),
            invitee.organization.id,
            invitee.user.id,
            "",
            None,
        )
        .unwrap();
    let stranger = h
        .store
        .create_user_with_personal_org(&Actor::cli(), "other@example.test", "Other")
        .unwrap();
    let (_, stranger_key) = h
        .store
        .create_personal_token(
            &Actor::cli(),
            stranger.organization.id,
            stranger.user.id,
            "",
            None,
        )
        .unwrap();

    let accept = format!("/v1/invitations/{invitation}/accept");
    let wrong = h
        .call("POST", &accept, stranger_key.expose(), Value::Null)
        .await;
    assert_eq!(wrong.status, 404, "another user accepts: {}", wrong.text());

    let accepted = h
        .call("POST", &accept, personal.expose(), Value::Null)
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(accepted.json()["invitation"]["state"], "accepted");
    let key = accepted.json()["api_key"].as_str().unwrap().to_string();
    assert_eq!(h.gateway("GET", &key, Some(h.workspace)).await.status, 200);
    assert_eq!(
        h.gateway("POST", &key, Some(h.workspace)).await.status,
        403,
        "a Viewer creates runs"
    );

    let twice = h
        .call("POST", &accept, personal.expose(), Value::Null)
        .await;
    assert_eq!(twice.status, 409);

    // A revoked invitation cannot be accepted.
    let revoked = h
        .owner(
            "POST",
            "/v1/invitations",
            json!({"email": "other@example.test"}),
        )
        .await;
    let revoked = revoked.json()["id"].as_str().unwrap().to_string();
    let revoke = h
        .owner("DELETE", &format!("/v1/invitations/{revoked}"), Value::Null)
        .await;
    assert_eq!(revoke.json()["state"], "revoked");
    let late = h
        .call(
            "POST",
            &format!("/v1/invitations/{revoked}/accept"),
            stranger_key.expose(),
            Value::Null,
        )
        .await;
    assert_eq!(late.status, 409);
}

#[tokio::test]
async fn workspace_admins_invite_only_with_the_setting() {
    // Setting, requested organization role, expected status.
    let cases = [
        (false, ORGANIZATION_USER, 403),
        (true, ORGANIZATION_USER, 201),
        (true, ORGANIZATION_ADMIN, 403),
    ];
    for (setting, role, status) in cases {
        let h = Harness::start_with("enterprise", setting).await;
        let (_, key) = h.user(
            "wsadmin@acme.test",
            ORGANIZATION_USER,
            Some(WORKSPACE_ADMIN),
        );
        let body =
            json!({"email": "guest@example.test", "role": role, "workspace_id": h.workspace});
        let response = h.call("POST", "/v1/invitations", &key, body).await;
        assert_eq!(
            response.status,
            status,
            "setting {setting}, role {role}: {}",
            response.text()
        );
    }
}

#[tokio::test]
async fn tags_start_with_defaults_and_answer_queries() {
    let h = Harness::start("enterprise").await;
    let ws = h
        .owner("POST", "/v1/workspaces", json!({"name": "Tagged"}))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let keys = h
        .owner("GET", &format!("/v1/workspaces/{ws}/tag-keys"), Value::Null)
        .await
        .json();
    let names: Vec<&str> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Application", "Environment"]);

    let environment = keys["items"][1]["id"].as_str().unwrap().to_string();
    let value = h
        .owner(
            "POST",
            &format!("/v1/workspaces/{ws}/tag-keys/{environment}/values"),
            json!({"value": "production"}),
        )
        .await;
    assert_eq!(value.status, 201, "{}", value.text());
    let value = value.json()["id"].as_str().unwrap().to_string();
    for (resource_type, resource_id) in [("project", "p1"), ("dataset", "d1")] {
        let tagged = h
            .owner(
                "POST",
                &format!("/v1/workspaces/{ws}/taggings"),
                json!({"tag_value_id": value, "resource_type": resource_type, "resource_id": resource_id}),
            )
            .await;
        assert_eq!(tagged.status, 201, "{}", tagged.text());
    }

    let by_value = h
        .owner(
            "GET",
            &format!("/v1/workspaces/{ws}/taggings?tag_value_id={value}"),
            Value::Null,
        )
        .await
        .json();
    let mut resources: Vec<&str> = by_value["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["resource_id"].as_str().unwrap())
        .collect();
    resources.sort();
    assert_eq!(resources, ["d1", "p1"]);

    let by_resource = h
        .owner(
            "GET",
            &format!("/v1/workspaces/{ws}/taggings?resource_type=project&resource_id=p1"),
            Value::Null,
        )
        .await
        .json();
    assert_eq!(by_resource["items"][0]["key"], "Environment");
    assert_eq!(by_resource["items"][0]["value"], "production");

    let bad = h
        .owner(
            "POST",
            &format!("/v1/workspaces/{ws}/taggings"),
            json!({"tag_value_id": value, "resource_type": "spaceship", "resource_id": "x"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(error_field(&bad), "resource_type");
}

#[tokio::test]
async fn settings_store_retention_and_limits() {
    let h = Harness::start("enterprise").await;
    let path = format!("/v1/workspaces/{}/settings", h.workspace);
    let initial = h.owner("GET", &path, Value::Null).await.json();
    assert_eq!(initial["retention_tier"], "base");
    assert_eq!(initial["retention_days"], 14);
    assert_eq!(initial["usage_limits"]["all_traces"], Value::Null);

    let body = json!({"retention_tier": "extended", "usage_limits": {"all_traces": 1000, "extended_traces": 10}});
    let updated = h.owner("PATCH", &path, body).await.json();
    assert_eq!(updated["retention_days"], 400);
    assert_eq!(updated["usage_limits"]["all_traces"], 1000);
    assert_eq!(updated["usage_limits"]["extended_traces"], 10);

    // The gateway sends the tier upstream from the next request on.
    let echoed = h.gateway("GET", &h.owner_key, None).await.json();
    assert_eq!(echoed["headers"]["x-auth-retention-tier"], "extended");

    let cleared = h
        .owner(
            "PATCH",
            &path,
            json!({"usage_limits": {"all_traces": null}}),
        )
        .await
        .json();
    assert_eq!(cleared["usage_limits"]["all_traces"], Value::Null);
    assert_eq!(
        cleared["usage_limits"]["extended_traces"], 10,
        "an absent limit changed"
    );
}

#[tokio::test]
async fn deleting_a_workspace_revokes_its_keys() {
    let h = Harness::start("enterprise").await;
    let ws = h
        .owner("POST", "/v1/workspaces", json!({"name": "Doomed"}))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
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
    let key = h
        .owner(
            "POST",
            &format!("/v1/workspaces/{ws}/service-keys"),
            json!({"service_account_id": account}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text());
    let key = key.json()["api_key"].as_str().unwrap().to_string();
    assert_eq!(h.gateway("GET", &key, None).await.status, 200);

    let deleted = h
        .owner("DELETE", &format!("/v1/workspaces/{ws}"), Value::Null)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let after = h.gateway("GET", &key, None).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.error_code(), "api_key_revoked");
}

#[tokio::test]
async fn removing_a_service_account_removes_its_keys() {
    let h = Harness::start("enterprise").await;
    let ws = h.workspace;
    let account = h
        .owner("POST", "/v1/service-accounts", json!({"name": "bot"}))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let without_role = h
        .owner(
            "POST",
            &format!("/v1/workspaces/{ws}/service-keys"),
            json!({"service_account_id": account}),
        )
        .await;
    assert_eq!(
        without_role.status, 400,
        "a key for an account with no role here"
    );
    assert_eq!(error_field(&without_role), "service_account_id");

    h.owner(
        "PUT",
        &format!("/v1/workspaces/{ws}/service-accounts/{account}"),
        json!({"role": WORKSPACE_VIEWER}),
    )
    .await;
    let key = h
        .owner(
            "POST",
            &format!("/v1/workspaces/{ws}/service-keys"),
            json!({"service_account_id": account}),
        )
        .await
        .json()["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(h.gateway("GET", &key, None).await.status, 200);

    let deleted = h
        .owner(
            "DELETE",
            &format!("/v1/service-accounts/{account}"),
            Value::Null,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(h.gateway("GET", &key, None).await.status, 401);
}

#[tokio::test]
async fn usage_is_read_live_and_new_limits_apply_at_once() {
    let h = Harness::start("enterprise").await;
    let settings = format!("/v1/workspaces/{}/settings", h.workspace);
    let usage = format!("/v1/workspaces/{}/usage", h.workspace);
    let limit = json!({"usage_limits": {"all_traces": 2}});
    assert_eq!(h.owner("PATCH", &settings, limit).await.status, 200);

    for _ in 0..2 {
        assert_eq!(h.gateway("POST", &h.owner_key, None).await.status, 200);
    }
    let over = h.gateway("POST", &h.owner_key, None).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.error_code(), "usage_limit_exceeded");

    let read = h.owner("GET", &usage, Value::Null).await;
    assert_eq!(read.status, 200);
    let read = read.json();
    assert_eq!(read["all_traces"], 2);
    assert_eq!(read["all_traces_limit"], 2);
    assert_eq!(read["extended_traces"], 0);

    // Organization Users may view usage too.
    let (_, member) = h.user(
        "viewer@acme.test",
        ORGANIZATION_USER,
        Some(WORKSPACE_VIEWER),
    );
    assert_eq!(
        h.call("GET", &usage, &member, Value::Null).await.status,
        200
    );
    // A workspace of no organization the caller belongs to is not found.
    let elsewhere = format!("/v1/workspaces/{}/usage", Uuid::new_v4());
    assert_eq!(h.owner("GET", &elsewhere, Value::Null).await.status, 404);
}
