//! Throughput of the `scrub_text` scrubber on ~60-byte clinical notes, one note per row, with
//! the row's two names as row identifiers. Run: `cargo bench -p ehrlift-deid --bench scrub`;
//! criterion reports notes per second. Targets (one core): >= 3M notes/s without any identifier,
//! >= 1M notes/s with a phone number and a date in each note.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ehrlift_deid::scrub::{Scrubber, Tag};

/// Notes per measured iteration.
const BATCH: usize = 1000;

/// Typical ~60-byte notes with doses, vitals, lab values and times, but no identifier.
const PLAIN: [&str; 8] = [
    "Pt seen in clinic today, BP 120/80, HR 72, on 5 mg lisinopril.",
    "Labs: pH 7.4, K 4.1, Na 140. Afebrile at 10:30, f/u in 2 weeks.",
    "Rx metformin 500 mg bid x 30 days, 2 refills; A1c 7.2% in 2019.",
    "No acute distress. Lungs clear bilaterally. Continue current Rx.",
    "GCS 15, O2 sat 98% on 2L NC, pain 3/10, ambulating with walker.",
    "Wound healing well, sutures removed, return if fever > 38.5 C.",
    "Discussed diet and exercise; weight down 4 lb since last visit.",
    "Denies chest pain or dyspnea. ECG sinus rhythm, rate 68, no ST.",
];

/// Notes with one phone number and one date each.
const PHONE_AND_DATE: [&str; 4] = [
    "Called pt at (617) 555-0142 re results of 03/04/2019 echo, ok.",
    "F/u visit March 12, 2019; pt reachable at 617-555-0199 evenings.",
    "Seen 2019-02-28, BP 130/85. Daughter's cell 617.555.0117 on file.",
    "Message left at +1 617 555 0100 on 4 Jan 2019 about 5 mg dose.",
];

/// Notes that mention the row's own names but contain no detector match.
const NAMED: [&str; 4] = [
    "Mr. John Smith seen today with wife Mary, doing well, no change.",
    "Smith reports improved sleep; Mary Smith present for the visit.",
    "JOHN SMITH tolerating diet. Plan discussed with Mary at bedside.",
    "Pt (Smith, John) ambulating; daughter mary assisting with meals.",
];

fn notes(base: &[&str]) -> Vec<String> {
    (0..BATCH).map(|i| base[i % base.len()].to_owned()).collect()
}

fn run(c: &mut Criterion, name: &str, notes: &[String], ids: &[(&str, Tag)], expect_hits: bool) {
    let scrubber = Scrubber::new();
    let mut out = String::with_capacity(256);
    let hits: usize = notes.iter().map(|n| scrubber.scrub_into(n, ids, &mut out)).sum();
    assert_eq!(hits > 0, expect_hits, "bench data for {name} is not what it claims to be");

    let mut group = c.benchmark_group("scrub");
    group.throughput(Throughput::Elements(notes.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut total = 0;
            for note in notes {
                out.clear();
                total += scrubber.scrub_into(black_box(note), black_box(ids), &mut out);
            }
            black_box(total)
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    // Every row carries its patient's names; in the first two groups they do not occur in the note.
    let absent = [("Robert Johnson", Tag::Name), ("Linda Garcia", Tag::Name)];
    run(c, "no_match", &notes(&PLAIN), &absent, false);
    run(c, "phone_and_date", &notes(&PHONE_AND_DATE), &absent, true);
    let present = [("John Smith", Tag::Name), ("Mary Smith", Tag::Name)];
    run(c, "row_ids", &notes(&NAMED), &present, true);
}

criterion_group!(scrub_benches, benches);
criterion_main!(scrub_benches);
