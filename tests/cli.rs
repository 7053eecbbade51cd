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

#[test]
fn help_goes_to_stdout_and_exits_0() {
    for flag in ["--help", "-h"] {
        let (code, out, err) = run(&[flag], None);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("usage: microkernel-state inspect FILE"), "{out}");
        assert!(err.is_empty(), "{err}");
    }
    let (code, _, err) = run(&[], None);
    assert_eq!(code, 2);
    assert!(err.contains("usage"), "{err}");
    let (code, _, err) = run(&["inspect", FIXTURE, "--key-env", "X"], None);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_non_utf8_argument_is_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"/tmp/no-such-\xff-file");
    let out = Command::new(TOOL).arg("inspect").arg(name).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(TOOL).arg(name).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn special_files_and_oversized_files_are_refused_without_reading() {
    let dir = std::env::temp_dir().join(format!("microkernel-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.state");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let link = dir.join("link.state");
    std::os::unix::fs::symlink(FIXTURE, &link).unwrap();
    for (path, says) in [
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/zero", "a device"),
        (dir.to_str().unwrap(), "a directory"),
        (link.to_str().unwrap(), "a symbolic link"),
    ] {
        let (code, _, err) = run(&["inspect", path], None);
        assert_eq!(code, 1, "{path}: {err}");
        assert!(err.contains(says), "{path}: {err}");
    }
    let (code, _, err) = run(&["inspect", FIXTURE, "--max-bytes", "10"], None);
    assert_eq!(code, 1);
    assert!(err.contains("over the limit of 10 bytes"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_size_limit_message_names_the_flag_that_raises_it() {
    for verb in [
        &["inspect", FIXTURE, "--max-bytes", "10"][..],
        &["verify", FIXTURE, "--key-env", "K", "--max-bytes", "10"],
    ] {
        let (code, _, err) = run(verb, None);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("over the limit of 10 bytes"), "{err}");
        assert!(err.contains("--max-bytes"), "{err}");
        assert!(
            !err.contains("StoreOptions"),
            "a library option the user cannot set: {err}"
        );
    }
}

/// A file whose service name holds a newline and a terminal escape cannot forge output lines.
#[test]
fn fields_read_from_the_file_are_printed_escaped() {
    use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
    let sealer = Sealer::new(Keyring::new(
        1,
        Key::from_hex(Algorithm::Aes256Gcm, TEST_KEY_HEX).unwrap(),
    ));
    let service = "echo\nkey id:             666\n\x1b[31mred";
    let blob = sealer
        .seal_state(service, microkernel::state::encode(&microkernel::Stateless).unwrap())
        .unwrap();
    let path = std::env::temp_dir().join(format!("microkernel-cli-forge-{}.state", std::process::id()));
    std::fs::write(&path, blob).unwrap();
    let (code, out, _) = run(&["inspect", path.to_str().unwrap()], None);
    assert_eq!(code, 0);
    assert!(!out.contains('\x1b'), "an escape sequence was printed: {out:?}");
    let key_lines = out.lines().filter(|l| l.starts_with("key id:")).count();
    assert_eq!(key_lines, 1, "a forged line was printed: {out}");
    assert!(out.contains(r"service:            echo\nkey id:"), "{out}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_hostile_file_name_is_printed_escaped_and_a_full_stdout_is_an_error_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("microkernel-cli-name-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hostile = dir.join("x\nservice:            FORGED\x1b[31m");
    std::fs::copy(FIXTURE, &hostile).unwrap();
    let out = Command::new(TOOL).arg("inspect").arg(&hostile).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("service:")).count(),
        1,
        "{stdout}"
    );
    let missing = dir.join("gone\n\x1b[31m");
    let out = Command::new(TOOL).arg("inspect").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\x1b'));
    // stdout that cannot be written: exit 1, not a panic (101).
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let status = Command::new(TOOL).arg("--help").stdout(full).status().unwrap();
    assert_eq!(status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}
