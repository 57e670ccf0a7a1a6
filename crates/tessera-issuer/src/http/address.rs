//! The client's address, past trusted proxies ([`crate::proxies`]), for
//! throttling, the audit and the logs.

use axum::extract::State;
use axum::response::Response;

use super::state::AppState;

/// Puts the client's address (past trusted proxies, see [`crate::proxies`])
/// into the request's extensions for the handlers.
pub(super) async fn client_address(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(peer) = peer {
        let addr = crate::proxies::client_addr(peer, request.headers(), state.trusted_proxies());
        request.extensions_mut().insert(ClientAddr(addr));
    }
    next.run(request).await
}

/// The client's address, as [`client_address`] found it.
#[derive(Debug, Clone, Copy)]
struct ClientAddr(std::net::IpAddr);

/// The client's address (past trusted proxies), when the server was started
/// with connection info.
pub(super) fn client_ip(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<ClientAddr>().map(|addr| addr.0)
}
