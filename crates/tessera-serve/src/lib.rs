//! Serves an axum [`Router`] over HTTP/1.1 with the limits a service exposed
//! to the network needs, which `axum::serve` leaves out:
//!
//! - **headers** must arrive within [`Limits::header_read_timeout`] (10 s) of
//!   the connection opening or the previous response; the same clock closes a
//!   keep-alive connection that sends no new request (hyper starts it when it
//!   waits for a request head);
//! - a **body** must arrive whole within [`Limits::body_read_timeout`] (10 s)
//!   of its headers: a deadline, not a per-chunk timer, so a client trickling
//!   one byte every few seconds cannot hold a connection. An extractor then
//!   fails with an error [`is_body_timeout`] recognises (answer `408`);
//! - a connection on which no byte moves either way for
//!   [`Limits::idle_timeout`] (60 s) is closed: a client that stops reading its
//!   response does not hold it forever;
//! - a connection lives at most [`Limits::max_connection_age`] (5 min): then
//!   it finishes the response in flight (within [`Limits::shutdown_grace`])
//!   and closes. Without it, a client pipelining requests and reading its
//!   answers a byte at a time would keep every timeout above from firing;
//! - at most [`Limits::max_connections`] (1024) connections are served at
//!   once; further ones wait in the listen backlog until one closes, which
//!   the limits above guarantee within the connection age plus the grace. A
//!   single client opening many connections can still take every place: cap
//!   connections per address at a proxy in front;
//! - on shutdown the listener closes, idle keep-alive connections close, and
//!   requests in flight get [`Limits::shutdown_grace`] (10 s) to finish; what
//!   is still open then is dropped, so a half-sent request cannot hold the
//!   process.
//!
//! Each request carries [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo)
//! with the peer address, as `into_make_service_with_connect_info` gives.
//!
//! A resource server built on `tessera-verifier` gets the same by serving its
//! router through [`serve`] instead of `axum::serve`:
//!
//! ```no_run
//! # async fn run(app: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! tessera_serve::serve(listener, app, tessera_serve::Limits::default(), shutdown).await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The limits [`serve`] enforces. Every one is on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// A request's headers must arrive within this long; also how long an
    /// idle keep-alive connection waits for its next request. Default 10 s.
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this long of its headers.
    /// Default 10 s.
    pub body_read_timeout: Duration,
    /// A connection on which nothing is read or written for this long is
    /// closed. Default 60 s.
    pub idle_timeout: Duration,
    /// A connection closes this long after it opened, once its response in
    /// flight is written (within `shutdown_grace`). Default 5 min.
    pub max_connection_age: Duration,
    /// The most connections served at once. Default 1024.
    pub max_connections: usize,
    /// How long requests in flight may finish after shutdown begins.
    /// Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(300),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Every duration at most a day (a larger one would overflow the timers'
    /// arithmetic, and means "never" anyway), every timeout at least 1 ms,
    /// and the cap within what a semaphore holds.
    fn clamped(self) -> Self {
        let day = Duration::from_secs(86_400);
        let timeout = |d: Duration| d.clamp(Duration::from_millis(1), day);
        Self {
            header_read_timeout: timeout(self.header_read_timeout),
            body_read_timeout: timeout(self.body_read_timeout),
            idle_timeout: timeout(self.idle_timeout),
            max_connection_age: timeout(self.max_connection_age),
            max_connections: self.max_connections.clamp(1, Semaphore::MAX_PERMITS),
            shutdown_grace: self.shutdown_grace.min(day),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at
/// most [`Limits::shutdown_grace`]. Accept errors (out of file descriptors,
/// a connection reset before it was accepted) are logged and retried, so this
/// returns only once shut down; the `Result` leaves room for setup errors.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let limits = limits.clamped();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // The permit first: at the cap, connections wait in the backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection = Connection {
                    app: app.clone(),
                    limits,
                    peer,
                    _permit: permit,
                };
                connections.spawn(connection.run(stream, stop_rx.clone()));
            }
            Err(err) if is_per_connection(&err) => {}
            Err(err) => {
                // Out of file descriptors, most likely: wait for some to close
                // rather than spin.
                tracing::warn!(error = %err, "accept failed; retrying in 100 ms");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = &mut shutdown => break,
                }
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(
            open,
            grace = ?limits.shutdown_grace,
            "shutting down: finishing requests in flight"
        );
    }
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            unfinished = connections.len(),
            "shutdown grace over: closing connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accept errors that concern one connection only (it was reset before
/// accept returned): the next accept is fine.
fn is_per_connection(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// One accepted connection and what it needs to serve itself.
struct Connection {
    app: Router,
    limits: Limits,
    peer: SocketAddr,
    /// Held until the connection ends: one place under the cap.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        let Self {
            app, limits, peer, ..
        } = self;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = DeadlineBody::new(body, limits.body_read_timeout);
            let request = hyper::Request::from_parts(parts, axum::body::Body::new(body));
            tower::ServiceExt::oneshot(app.clone(), request)
        });
        let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let connection = builder.serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                log_end(result);
                return;
            }
            _ = stop.wait_for(|stop| *stop) => {}
            () = tokio::time::sleep(limits.max_connection_age) => {}
        }
        // Shutting down, or old enough: an idle connection closes now, one
        // mid-request after its response, within the grace.
        connection.as_mut().graceful_shutdown();
        match tokio::time::timeout(limits.shutdown_grace, connection).await {
            Ok(result) => log_end(result),
            Err(_) => tracing::debug!("closing a connection still busy after its grace"),
        }
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        // Timeouts, resets and malformed requests: routine on a public port.
        tracing::debug!(error = %err, "connection ended with an error");
    }
}

/// The error a request body yields when it does not arrive within
/// [`Limits::body_read_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

/// Whether `err` (an extractor's rejection, say), or anything it was caused
/// by, is a [`BodyTimedOut`]: the caller answers `408 Request Timeout`.
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    // Bounded: error chains are short, but a cyclic one must not spin.
    for _ in 0..32 {
        let Some(err) = next else { return false };
        if err.is::<BodyTimedOut>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// `limit` from now (limits are clamped to a day, so this cannot overflow;
/// if it would, a day from now).
fn later(limit: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// A request body that fails with [`BodyTimedOut`] once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    /// Created lazily: a request whose body is complete (or empty) when first
    /// read never touches the timer.
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            deadline: later(limit),
            sleep: None,
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that fails with `TimedOut` once nothing has been read or written
/// for its idle limit while hyper waits on it.
struct IdleIo<S> {
    inner: S,
    limit: Duration,
    sleep: Pin<Box<Sleep>>,
    /// Progress since the timer was last set: reset it before trusting it.
    moved: bool,
}

impl<S> IdleIo<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            moved: false,
        }
    }

    /// After the inner socket answered `Pending`: is the connection idle past
    /// its limit? Resetting the timer only here keeps the hot path (data
    /// ready) free of timer work.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        if self.moved {
            self.moved = false;
            self.sleep.as_mut().reset(later(self.limit));
        }
        ready!(self.sleep.as_mut().poll(cx));
        Poll::Ready(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connection idle too long",
        ))
    }

    /// What the inner socket answered, passed on; a `Pending` becomes the
    /// idle error once the limit has passed without progress.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Pending => self.poll_idle(cx).map(Err),
            ready => {
                self.moved = true;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.watch(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests;
