//! The operations listener: `/metrics` in the Prometheus text format,
//! `/healthz` (the process runs) and `/readyz` (the configuration is loaded
//! and the store answers).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::proxy::Gateway;

/// Time the store has to answer a readiness check.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the operations endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(answer(&gateway, &request).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

async fn answer(gateway: &Gateway, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match request.uri().path() {
        "/metrics" => {
            let metrics = gateway.metrics();
            metrics.set_key_cache_entries(gateway.auth().cache().entry_count());
            let mut response = text(StatusCode::OK, &metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let ping = tokio::time::timeout(READINESS_TIMEOUT, gateway.auth().store().ping()).await;
            match ping {
                Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "readiness check: the store failed");
                    text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
                }
                Err(_) => {
                    tracing::warn!(timeout = ?READINESS_TIMEOUT, "readiness check: the store timed out");
                    text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
                }
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
}
