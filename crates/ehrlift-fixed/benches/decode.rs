//! Reading and decoding NAACCR 14 incidence records (3339 bytes, 555 text fields): the
//! shared 10,000-record file, decompressed in memory and repeated to over 100 MB, read
//! with `RecordReader` and decoded into a reused column sink, as the pipeline's Arrow
//! string builders would take it. Single thread.

use std::hint::black_box;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ehrlift_fixed::{FieldSink, Layout, RecordDecoder, RecordReader, import};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/fixed-width/naaccr/");
/// Rows a column batch holds before it is handed on and cleared.
const BATCH_ROWS: usize = 8192;

/// What Arrow string builders do with a value: append its bytes to a buffer and push an
/// offset (one buffer for all columns here, which costs the same), cleared per batch.
#[derive(Default)]
struct Columns {
    text: String,
    offsets: Vec<usize>,
    nulls: usize,
}

impl FieldSink for Columns {
    fn value(&mut self, _index: usize, text: &str) {
        if text.is_empty() {
            self.nulls += 1;
        }
        self.text.push_str(text);
        self.offsets.push(self.text.len());
    }
}

fn data() -> Vec<u8> {
    let gz = std::fs::read(format!("{DIR}fake-naaccr14inc-10000-rec.txt.gz")).expect("the shared NAACCR file");
    let mut one = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut one).expect("gzip");
    let mut all = Vec::with_capacity(one.len() * 4);
    while all.len() < 100_000_000 {
        all.extend_from_slice(&one);
    }
    all
}

fn layout() -> Arc<Layout> {
    let xml = std::fs::read_to_string(format!("{DIR}naaccr-14-layout.xml")).expect("the layout XML");
    let toml = import::naaccr_xml(&xml, Some(3339)).expect("import");
    Arc::new(Layout::from_toml(&toml).expect("layout").layout)
}

fn run(decoder: &mut RecordDecoder, data: &[u8], columns: &mut Columns) -> usize {
    let mut reader = RecordReader::new(data, decoder.layout().framing(), 0, 0);
    let mut buf = Vec::with_capacity(4096);
    let (mut rows, mut in_batch) = (0, 0);
    while let Some(info) = reader.next_record(&mut buf).expect("read") {
        decoder.decode(&info, &buf, columns).expect("decode");
        rows += 1;
        in_batch += 1;
        if in_batch == BATCH_ROWS {
            black_box(&*columns);
            columns.text.clear();
            columns.offsets.clear();
            in_batch = 0;
        }
    }
    rows
}

fn bench(c: &mut Criterion) {
    let data = data();
    let layout = layout();
    let n_fields = layout.record_types()[0].fields().len();
    let mut group = c.benchmark_group("naaccr14_decode");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(20));

    let mut columns = Columns::default();
    let mut all = RecordDecoder::new(layout.clone());
    group.bench_function(format!("all_{n_fields}_fields"), |b| b.iter(|| run(&mut all, &data, &mut columns)));

    let mut twenty = RecordDecoder::new(layout.clone());
    let step = n_fields / 20;
    twenty.set_projection(0, (0..20).map(|i| i * step).collect());
    group.bench_function("20_fields", |b| b.iter(|| run(&mut twenty, &data, &mut columns)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
