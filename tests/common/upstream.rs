//! The recording upstream: a real HTTP server that keeps every request it
//! receives and answers in a few fixed ways chosen by path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, exactly as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body_bytes: u64,
}

impl Recorded {
    /// All values of a header, by name.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    pub fn value(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }
}

/// A running recording upstream.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Lets an SSE response send its second event.
    release: Arc<Notify>,
}

type Body = BoxBody<Bytes, Infallible>;

impl Upstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let upstream = Upstream {
            addr: listener.local_addr().expect("addr"),
            requests: Arc::default(),
            release: Arc::new(Notify::new()),
        };
        let server = upstream.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.answer(request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        upstream
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The last request received; panics if there was none.
    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Lets a waiting SSE response finish.
    pub fn release_stream(&self) {
        self.release.notify_one();
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, mut body) = request.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let mut body_bytes = 0u64;
        let is_sse = target.ends_with("/sse");
        if !is_sse {
            while let Some(Ok(frame)) = body.frame().await {
                body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
        }
        self.requests.lock().unwrap().push(Recorded {
            method: parts.method.to_string(),
            target: target.clone(),
            headers: parts.headers.clone(),
            body_bytes,
        });

        if target.starts_with("/slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        if is_sse {
            let release = self.release.clone();
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from("data: first\n\n"))))
                    .await;
                release.notified().await;
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from("data: second\n\n"))))
                    .await;
            });
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap();
        }
        let body = serde_json::json!({ "ok": true, "body_bytes": body_bytes }).to_string();
        Response::builder()
            .header("content-type", "application/json")
            .header("connection", "x-upstream-private")
            .header("x-upstream-private", "hop")
            .body(Full::new(Bytes::from(body)).boxed())
            .unwrap()
    }
}
