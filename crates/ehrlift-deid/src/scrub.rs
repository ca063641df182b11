//! Free-text scrubber behind the `scrub_text` privacy rule.
//!
//! Two sources of replacements are merged into one set of non-overlapping spans:
//!
//! * pattern detectors for the US-centric identifier shapes of clinical text (SSN, phone, fax,
//!   e-mail, URL, IP, dates, ZIP codes, keyword-led record numbers), compiled once into one
//!   leftmost-first multi-pattern regex whose pattern id tells what to do with a match;
//! * the row's own identifiers from other columns (names, MRN, address...), matched
//!   case-insensitively as whole words by a hand loop: building an automaton per row for two or
//!   three needles costs more than scanning for them.
//!
//! Where two candidates overlap the longest wins, so `john.smith@example.org` is one `[EMAIL]`
//! even when "Smith" is the row's surname.
//!
//! Detectors lean towards leaving clinical values alone: a dose `5 mg`, a lab value `7.4`, a blood
//! pressure `120/80`, a time `10:30` or a bare year are never replaced. Shapes that are identifiers
//! only after a keyword (a bare 9-digit SSN, a 5-digit ZIP, a record number) need that keyword,
//! which then stays in the text. No error or panic message here ever carries input text.
//!
//! Known limits (for the docs):
//! * false positives: an abbreviated month in Title case before a number ("Dec 3 units"), a
//!   version number shaped like an IPv4 address ("1.2.3.4"), a 3-2-4 digit group that is no SSN,
//!   a state code before a 5-digit count ("OK 12345"), a common word that is also part of a
//!   row's name ("Will", "Hope");
//! * false negatives: names, places and dates that are not in the row's other columns and have no
//!   detector shape (free-text names of relatives or clinicians, city names without a ZIP, ages
//!   over 89), dates without a year written as numbers ("3/4"), 7-digit phone numbers and bare
//!   10-digit numbers without a phone or fax keyword, record numbers without a digit or with spaces
//!   inside, non-US formats (other countries' phone numbers and postcodes), identifiers split by
//!   unusual separators or spelt out in words.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::ops::Range;

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

/// Kinds of identifier a tag replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tag {
    /// A person's name.
    Name,
    /// An address, city or ZIP code.
    Location,
    /// Any date element more specific than a year.
    Date,
    /// A telephone number.
    Phone,
    /// A fax number.
    Fax,
    /// An e-mail address.
    Email,
    /// A social security number.
    Ssn,
    /// A medical record number.
    Mrn,
    /// A health plan beneficiary, member or policy number.
    HealthPlan,
    /// An account number.
    Account,
    /// A certificate or licence number.
    License,
    /// A vehicle identifier (VIN, licence plate).
    Vehicle,
    /// A device identifier or serial number.
    Device,
    /// A web address.
    Url,
    /// An IP address.
    Ip,
    /// Any other unique identifying number or code.
    Id,
}

impl Tag {
    /// The replacement text: `[NAME]`, `[LOCATION]`, `[DATE]`, `[PHONE]`, `[FAX]`, `[EMAIL]`, `[SSN]`, `[MRN]`,
    /// `[HEALTH_PLAN]`, `[ACCOUNT]`, `[LICENSE]`, `[VEHICLE]`, `[DEVICE]`, `[URL]`, `[IP]`, `[ID]`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Tag::Name => "[NAME]",
            Tag::Location => "[LOCATION]",
            Tag::Date => "[DATE]",
            Tag::Phone => "[PHONE]",
            Tag::Fax => "[FAX]",
            Tag::Email => "[EMAIL]",
            Tag::Ssn => "[SSN]",
            Tag::Mrn => "[MRN]",
            Tag::HealthPlan => "[HEALTH_PLAN]",
            Tag::Account => "[ACCOUNT]",
            Tag::License => "[LICENSE]",
            Tag::Vehicle => "[VEHICLE]",
            Tag::Device => "[DEVICE]",
            Tag::Url => "[URL]",
            Tag::Ip => "[IP]",
            Tag::Id => "[ID]",
        }
    }

    /// Lower-case name for reports: `name`, `location`, ... (`snake_case` of the variant).
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Tag::Name => "name",
            Tag::Location => "location",
            Tag::Date => "date",
            Tag::Phone => "phone",
            Tag::Fax => "fax",
            Tag::Email => "email",
            Tag::Ssn => "ssn",
            Tag::Mrn => "mrn",
            Tag::HealthPlan => "health_plan",
            Tag::Account => "account",
            Tag::License => "license",
            Tag::Vehicle => "vehicle",
            Tag::Device => "device",
            Tag::Url => "url",
            Tag::Ip => "ip",
            Tag::Id => "id",
        }
    }
}

