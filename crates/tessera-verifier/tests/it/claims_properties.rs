//! The claims reader under proptest: it never panics, it accepts only what
//! serde_json reads as a JSON object, and what it reads from an accepted
//! payload is what serde_json reads there.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tessera_verifier::{DEFAULT_REQUIRED, Validation};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "api";
const NOW: i64 = 1_800_000_000;

fn validation() -> Validation {
    Validation {
        issuer: ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned()],
        leeway: 60,
        required: DEFAULT_REQUIRED.to_vec(),
    }
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A claim's value: mostly one a token of ours would carry (so payloads are
/// often accepted), sometimes anything at all.
fn claim_value(name: &'static str) -> BoxedStrategy<Value> {
    let good = match name {
        "iss" => Just(json!(ISSUER)).boxed(),
        "aud" => prop_oneof![Just(json!(AUDIENCE)), Just(json!(["other", AUDIENCE]))].boxed(),
        "exp" => (NOW - 120..NOW + 900).prop_map(Value::from).boxed(),
        "nbf" | "iat" => (NOW - 900..NOW + 120).prop_map(Value::from).boxed(),
        "roles" => prop::collection::vec("[a-z]{1,6}", 0..3)
            .prop_map(|r| json!(r))
            .boxed(),
        _ => "[ -~]{0,16}".prop_map(Value::from).boxed(),
    };
    prop_oneof![4 => good, 1 => any_json()].boxed()
}

const NAMES: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "sid",
    "scope",
    "roles",
];

/// A claims object: each registered or access claim present or not, with a
/// plausible or arbitrary value, and maybe an unknown claim.
fn claims() -> impl Strategy<Value = Map<String, Value>> {
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = NAMES
        .iter()
        .map(|&name| {
            prop::option::weighted(
                0.85,
                claim_value(name).prop_map(move |v| (name.to_owned(), v)),
            )
            .boxed()
        })
        .collect();
    (fields, prop::option::of(("x-[a-z]{1,5}", any_json())))
        .prop_map(|(fields, extra)| fields.into_iter().flatten().chain(extra).collect())
}

/// A JSON payload (compact or pretty), or that payload with one byte
/// inserted, deleted or replaced: near-JSON, where parsers disagree.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    (
        claims(),
        any::<bool>(),
        0u8..4,
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(claims, pretty, edit, at, byte)| {
            let value = Value::Object(claims);
            let mut bytes = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            let i = at.index(bytes.len() + 1);
            match edit {
                1 => bytes.insert(i, byte),
                2 if i < bytes.len() => {
                    bytes.remove(i);
                }
                3 if i < bytes.len() => bytes[i] = byte,
                _ => {}
            }
            bytes
        })
}

fn as_str(v: &Value) -> Option<&str> {
    v.as_str()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_accepts_only_json_objects(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        if validation().validate(&bytes, NOW).is_ok() {
            let value: Value = serde_json::from_slice(&bytes).expect("accepted, so JSON");
            prop_assert!(value.is_object());
        }
    }

    #[test]
    fn agrees_with_serde_json(bytes in payload()) {
        let ours = validation().validate(&bytes, NOW);
        let theirs = serde_json::from_slice::<Value>(&bytes);
        match (&ours, &theirs) {
            // What serde_json cannot read, the verifier refuses.
            (Ok(_), Err(e)) => prop_assert!(false, "accepted what serde_json refuses ({e}): {}", String::from_utf8_lossy(&bytes)),
            (Ok(registered), Ok(value)) => {
                prop_assert!(value.is_object());
                prop_assert_eq!(registered.iss.as_deref(), value.get("iss").and_then(as_str));
                prop_assert_eq!(registered.sub.as_deref(), value.get("sub").and_then(as_str));
                prop_assert_eq!(registered.jti.as_deref(), value.get("jti").and_then(as_str));
                prop_assert_eq!(registered.exp, value.get("exp").and_then(Value::as_i64));
                prop_assert_eq!(registered.nbf, value.get("nbf").and_then(Value::as_i64));
                prop_assert_eq!(registered.iat, value.get("iat").and_then(Value::as_i64));
                let aud: Vec<String> = match value.get("aud") {
                    Some(Value::String(a)) => vec![a.clone()],
                    Some(Value::Array(list)) => list.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
                    _ => Vec::new(),
                };
                prop_assert_eq!(&registered.aud, &aud);
                // And it accepted only what the rules allow.
                prop_assert_eq!(registered.iss.as_deref(), Some(ISSUER));
                prop_assert!(registered.aud.iter().any(|a| a == AUDIENCE));
                prop_assert!(registered.exp.unwrap() + 60 > NOW);
            }
            (Err(_), _) => {}
        }
    }
}
