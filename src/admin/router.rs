//! The admin API's routes: a match on method and path segments.

use http::Method;

use super::request::{parse_id, Call, Reply};
use super::{invitations, keys, organization, roles, tags, workspaces, AdminState, ApiError};

/// Sends a request to its handler.
pub(super) async fn route(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let segments = call.segments();
    let method = call.method();
    match (method, segments.as_slice()) {
        (&Method::GET, ["openapi.json"]) => Ok(super::openapi::reply()),
        (_, ["v1", rest @ ..]) => route_v1(state, call, method, rest).await,
        _ => Err(ApiError::NoRoute),
    }
}

async fn route_v1(
    state: &AdminState,
    call: &Call,
    method: &Method,
    path: &[&str],
) -> Result<Reply, ApiError> {
    use Method as M;
    match (method, path) {
        (&M::GET, ["organization"]) => organization::get(state, call).await,
        (&M::PATCH, ["organization"]) => organization::update(state, call).await,
        (&M::PUT, ["organization", "plan"]) => organization::set_plan(state, call).await,
        (&M::POST, ["organizations"]) => organization::create(state, call).await,
        (&M::GET, ["plans"]) => organization::plans(state, call).await,
        (&M::GET, ["permissions"]) => organization::permission_catalogue(state, call).await,
        (&M::GET, ["audit-log"]) => organization::audit_log(state, call).await,

        (&M::GET, ["members"]) => organization::members(state, call).await,
        (&M::PATCH, ["members", user]) => {
            organization::set_member_role(state, call, parse_id("user_id", user)?).await
        }
        (&M::DELETE, ["members", user]) => {
            organization::remove_member(state, call, parse_id("user_id", user)?).await
        }

        (&M::GET, ["invitations"]) => invitations::list(state, call).await,
        (&M::POST, ["invitations"]) => invitations::create(state, call).await,
        (&M::DELETE, ["invitations", id]) => {
            invitations::revoke(state, call, parse_id("invitation_id", id)?).await
        }
        (&M::POST, ["invitations", id, "accept"]) => {
            invitations::accept(state, call, parse_id("invitation_id", id)?).await
        }

        (&M::GET, ["roles"]) => roles::list(state, call).await,
        (&M::POST, ["roles"]) => roles::create(state, call).await,
        (&M::PATCH, ["roles", id]) => roles::update(state, call, id).await,
        (&M::DELETE, ["roles", id]) => roles::delete(state, call, id).await,

        (&M::GET, ["service-accounts"]) => roles::list_service_accounts(state, call).await,
        (&M::POST, ["service-accounts"]) => roles::create_service_account(state, call).await,
        (&M::DELETE, ["service-accounts", id]) => {
            roles::delete_service_account(state, call, parse_id("service_account_id", id)?).await
        }

        (&M::GET, ["keys", "pats"]) => keys::list_pats(state, call).await,
        (&M::POST, ["keys", "pats"]) => keys::create_pat(state, call).await,
        (&M::POST, ["keys", "import"]) => keys::import(state, call).await,
        (_, ["keys", id, rest @ ..]) => {
            route_key(state, call, method, parse_id("key_id", id)?, rest).await
        }

        (&M::GET, ["workspaces"]) => workspaces::list(state, call).await,
        (&M::POST, ["workspaces"]) => workspaces::create(state, call).await,
        (_, ["workspaces", ws, rest @ ..]) => {
            route_workspace(state, call, method, parse_id("workspace_id", ws)?, rest).await
        }
        _ => Err(unmatched(path)),
    }
}

async fn route_key(
    state: &AdminState,
    call: &Call,
    method: &Method,
    id: uuid::Uuid,
    path: &[&str],
) -> Result<Reply, ApiError> {
    use Method as M;
    match (method, path) {
        (&M::GET, []) => keys::get(state, call, id).await,
        (&M::POST, ["revoke"]) => keys::revoke(state, call, id).await,
        (&M::POST, ["disable"]) => keys::disable(state, call, id).await,
        (&M::POST, ["enable"]) => keys::enable(state, call, id).await,
        (&M::PUT, ["expiry"]) => keys::set_expiry(state, call, id).await,
        (&M::POST, ["rotate"]) => keys::rotate(state, call, id).await,
        (_, [] | ["revoke" | "disable" | "enable" | "expiry" | "rotate"]) => {
            Err(ApiError::MethodNotAllowed)
        }
        _ => Err(ApiError::NoRoute),
    }
}

async fn route_workspace(
    state: &AdminState,
    call: &Call,
    method: &Method,
    ws: uuid::Uuid,
    path: &[&str],
) -> Result<Reply, ApiError> {
    use Method as M;
    match (method, path) {
        (&M::GET, []) => workspaces::get(state, call, ws).await,
        (&M::PATCH, []) => workspaces::rename(state, call, ws).await,
        (&M::DELETE, []) => workspaces::delete(state, call, ws).await,
        (&M::GET, ["settings"]) => workspaces::settings(state, call, ws).await,
        (&M::GET, ["usage"]) => workspaces::usage(state, call, ws).await,
        (&M::PATCH, ["settings"]) => workspaces::update_settings(state, call, ws).await,

        (&M::GET, ["members"]) => workspaces::members(state, call, ws).await,
        (&M::PUT, ["members", user]) => {
            workspaces::set_member(state, call, ws, parse_id("user_id", user)?).await
        }
        (&M::DELETE, ["members", user]) => {
            workspaces::remove_member(state, call, ws, parse_id("user_id", user)?).await
        }
        (&M::PUT, ["service-accounts", id]) => {
            workspaces::set_service_account(state, call, ws, parse_id("service_account_id", id)?)
                .await
        }
        (&M::DELETE, ["service-accounts", id]) => {
            workspaces::remove_service_account(state, call, ws, parse_id("service_account_id", id)?)
                .await
        }

        (&M::GET, ["service-keys"]) => keys::list_service_keys(state, call, ws).await,
        (&M::POST, ["service-keys"]) => keys::create_service_key(state, call, ws).await,

        (&M::GET, ["tag-keys"]) => tags::keys(state, call, ws).await,
        (&M::POST, ["tag-keys"]) => tags::create_key(state, call, ws).await,
        (&M::DELETE, ["tag-keys", key]) => {
            tags::delete_key(state, call, ws, parse_id("tag_key_id", key)?).await
        }
        (&M::GET, ["tag-keys", key, "values"]) => {
            tags::values(state, call, ws, parse_id("tag_key_id", key)?).await
        }
        (&M::POST, ["tag-keys", key, "values"]) => {
            tags::create_value(state, call, ws, parse_id("tag_key_id", key)?).await
        }
        (&M::GET, ["taggings"]) => tags::taggings(state, call, ws).await,
        (&M::POST, ["taggings"]) => tags::create_tagging(state, call, ws).await,
        (&M::DELETE, ["taggings", id]) => {
            tags::delete_tagging(state, call, ws, parse_id("tagging_id", id)?).await
        }
        _ => Err(ApiError::NoRoute),
    }
}

/// A path that exists with another method gets 405, any other 404.
fn unmatched(path: &[&str]) -> ApiError {
    const COLLECTIONS: &[&str] = &[
        "organization",
        "organizations",
        "plans",
        "permissions",
        "audit-log",
        "members",
        "invitations",
        "roles",
        "service-accounts",
        "workspaces",
    ];
    match path {
        [name] if COLLECTIONS.contains(name) => ApiError::MethodNotAllowed,
        _ => ApiError::NoRoute,
    }
}