/// What to do with a raw regex match before it becomes a replacement.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The whole match is the identifier.
    Plain,
    /// `keyword SEP (?P<v>value)`: only the value is replaced, the keyword stays. A value without
    /// an ASCII digit is rejected ("MRN pending").
    Keyword,
    /// A phone number shape; a fax number when a fax keyword comes shortly before it.
    Phone,
    /// A bare number that is an identifier only after its keyword, which is looked up backwards
    /// by hand: 9 digits after "SSN", 10 digits or `555-1234` after "phone" or "fax", 5 digits or
    /// ZIP+4 after a state code or "zip", 8 digits (YYYYMMDD) after "DOB".
    Number,
    /// A URL: trailing sentence punctuation is given back to the text.
    Url,
    /// An IPv6 candidate, confirmed by the standard library's parser.
    Ipv6,
    /// A bare 17-character VIN candidate: needs at least two digits and two letters.
    Vin,
}

struct Pat {
    /// The tags this pattern can produce: it is compiled when any of them is selected.
    tags: &'static [Tag],
    kind: Kind,
    re: String,
}

// Building blocks. Every pattern is compiled with Unicode mode off: classes, `\b`, `\s` and `(?i)`
// are ASCII-only, which keeps the lazy DFA small and never makes it give up on non-ASCII text.
const SEP: &str = r"[\s:#=.\-]*";
const NO: &str = r"(?:\#|no\b\.?|num\b\.?|number|nbr\b\.?)";
const ID: &str = r"[A-Za-z0-9]{1,24}(?:[\-./][A-Za-z0-9]{1,24}){0,4}\b";
const DAY: &str = r"(?:0?[1-9]|[12][0-9]|3[01])";
const MON: &str = r"(?:0?[1-9]|1[0-2])";
const ORD: &str = r"(?i:st|nd|rd|th)?\b";
const YEAR: &str = r"(?:1[89]|2[01])[0-9]{2}";
const OCTET: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const H16: &str = r"[0-9A-Fa-f]{1,4}";
const EXT: &str = r"(?:\s*(?i:extension|ext\.?|x)\s*[0-9]{1,6})?\b";
/// Any month spelling, lower case included: only used where a day or year must follow.
const MONTH_ANY: &str = r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?";
/// Month spellings trusted with a day but no year: abbreviations (and "May") only in Title or
/// upper case, so "may 2 tabs" or "dec 5 units" stay. Only abbreviations take a dot: "in May. 5
/// patients" is no date.
const MONTH_STRICT: &str = r"(?:(?i:january|february|march|april|june|july|august|september|october|november|december)\b|May\b|MAY\b|(?:Jan|JAN|Feb|FEB|Mar|MAR|Apr|APR|Jun|JUN|Jul|JUL|Aug|AUG|Sept?|SEPT?|Oct|OCT|Nov|NOV|Dec|DEC)\b\.?)";

