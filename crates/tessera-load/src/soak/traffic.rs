//! The soak's traffic: workers, their connections, and the watch on each
//! logout until both resource servers refuse its token.

use super::*;
use tessera_bench::Client;

/// The addresses traffic goes to, and which of them are up.
pub(super) struct Topology {
    pub(super) a: SocketAddr,
    pub(super) b: SocketAddr,
    pub(super) c: SocketAddr,
    pub(super) r1: SocketAddr,
    pub(super) r2: SocketAddr,
    pub(super) b_up: AtomicBool,
    pub(super) r2_up: AtomicBool,
    pub(super) stop: AtomicBool,
}

impl Topology {
    fn addr(&self, t: Target) -> SocketAddr {
        match t {
            Target::A => self.a,
            Target::B => self.b,
            Target::C => self.c,
            Target::R1 => self.r1,
            Target::R2 => self.r2,
        }
    }
}

/// One traffic worker's connections, reopened after any failure.
pub(super) struct Conns {
    topo: Arc<Topology>,
    rec: Arc<Record>,
    open: HashMap<Target, Client>,
}

impl Conns {
    /// Sends a request (`route`: `"POST /login"`) and records its outcome;
    /// the body if it got the expected status.
    async fn send(
        &mut self,
        target: Target,
        op: &'static str,
        route: &str,
        headers: &[&str],
        body: &str,
        expected: u16,
    ) -> Option<Vec<u8>> {
        let (method, path) = route.split_once(' ').unwrap_or(("GET", route));
        let got = self.exchange(target, method, path, headers, body).await;
        let at = self.rec.now();
        let ok = matches!(&got, Ok((status, _, _)) if *status == expected);
        let answer = match &got {
            Ok((_, _, answer)) if ok => Some(answer.clone()),
            _ => None,
        };
        if ok {
            self.rec.ok_requests.fetch_add(1, Ordering::Relaxed);
        } else {
            lock(&self.rec.outcomes).push(Outcome {
                at,
                target,
                op,
                expected,
                got: got.map(|(s, retry, _)| (s, retry)),
            });
        }
        answer
    }

    /// One request, as an HTTP/1.1 client should make it: a connection the
    /// server said it closes (`Connection: close`, as after its
    /// `max_connection_age`) is not reused, and a request that fails on a
    /// reused connection before any answer (the server closed it while idle,
    /// the race RFC 9112 §9.3.1 describes) is sent once more on a new one. A
    /// refresh sent twice that way is safe: the retry window answers the
    /// second with the first's pair.
    async fn exchange(
        &mut self,
        target: Target,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> Result<(u16, bool, Vec<u8>), String> {
        let content_type = if body.starts_with('{') {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        for attempt in 0..2 {
            let reused = self.open.contains_key(&target);
            if !reused {
                let client = Client::connect(self.topo.addr(target))
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                self.open.insert(target, client);
            }
            let client = self.open.get_mut(&target).ok_or("no connection")?;
            let result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                client.request(method, path, headers, content_type, body),
            )
            .await;
            match result {
                Ok(Ok((status, answer))) => {
                    let retry = client.last_header("retry-after").is_some();
                    if client
                        .last_header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        self.open.remove(&target);
                    }
                    return Ok((status, retry, answer));
                }
                Ok(Err(e)) => {
                    self.open.remove(&target);
                    if !(reused && attempt == 0) {
                        return Err(format!("{e}"));
                    }
                }
                Err(_) => {
                    self.open.remove(&target);
                    return Err(format!("no answer within {REQUEST_TIMEOUT:?}"));
                }
            }
        }
        Err("connection closed twice".to_owned())
    }
}

pub(super) fn field(body: &[u8], name: &str) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?[name]
        .as_str()
        .map(str::to_owned)
}

