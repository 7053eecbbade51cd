//! Large states: sealed in segments (envelope format version 3) as they are encoded, opened
//! and decoded one segment at a time; every way of altering the segments is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use microkernel::seal::stream::{SEGMENT_SIZE, SEGMENTED_ABOVE};
use microkernel::seal::{Algorithm, Key, Keyring, SealError, Sealer};
use microkernel::state::{self, StateTag};
use microkernel::{BoxError, Context, Event, Handler, Kernel, Migratable, Replaced, Reply, Service, Step};
use serde::{Deserialize, Serialize};

/// A string that insists on borrowing from the input while decoding (as `url::Url` and others
/// do): the decoder must hand it bytes that live as long as the decoding.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
struct Borrowing(String);

impl<'de> Deserialize<'de> for Borrowing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Borrowing;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a borrowed string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Borrowing, E> {
                Ok(Borrowing(s.to_owned()))
            }
        }
        d.deserialize_str(Visit)
    }
}

impl microkernel::state::Schema for Borrowing {
    const SCHEMA: &'static microkernel::state::NamedType = <String as microkernel::state::Schema>::SCHEMA;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct BigV1 {
    bytes: Vec<u8>,
    names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = BigV1)]
struct BigV2 {
    bytes: Vec<u8>,
    names: Vec<String>,
    borrowed: Vec<Borrowing>,
    counts: HashMap<String, u64>,
}

impl From<BigV1> for BigV2 {
    fn from(v1: BigV1) -> Self {
        let counts = v1.names.iter().map(|n| (n.clone(), n.len() as u64)).collect();
        Self {
            borrowed: v1.names.iter().map(|n| Borrowing(n.clone())).collect(),
            bytes: v1.bytes,
            names: v1.names,
            counts,
        }
    }
}

/// What the service saw imported, for the test to compare.
type Seen<S> = Arc<Mutex<Option<S>>>;

struct Big<S> {
    state: S,
    seen: Seen<S>,
}

impl<S: Migratable + Clone> Service for Big<S> {
    type State = S;
    fn name(&self) -> &str {
        "big"
    }
    fn dependencies(&self) -> Vec<String> {
        Vec::new()
    }
    fn export_state(&self) -> Result<&S, BoxError> {
        Ok(&self.state)
    }
    fn import_state(&mut self, state: S) -> Result<(), BoxError> {
        *self.seen.lock().unwrap() = Some(state.clone());
        self.state = state;
        Ok(())
    }
}

impl<S: Migratable + Clone> Handler for Big<S> {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("big", "")
    }
}

