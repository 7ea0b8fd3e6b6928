//! A deadline for request heads (slow-client protection). poem 3 builds hyper's HTTP/1
//! connection without a timer, so hyper's own `header_read_timeout` is inert, and poem's
//! idle timeout only starts a graceful shutdown, which waits for a request head that has
//! begun. This wraps each accepted connection instead: from the moment a request head is
//! due (the connection is accepted, or the first byte after a response arrives) the whole
//! head, up to its blank line, must arrive within the limit, or the connection is closed.
//! Bodies and responses are not timed here (the body size limit and the idle timeout
//! cover them), and HTTP/2 connections (prior knowledge) are left alone.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Instant, Sleep};

/// Wraps an acceptor so that every connection gets a request-head deadline.
pub struct HeadDeadline<A> {
    inner: A,
    limit: Duration,
}

impl<A> HeadDeadline<A> {
    pub fn new(inner: A, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

impl<A: Acceptor> Acceptor for HeadDeadline<A> {
    type Io = TimedHead<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    fn accept(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)>> + Send {
        let limit = self.limit;
        let accepted = self.inner.accept();
        async move {
            let (io, local, remote, scheme) = accepted.await?;
            Ok((TimedHead::new(io, limit), local, remote, scheme))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A request head is due or arriving; `tail` holds its last bytes read so far.
    Head,
    /// The head is complete; the body and the response follow.
    Served,
    /// A response was written; the next byte read starts a new head.
    Between,
    /// HTTP/2 or an unknown protocol: no deadline.
    Off,
}

pub struct TimedHead<T> {
    inner: T,
    limit: Duration,
    phase: Phase,
    /// Bytes of the head seen so far (only the first few are needed).
    head_len: usize,
    tail: [u8; 3],
    /// The connection's first bytes may still be the HTTP/2 preface.
    maybe_h2: bool,
    /// The head's deadline; one timer per connection, reset for each head.
    deadline: Pin<Box<Sleep>>,
    /// Whether a head is due (the deadline counts) or not (it is left to lapse unseen).
    armed: bool,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<T> TimedHead<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            phase: Phase::Head,
            head_len: 0,
            tail: [0; 3],
            maybe_h2: true,
            deadline: Box::pin(sleep(limit)),
            armed: true,
        }
    }

    /// Follows the bytes read: a new head starts after a response; a head ends at its
    /// blank line (CRLF CRLF).
    fn saw_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Between {
            self.phase = Phase::Head;
            self.maybe_h2 = false;
            self.head_len = 0;
            self.tail = [0; 3];
            self.arm();
        }
        if self.phase != Phase::Head {
            return;
        }
        if self.maybe_h2 {
            let seen = H2_PREFACE.len().min(self.head_len + bytes.len()) - self.head_len;
            if bytes[..seen] != H2_PREFACE[self.head_len..self.head_len + seen] {
                self.maybe_h2 = false;
            } else if self.head_len + seen == H2_PREFACE.len() {
                self.phase = Phase::Off;
                self.armed = false;
                return;
            }
        }
        // The blank line may straddle two reads: look at the last bytes of the previous
        // read with the first of this one, then search this read alone.
        let mut seam = [0u8; 6];
        let lead = bytes.len().min(3);
        seam[..3].copy_from_slice(&self.tail);
        seam[3..3 + lead].copy_from_slice(&bytes[..lead]);
        if find_blank_line(&seam[..3 + lead]).is_some() || find_blank_line(bytes).is_some() {
            self.phase = Phase::Served;
            self.armed = false;
            return;
        }
        // The last three bytes seen, for the next read's seam.
        self.tail.rotate_left(lead);
        self.tail[3 - lead..].copy_from_slice(&bytes[bytes.len() - lead..]);
        self.head_len = self.head_len.saturating_add(bytes.len());
    }

    /// Starts the deadline of a new head, reusing the timer of the previous one.
    fn arm(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.limit);
        self.armed = true;
    }

    /// A final response (not a `1xx` interim one) ends the exchange.
    fn saw_write(&mut self, first: &[u8]) {
        if self.phase == Phase::Served && first.starts_with(b"HTTP/1.") && !is_interim(first) {
            self.phase = Phase::Between;
        }
    }
}

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    memchr::memmem::find(bytes, b"\r\n\r\n")
}

fn is_interim(status_line: &[u8]) -> bool {
    status_line.get(9) == Some(&b'1')
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedHead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.saw_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = self.armed && self.deadline.as_mut().poll(cx).is_ready();
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request head did not arrive in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedHead<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.saw_write(buf);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                let first: &[u8] = first;
                self.saw_write(first);
            }
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The deadline is a tokio timer, so these need a runtime.
    fn timed() -> TimedHead<()> {
        TimedHead {
            inner: (),
            limit: Duration::from_secs(1),
            phase: Phase::Head,
            head_len: 0,
            tail: [0; 3],
            maybe_h2: true,
            deadline: Box::pin(sleep(Duration::from_secs(1))),
            armed: true,
        }
    }

    // Starting a new head arms a tokio timer, so this needs a runtime.
    #[tokio::test]
    async fn follows_heads_across_reads_and_responses() {
        let mut t = timed();
        t.saw_read(b"GET / HTTP/1.1\r\nHost: x\r");
        assert_eq!(t.phase, Phase::Head);
        t.saw_read(b"\n\r");
        assert_eq!(t.phase, Phase::Head);
        t.saw_read(b"\n");
        assert_eq!(t.phase, Phase::Served);
        t.saw_write(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(
            t.phase,
            Phase::Served,
            "interim answers do not end the exchange"
        );
        t.saw_read(b"body without a blank line");
        assert_eq!(t.phase, Phase::Served);
        t.saw_write(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(t.phase, Phase::Between);
        t.saw_read(b"G");
        assert_eq!(t.phase, Phase::Head);
        t.saw_read(b"ET / HTTP/1.1\r\n\r\n");
        assert_eq!(t.phase, Phase::Served);
    }

    #[tokio::test]
    async fn finds_a_blank_line_split_anywhere() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 1..head.len() {
            let mut t = timed();
            t.saw_read(&head[..cut]);
            assert_eq!(t.phase, Phase::Head, "cut at {cut}");
            t.saw_read(&head[cut..]);
            assert_eq!(t.phase, Phase::Served, "cut at {cut}");
        }
        let mut t = timed();
        for b in head.iter().take(head.len() - 1) {
            t.saw_read(std::slice::from_ref(b));
        }
        assert_eq!(t.phase, Phase::Head, "byte by byte");
        t.saw_read(b"\n");
        assert_eq!(t.phase, Phase::Served, "byte by byte");
    }

    #[tokio::test]
    async fn http2_is_left_alone() {
        let mut t = timed();
        t.saw_read(b"PRI * HT");
        assert_eq!(t.phase, Phase::Head);
        t.saw_read(b"TP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(t.phase, Phase::Off);
        let mut t = timed();
        t.saw_read(b"XXXXXXXX");
        t.saw_read(b"TP/2.0 no preface");
        assert_eq!(
            t.phase,
            Phase::Head,
            "only a real preface turns the deadline off"
        );
    }
}
