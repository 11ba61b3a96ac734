//! A request body capped at a maximum size while it streams.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;

/// The body sent upstream: the client's body, failing once it passes
/// `limit` bytes. The failure aborts the upstream request, and `exceeded`
/// tells the pipeline to answer 413 instead of 502.
#[derive(Debug)]
pub struct CappedBody {
    inner: Incoming,
    remaining: Option<u64>,
    exceeded: Arc<AtomicBool>,
}

/// The error a capped body fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the route allows")]
pub struct BodyTooLarge;

impl CappedBody {
    pub fn new(inner: Incoming, limit: Option<u64>) -> (Self, Arc<AtomicBool>) {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = Self {
            inner,
            remaining: limit,
            exceeded: exceeded.clone(),
        };
        (body, exceeded)
    }
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let (Some(remaining), Some(data)) = (self.remaining, frame.data_ref()) {
            let len = data.len() as u64;
            if len > remaining {
                self.exceeded.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
            }
            self.remaining = Some(remaining - len);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