/// A state whose encoding (about 9 MB) is well over the segmenting threshold, with strings
/// that cross segment boundaries.
fn big_v1() -> BigV1 {
    let bytes = (0..6_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let names = (0..40_000)
        .map(|i| format!("name-{i}-{}", "x".repeat(i % 97)))
        .collect();
    BigV1 { bytes, names }
}

fn sealer(algorithm: Algorithm) -> Sealer {
    Sealer::new(Keyring::new(3, Key::generate(algorithm).unwrap()))
}

#[test]
fn a_large_state_crosses_a_replacement_in_segments_and_is_upgraded() {
    for algorithm in [Algorithm::Aes256Gcm, Algorithm::XChaCha20Poly1305] {
        let kernel = Kernel::builder().sealer(sealer(algorithm)).build().unwrap();
        let v1 = big_v1();
        let seen1: Seen<BigV1> = Arc::default();
        kernel
            .register(Big {
                state: v1.clone(),
                seen: seen1,
            })
            .unwrap();
        kernel.start_all().unwrap();
        let seen2: Seen<BigV2> = Arc::default();
        let outcome = kernel
            .replace(Big {
                state: BigV2::default(),
                seen: Arc::clone(&seen2),
            })
            .unwrap();
        assert!(matches!(outcome, Replaced::Swapped { sealed: true, .. }), "{outcome:?}");
        let got = seen2.lock().unwrap().take().unwrap();
        assert_eq!(got, BigV2::from(v1), "{algorithm}");
        assert!(state::encode(&got).unwrap().as_bytes().len() > SEGMENTED_ABOVE);
        // v2 to v2: the borrowing strings are decoded from the segments themselves.
        let seen3: Seen<BigV2> = Arc::default();
        kernel
            .replace(Big {
                state: BigV2::default(),
                seen: Arc::clone(&seen3),
            })
            .unwrap();
        assert_eq!(seen3.lock().unwrap().take().unwrap(), got, "{algorithm}");
    }
}

#[test]
fn a_segment_altered_in_transit_fails_the_replacement_at_open_and_the_old_version_serves() {
    // The transit fault sees the first segment of a segmented envelope.
    let kernel = Kernel::builder()
        .sealer(sealer(Algorithm::Aes256Gcm))
        .fault_in_transit(|segment| segment[100] ^= 1)
        .build()
        .unwrap();
    let seen1: Seen<BigV1> = Arc::default();
    kernel
        .register(Big {
            state: big_v1(),
            seen: seen1,
        })
        .unwrap();
    kernel.start_all().unwrap();
    let err = kernel
        .replace(Big {
            state: BigV2::default(),
            seen: Arc::default(),
        })
        .unwrap_err();
    assert_eq!(err.step(), Step::Open, "{err}");
    assert!(err.to_string().contains("segment 0"), "{err}");
    assert!(kernel.call("big", Event::new("big", "t", "get", "")).is_ok());
}

/// An encoded state and its segmented envelope (segments of 4096 bytes).
fn sealed_in_segments(sealer: &Sealer, len: usize) -> (state::EncodedState, Vec<u8>) {
    let encoded = state::encode(&BigV1 {
        bytes: (0..len).map(|i| i as u8).collect(),
        names: vec!["a".into()],
    })
    .unwrap();
    let blob = sealer
        .seal_segmented("big", encoded.tag(), 9, encoded.as_bytes(), 4096)
        .unwrap();
    (encoded, blob)
}

/// Where the segments start: after the header.
fn body_at(blob: &[u8]) -> usize {
    let (_, body) = microkernel::seal::envelope::Header::parse(blob).unwrap();
    blob.len() - body.len()
}

#[test]
fn a_segmented_envelope_opens_whole_and_names_its_segments() {
    let sealer = sealer(Algorithm::ChaCha20Poly1305);
    let (encoded, blob) = sealed_in_segments(&sealer, 20_000);
    assert_eq!(blob[4], 3);
    let (header, _) = microkernel::seal::envelope::Header::parse(&blob).unwrap();
    assert_eq!(header.generation, 9);
    assert_eq!(header.segments.unwrap().size, 4096);
    assert_eq!(header.nonce.len(), 7);
    let (opened, generation) = sealer.open_generation("big", blob.clone()).unwrap();
    assert_eq!((opened, generation), (encoded.clone(), 9));
    let text = microkernel::seal::envelope::describe(&blob).unwrap();
    assert!(text.contains("segments:           5 of 4096"), "{text}");
    // The generation is read from the clear header without a key, as for format 2.
    assert_eq!(
        microkernel::seal::SealedObject::from_bytes(blob).unwrap().generation(),
        9
    );
    // A large state sealed by `seal_at` is segmented too, with the default segment size.
    let big = state::encode(&big_v1()).unwrap();
    let blob = sealer.seal_at("big", big.tag(), 1, big.as_bytes()).unwrap();
    assert_eq!(blob[4], 3);
    let (header, _) = microkernel::seal::envelope::Header::parse(&blob).unwrap();
    assert_eq!(header.segments.unwrap().size, SEGMENT_SIZE);
    assert_eq!(sealer.open("big", &blob).unwrap(), big);
}

#[test]
fn every_alteration_of_the_segments_is_refused() {
    let sealer = sealer(Algorithm::Aes128Gcm);
    let (_, blob) = sealed_in_segments(&sealer, 20_000);
    let at = body_at(&blob);
    let full = 4096 + 16;
    let segment = |i: usize| at + i * full..(at + (i + 1) * full).min(blob.len());
    let open = |bytes: Vec<u8>| sealer.open("big", &bytes).unwrap_err();
    let auth = |e: &SealError, i: u64| matches!(e, SealError::SegmentAuthentication { segment, .. } if *segment == i);

    // A flipped bit in segment 2.
    let mut flipped = blob.clone();
    flipped[segment(2).start + 10] ^= 1;
    assert!(auth(&open(flipped), 2));
    // Segments 1 and 2 swapped.
    let mut swapped = blob[..segment(1).start].to_vec();
    swapped.extend_from_slice(&blob[segment(2)]);
    swapped.extend_from_slice(&blob[segment(1)]);
    swapped.extend_from_slice(&blob[segment(3).start..]);
    assert!(auth(&open(swapped), 1));
    // Cut after segment 3 (a boundary): segment 3 was not sealed as the last.
    let cut = blob[..segment(3).end].to_vec();
    assert!(auth(&open(cut), 3));
    // A full segment repeated at the end.
    let mut extended = blob[..segment(3).end].to_vec();
    extended.extend_from_slice(&blob[segment(3)]);
    extended.extend_from_slice(&blob[segment(4)]);
    assert!(matches!(open(extended), SealError::SegmentAuthentication { .. }));
    // The header's salt, prefix, generation, key id's neighbours (state version and
    // fingerprint) are all bound to every segment.
    for offset in [body_at(&blob) - 1, body_at(&blob) - 10, 30 + 1 + 3 + 4 + 5, 22, 10, 14] {
        let mut edited = blob.clone();
        edited[offset] ^= 1;
        assert!(auth(&open(edited), 0), "offset {offset}");
    }
    // So is the segment size: another allowed size makes the first segment fail.
    let mut resized = blob.clone();
    resized[30 + 1 + 3..30 + 1 + 3 + 4].copy_from_slice(&8192u32.to_le_bytes());
    assert!(matches!(
        open(resized),
        SealError::SegmentAuthentication { .. } | SealError::BadSegments(_)
    ));
    // A segment taken from another envelope of the same state, at the same index.
    let (_, other) = sealed_in_segments(&sealer, 20_000);
    let mut spliced = blob.clone();
    spliced[segment(1)].copy_from_slice(&other[segment(1)]);
    assert!(auth(&open(spliced), 1));
    // A copy of the last segment appended after it.
    let mut appended = blob.clone();
    appended.extend_from_slice(&blob[segment(4)]);
    assert!(
        open(appended.clone()).to_string().contains("segment"),
        "{}",
        open(appended)
    );
    // A segment size that is not allowed is refused before any decryption.
    let mut size = blob.clone();
    size[30 + 1 + 3..30 + 1 + 3 + 4].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(open(size), SealError::BadSegmentSize(1000)));
    // A body that ends in a segment too short to hold a tag.
    let mut short = blob[..segment(4).start].to_vec();
    short.extend_from_slice(&[0; 10]);
    assert!(matches!(open(short), SealError::BadSegments(_)));
    // Another service's name: refused before decryption.
    assert!(matches!(
        sealer.open("other", &blob).unwrap_err(),
        SealError::WrongService { .. }
    ));
}