/// All detector patterns, in priority order: when two start at the same byte the earlier one wins,
/// so keyword-led patterns come first and the post-validated ones (which may be rejected) last.
fn patterns() -> Vec<Pat> {
    use Kind::{Ipv6, Keyword, Number, Phone, Plain, Url, Vin};
    let kw = |keywords: &str, value: &str| format!(r"\b(?:{keywords}){SEP}(?P<v>{value})");
    let ipv4 = format!(r"(?:{OCTET}\.){{3}}{OCTET}");
    let p = |tags, kind, re: String| Pat { tags, kind, re };
    vec![
        p(&[Tag::Mrn], Keyword, kw(&format!(r"(?i:mrn|mr\s*\#|med(?:ical)?\.?\s*rec(?:ord)?s?\b\.?(?:\s*{NO})?)"), ID)),
        p(
            &[Tag::HealthPlan],
            Keyword,
            kw(
                &format!(
                    r"(?i:(?:member|subscriber|insurance|insured|policy|group|medicaid|medicare|beneficiary)\s*(?:id\b|{NO})|health\s*plan\b(?:\s*(?:beneficiary\s*)?(?:id\b|{NO}))?)"
                ),
                ID,
            ),
        ),
        p(&[Tag::Account], Keyword, kw(&format!(r"(?i:acct\b\.?(?:\s*{NO})?|account\s*(?:id\b|{NO}))"), ID)),
        p(
            &[Tag::Vehicle],
            Keyword,
            kw(&format!(r"(?i:vin|vehicle\s*id(?:entification)?(?:\s*{NO})?)\b"), r"[A-HJ-NPR-Za-hj-npr-z0-9]{17}\b"),
        ),
        p(&[Tag::Vehicle], Keyword, kw(&format!(r"(?i:license\s*plate|plate\s*{NO})"), r"[A-Za-z0-9]{1,8}(?:[\- ][0-9]{1,8})?\b")),
        p(
            &[Tag::License],
            Keyword,
            kw(&format!(r"(?i:driver(?:'|’)?s?\s*lic(?:ense|\.)?(?:\s*{NO})?|(?:licen[cs]e|lic\b\.?)\s*{NO})|DL\b\s*\#?"), ID),
        ),
        p(&[Tag::Device], Keyword, kw(&format!(r"(?i:serial\s*{NO}|s/n\b|sn\s*\#|device\s*(?:id\b|{NO}|serial))"), ID)),
        p(&[Tag::Id], Keyword, kw(r"(?i:patient|pt|subject|study)\s*(?i:id\b|\#)|ID\b\s*\#?", ID)),
        p(&[Tag::Url], Url, r"(?i:(?:https?|s?ftp)://|www\.)[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%\-]+".into()),
        // Bounded parts (RFC 5321 limits): an unbounded local part would keep a higher-priority
        // thread alive across a long run such as "1.1.1.1.1...", making the scan quadratic.
        p(&[Tag::Email], Plain, r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}\b".into()),
        // ISO date, with the time and zone of a timestamp when present.
        p(
            &[Tag::Date],
            Plain,
            format!(
                r"\b[0-9]{{4}}[\-/]{MON}[\-/]{DAY}(?:[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]+)?)?(?:Z|z|[+\-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?)?\b"
            ),
        ),
        p(&[Tag::Ssn], Plain, r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b|\b[0-9]{3} [0-9]{2} [0-9]{4}\b".into()),
        p(
            &[Tag::Phone, Tag::Fax],
            Phone,
            format!(
                r"(?:(?:\+1|\b1)[\s.\-]?)?\([0-9]{{3}}\)[\s.\-]?[0-9]{{3}}[\s.\-][0-9]{{4}}{EXT}|(?:\+1[\s.\-]?|\b1[\s.\-])[0-9]{{3}}[\s.\-][0-9]{{3}}[\s.\-][0-9]{{4}}{EXT}|\+1[0-9]{{10}}{EXT}|\b[0-9]{{3}}[.\-][0-9]{{3}}[.\-][0-9]{{4}}{EXT}"
            ),
        ),
        // Numeric dates need three parts (so 120/80 stays); month/year only as MM/YYYY.
        p(
            &[Tag::Date],
            Plain,
            format!(
                r"\b(?:{MON}[/\-]{DAY}|{DAY}[/\-]{MON})[/\-](?:[0-9]{{4}}|[0-9]{{2}})\b|\b(?:{MON}\.{DAY}|{DAY}\.{MON})\.[0-9]{{4}}\b|\b(?:0[1-9]|1[0-2])/{YEAR}\b"
            ),
        ),
        p(
            &[Tag::Date],
            Plain,
            format!(
                r"\b{MONTH_ANY}(?:\s*|-){DAY}{ORD}(?:,\s*|\s+|-){YEAR}\b|\b{DAY}{ORD}(?:\s+of)?(?:\s+|-){MONTH_ANY}(?:,\s*|\s+|-)(?:{YEAR}|[0-9]{{2}})\b|\b{MONTH_ANY}(?:\s+of)?(?:,\s*|\s+|-){YEAR}\b|\b{MONTH_STRICT}\s*{DAY}{ORD}|\b{DAY}{ORD}(?:\s+of)?\s+{MONTH_STRICT}"
            ),
        ),
        p(&[Tag::Ip], Plain, format!(r"\b{ipv4}\b")),
        // Bare numbers that need a keyword before them (see `Kind::Number`).
        p(
            &[Tag::Ssn, Tag::Phone, Tag::Fax, Tag::Location, Tag::Date],
            Number,
            r"\b(?:[0-9]{3}[\- ]?[0-9]{2}[\- ]?[0-9]{4}|[0-9]{10}|[0-9]{3}[.\-][0-9]{4}|[0-9]{5}(?:-[0-9]{4})?|[0-9]{8})\b".into(),
        ),
        p(&[Tag::Ip], Ipv6, format!(r"\b(?:{H16}:){{7}}{H16}\b|\b(?:{H16}:){{6}}{ipv4}\b|(?:\b(?:{H16}:){{1,7}}|:):[0-9A-Fa-f:.]{{0,40}}")),
        p(&[Tag::Vehicle], Vin, r"\b[A-HJ-NPR-Z0-9]{17}\b".into()),
    ]
}

fn bit(tag: Tag) -> u32 {
    1 << tag as u32
}

/// Which pattern detectors run (all by default).
#[derive(Debug, Clone)]
pub struct Scrubber {
    /// All selected detectors as one leftmost-first multi-pattern regex; `None` when none selected.
    all: Option<Regex>,
    /// Per pattern id of `all`: its kind, its tag, and for keyword kinds a single-pattern regex
    /// run only on an already found span to locate the `v` group.
    pats: Vec<(Kind, Tag, Option<Regex>)>,
    /// Bit `1 << tag` for each selected tag.
    selected: u32,
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new()
    }
}

