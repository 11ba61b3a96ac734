//! Resource tag endpoints. Reading tags needs `workspaces:read` in the
//! workspace; changing them needs `workspaces:manage`.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::organization::PageParams;
use super::request::{Call, Reply};
use super::{AdminState, ApiError};
use crate::store::sqlite::tags::{TagKey, TagValue, Tagging, TaggingFilter};
use crate::store::sqlite::{Actor, Page};

/// A tag key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTagKey {
    pub key: String,
    #[serde(default)]
    pub description: String,
}

/// A tag value to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTagValue {
    pub value: String,
}

/// A tag value to put on a resource.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTagging {
    pub tag_value_id: Uuid,
    /// One of `project`, `dataset`, `annotation_queue`, `deployment`,
    /// `experiment`, `prompt`.
    pub resource_type: String,
    pub resource_id: String,
}

/// Filters of the taggings list: a tag value (which resources carry it),
/// or a resource (which tags it carries).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TaggingParams {
    tag_value_id: Option<Uuid>,
    resource_type: Option<String>,
    resource_id: Option<String>,
}

/// Lists a workspace's tag keys. Permission: `workspaces:read`.
#[utoipa::path(get, path = "/v1/workspaces/{workspace_id}/tag-keys", tag = "tags",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"), PageParams),
    responses((status = 200, body = Page<TagKey>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn keys(state: &AdminState, call: &Call, ws: Uuid) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:read").await?;
    let (org, page) = (access.identity.org_id, call.page()?);
    Reply::ok(&state.read(move |s| s.list_tag_keys(org, ws, page)).await?)
}

/// Creates a tag key. Permission: `workspaces:manage`.
#[utoipa::path(post, path = "/v1/workspaces/{workspace_id}/tag-keys", tag = "tags", request_body = CreateTagKey,
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 201, body = TagKey), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create_key(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:manage").await?;
    let body: CreateTagKey = call.json()?;
    let org = access.identity.org_id;
    let created = state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.create_tag_key(actor, org, ws, &body.key, &body.description)
        })
        .await?;
    Reply::created(&created)
}

/// Deletes a tag key with its values and taggings. Permission:
/// `workspaces:manage`.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace_id}/tag-keys/{tag_key_id}", tag = "tags",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"),
           ("tag_key_id" = Uuid, Path, description = "The tag key id")),
    responses((status = 204), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn delete_key(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
    key: Uuid,
) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:manage").await?;
    let org = access.identity.org_id;
    state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.delete_tag_key(actor, org, ws, key)
        })
        .await?;
    Reply::no_content()
}

/// Lists a tag key's values. Permission: `workspaces:read`.
#[utoipa::path(get, path = "/v1/workspaces/{workspace_id}/tag-keys/{tag_key_id}/values", tag = "tags",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"),
           ("tag_key_id" = Uuid, Path, description = "The tag key id"), PageParams),
    responses((status = 200, body = Page<TagValue>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn values(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
    key: Uuid,
) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:read").await?;
    let (org, page) = (access.identity.org_id, call.page()?);
    Reply::ok(
        &state
            .read(move |s| s.list_tag_values(org, ws, key, page))
            .await?,
    )
}

/// Creates a value of a tag key. Permission: `workspaces:manage`.
#[utoipa::path(post, path = "/v1/workspaces/{workspace_id}/tag-keys/{tag_key_id}/values", tag = "tags",
    request_body = CreateTagValue,
    params(("workspace_id" = Uuid, Path, description = "The workspace id"),
           ("tag_key_id" = Uuid, Path, description = "The tag key id")),
    responses((status = 201, body = TagValue), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create_value(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
    key: Uuid,
) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:manage").await?;
    let body: CreateTagValue = call.json()?;
    let org = access.identity.org_id;
    let created = state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.create_tag_value(actor, org, ws, key, &body.value)
        })
        .await?;
    Reply::created(&created)
}

/// Lists taggings: the resources that carry `tag_value_id`, or the tags on
/// the resource `resource_type` + `resource_id`. Permission:
/// `workspaces:read`.
#[utoipa::path(get, path = "/v1/workspaces/{workspace_id}/taggings", tag = "tags",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"), TaggingParams, PageParams),
    responses((status = 200, body = Page<Tagging>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn taggings(state: &AdminState, call: &Call, ws: Uuid) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:read").await?;
    let value = call.query_uuid("tag_value_id")?;
    let resource_type = call.query("resource_type")?;
    let resource_id = call.query("resource_id")?;
    let filter = match (value, resource_type, resource_id) {
        (Some(value), None, None) => TaggingFilter::Value(value),
        (None, Some(resource_type), Some(resource_id)) => TaggingFilter::Resource {
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
        },
        (None, None, None) => TaggingFilter::All,
        (Some(_), _, _) => {
            return Err(ApiError::bad_request(
                "tag_value_id",
                "filter by a tag value or by a resource, not both",
            ))
        }
        (None, _, _) => {
            return Err(ApiError::bad_request(
                "resource_id",
                "resource_type and resource_id go together",
            ))
        }
    };
    let (org, page) = (access.identity.org_id, call.page()?);
    Reply::ok(
        &state
            .read(move |s| s.list_taggings(org, ws, &filter, page))
            .await?,
    )
}

/// Puts a tag value on a resource. Permission: `workspaces:manage`.
#[utoipa::path(post, path = "/v1/workspaces/{workspace_id}/taggings", tag = "tags", request_body = CreateTagging,
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 201, body = Tagging), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create_tagging(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:manage").await?;
    let body: CreateTagging = call.json()?;
    let org = access.identity.org_id;
    let created = state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.create_tagging(
                actor,
                org,
                ws,
                body.tag_value_id,
                &body.resource_type,
                &body.resource_id,
            )
        })
        .await?;
    Reply::created(&created)
}

/// Removes a tag value from a resource. Permission: `workspaces:manage`.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace_id}/taggings/{tagging_id}", tag = "tags",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"),
           ("tagging_id" = Uuid, Path, description = "The tagging id")),
    responses((status = 204), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn delete_tagging(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
    id: Uuid,
) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:manage").await?;
    let org = access.identity.org_id;
    state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.delete_tagging(actor, org, ws, id)
        })
        .await?;
    Reply::no_content()
}
