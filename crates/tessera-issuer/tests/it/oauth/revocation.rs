//! The revocation list and its signed feed, restores included.

use super::*;

/// Logout, `/revoke` and refresh-token reuse put the session on the
/// revocation list (so its access tokens can be refused before they expire),
/// each entry kept for the access-token lifetime plus the maximum leeway.
#[tokio::test]
async fn logout_revoke_and_reuse_add_the_session_to_the_revocation_list() {
    let app = app().await;
    let sid_of = |body: &Value| {
        claims(body["access_token"].as_str().unwrap())["sid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b, c) = (app.login().await, app.login().await, app.login().await);
    let access = a["access_token"].as_str().unwrap();
    assert_eq!(
        app.logout(Some(&format!("Bearer {access}"))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.form("/revoke", &format!("token={}", refresh_of(&b)))
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(60);
    assert_eq!(app.refresh(&refresh_of(&c)).await.status, StatusCode::OK);
    app.clock.advance(11);
    assert_eq!(
        app.refresh(&refresh_of(&c)).await.status,
        StatusCode::BAD_REQUEST
    );
    // An unknown token revokes nothing and adds nothing.
    app.form("/revoke", "token=not-a-token").await;

    let entries = app.db.revocations_since(0, T0 as i64).await.unwrap();
    let listed: Vec<(&str, String, &str)> = entries
        .iter()
        .map(|e| (e.kind.name(), e.value.clone(), e.why.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("sid", sid_of(&a), "logout"),
            ("sid", sid_of(&b), "revoked"),
            ("sid", sid_of(&c), "refresh_token_reuse"),
        ]
    );
    // Kept for 15 min (the access-token lifetime) + 5 min leeway, then gone.
    assert_eq!(entries[0].expires_at, T0 as i64 + 900 + 300);
    assert_eq!(
        app.db
            .revocations_since(0, T0 as i64 + 71 + 1200)
            .await
            .unwrap()
            .len(),
        0
    );
}

/// 200 logouts with one token and 200 `/revoke`s of its refresh token used
/// to add 400 entries of one hash (issue 15, item 6); now they add one.
/// `/revoke` of an access token revokes that token (RFC 7009), by `jti`,
/// and leaves its session alone.
#[tokio::test]
async fn repeats_add_one_entry_and_revoke_takes_access_tokens() {
    let app = app().await;
    let a = app.login().await;
    let bearer = format!("Bearer {}", a["access_token"].as_str().unwrap());
    let revoke_a = format!("token={}", refresh_of(&a));
    for _ in 0..200 {
        assert_eq!(
            app.logout(Some(&bearer)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(app.form("/revoke", &revoke_a).await.status, StatusCode::OK);
    }
    let entries = app.db.revocations_since(0, T0 as i64).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");

    let d = app.login().await;
    let access = d["access_token"].as_str().unwrap();
    let revoke_d = format!("token={access}&token_type_hint=access_token");
    assert_eq!(app.form("/revoke", &revoke_d).await.status, StatusCode::OK);
    // Not signed by us: nothing.
    let forged = format!("token={}x", &access[..access.len() - 1]);
    assert_eq!(app.form("/revoke", &forged).await.status, StatusCode::OK);
    let entries = app.db.revocations_since(0, T0 as i64).await.unwrap();
    let listed: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.kind.name(), e.value.as_str(), e.why.as_str()))
        .collect();
    let jti = claims(access)["jti"].as_str().unwrap().to_owned();
    assert_eq!(listed[1..], [("jti", jti.as_str(), "revoked")]);
    // The session goes on: its refresh token still works.
    assert_eq!(app.refresh(&refresh_of(&d)).await.status, StatusCode::OK);
}

impl App {
    async fn feed(&self, since: Option<&str>, etag: Option<&str>) -> Reply {
        let path = since.map_or("/revocations".to_owned(), |s| {
            format!("/revocations?since={s}")
        });
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// The feed document's payload, after checking its signature with the
    /// published JWKS and its header.
    async fn feed_document(&self, reply: &Reply) -> Value {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers[header::CONTENT_TYPE], "application/jwt");
        let jwks = self
            .send(
                Request::get("/.well-known/jwks.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let (keys, _) = tessera_verifier::KeySet::from_jwks_json(&jwks.raw, &["RS256"]).unwrap();
        let text = std::str::from_utf8(&reply.raw).unwrap();
        let jws = tessera_verifier::Jws::parse(text, 1 << 20).unwrap();
        assert_eq!(jws.header().typ.as_deref(), Some("revocations+jwt"));
        let kid = jws.header().kid.clone().unwrap();
        jws.verify_signature(keys.get(&kid).unwrap()).unwrap();
        let payload: Value = serde_json::from_slice(jws.payload()).unwrap();
        assert_eq!(payload["iss"], "https://auth.example.test");
        payload
    }
}

/// The revocation feed: signed with the published key, hashes instead of
/// identifiers, a cursor that is also the ETag (304), increments after a
/// cursor, a snapshot for none or a foreign one, bad cursors refused, and
/// entries gone once expired.
#[tokio::test]
async fn the_revocation_feed_is_signed_incremental_and_bounded() {
    let app = app().await;
    let first = app.feed(None, None).await;
    let doc = app.feed_document(&first).await;
    assert_eq!(doc["snapshot"], true);
    assert_eq!(doc["entries"], json!([]));
    let cursor0 = doc["cursor"].as_str().unwrap().to_owned();
    // `<epoch>.<id>.<tag>`: no entry yet, so id 0 and the tag `-`.
    let (epoch, rest) = cursor0.split_once('.').unwrap();
    assert_eq!(rest, "0.-");
    assert_eq!(first.headers[header::ETAG], format!("\"{cursor0}\""));
    assert_eq!(first.headers[header::CACHE_CONTROL], "no-cache");

    let (a, b) = (app.login().await, app.login().await);
    let access = a["access_token"].as_str().unwrap();
    let sid = claims(access)["sid"].as_str().unwrap().to_owned();
    let logout = app.logout(Some(&format!("Bearer {access}"))).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);

    // What was added after the cursor, at once (the revocation was made here).
    let reply = app
        .feed(Some(&cursor0), Some(&format!("\"{cursor0}\"")))
        .await;
    let doc = app.feed_document(&reply).await;
    assert_eq!(doc["snapshot"], false);
    let hash = URL_SAFE_NO_PAD.encode(tessera_keyring::sha256(format!("sid:{sid}").as_bytes()));
    assert_eq!(
        doc["entries"],
        json!([{"kind": "sid", "hash": hash, "exp": T0 as i64 + 900 + 300}])
    );
    assert!(!reply.raw.windows(sid.len()).any(|w| w == sid.as_bytes()));
    let cursor1 = doc["cursor"].as_str().unwrap().to_owned();
    let etag1 = reply.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag1, format!("\"{cursor1}\""));

    // Up to date: 304 with the ETag, or an empty increment without it.
    let again = app.feed(Some(&cursor1), Some(&etag1)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.raw.is_empty());
    let doc = app
        .feed_document(&app.feed(Some(&cursor1), None).await)
        .await;
    assert_eq!(
        (doc["entries"].clone(), doc["snapshot"].clone()),
        (json!([]), json!(false))
    );

    // A cursor from another database: the whole list, as a snapshot.
    let doc = app
        .feed_document(&app.feed(Some("0123456789abcdef.7"), None).await)
        .await;
    assert_eq!(doc["snapshot"], true);
    assert_eq!(doc["entries"].as_array().unwrap().len(), 1);
    // The review's finding 5: a cursor beyond the newest entry was signed as
    // given, moving pollers past every later revocation. Now it gets a
    // snapshot, with the real cursor.
    let ahead = format!("{epoch}.999999999999.-");
    let doc = app.feed_document(&app.feed(Some(&ahead), None).await).await;
    assert_eq!(doc["cursor"], cursor1, "never beyond the newest entry");
    assert_eq!(doc["snapshot"], true);
    assert_eq!(doc["entries"].as_array().unwrap().len(), 1);
    assert!(doc.get("since").is_none(), "a snapshot answers any request");
    // A delta names the cursor it answers, and when it was signed.
    let doc = app
        .feed_document(&app.feed(Some(&cursor0), None).await)
        .await;
    assert_eq!(doc["since"], cursor0);
    assert_eq!(doc["iat"], T0 as i64);
    for bad in [
        "nonsense",
        &format!("{epoch}.-1.-"),
        &format!("{epoch}.x.-"),
        &format!("{epoch}.1.a!b"),
        &format!("{epoch}.1.-.extra"),
    ] {
        let reply = app.feed(Some(bad), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // /revoke adds the other session; once both entries expire (15 min + 5 min
    // after they were made), the feed holds nothing.
    app.form("/revoke", &format!("token={}", refresh_of(&b)))
        .await;
    let doc = app.feed_document(&app.feed(None, None).await).await;
    assert_eq!(doc["entries"].as_array().unwrap().len(), 2);
    app.clock.advance(1200);
    let doc = app.feed_document(&app.feed(None, None).await).await;
    assert_eq!(doc["entries"], json!([]));
    assert_eq!(
        doc["cursor"],
        format!("{epoch}.2.-"),
        "the cursor never goes back"
    );
}

/// The review's finding 5, second half: a database restored from an older
/// backup hands out again the ids pollers already passed. Cursors name their
/// entry, so a poller whose cursor names an entry the restore replaced gets
/// a snapshot of the restored list, revocations made after the restore
/// included, and follows it from there.
#[tokio::test]
async fn after_a_restore_from_an_older_backup_pollers_converge_on_the_restored_list() {
    let app = app().await;
    for _ in 0..3 {
        logout_one(&app).await;
    }
    let doc = app.feed_document(&app.feed(None, None).await).await;
    let at_three = doc["cursor"].as_str().unwrap().to_owned();

    // The backup, taken now: three entries. On SQLite a real one (`VACUUM
    // INTO` a new file); on PostgreSQL the restore is staged below.
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("backup.db");
    let url = test_database_url(app._tmp.path()).unwrap();
    let on_sqlite = !url.starts_with("postgres");
    if on_sqlite {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query(&format!("VACUUM INTO '{}'", backup.display()))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    // Two more; a poller follows them.
    for _ in 0..2 {
        logout_one(&app).await;
    }
    let doc = app
        .feed_document(&app.feed(Some(&at_three), None).await)
        .await;
    assert_eq!(doc["entries"].as_array().unwrap().len(), 2);
    let at_five = doc["cursor"].as_str().unwrap().to_owned();
    assert_eq!(at_five.split('.').nth(1), Some("5"));

    // Restored from the backup; three revocations after the restore take ids
    // 4, 5 and 6 again, for other sessions.
    let restored_dir = tempfile::tempdir().unwrap();
    let restored_url = if on_sqlite {
        format!("sqlite://{}", backup.display())
    } else {
        stage_restore(&url, 3).await;
        url.clone()
    };
    let restored = app_on(restored_dir, &restored_url, false).await;
    restored.clock.advance(5);
    for _ in 0..3 {
        logout_one(&restored).await;
    }
    // Before, the poller at 5 was answered "after 5": entry 6 alone, and the
    // new 4 and 5 were never seen. Now its cursor names an entry 5 the list
    // no longer holds: a snapshot, the restored list whole.
    let reply = restored
        .feed(Some(&at_five), Some(&format!("\"{at_five}\"")))
        .await;
    let doc = restored.feed_document(&reply).await;
    assert_eq!(doc["snapshot"], true, "{doc}");
    assert_eq!(doc["entries"].as_array().unwrap().len(), 6, "{doc}");
    let now_at = doc["cursor"].as_str().unwrap().to_owned();
    assert_eq!(now_at.split('.').nth(1), Some("6"));
    assert_ne!(now_at, at_five);
    // From there it follows deltas again, and is up to date.
    let reply = restored
        .feed(Some(&now_at), Some(&format!("\"{now_at}\"")))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    // A poller still at 3 (whose entry the restore kept) gets the delta:
    // the entries after 3, the new 4, 5 and 6.
    let doc = restored
        .feed_document(&restored.feed(Some(&at_three), None).await)
        .await;
    assert_eq!(
        (
            doc["snapshot"].clone(),
            doc["entries"].as_array().unwrap().len()
        ),
        (json!(false), 3)
    );
    // A cursor from before cursors had tags: a snapshot.
    let legacy = at_three.rsplit_once('.').unwrap().0.to_owned();
    let doc = restored
        .feed_document(&restored.feed(Some(&legacy), None).await)
        .await;
    assert_eq!(doc["snapshot"], true);
}

/// The same restore under an instance that keeps running: its copy of the
/// list still holds the old entries 4 and 5, and used to answer "after 5"
/// from it. Each refresh now checks the copy against the database, sees the
/// list went back, and reads it whole.
#[tokio::test]
async fn a_running_instance_notices_the_restore() {
    let app = app().await;
    for _ in 0..5 {
        logout_one(&app).await;
    }
    let doc = app.feed_document(&app.feed(None, None).await).await;
    let at_five = doc["cursor"].as_str().unwrap().to_owned();
    assert_eq!(at_five.split('.').nth(1), Some("5"));

    // What a restore of a backup taken at entry 3 does to the table: the
    // later rows are gone and the sequence is back at 3.
    stage_restore(&test_database_url(app._tmp.path()).unwrap(), 3).await;
    app.clock.advance(5);
    for _ in 0..3 {
        logout_one(&app).await;
    }
    let doc = app
        .feed_document(&app.feed(Some(&at_five), None).await)
        .await;
    assert_eq!(doc["snapshot"], true, "{doc}");
    assert_eq!(doc["entries"].as_array().unwrap().len(), 6, "{doc}");
    assert_eq!(doc["cursor"].as_str().unwrap().split('.').nth(1), Some("6"));
}

/// Up-to-date pollers (`304`) and cached answers spend no signing budget: a
/// flood of them leaves the next fresh delta signed as a delta.
#[tokio::test]
async fn polls_that_sign_nothing_spend_no_budget() {
    let app = app().await;
    logout_one(&app).await;
    let doc = app.feed_document(&app.feed(None, None).await).await;
    let at_one = doc["cursor"].as_str().unwrap().to_owned();
    let etag = format!("\"{at_one}\"");
    for _ in 0..100 {
        assert_eq!(
            app.feed(Some(&at_one), Some(&etag)).await.status,
            StatusCode::NOT_MODIFIED
        );
    }
    logout_one(&app).await;
    for _ in 0..100 {
        // One signature, then the same cached answer.
        let doc = app
            .feed_document(&app.feed(Some(&at_one), Some(&etag)).await)
            .await;
        assert_eq!(doc["snapshot"], false);
    }
}

/// Does to the revocations table what restoring a backup taken at entry
/// `at` does: later rows gone, ids handed out again from `at + 1`.
async fn stage_restore(url: &str, at: i64) {
    let delete = format!("DELETE FROM revocations WHERE id > {at}");
    if url.starts_with("postgres") {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(&delete).execute(&mut conn).await.unwrap();
        let reset = format!("SELECT setval(pg_get_serial_sequence('revocations', 'id'), {at})");
        sqlx::query(&reset).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(&delete).execute(&mut conn).await.unwrap();
        let reset = format!("UPDATE sqlite_sequence SET seq = {at} WHERE name = 'revocations'");
        sqlx::query(&reset).execute(&mut conn).await.unwrap();
    }
}

/// A login and the logout of its token: one revocation.
async fn logout_one(app: &App) {
    let login = app.login().await;
    let bearer = format!("Bearer {}", login["access_token"].as_str().unwrap());
    assert_eq!(
        app.logout(Some(&bearer)).await.status,
        StatusCode::NO_CONTENT
    );
}

/// Each distinct delta costs a signature: an unauthenticated caller cycling
/// through every live entry's cursor gets the (one, cached) snapshot once
/// the per-second budget is spent, so signing stays bounded.
#[tokio::test]
async fn distinct_cursors_beyond_the_signing_budget_get_the_snapshot() {
    let app = app().await;
    let mut cursors = Vec::new();
    for _ in 0..40 {
        logout_one(&app).await;
        let doc = app.feed_document(&app.feed(None, None).await).await;
        cursors.push(doc["cursor"].as_str().unwrap().to_owned());
    }
    // All within one second of the test clock.
    let mut deltas = 0;
    for cursor in &cursors[..39] {
        let doc = app.feed_document(&app.feed(Some(cursor), None).await).await;
        if doc["snapshot"] == false {
            deltas += 1;
        }
    }
    let budget = tessera_issuer::feed::DELTA_SIGNATURES_PER_SEC as usize;
    assert_eq!(
        deltas, budget,
        "the first {budget} distinct deltas, then the snapshot"
    );
    // The next second, deltas again.
    app.clock.advance(1);
    let doc = app
        .feed_document(&app.feed(Some(&cursors[0]), None).await)
        .await;
    assert_eq!(doc["snapshot"], false);
}
