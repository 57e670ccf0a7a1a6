//! The soak's processes: the servers, its own PostgreSQL, the operator CLI
//! calls, and the small disk it fills.

use super::*;
use tessera_bench::Client;

/// A server process (killed when dropped), its standard error in a log file
/// named after it and its incarnation (a restarted process is a new one).
pub(super) struct Proc {
    pub(super) name: &'static str,
    pub(super) incarnation: u32,
    pub(super) server: crate::harness::Server,
}

impl Proc {
    /// Starts `bin` with `args`; its first stdout line names its address.
    pub(super) fn start(
        name: &'static str,
        incarnation: u32,
        bin: &Path,
        args: &[String],
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(logs.join(format!("{name}-{incarnation}.log")))?;
        let (server, _) = crate::harness::Server::start_logging(bin, args, 0, log.into())
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name,
            incarnation,
            server,
        })
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub(super) fn rss_kib(&self) -> Option<u64> {
        self.server.status_kib("VmRSS")
    }

    /// SIGKILL: no shutdown at all.
    pub(super) fn kill_hard(&mut self) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
    }

    /// SIGTERM, and wait for the graceful exit.
    pub(super) fn stop(&mut self) -> anyhow::Result<()> {
        let child = &mut self.server.child;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM {}", self.name);
        let exit = child.wait()?;
        ensure!(
            exit.success(),
            "{} exited with {exit} on SIGTERM",
            self.name
        );
        Ok(())
    }
}

/// PostgreSQL of the soak's own, in a scratch directory.
pub(super) struct Postgres {
    pub(super) bin: PathBuf,
    pub(super) data: PathBuf,
    pub(super) port: u16,
    /// Run its commands as the `postgres` user (we are root, which
    /// PostgreSQL refuses).
    pub(super) as_postgres: bool,
}

impl Postgres {
    pub(super) fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub(super) fn init(bin: PathBuf, dir: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let as_postgres = running_as_root();
        let parent = dir.join("pg");
        std::fs::create_dir_all(&parent)?;
        // The scratch directory is private (0700): the postgres user needs
        // a way in to its own data directory.
        for d in [dir, parent.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
        let data = parent.join("data");
        let port = free_port()?;
        let pg = Self {
            bin,
            data,
            port,
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("install")
                .args(["-d", "-o", "postgres", "-m", "0700"])
                .arg(&pg.data)
                .status()?;
            ensure!(status.success(), "creating the PostgreSQL data directory");
        }
        let out = pg
            .command("initdb")
            .args(["--auth=trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&pg.data)
            .output()?;
        ensure!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start()?;
        Ok(pg)
    }

    pub(super) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub(super) fn start(&self) -> anyhow::Result<()> {
        let options = format!("-p {} -h 127.0.0.1 -k {}", self.port, self.data.display());
        let out = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data)
            .args(["-o", &options, "-l"])
            .arg(self.data.join("server.log"))
            .output()?;
        ensure!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    pub(super) fn stop(&self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data)
            .output()?;
        ensure!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(&self.data)
            .output();
    }
}

pub(super) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// PostgreSQL's server binaries: `--postgres-bin`, `pg_config --bindir`, or
/// the newest `/usr/lib/postgresql/*/bin`.
pub(super) fn find_postgres_bin(given: Option<PathBuf>) -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = given {
        return has_tools(&dir).then_some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_tools(d))
        .collect();
    versions.sort();
    versions.pop()
}

/// The issuer settings every instance shares: lifetimes short enough for
/// housekeeping to matter within the run.
pub(super) fn issuer_args(
    listen: &str,
    issuer_url: Option<&str>,
    database: &str,
    keys: &Path,
    jwks_cache: Duration,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--listen",
        listen,
        "--database",
        database,
        "--keys-reload-interval",
        "500ms",
        "--access-token-lifetime",
        "300s",
        "--refresh-idle-lifetime",
        "120s",
        "--refresh-absolute-lifetime",
        "240s",
        "--shutdown-grace",
        "2s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend([
        "--jwks-cache-lifetime".to_owned(),
        format!("{}s", jwks_cache.as_secs()),
        "--keys-dir".to_owned(),
        keys.display().to_string(),
    ]);
    if let Some(url) = issuer_url {
        args.extend(["--issuer-url".to_owned(), url.to_owned()]);
    }
    args
}

pub(super) fn rs_args(listen: &str, issuer_url: &str, via: Option<SocketAddr>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--issuer".into(),
        issuer_url.into(),
        "--listen".into(),
        listen.into(),
        "--revocation-poll-ms".into(),
        POLL.as_millis().to_string(),
        "--unknown-kid-cooldown".into(),
        "1".into(),
    ];
    if let Some(b) = via {
        args.extend([
            "--jwks-url".into(),
            format!("http://{b}/.well-known/jwks.json"),
            "--revocation-feed-url".into(),
            format!("http://{b}/revocations"),
        ]);
    }
    args
}

/// The user traffic worker `n` logs in as: one each, as people are (the
/// login throttle counts per user: one user logging in from six places at
/// once through a database restart would be throttled, rightly).
pub(super) fn user_name(n: usize) -> String {
    format!("soak-{n}")
}

/// Adds a user with the issuer's own CLI.
pub(super) fn add_user(
    issuer_bin: &Path,
    database: &str,
    keys: &Path,
    name: &str,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new(issuer_bin)
        .args([
            "users",
            "add",
            name,
            "--password-stdin",
            "--database",
            database,
        ])
        .arg("--keys-dir")
        .arg(keys)
        .env_remove("TESSERA_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "users add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Rotates a keyring with the operator CLI, under the service's rules.
pub(super) fn rotate(issuer_bin: &Path, keys: &Path, jwks_cache: Duration) -> anyhow::Result<()> {
    let out = Command::new(issuer_bin)
        .args(["keys", "rotate", "--access-token-lifetime", "300s"])
        .arg("--jwks-cache-lifetime")
        .arg(format!("{}s", jwks_cache.as_secs()))
        .arg("--keys-dir")
        .arg(keys)
        .env_remove("TESSERA_CONFIG")
        .output()?;
    ensure!(
        out.status.success(),
        "keys rotate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Polls `GET /readyz` until 200.
pub(super) async fn wait_ready(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(mut c) = Client::connect(addr).await
            && let Ok(Ok((200, _))) =
                tokio::time::timeout(Duration::from_secs(2), c.get("/readyz", &[])).await
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{addr} not ready within {within:?}")
}

/// A small filesystem of its own for C's database, if this machine lets us
/// mount one (root, tmpfs).
pub(super) fn mount_small_disk(dir: &Path) -> Option<PathBuf> {
    let mount = dir.join("small-disk");
    std::fs::create_dir_all(&mount).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512m,mode=0700", "tmpfs"])
        .arg(&mount)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(mount)
}

pub(super) struct Unmount(pub(super) Option<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// Fills the filesystem at `dir` with one file until it is full.
pub(super) fn fill(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..4096 {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
    Ok(path)
}
