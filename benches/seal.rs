//! Seal + open throughput of our envelope against the raw RustCrypto crates, per algorithm and
//! size; and seal + open of the small echo state.

use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use microkernel::seal::stream::SEGMENT_SIZE;
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::state::{self, StateTag};

/// Seal + open of one buffer in place by a raw crate.
type RawSealOpen = Box<dyn FnMut(&mut [u8])>;

const SIZES: [usize; 5] = [64, 1024, 64 * 1024, 1 << 20, 16 << 20];

/// Seal then open with the raw crate, in place in one reused buffer, key expanded once: the
/// physical limit our envelope is measured against.
fn raw<C: AeadInOut + KeyInit + 'static>(key: &[u8], nonce_len: usize) -> impl FnMut(&mut [u8]) + use<C> {
    let cipher = C::new_from_slice(key).unwrap();
    let nonce = aes_gcm::aead::Nonce::<C>::try_from(&[7u8; 24][..nonce_len]).unwrap();
    move |buf| {
        let tag = cipher.encrypt_inout_detached(&nonce, b"aad", buf.into()).unwrap();
        cipher.decrypt_inout_detached(&nonce, b"aad", buf.into(), &tag).unwrap();
    }
}

fn throughput(c: &mut Criterion) {
    for algorithm in Algorithm::ALL {
        let mut group = c.benchmark_group(format!("seal+open {algorithm}"));
        group.sample_size(20);
        let key = Key::generate(algorithm).unwrap();
        let key_bytes = vec![9u8; algorithm.key_len()];
        let sealer = Sealer::new(Keyring::new(1, key));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let mut plain = StateTag::of::<microkernel::Stateless>().to_bytes().to_vec();
            plain.resize(size.max(12), 0xab);
            let tag = StateTag::of::<microkernel::Stateless>();
            // Our envelope: fresh nonce from the CSPRNG, header, AAD binding, strict parsing.
            group.bench_with_input(BenchmarkId::new("microkernel", size), &plain, |b, plain| {
                b.iter(|| {
                    let blob = sealer.seal("echo", tag, plain).unwrap();
                    sealer.open_owned("echo", blob).unwrap()
                })
            });
            // The same bytes sealed in 1 MiB segments (format version 3), as a large state is.
            if size >= 1 << 20 {
                group.bench_with_input(BenchmarkId::new("microkernel segmented", size), &plain, |b, plain| {
                    b.iter(|| {
                        let blob = sealer.seal_segmented("echo", tag, 1, plain, SEGMENT_SIZE).unwrap();
                        sealer.open_owned("echo", blob).unwrap()
                    })
                });
            }
            let mut buf = plain.clone();
            let mut raw: RawSealOpen = match algorithm {
                Algorithm::Aes128Gcm => Box::new(raw::<aes_gcm::Aes128Gcm>(&key_bytes, 12)),
                Algorithm::Aes256Gcm => Box::new(raw::<aes_gcm::Aes256Gcm>(&key_bytes, 12)),
                Algorithm::ChaCha20Poly1305 => Box::new(raw::<chacha20poly1305::ChaCha20Poly1305>(&key_bytes, 12)),
                Algorithm::XChaCha20Poly1305 => Box::new(raw::<chacha20poly1305::XChaCha20Poly1305>(&key_bytes, 24)),
                other => unimplemented!("no raw baseline for {other}"),
            };
            group.bench_function(BenchmarkId::new("raw crate", size), |b| b.iter(|| raw(&mut buf)));
        }
        group.finish();
    }
}

#[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable)]
#[migratable(version = 1)]
struct EchoState {
    count: u32,
}

fn small_state(c: &mut Criterion) {
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).unwrap()));
    c.bench_function("seal+open echo state (aes-256-gcm)", |b| {
        b.iter(|| {
            let encoded = state::encode(&EchoState { count: 41 }).unwrap();
            let tag = encoded.tag();
            let blob = sealer.seal_state("echo", encoded).unwrap();
            let opened = sealer.open_state("echo", tag, &blob).unwrap();
            state::decode::<EchoState>(&opened).unwrap().count
        })
    });
}

criterion_group!(benches, small_state, throughput);
criterion_main!(benches);
