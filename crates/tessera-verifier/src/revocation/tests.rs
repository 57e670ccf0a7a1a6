//! The revocation list's rules on documents, without a network.

use super::*;

fn doc(snapshot: bool, cursor: &str, entries: &[(&str, &str, i64, Option<i64>)]) -> Document {
    use base64::Engine as _;
    Document {
        iss: "https://issuer.test".to_owned(),
        iat: 0,
        since: None,
        cursor: cursor.to_owned(),
        snapshot,
        entries: entries
            .iter()
            .map(|(kind, value, exp, iat_before)| tessera_feed::Entry {
                kind: (*kind).to_owned().into(),
                hash: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                    crate::crypto::sha256(&tessera_feed::hash_parts(kind, value)),
                ),
                exp: *exp,
                iat_before: *iat_before,
            })
            .collect(),
    }
}

/// The same document, signed at `iat`.
trait At {
    fn at(self, iat: i64) -> Self;
}

impl At for Document {
    fn at(mut self, iat: i64) -> Self {
        self.iat = iat;
        self
    }
}

/// The review's finding 5: an old genuine document (a replay) must not
/// replace a newer list, nor may one signed long ago count as news.
#[test]
fn documents_must_be_recent_and_never_older_than_the_last() {
    let list = RevocationList::new(RevocationConfig::default(), 0);
    list.apply(
        doc(true, "e.1", &[("sid", "a", 9_000, None)]).at(1_000),
        None,
        1_000,
    )
    .unwrap();
    // An older snapshot (which would drop "a"): refused, list kept.
    assert!(
        list.apply(doc(true, "e.0", &[]).at(999), None, 1_001)
            .is_err()
    );
    assert_eq!(list.health(1_001).entries, 1);
    assert_eq!(list.position().0.as_deref(), Some("e.1"));
    // Signed beyond the allowed age, or in the future: refused.
    assert!(
        list.apply(doc(false, "e.2", &[]).at(1_000), None, 1_121)
            .is_err()
    );
    assert!(
        list.apply(doc(false, "e.2", &[]).at(1_200), None, 1_100)
            .is_err()
    );
    // Recent and not older: accepted.
    list.apply(
        doc(false, "e.2", &[("sid", "b", 9_000, None)]).at(1_050),
        None,
        1_100,
    )
    .unwrap();
    assert_eq!(list.health(1_100).entries, 2);
}

fn token(jti: &str, sid: &str, sub: &str, iat: i64) -> TokenKeys {
    TokenKeys::of(Some(jti), Some(sid), Some(sub), Some(iat))
}

#[test]
fn each_kind_revokes_what_it_names_and_nothing_else() {
    let list = RevocationList::new(RevocationConfig::default(), 0);
    let entries = [
        ("jti", "j1", 2_000, None),
        ("sid", "s1", 2_000, None),
        ("sub", "u1", 2_000, Some(1_000)),
    ];
    list.apply(doc(true, "e.3", &entries).at(1_000), None, 1_000)
        .unwrap();
    let revoked = |t: &TokenKeys| list.check(t, 1_001) == Err(VerifyError::Revoked);
    assert!(revoked(&token("j1", "s9", "u9", 1_000)));
    assert!(revoked(&token("j9", "s1", "u9", 1_000)));
    assert!(revoked(&token("j9", "s9", "u1", 1_000)));
    // The user's tokens issued after the entry's time are not revoked.
    assert!(!revoked(&token("j9", "s9", "u1", 1_001)));
    // Values are compared per kind: a sid equal to a revoked jti is not it.
    assert!(!revoked(&token("j9", "j1", "u9", 1_000)));
    assert!(!revoked(&token("j2", "s2", "u2", 1_000)));
}

#[test]
fn a_token_found_clean_is_looked_up_again_once_the_list_changes() {
    let list = RevocationList::new(RevocationConfig::default(), 0);
    list.apply(doc(true, "e.1", &[("sid", "other", 5_000, None)]), None, 1)
        .unwrap();
    let t = token("j", "mine", "u", 0);
    assert_eq!(list.check(&t, 2), Ok(()));
    assert_eq!(list.check(&t, 2), Ok(()), "remembered as clean");
    list.apply(doc(false, "e.2", &[("sid", "mine", 5_000, None)]), None, 3)
        .unwrap();
    assert_eq!(list.check(&t, 3), Err(VerifyError::Revoked));
}

