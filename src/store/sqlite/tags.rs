//! Resource tags: tag keys and their values per workspace, and taggings of
//! workspace resources.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use uuid::Uuid;

use super::audit::{record, snapshot, unique_on, Actor, Change, DirectoryError, Page, PageRequest};
use super::directory::{check_name, load_organization, load_workspace};
use super::{parse_uuid, SqliteStore};
use crate::store::unix_now;

/// Resource types that can carry tags.
pub const RESOURCE_TYPES: &[&str] = &[
    "project",
    "dataset",
    "annotation_queue",
    "deployment",
    "experiment",
    "prompt",
];

/// A tag key of a workspace.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TagKey {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub key: String,
    pub description: String,
    pub created_at: i64,
}

/// One value of a tag key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TagValue {
    pub id: Uuid,
    pub tag_key_id: Uuid,
    pub value: String,
    pub created_at: i64,
}

/// A tag value on a resource.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tagging {
    pub id: Uuid,
    pub tag_value_id: Uuid,
    pub key: String,
    pub value: String,
    /// One of `project`, `dataset`, `annotation_queue`, `deployment`,
    /// `experiment`, `prompt`.
    pub resource_type: String,
    pub resource_id: String,
    pub created_at: i64,
}

/// Which taggings to list.
#[derive(Debug, Clone)]
pub enum TaggingFilter {
    /// The resources that carry a tag value.
    Value(Uuid),
    /// The tags on one resource.
    Resource {
        resource_type: String,
        resource_id: String,
    },
    All,
}

