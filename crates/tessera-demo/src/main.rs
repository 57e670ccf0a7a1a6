//! `tessera-demo`: the issuer and the demo resource server on loopback, in one
//! process, with a demo admin and a demo user (fresh random passwords on every
//! start), and the `curl` commands to try the whole flow. Ctrl-C stops both.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tessera_issuer::config::RawConfig;
use tessera_issuer::db::Db;
use tessera_issuer::passwords::{Hasher, Password, random_token};
use tessera_issuer::serve::Prepared;
use tessera_verifier::{CookieSource, RevocationConfig, SystemClock, Verifier, VerifierConfig};

/// How often the demo's resource server polls the revocation feed.
const DEMO_FEED_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Run Tessera's issuer and demo resource server on loopback, with demo users.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where the issuer listens (port 0 picks one).
    #[arg(
        long,
        env = "TESSERA_DEMO_ISSUER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    issuer_listen: SocketAddr,
    /// Where the resource server listens (port 0 picks one).
    #[arg(
        long,
        env = "TESSERA_DEMO_RESOURCE_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    resource_listen: SocketAddr,
    /// The issuer's keyring directory.
    #[arg(long, env = "TESSERA_KEYS_DIR", default_value = "keys")]
    keys_dir: PathBuf,
    /// The issuer's database.
    #[arg(
        long = "database",
        env = "TESSERA_DATABASE",
        default_value = "sqlite://issuer.db"
    )]
    database_url: String,
}