#[test]
fn a_plaintext_that_does_not_start_with_its_tag_is_not_sealed() {
    let sealer = sealer(Algorithm::Aes256Gcm);
    let tag = StateTag::of::<BigV1>();
    let err = sealer.seal_segmented("big", tag, 1, &[0u8; 5000], 4096).unwrap_err();
    assert!(matches!(err, SealError::InconsistentPlaintext));
    let err = sealer.seal_segmented("big", tag, 1, &tag.to_bytes(), 1000).unwrap_err();
    assert!(matches!(err, SealError::BadSegmentSize(1000)));
}

/// Serializes its bytes, then fails: after the encoding has gone past the segmenting threshold.
fn fail_late<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error, SerializeSeq};
    let mut seq = s.serialize_seq(Some(bytes.len()))?;
    for byte in bytes {
        seq.serialize_element(byte)?;
    }
    Err(S::Error::custom("refused after 6 MB"))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct FailsLate {
    #[serde(serialize_with = "fail_late")]
    #[schema(as = Vec<u8>)]
    bytes: Vec<u8>,
}

/// Decodes by panicking.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
struct Boom(u8);

impl<'de> Deserialize<'de> for Boom {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("Boom cannot be decoded")
    }
}

impl microkernel::state::Schema for Boom {
    const SCHEMA: &'static microkernel::state::NamedType = <u8 as microkernel::state::Schema>::SCHEMA;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Exploding {
    bytes: Vec<u8>,
    boom: Boom,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Other {
    numbers: Vec<u64>,
}

/// A kernel serving `big` with `state`, and the result of replacing it by a `Big<T>`.
fn replace_large<S: Migratable + Clone, T: Migratable + Clone + Default>(
    state: S,
) -> (Kernel, microkernel::ReplaceError) {
    let kernel = Kernel::builder().sealer(sealer(Algorithm::Aes256Gcm)).build().unwrap();
    kernel
        .register(Big {
            state,
            seen: Arc::default(),
        })
        .unwrap();
    kernel.start_all().unwrap();
    let err = kernel
        .replace(Big {
            state: T::default(),
            seen: Arc::default(),
        })
        .unwrap_err();
    (kernel, err)
}

fn six_mb() -> Vec<u8> {
    vec![1; 6_000_000]
}

#[test]
fn failures_while_a_large_state_streams_name_their_step_and_leave_the_old_version_serving() {
    let serving = |kernel: &Kernel| assert!(kernel.call("big", Event::new("big", "t", "get", "")).is_ok());
    // The old version's Serialize fails after 6 MB went down the pipe.
    let (kernel, err) = replace_large::<FailsLate, FailsLate>(FailsLate { bytes: six_mb() });
    assert_eq!(err.step(), Step::Encode, "{err}");
    assert!(err.to_string().contains("FailsLate v1 does not encode"), "{err}");
    serving(&kernel);
    // The new version's type does not match: the decoding stops at once.
    let (kernel, err) = replace_large::<BigV1, Other>(BigV1 {
        bytes: six_mb(),
        names: Vec::new(),
    });
    assert_eq!(err.step(), Step::Decode, "{err}");
    assert!(err.to_string().contains("fingerprint"), "{err}");
    serving(&kernel);
    // A Deserialize that panics on the decoding thread.
    let (kernel, err) = replace_large::<Exploding, Exploding>(Exploding {
        bytes: six_mb(),
        boom: Boom(1),
    });
    assert_eq!(err.step(), Step::Decode, "{err}");
    assert!(err.to_string().contains("Boom cannot be decoded"), "{err}");
    serving(&kernel);
}

/// A fresh directory, removed afterwards.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("mk-segmented-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// The names of the files in it.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != ".lock")
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kernel_with_store(dir: &TempDir, key: &Key, limit: u64) -> Kernel {
    let options = microkernel::store::StoreOptions::default().max_state_bytes(limit);
    Kernel::builder()
        .sealer(Sealer::new(Keyring::new(3, key.clone())))
        .store(microkernel::DirStore::open_with(&dir.0, options).unwrap())
        .build()
        .unwrap()
}

#[test]
fn a_large_checkpoint_is_written_in_segments_and_restored() {
    let dir = TempDir::new("checkpoint");
    let key = Key::generate(Algorithm::Aes256Gcm).unwrap();
    let v1 = big_v1();
    {
        let kernel = kernel_with_store(&dir, &key, 1 << 30);
        kernel
            .register(Big {
                state: v1.clone(),
                seen: Arc::default(),
            })
            .unwrap();
        kernel.start_all().unwrap();
        kernel.checkpoint_service("big").unwrap();
        let file = std::fs::read(dir.0.join("big.state")).unwrap();
        assert_eq!(file[4], 3, "a segmented envelope");
        assert_eq!(dir.files(), ["big.state"], "no temporary file left");
    }
    // A new kernel restores it when the service registers.
    let kernel = kernel_with_store(&dir, &key, 1 << 30);
    let seen: Seen<BigV1> = Arc::default();
    kernel
        .register(Big {
            state: BigV1::default(),
            seen: Arc::clone(&seen),
        })
        .unwrap();
    assert_eq!(seen.lock().unwrap().take().unwrap(), v1);
}

#[test]
fn a_large_checkpoint_over_the_store_limit_fails_while_streaming_and_leaves_nothing() {
    let dir = TempDir::new("too-large");
    let key = Key::generate(Algorithm::Aes256Gcm).unwrap();
    let kernel = kernel_with_store(&dir, &key, 7_000_000);
    kernel
        .register(Big {
            state: big_v1(),
            seen: Arc::default(),
        })
        .unwrap();
    kernel.start_all().unwrap();
    let err = kernel.checkpoint_service("big").unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    assert!(
        dir.files().is_empty(),
        "nothing written, no temporary file left: {:?}",
        dir.files()
    );
    // The service goes on serving.
    assert!(kernel.call("big", Event::new("big", "t", "get", "")).is_ok());
}

/// A directory store that counts the parts written to it part by part.
#[derive(Debug)]
struct Counting {
    inner: microkernel::DirStore,
    parts: Arc<std::sync::atomic::AtomicUsize>,
}

struct CountingWriter<'a> {
    inner: Box<dyn microkernel::store::ObjectWriter<'a> + 'a>,
    parts: Arc<std::sync::atomic::AtomicUsize>,
}

