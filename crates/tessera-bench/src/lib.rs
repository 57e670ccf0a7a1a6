//! Load generation for Tessera's HTTP benchmarks: a minimal keep-alive
//! HTTP/1.1 client (enough for small, sized responses), a throughput runner
//! and percentiles. Loopback only; every loop is bounded by time.

#![allow(clippy::disallowed_methods)] // a load generator reads the clock

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Why a request failed (the benchmarks treat any as fatal).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One keep-alive connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    addr: SocketAddr,
}

impl Client {
    /// Connects to `addr` (a loopback address).
    pub async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        if !addr.ip().is_loopback() {
            return Err("the load generator only targets loopback addresses".into());
        }
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
            addr,
        })
    }

    /// Connects to `addr` from the loopback address `from` (any of
    /// 127.0.0.0/8 on Linux), so a test can be many clients.
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Result<Self, Error> {
        if !addr.ip().is_loopback() || !from.is_loopback() {
            return Err("the load generator only uses loopback addresses".into());
        }
        let socket = match from {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(from, 0))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
            addr,
        })
    }

    /// Sends one request and reads the whole response: `(status, body)`.
    /// `headers` are extra header lines, each without its CRLF.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
        content_type: &str,
        body: &str,
    ) -> Result<(u16, Vec<u8>), Error> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        if !body.is_empty() {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        self.stream.write_all(head.as_bytes()).await?;
        self.buf.clear();
        let header_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..header_end]).to_ascii_lowercase();
        let status: u16 = head.get(9..12).ok_or("short status line")?.parse()?;
        let length: usize = match head.lines().find_map(|l| l.strip_prefix("content-length:")) {
            Some(v) => v.trim().parse()?,
            None => 0,
        };
        while self.buf.len() < header_end + length {
            self.fill().await?;
        }
        Ok((status, self.buf[header_end..header_end + length].to_vec()))
    }

    /// A header of the last response (the name compared case-insensitively).
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.last_headers(name).into_iter().next()
    }

    /// Every value of a header of the last response (`Set-Cookie` comes
    /// several times).
    pub fn last_headers(&self, name: &str) -> Vec<String> {
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Vec::new();
        };
        let Ok(head) = std::str::from_utf8(&self.buf[..end]) else {
            return Vec::new();
        };
        head.lines()
            .skip(1)
            .filter_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .collect()
    }

    /// `GET path` with extra header lines.
    pub async fn get(&mut self, path: &str, headers: &[&str]) -> Result<(u16, Vec<u8>), Error> {
        self.request("GET", path, headers, "", "").await
    }

    async fn fill(&mut self) -> Result<(), Error> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Runs `connections` clients at once, each running `f` on its own
/// connection; returns requests per second (the sum of what each `f` returns,
/// over the wall time).
pub async fn throughput<F, Fut>(addr: SocketAddr, connections: usize, f: F) -> Result<f64, Error>
where
    F: Fn(Client) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, Error>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f(Client::connect(addr).await?).await
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// A request loop for [`throughput`]: `GET path` with `headers` until
/// `run_for` has passed, every answer `expect`; returns the count.
pub async fn get_loop(
    mut client: Client,
    path: &str,
    headers: &[&str],
    expect: u16,
    run_for: Duration,
) -> Result<u64, Error> {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < run_for {
        let (status, body) = client.get(path, headers).await?;
        if status != expect {
            return Err(format!("{path}: {status} {}", String::from_utf8_lossy(&body)).into());
        }
        n += 1;
    }
    Ok(n)
}

/// The `q` quantile (0..=1) of sorted samples, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

/// A load generator that never sleeps: `connections` keep-alive connections
/// driven from the calling thread with non-blocking sockets, each sending
/// `GET path` with `headers` and reading the whole answer (which must have
/// status `expect`) before the next, until `run_for` has passed. Returns
/// requests per second.
///
/// Why it exists: a generator that sleeps in `epoll_wait` whenever it is
/// ahead of the server must be woken by the server's every write, and on a VM
/// that wake-up (an inter-processor interrupt to a halted vCPU) is paid on
/// the *server's* core, inside its `writev`. It costs more the slower the
/// route is, since a generator that waits on a slow route is idle more often:
/// `perf` measured 4.6 µs per request on a fresh-token `/profile` against
/// 1.1 µs on `/healthz`. A spinning generator has no sleeper to wake, so each
/// route is charged for its own work only, as with remote clients whose
/// answers leave through a network card.
pub fn spin_throughput(
    addr: SocketAddr,
    connections: usize,
    path: &str,
    headers: &[&str],
    expect: u16,
    run_for: Duration,
) -> Result<f64, Error> {
    let (done, elapsed) = spin_requests(addr, connections, path, headers, expect, run_for)?;
    Ok(done as f64 / elapsed.as_secs_f64())
}

