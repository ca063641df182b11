//! Every type each engine has, through ehrlift and back out of Parquet: exact values and
//! exact Arrow types, at the edges (NULLs, integer limits, 64-bit negative keys, maximum
//! precision decimals, NaN, dates before 1970 and after 2038, a 5 MB text), and the values
//! that must be quarantined rather than rounded or guessed.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};

use crate::db::*;
use crate::harness::{ehrlift, run, url};

/// All parts of `table` as one batch.
fn table(dest: &Path, name: &str) -> RecordBatch {
    let b = parts(dest, name);
    assert!(!b.is_empty(), "{name} has no output");
    arrow_select::concat::concat_batches(&b[0].schema(), &b).unwrap()
}

fn field<'a>(b: &'a RecordBatch, name: &str) -> (Field, &'a dyn Array) {
    let s = b.schema();
    let f = s.field_with_name(name).unwrap_or_else(|_| panic!("no column {name}")).clone();
    (f, b.column_by_name(name).unwrap().as_ref())
}

/// Asserts the Arrow type of column `name` and returns the column.
#[track_caller]
fn typed<'a>(b: &'a RecordBatch, name: &str, ty: DataType) -> &'a dyn Array {
    let (f, a) = field(b, name);
    assert_eq!(f.data_type(), &ty, "type of {name}");
    a
}

fn ext(b: &RecordBatch, name: &str) -> Option<String> {
    field(b, name).0.metadata().get("ARROW:extension:name").cloned()
}

fn prim<T: ArrowPrimitiveType>(a: &dyn Array) -> Vec<Option<T::Native>> {
    a.as_primitive::<T>().iter().collect()
}

fn strings(a: &dyn Array) -> Vec<Option<String>> {
    a.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect()
}

fn decimals(a: &dyn Array) -> Vec<Option<String>> {
    (0..a.len())
        .map(|i| {
            a.is_valid(i).then(|| match a.data_type() {
                DataType::Decimal128(..) => a.as_primitive::<Decimal128Type>().value_as_string(i),
                _ => a.as_primitive::<Decimal256Type>().value_as_string(i),
            })
        })
        .collect()
}