/// ASCII-only syntax; capture groups only where the `v` group is read (the keyword sub-regexes),
/// as the multi-pattern search needs no more than each match's span and pattern.
fn builder(captures: bool) -> meta::Builder {
    let mut b = Regex::builder();
    b.syntax(syntax::Config::new().unicode(false).utf8(true)).configure(Regex::config().which_captures(if captures {
        WhichCaptures::All
    } else {
        WhichCaptures::Implicit
    }));
    b
}

impl Scrubber {
    /// All detectors.
    #[must_use]
    pub fn new() -> Self {
        Self::build(u32::MAX)
    }

    /// Only the detectors whose tags are listed (same-row identifiers are always replaced).
    #[must_use]
    pub fn with_detectors(tags: &[Tag]) -> Self {
        Self::build(tags.iter().fold(0, |bits, &t| bits | bit(t)))
    }

    fn build(selected: u32) -> Self {
        let chosen: Vec<Pat> = patterns().into_iter().filter(|p| p.tags.iter().any(|&t| selected & bit(t) != 0)).collect();
        if chosen.is_empty() {
            return Scrubber { all: None, pats: Vec::new(), selected };
        }
        // The patterns are constants of this file, so a failure is a bug; the message names no input.
        let all =
            builder(false).build_many(&chosen.iter().map(|p| p.re.as_str()).collect::<Vec<_>>()).expect("built-in scrub patterns compile");
        let pats = chosen
            .into_iter()
            .map(|p| {
                let sub = matches!(p.kind, Kind::Keyword).then(|| builder(true).build(&p.re).expect("built-in scrub patterns compile"));
                (p.kind, p.tags[0], sub)
            })
            .collect();
        Scrubber { all: Some(all), pats, selected }
    }

    /// Appends `text` to `out` with every detector match and every occurrence of one of `row_ids`
    /// (the same row's own identifiers from other columns: names, MRN, address...; each with its tag)
    /// replaced by its tag's label. Returns the number of replacements.
    pub fn scrub_into(&self, text: &str, row_ids: &[(&str, Tag)], out: &mut String) -> usize {
        // (start, end, tag, rank): rank breaks ties between equally long overlapping candidates in
        // favour of the row's own identifiers. The Vec allocates only once something matched.
        let mut spans: Vec<(usize, usize, Tag, u8)> = Vec::new();
        self.each_match(text, |r, tag| spans.push((r.start, r.end, tag, 1)));
        let detected = spans.len();
        each_row_id(text, row_ids, |r, tag| spans.push((r.start, r.end, tag, 0)));
        if spans.len() > detected {
            resolve_overlaps(&mut spans);
        }
        out.reserve(text.len());
        let mut last = 0;
        for &(start, end, tag, _) in &spans {
            out.push_str(&text[last..start]);
            out.push_str(tag.label());
            last = end;
        }
        out.push_str(&text[last..]);
        spans.len()
    }

    /// Finds detector matches only (no row identifiers): byte ranges and tags, in order, non-overlapping.
    /// Used later by a validation report to count residual PHI in kept text columns.
    #[must_use]
    pub fn detect(&self, text: &str) -> Vec<(Range<usize>, Tag)> {
        let mut found = Vec::new();
        self.each_match(text, |r, tag| found.push((r, tag)));
        found
    }

    fn each_match(&self, text: &str, mut emit: impl FnMut(Range<usize>, Tag)) {
        let Some(all) = &self.all else { return };
        if !may_match(text.as_bytes()) {
            return;
        }
        let mut pos = 0;
        while pos < text.len() {
            let Some(m) = all.search(&Input::new(text).range(pos..)) else { break };
            match self.confirm(text, m.pattern().as_usize(), m.range()) {
                Ok((r, tag)) => {
                    pos = r.end;
                    emit(r, tag);
                }
                Err(resume) => pos = resume,
            }
        }
    }

