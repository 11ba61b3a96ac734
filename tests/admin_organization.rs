//! The admin API at organization level, over real HTTP: the organization
//! permission table for both organization roles, plans, personal
//! organizations, bad input and the OpenAPI document.

mod admin_harness;

use admin_harness::{error_field, Harness};
use portcullis::authz::{ORGANIZATION_ADMIN, ORGANIZATION_USER, WORKSPACE_VIEWER};
use portcullis::store::sqlite::Actor;
use serde_json::{json, Value};

/// One row of the organization permission table: what the call does, and
/// the status an Organization Admin and an Organization User get.
struct Row {
    name: &'static str,
    method: &'static str,
    path: String,
    /// The body for the admin's call and for the user's call.
    bodies: [Value; 2],
    admin: u16,
    user: u16,
}

#[tokio::test]
async fn organization_permission_table_holds_for_both_roles() {
    let h = Harness::start("enterprise").await;
    let (_, user_key) = h.user("user@acme.test", ORGANIZATION_USER, Some(WORKSPACE_VIEWER));
    let other = h
        .owner("POST", "/v1/workspaces", json!({"name": "Other"}))
        .await;
    let other = other.json()["id"].as_str().unwrap().to_string();
    let mut invitations = Vec::new();
    for email in ["a@invited.test", "b@invited.test"] {
        let created = h
            .owner("POST", "/v1/invitations", json!({"email": email}))
            .await;
        invitations.push(created.json()["id"].as_str().unwrap().to_string());
    }
    let (victim_a, _) = h.user("victim-a@acme.test", ORGANIZATION_USER, None);
    let (victim_b, _) = h.user("victim-b@acme.test", ORGANIZATION_USER, None);
    let ws = h.workspace;
    let same = |body: Value| [body.clone(), body];

    let rows = [
        Row {
            name: "view organization configuration",
            method: "GET",
            path: "/v1/organization".into(),
            bodies: same(Value::Null),
            admin: 200,
            user: 200,
        },
        Row {
            name: "view organization roles",
            method: "GET",
            path: "/v1/roles".into(),
            bodies: same(Value::Null),
            admin: 200,
            user: 200,
        },
        Row {
            name: "view organization members",
            method: "GET",
            path: "/v1/members".into(),
            bodies: same(Value::Null),
            admin: 200,
            user: 200,
        },
        Row {
            name: "view data retention settings and usage limits",
            method: "GET",
            path: format!("/v1/workspaces/{ws}/settings"),
            bodies: same(Value::Null),
            admin: 200,
            user: 200,
        },
        Row {
            name: "admin access to all workspaces",
            method: "GET",
            path: format!("/v1/workspaces/{other}/members"),
            bodies: same(Value::Null),
            admin: 200,
            user: 403,
        },
        Row {
            name: "manage billing settings",
            method: "PUT",
            path: "/v1/organization/plan".into(),
            bodies: same(json!({"plan": "enterprise"})),
            admin: 200,
            user: 403,
        },
        Row {
            name: "create workspaces",
            method: "POST",
            path: "/v1/workspaces".into(),
            bodies: [json!({"name": "By admin"}), json!({"name": "By user"})],
            admin: 201,
            user: 403,
        },
        Row {
            name: "create organization roles",
            method: "POST",
            path: "/v1/roles".into(),
            bodies: [
                json!({"name": "Reader A", "permissions": ["runs:read"]}),
                json!({"name": "Reader B", "permissions": ["runs:read"]}),
            ],
            admin: 201,
            user: 403,
        },
        Row {
            name: "invite new users to organization",
            method: "POST",
            path: "/v1/invitations".into(),
            bodies: [
                json!({"email": "c@invited.test"}),
                json!({"email": "d@invited.test"}),
            ],
            admin: 201,
            user: 403,
        },
        Row {
            name: "update data retention settings",
            method: "PATCH",
            path: format!("/v1/workspaces/{ws}/settings"),
            bodies: same(json!({"retention_tier": "extended"})),
            admin: 200,
            user: 403,
        },
        Row {
            name: "update usage limits",
            method: "PATCH",
            path: format!("/v1/workspaces/{ws}/settings"),
            bodies: same(json!({"usage_limits": {"all_traces": 1000}})),
            admin: 200,
            user: 403,
        },
    ];
    for row in rows {
        let [admin_body, user_body] = row.bodies;
        let admin = h.owner(row.method, &row.path, admin_body).await;
        assert_eq!(
            admin.status,
            row.admin,
            "admin: {}: {}",
            row.name,
            admin.text()
        );
        let user = h.call(row.method, &row.path, &user_key, user_body).await;
        assert_eq!(user.status, row.user, "user: {}: {}", row.name, user.text());
    }

    // Rows whose targets are used up: each role gets its own target.
    let targets = [
        (
            "delete user invites",
            "DELETE",
            "/v1/invitations",
            [&invitations[0], &invitations[1]],
            200,
        ),
        (
            "remove users from an organization",
            "DELETE",
            "/v1/members",
            [&victim_a.to_string(), &victim_b.to_string()],
            204,
        ),
    ];
    for (name, method, base, [for_admin, for_user], admin_status) in targets {
        let admin = h
            .owner(method, &format!("{base}/{for_admin}"), Value::Null)
            .await;
        assert_eq!(
            admin.status,
            admin_status,
            "admin: {name}: {}",
            admin.text()
        );
        let user = h
            .call(
                method,
                &format!("{base}/{for_user}"),
                &user_key,
                Value::Null,
            )
            .await;
        assert_eq!(user.status, 403, "user: {name}: {}", user.text());
    }

    // Editing and deleting custom roles.
    let role = h
        .owner(
            "POST",
            "/v1/roles",
            json!({"name": "Temp", "permissions": ["runs:read"]}),
        )
        .await;
    let role = role.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/roles/{role}");
    let user_edit = h
        .call("PATCH", &path, &user_key, json!({"name": "Renamed"}))
        .await;
    assert_eq!(user_edit.status, 403, "user edits a role");
    let user_delete = h.call("DELETE", &path, &user_key, Value::Null).await;
    assert_eq!(user_delete.status, 403, "user deletes a role");
    let admin_edit = h.owner("PATCH", &path, json!({"name": "Renamed"})).await;
    assert_eq!(admin_edit.status, 200, "admin edits a role");
    let admin_delete = h.owner("DELETE", &path, Value::Null).await;
    assert_eq!(admin_delete.status, 204, "admin deletes a role");
}

