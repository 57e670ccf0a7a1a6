//! The `users` table.

use super::Db;
use super::error::{DbError, sql};

/// A user as operators and tokens see it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Stable id: the `sub` claim. Never the username, which may change.
    pub id: String,
    /// The login name.
    pub username: String,
    /// Role names, e.g. `admin`.
    pub roles: Vec<String>,
    /// Disabled users cannot log in or refresh.
    pub disabled: bool,
    /// When the user was added (Unix seconds).
    pub created_at: i64,
}

/// A user with the password hash, for login only.
#[derive(Clone)]
pub struct Credentials {
    /// The user.
    pub user: User,
    /// The Argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// How many users exist.
    pub async fn count_users(&self) -> Result<i64, DbError> {
        on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM users"
        )
        .fetch_one(pool)
        .await
        .map_err(sql("counting users")))
    }

    /// Adds a user with an already computed password hash.
    pub async fn add_user(
        &self,
        id: &str,
        username: &str,
        password_hash: &str,
        roles: &[String],
        now: i64,
    ) -> Result<User, DbError> {
        let roles_json = serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned());
        let result = on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO users (id, username, password_hash, roles, disabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .bind(&roles_json)
        .bind(false)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())
        });
        match result {
            Ok(()) => Ok(User {
                id: id.to_owned(),
                username: username.to_owned(),
                roles: roles.to_vec(),
                disabled: false,
                created_at: now,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(DbError::UserExists(username.to_owned()))
            }
            Err(e) => Err(sql("adding a user")(e)),
        }
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, DbError> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT id, username, roles, disabled, created_at FROM users ORDER BY username",
            )
            .fetch_all(pool)
            .await
            .map_err(sql("listing users"))?;
            rows.iter()
                .map(user_from_row)
                .collect::<Result<_, _>>()
                .map_err(sql("reading users"))
        })
    }

    /// The user and password hash for a login name, if it exists.
    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>, DbError> {
        on_pool!(self, |pool| {
            use sqlx::Row as _;
            let row = sqlx::query(
                "SELECT id, username, roles, disabled, created_at, password_hash
                 FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(pool)
            .await
            .map_err(sql("reading a user"))?;
            row.map(|row| {
                Ok(Credentials {
                    user: user_from_row(&row)?,
                    password_hash: row.try_get("password_hash")?,
                })
            })
            .transpose()
            .map_err(sql("reading a user"))
        })
    }

    /// Replaces a user's roles.
    pub async fn set_roles(
        &self,
        username: &str,
        roles: &[String],
        now: i64,
    ) -> Result<(), DbError> {
        let roles_json = serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned());
        self.update_user(username, Column::Roles(&roles_json), now)
            .await
    }

    /// Replaces a user's password hash (password reset, or a rehash on login).
    pub async fn set_password_hash(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), DbError> {
        self.update_user(username, Column::PasswordHash(hash), now)
            .await
    }

    /// Disables or re-enables a user.
    pub async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> Result<(), DbError> {
        self.update_user(username, Column::Disabled(disabled), now)
            .await
    }

    /// Sets one column of a user (and `updated_at`).
    async fn update_user(
        &self,
        username: &str,
        column: Column<'_>,
        now: i64,
    ) -> Result<(), DbError> {
        let statement = match column {
            Column::Roles(_) => "UPDATE users SET roles = $1, updated_at = $2 WHERE username = $3",
            Column::PasswordHash(_) => {
                "UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3"
            }
            Column::Disabled(_) => {
                "UPDATE users SET disabled = $1, updated_at = $2 WHERE username = $3"
            }
        };
        let changed = on_pool!(self, |pool| {
            let query = sqlx::query(statement);
            let query = match column {
                Column::Roles(text) | Column::PasswordHash(text) => query.bind(text),
                Column::Disabled(flag) => query.bind(flag),
            };
            query
                .bind(now)
                .bind(username)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        user_changed(username, changed)
    }

    /// Deletes a user (and, by cascade, their sessions and refresh tokens).
    pub async fn delete_user(&self, username: &str) -> Result<(), DbError> {
        let changed = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM users WHERE username = $1"
        )
        .bind(username)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()));
        user_changed(username, changed)
    }
}

/// One column of `users` to set, with its value.
#[derive(Debug, Clone, Copy)]
enum Column<'a> {
    Roles(&'a str),
    PasswordHash(&'a str),
    Disabled(bool),
}

fn user_changed(username: &str, changed: Result<u64, sqlx::Error>) -> Result<(), DbError> {
    match changed.map_err(sql("updating a user"))? {
        0 => Err(DbError::NoSuchUser(username.to_owned())),
        _ => Ok(()),
    }
}

pub(super) fn user_from_row<'r, R>(row: &'r R) -> Result<User, sqlx::Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let roles: String = row.try_get("roles")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        // Unreadable roles grant nothing: the safe direction.
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        disabled: row.try_get("disabled")?,
        created_at: row.try_get("created_at")?,
    })
}
