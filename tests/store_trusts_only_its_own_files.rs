//! The directory store trusts nothing it did not create: stale temporary files of others,
//! symlinks, FIFOs, directories, oversized files, directories others can write or own, a
//! deleted lock file, and set-aside names that would collide are each refused or handled
//! without reading or touching what is not the store's.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};

use common::counter::{Counter, CounterV1};
use common::stored::{load, private_dir, save, sealer};
use microkernel::state;
use microkernel::store::{StateStore, StoreOptions, block_on};
use microkernel::{DirStore, Kernel, StoreError};

#[test]
fn stale_temporary_files_of_ours_are_removed_when_the_store_opens_and_nothing_else() {
    let dir = private_dir("temps");
    for name in [
        ".mk-tmp-4242-7",
        "keep.txt",
        ".mk-tmp-not-ours",
        ".counter.state.tmp-1-2",
    ] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    drop(DirStore::open(&dir).unwrap());
    assert!(!dir.join(".mk-tmp-4242-7").exists(), "our stale temporary file stayed");
    for kept in ["keep.txt", ".mk-tmp-not-ours", ".counter.state.tmp-1-2"] {
        assert!(dir.join(kept).exists(), "{kept} was removed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_symlinked_lock_or_state_file_is_refused_and_its_target_untouched() {
    let dir = private_dir("links");
    let outside = private_dir("links-outside");
    symlink(outside.join("created-by-lock"), dir.join(".lock")).unwrap();
    let err = DirStore::open(&dir).unwrap_err();
    assert!(matches!(err, StoreError::NotRegular { .. }), "{err}");
    assert!(!outside.join("created-by-lock").exists(), "the lock followed the link");
    std::fs::remove_file(dir.join(".lock")).unwrap();

    std::fs::write(outside.join("secret"), b"not a state").unwrap();
    symlink(outside.join("secret"), dir.join("counter.state")).unwrap();
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir).unwrap())
        .build()
        .unwrap();
    let err = kernel.register(Counter::<CounterV1>::new()).unwrap_err();
    assert!(err.to_string().contains("a symbolic link"), "{err}");
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"not a state");
    assert!(
        std::fs::symlink_metadata(dir.join("counter.state"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

#[test]
fn a_fifo_or_a_directory_as_a_state_file_is_refused_without_reading() {
    let dir = private_dir("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("counter.state"))
        .status()
        .unwrap();
    assert!(status.success());
    let store = DirStore::open(&dir).unwrap();
    let err = load(&store, "counter").unwrap_err(); // would hang if it read the FIFO
    assert!(err.to_string().contains("a FIFO"), "{err}");
    std::fs::create_dir(dir.join("db.state")).unwrap();
    assert!(load(&store, "db").unwrap_err().to_string().contains("a directory"));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_over_the_size_limit_are_refused_before_they_are_read() {
    let dir = private_dir("size");
    let options = StoreOptions::default().max_state_bytes(100);
    let store = DirStore::open_with(&dir, options).unwrap();
    std::fs::write(dir.join("big.state"), vec![0u8; 101]).unwrap();
    let err = load(&store, "big").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                size: 101,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("over the limit of 100 bytes"), "{err}");
    let large = state::encode(&CounterV1 { count: 1 }).unwrap();
    let small = DirStore::open_with(private_dir("size-save"), StoreOptions::default().max_state_bytes(10)).unwrap();
    let err = save(&small, &sealer(), "counter", &large, 1).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { limit: 10, .. }), "{err}");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_others_can_write_is_refused_unless_allowed() {
    let dir = private_dir("perms");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = DirStore::open(&dir).unwrap_err();
    assert!(matches!(err, StoreError::InsecureDirectory { .. }), "{err}");
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    DirStore::open_with(&dir, StoreOptions::default().allow_insecure_directory()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_owned_by_another_user_is_refused() {
    let dir = private_dir("owner");
    // Only root can give a directory away; others check what they can.
    let given = std::process::Command::new("chown").arg("65534").arg(&dir).status();
    if !given.is_ok_and(|s| s.success()) {
        return;
    }
    let err = DirStore::open(&dir).unwrap_err();
    assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_kernel_in() {
    let dir = private_dir("unlink");
    let first = DirStore::open(&dir).unwrap();
    std::fs::remove_file(dir.join(".lock")).unwrap();
    let err = DirStore::open(&dir).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(first);
    DirStore::open(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_set_aside_in_the_same_second_never_overwrite_each_other() {
    let dir = private_dir("aside");
    let store = DirStore::open(&dir).unwrap();
    let path = dir.join("counter.state");
    let mut asides = Vec::new();
    for content in [b"first".as_slice(), b"second", b"third"] {
        std::fs::write(&path, content).unwrap();
        let aside = block_on(store.set_aside("counter")).unwrap().unwrap();
        asides.push(aside.path().unwrap().to_owned());
    }
    let kept: Vec<Vec<u8>> = asides.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(kept, [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]);
    assert!(!path.exists());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