#[tokio::test]
async fn single_workspace_plan_makes_every_member_admin() {
    let h = Harness::start("developer").await;
    let (user, key) = h.user("dev@acme.test", ORGANIZATION_USER, None);

    // The stored role is Organization User, but the plan has no such role.
    let audit = h.call("GET", "/v1/audit-log", &key, Value::Null).await;
    assert_eq!(audit.status, 200, "{}", audit.text());

    let demote = h
        .owner(
            "PATCH",
            &format!("/v1/members/{user}"),
            json!({"role": ORGANIZATION_USER}),
        )
        .await;
    assert_eq!(demote.status, 403);
    assert_eq!(demote.error_code(), "plan_feature_unavailable");
}

#[tokio::test]
async fn personal_organization_keeps_its_limits() {
    let h = Harness::start("enterprise").await;
    let created = h
        .store
        .create_user_with_personal_org(&Actor::cli(), "solo@example.test", "Solo")
        .unwrap();
    let org = created.organization.id;
    let (_, key) = h
        .store
        .create_personal_token(&Actor::cli(), org, created.user.id, "", None)
        .unwrap();
    let key = key.expose().to_string();

    let organization = h.call("GET", "/v1/organization", &key, Value::Null).await;
    assert_eq!(organization.json()["is_personal"], true);
    assert_eq!(organization.json()["plan"]["id"], "developer");
    assert_eq!(organization.json()["workspace_count"], 1);

    let cases = [
        (
            "second workspace",
            "POST",
            "/v1/workspaces",
            json!({"name": "More"}),
            "plan_limit_reached",
        ),
        (
            "invitation",
            "POST",
            "/v1/invitations",
            json!({"email": "friend@example.test"}),
            "personal_organization",
        ),
        (
            "other plan",
            "PUT",
            "/v1/organization/plan",
            json!({"plan": "plus"}),
            "personal_organization",
        ),
    ];
    for (name, method, path, body, code) in cases {
        let response = h.call(method, path, &key, body).await;
        assert_eq!(response.status, 403, "{name}: {}", response.text());
        assert_eq!(response.error_code(), code, "{name}");
    }
    let workspaces = h.count(&format!(
        "SELECT COUNT(*) FROM workspaces WHERE organization_id = '{org}'"
    ));
    assert_eq!(workspaces, 1, "a rejected workspace was stored");
}

