//! Each test speaks raw HTTP/1.1 over a real loopback socket, as a slow or
//! hostile client would.

use super::*;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Far above any limit a test sets: a test that hangs fails instead.
const BOUND: Duration = Duration::from_secs(10);

/// Far more than loopback socket buffers hold.
const BIG: usize = 32 << 20;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(ms(300)).await;
                "finished"
            }),
        )
        .route("/big", get(|| async { vec![b'x'; BIG] }))
        .route(
            "/echo",
            post(
                |body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                    match body {
                        Ok(body) => (StatusCode::OK, format!("{} bytes", body.len())),
                        Err(rejection) if is_body_timeout(&rejection) => {
                            (StatusCode::REQUEST_TIMEOUT, "too slow".to_owned())
                        }
                        Err(rejection) => (rejection.status(), rejection.body_text()),
                    }
                },
            ),
        )
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app(), limits, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

fn limits() -> Limits {
    Limits {
        header_read_timeout: ms(300),
        body_read_timeout: ms(500),
        idle_timeout: Duration::from_secs(30),
        max_connection_age: Duration::from_secs(30),
        max_connections: 64,
        shutdown_grace: ms(500),
    }
}

/// Reads until the server closes the connection; fails if it does not
/// within [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    match tokio::time::timeout(BOUND, stream.read_to_end(&mut seen)).await {
        Ok(Ok(_)) => {}
        // A reset is a close too.
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(err)) => panic!("reading: {err}"),
        Err(_) => panic!("the server kept the connection open past {BOUND:?}"),
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Sends one request and reads its response (the server closes after it).
async fn request(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    read_until_closed(&mut stream).await
}

/// A connection that has sent part of a request head.
async fn half_open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    stream
}

/// Whether the server has closed `stream` (without waiting for it to).
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(ms(50), stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let server = start(limits()).await;
    let mut stream = half_open(server.addr).await;
    let seen = read_until_closed(&mut stream).await;
    assert!(
        !seen.contains("hello"),
        "no response to half a request: {seen}"
    );
    // The server itself is fine.
    assert!(request(server.addr, "/").await.ends_with("hello"));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = start(limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    // The response comes, the connection stays for a next request, then
    // closes when none comes.
    let seen = read_until_closed(&mut stream).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.ends_with("hello"), "{seen}");
}

