//! Tests of the scrubber: every detector, its false-positive guards, row identifiers, merging.

use super::*;
use std::sync::OnceLock;

fn all() -> &'static Scrubber {
    static S: OnceLock<Scrubber> = OnceLock::new();
    S.get_or_init(Scrubber::new)
}

fn scrub(text: &str) -> String {
    scrub_ids(text, &[])
}

fn scrub_ids(text: &str, ids: &[(&str, Tag)]) -> String {
    let mut out = String::new();
    all().scrub_into(text, ids, &mut out);
    out
}

/// Each (input, expected output) pair.
fn check(cases: &[(&str, &str)]) {
    for (input, want) in cases {
        assert_eq!(&scrub(input), want, "input: {input:?}");
    }
}

/// Inputs that must come out unchanged.
fn untouched(cases: &[&str]) {
    for input in cases {
        assert_eq!(&scrub(input), input, "detected: {:?}", all().detect(input));
    }
}

#[test]
fn labels_and_codes() {
    use Tag::*;
    let tags = [Name, Location, Date, Phone, Fax, Email, Ssn, Mrn, HealthPlan, Account, License, Vehicle, Device, Url, Ip, Id];
    let codes = tags.map(Tag::code).join(" ");
    assert_eq!(codes, "name location date phone fax email ssn mrn health_plan account license vehicle device url ip id");
    for t in tags {
        assert_eq!(t.label(), format!("[{}]", t.code().to_ascii_uppercase()));
    }
    assert_eq!([Name.label(), HealthPlan.label(), Id.label()], ["[NAME]", "[HEALTH_PLAN]", "[ID]"]);
}

#[test]
fn ssn() {
    check(&[
        ("ssn 123-45-6789.", "ssn [SSN]."),
        ("id 123-45-6789 on file", "id [SSN] on file"),
        ("123 45 6789", "[SSN]"),
        ("SSN: 123456789", "SSN: [SSN]"),
        ("SSN#123456789", "SSN#[SSN]"),
        ("social security number 123456789", "social security number [SSN]"),
        ("Social Security #: 123 45 6789", "Social Security #: [SSN]"),
        ("SSN 12345-6789", "SSN [SSN]"),
    ]);
    untouched(&["acct total 123456789", "1234-56-7890", "123-45-67890", "ssn pending"]);
}

#[test]
fn phone_and_fax() {
    check(&[
        ("call (617) 555-0100 today", "call [PHONE] today"),
        ("617-555-0100", "[PHONE]"),
        ("617.555.0100.", "[PHONE]."),
        ("+1 617 555 0100", "[PHONE]"),
        ("1-617-555-0100", "[PHONE]"),
        ("1 617 555 0100", "[PHONE]"),
        ("+16175550100", "[PHONE]"),
        ("617-555-0100 x123", "[PHONE]"),
        ("617-555-0100 ext. 4567, home", "[PHONE], home"),
        ("tel: 6175550100", "tel: [PHONE]"),
        ("Fax: (617) 555-0101", "Fax: [FAX]"),
        ("fax number is 617-555-0101", "fax number is [FAX]"),
        ("FAX 6175550101", "FAX [FAX]"),
        ("ph 617-555-0100, fax 617-555-0101", "ph [PHONE], fax [FAX]"),
        ("Call 555-1234 for scheduling. Fax: 555-1235.", "Call [PHONE] for scheduling. Fax: [FAX]."),
        ("call her at home 555.1234", "call her at home [PHONE]"),
        ("Pager: 6175550100", "Pager: [PHONE]"),
        ("téléphone 555-1234", "téléphone [PHONE]"),
        ("617-555-0100 x 714-88-1860", "[PHONE] x [SSN]"),
    ]);
    untouched(&[
        "617 555 0100 cells",
        "6175550100 units",
        "10:30",
        "1-2-3",
        "12-345-6789",
        "555-1234",
        "call in 2 days; HR 72-100",
        "range 100-1000 mg",
        "pH 7.4",
    ]);
}

