//! A request body capped at a maximum size while it streams.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;

/// Why a client body stopped, when the client and not the upstream caused
/// the upstream request to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// The body passed the route's limit.
    TooLarge,
    /// The client's body was malformed (bad chunk framing) or ended early.
    ClientError,
}

/// Shared between the body and the pipeline: set when the body fails.
#[derive(Debug, Default)]
pub struct BodyStatus(AtomicU8);

impl BodyStatus {
    fn set(&self, failure: BodyFailure) {
        let value = match failure {
            BodyFailure::TooLarge => 1,
            BodyFailure::ClientError => 2,
        };
        self.0.store(value, Ordering::Relaxed);
    }

    /// How the body failed, if it did.
    pub fn failure(&self) -> Option<BodyFailure> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(BodyFailure::TooLarge),
            2 => Some(BodyFailure::ClientError),
            _ => None,
        }
    }
}

/// The body sent upstream: the client's body, failing once it passes
/// `limit` bytes. Either failure aborts the upstream request, and the
/// shared [`BodyStatus`] tells the pipeline to answer 413 or 400 instead of
/// blaming the upstream.
#[derive(Debug)]
pub struct CappedBody {
    inner: Incoming,
    remaining: Option<u64>,
    status: Arc<BodyStatus>,
}

/// The error a capped body fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the route allows")]
pub struct BodyTooLarge;

impl CappedBody {
    pub fn new(inner: Incoming, limit: Option<u64>) -> (Self, Arc<BodyStatus>) {
        let status = Arc::new(BodyStatus::default());
        let body = Self {
            inner,
            remaining: limit,
            status: status.clone(),
        };
        (body, status)
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
            Poll::Ready(Some(Err(error))) => {
                self.status.set(BodyFailure::ClientError);
                return Poll::Ready(Some(Err(error.into())));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let (Some(remaining), Some(data)) = (self.remaining, frame.data_ref()) {
            let len = data.len() as u64;
            if len > remaining {
                self.status.set(BodyFailure::TooLarge);
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