impl<'a> microkernel::store::ObjectWriter<'a> for CountingWriter<'a> {
    fn write(&mut self, part: &[u8]) -> microkernel::store::StoreFuture<'_, ()> {
        self.parts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.write(part)
    }
    fn commit(self: Box<Self>) -> microkernel::store::StoreFuture<'a, microkernel::store::Location> {
        self.inner.commit()
    }
}

impl microkernel::store::StateStore for Counting {
    fn check_name(&self, service: &str) -> Result<(), microkernel::store::StoreError> {
        self.inner.check_name(service)
    }
    fn location(&self, service: &str) -> microkernel::store::Location {
        self.inner.location(service)
    }
    fn save<'a>(
        &'a self,
        service: &'a str,
        object: microkernel::seal::SealedObject,
    ) -> microkernel::store::StoreFuture<'a, microkernel::store::Location> {
        self.inner.save(service, object)
    }
    fn load<'a>(&'a self, service: &'a str) -> microkernel::store::StoreFuture<'a, Option<microkernel::store::Stored>> {
        self.inner.load(service)
    }
    fn set_aside<'a>(
        &'a self,
        service: &'a str,
    ) -> microkernel::store::StoreFuture<'a, Option<microkernel::store::Location>> {
        self.inner.set_aside(service)
    }
    fn known_generation(&self, service: &str) -> u64 {
        self.inner.known_generation(service)
    }
    fn begin_save<'a>(
        &'a self,
        service: &'a str,
        generation: u64,
    ) -> Option<Box<dyn microkernel::store::ObjectWriter<'a> + 'a>> {
        let inner = self.inner.begin_save(service, generation)?;
        Some(Box::new(CountingWriter {
            inner,
            parts: Arc::clone(&self.parts),
        }))
    }
}