    /// Turns a raw match into the replaced range, or rejects it with the offset to search on from.
    ///
    /// A rejected candidate is searched again from its second byte (every pattern starts on an
    /// ASCII byte, so that is a char boundary), as another pattern may start inside it; those
    /// candidates are bounded in length, which keeps the scan linear. A rejected keyword match
    /// (no digit in its value: "MRN pending") is searched again from its value.
    fn confirm(&self, text: &str, pid: usize, m: Range<usize>) -> Result<(Range<usize>, Tag), usize> {
        let reject = m.start + 1;
        let &(kind, tag, ref sub) = self.pats.get(pid).ok_or(reject)?;
        let s = &text[m.clone()];
        let (r, tag) = match kind {
            Kind::Plain => (m, tag),
            Kind::Keyword => {
                let sub = sub.as_ref().ok_or(reject)?;
                let mut caps: Captures = sub.create_captures();
                sub.search_captures(&Input::new(text).range(m).anchored(Anchored::Yes), &mut caps);
                let v = caps.get_group_by_name("v").ok_or(reject)?.range();
                if !text[v.clone()].bytes().any(|b| b.is_ascii_digit()) {
                    return Err(v.start.max(reject));
                }
                (v, tag)
            }
            Kind::Phone => {
                let tag = if keyword_before(text, m.start, 4, is_fax_word) { Tag::Fax } else { Tag::Phone };
                (drop_glued_extension(text, m), tag)
            }
            Kind::Number => (m.clone(), classify_number(text, m).ok_or(reject)?),
            Kind::Url => {
                let kept = s.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"', ']']);
                let kept = if kept.ends_with(')') && !kept.contains('(') { &kept[..kept.len() - 1] } else { kept };
                let www = kept.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("www."));
                let body = if www { &kept[4..] } else { kept.split_once("://").map_or("", |(_, b)| b) };
                if body.is_empty() {
                    return Err(reject);
                }
                (m.start..m.start + kept.len(), tag)
            }
            Kind::Ipv6 => {
                let mut cand = s.trim_end_matches('.');
                if cand.ends_with(':') && !cand.ends_with("::") {
                    cand = &cand[..cand.len() - 1];
                }
                let before = text[..m.start].bytes().next_back();
                let after = text.as_bytes().get(m.start + cand.len()).copied();
                let glued = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b':');
                let groups = cand.split(':').filter(|g| !g.is_empty()).count();
                // "::1" or "add::" parse, but a lone group is no host's address worth a tag.
                if glued(before)
                    || before == Some(b'.')
                    || glued(after)
                    || groups < 2
                    || !cand.bytes().any(|b| b.is_ascii_digit())
                    || cand.parse::<Ipv6Addr>().is_err()
                {
                    return Err(reject);
                }
                (m.start..m.start + cand.len(), tag)
            }
            Kind::Vin => {
                let digits = s.bytes().filter(u8::is_ascii_digit).count();
                if digits < 2 || s.len() - digits < 2 {
                    return Err(reject);
                }
                (m, tag)
            }
        };
        // A fax number is still a phone number for a scrubber asked for phones only.
        match tag {
            _ if self.selected & bit(tag) != 0 => Ok((r, tag)),
            Tag::Fax if self.selected & bit(Tag::Phone) != 0 => Ok((r, Tag::Phone)),
            _ => Err(reject),
        }
    }
}

/// What a bare number is, judged by its shape and the keyword before it (see `Kind::Number`).
fn classify_number(text: &str, r: Range<usize>) -> Option<Tag> {
    let s = &text.as_bytes()[r.clone()];
    let digits = s.iter().filter(|b| b.is_ascii_digit()).count();
    let sep_at = s.iter().position(|b| !b.is_ascii_digit());
    let before = |max, is_keyword| keyword_before(text, r.start, max, is_keyword);
    if digits == 9 && before(3, is_ssn_word) {
        return Some(Tag::Ssn);
    }
    if (digits == 5 && sep_at.is_none() || digits == 9 && sep_at == Some(5) && s[5] == b'-')
        && (before(2, is_zip_word) || state_code_before(text, r.start))
    {
        return Some(Tag::Location);
    }
    if digits == 10 && sep_at.is_none() || digits == 7 && sep_at == Some(3) && s[0] >= b'2' {
        if before(4, is_fax_word) {
            return Some(Tag::Fax);
        }
        return before(4, is_phone_word).then_some(Tag::Phone);
    }
    if digits == 8 && sep_at.is_none() && before(3, is_dob_word) {
        let (month, day) = (&s[4..6], &s[6..8]);
        let valid = (b"01".as_slice()..=b"12".as_slice()).contains(&month) && (b"01".as_slice()..=b"31".as_slice()).contains(&day);
        return valid.then_some(Tag::Date);
    }
    None
}

/// Whether one of the `max` words just before `at` is a keyword. Words are runs of ASCII letters;
/// anything but a digit may separate them ("fax no. is", "SSN#"), and the look back stops at a
/// digit or after 64 bytes.
fn keyword_before(text: &str, at: usize, max: usize, is_keyword: fn(&[u8]) -> bool) -> bool {
    let bytes = text.as_bytes();
    let floor = at.saturating_sub(64);
    let mut i = at;
    for _ in 0..max {
        while i > floor && !bytes[i - 1].is_ascii_alphanumeric() {
            i -= 1;
        }
        let end = i;
        while i > floor && bytes[i - 1].is_ascii_alphabetic() {
            i -= 1;
        }
        // A digit, the window's edge in the middle of a word, or nothing left: no keyword.
        if i == end || (i == floor && floor > 0) || (i > 0 && bytes[i - 1].is_ascii_digit()) {
            return false;
        }
        if is_keyword(&bytes[i..end]) {
            return true;
        }
    }
    false
}

fn is_any(word: &[u8], list: &[&str]) -> bool {
    list.iter().any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
}

