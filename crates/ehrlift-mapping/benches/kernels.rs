//! Throughput of the column kernels on 64k-value batches (the default batch size).
//! Run: `cargo bench -p ehrlift-mapping`. Targets are judged by tests/bench/run.sh
//! end to end; this isolates the conversion step when that regresses.

use std::collections::HashMap;
use std::hint::black_box;

use arrow_array::StringArray;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ehrlift_mapping::kernel::ColumnKernel;
use ehrlift_mapping::{Column, ColumnType, Recode, Rule, Unmapped};

const N: usize = 65_536;

fn column(ty: ColumnType, formats: &[&str]) -> Column {
    Column {
        name: "c".into(),
        from: "c".into(),
        line: 1,
        ty,
        formats: formats.iter().map(|f| (*f).to_owned()).collect(),
        timezone: None,
        trim: false,
        null: vec![String::new()],
        recode: None,
        nullable: true,
        true_values: vec!["Y".into()],
        false_values: vec!["N".into()],
        rule: Rule::Keep,
        phi: None,
        dictionary: true,
        references: None,
    }
}

fn bench(c: &mut Criterion) {
    let ints = StringArray::from_iter_values((0..N).map(|i| (i * 7919).to_string()));
    let floats = StringArray::from_iter_values((0..N).map(|i| format!("{}.{}", i % 200, i % 10)));
    let dates = StringArray::from_iter_values((0..N).map(|i| format!("{:02}/{:02}/{}", 1 + i % 12, 1 + i % 28, 1920 + i % 100)));
    let stamps = StringArray::from_iter_values((0..N).map(|i| format!("2019-{:02}-{:02}T{:02}:15:00Z", 1 + i % 12, 1 + i % 28, i % 24)));
    let text = StringArray::from_iter_values((0..N).map(|i| if i % 3 == 0 { String::new() } else { format!("note {i}") }));
    let codes = StringArray::from_iter_values((0..N).map(|i| ["1", "2", "9"][i % 3]));
    let mut recode = column(ColumnType::Utf8, &[]);
    recode.recode = Some(Recode {
        map: HashMap::from([("1".into(), "M".into()), ("2".into(), "F".into()), ("9".into(), "U".into())]),
        unmapped: Unmapped::Quarantine,
    });

    let cases: Vec<(&str, Column, &StringArray)> = vec![
        ("int64", column(ColumnType::Int64, &[]), &ints),
        ("float64", column(ColumnType::Float64, &[]), &floats),
        ("decimal(10,2)", column(ColumnType::Decimal { precision: 10, scale: 2 }, &[]), &floats),
        ("date32 %m/%d/%Y", column(ColumnType::Date32, &["%m/%d/%Y"]), &dates),
        ("timestamptz %Y-%m-%dT%H:%M:%SZ", column(ColumnType::TimestampTz, &["%Y-%m-%dT%H:%M:%SZ"]), &stamps),
        ("utf8 null tokens", column(ColumnType::Utf8, &[]), &text),
        ("utf8 recode", recode, &codes),
    ];
    let mut g = c.benchmark_group("kernel");
    g.throughput(Throughput::Elements(N as u64));
    for (name, col, input) in cases {
        let k = ColumnKernel::compile(&col);
        g.bench_function(name, |b| {
            let mut errors = Vec::new();
            b.iter(|| {
                errors.clear();
                black_box(k.apply(black_box(input), &mut errors))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
