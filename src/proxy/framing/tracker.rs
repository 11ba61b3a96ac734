//! Reads the raw HTTP/1 request heads of a connection as hyper receives
//! them.
//!
//! [`InspectedStream`] wraps the client socket. Every byte that hyper reads
//! passes through [`MessageTracker`], which follows the message framing as
//! hyper does. It parses each head with `httparse` and hyper's defaults.
//! Then it skips the body by `Content-Length`, or by the chunked coding
//! with the chunk grammar of hyper 1's decoder. For each head it queues a
//! [`RawHead`] in the connection's [`HeadLog`]. hyper parses a head only
//! after reading it through this stream, and calls the service once per
//! head in order, so the service takes the head of its request from the
//! front of the queue.
//!
//! Where hyper would reject the bytes (a malformed head, a bad chunk, a head
//! over the size limit), the tracker stops reading, because hyper closes the
//! connection. If the two ever disagree on where a message ends, the queue
//! runs dry or the next head does not match its request, and
//! [`super::check`] rejects the request.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use http::{Method, Uri};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::FramingError;

/// Maximum number of header fields in a request head: hyper's default.
const MAX_HEADERS: usize = 100;
/// Maximum number of parsed heads whose requests have not started. hyper
/// reads ahead only as far as its buffer allows, so this is never reached
/// by a client that waits for responses.
const MAX_QUEUED_HEADS: usize = 1024;

/// Facts that the tracker read from one request head.
#[derive(Debug, Clone)]
pub(crate) struct RawHead {
    method: Box<str>,
    /// The request target as sent, including any `#fragment`.
    target: Box<str>,
    framing_error: Option<FramingError>,
}

impl RawHead {
    /// Reports whether this head is the one hyper parsed into `method` and
    /// `uri`. An origin-form target must equal the path and query, because
    /// hyper drops only the fragment.
    pub(crate) fn matches(&self, method: &Method, uri: &Uri) -> bool {
        if *self.method != *method.as_str() {
            return false;
        }
        if !self.target.starts_with('/') {
            return true;
        }
        let without_fragment = self.target.split('#').next().unwrap_or_default();
        uri.path_and_query()
            .is_some_and(|p| p.as_str() == without_fragment)
    }

    pub(crate) fn framing_error(&self) -> Option<FramingError> {
        self.framing_error
    }

    pub(crate) fn has_fragment(&self) -> bool {
        self.target.contains('#')
    }
}

/// The heads read on one connection whose requests have not yet started.
#[derive(Debug, Default)]
pub(crate) struct HeadLog {
    heads: Mutex<VecDeque<RawHead>>,
}

impl HeadLog {
    /// Removes the oldest head. Returns `None` when the tracker has no head
    /// for the request, which the caller must treat as an error.
    pub(crate) fn pop(&self) -> Option<RawHead> {
        self.lock().pop_front()
    }

