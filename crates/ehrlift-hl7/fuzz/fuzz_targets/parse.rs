#![no_main]
//! Any bytes: never a panic, and no error text holds more than its fixed shape.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in ehrlift_hl7::parse(data) {
        match item {
            Ok(m) => {
                for s in m.segments() {
                    let _ = s.id();
                    for f in s.fields() {
                        for r in f.repetitions() {
                            for c in r.components() {
                                for sc in c.subcomponents() {
                                    let _ = sc.text();
                                }
                            }
                        }
                        let _ = f.text();
                    }
                }
                for p in ["MSH-1", "MSH-2", "MSH-9.1", "PID-3[1].1", "PID-5.1", "OBX[2]-5", "PID-3[2].4.2"] {
                    let _ = m.get(p);
                }
                for g in m.groups("OBX") {
                    let _ = g.get("PID-3.1");
                    let _ = g.get("OBX-5");
                }
                if let Ok(Some(ts)) = m.get("MSH-7.1") {
                    let _ = ehrlift_hl7::Timestamp::parse(&ts);
                }
                if let Ok(Some(v)) = m.get("OBX-5") {
                    let _ = ehrlift_hl7::parse_nm(&v);
                }
            }
            Err(e) => {
                assert!(e.byte_offset as usize <= data.len());
                let _ = e.to_string();
            }
        }
    }
});
