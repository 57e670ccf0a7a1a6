use super::*;

#[test]
fn concurrent_rotations_serialise_and_leave_exactly_one_active_key() {
    let (_tmp, dir) = new_keyring();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                at(&dir, t0() + MIN * (10 + i)).rotate(&policy(), true, DEFAULT_BITS)
            })
        })
        .collect();
    let outcomes: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    let activated: std::collections::HashSet<_> =
        outcomes.iter().map(|o| o.activated.clone()).collect();
    assert_eq!(
        activated.len(),
        4,
        "each rotation activated a different key"
    );

    let ring = dir.load().unwrap();
    let m = ring.manifest();
    let count = |name| m.keys.iter().filter(|k| k.state.name() == name).count();
    assert_eq!(
        (count("active"), count("retired"), count("pending")),
        (1, 4, 1)
    );
    assert_eq!(m.keys.len(), 6);
    for key in &m.keys {
        assert!(dir.key_path(&key.kid).exists());
    }
}

#[test]
fn a_writer_that_cannot_get_the_lock_fails_with_a_clear_message() {
    let (_tmp, dir) = new_keyring();
    let held = fs::File::open(dir.path().join(".lock")).unwrap();
    held.lock().unwrap();
    let impatient = dir.clone().with_lock_wait(Duration::from_millis(200));
    let err = at(&impatient, t0() + 10 * MIN)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap_err();
    assert!(matches!(err, KeyringError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    // Readers wait for writers too.
    assert!(matches!(
        impatient.load().unwrap_err(),
        KeyringError::Locked { .. }
    ));
    drop(held);
    at(&impatient, t0() + 10 * MIN)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap();
}