    /// Queues a head, or returns false if the queue is full.
    fn push(&self, head: RawHead) -> bool {
        let mut heads = self.lock();
        if heads.len() >= MAX_QUEUED_HEADS {
            return false;
        }
        heads.push_back(head);
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<RawHead>> {
        // Every critical section is a single queue operation, so a panic
        // cannot leave the queue half-changed.
        self.heads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A client connection whose incoming bytes pass through a
/// [`MessageTracker`].
#[derive(Debug)]
pub(crate) struct InspectedStream<S> {
    inner: S,
    tracker: MessageTracker,
}

impl<S> InspectedStream<S> {
    /// Wraps `inner` and queues its request heads in `log`. A head longer
    /// than `max_head_bytes` stops the tracking, because hyper rejects it.
    pub(crate) fn new(inner: S, log: Arc<HeadLog>, max_head_bytes: usize) -> Self {
        Self {
            inner,
            tracker: MessageTracker::new(log, max_head_bytes),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for InspectedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.tracker.observe(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for InspectedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Position of the tracker in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head.
    Head,
    /// Skipping this many body bytes.
    Length(u64),
    Chunked(Chunk),
    /// Not reading any more: an HTTP/2 connection, or bytes that hyper
    /// rejects and then closes the connection on.
    Stopped,
}

/// A position in the chunked coding (RFC 9112 section 7.1), with the states
/// of hyper 1's decoder so that both accept the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    SizeWhitespace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    /// The message has ended.
    End,
}

/// Follows HTTP/1 message framing over a connection's incoming bytes.
#[derive(Debug)]
pub(crate) struct MessageTracker {
    log: Arc<HeadLog>,
    state: State,
    /// The bytes of the head being read.
    head: Vec<u8>,
    max_head_bytes: usize,
}

impl MessageTracker {
    pub(crate) fn new(log: Arc<HeadLog>, max_head_bytes: usize) -> Self {
        Self {
            log,
            state: State::Head,
            head: Vec::new(),
            max_head_bytes,
        }
    }

    /// Reads the next bytes of the connection.
    pub(crate) fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = match self.state {
                State::Stopped => return,
                State::Head => self.observe_head(bytes),
                State::Length(remaining) => {
                    let skipped = remaining.min(bytes.len() as u64);
                    self.state = if skipped == remaining {
                        State::Head
                    } else {
                        State::Length(remaining - skipped)
                    };
                    // `skipped` is at most `bytes.len()`, so it fits a usize.
                    &bytes[skipped as usize..]
                }
                State::Chunked(chunk) => self.observe_chunked(chunk, bytes),
            };
        }
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.head = Vec::new();
    }

    /// Adds `bytes` to the head being read and, once it is complete, queues
    /// it. Returns the bytes after the head.
    fn observe_head<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        // A head ends with an empty line, so parse only when one arrives,
        // as hyper does. Copying no further than that line keeps pipelined
        // heads in one read from being copied once per head.
        let Some(end) = empty_line_end(&self.head, bytes) else {
            self.head.extend_from_slice(bytes);
            if self.head.len() > self.max_head_bytes {
                self.stop();
            }
            return &[];
        };
        self.head.extend_from_slice(&bytes[..end]);
        let rest = &bytes[end..];
        if self.head.len() > self.max_head_bytes {
            self.stop();
            return &[];
        }

        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.head) {
            // httparse stops at the first empty line, which ends `head`.
            Ok(httparse::Status::Complete(length)) if length == self.head.len() => {}
            // Empty lines before the request line, which httparse skips.
            Ok(httparse::Status::Partial) => return rest,
            // An unparsable head: hyper rejects it, or hands a connection
            // that opens with the HTTP/2 preface to its HTTP/2 server.
            _ => {
                self.stop();
                return &[];
            }
        }
        let Some((head, body)) = read_head(&request) else {
            self.stop();
            return &[];
        };
        if !self.log.push(head) {
            self.stop();
            return &[];
        }
        self.head.clear();
        self.state = match body {
            Body::Length(0) => State::Head,
            Body::Length(length) => State::Length(length),
            Body::Chunked => State::Chunked(Chunk::Start),
        };
        rest
    }

    /// Steps through chunked-coding bytes. Returns the bytes after the
    /// message once it ends, and none before.
    fn observe_chunked<'b>(&mut self, mut chunk: Chunk, mut bytes: &'b [u8]) -> &'b [u8] {
        while let Some((&byte, rest)) = bytes.split_first() {
            if let Chunk::Data(remaining) = chunk {
                let skipped = remaining.min(bytes.len() as u64);
                chunk = if skipped == remaining {
                    Chunk::DataCr
                } else {
                    Chunk::Data(remaining - skipped)
                };
                bytes = &bytes[skipped as usize..];
                continue;
            }
            bytes = rest;
            match step_chunk(chunk, byte) {
                Some(Chunk::End) => {
                    self.state = State::Head;
                    return bytes;
                }
                Some(next) => chunk = next,
                None => {
                    self.stop();
                    return &[];
                }
            }
        }
        self.state = State::Chunked(chunk);
        &[]
    }
}

/// Framing of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked,
}