#[tokio::test]
async fn a_body_is_a_deadline_not_a_per_chunk_timer() {
    let server = start(limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    // One byte every 100 ms: each gap is well under the 500 ms limit, the
    // whole body never arrives within it. Bounded: 40 bytes at most.
    let mut answer = Vec::new();
    for _ in 0..40 {
        if stream.write_all(b"x").await.is_err() {
            break;
        }
        let mut chunk = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(ms(100), stream.read(&mut chunk)).await {
            answer.extend_from_slice(&chunk[..n]);
            if n == 0 || answer.ends_with(b"too slow") {
                break;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.ends_with("too slow"), "{answer}");
}

#[tokio::test]
async fn a_body_in_time_is_read_whole() {
    let server = start(limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 6\r\n\r\nabc",
        )
        .await
        .unwrap();
    tokio::time::sleep(ms(100)).await;
    stream.write_all(b"def").await.unwrap();
    let seen = read_until_closed(&mut stream).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.ends_with("6 bytes"), "{seen}");
}

#[tokio::test]
async fn many_half_open_connections_do_not_stop_a_new_client() {
    let mut limits = limits();
    // They would stay for 30 s: the new client must not wait for that.
    limits.header_read_timeout = Duration::from_secs(30);
    let server = start(limits).await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        stalled.push(half_open(server.addr).await);
    }
    assert!(request(server.addr, "/").await.ends_with("hello"));
    for stream in &mut stalled {
        assert!(!is_closed(stream).await, "still waiting for its headers");
    }
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_is_served_once_a_stalled_one_times_out() {
    let mut limits = limits();
    limits.max_connections = 3;
    let server = start(limits).await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(half_open(server.addr).await);
    }
    // Waits in the backlog, then gets a place when the header timeout frees
    // one.
    assert!(request(server.addr, "/").await.ends_with("hello"));
    let mut closed = 0;
    for stream in &mut stalled {
        if is_closed(stream).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "the new client got a place a stalled one held");
}

#[tokio::test]
async fn requests_carry_the_peer_address() {
    let server = start(limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let me = stream.local_addr().unwrap();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let seen = read_until_closed(&mut stream).await;
    assert!(seen.ends_with(&me.to_string()), "{seen}");
}

#[tokio::test]
async fn shutdown_finishes_a_request_in_flight() {
    let mut server = start(limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(ms(50)).await;
    let _ = server.stop.take().unwrap().send(());
    let seen = read_until_closed(&mut stream).await;
    assert!(seen.ends_with("finished"), "{seen}");
    tokio::time::timeout(BOUND, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The listener is closed.
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn shutdown_ends_within_the_grace_with_a_half_sent_request_open() {
    let mut limits = limits();
    // Neither timeout would end it: only the grace does.
    limits.header_read_timeout = Duration::from_secs(60);
    limits.body_read_timeout = Duration::from_secs(60);
    let mut server = start(limits).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let mut idle = half_open(server.addr).await;
    tokio::time::sleep(ms(50)).await;
    let _ = server.stop.take().unwrap().send(());
    // 500 ms of grace; the bound only catches a hang.
    tokio::time::timeout(BOUND, server.task)
        .await
        .expect("serve returned after its grace")
        .unwrap()
        .unwrap();
    read_until_closed(&mut stream).await;
    read_until_closed(&mut idle).await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_cut_off_after_the_idle_limit() {
    let (near, _far) = tokio::io::duplex(64);
    let mut io = IdleIo::new(near, ms(300));
    // Nobody reads `far`: the 64-byte pipe fills and writing stalls.
    let written = tokio::time::timeout(BOUND, io.write_all(&[0u8; 4096])).await;
    let err = written
        .expect("the idle limit ended the write")
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    // A reader draining slowly but steadily keeps it alive.
    let (near, mut far) = tokio::io::duplex(64);
    let mut io = IdleIo::new(near, ms(300));
    let reader = tokio::spawn(async move {
        let mut total = 0;
        let mut chunk = [0u8; 64];
        while total < 1024 {
            tokio::time::sleep(ms(20)).await;
            total += far.read(&mut chunk).await.unwrap();
        }
        total
    });
    tokio::time::timeout(BOUND, io.write_all(&[0u8; 1024]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.await.unwrap(), 1024);
}

#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_cut_off() {
    let mut limits = limits();
    limits.idle_timeout = ms(300);
    let server = start(limits).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // Not reading: the socket buffers fill and the server's writes stall.
    tokio::time::sleep(ms(1_000)).await;
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(BOUND, stream.read_to_end(&mut seen))
        .await
        .unwrap();
    assert!(!seen.is_empty(), "it had started answering");
    assert!(
        seen.len() < BIG,
        "the rest was never sent: {} bytes",
        seen.len()
    );
}

#[tokio::test]
async fn a_busy_keep_alive_connection_closes_at_its_age() {
    let mut limits = limits();
    limits.header_read_timeout = Duration::from_secs(30);
    limits.max_connection_age = ms(300);
    let server = start(limits).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut answered = 0;
    // A request every 50 ms, each answered, until the server closes: within
    // the bound, never.
    for _ in 0..200 {
        if stream
            .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .is_err()
        {
            break;
        }
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(BOUND, stream.read(&mut chunk))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                assert!(String::from_utf8_lossy(&chunk[..n]).ends_with("hello"));
                answered += 1;
            }
        }
        tokio::time::sleep(ms(50)).await;
    }
    assert!(answered >= 1, "served while young");
    assert!(answered < 200, "closed once old");
}
