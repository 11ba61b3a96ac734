//! Organization members, workspace members and invitations.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use uuid::Uuid;

use super::admin::{upsert_organization_member, upsert_workspace_member};
use super::audit::{record, snapshot, Actor, Change, DirectoryError, Page, PageRequest};
use super::directory::{check_email, load_organization, load_user, load_workspace, record_update};
use super::keys::{insert_key_row, Key};
use super::roles::{check_organization_role, check_workspace_role};
use super::{parse_uuid, NewKey, SqliteStore};
use crate::authz::ORGANIZATION_ADMIN;
use crate::credential::{KeyKind, SecretKey};
use crate::store::unix_now;

/// A member of an organization or a workspace, with the role held there.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub role_id: String,
    pub created_at: i64,
}

/// An invitation into an organization, and optionally into one of its
/// workspaces.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub email: String,
    /// The organization role the invitee gets.
    pub role_id: String,
    pub workspace_id: Option<Uuid>,
    pub workspace_role_id: Option<String>,
    pub invited_by: Option<String>,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `pending`, `accepted` or `revoked`.
    pub state: String,
}

/// An invitation to create.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub email: String,
    pub role_id: String,
    /// A workspace to join, with the workspace role to hold there.
    pub workspace: Option<(Uuid, String)>,
}

/// An accepted invitation, with a personal access token of the invitee in
/// the organization joined. The secret is not stored.
#[derive(Debug)]
pub struct Accepted {
    pub invitation: Invitation,
    pub key: Key,
    pub secret: SecretKey,
}

impl SqliteStore {
    pub fn list_members(
        &self,
        org: Uuid,
        page: PageRequest,
    ) -> Result<Page<Member>, DirectoryError> {
        let conn = self.lock();
        load_organization(&conn, org)?;
        let members = query_members(
            &conn,
            "SELECT m.user_id, u.email, m.role_id, m.created_at
             FROM organization_members m JOIN users u ON u.id = m.user_id
             WHERE m.organization_id = ?1 ORDER BY u.email LIMIT ?2 OFFSET ?3",
            org,
            page,
        )?;
        Ok(page.finish(members))
    }