fn is_fax_word(w: &[u8]) -> bool {
    is_any(w, &["fax", "faxed", "faxes", "faxing", "facsimile"])
}

fn is_phone_word(w: &[u8]) -> bool {
    is_any(w, &["tel", "telephone", "phone", "ph", "cell", "cellphone", "mobile", "pager", "beeper", "contact", "call", "called", "reach"])
}

fn is_ssn_word(w: &[u8]) -> bool {
    is_any(w, &["ssn", "ss", "security", "sec"])
}

fn is_zip_word(w: &[u8]) -> bool {
    is_any(w, &["zip", "zipcode", "postal"])
}

fn is_dob_word(w: &[u8]) -> bool {
    is_any(w, &["dob", "birth", "birthdate", "born"])
}

/// Whether a two-letter US state or territory code, in capitals, is the word before `at`
/// ("Boston, MA 02134"); the code itself stays.
fn state_code_before(text: &str, at: usize) -> bool {
    const STATES: [&[u8; 2]; 56] = [
        b"AL", b"AK", b"AZ", b"AR", b"CA", b"CO", b"CT", b"DE", b"FL", b"GA", b"HI", b"ID", b"IL", b"IN", b"IA", b"KS", b"KY", b"LA",
        b"ME", b"MD", b"MA", b"MI", b"MN", b"MS", b"MO", b"MT", b"NE", b"NV", b"NH", b"NJ", b"NM", b"NY", b"NC", b"ND", b"OH", b"OK",
        b"OR", b"PA", b"RI", b"SC", b"SD", b"TN", b"TX", b"UT", b"VT", b"VA", b"WA", b"WV", b"WI", b"WY", b"DC", b"PR", b"VI", b"GU",
        b"AS", b"MP",
    ];
    let before = text.as_bytes()[..at].trim_ascii_end();
    let before = before.strip_suffix(b",").unwrap_or(before);
    let before = before.strip_suffix(b".").unwrap_or(before);
    before.len() >= 2
        && STATES.iter().any(|s| before.ends_with(*s))
        && (before.len() == 2 || !before[before.len() - 3].is_ascii_alphanumeric())
}

/// In "617-555-0100 x 714-88-1860" the "extension" is the start of the next number: when digits
/// go on after a dash or dot, the phone ends before its extension.
fn drop_glued_extension(text: &str, r: Range<usize>) -> Range<usize> {
    let after = &text.as_bytes()[r.end..];
    if !(after.len() >= 2 && matches!(after[0], b'-' | b'.' | b'/') && after[1].is_ascii_digit()) {
        return r;
    }
    let s = text[r.clone()].trim_end_matches(|c: char| c.is_ascii_digit()).trim_end();
    let lower = s.to_ascii_lowercase();
    match ["extension", "ext.", "ext", "x"].iter().find(|e| lower.ends_with(*e)) {
        Some(e) => r.start..r.start + s[..s.len() - e.len()].trim_end().len(),
        None => r,
    }
}

/// Cheap exact prefilter: every detector needs an ASCII digit, '@', ':' or "www." somewhere.
fn may_match(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        b.is_ascii_digit()
            || b == b'@'
            || b == b':'
            || ((b | 0x20) == b'w' && bytes.get(i..i + 4).is_some_and(|w| w.eq_ignore_ascii_case(b"www.")))
    })
}

/// Emits every whole-word, case-insensitive occurrence of each row identifier; for names also of
/// each part of three or more characters ("Smith" alone for "John Smith").
fn each_row_id(text: &str, row_ids: &[(&str, Tag)], mut emit: impl FnMut(Range<usize>, Tag)) {
    if text.is_empty() || row_ids.is_empty() {
        return;
    }
    let mut batch = Phrases::default();
    for &(needle, tag) in row_ids {
        let needle = needle.trim();
        let ascii = needle.is_ascii();
        if needle.len() < 2 || (!ascii && needle.chars().nth(1).is_none()) {
            continue;
        }
        batch.add(text, needle, tag, ascii, &mut emit);
        if tag != Tag::Name {
            continue;
        }
        // Name parts: runs of letters, digits and inner apostrophes (O'Brien). Byte loop for the
        // usual ASCII needle, as this runs for every row.
        if ascii {
            let bytes = needle.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let start = i;
                while bytes.get(i).is_some_and(|&b| NAME_PART[usize::from(b)]) {
                    i += 1;
                }
                let (mut s, mut e) = (start, i);
                while s < e && bytes[s] == b'\'' {
                    s += 1;
                }
                while e > s && bytes[e - 1] == b'\'' {
                    e -= 1;
                }
                if e - s >= 3 && e - s < needle.len() {
                    batch.add(text, &needle[s..e], tag, true, &mut emit);
                }
                i += 1;
            }
        } else {
            let apostrophe = |c: char| c == '\'' || c == '’';
            for part in needle.split(|c: char| !(c.is_alphanumeric() || apostrophe(c))) {
                let part = part.trim_matches(apostrophe);
                if part.len() < needle.len() && part.chars().nth(2).is_some() {
                    batch.add(text, part, tag, false, &mut emit);
                }
            }
        }
    }
    batch.flush(text, &mut emit);
}