fn days(y: i32, m: u32, d: u32) -> i32 {
    (NaiveDate::from_ymd_opt(y, m, d).unwrap() - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

fn micros(s: &str) -> i64 {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap().and_utc().timestamp_micros()
}

fn nines(n: usize) -> String {
    "9".repeat(n)
}

/// 5 MiB of text with multi-byte characters, different on every line.
fn big_text() -> String {
    let mut s = String::with_capacity(5 << 20);
    let mut i = 0;
    while s.len() < 5 << 20 {
        s.push_str(&format!("line {i}: ünïcødé ✓ 🙂 {}\n", "x".repeat(i % 97)));
        i += 1;
    }
    s
}

const MIN: i64 = i64::MIN;
const MAX: i64 = i64::MAX;
const UUID: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const UUID_BYTES: [u8; 16] = [0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11];
const TEXT: &str = "héllo wörld — ✓ 日本語 🙂 'quoted' \"double\" \\back";

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn list(item: DataType) -> DataType {
    DataType::List(std::sync::Arc::new(Field::new("item", item, true)))
}

#[test]
fn postgres_types_round_trip_exactly() {
    let Some(db) = Legacy::postgres("types") else { return };
    db.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE types (
           id bigint PRIMARY KEY, i16 smallint, i32 integer, i64 bigint,
           n38 numeric(38,10), n76 numeric(76,20), f4 real, f8 double precision, b boolean,
           t text, big text, bin bytea, d date, tm time, ts timestamp, tz timestamptz,
           u uuid, j json, jb jsonb, e mood, ai integer[], at text[]);
         CREATE TABLE overflow (id integer PRIMARY KEY, nu numeric);
         INSERT INTO overflow VALUES (1, 12.34), (2, 1.005), (3, 123456789.01), (4, -99999999.99), (5, 0.10000), (6, 'NaN'),
           (7, 0.001), (8, -0.0);",
    );
    let big = big_text();
    db.block_on(async {
        let mut c = db.pg().await;
        let n38 = format!("{}.{}", nines(28), nines(10));
        let n76 = format!("{}.{}", nines(56), nines(20));
        sqlx::query(
            "INSERT INTO types VALUES
             ($1, -32768, -2147483648, $1, $2::numeric, $3::numeric, 'NaN', '-Infinity', false, $4, NULL, '\\x00ff10'::bytea,
              '1900-01-01', '00:00:00', '1900-01-01 00:00:00.000001', '1950-06-15 12:00:00+05:30', $7::uuid,
              '{\"b\": [1, 2.5, null], \"a\": \"x\"}', '{\"b\": 1, \"a\": [true]}', 'sad', '{1,NULL,3}', '{\"a\",NULL,\"ü\"}'),
             (-1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
             (0, 0, 0, 0, 0.0000000001, 0.00000000000000000001, 3.5, 'NaN', NULL, '', $5, ''::bytea,
              '1969-12-31', '12:00:00', '1969-12-31 23:59:59.999999', '1969-12-31 23:59:59-00:00', '00000000-0000-0000-0000-000000000000',
              '[]', 'null', 'ok', '{}', '{}'),
             ($6, 32767, 2147483647, $6, $8::numeric, $9::numeric, '-0', 1.7976931348623157e308, true, 'plain', NULL, NULL,
              '2100-12-31', '23:59:59.999999', '2100-06-15 12:34:56.789012', '2100-01-01 00:00:00-08:00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
              '{}', '{\"k\": \"ü\"}', 'happy', '{2147483647,-2147483648}', '{\"日本\",\"\"}')",
        )
        .bind(MIN)
        .bind(format!("-{n38}"))
        .bind(format!("-{n76}"))
        .bind(TEXT)
        .bind(&big)
        .bind(MAX)
        .bind(UUID)
        .bind(&n38)
        .bind(&n76)
        .execute(&mut c)
        .await
        .unwrap();
    });

    let tmp = tempfile::tempdir().unwrap();
    let types = mapping(
        "types",
        "pg",
        "source_table = \"public.types\"\nkey = [\"id\"]\nchunk_rows = 1",
        &[
            ("id", "int64", ""),
            ("i16", "int16", ""),
            ("i32", "int32", ""),
            ("i64", "int64", ""),
            ("n38", "decimal(38,10)", ""),
            ("n76", "decimal(76,20)", ""),
            ("f4", "float32", ""),
            ("f8", "float64", ""),
            ("b", "bool", ""),
            ("t", "utf8", "null = []"),
            ("big", "utf8", "null = []"),
            ("bin", "binary", ""),
            ("d", "date32", ""),
            ("tm", "time", ""),
            ("ts", "timestamp", ""),
            ("tz", "timestamptz", ""),
            ("u", "uuid", ""),
            ("j", "json", ""),
            ("jb", "json", ""),
            ("e", "utf8", "null = []"),
            ("ai", "list<int32>", ""),
            ("at", "list<utf8>", ""),
        ],
    );
    let overflow = mapping(
        "overflow",
        "pg",
        "source_table = \"public.overflow\"\nkey = [\"id\"]\nchunk_rows = 3",
        &[("id", "int32", ""), ("nu", "decimal(10,2)", "")],
    );
    let plan = db_plan(tmp.path(), "max_quarantine_ratio = 1.0", &db.source("pg", ""), &[("types", types), ("overflow", overflow)]);
    let dest = tmp.path().join("out");
    run_db(&plan, &dest, &[]).expect(0);
    run(ehrlift().arg("verify").arg(url(&dest))).expect(0);

    let b = table(&dest, "types");
    assert_eq!(b.num_rows(), 4);
    assert_eq!(prim::<Int64Type>(typed(&b, "id", DataType::Int64)), [Some(MIN), Some(-1), Some(0), Some(MAX)], "key order");
    assert_eq!(prim::<Int16Type>(typed(&b, "i16", DataType::Int16)), [Some(i16::MIN), None, Some(0), Some(i16::MAX)]);
    assert_eq!(prim::<Int32Type>(typed(&b, "i32", DataType::Int32)), [Some(i32::MIN), None, Some(0), Some(i32::MAX)]);
    assert_eq!(prim::<Int64Type>(typed(&b, "i64", DataType::Int64)), [Some(MIN), None, Some(0), Some(MAX)]);
    let n38 = format!("{}.{}", nines(28), nines(10));
    let n76 = format!("{}.{}", nines(56), nines(20));
    assert_eq!(
        decimals(typed(&b, "n38", DataType::Decimal128(38, 10))),
        [Some(format!("-{n38}")), None, Some("0.0000000001".into()), Some(n38.clone())]
    );
    assert_eq!(
        decimals(typed(&b, "n76", DataType::Decimal256(76, 20))),
        [Some(format!("-{n76}")), None, Some(format!("0.{}1", "0".repeat(19))), Some(n76.clone())]
    );
    let f4 = prim::<Float32Type>(typed(&b, "f4", DataType::Float32));
    assert!(f4[0].unwrap().is_nan() && f4[1].is_none() && f4[2] == Some(3.5));
    assert!(f4[3].unwrap() == 0.0 && f4[3].unwrap().is_sign_negative(), "-0 keeps its sign");
    let f8 = prim::<Float64Type>(typed(&b, "f8", DataType::Float64));
    assert!(f8[0] == Some(f64::NEG_INFINITY) && f8[1].is_none() && f8[2].unwrap().is_nan() && f8[3] == Some(f64::MAX));
    let bools: Vec<Option<bool>> = typed(&b, "b", DataType::Boolean).as_boolean().iter().collect();
    assert_eq!(bools, [Some(false), None, None, Some(true)]);
    assert_eq!(
        strings(typed(&b, "t", DataType::Utf8)),
        [Some(TEXT.into()), None, Some(String::new()), Some("plain".into())],
        "'' is not NULL"
    );
    let bigs = strings(typed(&b, "big", DataType::Utf8));
    assert!(bigs[2].as_deref() == Some(big.as_str()), "the 5 MB text arrives intact");
    assert!(bigs[0].is_none() && bigs[3].is_none());
    let bins: Vec<Option<&[u8]>> = typed(&b, "bin", DataType::Binary).as_binary::<i32>().iter().collect();
    assert_eq!(bins, [Some(&[0u8, 0xff, 0x10][..]), None, Some(&[][..]), None]);
    assert_eq!(prim::<Date32Type>(typed(&b, "d", DataType::Date32)), [Some(days(1900, 1, 1)), None, Some(-1), Some(days(2100, 12, 31))]);
    assert_eq!(
        prim::<Time64MicrosecondType>(typed(&b, "tm", DataType::Time64(TimeUnit::Microsecond))),
        [Some(0), None, Some(43_200_000_000), Some(86_399_999_999)]
    );
    assert_eq!(
        prim::<TimestampMicrosecondType>(typed(&b, "ts", DataType::Timestamp(TimeUnit::Microsecond, None))),
        [Some(micros("1900-01-01 00:00:00.000001")), None, Some(-1), Some(micros("2100-06-15 12:34:56.789012"))]
    );
    assert_eq!(
        prim::<TimestampMicrosecondType>(typed(&b, "tz", utc())),
        [Some(micros("1950-06-15 06:30:00")), None, Some(-1_000_000), Some(micros("2100-01-01 08:00:00"))],
        "instants in UTC, whatever offset they were written with"
    );
    let u = typed(&b, "u", DataType::FixedSizeBinary(16)).as_fixed_size_binary();
    assert_eq!((u.value(0), u.is_null(1), u.value(2), u.value(3)), (&UUID_BYTES[..], true, &[0u8; 16][..], &[0xffu8; 16][..]));
    assert_eq!(ext(&b, "u").as_deref(), Some("arrow.uuid"));
    let j = strings(typed(&b, "j", DataType::Utf8));
    assert_eq!(
        j,
        [Some("{\"b\": [1, 2.5, null], \"a\": \"x\"}".into()), None, Some("[]".into()), Some("{}".into())],
        "json text as written"
    );
    let jb: Vec<Option<serde_json::Value>> =
        strings(typed(&b, "jb", DataType::Utf8)).into_iter().map(|v| v.map(|v| serde_json::from_str(&v).unwrap())).collect();
    assert_eq!(
        jb,
        [Some(serde_json::json!({"a": [true], "b": 1})), None, Some(serde_json::Value::Null), Some(serde_json::json!({"k": "ü"}))],
        "jsonb without its version byte"
    );
    assert_eq!((ext(&b, "j").as_deref(), ext(&b, "jb").as_deref()), (Some("arrow.json"), Some("arrow.json")));
    assert_eq!(strings(typed(&b, "e", DataType::Utf8)), [Some("sad".into()), None, Some("ok".into()), Some("happy".into())]);
    let ai = typed(&b, "ai", list(DataType::Int32)).as_list::<i32>();
    let ints = |i: usize| prim::<Int32Type>(ai.value(i).as_ref());
    assert_eq!(
        (ints(0), ai.is_null(1), ints(2), ints(3)),
        (vec![Some(1), None, Some(3)], true, vec![], vec![Some(i32::MAX), Some(i32::MIN)])
    );
    let at = typed(&b, "at", list(DataType::Utf8)).as_list::<i32>();
    let texts = |i: usize| strings(at.value(i).as_ref());
    assert_eq!(
        (texts(0), at.is_null(1), texts(2), texts(3)),
        (vec![Some("a".into()), None, Some("ü".into())], true, vec![], vec![Some("日本".into()), Some(String::new())])
    );

    // Unbounded NUMERIC declared decimal(10,2): what fits is exact, the rest is quarantined
    // (never rounded to 1.00 or 1.01, never truncated), NaN has no decimal image.
    let o = table(&dest, "overflow");
    assert_eq!(prim::<Int32Type>(o.column_by_name("id").unwrap()), [Some(1), Some(4), Some(5), Some(8)]);
    assert_eq!(
        decimals(typed(&o, "nu", DataType::Decimal128(10, 2))),
        [Some("12.34".into()), Some("-99999999.99".into()), Some("0.10".into()), Some("0.00".into())]
    );
    let q = quarantined(&dest, "overflow");
    let f = "pg:public.overflow".to_owned();
    let nu = Some("nu".to_owned());
    assert_eq!(
        q,
        [
            (f.clone(), 2, nu.clone(), "decimal_out_of_range".into()),
            (f.clone(), 3, nu.clone(), "decimal_out_of_range".into()),
            (f.clone(), 6, nu.clone(), "unrepresentable_value".into()),
            (f.clone(), 7, nu.clone(), "decimal_out_of_range".into()),
        ],
        "row numbers in key order"
    );
}

#[test]
fn mariadb_types_round_trip_exactly() {
    let Some(db) = Legacy::mariadb("types") else { return };
    db.exec(
        "CREATE TABLE types (
           id BIGINT PRIMARY KEY, i8 TINYINT, u8 TINYINT UNSIGNED, i16 SMALLINT, u16 SMALLINT UNSIGNED,
           i24 MEDIUMINT, u24 MEDIUMINT UNSIGNED, i32 INT, u32 INT UNSIGNED, i64 BIGINT, u64 BIGINT UNSIGNED,
           d65 DECIMAL(65,30), f4 FLOAT, f8 DOUBLE, b BOOLEAN, t TEXT, v VARCHAR(100) COLLATE utf8mb4_bin, big LONGTEXT,
           bl BLOB, vb VARBINARY(16), d DATE, tm TIME(6), dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, j JSON,
           e ENUM('sad', 'ok', 'happy')) CHARACTER SET utf8mb4;
         CREATE TABLE ukeys (k BIGINT UNSIGNED PRIMARY KEY, n INT);
         INSERT INTO ukeys VALUES (18446744073709551615, 4), (0, 1), (9223372036854775808, 3), (9223372036854775807, 2);",
    );
    let big = big_text();
    let d65 = format!("{}.{}", nines(35), nines(30));
    db.block_on(async {
        let mut c = db.my().await;
        // A non-UTC session: TIMESTAMP values are instants, read back in UTC.
        sqlx::raw_sql("SET time_zone = '+05:30'").execute(&mut c).await.unwrap();
        sqlx::query(
            "INSERT INTO types VALUES
             (?, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, ?, 0, ?, -1.5, -1e300, 0, ?, 'abc', NULL, x'00ff10', x'0102',
              '1000-01-01', '00:00:00', '1000-01-01 00:00:00.000001', '1970-01-01 05:30:01', '{\"a\": [1, 2.5, null]}', 'sad'),
             (-1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
              NULL, NULL, NULL, NULL, NULL, NULL),
             (0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0.000000000000000000000000000001, 3.5, 0.1, 1, '', '', ?, x'', x'',
              '1969-12-31', '12:00:00', '1969-12-31 23:59:59.999999', '2030-06-15 12:00:00', '[]', 'ok'),
             (?, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, ?, 18446744073709551615, ?, 3.5,
              1.7976931348623157e308, 1, 'plain', 'ü', NULL, NULL, NULL,
              '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999', '2038-01-19 08:44:07', '{}', 'happy')",
        )
        .bind(MIN)
        .bind(MIN)
        .bind(format!("-{d65}"))
        .bind(TEXT)
        .bind(&big)
        .bind(MAX)
        .bind(MAX)
        .bind(&d65)
        .execute(&mut c)
        .await
        .unwrap();
    });

    let tmp = tempfile::tempdir().unwrap();
    let types = mapping(
        "types",
        "my",
        "source_table = \"types\"\nkey = [\"id\"]\nchunk_rows = 1",
        &[
            ("id", "int64", ""),
            ("i8", "int8", ""),
            ("u8", "uint8", ""),
            ("i16", "int16", ""),
            ("u16", "uint16", ""),
            ("i24", "int32", ""),
            ("u24", "uint32", ""),
            ("i32", "int32", ""),
            ("u32", "uint32", ""),
            ("i64", "int64", ""),
            ("u64", "uint64", ""),
            ("d65", "decimal(65,30)", ""),
            ("f4", "float32", ""),
            ("f8", "float64", ""),
            ("b", "bool", ""),
            ("t", "utf8", "null = []"),
            ("v", "utf8", "null = []"),
            ("big", "utf8", "null = []"),
            ("bl", "binary", ""),
            ("vb", "binary", ""),
            ("d", "date32", ""),
            ("tm", "time", ""),
            ("dt", "timestamp", ""),
            ("ts", "timestamptz", ""),
            ("j", "json", ""),
            ("e", "utf8", ""),
        ],
    );
    let ukeys =
        mapping("ukeys", "my", "source_table = \"ukeys\"\nkey = [\"k\"]\nchunk_rows = 1", &[("k", "uint64", ""), ("n", "int32", "")]);
    let plan = db_plan(tmp.path(), "max_quarantine_ratio = 1.0", &db.source("my", ""), &[("types", types), ("ukeys", ukeys)]);
    let dest = tmp.path().join("out");
    run_db(&plan, &dest, &[]).expect(0);
    run(ehrlift().arg("verify").arg(url(&dest))).expect(0);

    let b = table(&dest, "types");
    assert_eq!(b.num_rows(), 4);
    assert_eq!(prim::<Int64Type>(typed(&b, "id", DataType::Int64)), [Some(MIN), Some(-1), Some(0), Some(MAX)], "key order");
    assert_eq!(prim::<Int8Type>(typed(&b, "i8", DataType::Int8)), [Some(i8::MIN), None, Some(0), Some(i8::MAX)]);
    assert_eq!(prim::<UInt8Type>(typed(&b, "u8", DataType::UInt8)), [Some(0), None, Some(1), Some(u8::MAX)]);
    assert_eq!(prim::<Int16Type>(typed(&b, "i16", DataType::Int16)), [Some(i16::MIN), None, Some(0), Some(i16::MAX)]);
    assert_eq!(prim::<UInt16Type>(typed(&b, "u16", DataType::UInt16)), [Some(0), None, Some(1), Some(u16::MAX)]);
    assert_eq!(prim::<Int32Type>(typed(&b, "i24", DataType::Int32)), [Some(-8_388_608), None, Some(0), Some(8_388_607)]);
    assert_eq!(prim::<UInt32Type>(typed(&b, "u24", DataType::UInt32)), [Some(0), None, Some(1), Some(16_777_215)]);
    assert_eq!(prim::<Int32Type>(typed(&b, "i32", DataType::Int32)), [Some(i32::MIN), None, Some(0), Some(i32::MAX)]);
    assert_eq!(prim::<UInt32Type>(typed(&b, "u32", DataType::UInt32)), [Some(0), None, Some(1), Some(u32::MAX)]);
    assert_eq!(prim::<Int64Type>(typed(&b, "i64", DataType::Int64)), [Some(MIN), None, Some(0), Some(MAX)]);
    assert_eq!(prim::<UInt64Type>(typed(&b, "u64", DataType::UInt64)), [Some(0), None, Some(1), Some(u64::MAX)]);
    assert_eq!(
        decimals(typed(&b, "d65", DataType::Decimal256(65, 30))),
        [Some(format!("-{d65}")), None, Some(format!("0.{}1", "0".repeat(29))), Some(d65.clone())]
    );
    assert_eq!(prim::<Float32Type>(typed(&b, "f4", DataType::Float32)), [Some(-1.5), None, Some(3.5), Some(3.5)]);
    assert_eq!(prim::<Float64Type>(typed(&b, "f8", DataType::Float64)), [Some(-1e300), None, Some(0.1), Some(f64::MAX)]);
    let bools: Vec<Option<bool>> = typed(&b, "b", DataType::Boolean).as_boolean().iter().collect();
    assert_eq!(bools, [Some(false), None, Some(true), Some(true)]);
    assert_eq!(
        strings(typed(&b, "t", DataType::Utf8)),
        [Some(TEXT.into()), None, Some(String::new()), Some("plain".into())],
        "'' is not NULL"
    );
    assert_eq!(
        strings(typed(&b, "v", DataType::Utf8)),
        [Some("abc".into()), None, Some(String::new()), Some("ü".into())],
        "binary collation"
    );
    let bigs = strings(typed(&b, "big", DataType::Utf8));
    assert!(bigs[2].as_deref() == Some(big.as_str()), "the 5 MB text arrives intact");
    let bl: Vec<Option<&[u8]>> = typed(&b, "bl", DataType::Binary).as_binary::<i32>().iter().collect();
    assert_eq!(bl, [Some(&[0u8, 0xff, 0x10][..]), None, Some(&[][..]), None]);
    let vb: Vec<Option<&[u8]>> = typed(&b, "vb", DataType::Binary).as_binary::<i32>().iter().collect();
    assert_eq!(vb, [Some(&[1u8, 2][..]), None, Some(&[][..]), None]);
    assert_eq!(prim::<Date32Type>(typed(&b, "d", DataType::Date32)), [Some(days(1000, 1, 1)), None, Some(-1), Some(days(9999, 12, 31))]);
    assert_eq!(
        prim::<Time64MicrosecondType>(typed(&b, "tm", DataType::Time64(TimeUnit::Microsecond))),
        [Some(0), None, Some(43_200_000_000), Some(86_399_999_999)]
    );
    assert_eq!(
        prim::<TimestampMicrosecondType>(typed(&b, "dt", DataType::Timestamp(TimeUnit::Microsecond, None))),
        [Some(micros("1000-01-01 00:00:00.000001")), None, Some(-1), Some(micros("9999-12-31 23:59:59.999999"))]
    );
    assert_eq!(
        prim::<TimestampMicrosecondType>(typed(&b, "ts", utc())),
        [Some(1_000_000), None, Some(micros("2030-06-15 06:30:00")), Some(micros("2038-01-19 03:14:07"))],
        "TIMESTAMP written in a +05:30 session lands as the UTC instant"
    );
    assert_eq!(
        strings(typed(&b, "j", DataType::Utf8)),
        [Some("{\"a\": [1, 2.5, null]}".into()), None, Some("[]".into()), Some("{}".into())]
    );
    assert_eq!(ext(&b, "j").as_deref(), Some("arrow.json"));
    assert_eq!(strings(typed(&b, "e", DataType::Utf8)), [Some("sad".into()), None, Some("ok".into()), Some("happy".into())]);

    // An unsigned 64-bit keyset across the i64 boundary, one row per chunk.
    let u = table(&dest, "ukeys");
    assert_eq!(prim::<UInt64Type>(typed(&u, "k", DataType::UInt64)), [Some(0), Some(i64::MAX as u64), Some(1 << 63), Some(u64::MAX)]);
    assert_eq!(prim::<Int32Type>(u.column_by_name("n").unwrap()), [Some(1), Some(2), Some(3), Some(4)]);
}

#[test]
fn mariadb_zero_dates_are_null_or_quarantined_as_the_source_says() {
    let Some(db) = Legacy::mariadb("zero_dates") else { return };
    db.exec(
        "SET SESSION sql_mode = '';
         CREATE TABLE zeros (id INT PRIMARY KEY, d DATE, dt DATETIME);
         INSERT INTO zeros VALUES (1, '2020-01-02', '2020-01-02 03:04:05'), (2, '0000-00-00', '2020-01-02 03:04:05'),
           (3, '2020-01-02', '0000-00-00 00:00:00'), (4, '2020-00-15', NULL), (5, NULL, NULL), (6, '1999-12-31', '1999-12-31 23:59:59');",
    );
    let tmp = tempfile::tempdir().unwrap();
    let cols = [("id", "int32", ""), ("d", "date32", ""), ("dt", "timestamp", "")];
    let head = "source_table = \"zeros\"\nkey = [\"id\"]";
    let plan = db_plan(
        tmp.path(),
        "max_quarantine_ratio = 1.0",
        &format!("{}\n{}", db.source("my", ""), db.source("my_null", "zero_dates = \"null\"")),
        &[("quarantined", mapping("quarantined", "my", head, &cols)), ("nulled", mapping("nulled", "my_null", head, &cols))],
    );
    let dest = tmp.path().join("out");
    run_db(&plan, &dest, &[]).expect(0);

    let n = table(&dest, "nulled");
    assert_eq!(prim::<Int32Type>(n.column_by_name("id").unwrap()), [Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)]);
    let d = days(2020, 1, 2);
    assert_eq!(prim::<Date32Type>(n.column_by_name("d").unwrap()), [Some(d), None, Some(d), None, None, Some(days(1999, 12, 31))]);
    let t = micros("2020-01-02 03:04:05");
    assert_eq!(
        prim::<TimestampMicrosecondType>(n.column_by_name("dt").unwrap()),
        [Some(t), Some(t), None, None, None, Some(micros("1999-12-31 23:59:59"))]
    );
    assert!(quarantined(&dest, "nulled").is_empty());

    let q = table(&dest, "quarantined");
    assert_eq!(prim::<Int32Type>(q.column_by_name("id").unwrap()), [Some(1), Some(5), Some(6)]);
    let f = "my:zeros".to_owned();
    assert_eq!(
        quarantined(&dest, "quarantined"),
        [
            (f.clone(), 2, Some("d".into()), "zero_date".into()),
            (f.clone(), 3, Some("dt".into()), "zero_date".into()),
            (f.clone(), 4, Some("d".into()), "zero_date".into()),
        ]
    );
}

