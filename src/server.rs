//! The listener: accepts connections, serves HTTP/1.1 and cleartext HTTP/2
//! on them, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::proxy::framing::{HeadLog, InspectedStream};
use crate::proxy::Gateway;
use crate::store::Store;
use crate::tls::CertificateSource;

/// How often pending key uses are written to the store.
const KEY_USE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// A bound, not yet running, gateway.
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    /// The config file to watch, with the digest of the loaded version.
    config_path: Option<(PathBuf, Option<[u8; 32]>)>,
    tls: Option<Arc<CertificateSource>>,
    gateway: Arc<Gateway>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the configured gateway and metrics addresses.
    pub async fn bind(config: Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.listen).await?;
        let metrics = TcpListener::bind(config.metrics_listen).await?;
        let tls = match &config.tls {
            Some(tls) => Some(Arc::new(CertificateSource::load(&tls.cert, &tls.key)?)),
            None => None,
        };
        let gateway = Gateway::new(Arc::new(config), store)?;
        let mut server = Self::from_gateway(listener, gateway).with_metrics_listener(metrics);
        server.tls = tls;
        Ok(server)
    }

    /// Serves on an already bound listener, without TLS or a metrics
    /// listener. Panics if an upstream's TLS files cannot be read, which a
    /// validated configuration has already checked; use [`Server::bind`]
    /// to get that as an error.
    pub fn from_listener(listener: TcpListener, config: Config, store: Arc<dyn Store>) -> Self {
        let gateway = Gateway::new(Arc::new(config), store)
            .unwrap_or_else(|e| panic!("cannot set up the upstreams: {e}"));
        Self::from_gateway(listener, gateway)
    }

    /// Terminates TLS with the certificate from `source`.
    pub fn with_tls(mut self, source: Arc<CertificateSource>) -> Self {
        self.tls = Some(source);
        self
    }

    /// Serves `gateway` on an already bound listener.
    pub fn from_gateway(listener: TcpListener, gateway: Gateway) -> Self {
        Self {
            listener,
            metrics_listener: None,
            config_path: None,
            tls: None,
            gateway: Arc::new(gateway),
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener`.
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// Reloads the configuration from `path` on SIGHUP and, if the
    /// configuration asks for it, when the file changes.
    pub fn with_config_path(mut self, path: PathBuf) -> Self {
        let loaded = crate::reload::digest(&path);
        self.config_path = Some((path, loaded));
        self
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish (up to a grace period) and writes pending
    /// key uses and usage counters.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            metrics_listener,
            config_path,
            tls,
            gateway,
        } = self;
        let limits = gateway.config().limits;
        let mut background = Vec::new();
        if let Some(metrics_listener) = metrics_listener {
            background.push(tokio::spawn(crate::metrics::listener::serve(
                metrics_listener,
                gateway.clone(),
            )));
        }
        if let Some((path, loaded)) = config_path {
            background.push(tokio::spawn(crate::reload::watch(
                gateway.clone(),
                path,
                loaded,
            )));
        }
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let acceptor = match tls {
            None => None,
            Some(source) => {
                background.push(tokio::spawn(source.clone().watch()));
                match crate::tls::server_config(source) {
                    Ok(config) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                    Err(error) => {
                        tracing::error!(%error, "cannot set up TLS; not serving");
                        return;
                    }
                }
            }
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
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

        gateway.limits().load().await;
        let (stop_limits, limits_stopped) = tokio::sync::oneshot::channel::<()>();
        let limits_task = {
            let gateway = gateway.clone();
            let config = gateway.config().request_limits.clone();
            tokio::spawn(async move {
                let stop = async {
                    let _ = limits_stopped.await;
                };
                gateway.limits().maintain(&config, stop).await;
            })
        };

        tokio::pin!(shutdown);
        loop {
            // Waiting for a permit before accepting leaves extra connections
            // in the kernel's backlog instead of failing them.
            let permit = tokio::select! {
                permit = connections.clone().acquire_owned() => {
                    permit.expect("the semaphore is never closed")
                }
                () = &mut shutdown => break,
            };
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
            let active = gateway.metrics().active_connections.clone();
            active.inc();
            let context = ConnectionContext {
                gateway: gateway.clone(),
                builder: builder.clone(),
                watcher: graceful.watcher(),
                client,
                max_header_bytes: limits.max_header_bytes,
            };
            let acceptor = acceptor.clone();
            let handshake_timeout = limits.header_read_timeout;
            tokio::spawn(async move {
                match acceptor {
                    None => context.serve(stream, "http").await,
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                        match handshake {
                            Ok(Ok(stream)) => context.serve(stream, "https").await,
                            Ok(Err(error)) => {
                                tracing::debug!(client.addr = %client, %error, "TLS handshake failed");
                            }
                            Err(_) => {
                                tracing::debug!(client.addr = %client, "TLS handshake timed out");
                            }
                        }
                    }
                }
                active.dec();
                drop(permit);
            });
        }

        tracing::info!("shutting down: no new connections");
        drop(listener);
        let grace = limits.shutdown_timeout;
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(?grace, "in-flight requests did not finish in time");
        }
        flusher.abort();
        for task in background {
            task.abort();
        }
        gateway.auth().flush_key_uses().await;
        // Stopped, not aborted, so that a write in progress completes
        // before the last one.
        let _ = stop_limits.send(());
        let _ = limits_task.await;
        gateway.limits().flush_usage().await;
        tracing::info!("stopped");
    }
}

/// What serving one connection needs.
struct ConnectionContext {
    gateway: Arc<Gateway>,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    client: SocketAddr,
    max_header_bytes: usize,
}

impl ConnectionContext {
    /// Serves HTTP/1.1 or HTTP/2 on `stream` until the connection ends.
    /// `scheme` is what the client used, for `X-Forwarded-Proto`.
    async fn serve<S>(self, stream: S, scheme: &'static str)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let ConnectionContext {
            gateway,
            builder,
            watcher,
            client,
            max_header_bytes,
        } = self;
        let heads = Arc::new(HeadLog::default());
        let stream = InspectedStream::new(stream, heads.clone(), max_header_bytes);
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // hyper calls the service once per HTTP/1 head, in the order
            // the heads arrived, so the oldest queued head is this one.
            if request.version() < Version::HTTP_2 {
                if let Some(head) = heads.pop() {
                    request.extensions_mut().insert(head);
                }
            }
            let gateway = gateway.clone();
            async move {
                Ok::<_, std::convert::Infallible>(gateway.handle(request, client, scheme).await)
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(client.addr = %client, %error, "connection ended with an error");
        }
    }
}