/// ASCII bytes that make up a name part: letters, digits and the apostrophe of O'Brien.
const NAME_PART: [bool; 256] = {
    let mut t = [false; 256];
    let mut b: u8 = 0;
    while b < 128 {
        t[b as usize] = b.is_ascii_alphanumeric() || b == b'\'';
        b += 1;
    }
    t
};

/// A row identifier (or name part) to find.
#[derive(Clone, Copy)]
struct Phrase<'a> {
    text: &'a str,
    tag: Tag,
    /// The first byte as written, in lower and in upper case: ASCII or UTF-8 lead bytes, so every
    /// hit is a char boundary.
    lead: [u8; 3],
    /// The second byte in ASCII lower case, when it is an ASCII letter or digit: a cheap check
    /// before comparing the whole phrase.
    second: Option<u8>,
    /// Whether a letter or digit must not touch the phrase on the left, on the right.
    left: bool,
    right: bool,
}

/// Up to `Phrases::CAP` phrases searched together in one pass over the text, on the stack: one
/// pass beats a memchr pass per phrase, or an automaton per row, for the few needles a row has.
struct Phrases<'a> {
    items: [Phrase<'a>; Phrases::CAP],
    len: usize,
    /// Which bytes some queued phrase starts with.
    starts: [bool; 256],
    /// Whether every queued phrase starts with an ASCII letter or digit.
    word_starts_only: bool,
}

impl Default for Phrases<'_> {
    fn default() -> Self {
        let none = Phrase { text: "", tag: Tag::Name, lead: [0; 3], second: None, left: false, right: false };
        Phrases { items: [none; Phrases::CAP], len: 0, starts: [false; 256], word_starts_only: true }
    }
}

impl<'a> Phrases<'a> {
    const CAP: usize = 8;

    /// Queues a trimmed, non-empty phrase (`ascii` if it is all ASCII); searches the queued batch
    /// first when there is no room.
    fn add(&mut self, text: &str, phrase: &'a str, tag: Tag, ascii: bool, emit: &mut impl FnMut(Range<usize>, Tag)) {
        if self.len == Self::CAP {
            self.flush(text, emit);
        }
        let bytes = phrase.as_bytes();
        let (Some(&b0), Some(&bn)) = (bytes.first(), bytes.last()) else { return };
        let (lead, left, right) = if ascii {
            ([b0, b0.to_ascii_lowercase(), b0.to_ascii_uppercase()], b0.is_ascii_alphanumeric(), bn.is_ascii_alphanumeric())
        } else {
            let (Some(first), Some(last)) = (phrase.chars().next(), phrase.chars().next_back()) else { return };
            let lead = |c: Option<char>| c.map_or(b0, |c| c.encode_utf8(&mut [0; 4]).as_bytes()[0]);
            let lead = [b0, lead(first.to_lowercase().next()), lead(first.to_uppercase().next())];
            (lead, first.is_alphanumeric(), last.is_alphanumeric())
        };
        for b in lead {
            self.starts[usize::from(b)] = true;
        }
        self.word_starts_only &= b0.is_ascii_alphanumeric();
        let second = match bytes.get(1) {
            Some(b) if b0.is_ascii() && b.is_ascii_alphanumeric() => Some(b.to_ascii_lowercase()),
            _ => None,
        };
        self.items[self.len] = Phrase { text: phrase, tag, lead, second, left, right };
        self.len += 1;
    }

    /// Searches the text for the queued phrases and empties the queue.
    fn flush(&mut self, text: &str, emit: &mut impl FnMut(Range<usize>, Tag)) {
        if self.len == 0 {
            return;
        }
        let hay = text.as_bytes();
        if self.word_starts_only {
            // Only ASCII word starts can begin a match (the exact test for a non-ASCII letter
            // before one is in `try_at`): about one byte in six, found eight bytes at a time.
            let mut chunks = hay.chunks_exact(8);
            let mut carry = 0;
            let mut base = 0;
            let mut scan = |word: [u8; 8], base: usize, carry: &mut u64| {
                let alnum = ascii_alnum_mask(u64::from_le_bytes(word));
                let mut word_starts = alnum & !((alnum << 8) | *carry);
                *carry = alnum >> 56 & 0x80;
                while word_starts != 0 {
                    let start = base + (word_starts.trailing_zeros() / 8) as usize;
                    word_starts &= word_starts - 1;
                    if self.starts[usize::from(hay[start])] {
                        self.try_at(text, start, emit);
                    }
                }
            };
            for chunk in &mut chunks {
                scan(chunk.try_into().unwrap_or_default(), base, &mut carry);
                base += 8;
            }
            let mut last = [0; 8];
            last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
            scan(last, base, &mut carry);
        } else {
            for (start, &b) in hay.iter().enumerate() {
                if self.starts[usize::from(b)] {
                    self.try_at(text, start, emit);
                }
            }
        }
        for p in &self.items[..self.len] {
            for b in p.lead {
                self.starts[usize::from(b)] = false;
            }
        }
        self.len = 0;
        self.word_starts_only = true;
    }