impl SqliteStore {
    pub fn list_tag_keys(
        &self,
        org: Uuid,
        ws: Uuid,
        page: PageRequest,
    ) -> Result<Page<TagKey>, DirectoryError> {
        let conn = self.lock();
        load_workspace(&conn, org, ws)?;
        let mut stmt = conn.prepare(
            "SELECT id, key, description, created_at FROM tag_keys WHERE workspace_id = ?1
             ORDER BY key LIMIT ?2 OFFSET ?3",
        )?;
        let rows = stmt
            .query_map(
                params![ws.to_string(), page.fetch(), page.sql_offset()],
                |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let keys = rows
            .into_iter()
            .map(|(id, key, description, created_at)| {
                Ok(TagKey {
                    id: parse_uuid("tag_keys", &id)?,
                    workspace_id: ws,
                    key,
                    description,
                    created_at,
                })
            })
            .collect::<Result<Vec<_>, DirectoryError>>()?;
        Ok(page.finish(keys))
    }

    pub fn create_tag_key(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        key: &str,
        description: &str,
    ) -> Result<TagKey, DirectoryError> {
        let key = check_name("key", key)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_tags(&tx, org)?;
        load_workspace(&tx, org, ws)?;
        let id = Uuid::new_v4();
        tx.execute(
            "INSERT INTO tag_keys (id, workspace_id, key, description, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.to_string(), ws.to_string(), key, description, unix_now()],
        )
        .map_err(unique_on(
            "key",
            format!("the tag key {key:?} exists in this workspace"),
        ))?;
        let created = load_tag_key(&tx, ws, id)?;
        record_tag_change(
            &tx,
            actor,
            org,
            "tag_key.create",
            "tag_key",
            id,
            None,
            snapshot(&created),
        )?;
        tx.commit()?;
        Ok(created)
    }

    /// Deletes a tag key with its values and taggings.
    pub fn delete_tag_key(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        id: Uuid,
    ) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_tags(&tx, org)?;
        load_workspace(&tx, org, ws)?;
        let before = load_tag_key(&tx, ws, id)?;
        tx.execute(
            "DELETE FROM tag_keys WHERE id = ?1",
            params![id.to_string()],
        )?;
        record_tag_change(
            &tx,
            actor,
            org,
            "tag_key.delete",
            "tag_key",
            id,
            snapshot(&before),
            None,
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn list_tag_values(
        &self,
        org: Uuid,
        ws: Uuid,
        key: Uuid,
        page: PageRequest,
    ) -> Result<Page<TagValue>, DirectoryError> {
        let conn = self.lock();
        load_workspace(&conn, org, ws)?;
        load_tag_key(&conn, ws, key)?;
        let mut stmt = conn.prepare(
            "SELECT id, value, created_at FROM tag_values WHERE tag_key_id = ?1
             ORDER BY value LIMIT ?2 OFFSET ?3",
        )?;
        let rows = stmt
            .query_map(
                params![key.to_string(), page.fetch(), page.sql_offset()],
                |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let values = rows
            .into_iter()
            .map(|(id, value, created_at)| {
                Ok(TagValue {
                    id: parse_uuid("tag_values", &id)?,
                    tag_key_id: key,
                    value,
                    created_at,
                })
            })
            .collect::<Result<Vec<_>, DirectoryError>>()?;
        Ok(page.finish(values))
    }

    pub fn create_tag_value(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        key: Uuid,
        value: &str,
    ) -> Result<TagValue, DirectoryError> {
        let value = check_name("value", value)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_tags(&tx, org)?;
        load_workspace(&tx, org, ws)?;
        load_tag_key(&tx, ws, key)?;
        let id = Uuid::new_v4();
        let now = unix_now();
        tx.execute(
            "INSERT INTO tag_values (id, tag_key_id, value, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id.to_string(), key.to_string(), value, now],
        )
        .map_err(unique_on(
            "value",
            format!("the value {value:?} exists for this tag key"),
        ))?;
        let created = TagValue {
            id,
            tag_key_id: key,
            value: value.to_string(),
            created_at: now,
        };
        record_tag_change(
            &tx,
            actor,
            org,
            "tag_value.create",
            "tag_value",
            id,
            None,
            snapshot(&created),
        )?;
        tx.commit()?;
        Ok(created)
    }

    /// Lists taggings of a workspace, newest first.
    pub fn list_taggings(
        &self,
        org: Uuid,
        ws: Uuid,
        filter: &TaggingFilter,
        page: PageRequest,
    ) -> Result<Page<Tagging>, DirectoryError> {
        let conn = self.lock();
        load_workspace(&conn, org, ws)?;
        let (value, resource_type, resource_id) = match filter {
            TaggingFilter::Value(id) => (Some(id.to_string()), None, None),
            TaggingFilter::Resource {
                resource_type,
                resource_id,
            } => (
                None,
                Some(resource_type.as_str()),
                Some(resource_id.as_str()),
            ),
            TaggingFilter::All => (None, None, None),
        };
        let mut stmt = conn.prepare(&format!(
            "{TAGGING_SELECT}
             WHERE k.workspace_id = ?1 AND (?2 IS NULL OR t.tag_value_id = ?2)
               AND (?3 IS NULL OR t.resource_type = ?3) AND (?4 IS NULL OR t.resource_id = ?4)
             ORDER BY t.created_at DESC, t.id LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    ws.to_string(),
                    value,
                    resource_type,
                    resource_id,
                    page.fetch(),
                    page.sql_offset()
                ],
                tagging_from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let taggings = rows
            .into_iter()
            .collect::<Result<Vec<_>, DirectoryError>>()?;
        Ok(page.finish(taggings))
    }

    /// Puts a tag value on a resource of the workspace.
    pub fn create_tagging(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        value: Uuid,
        resource_type: &str,
        resource_id: &str,
    ) -> Result<Tagging, DirectoryError> {
        if !RESOURCE_TYPES.contains(&resource_type) {
            return Err(DirectoryError::invalid(
                "resource_type",
                format!(
                    "unknown resource type {resource_type:?}: expected one of {}",
                    RESOURCE_TYPES.join(", ")
                ),
            ));
        }
        let resource_id = check_name("resource_id", resource_id)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_tags(&tx, org)?;
        load_workspace(&tx, org, ws)?;
        let known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM tag_values v JOIN tag_keys k ON k.id = v.tag_key_id
                            WHERE v.id = ?1 AND k.workspace_id = ?2)",
            params![value.to_string(), ws.to_string()],
            |r| r.get(0),
        )?;
        if !known {
            return Err(DirectoryError::invalid(
                "tag_value_id",
                format!("no tag value {value} in this workspace"),
            ));
        }
        let id = Uuid::new_v4();
        tx.execute(
            "INSERT INTO taggings (id, tag_value_id, resource_type, resource_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id.to_string(),
                value.to_string(),
                resource_type,
                resource_id,
                unix_now()
            ],
        )
        .map_err(unique_on(
            "tag_value_id",
            "the resource already carries this tag value",
        ))?;
        let created = load_tagging(&tx, ws, id)?;
        record_tag_change(
            &tx,
            actor,
            org,
            "tagging.create",
            "tagging",
            id,
            None,
            snapshot(&created),
        )?;
        tx.commit()?;
        Ok(created)
    }

    pub fn delete_tagging(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        id: Uuid,
    ) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_tags(&tx, org)?;
        load_workspace(&tx, org, ws)?;
        let before = load_tagging(&tx, ws, id)?;
        tx.execute(
            "DELETE FROM taggings WHERE id = ?1",
            params![id.to_string()],
        )?;
        record_tag_change(
            &tx,
            actor,
            org,
            "tagging.delete",
            "tagging",
            id,
            snapshot(&before),
            None,
        )?;
        tx.commit()?;
        Ok(())
    }
}

