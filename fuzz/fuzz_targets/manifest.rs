//! The keyring's manifest parser (and validator) on arbitrary bytes. Beyond
//! "never panics": a manifest it accepts writes JSON that it accepts again,
//! unchanged (what `keys` commands write, the service can read).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tessera_keyring::Manifest;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("manifest.json");
    let Ok(manifest) = Manifest::parse(path, data) else {
        return;
    };
    let json = manifest.to_json().expect("an accepted manifest serialises");
    let again = Manifest::parse(path, &json).unwrap_or_else(|e| {
        panic!(
            "its own JSON is refused: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        again.to_json().unwrap(),
        json,
        "not stable through a round trip"
    );
});
