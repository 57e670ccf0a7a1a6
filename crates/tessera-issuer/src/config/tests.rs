//! The configuration's defaults, layering and checks.

use super::*;

#[test]
fn defaults_match_the_documented_values() {
    let c = RawConfig::default().validate().unwrap();
    assert_eq!(c.keys_dir, PathBuf::from("keys"));
    assert_eq!(c.rotation.access_token_lifetime, Duration::from_secs(900));
    assert_eq!(c.rotation.jwks_cache_lifetime, Duration::from_secs(300));
    assert_eq!(c.rotation.clock_leeway, Duration::from_secs(60));
    assert_eq!(c.key_bits, 2048);
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.issuer_url, None);
    assert_eq!(c.audiences, ["tessera"]);
    assert_eq!(c.keys_reload_interval, Duration::from_secs(1));
    assert_eq!(c.refresh_idle_lifetime, Duration::from_secs(14 * 86400));
    assert_eq!(c.refresh_absolute_lifetime, Duration::from_secs(30 * 86400));
    assert_eq!(c.database_url, "sqlite://issuer.db");
    assert_eq!(c.database_pool.max_connections, 10);
    assert_eq!(c.audit_retention, Duration::from_secs(90 * 86400));
}

#[test]
fn introspection_clients_need_a_unique_id_and_a_32_byte_hash() {
    let hash = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg";
    let parse = |text: &str| toml::from_str::<RawConfig>(text).unwrap().validate();
    let one =
        format!("[[introspection_clients]]\nclient_id = \"orders\"\nsecret_sha256 = \"{hash}\"\n");
    let c = parse(&one).unwrap();
    assert_eq!(c.introspection_clients.len(), 1);
    assert_eq!(c.introspection_clients[0].client_id, "orders");
    assert!(
        !format!("{c:?}").contains(hash),
        "the hash stays out of Debug"
    );
    assert!(parse(&one.repeat(2)).is_err(), "listed twice");
    assert!(
        parse(&one.replace(hash, "c2hvcnQ")).is_err(),
        "not 32 bytes"
    );
    assert!(parse(&one.replace("orders", "a:b")).is_err(), "a colon");
    assert!(
        RawConfig::default()
            .validate()
            .unwrap()
            .introspection_clients
            .is_empty()
    );
}

#[test]
fn file_values_parse_and_later_layers_win() {
    let file: RawConfig = toml::from_str(
        "keys_dir = \"/srv/keys\"\naccess_token_lifetime = \"10m\"\nclock_leeway = \"30s\"",
    )
    .unwrap();
    let flags = RawConfig {
        access_token_lifetime: Some(Duration::from_secs(120)),
        ..RawConfig::default()
    };
    let c = file.overlay(flags).validate().unwrap();
    assert_eq!(c.keys_dir, PathBuf::from("/srv/keys"));
    assert_eq!(c.rotation.access_token_lifetime, Duration::from_secs(120));
    assert_eq!(c.rotation.clock_leeway, Duration::from_secs(30));
}

#[test]
fn unknown_keys_bad_durations_and_out_of_range_values_are_errors() {
    let unknown = toml::from_str::<RawConfig>("keys_directory = \"x\"").unwrap_err();
    assert!(unknown.to_string().contains("keys_directory"), "{unknown}");
    let bad = toml::from_str::<RawConfig>("clock_leeway = \"soon\"").unwrap_err();
    assert!(bad.to_string().contains("soon"), "{bad}");
    for (raw, key) in [
        (
            RawConfig {
                clock_leeway: Some(Duration::from_secs(301)),
                ..Default::default()
            },
            "clock_leeway",
        ),
        (
            RawConfig {
                access_token_lifetime: Some(Duration::ZERO),
                ..Default::default()
            },
            "access_token_lifetime",
        ),
        (
            RawConfig {
                jwks_cache_lifetime: Some(Duration::from_secs(2 * 86400)),
                ..Default::default()
            },
            "jwks_cache_lifetime",
        ),
        (
            RawConfig {
                key_bits: Some(1024),
                ..Default::default()
            },
            "key_bits",
        ),
    ] {
        let err = raw.validate().unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { key: k, .. } if k == key),
            "{err}"
        );
    }
}

#[test]
fn cookie_session_settings_are_checked_against_the_issuer() {
    let file = r#"
        issuer_url = "https://auth.example.com"
        allowed_origins = ["HTTPS://App.Example.com:443", "https://app.example.com", "http://127.0.0.1:8081"]
        cookie_domain = ".Example.com"
        access_cookie_name = "at"
    "#;
    let c = toml::from_str::<RawConfig>(file)
        .unwrap()
        .validate()
        .unwrap()
        .cookie_sessions;
    assert_eq!(
        c.allowed_origins,
        ["https://app.example.com", "http://127.0.0.1:8081"]
    );
    assert_eq!(c.cookie_domain.as_deref(), Some("example.com"));
    assert_eq!(
        (c.access_cookie.as_str(), c.refresh_cookie.as_str()),
        ("at", "tessera_refresh")
    );
    // Prefixed names whose promises hold are fine.
    let prefixed = RawConfig {
        issuer_url: Some("https://auth.example.com".to_owned()),
        access_cookie_name: Some("__Host-at".to_owned()),
        refresh_cookie_name: Some("__Secure-rt".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        prefixed.validate().unwrap().cookie_sessions.access_cookie,
        "__Host-at"
    );
    assert_eq!(
        RawConfig::default().validate().unwrap().cookie_sessions,
        CookieSessions::default()
    );
    let issuer = || Some("https://auth.example.com".to_owned());
    for (raw, key) in [
        (
            RawConfig {
                allowed_origins: Some(vec!["https://app.example.com/".to_owned()]),
                ..Default::default()
            },
            "allowed_origins",
        ),
        (
            RawConfig {
                allowed_origins: Some(vec!["*".to_owned()]),
                ..Default::default()
            },
            "allowed_origins",
        ),
        (
            RawConfig {
                issuer_url: issuer(),
                cookie_domain: Some("other.com".to_owned()),
                ..Default::default()
            },
            "cookie_domain",
        ),
        (
            RawConfig {
                issuer_url: issuer(),
                cookie_domain: Some("le.com".to_owned()),
                ..Default::default()
            },
            "cookie_domain",
        ),
        (
            RawConfig {
                cookie_domain: Some("example.com".to_owned()),
                ..Default::default()
            },
            "cookie_domain",
        ),
        (
            RawConfig {
                access_cookie_name: Some("a b".to_owned()),
                ..Default::default()
            },
            "access_cookie_name",
        ),
        (
            RawConfig {
                refresh_cookie_name: Some("tessera_access".to_owned()),
                ..Default::default()
            },
            "refresh_cookie_name",
        ),
        (
            RawConfig {
                access_cookie_name: Some("__Host-at".to_owned()),
                ..Default::default()
            },
            "access_cookie_name",
        ),
        (
            RawConfig {
                issuer_url: issuer(),
                access_cookie_name: Some("__Host-at".to_owned()),
                cookie_domain: Some("example.com".to_owned()),
                ..Default::default()
            },
            "access_cookie_name",
        ),
        (
            RawConfig {
                issuer_url: issuer(),
                refresh_cookie_name: Some("__Host-rt".to_owned()),
                ..Default::default()
            },
            "refresh_cookie_name",
        ),
    ] {
        let err = raw.validate().unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key),
            "{key}: {err}"
        );
    }
}
