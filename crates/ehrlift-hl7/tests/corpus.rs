//! The shared HL7 v2 corpus (`shared/data/hl7v2`): valid, edge and batch files parse
//! cleanly (with the few documented exceptions), malformed files fail without panics.

use std::path::{Path, PathBuf};

use ehrlift_hl7::{Message, ParseError, Reason, parse};

fn data(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/hl7v2").join(sub)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Visits everything a consumer could, like the fuzz target.
fn walk(bytes: &[u8]) -> (Vec<Message<'_>>, Vec<ParseError>) {
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    for item in parse(bytes) {
        match item {
            Ok(m) => {
                for s in m.segments() {
                    for f in s.fields() {
                        for r in f.repetitions() {
                            for c in r.components() {
                                for sc in c.subcomponents() {
                                    let _ = sc.text();
                                }
                            }
                        }
                    }
                }
                for p in ["MSH-9", "MSH-10", "PID-3[1].1", "PID-5.1", "OBX-5"] {
                    m.get(p).unwrap();
                }
                ok.push(m);
            }
            Err(e) => errs.push(e),
        }
    }
    (ok, errs)
}

/// Files that are not (wholly) HL7, with the errors they must give and why.
fn expected_errors(name: &str) -> Option<Vec<Reason>> {
    match name {
        // A HAPI fixture with C-style comment lines between messages: the leading
        // `/* ... */` block is not HL7, and one message declares only 3 encoding
        // characters (`MSH|^~}`), which the rules here reject.
        "messages_multi.txt" => Some(vec![Reason::SegmentBeforeMsh, Reason::TooFewEncodingChars]),
        // A uuencoded payload (escaped HL7 field content), not a message at all.
        "uuencoded_escaped.hl7" => Some(vec![Reason::SegmentBeforeMsh]),
        _ => None,
    }
}

#[test]
fn valid_edge_and_batch_files_parse() {
    let mut checked = 0;
    for dir in ["valid", "edge", "batch"] {
        for f in files(&data(dir)) {
            let bytes = std::fs::read(&f).unwrap();
            let (ok, errs) = walk(&bytes);
            let name = f.file_name().unwrap().to_str().unwrap();
            let reasons: Vec<Reason> = errs.iter().map(|e| e.reason.clone()).collect();
            match expected_errors(name) {
                Some(want) => assert_eq!(reasons, want, "{}", f.display()),
                None => assert!(errs.is_empty(), "{}: {errs:?}", f.display()),
            }
            if name != "uuencoded_escaped.hl7" {
                assert!(!ok.is_empty(), "{}", f.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 180, "only {checked} files");
}

#[test]
fn multi_file_keeps_every_real_message() {
    let bytes = std::fs::read(data("edge/hapi-hl7v2/messages_multi.txt")).unwrap();
    let (ok, errs) = walk(&bytes);
    let msh_lines = bytes.split(|&b| b == b'\n').filter(|l| l.starts_with(b"MSH")).count();
    assert_eq!(ok.len() + errs.len() - 1, msh_lines);
    assert_eq!(ok[0].get("MSH-9.1").unwrap().as_deref(), Some("ORU"));
    // `MSH|^~\}`: a custom subcomponent separator.
    assert_eq!(ok[1].delimiters().subcomponent, b'}');
    assert_eq!(ok[1].get("PID-5.1").unwrap().as_deref(), Some("WASHINGTON-HARPER"));
}

#[test]
fn malformed_files_error_or_parse_the_valid_part() {
    for f in files(&data("malformed")) {
        let bytes = std::fs::read(&f).unwrap();
        let (ok, errs) = walk(&bytes);
        assert!(!ok.is_empty() || !errs.is_empty(), "{}", f.display());
        for e in &errs {
            assert!(e.byte_offset as usize <= bytes.len());
        }
    }
}

#[test]
fn malformed_encoding_chars_are_rejected() {
    for (name, reason) in [
        ("hl7apy/test_parse_message_duplicate_encoding_chars_1.hl7", Reason::RepeatedEncodingChar),
        ("hl7apy/test_parse_message_duplicate_encoding_chars_2.hl7", Reason::TooManyEncodingChars),
        ("hl7apy/test_parse_message_missing_encoding_chars_1.hl7", Reason::TooFewEncodingChars),
        ("hl7apy/test_parse_message_missing_encoding_chars_zero_1.hl7", Reason::TooFewEncodingChars),
        ("hl7apy/test_parse_message_too_many_encoding_chars_1.hl7", Reason::TooManyEncodingChars),
        ("python-hl7/starts_with_pid.hl7", Reason::SegmentBeforeMsh),
        ("hl7apy/test_parse_invalid_message_1.hl7", Reason::SegmentBeforeMsh),
        ("python-hl7/sample_bad_batch.hl7", Reason::SegmentBeforeMsh),
        ("python-hl7/sample_bad_batch1.hl7", Reason::DuplicateBatchHeader),
        ("python-hl7/sample_bad_file2.hl7", Reason::DuplicateFileHeader),
    ] {
        let bytes = std::fs::read(data("malformed").join(name)).unwrap();
        let (_, errs) = walk(&bytes);
        assert_eq!(errs.first().map(|e| e.reason.clone()), Some(reason), "{name}");
    }
    let bytes = std::fs::read(data("malformed/python-hl7/starts_with_pid.hl7")).unwrap();
    let (ok, errs) = walk(&bytes);
    assert_eq!((ok.len(), errs.len()), (0, 1));
    assert_eq!(errs[0].to_string(), "message #1 at byte 0 (PID): a segment before MSH");
    // sample_bad_batch1: the message holding the second BHS is one error.
    let bytes = std::fs::read(data("malformed/python-hl7/sample_bad_batch1.hl7")).unwrap();
    let (ok, errs) = walk(&bytes);
    assert_eq!((ok.len(), errs.len()), (0, 1));
}

#[test]
fn spot_checks_against_the_files() {
    let read = |p: &str| std::fs::read(data(p)).unwrap();
    let b = read("valid/rethinkhealth-hl7v2/oru-r01-lab.hl7");
    let (ok, _) = walk(&b);
    let m = &ok[0];
    assert_eq!(m.get("MSH-9").unwrap().as_deref(), Some("ORU^R01^ORU_R01"));
    assert_eq!(m.get("MSH-9.2").unwrap().as_deref(), Some("R01"));
    assert_eq!(m.get("PID-3[1].1").unwrap().as_deref(), Some("67890"));
    assert_eq!(m.get("PID-5.1").unwrap().as_deref(), Some("SMITH"));
    assert_eq!(m.get("OBX-5").unwrap().as_deref(), Some("7.5"));
    assert_eq!(m.get("OBX[3]-3.2").unwrap().as_deref(), Some("Hemoglobin"));
    let rows: Vec<_> = m
        .groups("OBX")
        .map(|g| {
            (
                g.get("OBX-5").unwrap().unwrap().into_owned(),
                g.get("OBR-4.1").unwrap().unwrap().into_owned(),
                g.get("PID-5.2").unwrap().unwrap().into_owned(),
            )
        })
        .collect();
    assert_eq!(rows[1], ("4.8".to_owned(), "CBC".to_owned(), "JANE".to_owned()));

    let b = read("edge/rethinkhealth-hl7v2/edge-escaped-delimiters.hl7");
    let (ok, _) = walk(&b);
    assert_eq!(ok[0].get("PID-5.1").unwrap().as_deref(), Some("DOE&SMITH"));
    assert_eq!(ok[0].get("PID-5.2").unwrap().as_deref(), Some("JOHN^JANE"));
    assert_eq!(
        ok[0].get("OBX-5").unwrap().as_deref(),
        Some(r"Result contains pipe | and ampersand & and caret ^ and tilde ~ and backslash \ chars")
    );

    let b = read("edge/rethinkhealth-hl7v2/edge-custom-delimiters.hl7");
    let (ok, _) = walk(&b);
    assert_eq!(ok[0].get("MSH-9.2").unwrap().as_deref(), Some("A01"));
    assert_eq!(ok[0].get("PID-3.4").unwrap().as_deref(), Some("MRN"));
    assert_eq!(ok[0].get("PID-5.3").unwrap().as_deref(), Some("A"));

    let b = read("edge/python-hl7/nonstandard_separators.hl7");
    let (ok, _) = walk(&b);
    assert_eq!(ok[0].get("MSH-1").unwrap().as_deref(), Some("$"));
    assert_eq!(ok[0].get("MSH-2").unwrap().as_deref(), Some(r"%~\&"));
    assert_eq!(ok[0].get("PID-5.2").unwrap().as_deref(), Some("EVE"));

    // Undeclared charset holding a Windows-1252 en dash.
    let b = read("edge/python-hl7/cp1252_bytes.hl7");
    let (ok, _) = walk(&b);
    assert_eq!(ok[0].get("MSH-4").unwrap().as_deref(), Some("ELAB\u{2013}3"));

    let b = read("edge/rethinkhealth-hl7v2/edge-non-ascii.hl7");
    let (ok, _) = walk(&b);
    assert_eq!(ok[0].get("PID-5.1").unwrap().as_deref(), Some("MÜLLER"));

    // `^~\\&`, a doubled backslash from a string literal, read as `^~\&`.
    let b = read("edge/linuxforhealth-hl7v2-fhir-converter/sample_unix.hl7");
    let (ok, _) = walk(&b);
    assert_eq!(ok[0].get("PID-5.2").unwrap().as_deref(), Some("JOHN"));

    // Batch: envelopes skipped, messages kept.
    let b = read("batch/python-hl7/sample_file1.hl7");
    let (ok, errs) = walk(&b);
    assert!(errs.is_empty());
    assert!(ok.len() >= 2);
    assert_eq!(ok[0].get("MSH-9.3").unwrap().as_deref(), Some("ADT_A01"));

    // 8859/1 declared in MSH-18.
    let b = read("valid/hapi-hl7v2/cv.04_001_chem.hl7");
    let (ok, _) = walk(&b);
    assert_eq!(ok[0].charset(), ehrlift_hl7::Charset::Latin1);
}