#[test]
fn entries_expire_and_the_list_shrinks() {
    let list = RevocationList::new(RevocationConfig::default(), 0);
    let entries: Vec<(&str, String, i64, Option<i64>)> = (0..100)
        .map(|i| ("jti", format!("j{i}"), 1_000 + i, None))
        .collect();
    let borrowed: Vec<(&str, &str, i64, Option<i64>)> = entries
        .iter()
        .map(|(k, v, e, b)| (*k, v.as_str(), *e, *b))
        .collect();
    list.apply(doc(false, "e.100", &borrowed).at(900), None, 900)
        .unwrap();
    assert_eq!(list.health(900).entries, 100);
    // At 1,050 the first 51 have expired (exp <= now): refused no more,
    // and gone.
    assert_eq!(
        list.check(&token("j10", "s", "u", 0), 1_050),
        Ok(()),
        "an expired entry no longer revokes"
    );
    list.unchanged(1_050);
    assert_eq!(list.health(1_050).entries, 49);
    list.unchanged(1_100);
    assert_eq!(list.health(1_100).entries, 0);
}

#[test]
fn a_snapshot_replaces_and_an_increment_adds() {
    let list = RevocationList::new(RevocationConfig::default(), 0);
    list.apply(doc(false, "e.1", &[("sid", "a", 5_000, None)]), None, 1)
        .unwrap();
    list.apply(doc(false, "e.2", &[("sid", "b", 5_000, None)]), None, 1)
        .unwrap();
    assert_eq!(list.health(1).entries, 2);
    list.apply(doc(true, "f.1", &[("sid", "c", 5_000, None)]), None, 1)
        .unwrap();
    assert_eq!(list.health(1).entries, 1);
    assert_eq!(list.position().0.as_deref(), Some("f.1"));
    assert_eq!(list.check(&token("x", "a", "u", 0), 2), Ok(()));
}

#[test]
fn more_entries_than_allowed_are_refused_and_the_old_list_kept() {
    let config = RevocationConfig {
        max_entries: 2,
        ..RevocationConfig::default()
    };
    let list = RevocationList::new(config, 0);
    list.apply(doc(false, "e.1", &[("sid", "a", 5_000, None)]), None, 1)
        .unwrap();
    let three = [
        ("sid", "b", 5_000, None),
        ("sid", "c", 5_000, None),
        ("sid", "d", 5_000, None),
    ];
    assert!(list.apply(doc(false, "e.4", &three), None, 1).is_err());
    assert_eq!(list.health(1).entries, 1);
    assert_eq!(list.position().0.as_deref(), Some("e.1"));
}

#[test]
fn an_entry_whose_hash_is_not_32_bytes_of_base64url_refuses_the_document() {
    let list = RevocationList::new(RevocationConfig::default(), 0);
    list.apply(doc(false, "e.1", &[("sid", "a", 5_000, None)]), None, 1)
        .unwrap();
    let good = doc(false, "e.2", &[("sid", "b", 5_000, None)]).entries[0]
        .hash
        .clone();
    for bad in [
        good[..42].to_owned(),         // 31 bytes and a bit
        format!("{good}A"),            // a length of 1 mod 4
        format!("{}AA", &good[..42]),  // 32 bytes and a byte
        format!("{good}="),            // padding
        good.replace(['-', '_'], "+"), // another alphabet, if present
        format!("{}B", &good[..42]),   // non-zero unused bits
    ] {
        if bad == good {
            continue;
        }
        let mut document = doc(false, "e.2", &[("sid", "b", 5_000, None)]);
        document.entries[0].hash = bad.clone();
        assert!(list.apply(document, None, 1).is_err(), "{bad}");
        assert_eq!(list.health(1).entries, 1, "{bad}");
        assert_eq!(list.position().0.as_deref(), Some("e.1"), "{bad}");
    }
}

