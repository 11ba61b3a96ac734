//! The listener: accepts connections, serves HTTP/1.1 and cleartext HTTP/2
//! on them, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::proxy::framing::{HeadLog, InspectedStream};
use crate::proxy::Gateway;
use crate::store::Store;

/// How often pending key uses are written to the store.
const KEY_USE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);
/// How long in-flight requests may run after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A bound, not yet running, gateway.
pub struct Server {
    listener: TcpListener,
    gateway: Arc<Gateway>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the configured listen address.
    pub async fn bind(config: Config, store: Arc<dyn Store>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self::from_listener(listener, config, store))
    }

    /// Serves on an already bound listener.
    pub fn from_listener(listener: TcpListener, config: Config, store: Arc<dyn Store>) -> Self {
        let gateway = Arc::new(Gateway::new(Arc::new(config), store));
        Self { listener, gateway }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish (up to a grace period) and writes pending
    /// key uses.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, gateway } = self;
        let limits = gateway.config().limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes);
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();

        let flusher = {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(KEY_USE_FLUSH_INTERVAL);
                loop {
                    interval.tick().await;
                    gateway.auth().flush_key_uses().await;
                }
            })
        };

        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Running out of file descriptors is the usual cause;
                        // back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let gateway = gateway.clone();
            let heads = Arc::new(HeadLog::default());
            let stream = InspectedStream::new(stream, heads.clone(), limits.max_header_bytes);
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                // hyper calls the service once per HTTP/1 head, in the order
                // the heads arrived, so the oldest queued head is this one.
                if request.version() < Version::HTTP_2 {
                    if let Some(head) = heads.pop() {
                        request.extensions_mut().insert(head);
                    }
                }
                let gateway = gateway.clone();
                async move { Ok::<_, std::convert::Infallible>(gateway.handle(request, client).await) }
            });
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(client.addr = %client, %error, "connection ended with an error");
                }
            });
        }

        tracing::info!("shutting down: no new connections");
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "in-flight requests did not finish in time");
        }
        flusher.abort();
        gateway.auth().flush_key_uses().await;
        tracing::info!("stopped");
    }
}
