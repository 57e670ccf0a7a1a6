//! `GET /revocations?since=<cursor>`: the signed revocation feed
//! ([`crate::feed`]).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::keys::if_none_match;
use super::state::AppState;
use crate::feed::{Answer, FeedError};
use crate::metrics::FeedAnswer;

/// The feed's query string.
#[derive(serde::Deserialize)]
pub(super) struct FeedQuery {
    since: Option<String>,
}

pub(super) async fn revocations(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let axum::extract::Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("unreadable query string".to_owned()))?;
    let answer = state
        .service()
        .revocation_feed(query.since.as_deref(), |etag| if_none_match(&headers, etag))
        .await
        .map_err(|err| match err {
            FeedError::BadCursor => ApiError::InvalidRequest(err.to_string()),
            FeedError::NoKeys => ApiError::Unavailable(err.to_string()),
            FeedError::Db(db) => ApiError::from(db),
            other => ApiError::Internal(other.to_string()),
        })?;
    let no_cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let etag_header = |etag: String| {
        HeaderValue::from_str(&etag).map_err(|_| ApiError::Internal("feed ETag".to_owned()))
    };
    let metrics = state.service().metrics();
    Ok(match answer {
        Answer::NotModified { etag } => {
            metrics.feed_answer(FeedAnswer::not_modified);
            (
                StatusCode::NOT_MODIFIED,
                [no_cache, (header::ETAG, etag_header(etag)?)],
            )
                .into_response()
        }
        Answer::Document {
            etag,
            body,
            snapshot,
        } => {
            metrics.feed_answer(if snapshot {
                FeedAnswer::snapshot
            } else {
                FeedAnswer::delta
            });
            (
                [
                    no_cache,
                    (header::ETAG, etag_header(etag)?),
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/jwt"),
                    ),
                ],
                body,
            )
                .into_response()
        }
    })
}