/// One string of 9 MB: postcard writes it at once, past the segmenting threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct OneString {
    text: String,
    after: u64,
}

#[test]
fn a_checkpoint_streams_its_segments_to_the_store_and_a_long_string_crosses_in_segments() {
    let dir = TempDir::new("counting");
    let key = Key::generate(Algorithm::ChaCha20Poly1305).unwrap();
    let parts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let kernel = Kernel::builder()
        .sealer(Sealer::new(Keyring::new(3, key.clone())))
        .store(Counting {
            inner: microkernel::DirStore::open(&dir.0).unwrap(),
            parts: Arc::clone(&parts),
        })
        .build()
        .unwrap();
    let state = OneString {
        text: "0123456789abcdef".repeat(9 << 16),
        after: 7,
    };
    kernel
        .register(Big {
            state: state.clone(),
            seen: Arc::default(),
        })
        .unwrap();
    kernel.start_all().unwrap();
    kernel.checkpoint_service("big").unwrap();
    // A header and ten segments of 1 MiB (9 MiB and a few bytes of plaintext), part by part.
    assert_eq!(parts.load(std::sync::atomic::Ordering::SeqCst), 11);
    let file = std::fs::read(dir.0.join("big.state")).unwrap();
    assert_eq!(file[4], 3);
    let (opened, _) = Sealer::new(Keyring::new(3, key)).open_generation("big", file).unwrap();
    assert_eq!(state::decode::<OneString>(opened.as_bytes()).unwrap(), state);
    // The same state crosses a replacement in segments.
    let seen: Seen<OneString> = Arc::default();
    let outcome = kernel
        .replace(Big {
            state: OneString::default(),
            seen: Arc::clone(&seen),
        })
        .unwrap();
    assert!(matches!(outcome, Replaced::Swapped { sealed: true, .. }));
    assert_eq!(seen.lock().unwrap().take().unwrap(), state);
}

// Pipelined crossings: a replacement's state over `PIPELINED_ABOVE` (far below the 4 MiB of
// saved envelopes) crosses in segments of `CROSSING_SEGMENT_SIZE`, decoded on another thread as
// they are sealed; a shorter one in one envelope. The transit fault hook sees a whole envelope
// or the first segment, which tells the two apart.

use microkernel::seal::stream::{CROSSING_SEGMENT_SIZE, PIPELINED_ABOVE};
use std::sync::atomic::{AtomicBool, Ordering};

