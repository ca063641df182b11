//! Framing, delimiters, charsets and the PHI rule, on small messages made here.

use ehrlift_hl7::{Message, ParseError, Reason, parse};

const SENTINEL: &str = "ZZSECRETPHI42";

fn all(bytes: &[u8]) -> Vec<Result<Message<'_>, ParseError>> {
    parse(bytes).collect()
}

fn oks(bytes: &[u8]) -> Vec<Message<'_>> {
    all(bytes).into_iter().map(|r| r.expect("message parses")).collect()
}

fn two_messages(sep: &str) -> String {
    format!(
        "MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5{sep}PID|1||111^^^MRN||DOE^JOHN{sep}{sep}\
         MSH|^~\\&|A|B|||20240102||ADT^A08|2|P|2.5{sep}PID|1||222^^^MRN||ROE^JANE{sep}"
    )
}

#[test]
fn cr_lf_crlf_and_mixed_endings() {
    for sep in ["\r", "\n", "\r\n"] {
        let text = two_messages(sep);
        let ms = oks(text.as_bytes());
        assert_eq!(ms.len(), 2, "{sep:?}");
        assert_eq!(ms[1].get("PID-3.1").unwrap().as_deref(), Some("222"));
        assert_eq!(ms[1].byte_offset() as usize, text.rfind("MSH").unwrap());
        assert_eq!(ms[0].segments().count(), 2);
    }
    let mixed = "MSH|^~\\&|A\r\nPID|1||9\nPV1|1|I\rOBX|1|ST|||v\r\n";
    let ms = oks(mixed.as_bytes());
    assert_eq!(ms[0].segments().count(), 4);
    assert_eq!(ms[0].get("OBX-5").unwrap().as_deref(), Some("v"));
}

#[test]
fn mllp_frames() {
    let mut bytes = Vec::new();
    for id in ["1", "2", "3"] {
        bytes.push(0x0B);
        bytes.extend_from_slice(format!("MSH|^~\\&|A|B|||20240101||ORU^R01|{id}|P|2.5\rOBX|1|NM|X||{id}.5\r").as_bytes());
        bytes.extend_from_slice(&[0x1C, 0x0D]);
    }
    let ms = oks(&bytes);
    assert_eq!(ms.len(), 3);
    assert_eq!(ms[2].get("OBX-5").unwrap().as_deref(), Some("3.5"));
    assert_eq!(ms[2].get("MSH-10").unwrap().as_deref(), Some("3"));
    assert_eq!(ms[0].byte_offset(), 1);
}

#[test]
fn bom_at_start_and_blank_lines() {
    let text = format!("\u{FEFF}\r\n\r\n{}\n\n\n", two_messages("\r\n"));
    let ms = oks(text.as_bytes());
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].byte_offset(), 7);
    assert_eq!(ms[0].get("MSH-9.2").unwrap().as_deref(), Some("A01"));
}

#[test]
fn escapes_and_custom_delimiters() {
    let msg = "MSH#!@%*#A#B#####ORU!R01#1#P#2.5\rOBX#1#FT#X##a%F%b%S%c%.br%d%X41%e%Q%f#x!y*z\r";
    let m = &oks(msg.as_bytes())[0];
    let d = m.delimiters();
    assert_eq!((d.field, d.component, d.repetition, d.escape, d.subcomponent), (b'#', b'!', b'@', b'%', b'*'));
    assert_eq!(m.get("OBX-5").unwrap().as_deref(), Some("a#b!c\ndAe%Q%f"));
    assert_eq!(m.get("OBX-6.2.2").unwrap().as_deref(), Some("z"));
    assert_eq!(m.get("MSH-9.2").unwrap().as_deref(), Some("R01"));
}

#[test]
fn repetitions_components_and_absent_values() {
    let msg = "MSH|^~\\&|A\rPID|1||111^^^MRN~222^^^SSN&X&Y||DOE^JOHN||\r";
    let m = &oks(msg.as_bytes())[0];
    assert_eq!(m.get("PID-3").unwrap().as_deref(), Some("111^^^MRN"));
    assert_eq!(m.get("PID-3[2].1").unwrap().as_deref(), Some("222"));
    assert_eq!(m.get("PID-3[2].4.2").unwrap().as_deref(), Some("X"));
    assert_eq!(m.get("PID-3[3].1").unwrap(), None);
    assert_eq!(m.get("PID-7").unwrap(), None);
    assert_eq!(m.get("PID-40").unwrap(), None);
    assert_eq!(m.get("ZZZ-1").unwrap(), None);
    assert_eq!(m.get("MSH-1").unwrap().as_deref(), Some("|"));
    assert_eq!(m.get("MSH-2").unwrap().as_deref(), Some("^~\\&"));
    assert_eq!(m.get("MSH-3").unwrap().as_deref(), Some("A"));
    assert!(m.get("PID-x").is_err());
    let pid = m.segments_with_id("PID").next().unwrap();
    assert_eq!(pid.get("PID-5.2").unwrap().as_deref(), Some("JOHN"));
    assert!(pid.get("OBX-5").is_err());
    assert_eq!(pid.field(1).unwrap().raw(), b"1");
}

#[test]
fn groups_carry_the_nearest_preceding_segments() {
    let msg = "MSH|^~\\&|A\rPID|1||P1\rOBR|1|||GLU\rOBX|1|NM|a||1\rOBX|2|NM|b||2\rOBR|2|||NA\rOBX|1|NM|c||3\r";
    let m = &oks(msg.as_bytes())[0];
    let rows: Vec<(String, String, String)> = m
        .groups("OBX")
        .map(|g| {
            let v = |p| g.get(p).unwrap().unwrap().into_owned();
            (v("OBX-5"), v("OBR-4"), v("PID-3"))
        })
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2], ("3".into(), "NA".into(), "P1".into()));
    assert_eq!(rows[1].1, "GLU");
    assert_eq!(m.get("OBX[3]-5").unwrap().as_deref(), Some("3"));
}

