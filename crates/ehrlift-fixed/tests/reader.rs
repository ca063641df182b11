//! RecordReader: terminators, offsets, resuming, BOM, bounded memory, fixed framing.

use std::io::{BufReader, Read};

use ehrlift_fixed::{Framing, RecordInfo, RecordReader};

const LINES: Framing = Framing::Lines { max_line: 64 };

/// Every record as (info, bytes), reading through a buffer of `capacity` bytes so that
/// terminators fall across fills.
fn read_all(data: &[u8], framing: Framing, capacity: usize, start_byte: u64, start_record: u64) -> Vec<(RecordInfo, Vec<u8>)> {
    let inner = BufReader::with_capacity(capacity, &data[start_byte as usize..]);
    let mut reader = RecordReader::new(inner, framing, start_byte, start_record);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(info) = reader.next_record(&mut buf).unwrap() {
        out.push((info, buf.clone()));
    }
    out
}

fn texts(records: &[(RecordInfo, Vec<u8>)]) -> Vec<String> {
    records.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect()
}

#[test]
fn lf_crlf_a_last_line_without_terminator_and_lone_crs() {
    let data = b"ab\r\ncd\nx\ry\r\n\r\n\nlast\r";
    for capacity in [1, 2, 3, 4, 5, 8192] {
        let recs = read_all(data, LINES, capacity, 0, 0);
        assert_eq!(texts(&recs), ["ab", "cd", "x\ry", "last\r"], "capacity {capacity}");
        let numbers: Vec<_> = recs.iter().map(|(i, _)| i.number).collect();
        assert_eq!(numbers, [1, 2, 3, 6], "empty lines are skipped but counted: numbers are line numbers");
        let offsets: Vec<_> = recs.iter().map(|(i, _)| (i.byte_offset, i.end_offset, i.length)).collect();
        assert_eq!(offsets, [(0, 4, 2), (4, 7, 2), (7, 12, 3), (15, 20, 5)]);
    }
}

#[test]
fn an_empty_final_line_is_not_a_record() {
    assert_eq!(texts(&read_all(b"a\nb\n", LINES, 8192, 0, 0)), ["a", "b"]);
    assert_eq!(texts(&read_all(b"a\r\nb\r\n", LINES, 8192, 0, 0)), ["a", "b"]);
    assert!(read_all(b"", LINES, 8192, 0, 0).is_empty());
    assert!(read_all(b"\n", LINES, 8192, 0, 0).is_empty());
}

#[test]
fn resuming_at_any_end_offset_gives_the_same_rest() {
    let data = b"one\r\ntwo\n\nthree\nfour";
    let all = read_all(data, LINES, 3, 0, 0);
    for (k, (info, _)) in all.iter().enumerate() {
        let rest = read_all(data, LINES, 3, info.end_offset, info.number);
        assert_eq!(rest, all[k + 1..].to_vec(), "resuming after record {}", info.number);
    }
    let fixed = Framing::Fixed { record_length: 4 };
    let all = read_all(b"aaaabbbbccccdd", fixed, 3, 0, 0);
    for (k, (info, _)) in all.iter().enumerate() {
        assert_eq!(read_all(b"aaaabbbbccccdd", fixed, 3, info.end_offset, info.number), all[k + 1..].to_vec());
    }
}

#[test]
fn a_utf8_bom_is_skipped_at_byte_0_of_lines_only() {
    let data = b"\xEF\xBB\xBFab\ncd\n";
    let recs = read_all(data, LINES, 8192, 0, 0);
    assert_eq!(texts(&recs), ["ab", "cd"]);
    assert_eq!((recs[0].0.byte_offset, recs[0].0.end_offset), (3, 6));
    let fixed = read_all(b"\xEF\xBB\xBFa", Framing::Fixed { record_length: 4 }, 8192, 0, 0);
    assert_eq!(fixed[0].1, b"\xEF\xBB\xBFa");
    // Resumed past byte 0, the same bytes are data (the resume point is never inside a mark).
    let data = b"xx\n\xEF\xBB\xBFab\n";
    assert_eq!(read_all(data, LINES, 8192, 3, 1)[0].1, b"\xEF\xBB\xBFab");
}

#[test]
fn a_line_over_the_limit_is_reported_not_buffered() {
    let limit = 100;
    let mut data = b"short\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 10 << 20));
    data.extend(b"\r\nafter\n");
    data.extend(std::iter::repeat_n(b'y', limit));
    data.extend(b"\r\n");
    data.extend(std::iter::repeat_n(b'z', limit + 1));
    let mut reader = RecordReader::new(BufReader::with_capacity(8192, &data[..]), Framing::Lines { max_line: limit }, 0, 0);
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let mut max_capacity = 0;
    while let Some(info) = reader.next_record(&mut buf).unwrap() {
        max_capacity = max_capacity.max(buf.capacity());
        seen.push((info.number, info.length, info.too_long, buf.len()));
    }
    assert_eq!(
        seen,
        [(1, 5, false, 5), (2, 10 << 20, true, 0), (3, 5, false, 5), (4, limit as u64, false, limit), (5, limit as u64 + 1, true, 0)]
    );
    assert!(max_capacity <= 2 * 8192 + limit, "the buffer stayed bounded: {max_capacity}");
}

#[test]
fn fixed_records_and_a_short_tail() {
    let recs = read_all(b"AAAABBBBCC", Framing::Fixed { record_length: 4 }, 3, 0, 0);
    assert_eq!(texts(&recs), ["AAAA", "BBBB", "CC"]);
    let last = recs[2].0;
    assert_eq!((last.number, last.byte_offset, last.end_offset, last.length, last.too_long), (3, 8, 10, 2, false));
    // Terminator bytes are data in fixed framing.
    assert_eq!(texts(&read_all(b"a\r\nb\n", Framing::Fixed { record_length: 2 }, 8192, 0, 0)), ["a\r", "\nb", "\n"]);
}

#[test]
fn io_errors_are_returned() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let mut reader = RecordReader::new(BufReader::new(Failing), LINES, 0, 0);
    assert!(reader.next_record(&mut Vec::new()).is_err());
}
