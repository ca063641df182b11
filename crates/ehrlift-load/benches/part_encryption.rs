//! Cost of Parquet modular encryption in `PartWriter`: 500k patients-like rows written
//! to a local store, plaintext and with every column under its own key.
//!
//! `cargo bench -p ehrlift-load --bench part_encryption -- --warm-up-time 1 --measurement-time 5`

use std::sync::Arc;

use arrow_array::{ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use criterion::{Criterion, criterion_group, criterion_main};
use ehrlift_load::{ColumnKey, LocalStore, PartEncryption, PartSettings, PartWriter};
use zeroize::Zeroizing;

const ROWS: usize = 500_000;
const BATCH: usize = 8 * 1024;

/// splitmix64: cheap, deterministic, well spread.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const FIRST: &[&str] = &["Maria", "James", "Wei", "Fatima", "Olga", "Juan", "Aisha", "Noah", "Priya", "Liam", "Sofia", "Kenji"];
const LAST: &[&str] = &["Garcia", "Smith", "Nguyen", "Khan", "Ivanova", "Lopez", "Okafor", "Brown", "Patel", "Murphy", "Rossi", "Sato"];
const CITY: &[&str] = &["Boston", "Springfield", "Worcester", "Lowell", "Cambridge", "Quincy", "Newton", "Salem"];

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("patient_id", DataType::Int64, false),
        Field::new("mrn", DataType::Utf8, false),
        Field::new("first_name", DataType::Utf8, true),
        Field::new("last_name", DataType::Utf8, true),
        Field::new("sex", DataType::Utf8, true),
        Field::new("birth_date", DataType::Date32, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("zip", DataType::Utf8, true),
        Field::new("phone", DataType::Utf8, true),
        Field::new("visits", DataType::Int32, true),
        Field::new("last_visit", DataType::Date32, true),
    ]))
}

fn batches() -> Vec<RecordBatch> {
    let schema = schema();
    (0..ROWS)
        .step_by(BATCH)
        .map(|from| {
            let ids: Vec<u64> = (from as u64..(from + BATCH).min(ROWS) as u64).collect();
            let pick = |salt: u64, xs: &'static [&'static str]| {
                StringArray::from_iter(ids.iter().map(move |&i| {
                    let r = mix(i ^ salt);
                    (!r.is_multiple_of(50)).then(|| xs[(r >> 8) as usize % xs.len()])
                }))
            };
            let cols: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(ids.iter().map(|&i| i as i64 + 1_000_000))),
                Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| format!("M{:09}", mix(i) % 1_000_000_000)))),
                Arc::new(pick(1, FIRST)),
                Arc::new(pick(2, LAST)),
                Arc::new(pick(3, &["F", "M", "U"])),
                Arc::new(Date32Array::from_iter(ids.iter().map(|&i| Some(-25_000 + (mix(i ^ 4) % 30_000) as i32)))),
                Arc::new(pick(5, CITY)),
                Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| format!("0{:04}", mix(i ^ 6) % 3000)))),
                Arc::new(StringArray::from_iter(
                    ids.iter().map(|&i| (!mix(i ^ 7).is_multiple_of(10)).then(|| format!("617-555-{:04}", mix(i ^ 8) % 10_000))),
                )),
                Arc::new(Int32Array::from_iter(ids.iter().map(|&i| Some((mix(i ^ 9) % 40) as i32)))),
                Arc::new(Date32Array::from_iter(
                    ids.iter().map(|&i| (!mix(i ^ 10).is_multiple_of(8)).then(|| 18_000 + (mix(i ^ 11) % 2_000) as i32)),
                )),
            ];
            RecordBatch::try_new(schema.clone(), cols).expect("bench batch")
        })
        .collect()
}

fn write(store: &LocalStore, batches: &[RecordBatch], encryption: Option<&PartEncryption>) -> u64 {
    let settings = PartSettings { row_group_rows: 512 * 1024, zstd_level: 1, workers: 2, no_dictionary: &[], encryption };
    let mut w = PartWriter::create(store, "bench.parquet", schema(), settings).expect("create part");
    for b in batches {
        w.write(b).expect("write batch");
    }
    w.finish().expect("finish part").bytes
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalStore::new(dir.path().to_path_buf());
    let batches = batches();
    let key = |i: u8| ColumnKey { key: Zeroizing::new([i; 32]), metadata: format!("key-{i}").into_bytes() };
    let encryption = PartEncryption {
        footer: key(0),
        columns: schema().fields().iter().enumerate().map(|(i, f)| (f.name().clone(), key(i as u8 + 1))).collect(),
    };
    eprintln!("part bytes: plain {}, encrypted {}", write(&store, &batches, None), write(&store, &batches, Some(&encryption)));
    let mut group = c.benchmark_group("part_500k_rows");
    group.sample_size(10);
    group.bench_function("plain", |b| b.iter(|| write(&store, &batches, None)));
    group.bench_function("encrypted", |b| b.iter(|| write(&store, &batches, Some(&encryption))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