#[tokio::test]
async fn plan_workspace_maximum_is_enforced() {
    // Plan, and how many more workspaces it allows next to the first.
    let cases = [("developer", 0), ("plus", 2), ("enterprise", 6)];
    for (plan, allowed) in cases {
        let h = Harness::start(plan).await;
        for i in 0..allowed {
            let created = h
                .owner(
                    "POST",
                    "/v1/workspaces",
                    json!({"name": format!("Team {i}")}),
                )
                .await;
            assert_eq!(
                created.status,
                201,
                "{plan}: workspace {i}: {}",
                created.text()
            );
        }
        if plan == "enterprise" {
            continue;
        }
        let audit_before = h.audit_count();
        let over = h
            .owner("POST", "/v1/workspaces", json!({"name": "One too many"}))
            .await;
        assert_eq!(over.status, 403, "{plan}: {}", over.text());
        assert_eq!(over.error_code(), "plan_limit_reached", "{plan}");
        let count = h.count("SELECT COUNT(*) FROM workspaces");
        assert_eq!(
            count,
            allowed + 1,
            "{plan}: a rejected workspace was stored"
        );
        assert_eq!(
            h.audit_count(),
            audit_before,
            "{plan}: a rejected write was audited"
        );
    }
}

#[tokio::test]
async fn downgrade_below_workspace_count_is_rejected() {
    let h = Harness::start("enterprise").await;
    for name in ["B", "C", "D"] {
        h.owner("POST", "/v1/workspaces", json!({"name": name}))
            .await;
    }
    let response = h
        .owner("PUT", "/v1/organization/plan", json!({"plan": "plus"}))
        .await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.error_code(), "plan_limit_reached");
    let organization = h.owner("GET", "/v1/organization", Value::Null).await;
    assert_eq!(organization.json()["plan"]["id"], "enterprise");
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let h = Harness::start("enterprise").await;
    let ws = h.workspace;
    let cases = [
        (
            "POST",
            "/v1/roles".to_string(),
            json!({"name": "R", "permissions": ["runs:fly"]}),
            400,
            "unknown_permission",
            "permissions",
        ),
        (
            "POST",
            "/v1/roles".to_string(),
            json!({"name": "R", "permissions": ["organization:manage"]}),
            400,
            "invalid_request",
            "permissions",
        ),
        (
            "POST",
            "/v1/roles".to_string(),
            json!({"name": "", "permissions": []}),
            400,
            "invalid_request",
            "name",
        ),
        (
            "POST",
            "/v1/workspaces".to_string(),
            json!({"name": "Default"}),
            409,
            "conflict",
            "name",
        ),
        (
            "POST",
            "/v1/workspaces".to_string(),
            json!({"name": 5}),
            400,
            "invalid_request",
            "name",
        ),
        (
            "GET",
            "/v1/workspaces/not-a-uuid".to_string(),
            Value::Null,
            400,
            "invalid_request",
            "workspace_id",
        ),
        (
            "DELETE",
            "/v1/members/123".to_string(),
            Value::Null,
            400,
            "invalid_request",
            "user_id",
        ),
        (
            "POST",
            "/v1/invitations".to_string(),
            json!({"email": "not-an-email"}),
            400,
            "invalid_request",
            "email",
        ),
        (
            "POST",
            "/v1/invitations".to_string(),
            json!({"email": "x@y.test", "role": "WORKSPACE_ADMIN"}),
            400,
            "invalid_request",
            "role",
        ),
        (
            "PATCH",
            format!("/v1/workspaces/{ws}/settings"),
            json!({"retention_tier": "forever"}),
            400,
            "invalid_request",
            "retention_tier",
        ),
        (
            "PATCH",
            format!("/v1/workspaces/{ws}/settings"),
            json!({"usage_limits": {"all_traces": -1}}),
            400,
            "invalid_request",
            "usage_limits.all_traces",
        ),
        (
            "PUT",
            "/v1/organization/plan".to_string(),
            json!({"plan": "platinum"}),
            400,
            "invalid_request",
            "plan",
        ),
        (
            "GET",
            "/v1/members?limit=0".to_string(),
            Value::Null,
            400,
            "invalid_request",
            "limit",
        ),
        (
            "GET",
            "/v1/members?cursor=abc".to_string(),
            Value::Null,
            400,
            "invalid_request",
            "cursor",
        ),
    ];
    for (method, path, body, status, code, field) in cases {
        let response = h.owner(method, &path, body.clone()).await;
        assert_eq!(
            response.status,
            status,
            "{method} {path} {body}: {}",
            response.text()
        );
        assert_eq!(response.error_code(), code, "{method} {path} {body}");
        assert_eq!(error_field(&response), field, "{method} {path} {body}");
    }
}

