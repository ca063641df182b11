//! Throughput of the keyed and generalizing operators on 8k-value batches (the
//! default batch). Run: `cargo bench -p ehrlift-deid --bench keyed`.
//! Targets (issue 3, one core): pseudonym >= 5M values/s, shift_date >= 20M values/s.

use std::hint::black_box;

use arrow_array::{Date32Array, StringArray};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ehrlift_core::ProjectKey;
use ehrlift_deid::generalize::{mask, zip3};
use ehrlift_deid::{DateShifter, Pseudonymizer, Tokenizer, shift};
use zeroize::Zeroizing;

const N: usize = 8192;

fn bench(c: &mut Criterion) {
    let key = ProjectKey::new("local", Zeroizing::new([7; 32]));
    let mrns = StringArray::from_iter_values((0..N).map(|i| format!("MRN{:08}", i * 7919 % 100_000_000)));
    let patients = StringArray::from_iter_values((0..N).map(|i| format!("{:08x}-4c1e-9a7b-{:012x}", i / 3, i / 3)));
    let dates = Date32Array::from_iter_values((0..N as i32).map(|i| 10_000 + i % 3000));
    let zips = StringArray::from_iter_values((0..N).map(|i| format!("{:05}", (i * 17) % 99_999)));

    let mut g = c.benchmark_group("keyed");
    g.throughput(Throughput::Elements(N as u64));
    let p = Pseudonymizer::new(&key, "mrn");
    g.bench_function("pseudonym", |b| b.iter(|| black_box(p.apply(black_box(&mrns)))));
    let s = DateShifter::new(&key, (-365, 365));
    g.bench_function("shift_date", |b| {
        b.iter(|| {
            let offsets = s.offsets(black_box(&patients));
            let mut missing = Vec::new();
            black_box(shift(black_box(&dates), &offsets, &mut missing))
        })
    });
    let offsets = s.offsets(&patients);
    g.bench_function("shift_date_apply_only", |b| {
        b.iter(|| {
            let mut missing = Vec::new();
            black_box(shift(black_box(&dates), &offsets, &mut missing))
        })
    });
    let t = Tokenizer::new(&key, "mrn");
    g.bench_function("tokenize", |b| b.iter(|| black_box(t.apply(black_box(&mrns)))));
    g.bench_function("zip3", |b| b.iter(|| black_box(zip3(black_box(&zips)))));
    g.bench_function("mask", |b| b.iter(|| black_box(mask(black_box(&mrns), 4))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