/// What the transit hook saw of each crossing: the length of the bytes it was given, and
/// whether they were a whole envelope (format 2) rather than a segment.
type Crossings = Arc<Mutex<Vec<(usize, bool)>>>;

/// A kernel whose transit hook records each crossing, and flips a bit of it while `alter` is set.
fn recording_kernel(alter: &Arc<AtomicBool>) -> (Kernel, Crossings) {
    let crossings = Crossings::default();
    let (seen, alter) = (Arc::clone(&crossings), Arc::clone(alter));
    let kernel = Kernel::builder()
        .sealer(sealer(Algorithm::Aes256Gcm))
        .fault_in_transit(move |bytes| {
            let whole = bytes.len() > 4 && bytes[..4] == microkernel::seal::envelope::MAGIC && bytes[4] == 2;
            seen.lock().unwrap().push((bytes.len(), whole));
            if alter.load(Ordering::SeqCst) {
                let at = bytes.len() - 1;
                bytes[at] ^= 1;
            }
        })
        .build()
        .unwrap();
    (kernel, crossings)
}

/// A `BigV1` whose encoding is exactly `len` bytes, with names that cross segment boundaries.
fn encoded_exactly(len: usize) -> BigV1 {
    let names: Vec<String> = (0..len / 2000)
        .map(|i| format!("n{i}-{}", "y".repeat(i % 300)))
        .collect();
    let mut state = BigV1 {
        bytes: Vec::new(),
        names,
    };
    let fixed = state::encode(&state).unwrap().as_bytes().len();
    let mut n = len.saturating_sub(fixed + 2);
    loop {
        state.bytes = (0..n).map(|i| (i * 13 % 256) as u8).collect();
        let got = state::encode(&state).unwrap().as_bytes().len();
        if got == len {
            return state;
        }
        n = if got < len { n + 1 } else { n - 1 };
    }
}

/// Replaces `big` (serving a `BigV1`) by a `Big<BigV2>`, returning what the new version got.
fn replace_by_v2(kernel: &Kernel) -> Result<BigV2, microkernel::ReplaceError> {
    let seen: Seen<BigV2> = Arc::default();
    kernel.replace(Big {
        state: BigV2::default(),
        seen: Arc::clone(&seen),
    })?;
    Ok(seen.lock().unwrap().take().unwrap())
}

#[test]
fn the_magic_the_hook_reads_is_the_envelopes() {
    let sealer = sealer(Algorithm::Aes256Gcm);
    let encoded = state::encode(&BigV1::default()).unwrap();
    let blob = sealer.seal("big", encoded.tag(), encoded.as_bytes()).unwrap();
    assert_eq!((&blob[..4], blob[4]), (&microkernel::seal::envelope::MAGIC[..], 2));
}

#[test]
fn a_state_over_the_pipelining_threshold_crosses_in_small_segments_and_one_at_it_whole() {
    let segment = CROSSING_SEGMENT_SIZE as usize;
    let alter = Arc::new(AtomicBool::new(false));
    // Lengths around a segment boundary past the threshold.
    let boundary = (PIPELINED_ABOVE / segment + 2) * segment;
    for (len, pipelined) in [
        (PIPELINED_ABOVE, false),
        (PIPELINED_ABOVE + 1, true),
        (boundary - 1, true),
        (boundary, true),
        (boundary + 1, true),
        (boundary + 3 * segment + 777, true),
    ] {
        let (kernel, crossings) = recording_kernel(&alter);
        let v1 = encoded_exactly(len);
        kernel
            .register(Big {
                state: v1.clone(),
                seen: Arc::default(),
            })
            .unwrap();
        kernel.start_all().unwrap();
        let got = replace_by_v2(&kernel).unwrap();
        assert_eq!(got, BigV2::from(v1), "{len}");
        let seen = crossings.lock().unwrap().clone();
        if pipelined {
            // The first segment: a full one, sealed (its tag after it).
            assert_eq!(seen, [(segment + 16, false)], "{len}");
        } else {
            assert_eq!(seen.len(), 1, "{len}");
            assert!(seen[0].1, "{len}: a whole envelope");
        }
        // v2 to v2, pipelined as well: the borrowing strings come from the segments.
        let seen3: Seen<BigV2> = Arc::default();
        kernel
            .replace(Big {
                state: BigV2::default(),
                seen: Arc::clone(&seen3),
            })
            .unwrap();
        assert_eq!(seen3.lock().unwrap().take().unwrap(), got, "{len}");
    }
}

