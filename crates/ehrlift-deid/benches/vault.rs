//! Surrogate vault throughput: `cargo bench -p ehrlift-deid --bench vault`.
//!
//! - `vault/lookup_1m`: batches of 8192 values already in a 1M-entry vault, picked at
//!   random so the map lookups miss cache as they would in a real run (HMAC included).
//! - `vault/assign`: batches of 8192 new values into a vault of 1M–2M entries, and sealing
//!   them with `take_pending`.
//! - `vault/open_1m`: opening a 1M-entry vault from one compacted segment and from 16.

use std::hint::black_box;
use std::time::{Duration, Instant};

use arrow_array::builder::StringBuilder;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ehrlift_deid::vault::{Vault, VaultKeys};
use zeroize::Zeroizing;

const BATCH: usize = 8192;
const PATIENTS: usize = 1_000_000;
const NS: &str = "patient_id";

fn keys() -> VaultKeys {
    VaultKeys { lookup: Zeroizing::new([7; 32]), seal: Zeroizing::new([9; 32]) }
}

fn patient(i: usize) -> String {
    format!("MRN{i:09}")
}

/// A vault of `PATIENTS` entries, built in reader-sized batches; also returns its
/// pending segments (about 16 of them).
fn vault_1m() -> (Vault, Vec<Vec<u8>>) {
    let vault = Vault::open(keys(), []).expect("new vault");
    let mut segments = Vec::new();
    let values: Vec<String> = (0..PATIENTS).map(patient).collect();
    for (n, chunk) in values.chunks(BATCH).enumerate() {
        let mut out = StringBuilder::with_capacity(chunk.len(), chunk.len() * 36);
        vault.surrogates(NS, chunk.iter().map(|v| Some(v.as_str())), &mut out);
        if n % 8 == 7 {
            segments.extend(vault.take_pending());
        }
    }
    segments.extend(vault.take_pending());
    (vault, segments)
}

/// Deterministic scatter over [0, n) without a rand dependency.
fn scatter(seed: u64, n: usize) -> impl Iterator<Item = usize> {
    let mut x = seed | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some((x % n as u64) as usize)
    })
}

fn lookup_1m(c: &mut Criterion, vault: &Vault) {
    let batches: Vec<Vec<String>> = (0..16).map(|b| scatter(b + 1, PATIENTS).take(BATCH).map(patient).collect()).collect();
    let mut group = c.benchmark_group("vault/lookup_1m");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut next = 0;
    group.bench_function("surrogates_8k", |b| {
        b.iter(|| {
            let batch = &batches[next % batches.len()];
            next += 1;
            let mut out = StringBuilder::with_capacity(BATCH, BATCH * 36);
            vault.surrogates(NS, batch.iter().map(|v| Some(v.as_str())), &mut out);
            black_box(out.finish())
        })
    });
    group.finish();
}

fn assign(c: &mut Criterion, compacted: &[u8]) {
    let reset = || Vault::open(keys(), [("compacted".to_owned(), compacted.to_vec())]).expect("open");
    let mut group = c.benchmark_group("vault/assign");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);

    let mut vault = reset();
    let mut fresh = PATIENTS;
    group.bench_function("surrogates_8k_new", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                if vault.len() >= 2 * PATIENTS {
                    vault = reset();
                }
                let batch: Vec<String> = (fresh..fresh + BATCH).map(patient).collect();
                fresh += BATCH;
                let mut out = StringBuilder::with_capacity(BATCH, BATCH * 36);
                let start = Instant::now();
                vault.surrogates(NS, batch.iter().map(|v| Some(v.as_str())), &mut out);
                spent += start.elapsed();
                black_box(out.finish());
                vault.take_pending();
            }
            spent
        })
    });

    group.bench_function("take_pending_8k", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                if vault.len() >= 2 * PATIENTS {
                    vault = reset();
                }
                let batch: Vec<String> = (fresh..fresh + BATCH).map(patient).collect();
                fresh += BATCH;
                let mut out = StringBuilder::with_capacity(BATCH, BATCH * 36);
                vault.surrogates(NS, batch.iter().map(|v| Some(v.as_str())), &mut out);
                let start = Instant::now();
                black_box(vault.take_pending());
                spent += start.elapsed();
            }
            spent
        })
    });
    group.finish();
}

fn open_1m(c: &mut Criterion, compacted: &[u8], pending: &[Vec<u8>]) {
    let mut group = c.benchmark_group("vault/open_1m");
    group.throughput(Throughput::Elements(PATIENTS as u64));
    group.sample_size(10);
    group.bench_function("one_segment", |b| {
        b.iter_batched(
            || vec![("compacted".to_owned(), compacted.to_vec())],
            |segs| Vault::open(keys(), segs).expect("open"),
            BatchSize::PerIteration,
        )
    });
    group.bench_function(format!("{}_segments", pending.len()), |b| {
        b.iter_batched(
            || pending.iter().enumerate().map(|(i, s)| (format!("{i:06}"), s.clone())).collect::<Vec<_>>(),
            |segs| Vault::open(keys(), segs).expect("open"),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("seal_all", |b| {
        let vault = Vault::open(keys(), [("compacted".to_owned(), compacted.to_vec())]).expect("open");
        b.iter(|| black_box(vault.seal_all()))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let (vault, pending) = vault_1m();
    let compacted = vault.seal_all();
    lookup_1m(c, &vault);
    drop(vault);
    assign(c, &compacted);
    open_1m(c, &compacted, &pending);
}

criterion_group!(vault, benches);
criterion_main!(vault);