#[test]
fn email_url_ip() {
    check(&[
        ("mail john.smith+x@mgh.harvard.edu now", "mail [EMAIL] now"),
        ("a@b.co.", "[EMAIL]."),
        ("see https://example.org/a?b=1.", "see [URL]."),
        ("(www.example.org/p)", "([URL])"),
        ("host 192.168.1.20 down", "host [IP] down"),
        ("0.0.0.0 and 255.255.255.255", "[IP] and [IP]"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[IP]"),
        ("from fe80::1ff:fe23:4567:890a.", "from [IP]."),
        ("2001:db8::1", "[IP]"),
        ("::ffff:192.0.2.1", "[IP]"),
    ]);
    untouched(&[
        "at 10:30 and 10:30:00",
        "256.1.1.1",
        "1.2.3",
        "pH 7.4",
        "user@localhost",
        "www.",
        "::",
        "::1",
        "Plan:: add::",
        "1:2:3:4:5:6:7",
        "http://",
    ]);
}

#[test]
fn dates() {
    check(&[
        ("on 03/04/2019.", "on [DATE]."),
        ("3/4/19", "[DATE]"),
        ("2019-03-04", "[DATE]"),
        ("2019/03/04", "[DATE]"),
        ("03-04-2019", "[DATE]"),
        ("25/12/2019", "[DATE]"),
        ("04.03.2019", "[DATE]"),
        ("March 4, 2019", "[DATE]"),
        ("4 March 2019", "[DATE]"),
        ("Mar 4 2019", "[DATE]"),
        ("Mar. 4th, 2019", "[DATE]"),
        ("4th of March, 2019", "[DATE]"),
        ("12-Mar-2019 and 04-MAR-19", "[DATE] and [DATE]"),
        ("since March 2019", "since [DATE]"),
        ("dec 2019", "[DATE]"),
        ("seen March 4 and Oct 12th", "seen [DATE] and [DATE]"),
        ("at 2019-03-04T10:30:00Z ok", "at [DATE] ok"),
        ("2019-03-04T10:30:00.123+05:30", "[DATE]"),
        ("DOB 19650304", "DOB [DATE]"),
        ("date of birth: 19991231", "date of birth: [DATE]"),
        ("09/2018", "[DATE]"),
    ]);
    untouched(&[
        "in 2019",
        "BP 120/80",
        "BP 120/80 HR 72",
        "5 mg",
        "7.4",
        "10:30",
        "13/13/2019",
        "1/2",
        "dilution 1/2048",
        "may 2 tabs",
        "dec 5 units",
        "Marc 4",
        "March",
        "4 mar",
        "99/99/99",
        "20190304",
        "review in May. 5 patients",
    ]);
}

#[test]
fn zip() {
    check(&[
        ("Boston, MA 02134", "Boston, MA [LOCATION]"),
        ("Boston MA 02134-1234.", "Boston MA [LOCATION]."),
        ("zip code: 02134", "zip code: [LOCATION]"),
        ("ZIP 02134", "ZIP [LOCATION]"),
    ]);
    untouched(&["WBC 12000", "count 02134", "MA 021345", "ma 02134"]);
}

#[test]
fn keyword_identifiers() {
    check(&[
        ("MRN: 12345678", "MRN: [MRN]"),
        ("MR# A-12345", "MR# [MRN]"),
        ("med rec no 00123", "med rec no [MRN]"),
        ("medical record number 987654.", "medical record number [MRN]."),
        ("acct 55512", "acct [ACCOUNT]"),
        ("Account #: 12-3456", "Account #: [ACCOUNT]"),
        ("member id XJ12345", "member id [HEALTH_PLAN]"),
        ("policy # 998877", "policy # [HEALTH_PLAN]"),
        ("health plan 12345A", "health plan [HEALTH_PLAN]"),
        ("DL S1234567", "DL [LICENSE]"),
        ("driver's license D123-456", "driver's license [LICENSE]"),
        ("license # 44-1234", "license # [LICENSE]"),
        ("serial # SN884422", "serial # [DEVICE]"),
        ("S/N: 12AB34", "S/N: [DEVICE]"),
        ("VIN 1HGCM82633A004352", "VIN [VEHICLE]"),
        ("car 1HGCM82633A004352 parked", "car [VEHICLE] parked"),
        ("license plate 4ABC123", "license plate [VEHICLE]"),
        ("patient id 778899", "patient id [ID]"),
        ("driver’s license D123-456", "driver’s license [LICENSE]"),
        // A rejected keyword value is searched again: the date inside still goes.
        ("patient id March 4", "patient id [DATE]"),
    ]);
    untouched(&[
        "mRNA vaccine dose 2",
        "Hgb 12 g/dL 13",
        "LDL 130",
        "taking into account 3 factors",
        "MRN pending",
        "ABCDEFGHJKLMNPRST",
        "12345678901234567",
        "serial 3 views",
        "license plate ABC",
    ]);
}

#[test]
fn clinical_values_stay() {
    untouched(&[
        "Pt seen in clinic today, BP 120/80, HR 72, on 5 mg lisinopril.",
        "pH 7.4, K 4.1, Na 140, temp 98.6 at 10:30, f/u 2 weeks",
        "Rx: metformin 500 mg bid x 30 days, 2 refills; A1c 7.2% in 2019",
        "GCS 15, O2 sat 98% on 2L NC, 1-2 tabs q4-6h prn",
    ]);
}

#[test]
fn row_identifiers() {
    let ids = [("John Smith", Tag::Name), ("Ann", Tag::Name), ("12 Main St", Tag::Location), ("A1", Tag::Mrn)];
    let cases = [
        ("john   smith came", "[NAME] came"),
        ("JOHN\tSMITH\n", "[NAME]\n"),
        ("Mr. Smith's wife", "Mr. [NAME]'s wife"),
        ("Johnson smithers", "Johnson smithers"),
        ("Ann's annual visit", "[NAME]'s annual visit"),
        ("Annual ANN", "Annual [NAME]"),
        ("lives at 12  main st.", "lives at [LOCATION]."),
        ("main st only", "main st only"),
        ("A1 and a1 and A10", "[MRN] and [MRN] and A10"),
    ];
    for (input, want) in cases {
        assert_eq!(scrub_ids(input, &ids), want, "input: {input:?}");
    }
    // Short, empty and blank needles are ignored.
    let ids = [("", Tag::Name), ("J", Tag::Name), ("   ", Tag::Name), ("Al B", Tag::Name)];
    assert_eq!(scrub_ids("J and Al B, B Al", &ids), "J and [NAME], B Al");
}

#[test]
fn row_identifiers_unicode() {
    let ids = [("José Núñez", Tag::Name), ("Ærø", Tag::Location)];
    assert_eq!(scrub_ids("JOSÉ NÚÑEZ vit à ÆRØ", &ids), "[NAME] vit à [LOCATION]");
    assert_eq!(scrub_ids("sr. núñez; josé-luis", &ids), "sr. [NAME]; [NAME]-luis");
    assert_eq!(scrub_ids("Núñezes", &ids), "Núñezes");
}

#[test]
fn overlaps_prefer_longest() {
    let ids = [("Smith", Tag::Name), ("mgh.org", Tag::Location), ("617-555-0100", Tag::Phone)];
    let mut out = String::new();
    let n = all().scrub_into("smith@mgh.org or 617-555-0100 x12, Smith", &ids, &mut out);
    assert_eq!(out, "[EMAIL] or [PHONE], [NAME]");
    assert_eq!(n, 3);
    // A row identifier longer than a detector match wins.
    let ids = [("Boston, MA 02134", Tag::Location)];
    assert_eq!(scrub_ids("in Boston, MA 02134 now", &ids), "in [LOCATION] now");
}

#[test]
fn many_overlapping_candidates() {
    let text = "John Smith 617-555-0100 ".repeat(50);
    let ids = [("John Smith", Tag::Name), ("Smith 617", Tag::Id)];
    let out = scrub_ids(&text, &ids);
    assert_eq!(out, "[NAME] [PHONE] ".repeat(50));
}

#[test]
fn selected_detectors() {
    let only_phone = Scrubber::with_detectors(&[Tag::Phone]);
    let mut out = String::new();
    let n = only_phone.scrub_into("617-555-0100 on 03/04/2019, Ann", &[("Ann", Tag::Name)], &mut out);
    assert_eq!((n, out.as_str()), (2, "[PHONE] on 03/04/2019, [NAME]"));
    let mut out = String::new();
    Scrubber::with_detectors(&[Tag::Phone]).scrub_into("fax 617-555-0101", &[], &mut out);
    assert_eq!(out, "fax [PHONE]");
    out.clear();
    Scrubber::with_detectors(&[Tag::Fax]).scrub_into("call 617-555-0100, fax 617-555-0101", &[], &mut out);
    assert_eq!(out, "call 617-555-0100, fax [FAX]");
    let none = Scrubber::with_detectors(&[]);
    assert!(none.detect("617-555-0100 john@x.org").is_empty());
    assert_eq!(Scrubber::default().detect("617-555-0100"), vec![(0..12, Tag::Phone)]);
}

#[test]
fn detect_ranges_in_order() {
    let text = "MRN 123456, seen 03/04/2019 by fax 617-555-0101";
    let found = all().detect(text);
    let tags: Vec<_> = found.iter().map(|(_, t)| *t).collect();
    assert_eq!(tags, [Tag::Mrn, Tag::Date, Tag::Fax]);
    assert_eq!(&text[found[0].0.clone()], "123456");
    assert!(found.windows(2).all(|w| w[0].0.end <= w[1].0.start));
}

#[test]
fn appends_and_counts() {
    let mut out = String::from("prefix|");
    assert_eq!(all().scrub_into("", &[("Ann", Tag::Name)], &mut out), 0);
    assert_eq!(all().scrub_into("no identifiers here", &[], &mut out), 0);
    assert_eq!(out, "prefix|no identifiers here");
}

#[test]
fn odd_input_never_panics() {
    let ids = [("é", Tag::Name), ("ǅungla", Tag::Name), ("İstanbul", Tag::Location), ("日本 東京", Tag::Location)];
    for text in [
        "",
        " ",
        "\u{0}",
        "é",
        "日本  東京 617-555-0100",
        "İSTANBUL istanbul",
        "::",
        ":::::::",
        "@@@",
        "www.",
        "\u{FEFF}617-555-0100\u{200B}",
        "1\u{0301}23-45-6789",
        "ǄUNGLA ǆungla",
    ] {
        let mut out = String::new();
        all().scrub_into(text, &ids, &mut out);
        let _ = all().detect(text);
    }
    assert_eq!(scrub_ids("日本 東京 now", &ids), "[LOCATION] now");
}

/// Tiny deterministic generator: the tests need no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

#[test]
fn huge_input() {
    let mut rng = Rng(7);
    let pieces = ["a", "1", ":", ".", "-", "/", " ", "@", "é", "x", "ff", "0", "MA ", "Mar ", "\n", "w"];
    let mut text = String::new();
    while text.len() < 1_000_000 {
        text.push_str(pieces[rng.below(pieces.len())]);
    }
    let planted = format!("{text} 123-45-6789 {text}");
    let mut out = String::new();
    all().scrub_into(&planted, &[("Ann Lee", Tag::Name)], &mut out);
    assert!(!out.contains("123-45-6789"));
    // Pathological runs for the candidate patterns stay linear.
    for unit in ["a:", "1:", "1.", "::", "A1", "1-", "w", "ab@", "1.1.1.1 ", "MRN ", "fax a ", "x1:"] {
        let text = unit.repeat(50_000);
        let _ = all().detect(&text);
    }
    let long_gap = format!("{}{}abc", "MRN ".repeat(1000), " ".repeat(200_000));
    assert!(all().detect(&long_gap).is_empty());
}

#[test]
fn planted_sentinels_never_survive() {
    let noise = [
        "pt", "seen", "BP", "120/80", "5", "mg", "7.4", "10:30", "fax", "x", "ext", "SSN", "on", "é", "日本", "(", ")", ",", ".", "-", "#",
        ":", "1", "2019", "MA", "March", "Smith", "\n", "@", "www", "tel", "ID",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let area = rng.below(900) + 100;
        let group = rng.below(90) + 10;
        let serial = rng.below(9000) + 1000;
        let ssn = format!("{area}-{group}-{serial}");
        let phone = format!("({area}) {}-{serial}", rng.below(800) + 200);
        let email = format!("user{serial}@host{group}.org");
        let mut sentinels = [ssn.as_str(), phone.as_str(), email.as_str()];
        let mut text = String::new();
        for _ in 0..rng.below(20) {
            text.push_str(noise[rng.below(noise.len())]);
            text.push(' ');
        }
        let k = rng.below(3);
        sentinels.swap(0, k);
        for s in sentinels {
            text.push_str(s);
            text.push(' ');
            for _ in 0..rng.below(6) {
                text.push_str(noise[rng.below(noise.len())]);
                text.push(' ');
            }
        }
        let mut out = String::new();
        let n = all().scrub_into(&text, &[("Smith", Tag::Name)], &mut out);
        assert!(n >= 3, "{text:?} -> {out:?}");
        for s in sentinels {
            assert!(!out.contains(s), "sentinel kept in {text:?} -> {out:?}");
        }
        assert!(!out.contains("Smith"), "row name kept in {text:?} -> {out:?}");
    }
}

#[test]
fn scrubber_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Scrubber>();
}