    /// Emits the queued phrases occurring at `start`, a char boundary.
    fn try_at(&self, text: &str, start: usize, emit: &mut impl FnMut(Range<usize>, Tag)) {
        let hay = text.as_bytes();
        let b = hay[start];
        let next = hay.get(start + 1).map(u8::to_ascii_lowercase);
        let mut glued_left = None;
        for p in &self.items[..self.len] {
            if !p.lead.contains(&b) || p.second.is_some_and(|s| next != Some(s)) {
                continue;
            }
            let glued = || text[..start].chars().next_back().is_some_and(char::is_alphanumeric);
            if p.left && *glued_left.get_or_insert_with(glued) {
                continue;
            }
            let Some(end) = phrase_at(text, start, p.text) else { continue };
            if p.right && text[end..].chars().next().is_some_and(char::is_alphanumeric) {
                continue;
            }
            emit(start..end, p.tag);
        }
    }
}

/// Bit 7 of each byte of `x` set where that byte is an ASCII letter or digit (SWAR: each byte's
/// sums stay below 0x100, so no carry crosses into the next byte).
fn ascii_alnum_mask(x: u64) -> u64 {
    const fn splat(b: u8) -> u64 {
        u64::from_le_bytes([b; 8])
    }
    let low7 = x & splat(0x7f);
    let folded = low7 | splat(0x20);
    let letter = (folded + splat(0x80 - b'a')) & !(folded + splat(0x7f - b'z'));
    let digit = (low7 + splat(0x80 - b'0')) & !(low7 + splat(0x7f - b'9'));
    (letter | digit) & !x & splat(0x80)
}

/// End of `phrase` if it occurs at `start`, its words separated by any run of whitespace.
fn phrase_at(text: &str, start: usize, phrase: &str) -> Option<usize> {
    if !phrase.bytes().any(|b| b.is_ascii_whitespace() || b >= 0x80) {
        return word_at(text, start, phrase);
    }
    let mut pos = start;
    for (i, word) in phrase.split_whitespace().enumerate() {
        if i > 0 {
            let rest = &text[pos..];
            let gap = rest.len() - rest.trim_start().len();
            if gap == 0 {
                return None;
            }
            pos += gap;
        }
        pos = word_at(text, pos, word)?;
    }
    Some(pos)
}

/// End of `word` if `text` at `pos` starts with it, ignoring (simple) case.
fn word_at(text: &str, pos: usize, word: &str) -> Option<usize> {
    if word.is_ascii() {
        let end = pos + word.len();
        let hay = text.as_bytes().get(pos..end)?;
        return hay.eq_ignore_ascii_case(word.as_bytes()).then_some(end);
    }
    let mut hay = text[pos..].char_indices();
    for w in word.chars() {
        let (_, h) = hay.next()?;
        if h != w && !h.to_lowercase().eq(w.to_lowercase()) {
            return None;
        }
    }
    Some(hay.next().map_or(text.len(), |(i, _)| pos + i))
}

/// Keeps a non-overlapping subset, longest candidates first, and sorts it by position.
fn resolve_overlaps(spans: &mut Vec<(usize, usize, Tag, u8)>) {
    spans.sort_unstable_by_key(|&(s, e, tag, rank)| (std::cmp::Reverse(e - s), s, rank, tag));
    spans.dedup_by_key(|&mut (s, e, _, _)| (s, e));
    if spans.len() <= 32 {
        let mut kept: Vec<(usize, usize, Tag, u8)> = Vec::with_capacity(spans.len());
        for &c in spans.iter() {
            if kept.iter().all(|k| c.1 <= k.0 || k.1 <= c.0) {
                kept.push(c);
            }
        }
        kept.sort_unstable_by_key(|k| k.0);
        *spans = kept;
        return;
    }
    // Large texts: kept spans keyed by start. Among them only the one starting last before a
    // candidate's end can overlap it, if any does.
    let mut kept: BTreeMap<usize, (usize, Tag, u8)> = BTreeMap::new();
    for &(s, e, tag, rank) in spans.iter() {
        if kept.range(..e).next_back().is_none_or(|(_, k)| k.0 <= s) {
            kept.insert(s, (e, tag, rank));
        }
    }
    *spans = kept.into_iter().map(|(s, (e, tag, rank))| (s, e, tag, rank)).collect();
}

#[cfg(test)]
#[path = "scrub_tests.rs"]
mod tests;
