//! The echo service: answers with a JSON description of the request it
//! received. In process, it shows what an upstream would receive; as
//! `portcullis echo`, it is a real upstream for trying the gateway out.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// Describes a request head as JSON.
pub(crate) fn describe(parts: &Parts) -> Response<String> {
    json_response(description(parts, None))
}

fn description(parts: &Parts, body_bytes: Option<u64>) -> Value {
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = if values.len() == 1 {
            values.into_iter().next().expect("one value")
        } else {
            Value::Array(values)
        };
        headers.insert(name.as_str().to_string(), value);
    }
    let mut out = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
    });
    if let Some(n) = body_bytes {
        out["body_bytes"] = json!(n);
    }
    out
}

fn json_response(value: Value) -> Response<String> {
    let mut response = Response::new(format!("{value:#}\n"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Runs the echo service on `listener` until the task is dropped. It reads
/// each request body to count its bytes, without keeping them.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                let (parts, mut body) = request.into_parts();
                let mut bytes = 0u64;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => {
                            bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                        }
                        Err(_) => break,
                    }
                }
                let response = json_response(description(&parts, Some(bytes)));
                Ok::<_, Infallible>(response.map(|text| Full::new(Bytes::from(text))))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "echo connection ended with an error");
            }
        });
    }
}

/// Binds `addr` and runs the echo service.
pub async fn run(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(listen = %listener.local_addr()?, "echo service listening");
    serve(listener).await
}