/// [`spin_throughput`]'s loop: the answers read in full, and the time taken.
fn spin_requests(
    addr: SocketAddr,
    connections: usize,
    path: &str,
    headers: &[&str],
    expect: u16,
    run_for: Duration,
) -> Result<(u64, Duration), Error> {
    use std::io::{ErrorKind, Read as _, Write as _};

    if !addr.ip().is_loopback() {
        return Err("the load generator only targets loopback addresses".into());
    }
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = request.into_bytes();

    struct Conn {
        stream: std::net::TcpStream,
        /// Bytes of the request still to send (0 once sent).
        sent: usize,
        buf: Vec<u8>,
    }
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        conns.push(Conn {
            stream,
            sent: 0,
            buf: Vec::with_capacity(4096),
        });
    }
    let mut chunk = [0u8; 8192];
    let mut done: u64 = 0;
    let start = Instant::now();
    let deadline = start + run_for;
    // Bounded: the deadline is checked once per pass over the connections.
    while Instant::now() < deadline {
        for conn in &mut conns {
            if conn.sent < request.len() {
                match conn.stream.write(&request[conn.sent..]) {
                    Ok(n) => conn.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.into()),
                }
                if conn.sent < request.len() {
                    continue;
                }
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
            let Some(header_end) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&conn.buf[..header_end]).to_ascii_lowercase();
            let status: u16 = head.get(9..12).ok_or("short status line")?.parse()?;
            let length: usize = match head.lines().find_map(|l| l.strip_prefix("content-length:")) {
                Some(v) => v.trim().parse()?,
                None => 0,
            };
            if conn.buf.len() < header_end + 4 + length {
                continue;
            }
            if status != expect {
                let body = String::from_utf8_lossy(&conn.buf[header_end + 4..]);
                return Err(format!("{path}: {status} {body}").into());
            }
            if conn.buf.len() > header_end + 4 + length {
                return Err("more bytes than one answer".into());
            }
            conn.buf.clear();
            conn.sent = 0;
            done += 1;
        }
    }
    Ok((done, start.elapsed()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::TcpListener;

    use super::*;

    /// A keep-alive HTTP/1.1 server on loopback answering every request with
    /// `status` and `body`, one thread per connection; it counts the requests.
    fn server(
        status: u16,
        body: &'static str,
    ) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = std::sync::Arc::clone(&count);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = std::sync::Arc::clone(&seen);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    let mut line = String::new();
                    loop {
                        // One request: lines up to the blank one.
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line != "\r\n" {
                            continue;
                        }
                        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if writer.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, count)
    }

    #[test]
    fn the_spinning_generator_counts_whole_answers() {
        let (addr, served) = server(200, "{\"ok\":true}");
        let (counted, _) =
            spin_requests(addr, 4, "/x", &["A: b"], 200, Duration::from_millis(200)).unwrap();
        let served = served.load(std::sync::atomic::Ordering::Relaxed);
        // Every answer counted was served; at most one request per connection
        // was still in flight when time ran out.
        assert!(counted > 0);
        assert!(
            counted <= served && served <= counted + 4,
            "counted {counted}, served {served}"
        );
    }

    #[test]
    fn the_spinning_generator_fails_on_an_unexpected_status() {
        let (addr, _) = server(401, "no");
        let error = spin_throughput(addr, 2, "/x", &[], 200, Duration::from_millis(100))
            .expect_err("a 401 is not the expected 200");
        assert!(error.to_string().contains("401"), "{error}");
    }

    #[test]
    fn the_spinning_generator_refuses_other_hosts() {
        let addr: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert!(spin_throughput(addr, 1, "/", &[], 200, Duration::from_millis(1)).is_err());
    }
}
