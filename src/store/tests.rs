use super::*;

#[test]
fn what_is_saved_is_loaded_by_the_next_process_and_removals_stick() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&dir.path().join("state")).unwrap();
        store
            .commit(
                &[
                    (key("a", "w"), Some(b"A".to_vec())),
                    (key("b", "w"), Some(b"B".to_vec())),
                ],
                &[(1, b"one".to_vec()), (2, b"two".to_vec())],
                &[("am/a/w".into(), Some(b"alert".to_vec()))],
            )
            .unwrap();
        store.commit(&[(key("b", "w"), None)], &[], &[]).unwrap();
        store
            .settle(&[(1, None), (2, Some(b"TWO".to_vec()))])
            .unwrap();
    }
    // A child another test spawns holds copies of this process's descriptors (the
    // locks among them) until its exec: the lock is free again a moment later.
    let reopen = || Store::open(&dir.path().join("state"));
    let mut store = reopen();
    for _ in 0..100 {
        match &store {
            Err(e) if e.to_string().contains("already in use") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                store = reopen();
            }
            _ => break,
        }
    }
    let store = store.unwrap();
    assert_eq!(
        store.rule_states().unwrap(),
        vec![(key("a", "w"), b"A".to_vec())]
    );
    assert_eq!(store.outbox().unwrap(), vec![(2, b"TWO".to_vec())]);
    assert_eq!(
        store.alerts().unwrap(),
        vec![("am/a/w".to_string(), b"alert".to_vec())]
    );
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let Err(e) = Store::open(dir.path()) else {
        panic!("opened twice");
    };
    assert!(e.to_string().contains("another hark"), "{e}");
}