#[test]
fn latin1_via_msh18() {
    let mut bytes = b"MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||DE|8859/1\rPID|1||1||M".to_vec();
    bytes.extend_from_slice(b"\xfcLLER\r");
    let m = &oks(&bytes)[0];
    assert_eq!(m.get("PID-5").unwrap().as_deref(), Some("MüLLER"));
}

#[test]
fn utf8_declared_and_valid() {
    let text = "MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||DE|UNICODE UTF-8\rPID|1||1||MÜLLER\r";
    assert_eq!(oks(text.as_bytes())[0].get("PID-5").unwrap().as_deref(), Some("MÜLLER"));
}

#[test]
fn invalid_utf8_under_utf8_is_an_error_with_offset_and_next_message_survives() {
    let mut bytes = format!("MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||DE|UNICODE UTF-8\rPID|1||1||{SENTINEL}").into_bytes();
    let bad_at = bytes.len();
    bytes.extend_from_slice(b"\xff\xfe\r");
    bytes.extend_from_slice(two_messages("\r").as_bytes());
    let items = all(&bytes);
    assert_eq!(items.len(), 3);
    let e = items[0].as_ref().unwrap_err();
    assert_eq!(e.reason, Reason::InvalidUtf8);
    assert_eq!(e.byte_offset as usize, bad_at);
    assert_eq!(e.segment.as_deref(), Some("PID"));
    assert!(!e.to_string().contains(SENTINEL));
    assert!(!format!("{e:?}").contains(SENTINEL));
    assert_eq!(items[2].as_ref().unwrap().index(), 3);
}

#[test]
fn unknown_charset_is_named_only_when_registered() {
    let reg = "MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||DE|UNICODE UTF-16\r";
    let e = all(reg.as_bytes()).remove(0).unwrap_err();
    assert_eq!(e.reason, Reason::UnsupportedCharset(Some("UNICODE UTF-16".into())));
    assert!(e.to_string().contains("UNICODE UTF-16"));
    let free = format!("MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||DE|{SENTINEL}\r");
    let e = all(free.as_bytes()).remove(0).unwrap_err();
    assert_eq!(e.reason, Reason::UnsupportedCharset(None));
    assert!(!e.to_string().contains(SENTINEL));
}

#[test]
fn errors_never_show_values() {
    let cases = [
        format!("{SENTINEL}|x\rMSH|^~\\&|A\r"),
        format!("MSH|^^\\&|{SENTINEL}\r"),
        format!("MSH|^~\\|{SENTINEL}\r"),
        format!("MSH|^~\\&#$%|{SENTINEL}\r"),
        format!("MSH|^~a&|{SENTINEL}\r"),
        format!("MSHA|{SENTINEL}\r"),
        format!("BHS|^~\\&\rMSH|^~\\&|A\rBHS|^~\\&|{SENTINEL}\rPID|{SENTINEL}\r"),
        format!("PID|1||{SENTINEL}\r"),
        format!("ZZ{SENTINEL}\r"),
    ];
    for c in &cases {
        let items = all(c.as_bytes());
        assert!(items.iter().any(Result::is_err), "{c:?}");
        for e in items.iter().filter_map(|r| r.as_ref().err()) {
            assert!(!e.to_string().contains(SENTINEL), "{e}");
            assert!(!format!("{e:?}").contains(SENTINEL), "{e:?}");
        }
    }
    // Path and value errors.
    let m = format!("MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||DE|UNICODE UTF-8\rOBX|1|ST|||{SENTINEL}\\XFF\\\r");
    let msg = &oks(m.as_bytes())[0];
    let e = msg.get("OBX-5").unwrap_err();
    assert!(!e.to_string().contains(SENTINEL));
    let e = ehrlift_hl7::Timestamp::parse(SENTINEL).unwrap_err();
    assert!(!e.to_string().contains(SENTINEL));
    let e = ehrlift_hl7::parse_nm(SENTINEL).unwrap_err();
    assert!(!e.to_string().contains(SENTINEL));
}

#[test]
fn a_bad_message_never_stops_the_rest() {
    let text = format!("PID|stray\rMSH|^^^^|bad\rPID|1\r{}", two_messages("\r"));
    let items = all(text.as_bytes());
    let reasons: Vec<_> = items.iter().map(|r| r.as_ref().err().map(|e| e.reason.clone())).collect();
    assert_eq!(reasons, vec![Some(Reason::SegmentBeforeMsh), Some(Reason::RepeatedEncodingChar), None, None]);
    assert_eq!(items[0].as_ref().unwrap_err().to_string(), "message #1 at byte 0 (PID): a segment before MSH");
}

#[test]
fn batches_and_duplicate_headers() {
    let ok = format!("FHS|^~\\&\rBHS|^~\\&\r{}BTS|2\rFTS|1\r", two_messages("\r"));
    assert_eq!(oks(ok.as_bytes()).len(), 2);
    let dup = format!("BHS|^~\\&\r{}BHS|^~\\&\rPID|x\rMSH|^~\\&|A\rBTS|1\r", two_messages("\r"));
    let items = all(dup.as_bytes());
    let reasons: Vec<_> = items.iter().map(|r| r.as_ref().err().map(|e| e.reason.clone())).collect();
    assert_eq!(reasons, vec![None, Some(Reason::DuplicateBatchHeader), None]);
}