/// One traffic worker on an issuer (the PostgreSQL pair, or C), until stop.
pub(super) async fn worker(topo: Arc<Topology>, rec: Arc<Record>, sqlite: bool, n: usize) {
    let mut conns = Conns {
        topo: Arc::clone(&topo),
        rec: Arc::clone(&rec),
        open: HashMap::new(),
    };
    let login = serde_json::json!({"username": user_name(n), "password": PASSWORD}).to_string();
    let mut turn = n;
    while !topo.stop.load(Ordering::Relaxed) {
        turn += 1;
        let issuer = |k: usize| {
            if sqlite {
                Target::C
            } else if k % 2 == 1 && topo.b_up.load(Ordering::Relaxed) {
                Target::B
            } else {
                Target::A
            }
        };
        let Some(body) = conns
            .send(issuer(turn), "login", "POST /login", &[], &login, 200)
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        rec.count("logins");
        let (Some(mut access), Some(mut refresh)) =
            (field(&body, "access_token"), field(&body, "refresh_token"))
        else {
            rec.note(format!(
                "login answer without tokens: {}",
                String::from_utf8_lossy(&body)
            ));
            continue;
        };
        let mut broken = false;
        for round in 0..4 {
            if !sqlite {
                let bearer = format!("Authorization: Bearer {access}");
                let mut servers = vec![Target::R1];
                if topo.r2_up.load(Ordering::Relaxed) {
                    servers.push(Target::R2);
                }
                for rs in servers {
                    // A fresh token, then the same again (the token cache).
                    for op in ["verify fresh", "verify repeated"] {
                        if conns
                            .send(rs, op, "GET /profile", &[&bearer], "", 200)
                            .await
                            .is_some()
                        {
                            rec.count("verifications");
                        }
                    }
                }
            }
            if round == 3 {
                break;
            }
            let form = format!("grant_type=refresh_token&refresh_token={refresh}");
            match conns
                .send(
                    issuer(turn + round + 1),
                    "refresh",
                    "POST /token",
                    &[],
                    &form,
                    200,
                )
                .await
            {
                Some(body) => {
                    rec.count("refreshes");
                    match (field(&body, "access_token"), field(&body, "refresh_token")) {
                        (Some(a), Some(r)) => (access, refresh) = (a, r),
                        _ => {
                            broken = true;
                            break;
                        }
                    }
                }
                None => {
                    // The family's state is unknown now: start another.
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            continue;
        }
        let bearer = format!("Authorization: Bearer {access}");
        let target = issuer(turn);
        if conns
            .send(target, "logout", "POST /logout", &[&bearer], "", 204)
            .await
            .is_none()
        {
            continue;
        }
        rec.count("logouts");
        if !sqlite {
            let logout_at = rec.now();
            for rs in [Target::R1, Target::R2] {
                tokio::spawn(watch_refusal(
                    Arc::clone(&topo),
                    Arc::clone(&rec),
                    rs,
                    access.clone(),
                    logout_at,
                ));
            }
        }
    }
}

/// Polls `rs` with a logged-out token until it is refused (401), at most a
/// minute; records when.
pub(super) async fn watch_refusal(
    topo: Arc<Topology>,
    rec: Arc<Record>,
    rs: Target,
    access: String,
    logout_at: f64,
) {
    let bearer = format!("Authorization: Bearer {access}");
    let mut client: Option<Client> = None;
    let mut refused_at = None;
    while rec.now() < logout_at + 60.0 && !topo.stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = Client::connect(topo.addr(rs)).await.ok();
        }
        if let Some(c) = client.as_mut() {
            match tokio::time::timeout(REQUEST_TIMEOUT, c.get("/profile", &[&bearer])).await {
                Ok(Ok((401, _))) => {
                    refused_at = Some(rec.now());
                    break;
                }
                Ok(Ok(_)) => {}
                _ => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if topo.stop.load(Ordering::Relaxed) && refused_at.is_none() {
        return; // the run ended first: not a finding
    }
    lock(&rec.propagation).push(Propagation {
        logout_at,
        rs,
        refused_at,
    });
}
