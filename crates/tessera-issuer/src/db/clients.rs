//! The `clients` table (see [`crate::clients`]).

use super::Db;
use super::error::{DbError, sql};
use crate::clients::Client;

/// The columns a client is read from, in [`client_from_row`]'s order.
const COLUMNS: &str = "client_id, kind, secret_sha256, grant_types, scopes, default_scope,
                       audiences, redirect_uris, introspect, disabled, created_at, updated_at,
                       auth_methods, jwks, previous_secret_sha256, previous_secret_until,
                       token_lifetime_secs, third_party, post_logout_redirect_uris";

fn list_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

/// Binds a client's columns as `$1`…`$18` (`at`: the time the row gets), in
/// the order `add_client` and `update_client` both use.
trait BindClient: Sized {
    fn bind_client(self, client: &Client, at: i64) -> Self;
}

impl<'q, DB> BindClient for sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    fn bind_client(self, client: &Client, at: i64) -> Self {
        let secret = client.secret_sha256.map(|h| tessera_keyring::b64url(&h));
        let previous = client
            .previous_secret_sha256
            .map(|h| tessera_keyring::b64url(&h));
        let lifetime = client
            .token_lifetime_secs
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        self.bind(client.client_id.clone())
            .bind(client.kind.name().to_owned())
            .bind(secret)
            .bind(list_json(&client.grant_types))
            .bind(list_json(&client.scopes))
            .bind(list_json(&client.default_scope))
            .bind(list_json(&client.audiences))
            .bind(list_json(&client.redirect_uris))
            .bind(client.introspect)
            .bind(client.disabled)
            .bind(at)
            .bind(list_json(&client.auth_methods))
            .bind(client.jwks.clone())
            .bind(previous)
            .bind(client.previous_secret_until)
            .bind(lifetime)
            .bind(client.third_party)
            .bind(list_json(&client.post_logout_redirect_uris))
    }
}

fn client_from_row<'r, R>(row: &'r R) -> Result<Client, sqlx::Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let client_id: String = row.try_get("client_id")?;
    let unreadable = || sqlx::Error::Decode(format!("client {client_id:?} is unreadable").into());
    let list = |column: &'static str| -> Result<Vec<String>, sqlx::Error> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|_| unreadable())
    };
    let kind: String = row.try_get("kind")?;
    let secret: Option<String> = row.try_get("secret_sha256")?;
    let hash = |text: Option<String>| match text {
        Some(text) => crate::clients::decode_hash(&text)
            .map(Some)
            .ok_or_else(unreadable),
        None => Ok(None),
    };
    let secret_sha256 = hash(secret)?;
    let previous_secret_sha256 = hash(row.try_get("previous_secret_sha256")?)?;
    let lifetime: Option<i64> = row.try_get("token_lifetime_secs")?;
    Ok(Client {
        kind: crate::clients::ClientKind::from_name(&kind).ok_or_else(unreadable)?,
        grant_types: list("grant_types")?,
        scopes: list("scopes")?,
        default_scope: list("default_scope")?,
        audiences: list("audiences")?,
        redirect_uris: list("redirect_uris")?,
        introspect: row.try_get("introspect")?,
        disabled: row.try_get("disabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        secret_sha256,
        auth_methods: list("auth_methods")?,
        jwks: row.try_get("jwks")?,
        previous_secret_sha256,
        previous_secret_until: row.try_get("previous_secret_until")?,
        token_lifetime_secs: lifetime.map(|s| u64::try_from(s).unwrap_or(0)),
        third_party: row.try_get("third_party")?,
        post_logout_redirect_uris: list("post_logout_redirect_uris")?,
        client_id,
    })
}

impl Db {
    /// How many clients are registered.
    pub async fn count_clients(&self) -> Result<i64, DbError> {
        on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM clients"
        )
        .fetch_one(pool)
        .await
        .map_err(sql("counting clients")))
    }

    /// Registers a client (its settings already checked).
    pub async fn add_client(&self, client: &Client) -> Result<(), DbError> {
        let result = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO clients (client_id, kind, secret_sha256, grant_types, scopes,
                 default_scope, audiences, redirect_uris, introspect, disabled, created_at,
                 updated_at, auth_methods, jwks, previous_secret_sha256, previous_secret_until,
                 token_lifetime_secs, third_party, post_logout_redirect_uris)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16,
                     $17, $18)",
            )
            .bind_client(client, client.created_at)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match result {
            Ok(()) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(DbError::ClientExists(client.client_id.clone()))
            }
            Err(e) => Err(sql("registering a client")(e)),
        }
    }

    /// Replaces a client's settings (and secret) with `client`'s.
    pub async fn update_client(&self, client: &Client) -> Result<(), DbError> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "UPDATE clients SET kind = $2, secret_sha256 = $3, grant_types = $4, scopes = $5,
                 default_scope = $6, audiences = $7, redirect_uris = $8, introspect = $9,
                 disabled = $10, updated_at = $11, auth_methods = $12, jwks = $13,
                 previous_secret_sha256 = $14, previous_secret_until = $15,
                 token_lifetime_secs = $16, third_party = $17, post_logout_redirect_uris = $18
             WHERE client_id = $1"
        )
        .bind_client(client, client.updated_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("updating a client")))?;
        match changed {
            0 => Err(DbError::NoSuchClient(client.client_id.clone())),
            _ => Ok(()),
        }
    }

    /// Removes a client. Its sessions can no longer refresh.
    pub async fn remove_client(&self, client_id: &str) -> Result<(), DbError> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM clients WHERE client_id = $1"
        )
        .bind(client_id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("removing a client")))?;
        match changed {
            0 => Err(DbError::NoSuchClient(client_id.to_owned())),
            _ => Ok(()),
        }
    }

    /// Every client, by id.
    pub async fn list_clients(&self) -> Result<Vec<Client>, DbError> {
        on_pool!(self, |pool| {
            let query = format!("SELECT {COLUMNS} FROM clients ORDER BY client_id");
            let rows = sqlx::query(&query)
                .fetch_all(pool)
                .await
                .map_err(sql("listing clients"))?;
            rows.iter()
                .map(client_from_row)
                .collect::<Result<_, _>>()
                .map_err(sql("reading clients"))
        })
    }

    /// One client, if registered.
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>, DbError> {
        on_pool!(self, |pool| {
            let query = format!("SELECT {COLUMNS} FROM clients WHERE client_id = $1");
            let row = sqlx::query(&query)
                .bind(client_id)
                .fetch_optional(pool)
                .await
                .map_err(sql("reading a client"))?;
            row.as_ref()
                .map(client_from_row)
                .transpose()
                .map_err(sql("reading a client"))
        })
    }
}

impl Db {
    /// Accepts a `private_key_jwt` assertion's `jti` for `client_id` until
    /// `expires_at`: `true` the first time, `false` if any instance accepted
    /// it before (a replay). Expired ones are cleared by housekeeping.
    pub async fn accept_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, DbError> {
        let result = on_writer!(self, |conn| sqlx::query(
            "INSERT INTO client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)"
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_at)
        .execute(conn)
        .await
        .map(|_| ()));
        match result {
            Ok(()) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(sql("recording a client assertion")(e)),
        }
    }

    /// Forgets assertions that expired before `before`.
    pub async fn forget_assertions(&self, before: i64) -> Result<u64, DbError> {
        on_writer!(self, |conn| sqlx::query(
            "DELETE FROM client_assertions WHERE expires_at < $1"
        )
        .bind(before)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(sql("forgetting client assertions")))
    }
}