#[test]
fn a_pipelined_crossing_that_fails_at_any_step_leaves_the_old_version_serving_its_state() {
    let alter = Arc::new(AtomicBool::new(true));
    let (kernel, _) = recording_kernel(&alter);
    let v1 = encoded_exactly(700_000);
    kernel
        .register(Big {
            state: v1.clone(),
            seen: Arc::default(),
        })
        .unwrap();
    kernel.start_all().unwrap();
    // A segment altered in transit: refused at open, naming it.
    let err = replace_by_v2(&kernel).unwrap_err();
    assert_eq!(err.step(), Step::Open, "{err}");
    assert!(err.to_string().contains("segment 0"), "{err}");
    assert!(kernel.call("big", Event::new("big", "t", "get", "")).is_ok());
    // The old version kept its state: the next replacement carries all of it.
    alter.store(false, Ordering::SeqCst);
    assert_eq!(replace_by_v2(&kernel).unwrap(), BigV2::from(v1));

    let serving = |kernel: &Kernel| assert!(kernel.call("big", Event::new("big", "t", "get", "")).is_ok());
    let mid = || vec![3; 2 * PIPELINED_ABOVE];
    // The old version's Serialize fails after the crossing went segmented.
    let (kernel, err) = replace_large::<FailsLate, FailsLate>(FailsLate { bytes: mid() });
    assert_eq!(err.step(), Step::Encode, "{err}");
    serving(&kernel);
    // The new version's type does not match: the decoding stops at once.
    let (kernel, err) = replace_large::<BigV1, Other>(BigV1 {
        bytes: mid(),
        names: Vec::new(),
    });
    assert_eq!(err.step(), Step::Decode, "{err}");
    serving(&kernel);
    // A Deserialize that panics on the decoding thread.
    let (kernel, err) = replace_large::<Exploding, Exploding>(Exploding {
        bytes: mid(),
        boom: Boom(1),
    });
    assert_eq!(err.step(), Step::Decode, "{err}");
    assert!(err.to_string().contains("Boom cannot be decoded"), "{err}");
    serving(&kernel);
}

/// The W3 table with `state::hash_map`: pipelined, it still decodes into one table of the
/// right size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Sized {
    #[serde(with = "microkernel::state::hash_map")]
    table: HashMap<String, u64>,
}

#[test]
fn a_pipelined_crossing_carries_a_pre_sized_table_whole() {
    let table: HashMap<String, u64> = (0..60_000u64).map(|i| (format!("key-{i}"), i * 7919)).collect();
    let state = Sized { table };
    assert!(state::encode(&state).unwrap().as_bytes().len() > PIPELINED_ABOVE);
    let kernel = Kernel::builder().sealer(sealer(Algorithm::Aes256Gcm)).build().unwrap();
    kernel
        .register(Big {
            state: state.clone(),
            seen: Arc::default(),
        })
        .unwrap();
    kernel.start_all().unwrap();
    let seen: Seen<Sized> = Arc::default();
    kernel
        .replace(Big {
            state: Sized::default(),
            seen: Arc::clone(&seen),
        })
        .unwrap();
    assert_eq!(seen.lock().unwrap().take().unwrap(), state);
}

#[test]
fn a_checkpoint_of_a_state_over_the_pipelining_threshold_is_still_one_whole_envelope() {
    let dir = TempDir::new("mid-checkpoint");
    let key = Key::generate(Algorithm::Aes256Gcm).unwrap();
    let v1 = encoded_exactly(2 * PIPELINED_ABOVE);
    {
        let kernel = kernel_with_store(&dir, &key, 1 << 30);
        kernel
            .register(Big {
                state: v1.clone(),
                seen: Arc::default(),
            })
            .unwrap();
        kernel.start_all().unwrap();
        kernel.checkpoint_service("big").unwrap();
        let file = std::fs::read(dir.0.join("big.state")).unwrap();
        assert_eq!(file[4], 2, "saved whole (format 2), as before");
    }
    let kernel = kernel_with_store(&dir, &key, 1 << 30);
    let seen: Seen<BigV1> = Arc::default();
    kernel
        .register(Big {
            state: BigV1::default(),
            seen: Arc::clone(&seen),
        })
        .unwrap();
    assert_eq!(seen.lock().unwrap().take().unwrap(), v1);
}