/// The demo's users: name and roles.
const USERS: [(&str, &[&str]); 2] = [("demo-admin", &["admin", "user"]), ("demo-user", &["user"])];

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            #[allow(clippy::print_stderr)] // the binary's one error line
            {
                eprintln!("tessera-demo: {err:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: Args) -> anyhow::Result<()> {
    // The resource server's address first: the issuer allows its page's
    // origin to use cookie sessions.
    let listener = tokio::net::TcpListener::bind(args.resource_listen)
        .await
        .with_context(|| format!("binding {}", args.resource_listen))?;
    let resource_url = format!("http://{}", listener.local_addr()?);
    let config = RawConfig {
        keys_dir: Some(args.keys_dir),
        database_url: Some(args.database_url.clone()),
        listen: Some(args.issuer_listen),
        allowed_origins: Some(vec![resource_url.clone()]),
        ..RawConfig::default()
    }
    .validate()?;
    let mut prepared = Prepared::new(config).await.context("starting the issuer")?;
    let first_admin = prepared.take_first_admin();
    let issuer_url = prepared.issuer().to_owned();
    let passwords = demo_users(&args.database_url).await?;
    let service_secret = demo_service(&args.database_url).await?;
    demo_spa(&args.database_url, &resource_url).await?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let issuer = tokio::spawn(prepared.run(wait(stopped.clone())));

    // The resource server follows the issuer's revocation feed (every
    // 500 ms here, so the walk-through shows a logout taking effect), and
    // takes the access cookie, state-changing requests from its own page.
    let mut config = VerifierConfig::new(issuer_url.clone(), ["tessera"]);
    let mut feed = RevocationConfig::default();
    feed.poll_interval = DEMO_FEED_POLL;
    config.revocations = Some(feed);
    config.cookie = Some(CookieSource::new("tessera_access", [resource_url.clone()]));
    let verifier = Verifier::start(config, Arc::new(SystemClock))?;
    let app = tessera_resource_server::app(verifier.clone());
    let resource = tokio::spawn(tessera_serve::serve(
        listener,
        app,
        tessera_serve::Limits::default(),
        wait(stopped.clone()),
    ));
    if !verifier.ready(Duration::from_secs(10)).await {
        anyhow::bail!(
            "the resource server could not fetch the issuer's keys: {:?}",
            verifier.health()
        );
    }

    let mut out = std::io::stdout().lock();
    print_guide(
        &mut out,
        &issuer_url,
        &resource_url,
        &passwords,
        first_admin.as_ref(),
    )?;
    print_service_guide(&mut out, &issuer_url, &resource_url, &service_secret)?;
    writeln!(out, "# ---- end ----")?;
    writeln!(out, "Ctrl-C stops both servers.")?;
    out.flush()?;
    drop(out);

    tessera_issuer::serve::shutdown_signal().await;
    let _ = stop.send(true);
    issuer.await.context("the issuer task")??;
    resource.await.context("the resource server task")??;
    #[allow(clippy::print_stdout)]
    {
        println!("tessera-demo: stopped cleanly");
    }
    Ok(())
}

/// The demo's service client, `reports-job`: confidential, allowed the
/// client-credentials grant and the scope `reports:read`, with a fresh secret
/// on every start (returned).
async fn demo_service(database_url: &str) -> anyhow::Result<String> {
    use tessera_issuer::clients::{
        Client, ClientKind, decode_hash, login_client, secret_hash_text,
    };
    let db = Db::connect(database_url).await?;
    let now = tessera_issuer::unix_now(&tessera_keyring::SystemClock);
    let secret = tessera_issuer::clients::new_secret();
    let client = Client {
        kind: ClientKind::Confidential,
        grant_types: vec!["client_credentials".to_owned()],
        scopes: vec!["reports:read".to_owned()],
        default_scope: vec!["reports:read".to_owned()],
        secret_sha256: decode_hash(&secret_hash_text(&secret)),
        ..login_client(DEMO_SERVICE, now)
    };
    tessera_issuer::clients::check(&client).map_err(anyhow::Error::msg)?;
    if db.client(DEMO_SERVICE).await?.is_some() {
        db.update_client(&client).await?;
    } else {
        db.add_client(&client).await?;
    }
    Ok(secret)
}

/// The demo's browser client: public, code + PKCE and refresh, scopes
/// `openid profile roles`, sent back to the resource server's `/spa` page
/// (after sign-in and after sign-out). Registered again on every start, as
/// the page's port may change.
async fn demo_spa(database_url: &str, resource_url: &str) -> anyhow::Result<()> {
    use tessera_issuer::clients::{Client, ClientKind, login_client};
    let db = Db::connect(database_url).await?;
    let now = tessera_issuer::unix_now(&tessera_keyring::SystemClock);
    let id = tessera_resource_server::SPA_CLIENT;
    let page = format!("{resource_url}/spa");
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let client = Client {
        kind: ClientKind::Public,
        grant_types: strings(&["authorization_code", "refresh_token"]),
        scopes: strings(&["openid", "profile", "roles"]),
        default_scope: strings(&["openid", "profile"]),
        redirect_uris: vec![page.clone()],
        post_logout_redirect_uris: vec![page],
        ..login_client(id, now)
    };
    tessera_issuer::clients::check(&client).map_err(anyhow::Error::msg)?;
    if db.client(id).await?.is_some() {
        db.update_client(&client).await?;
    } else {
        db.add_client(&client).await?;
    }
    Ok(())
}

/// The demo's service client.
const DEMO_SERVICE: &str = "reports-job";

/// Creates the demo users, or gives them fresh passwords and their roles back.
async fn demo_users(database_url: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let db = Db::connect(database_url).await?;
    let hasher = Hasher::new(1)?;
    let now = tessera_issuer::unix_now(&tessera_keyring::SystemClock);
    let mut passwords = Vec::new();
    for (name, roles) in USERS {
        let password = random_token(12);
        let secret = Password::new(password.clone());
        let h = hasher.clone();
        let hash = tokio::task::spawn_blocking(move || h.hash(&secret)).await??;
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        if db.credentials(name).await?.is_some() {
            db.set_password_hash(name, &hash, now).await?;
            db.set_roles(name, &roles, now).await?;
            db.set_disabled(name, false, now).await?;
        } else {
            db.add_user(&random_token(16), name, &hash, &roles, now)
                .await?;
        }
        passwords.push((name, password));
    }
    Ok(passwords)
}

fn print_guide(
    out: &mut impl std::io::Write,
    issuer: &str,
    resource: &str,
    passwords: &[(&str, String)],
    first_admin: Option<&tessera_issuer::serve::FirstAdmin>,
) -> std::io::Result<()> {
    // `VAR_TOKEN` and `VAR_REFRESH` from the token response held in `$VAR`.
    let keep_tokens = |var: &str| {
        format!(
            "{var}_TOKEN=$(printf '%s' \"${var}\" | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n\
             {var}_REFRESH=$(printf '%s' \"${var}\" | sed -E 's/.*\"refresh_token\":\"([^\"]+)\".*/\\1/')"
        )
    };
    let login = |name: &str, password: &str, var: &str| {
        format!(
            "{var}=$(curl -s {issuer}/login -H 'Content-Type: application/json' -d '{{\"username\":\"{name}\",\"password\":\"{password}\"}}')\n{}",
            keep_tokens(var)
        )
    };
    let status = "-s -o /dev/null -w '%{http_code}\\n'";
    writeln!(
        out,
        "tessera-demo: issuer {issuer}, resource server {resource}"
    )?;
    writeln!(
        out,
        "web app (cookie sessions): open {resource}/app in a browser and sign in"
    )?;
    writeln!(
        out,
        "browser sign-in (code + PKCE, OpenID Connect): open {resource}/spa in a browser"
    )?;
    for (name, password) in passwords {
        writeln!(out, "demo user {name}: password {password}")?;
    }
    if let Some(admin) = first_admin {
        writeln!(
            out,
            "first start: created user {:?} with role admin and password {} (shown once)",
            admin.username, admin.password
        )?;
    }
    let (admin, user) = (&passwords[0], &passwords[1]);
    writeln!(out)?;
    writeln!(
        out,
        "# Paste into a shell (needs curl and sed). Each status line should read as commented."
    )?;
    writeln!(out, "# ---- begin ----")?;
    writeln!(out, "# Log in as the admin and as the user:")?;
    writeln!(out, "{}", login(admin.0, &admin.1, "ADMIN"))?;
    writeln!(out, "{}", login(user.0, &user.1, "USER"))?;
    writeln!(
        out,
        "# /profile with the admin's token (200, the caller's claims):"
    )?;
    writeln!(
        out,
        "curl -s -H \"Authorization: Bearer $ADMIN_TOKEN\" {resource}/profile; echo"
    )?;
    writeln!(out, "# /admin: 200 for the admin, 403 for the user:")?;
    writeln!(
        out,
        "curl {status} -H \"Authorization: Bearer $ADMIN_TOKEN\" {resource}/admin"
    )?;
    writeln!(
        out,
        "curl {status} -H \"Authorization: Bearer $USER_TOKEN\" {resource}/admin"
    )?;
    writeln!(
        out,
        "# Refresh the user's tokens (a new pair; the old refresh token is used up):"
    )?;
    writeln!(
        out,
        "USER2=$(curl -s {issuer}/token -d grant_type=refresh_token -d \"refresh_token=$USER_REFRESH\")"
    )?;
    writeln!(out, "{}", keep_tokens("USER2"))?;
    writeln!(
        out,
        "curl {status} -H \"Authorization: Bearer $USER2_TOKEN\" {resource}/profile"
    )?;
    writeln!(
        out,
        "# Log the user out (204); the session's refresh token is refused afterwards (400):"
    )?;
    writeln!(
        out,
        "curl {status} -X POST -H \"Authorization: Bearer $USER2_TOKEN\" {issuer}/logout"
    )?;
    writeln!(
        out,
        "curl {status} {issuer}/token -d grant_type=refresh_token -d \"refresh_token=$USER2_REFRESH\""
    )?;
    writeln!(
        out,
        "# ...and within one poll of the revocation feed ({} ms here) the resource server\n\
         # refuses its access token too (401 \"token revoked\"), long before it expires:",
        DEMO_FEED_POLL.as_millis()
    )?;
    writeln!(out, "sleep 1")?;
    writeln!(
        out,
        "curl {status} -H \"Authorization: Bearer $USER2_TOKEN\" {resource}/profile"
    )?;
    writeln!(out, "# The issuer's public keys (JWKS):")?;
    writeln!(out, "curl -s {issuer}/.well-known/jwks.json; echo")?;
    print_cookie_guide(out, issuer, resource, user)?;
    Ok(())
}

/// The cookie-session walk-through: curl's cookie jar plays the browser (it
/// keeps the cookies and sends `Origin`, as the page's requests do).
fn print_cookie_guide(
    out: &mut impl std::io::Write,
    issuer: &str,
    resource: &str,
    (name, password): &(&str, String),
) -> std::io::Result<()> {
    let status = "-s -o /dev/null -w '%{http_code}\\n'";
    let jar = "-b \"$JAR\" -c \"$JAR\"";
    let origin = format!("-H 'Origin: {resource}'");
    let json = "-H 'Content-Type: application/json'";
    writeln!(
        out,
        "# Cookie sessions, as the page at {resource}/app uses them (curl's cookie jar\n\
         # plays the browser: it keeps the cookies, and each request says its Origin):"
    )?;
    writeln!(out, "JAR=$(mktemp)")?;
    writeln!(
        out,
        "# Sign in (200: the session's facts; the tokens go into the jar, never the body):"
    )?;
    writeln!(
        out,
        "curl -s {jar} {origin} {json} -d '{{\"username\":\"{name}\",\"password\":\"{password}\"}}' {issuer}/session; echo"
    )?;
    writeln!(out, "# The welcome page reads the access cookie:")?;
    writeln!(out, "curl -s {jar} {resource}/welcome; echo")?;
    writeln!(
        out,
        "# Refresh with the refresh cookie (200, both cookies new):"
    )?;
    writeln!(
        out,
        "curl {status} {jar} -X POST {origin} {issuer}/session/refresh"
    )?;
    writeln!(
        out,
        "# A state-changing request with the cookie: 201 from the app's origin, 403 from\n\
         # another (what a forged cross-site request gets):"
    )?;
    writeln!(
        out,
        "curl {status} {jar} {origin} {json} -d '{{\"text\":\"hi\"}}' {resource}/notes"
    )?;
    writeln!(
        out,
        "curl {status} {jar} -H 'Origin: https://evil.example' {json} -d '{{\"text\":\"hi\"}}' {resource}/notes"
    )?;
    writeln!(
        out,
        "# Sign out (204; the answer clears both cookies). Even a copy of the old access\n\
         # cookie is refused at the welcome page within one poll of the feed (401):"
    )?;
    writeln!(out, "cp \"$JAR\" \"$JAR.copy\"")?;
    writeln!(
        out,
        "curl {status} {jar} -X POST {origin} {issuer}/session/logout"
    )?;
    writeln!(out, "sleep 1")?;
    writeln!(out, "curl {status} -b \"$JAR.copy\" {resource}/welcome")?;
    writeln!(out, "rm -f \"$JAR\" \"$JAR.copy\"")?;
    Ok(())
}

/// The service walk-through: a token for the `reports-job` client itself,
/// `/reports` (scope `reports:read`) and `/me/optional`.
fn print_service_guide(
    out: &mut impl std::io::Write,
    issuer: &str,
    resource: &str,
    secret: &str,
) -> std::io::Result<()> {
    let status = "-s -o /dev/null -w '%{http_code}\\n'";
    writeln!(
        out,
        "# A service's token for itself (client credentials, as the {DEMO_SERVICE} client):"
    )?;
    writeln!(
        out,
        "SERVICE=$(curl -s -u '{DEMO_SERVICE}:{secret}' {issuer}/token -d grant_type=client_credentials)"
    )?;
    writeln!(
        out,
        "SERVICE_TOKEN=$(printf '%s' \"$SERVICE\" | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')"
    )?;
    writeln!(
        out,
        "# /reports needs scope reports:read: the service's reports, and 403 for the admin\n\
         # (whose token has scope profile only):"
    )?;
    writeln!(
        out,
        "curl -s -H \"Authorization: Bearer $SERVICE_TOKEN\" {resource}/reports; echo"
    )?;
    writeln!(
        out,
        "curl {status} -H \"Authorization: Bearer $ADMIN_TOKEN\" {resource}/reports"
    )?;
    writeln!(
        out,
        "# /me/optional works without a token, and says who you are with one:"
    )?;
    writeln!(out, "curl -s {resource}/me/optional; echo")?;
    writeln!(
        out,
        "curl -s -H \"Authorization: Bearer $ADMIN_TOKEN\" {resource}/me/optional; echo"
    )?;
    Ok(())
}