/// Records a parsed head and works out its body framing as hyper 1 does
/// (`proto::h1::role`). Returns `None` for a head that hyper rejects.
fn read_head(request: &httparse::Request<'_, '_>) -> Option<(RawHead, Body)> {
    let is_http_11 = request.version? == 1;
    let mut transfer_encodings = 0;
    let mut is_chunked = false;
    let mut is_exactly_chunked = true;
    let mut content_lengths = 0;
    let mut length: Option<u64> = None;

    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !is_http_11 {
                return None;
            }
            transfer_encodings += 1;
            // hyper reads only the last coding of the last line.
            is_chunked = last_coding_is_chunked(header.value);
            is_exactly_chunked &= header.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if header.name.eq_ignore_ascii_case("content-length") {
            content_lengths += 1;
            // After Transfer-Encoding, hyper ignores Content-Length unread.
            if transfer_encodings > 0 {
                continue;
            }
            let value = parse_digits(header.value)?;
            if length.is_some_and(|previous| previous != value) {
                return None;
            }
            length = Some(value);
        }
    }
    if transfer_encodings > 0 && !is_chunked {
        return None;
    }

    let framing_error = if transfer_encodings > 0 && content_lengths > 0 {
        Some(FramingError::LengthAndTransferEncoding)
    } else if transfer_encodings > 1 || !is_exactly_chunked {
        Some(FramingError::UnsupportedTransferEncoding)
    } else if content_lengths > 1 {
        Some(FramingError::RepeatedContentLength)
    } else {
        None
    };
    let body = if transfer_encodings > 0 {
        Body::Chunked
    } else {
        Body::Length(length.unwrap_or(0))
    };
    let head = RawHead {
        method: request.method?.into(),
        target: request.path?.into(),
        framing_error,
    };
    Some((head, body))
}

/// Finds the first empty line (`\r\n\r\n` or `\n\n`, which httparse both
/// accepts) that ends in `bytes`, the continuation of `head`. Returns the
/// offset in `bytes` just after it.
fn empty_line_end(head: &[u8], bytes: &[u8]) -> Option<usize> {
    let byte_before = |index: usize, back: usize| -> Option<u8> {
        let position = (head.len() + index).checked_sub(back)?;
        match position.checked_sub(head.len()) {
            Some(in_bytes) => Some(bytes[in_bytes]),
            None => Some(head[position]),
        }
    };
    bytes.iter().enumerate().find_map(|(index, &byte)| {
        let ends_line = byte == b'\n'
            && match byte_before(index, 1) {
                Some(b'\n') => true,
                Some(b'\r') => byte_before(index, 2) == Some(b'\n'),
                _ => false,
            };
        ends_line.then_some(index + 1)
    })
}

