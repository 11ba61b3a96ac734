//! A key resolved to who it acts for and where: the value the key cache
//! holds. It carries no decision; permissions are checked per request.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use http::HeaderValue;
use uuid::Uuid;

use crate::credential::KeyKind;

/// Principal a key acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    User(Uuid),
    ServiceAccount(Uuid),
    /// A legacy key with no recorded owner: it acts for its workspace.
    Workspace,
}

/// Whether a key may be used at all, apart from its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Active,
    Disabled,
    Revoked,
}

/// A workspace's default retention tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionTier {
    /// 14 days.
    Base,
    /// 400 days.
    Extended,
}

impl RetentionTier {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionTier::Base => "base",
            RetentionTier::Extended => "extended",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "base" => Some(RetentionTier::Base),
            "extended" => Some(RetentionTier::Extended),
            _ => None,
        }
    }
}

/// A role as it applies in one workspace: the workspace role's permissions
/// merged with the principal's organization-level ones.
#[derive(Debug)]
pub struct EffectiveRole {
    pub name: Arc<str>,
    /// Sorted, without duplicates.
    permissions: Box<[Box<str>]>,
    name_header: HeaderValue,
    permissions_header: HeaderValue,
}

impl EffectiveRole {
    pub fn new(name: &str, mut permissions: Vec<String>) -> Self {
        permissions.sort();
        permissions.dedup();
        let joined = permissions.join(",");
        Self {
            name: name.into(),
            name_header: header_value(name),
            permissions_header: header_value(&joined),
            permissions: permissions
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
        }
    }

    pub fn grants(&self, permission: &str) -> bool {
        self.permissions
            .binary_search_by(|p| (**p).cmp(permission))
            .is_ok()
    }

    pub fn permissions(&self) -> impl Iterator<Item = &str> {
        self.permissions.iter().map(|p| &**p)
    }

    pub fn name_header(&self) -> &HeaderValue {
        &self.name_header
    }

    /// Returns all permissions, comma-separated, as a header value.
    pub fn permissions_header(&self) -> &HeaderValue {
        &self.permissions_header
    }
}

/// Role and retention tier of a key in one workspace.
#[derive(Debug)]
pub struct WorkspaceGrant {
    pub workspace_id: Uuid,
    pub workspace_header: HeaderValue,
    pub retention: RetentionTier,
    pub role: Arc<EffectiveRole>,
}

impl WorkspaceGrant {
    pub fn new(workspace_id: Uuid, retention: RetentionTier, role: Arc<EffectiveRole>) -> Self {
        Self {
            workspace_id,
            workspace_header: uuid_header(workspace_id),
            retention,
            role,
        }
    }
}

/// A resolved key.
#[derive(Debug)]
pub struct Identity {
    pub key_id: Uuid,
    pub kind: KeyKind,
    pub principal: Principal,
    pub org_id: Uuid,
    pub state: KeyState,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Sorted by workspace id.
    pub workspaces: Box<[WorkspaceGrant]>,
    pub key_id_header: HeaderValue,
    pub org_id_header: HeaderValue,
    pub principal_header: Option<HeaderValue>,
    /// The owner's organization-level permissions (its organization role),
    /// or `None` for keys that act only in a workspace, such as legacy keys.
    pub organization_role: Option<Arc<EffectiveRole>>,
    /// Unix seconds of the last use written out, to batch `last_used` writes.
    last_use_noted: AtomicI64,
}

impl Identity {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key_id: Uuid,
        kind: KeyKind,
        principal: Principal,
        org_id: Uuid,
        state: KeyState,
        expires_at: Option<i64>,
        mut workspaces: Vec<WorkspaceGrant>,
    ) -> Self {
        workspaces.sort_by_key(|g| g.workspace_id);
        let principal_header = match principal {
            Principal::User(id) | Principal::ServiceAccount(id) => Some(uuid_header(id)),
            Principal::Workspace => None,
        };
        Self {
            key_id,
            kind,
            principal,
            org_id,
            state,
            expires_at,
            workspaces: workspaces.into_boxed_slice(),
            key_id_header: uuid_header(key_id),
            org_id_header: uuid_header(org_id),
            principal_header,
            organization_role: None,
            last_use_noted: AtomicI64::new(0),
        }
    }

    /// Sets the owner's organization role.
    pub fn with_organization_role(mut self, role: Arc<EffectiveRole>) -> Self {
        self.organization_role = Some(role);
        self
    }

    /// Returns the grant for `workspace_id`, if the key can reach it.
    pub fn workspace(&self, workspace_id: Uuid) -> Option<&WorkspaceGrant> {
        self.workspace_index(workspace_id)
            .map(|i| &self.workspaces[i])
    }

    /// Returns the index in `workspaces` of the grant for `workspace_id`.
    pub fn workspace_index(&self, workspace_id: Uuid) -> Option<usize> {
        self.workspaces
            .binary_search_by_key(&workspace_id, |g| g.workspace_id)
            .ok()
    }

    /// Returns true at most once per `interval_secs` so that the caller
    /// records a use without writing on every request.
    pub fn should_note_use(&self, now: i64, interval_secs: i64) -> bool {
        let last = self.last_use_noted.load(Ordering::Relaxed);
        now - last >= interval_secs
            && self
                .last_use_noted
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

fn uuid_header(id: Uuid) -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .expect("a UUID is a valid header value")
}

fn header_value(text: &str) -> HeaderValue {
    // Role names and permissions are validated to printable ASCII when
    // written; anything else is dropped rather than sent garbled.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}