    /// Changes a member's organization role.
    pub fn set_member_role(
        &self,
        actor: &Actor,
        org: Uuid,
        user: Uuid,
        role: &str,
    ) -> Result<Member, DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let organization = load_organization(&tx, org)?;
        check_organization_role(&organization.plan, role)?;
        let before = load_member(&tx, org, user)?;
        if before.role_id == ORGANIZATION_ADMIN && role != ORGANIZATION_ADMIN {
            ensure_other_admin(&tx, org, user)?;
        }
        upsert_organization_member(&tx, org, user, role)?;
        let after = load_member(&tx, org, user)?;
        record_update(
            &tx,
            actor,
            org,
            "member.set_role",
            "user",
            user,
            &before,
            &after,
        )?;
        tx.commit()?;
        Ok(after)
    }

    /// Removes a user from an organization and its workspaces, and revokes
    /// the user's personal access tokens there.
    pub fn remove_member(
        &self,
        actor: &Actor,
        org: Uuid,
        user: Uuid,
    ) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_member(&tx, org, user)?;
        if before.role_id == ORGANIZATION_ADMIN {
            ensure_other_admin(&tx, org, user)?;
        }
        tx.execute(
            "DELETE FROM workspace_members WHERE user_id = ?1 AND workspace_id IN
                 (SELECT id FROM workspaces WHERE organization_id = ?2)",
            params![user.to_string(), org.to_string()],
        )?;
        tx.execute(
            "DELETE FROM organization_members WHERE user_id = ?1 AND organization_id = ?2",
            params![user.to_string(), org.to_string()],
        )?;
        tx.execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3)
             WHERE user_id = ?1 AND organization_id = ?2 AND kind = 'pat'",
            params![user.to_string(), org.to_string(), unix_now()],
        )?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "member.remove",
                target_type: "user",
                target_id: user.to_string(),
                before: snapshot(&before),
                after: None,
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn list_workspace_members(
        &self,
        org: Uuid,
        ws: Uuid,
        page: PageRequest,
    ) -> Result<Page<Member>, DirectoryError> {
        let conn = self.lock();
        load_workspace(&conn, org, ws)?;
        let members = query_members(
            &conn,
            "SELECT m.user_id, u.email, m.role_id, m.created_at
             FROM workspace_members m JOIN users u ON u.id = m.user_id
             WHERE m.workspace_id = ?1 ORDER BY u.email LIMIT ?2 OFFSET ?3",
            ws,
            page,
        )?;
        Ok(page.finish(members))
    }

    /// Adds an organization member to a workspace with a workspace role, or
    /// changes the role held there.
    pub fn set_workspace_member(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        user: Uuid,
        role: &str,
    ) -> Result<Member, DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let organization = load_organization(&tx, org)?;
        load_workspace(&tx, org, ws)?;
        check_workspace_role(&tx, org, &organization.plan, "role", role)?;
        if load_member(&tx, org, user).is_err() {
            return Err(DirectoryError::invalid(
                "user_id",
                format!("user {user} is not a member of the organization; invite the user first"),
            ));
        }
        let before = load_workspace_member(&tx, ws, user)?;
        upsert_workspace_member(&tx, ws, user, role)?;
        let after = load_workspace_member(&tx, ws, user)?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "workspace_member.set_role",
                target_type: "workspace_member",
                target_id: format!("{ws}/{user}"),
                before: before.as_ref().and_then(snapshot),
                after: after.as_ref().and_then(snapshot),
            },
        )?;
        tx.commit()?;
        after.ok_or_else(|| DirectoryError::not_found("workspace member", user))
    }

    pub fn remove_workspace_member_as(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        user: Uuid,
    ) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        load_workspace(&tx, org, ws)?;
        let before = load_workspace_member(&tx, ws, user)?
            .ok_or_else(|| DirectoryError::not_found("workspace member", user))?;
        tx.execute(
            "DELETE FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
            params![ws.to_string(), user.to_string()],
        )?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "workspace_member.remove",
                target_type: "workspace_member",
                target_id: format!("{ws}/{user}"),
                before: snapshot(&before),
                after: None,
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Invites an email address into a shared organization.
    pub fn create_invitation(
        &self,
        actor: &Actor,
        org: Uuid,
        new: &NewInvitation,
    ) -> Result<Invitation, DirectoryError> {
        let email = check_email(&new.email)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let organization = load_organization(&tx, org)?;
        if organization.is_personal {
            return Err(DirectoryError::Forbidden {
                code: "personal_organization",
                detail: "a personal organization cannot invite users; \
                         create a shared organization to collaborate"
                    .into(),
            });
        }
        check_organization_role(&organization.plan, &new.role_id)?;
        if let Some((ws, role)) = &new.workspace {
            load_workspace(&tx, org, *ws).map_err(|_| {
                DirectoryError::invalid(
                    "workspace_id",
                    format!("no workspace {ws} in this organization"),
                )
            })?;
            check_workspace_role(&tx, org, &organization.plan, "workspace_role", role)?;
        }
        let is_member: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM organization_members m JOIN users u ON u.id = m.user_id
                            WHERE m.organization_id = ?1 AND u.email = ?2)",
            params![org.to_string(), email],
            |r| r.get(0),
        )?;
        if is_member {
            return Err(DirectoryError::conflict(
                "email",
                format!("{email} is already a member of the organization"),
            ));
        }
        let id = Uuid::new_v4();
        tx.execute(
            "INSERT INTO invitations (id, organization_id, email, role_id, workspace_id,
                                      workspace_role_id, invited_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id.to_string(),
                org.to_string(),
                email,
                new.role_id,
                new.workspace.as_ref().map(|(ws, _)| ws.to_string()),
                new.workspace.as_ref().map(|(_, role)| role.as_str()),
                actor.as_str(),
                unix_now(),
            ],
        )
        .map_err(super::audit::unique_on(
            "email",
            format!("{email} already has a pending invitation"),
        ))?;
        let invitation = load_invitation(&tx, org, id)?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "invitation.create",
                target_type: "invitation",
                target_id: id.to_string(),
                before: None,
                after: snapshot(&invitation),
            },
        )?;
        tx.commit()?;
        Ok(invitation)
    }

    pub fn list_invitations(
        &self,
        org: Uuid,
        page: PageRequest,
    ) -> Result<Page<Invitation>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id FROM invitations WHERE organization_id = ?1
             ORDER BY created_at DESC, id LIMIT ?2 OFFSET ?3",
        )?;
        let ids = stmt
            .query_map(
                params![org.to_string(), page.fetch(), page.sql_offset()],
                |r| r.get::<_, String>(0),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let invitations = ids
            .iter()
            .map(|id| load_invitation(&conn, org, parse_uuid("invitations", id)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(invitations))
    }

    pub fn invitation(&self, org: Uuid, id: Uuid) -> Result<Invitation, DirectoryError> {
        load_invitation(&self.lock(), org, id)
    }

    /// Revokes a pending invitation.
    pub fn revoke_invitation(
        &self,
        actor: &Actor,
        org: Uuid,
        id: Uuid,
    ) -> Result<Invitation, DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_invitation(&tx, org, id)?;
        if before.state != "pending" {
            return Err(DirectoryError::conflict(
                "invitation_id",
                format!("the invitation is already {}", before.state),
            ));
        }
        tx.execute(
            "UPDATE invitations SET revoked_at = ?2 WHERE id = ?1",
            params![id.to_string(), unix_now()],
        )?;
        let after = load_invitation(&tx, org, id)?;
        record_update(
            &tx,
            actor,
            org,
            "invitation.revoke",
            "invitation",
            id,
            &before,
            &after,
        )?;
        tx.commit()?;
        Ok(after)
    }

    /// Accepts a pending invitation for `user`, whose email must be the
    /// invited one, and creates the user's first personal access token in
    /// the organization.
    pub fn accept_invitation(
        &self,
        actor: &Actor,
        id: Uuid,
        user: Uuid,
    ) -> Result<Accepted, DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let org: Option<String> = tx
            .query_row(
                "SELECT organization_id FROM invitations WHERE id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let org = parse_uuid(
            "invitations",
            &org.ok_or_else(|| DirectoryError::not_found("invitation", id))?,
        )?;
        let before = load_invitation(&tx, org, id)?;
        let invitee = load_user(&tx, user)?;
        if !invitee.email.eq_ignore_ascii_case(&before.email) {
            // Reported as missing so that invitation ids cannot be probed.
            return Err(DirectoryError::not_found("invitation", id));
        }
        if before.state != "pending" {
            return Err(DirectoryError::conflict(
                "invitation_id",
                format!("the invitation is already {}", before.state),
            ));
        }
        if load_member(&tx, org, user).is_ok() {
            return Err(DirectoryError::conflict(
                "invitation_id",
                "the user is already a member",
            ));
        }
        upsert_organization_member(&tx, org, user, &before.role_id)?;
        if let (Some(ws), Some(role)) = (before.workspace_id, &before.workspace_role_id) {
            upsert_workspace_member(&tx, ws, user, role)?;
        }
        tx.execute(
            "UPDATE invitations SET accepted_at = ?2 WHERE id = ?1",
            params![id.to_string(), unix_now()],
        )?;
        let secret = SecretKey::generate(KeyKind::Personal);
        let new_key = NewKey {
            kind: KeyKind::Personal,
            organization_id: org,
            user_id: Some(user),
            service_account_id: None,
            workspace_id: None,
            description: "created on accepting an invitation".into(),
            expires_at: None,
        };
        let key = insert_key_row(
            &tx,
            &new_key,
            &secret.hash().0,
            &secret.display_prefix(),
            actor,
        )?;
        let after = load_invitation(&tx, org, id)?;
        record_update(
            &tx,
            actor,
            org,
            "invitation.accept",
            "invitation",
            id,
            &before,
            &after,
        )?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "key.create",
                target_type: "key",
                target_id: key.id.to_string(),
                before: None,
                after: snapshot(&key),
            },
        )?;
        tx.commit()?;
        Ok(Accepted {
            invitation: after,
            key,
            secret,
        })
    }
}

