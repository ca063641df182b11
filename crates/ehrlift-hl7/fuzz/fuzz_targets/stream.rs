#![no_main]
//! Any bytes, read through the bounded-window `Reader` in small uneven chunks and resumed
//! at every item boundary: exactly the items (offsets, ordinals, errors) that `parse`
//! gives over the whole input, and never a panic.

use std::io::Read;

use libfuzzer_sys::fuzz_target;

/// A reader handing out at most `step` bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn summary(item: Result<ehrlift_hl7::Message<'_>, ehrlift_hl7::ParseError>) -> (bool, usize, u64, usize) {
    match item {
        Ok(m) => (true, m.index(), m.byte_offset(), m.raw().len()),
        Err(e) => (false, e.message_index, e.byte_offset, 0),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&step, data)) = input.split_first() else { return };
    let step = usize::from(step % 17) + 1;
    let whole: Vec<_> = ehrlift_hl7::parse(data).map(summary).collect();
    let mut r = ehrlift_hl7::Reader::new(Trickle { data, step }, 1 << 20);
    let mut got = Vec::new();
    let mut offsets = vec![r.offset()];
    while let Some(item) = r.next_item().expect("in-memory reads do not fail") {
        got.push(summary(item));
        offsets.push(r.offset());
    }
    assert_eq!(got, whole);
    // Resuming at any boundary continues with the same items.
    for (k, &at) in offsets.iter().enumerate().step_by(3) {
        let mut again = ehrlift_hl7::Reader::new(Trickle { data, step: step + 3 }, 1 << 20);
        assert!(again.skip_to(at).unwrap());
        let mut rest = Vec::new();
        while let Some(item) = again.next_item().unwrap() {
            rest.push(summary(item));
        }
        assert_eq!(rest, whole[k.min(whole.len())..]);
    }
});