const TAGGING_SELECT: &str = "SELECT t.id, t.tag_value_id, k.key, v.value, t.resource_type,
        t.resource_id, t.created_at
     FROM taggings t JOIN tag_values v ON v.id = t.tag_value_id
     JOIN tag_keys k ON k.id = v.tag_key_id";

fn tagging_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Tagging, DirectoryError>> {
    let id: String = r.get(0)?;
    let value_id: String = r.get(1)?;
    let key = r.get(2)?;
    let value = r.get(3)?;
    let resource_type = r.get(4)?;
    let resource_id = r.get(5)?;
    let created_at = r.get(6)?;
    Ok((|| {
        Ok(Tagging {
            id: parse_uuid("taggings", &id)?,
            tag_value_id: parse_uuid("taggings", &value_id)?,
            key,
            value,
            resource_type,
            resource_id,
            created_at,
        })
    })())
}

fn load_tagging(conn: &Connection, ws: Uuid, id: Uuid) -> Result<Tagging, DirectoryError> {
    conn.query_row(
        &format!("{TAGGING_SELECT} WHERE t.id = ?1 AND k.workspace_id = ?2"),
        params![id.to_string(), ws.to_string()],
        tagging_from_row,
    )
    .optional()?
    .ok_or_else(|| DirectoryError::not_found("tagging", id))?
}

fn load_tag_key(conn: &Connection, ws: Uuid, id: Uuid) -> Result<TagKey, DirectoryError> {
    conn.query_row(
        "SELECT key, description, created_at FROM tag_keys WHERE id = ?1 AND workspace_id = ?2",
        params![id.to_string(), ws.to_string()],
        |r| {
            Ok(TagKey {
                id,
                workspace_id: ws,
                key: r.get(0)?,
                description: r.get(1)?,
                created_at: r.get(2)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| DirectoryError::not_found("tag key", id))
}

fn require_tags(conn: &Connection, org: Uuid) -> Result<(), DirectoryError> {
    let plan = load_organization(conn, org)?.plan;
    if plan.resource_tags {
        Ok(())
    } else {
        Err(DirectoryError::PlanFeature(format!(
            "the {} plan has no resource tags",
            plan.name
        )))
    }
}

#[allow(clippy::too_many_arguments)]
fn record_tag_change(
    conn: &Connection,
    actor: &Actor,
    org: Uuid,
    action: &str,
    target_type: &str,
    id: Uuid,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<(), DirectoryError> {
    record(
        conn,
        actor,
        Change {
            organization_id: Some(org),
            action,
            target_type,
            target_id: id.to_string(),
            before,
            after,
        },
    )?;
    Ok(())
}