fn query_members(
    conn: &Connection,
    sql: &str,
    scope: Uuid,
    page: PageRequest,
) -> Result<Vec<Member>, DirectoryError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt
        .query_map(
            params![scope.to_string(), page.fetch(), page.sql_offset()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(user, email, role_id, created_at)| {
            Ok(Member {
                user_id: parse_uuid("users", &user)?,
                email,
                role_id,
                created_at,
            })
        })
        .collect()
}

pub(crate) fn load_member(
    conn: &Connection,
    org: Uuid,
    user: Uuid,
) -> Result<Member, DirectoryError> {
    conn.query_row(
        "SELECT u.email, m.role_id, m.created_at FROM organization_members m
         JOIN users u ON u.id = m.user_id WHERE m.organization_id = ?1 AND m.user_id = ?2",
        params![org.to_string(), user.to_string()],
        |r| {
            Ok(Member {
                user_id: user,
                email: r.get(0)?,
                role_id: r.get(1)?,
                created_at: r.get(2)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| DirectoryError::not_found("member", user))
}

fn load_workspace_member(
    conn: &Connection,
    ws: Uuid,
    user: Uuid,
) -> Result<Option<Member>, DirectoryError> {
    Ok(conn
        .query_row(
            "SELECT u.email, m.role_id, m.created_at FROM workspace_members m
             JOIN users u ON u.id = m.user_id WHERE m.workspace_id = ?1 AND m.user_id = ?2",
            params![ws.to_string(), user.to_string()],
            |r| {
                Ok(Member {
                    user_id: user,
                    email: r.get(0)?,
                    role_id: r.get(1)?,
                    created_at: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Rejects a change that would leave the organization without an
/// Organization Admin.
fn ensure_other_admin(conn: &Connection, org: Uuid, user: Uuid) -> Result<(), DirectoryError> {
    let others: i64 = conn.query_row(
        "SELECT COUNT(*) FROM organization_members
         WHERE organization_id = ?1 AND role_id = ?2 AND user_id <> ?3",
        params![org.to_string(), ORGANIZATION_ADMIN, user.to_string()],
        |r| r.get(0),
    )?;
    if others == 0 {
        return Err(DirectoryError::conflict(
            "user_id",
            "the organization would have no Organization Admin left; make another member admin first",
        ));
    }
    Ok(())
}

fn load_invitation(conn: &Connection, org: Uuid, id: Uuid) -> Result<Invitation, DirectoryError> {
    let row = conn
        .query_row(
            "SELECT email, role_id, workspace_id, workspace_role_id, invited_by, created_at,
                    accepted_at, revoked_at
             FROM invitations WHERE id = ?1 AND organization_id = ?2",
            params![id.to_string(), org.to_string()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| DirectoryError::not_found("invitation", id))?;
    let (email, role_id, ws, workspace_role_id, invited_by, created_at, accepted_at, revoked_at) =
        row;
    let state = match (accepted_at, revoked_at) {
        (Some(_), _) => "accepted",
        (None, Some(_)) => "revoked",
        (None, None) => "pending",
    };
    Ok(Invitation {
        id,
        organization_id: org,
        email,
        role_id,
        workspace_id: ws
            .as_deref()
            .map(|s| parse_uuid("invitations", s))
            .transpose()?,
        workspace_role_id,
        invited_by,
        created_at,
        accepted_at,
        revoked_at,
        state: state.to_string(),
    })
}