#[test]
fn outage_bound_and_policies() {
    let keep = RevocationList::new(RevocationConfig::default(), 0);
    let closed = RevocationList::new(
        RevocationConfig {
            on_outage: OutagePolicy::FailClosed,
            ..RevocationConfig::default()
        },
        0,
    );
    let t = token("j", "s", "u", 0);
    // Before the first answer: fail-closed refuses, keep-going accepts.
    assert_eq!(
        closed.check(&t, 100),
        Err(VerifyError::RevocationsUnavailable)
    );
    assert_eq!(keep.check(&t, 100), Ok(()));
    // Never answered: an outage only once the bound has passed since
    // following began (at 0); fail-closed refuses from the start.
    assert!(!keep.health(60).outage && keep.health(61).outage);
    assert!(closed.health(30).failing_closed);
    for list in [&keep, &closed] {
        list.apply(doc(true, "e.0", &[]), None, 100).unwrap();
    }
    assert_eq!(closed.check(&t, 160), Ok(()), "within the 60 s bound");
    closed.failed("down".to_owned(), 161);
    keep.failed("down".to_owned(), 161);
    assert_eq!(
        closed.check(&t, 161),
        Err(VerifyError::RevocationsUnavailable)
    );
    assert_eq!(keep.check(&t, 161), Ok(()));
    let health = keep.health(161);
    assert!(health.outage && !health.failing_closed);
    assert_eq!(health.last_error.as_deref(), Some("down"));
    assert!(closed.health(161).failing_closed);
    closed.unchanged(170);
    assert_eq!(closed.check(&t, 170), Ok(()), "answering again");
}

/// Each change refills the map of the list it replaced a change ago (issue
/// 21's soak: rebuilding from nothing per poll fragmented the heap). A list
/// a verification still holds is never the one refilled: it keeps exactly
/// what it had, and the next list is built afresh instead.
#[test]
fn a_list_still_held_is_never_refilled_and_free_ones_are() {
    let list = RevocationList::new(RevocationConfig::default(), 0);
    let entry = |i: usize| format!("s{i}");
    let names: Vec<String> = (0..200).map(entry).collect();
    let adds: Vec<(&str, &str, i64, Option<i64>)> = names
        .iter()
        .map(|n| ("sid", n.as_str(), 5_000, None))
        .collect();
    list.apply(doc(true, "e.1", &adds), None, 1).unwrap();
    let held = list.list.load_full();
    assert_eq!(held.map.len(), 200);
    for round in 2..6_i64 {
        let name = format!("new{round}");
        list.apply(
            doc(false, &format!("e.{round}"), &[("sid", &name, 5_000, None)]),
            None,
            1,
        )
        .unwrap();
    }
    // The held list is as it was; the current one has everything.
    assert_eq!(held.map.len(), 200);
    assert_eq!(list.health(1).entries, 204);
    assert_eq!(
        list.check(&token("x", "s7", "u", 0), 2),
        Err(VerifyError::Revoked)
    );
    assert_eq!(
        list.check(&token("x", "new5", "u", 0), 2),
        Err(VerifyError::Revoked)
    );
    assert_eq!(list.check(&token("x", "other", "u", 0), 2), Ok(()));
    // Nobody holds the replaced lists now: a change reuses one's table. A
    // list of 1,000, replaced by one of 10: the next change refills the
    // 1,000's table (a fresh map for 11 entries would be a few dozen wide).
    drop(held);
    let many: Vec<String> = (0..1_000).map(entry).collect();
    let adds: Vec<(&str, &str, i64, Option<i64>)> = many
        .iter()
        .map(|n| ("sid", n.as_str(), 5_000, None))
        .collect();
    list.apply(doc(true, "f.1", &adds), None, 1).unwrap();
    list.apply(doc(true, "f.2", &adds[..10]), None, 1).unwrap();
    list.apply(doc(false, "f.3", &[("sid", "late", 5_000, None)]), None, 1)
        .unwrap();
    assert_eq!(list.health(1).entries, 11);
    assert!(list.list.load().map.capacity() >= 1_000);
    assert_eq!(
        list.check(&token("x", "late", "u", 0), 2),
        Err(VerifyError::Revoked)
    );
}
