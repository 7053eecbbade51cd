//! Every input the fuzzers ever crashed on, and the fuzzers' seed corpus, run through the same
//! targets (fuzz/targets.rs): none may panic.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

fn inputs(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn envelope_regressions_and_fixtures_do_not_panic() {
    let mut all = inputs("tests/fuzz-regressions/envelope");
    all.extend(inputs("tests/fixtures/sealed"));
    all.extend(inputs("tests/fixtures/structural/sealed"));
    assert!(!all.is_empty());
    for (name, data) in all {
        let outcome = std::panic::catch_unwind(|| targets::envelope(&data));
        assert!(outcome.is_ok(), "{name} panics");
    }
}

#[test]
fn state_regressions_and_fixtures_do_not_panic() {
    let mut all = inputs("tests/fuzz-regressions/state");
    all.extend(inputs("tests/fixtures"));
    all.extend(inputs("tests/fixtures/structural"));
    assert!(!all.is_empty());
    for (name, data) in all {
        let outcome = std::panic::catch_unwind(|| targets::state(&data));
        assert!(outcome.is_ok(), "{name} panics");
    }
}

#[test]
fn store_and_describe_regressions_and_fixtures_do_not_panic() {
    let mut all = inputs("tests/fuzz-regressions/store_load");
    all.extend(inputs("tests/fuzz-regressions/describe"));
    all.extend(inputs("tests/fixtures/sealed"));
    all.extend(inputs("tests/fixtures/structural/sealed"));
    assert!(!all.is_empty());
    for (name, data) in all {
        let outcome = std::panic::catch_unwind(|| {
            targets::store_load(&data);
            targets::describe(&data);
        });
        assert!(outcome.is_ok(), "{name} panics");
    }
}