/// hyper's test for chunked framing: the last comma-separated coding of a
/// value made only of visible ASCII, space and tab.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    let is_text = value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    is_text
        && value
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// hyper's `Content-Length` parser: one or more ASCII digits, no sign, no
/// overflow.
fn parse_digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |total, &b| {
        let digit = char::from(b).to_digit(10)?;
        total.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Advances hyper 1's chunked decoder by one byte. Returns `None` where
/// hyper fails.
fn step_chunk(chunk: Chunk, byte: u8) -> Option<Chunk> {
    let hex = char::from(byte).to_digit(16).map(u64::from);
    Some(match (chunk, byte) {
        (Chunk::Start, _) => Chunk::Size(hex?),
        (Chunk::Size(size), _) if hex.is_some() => {
            Chunk::Size(size.checked_mul(16)?.checked_add(hex?)?)
        }
        (Chunk::Size(size) | Chunk::SizeWhitespace(size), b'\t' | b' ') => {
            Chunk::SizeWhitespace(size)
        }
        (Chunk::Size(size) | Chunk::SizeWhitespace(size), b';') => Chunk::Extension(size),
        (Chunk::Size(size) | Chunk::SizeWhitespace(size), b'\r') => Chunk::SizeLf(size),
        (Chunk::Extension(size), b'\r') => Chunk::SizeLf(size),
        (Chunk::Extension(_), b'\n') => return None,
        (Chunk::Extension(size), _) => Chunk::Extension(size),
        (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
        (Chunk::SizeLf(size), b'\n') => Chunk::Data(size),
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataLf, b'\n') => Chunk::Start,
        (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
        (Chunk::Trailer, b'\n') => return None,
        (Chunk::Trailer, _) => Chunk::Trailer,
        (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
        (Chunk::EndCr, b'\r') => Chunk::EndLf,
        (Chunk::EndCr, b'\n') => return None,
        (Chunk::EndCr, _) => Chunk::Trailer,
        (Chunk::EndLf, b'\n') => Chunk::End,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` to a tracker in pieces of `piece` bytes and returns
    /// the queued heads and the final state.
    fn track(bytes: &[u8], piece: usize) -> (Vec<RawHead>, State) {
        let log = Arc::new(HeadLog::default());
        let mut tracker = MessageTracker::new(log.clone(), 64 * 1024);
        for part in bytes.chunks(piece) {
            tracker.observe(part);
        }
        let mut heads = Vec::new();
        while let Some(head) = log.pop() {
            heads.push(head);
        }
        (heads, tracker.state)
    }

    fn targets(heads: &[RawHead]) -> Vec<&str> {
        heads.iter().map(|h| &*h.target).collect()
    }

    const PIPELINE: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
        POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nGET /\r\n0\r\nTrailer: x\r\n\r\n\
        \r\nGET /c#frag HTTP/1.1\r\n\r\n\
        GET /d HTTP/1.1\n\n";

    #[test]
    fn pipelined_heads_are_found_in_any_split() {
        for piece in [1, 2, 3, 7, 64, PIPELINE.len()] {
            let (heads, state) = track(PIPELINE, piece);
            assert_eq!(
                targets(&heads),
                ["/a", "/b", "/c#frag", "/d"],
                "piece {piece}"
            );
            assert_eq!(state, State::Head, "piece {piece}");
            assert!(heads.iter().all(|h| h.framing_error.is_none()));
        }
    }

    #[test]
    fn ambiguous_framing_is_recorded() {
        let cases: &[(&[u8], FramingError)] = &[
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                FramingError::LengthAndTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n0\r\n\r\n",
                FramingError::LengthAndTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
                FramingError::UnsupportedTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                FramingError::UnsupportedTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx",
                FramingError::RepeatedContentLength,
            ),
        ];
        for (bytes, expected) in cases {
            let (heads, state) = track(bytes, bytes.len());
            let request_text = String::from_utf8_lossy(bytes);
            assert_eq!(heads.len(), 1, "{request_text:?}");
            assert_eq!(heads[0].framing_error, Some(*expected), "{request_text:?}");
            assert_eq!(state, State::Head, "{request_text:?}");
        }
    }

    #[test]
    fn heads_that_hyper_rejects_stop_tracking() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ];
        for bytes in cases {
            let (_, state) = track(bytes, bytes.len());
            assert_eq!(
                state,
                State::Stopped,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn oversized_head_stops_tracking() {
        let log = Arc::new(HeadLog::default());
        let mut tracker = MessageTracker::new(log.clone(), 64);
        tracker.observe(b"GET / HTTP/1.1\r\nX-Padding: ");
        tracker.observe(&[b'a'; 64]);
        assert_eq!(tracker.state, State::Stopped);
        assert!(log.pop().is_none());
    }

    #[test]
    fn raw_head_matches_its_request() {
        let (heads, _) = track(b"GET /a/../b?q=1#f HTTP/1.1\r\n\r\n", 64);
        let head = &heads[0];
        assert!(head.has_fragment());
        assert!(head.matches(&Method::GET, &"/a/../b?q=1".parse().unwrap()));
        assert!(!head.matches(&Method::POST, &"/a/../b?q=1".parse().unwrap()));
        assert!(!head.matches(&Method::GET, &"/b?q=1".parse().unwrap()));
    }

    #[test]
    fn content_length_digits_follow_hyper() {
        assert_eq!(parse_digits(b"0"), Some(0));
        assert_eq!(parse_digits(b"0005"), Some(5));
        assert_eq!(parse_digits(b"18446744073709551615"), Some(u64::MAX));
        for value in [
            &b""[..],
            b"+5",
            b"-1",
            b"5,5",
            b"5 ",
            b"0x5",
            b"18446744073709551616",
        ] {
            assert_eq!(
                parse_digits(value),
                None,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
