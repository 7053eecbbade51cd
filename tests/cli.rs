//! The `microkernel-state` tool on the golden fixtures.

use std::process::Command;

const TOOL: &str = env!("CARGO_BIN_EXE_microkernel-state");
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sealed/echo_v2.aes-256-gcm.bin"
);
/// The fixtures' test key (see tests/fixtures.rs).
const TEST_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn run(args: &[&str], key: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(TOOL);
    command.args(args).env_remove("MK_TEST_KEY");
    if let Some(key) = key {
        command.env("MK_TEST_KEY", key);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn inspect_prints_the_header_without_a_key() {
    let (code, out, _) = run(&["inspect", FIXTURE], None);
    assert_eq!(code, 0);
    for line in [
        "algorithm:          aes-256-gcm",
        "key id:             7",
        "service:            echo",
        "state version:      2",
        "schema fingerprint: 3f17462659b94fbd",
        "format version:     1",
        "generation:         none (format version 1)",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}

#[test]
fn verify_opens_with_the_right_key_and_fails_with_another() {
    let (code, out, _) = run(&["verify", FIXTURE, "--key-env", "MK_TEST_KEY"], Some(TEST_KEY_HEX));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok:"), "{out}");
    let (code, _, err) = run(&["verify", FIXTURE, "--key-env", "MK_TEST_KEY"], Some(&"ab".repeat(32)));
    assert_eq!(code, 1);
    assert!(err.contains("failed authentication"), "{err}");
    let (code, _, err) = run(&["verify", FIXTURE, "--key-env", "MK_TEST_KEY"], None);
    assert_eq!(code, 1);
    assert!(err.contains("MK_TEST_KEY"), "{err}");
}

#[test]
fn bad_files_and_bad_usage_exit_non_zero() {
    let (code, _, err) = run(&["inspect", "/no/such/file"], None);
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/file"), "{err}");
    let (code, _, err) = run(&["inspect", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")], None);
    assert_eq!(code, 1);
    assert!(err.contains("bad magic"), "{err}");
    let (code, _, err) = run(&["frobnicate"], None);
    assert_eq!(code, 2);
    assert!(err.contains("usage"), "{err}");
}