#[test]
fn sqlite_types_round_trip_exactly() {
    let db = Legacy::sqlite("types");
    db.exec(
        "CREATE TABLE types (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, big TEXT, bl BLOB, d TEXT, tm TEXT, ts TEXT,
           tz TEXT, u TEXT, j TEXT, b INTEGER, n TEXT);
         CREATE TABLE bad (id INTEGER PRIMARY KEY, i INTEGER, n TEXT, d TEXT);
         INSERT INTO bad VALUES (1, 7, '1.50', '2020-02-29'), (2, 'seven', '1.5', '2020-02-29'), (3, 70000, '1.5', '2020-02-29'),
           (4, 7, '1.005', '2020-02-29'), (5, 7, '1.5', '2021-02-29'), (6, 7.5, '1.5', '2020-02-29'), (7, -32768, '-0.5', '2020-02-29');",
    );
    let big = big_text();
    let n76 = format!("{}.{}", nines(56), nines(20));
    db.block_on(async {
        let mut c = db.lite().await;
        sqlx::query(
            "INSERT INTO types VALUES
             (?, -32768, -1e308, ?, NULL, x'00ff10', '1900-01-01', '00:00:00', '1900-01-01 00:00:00', '1950-06-15 12:00:00+05:30', ?,
              '{\"a\": [1, 2.5, null]}', 0, ?),
             (-1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
             (0, 0, 0.1, '', ?, x'', '1969-12-31', '23:59:59.999999', '1969-12-31 23:59:59', '1970-01-01 00:00:00-00:00',
              '00000000-0000-0000-0000-000000000000', '[]', 1, '0.00000000000000000001'),
             (?, 32767, 1.7976931348623157e308, 'plain', NULL, NULL, '2100-12-31', '12:00:00', '2100-06-15 12:34:56',
              '2100-01-01 00:00:00-08:00', 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF', '{}', 1, ?)",
        )
        .bind(MIN)
        .bind(TEXT)
        .bind(UUID)
        .bind(format!("-{n76}"))
        .bind(&big)
        .bind(MAX)
        .bind(&n76)
        .execute(&mut c)
        .await
        .unwrap();
    });

    let tmp = tempfile::tempdir().unwrap();
    let types = mapping(
        "types",
        "lite",
        "source_table = \"types\"\nkey = [\"id\"]\nchunk_rows = 1",
        &[
            ("id", "int64", ""),
            ("i", "int16", ""),
            ("r", "float64", ""),
            ("t", "utf8", "null = []"),
            ("big", "utf8", "null = []"),
            ("bl", "binary", ""),
            ("d", "date32", ""),
            ("tm", "time", ""),
            ("ts", "timestamp", ""),
            ("tz", "timestamptz", "format = \"%Y-%m-%d %H:%M:%S%:z\""),
            ("u", "uuid", ""),
            ("j", "json", ""),
            ("b", "bool", ""),
            ("n", "decimal(76,20)", ""),
        ],
    );
    let bad = mapping(
        "bad",
        "lite",
        "source_table = \"bad\"\nkey = [\"id\"]\nchunk_rows = 2",
        &[("id", "int64", ""), ("i", "int16", ""), ("n", "decimal(10,2)", ""), ("d", "date32", "")],
    );
    let plan = db_plan(tmp.path(), "max_quarantine_ratio = 1.0", &db.source("lite", ""), &[("types", types), ("bad", bad)]);
    let dest = tmp.path().join("out");
    run_db(&plan, &dest, &[]).expect(0);
    run(ehrlift().arg("verify").arg(url(&dest))).expect(0);

    let b = table(&dest, "types");
    assert_eq!(prim::<Int64Type>(typed(&b, "id", DataType::Int64)), [Some(MIN), Some(-1), Some(0), Some(MAX)], "key order");
    assert_eq!(prim::<Int16Type>(typed(&b, "i", DataType::Int16)), [Some(i16::MIN), None, Some(0), Some(i16::MAX)]);
    assert_eq!(prim::<Float64Type>(typed(&b, "r", DataType::Float64)), [Some(-1e308), None, Some(0.1), Some(f64::MAX)]);
    assert_eq!(
        strings(typed(&b, "t", DataType::Utf8)),
        [Some(TEXT.into()), None, Some(String::new()), Some("plain".into())],
        "'' is not NULL"
    );
    assert!(strings(typed(&b, "big", DataType::Utf8))[2].as_deref() == Some(big.as_str()), "the 5 MB text arrives intact");
    let bl: Vec<Option<&[u8]>> = typed(&b, "bl", DataType::Binary).as_binary::<i32>().iter().collect();
    assert_eq!(bl, [Some(&[0u8, 0xff, 0x10][..]), None, Some(&[][..]), None]);
    assert_eq!(prim::<Date32Type>(typed(&b, "d", DataType::Date32)), [Some(days(1900, 1, 1)), None, Some(-1), Some(days(2100, 12, 31))]);
    assert_eq!(
        prim::<Time64MicrosecondType>(typed(&b, "tm", DataType::Time64(TimeUnit::Microsecond))),
        [Some(0), None, Some(86_399_999_999), Some(43_200_000_000)]
    );
    assert_eq!(
        prim::<TimestampMicrosecondType>(typed(&b, "ts", DataType::Timestamp(TimeUnit::Microsecond, None))),
        [Some(micros("1900-01-01 00:00:00")), None, Some(-1_000_000), Some(micros("2100-06-15 12:34:56"))]
    );
    assert_eq!(
        prim::<TimestampMicrosecondType>(typed(&b, "tz", utc())),
        [Some(micros("1950-06-15 06:30:00")), None, Some(0), Some(micros("2100-01-01 08:00:00"))]
    );
    let u = typed(&b, "u", DataType::FixedSizeBinary(16)).as_fixed_size_binary();
    assert_eq!((u.value(0), u.is_null(1), u.value(2), u.value(3)), (&UUID_BYTES[..], true, &[0u8; 16][..], &[0xffu8; 16][..]));
    assert_eq!(ext(&b, "u").as_deref(), Some("arrow.uuid"));
    assert_eq!(
        strings(typed(&b, "j", DataType::Utf8)),
        [Some("{\"a\": [1, 2.5, null]}".into()), None, Some("[]".into()), Some("{}".into())]
    );
    let bools: Vec<Option<bool>> = typed(&b, "b", DataType::Boolean).as_boolean().iter().collect();
    assert_eq!(bools, [Some(false), None, Some(true), Some(true)]);
    assert_eq!(
        decimals(typed(&b, "n", DataType::Decimal256(76, 20))),
        [Some(format!("-{n76}")), None, Some(format!("0.{}1", "0".repeat(19))), Some(n76.clone())]
    );

    // SQLite types values, not columns: text in an INTEGER column, a REAL where an integer
    // is declared, a narrowing that does not fit, a decimal that would round, an invalid date.
    let good = table(&dest, "bad");
    assert_eq!(prim::<Int64Type>(good.column_by_name("id").unwrap()), [Some(1), Some(7)]);
    assert_eq!(decimals(good.column_by_name("n").unwrap()), [Some("1.50".into()), Some("-0.50".into())]);
    let f = "lite:bad".to_owned();
    let q = quarantined(&dest, "bad");
    assert_eq!(
        q,
        [
            (f.clone(), 2, Some("i".into()), "invalid_integer".into()),
            (f.clone(), 3, Some("i".into()), "value_out_of_range".into()),
            (f.clone(), 4, Some("n".into()), "decimal_out_of_range".into()),
            (f.clone(), 5, Some("d".into()), "invalid_date".into()),
            (f.clone(), 6, Some("i".into()), "invalid_integer".into()),
        ]
    );
}

/// One table per key type, one row per keyset chunk: each next chunk starts after a cursor
/// of that type (a PostgreSQL literal, a MySQL or SQLite parameter). `v` numbers the rows in
/// key order, so the output must be exactly 1..=n.
/// A table of [`keyset_pages`]: name, `key = …` value, and its key columns with their types.
type KeyTable<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

fn keyset_pages(db: &Legacy, setup: &str, tables: &[KeyTable]) {
    db.exec(setup);
    let tmp = tempfile::tempdir().unwrap();
    let maps: Vec<(&str, String)> = tables
        .iter()
        .map(|(name, key, cols)| {
            let mut all: Vec<(&str, &str, &str)> = cols.iter().map(|(c, t)| (*c, *t, "")).collect();
            all.push(("v", "int32", ""));
            (*name, mapping(name, "src", &format!("source_table = \"{name}\"\nkey = {key}\nchunk_rows = 1"), &all))
        })
        .collect();
    let plan = db_plan(tmp.path(), "", &db.source("src", ""), &maps);
    let dest = tmp.path().join("out");
    run_db(&plan, &dest, &[]).expect(0);
    for (name, ..) in tables {
        let v = prim::<Int32Type>(table(&dest, name).column_by_name("v").unwrap());
        let want: Vec<Option<i32>> = (1..=v.len() as i32).map(Some).collect();
        assert!(v.len() >= 4 && v == want, "{}: {name}: rows in key order {v:?}", db.label());
    }
}

#[test]
fn keyset_paging_resumes_after_every_key_type() {
    if let Some(db) = Legacy::postgres("keys") {
        keyset_pages(
            &db,
            "CREATE TABLE k_date (k date PRIMARY KEY, v int);
             INSERT INTO k_date VALUES ('1900-01-01', 1), ('1969-12-31', 2), ('1970-01-01', 3), ('2100-12-31', 5), ('2038-01-20', 4);
             CREATE TABLE k_ts (k timestamp PRIMARY KEY, v int);
             INSERT INTO k_ts VALUES ('2020-01-01 00:00:00.000002', 3), ('1950-01-01 00:00:00', 1), ('2020-01-01 00:00:00.000001', 2), ('2200-01-01', 4);
             CREATE TABLE k_tz (k timestamptz PRIMARY KEY, v int);
             INSERT INTO k_tz VALUES ('2020-01-01 05:30:00.000001+05:30', 2), ('2020-01-01 00:00:00.000002+00', 3), ('1950-06-15 12:00:00-08', 1), ('2100-01-01 00:00:00+00', 4);
             CREATE TABLE k_num (k numeric PRIMARY KEY, v int);
             INSERT INTO k_num VALUES (12345678901234567892, 4), (12345678901234567891, 3), (-1.5, 1), (0.00000000000000000001, 2), (1e25, 5);
             CREATE TABLE k_uuid (k uuid PRIMARY KEY, v int);
             INSERT INTO k_uuid VALUES ('00000000-0000-0000-0000-000000000001', 1), ('ffffffff-0000-0000-0000-000000000000', 4), ('7fffffff-ffff-ffff-ffff-ffffffffffff', 3), ('00000000-0000-0000-0000-000000000002', 2);
             CREATE TABLE k_text (k text COLLATE \"C\" PRIMARY KEY, v int);
             INSERT INTO k_text VALUES ('a''b', 2), ('A', 1), ('é', 4), ('b', 3), ('日本', 5);
             CREATE TABLE k_bytes (k bytea PRIMARY KEY, v int);
             INSERT INTO k_bytes VALUES ('\\x00', 1), ('\\x0001', 2), ('\\x27', 3), ('\\xff', 4);
             CREATE TABLE k_time (k time PRIMARY KEY, v int);
             INSERT INTO k_time VALUES ('00:00:00', 1), ('00:00:00.000001', 2), ('12:00:00', 3), ('23:59:59.999999', 4);
             CREATE TABLE k_pair (a int, b text COLLATE \"C\", v int, PRIMARY KEY (a, b));
             INSERT INTO k_pair VALUES (1, 'b', 2), (1, 'a', 1), (2, 'a', 3), (2, 'c', 4), (-5, 'z', 0);
             UPDATE k_pair SET v = v + 1;",
            &[
                ("k_date", "[\"k\"]", &[("k", "date32")]),
                ("k_ts", "[\"k\"]", &[("k", "timestamp")]),
                ("k_tz", "[\"k\"]", &[("k", "timestamptz")]),
                ("k_num", "[\"k\"]", &[("k", "decimal(76,20)")]),
                ("k_uuid", "[\"k\"]", &[("k", "uuid")]),
                ("k_text", "[\"k\"]", &[("k", "utf8")]),
                ("k_bytes", "[\"k\"]", &[("k", "binary")]),
                ("k_time", "[\"k\"]", &[("k", "time")]),
                ("k_pair", "[\"a\", \"b\"]", &[("a", "int32"), ("b", "utf8")]),
            ],
        );
    }
    if let Some(db) = Legacy::mariadb("keys") {
        keyset_pages(
            &db,
            "CREATE TABLE k_date (k DATE PRIMARY KEY, v INT);
             INSERT INTO k_date VALUES ('1000-01-01', 1), ('1969-12-31', 2), ('1970-01-01', 3), ('9999-12-31', 5), ('2038-01-20', 4);
             CREATE TABLE k_dt (k DATETIME(6) PRIMARY KEY, v INT);
             INSERT INTO k_dt VALUES ('2020-01-01 00:00:00.000002', 3), ('1950-01-01 00:00:00', 1), ('2020-01-01 00:00:00.000001', 2), ('9999-01-01', 4);
             CREATE TABLE k_ts (k TIMESTAMP(6) PRIMARY KEY, v INT);
             INSERT INTO k_ts VALUES ('2020-01-01 00:00:00.000002', 3), ('1970-01-02 00:00:00', 1), ('2020-01-01 00:00:00.000001', 2), ('2038-01-01', 4);
             CREATE TABLE k_num (k DECIMAL(30,0) PRIMARY KEY, v INT);
             INSERT INTO k_num VALUES (12345678901234567892, 4), (12345678901234567891, 3), (-1, 1), (0, 2), (100000000000000000000000000000 - 1, 5);
             CREATE TABLE k_text (k VARCHAR(10) COLLATE utf8mb4_bin PRIMARY KEY, v INT);
             INSERT INTO k_text VALUES ('a''b', 2), ('A', 1), ('é', 4), ('b', 3), ('日本', 5);
             CREATE TABLE k_bytes (k VARBINARY(4) PRIMARY KEY, v INT);
             INSERT INTO k_bytes VALUES (x'00', 1), (x'0001', 2), (x'27', 3), (x'ff', 4);
             CREATE TABLE k_time (k TIME(6) PRIMARY KEY, v INT);
             INSERT INTO k_time VALUES ('00:00:00', 1), ('00:00:00.000001', 2), ('12:00:00', 3), ('23:59:59.999999', 4);
             CREATE TABLE k_pair (a INT, b VARCHAR(4), v INT, PRIMARY KEY (a, b));
             INSERT INTO k_pair VALUES (1, 'b', 3), (1, 'a', 2), (2, 'a', 4), (2, 'c', 5), (-5, 'z', 1);",
            &[
                ("k_date", "[\"k\"]", &[("k", "date32")]),
                ("k_dt", "[\"k\"]", &[("k", "timestamp")]),
                ("k_ts", "[\"k\"]", &[("k", "timestamptz")]),
                ("k_num", "[\"k\"]", &[("k", "decimal(30,0)")]),
                ("k_text", "[\"k\"]", &[("k", "utf8")]),
                ("k_bytes", "[\"k\"]", &[("k", "binary")]),
                ("k_time", "[\"k\"]", &[("k", "time")]),
                ("k_pair", "[\"a\", \"b\"]", &[("a", "int32"), ("b", "utf8")]),
            ],
        );
    }
    keyset_pages(
        &Legacy::sqlite("keys"),
        "CREATE TABLE k_text (k TEXT PRIMARY KEY, v INTEGER);
         INSERT INTO k_text VALUES ('a''b', 2), ('A', 1), ('é', 4), ('b', 3), ('日本', 5);
         CREATE TABLE k_bytes (k BLOB PRIMARY KEY, v INTEGER);
         INSERT INTO k_bytes VALUES (x'00', 1), (x'0001', 2), (x'27', 3), (x'ff', 4);
         CREATE TABLE k_pair (a INTEGER, b TEXT, v INTEGER, PRIMARY KEY (a, b));
         INSERT INTO k_pair VALUES (1, 'b', 3), (1, 'a', 2), (2, 'a', 4), (2, 'c', 5), (-5, 'z', 1);",
        &[
            ("k_text", "[\"k\"]", &[("k", "utf8")]),
            ("k_bytes", "[\"k\"]", &[("k", "binary")]),
            ("k_pair", "[\"a\", \"b\"]", &[("a", "int32"), ("b", "utf8")]),
        ],
    );
}