#[tokio::test]
async fn failed_write_changes_nothing() {
    let h = Harness::start("enterprise").await;
    let roles_before = h.count("SELECT COUNT(*) FROM roles");
    let audit_before = h.audit_count();
    let response = h
        .owner(
            "POST",
            "/v1/roles",
            json!({"name": "Mixed", "permissions": ["runs:read", "runs:fly"]}),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(h.count("SELECT COUNT(*) FROM roles"), roles_before);
    assert_eq!(
        h.count("SELECT COUNT(*) FROM role_permissions WHERE permission = 'runs:fly'"),
        0
    );
    assert_eq!(h.audit_count(), audit_before);

    // A duplicate name fails inside the transaction, after the role row
    // would have been written.
    let first = h
        .owner(
            "POST",
            "/v1/roles",
            json!({"name": "Twice", "permissions": ["runs:read"]}),
        )
        .await;
    assert_eq!(first.status, 201);
    let roles_before = h.count("SELECT COUNT(*) FROM roles");
    let audit_before = h.audit_count();
    let second = h
        .owner(
            "POST",
            "/v1/roles",
            json!({"name": "Twice", "permissions": ["runs:read"]}),
        )
        .await;
    assert_eq!(second.status, 409);
    assert_eq!(error_field(&second), "name");
    assert_eq!(h.count("SELECT COUNT(*) FROM roles"), roles_before);
    assert_eq!(h.audit_count(), audit_before);
}

#[tokio::test]
async fn shared_organization_can_be_created_by_a_user() {
    let h = Harness::start("developer").await;
    let created = h
        .owner(
            "POST",
            "/v1/organizations",
            json!({"name": "Team", "plan": "plus"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    assert_eq!(body["organization"]["is_personal"], false);
    assert_eq!(body["organization"]["plan"]["id"], "plus");
    let key = body["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("lsv2_pt_"));

    let members = h.call("GET", "/v1/members", &key, Value::Null).await;
    assert_eq!(members.json()["items"][0]["role_id"], ORGANIZATION_ADMIN);
    let works = h.gateway("GET", &key, None).await;
    assert_eq!(works.status, 200, "{}", works.text());
}

#[tokio::test]
async fn openapi_document_covers_the_api() {
    let h = Harness::start("enterprise").await;
    let response = admin_harness::http::send(h.admin, "GET", "/openapi.json", &[], b"").await;
    assert_eq!(response.status, 200);
    let document = response.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = [
        ("/v1/organization", "get"),
        ("/v1/organization/plan", "put"),
        ("/v1/workspaces", "post"),
        ("/v1/workspaces/{workspace_id}/members/{user_id}", "put"),
        ("/v1/workspaces/{workspace_id}/service-keys", "post"),
        ("/v1/workspaces/{workspace_id}/taggings", "get"),
        ("/v1/workspaces/{workspace_id}/settings", "patch"),
        ("/v1/invitations/{invitation_id}/accept", "post"),
        ("/v1/roles/{role_id}", "patch"),
        ("/v1/keys/{key_id}/rotate", "post"),
        ("/v1/keys/import", "post"),
        ("/v1/audit-log", "get"),
    ];
    for (path, method) in paths {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is missing");
    }
    let schemas = &document["components"]["schemas"];
    for schema in ["Workspace", "Key", "ErrorBody", "AuditRecord"] {
        assert!(schemas[schema].is_object(), "schema {schema} is missing");
    }
}

#[tokio::test]
async fn lists_page_with_a_cursor() {
    let h = Harness::start("enterprise").await;
    for name in ["B", "C", "D", "E"] {
        h.owner("POST", "/v1/workspaces", json!({"name": name}))
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/workspaces?limit=2".to_string();
    loop {
        let page = h.owner("GET", &path, Value::Null).await.json();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["name"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/workspaces?limit=2&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["B", "C", "D", "Default", "E"]);
}

#[tokio::test]
async fn missing_key_is_rejected_like_the_gateway() {
    let h = Harness::start("enterprise").await;
    let response = admin_harness::http::send(h.admin, "GET", "/v1/organization", &[], b"").await;
    assert_eq!(response.status, 401);
    assert_eq!(response.error_code(), "missing_api_key");
}
