//! The admin API: organizations, workspaces, members, roles, service
//! accounts, keys, tags, settings and the audit log, as JSON over HTTP on a
//! listener of its own.
//!
//! Callers authenticate with the same API keys as the gateway, through the
//! gateway's own [`Authenticator`], and each endpoint requires one of the
//! same permission strings. Every write runs in one store transaction that
//! also writes its audit record, and then drops the gateway's key cache, so
//! that a change to an identity applies to the very next gateway request
//! of this process. Other processes see it within the cache lifetime.
//! `GET /openapi.json` serves the OpenAPI document generated from the
//! handlers.

mod error;
mod invitations;
mod keys;
mod openapi;
mod organization;
mod request;
mod roles;
mod router;
mod tags;
mod workspaces;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::authn::{Access, Authenticator};
use crate::identity::Identity;
use crate::store::sqlite::{Actor, DirectoryError};
use crate::store::SqliteStore;

pub use error::ApiError;
pub use openapi::openapi_json;

use request::Call;

/// How long in-flight admin requests may run after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Time a client has to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of the admin handlers.
pub struct AdminState {
    auth: Arc<Authenticator>,
    store: SqliteStore,
    /// Lets workspace Admins invite users into the organization.
    workspace_admins_can_invite: bool,
    /// The gateway's limits: live usage counts, and refreshed after limit
    /// changes. Without them, usage is read from the store.
    limits: Option<Arc<crate::limits::Limits>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field(
                "workspace_admins_can_invite",
                &self.workspace_admins_can_invite,
            )
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// `auth` must be the gateway's own authenticator, so that admin writes
    /// invalidate the cache the gateway reads.
    pub fn new(
        auth: Arc<Authenticator>,
        store: SqliteStore,
        workspace_admins_can_invite: bool,
    ) -> Self {
        Self {
            auth,
            store,
            workspace_admins_can_invite,
            limits: None,
        }
    }

    /// Shares the gateway's limits, so that usage reads are live and limit
    /// changes apply at once.
    pub fn with_limits(mut self, limits: Arc<crate::limits::Limits>) -> Self {
        self.limits = Some(limits);
        self
    }

    fn limits(&self) -> Option<&Arc<crate::limits::Limits>> {
        self.limits.as_ref()
    }

    /// Authorizes `permission` against the caller's organization role.
    async fn organization(&self, call: &Call, permission: &str) -> Result<Arc<Identity>, ApiError> {
        Ok(self
            .auth
            .authenticate_organization(call.headers(), permission)
            .await?)
    }

    /// Authorizes `permission` in `workspace`, named in the path.
    async fn workspace(
        &self,
        call: &Call,
        workspace: Uuid,
        permission: &str,
    ) -> Result<Access, ApiError> {
        Ok(self
            .auth
            .authenticate_workspace(call.headers(), workspace, permission)
            .await?)
    }

    /// Authenticates the caller without a permission: for endpoints whose
    /// permission depends on the target, or that act for the caller only.
    async fn caller(&self, call: &Call) -> Result<Arc<Identity>, ApiError> {
        Ok(self.auth.identify(call.headers()).await?)
    }

    /// Runs a store read on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteStore) -> Result<T, DirectoryError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ApiError::Internal(format!("the store task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// Runs a store write on the blocking pool as `actor`, then drops the
    /// key cache so that the gateway reloads every identity it resolves
    /// next. Dropping all entries is coarse, but admin writes are rare and
    /// it cannot miss a key that the change affects.
    async fn write<T, F>(&self, actor: Actor, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteStore, &Actor) -> Result<T, DirectoryError> + Send + 'static,
    {
        let result = self.read(move |store| f(store, &actor)).await;
        if result.is_ok() {
            self.auth.cache().invalidate_all();
        }
        result
    }
}

/// A bound, not yet running, admin API.
pub struct AdminServer {
    listener: TcpListener,
    state: Arc<AdminState>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("listener", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr, state: AdminState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::from_listener(listener, state))
    }

    pub fn from_listener(listener: TcpListener, state: AdminState) -> Self {
        Self {
            listener,
            state: Arc::new(state),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests
    /// finish, up to a grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let AdminServer { listener, state } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "admin API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let state = state.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, request).await) }
            });
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(client.addr = %client, %error, "admin connection ended with an error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "in-flight admin requests did not finish in time");
        }
        tracing::info!("admin API stopped");
    }
}

/// Handles one admin request.
async fn handle(state: &AdminState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let result = match Call::read(request).await {
        Ok(call) => router::route(state, &call).await,
        Err(error) => Err(error),
    };
    let response = match result {
        Ok(reply) => reply.into_response(),
        Err(error) => {
            error.log(&method, &path);
            error.into_response()
        }
    };
    tracing::debug!(
        target: "portcullis::admin::access",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        "admin request"
    );
    response
}
