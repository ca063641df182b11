#!/usr/bin/env python3
"""Generate the bundled demo export: a small, entirely fake legacy EHR extract.

Deterministic (fixed seed), standard library only. The output is committed under
mappings/demo/data/ so the README's first command needs nothing but cargo.
It looks like what a 2000s-era hospital system exports:

- patients.csv    windows-1252, CRLF, MM/DD/YYYY dates, coded sex, Y/N flags,
                  local (America/New_York) timestamps, a free-text column we drop
- visits_2019.csv.gz, visits_2020.csv.gz   gzip, one file per year, money as text
- labs.psv.zst    zstd, pipe-delimited, '#' comment lines, ISO timestamps with offsets

A handful of rows are planted with problems (an impossible date, a non-numeric
charge, an unknown sex code) so the demo shows quarantine at work.

usage: gen_demo_data.py [OUT_DIR]   (default: mappings/demo/data next to this script's repo)
"""
import csv, gzip, io, os, random, subprocess, sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "mappings", "demo", "data")
os.makedirs(out, exist_ok=True)
rnd = random.Random(20261128)

FIRST = ["María", "José", "Zoë", "Renée", "John", "Linda", "Kwame", "Mei", "Óscar", "Anaïs", "Robert", "Priya"]
LAST = ["García", "Müller", "O'Brien", "Nguyen", "Smith", "Johnson", "Okafor", "Kowalski", "Brontë", "Lefèvre"]
ZIPS = ["02134", "02139", "01002", "03601", "05901", "10001", "06320", "00501"]

def gz(path, data):
    # mtime=0 keeps the committed files byte-stable across regenerations
    with open(path, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
            g.write(data)

patients = []
buf = io.StringIO()
w = csv.writer(buf, lineterminator="\r\n")
w.writerow(["PAT_ID", "MRN", "LAST_NAME", "FIRST_NAME", "DOB", "SEX", "ZIP", "PHONE", "SSN", "ACTIVE_FLAG", "INTERNAL_NOTE", "CREATED_TS"])
for i in range(1, 501):
    y, m, d = rnd.randint(1925, 2015), rnd.randint(1, 12), rnd.randint(1, 28)
    dob = f"{m:02d}/{d:02d}/{y}"
    sex = rnd.choice(["1", "2", "2", "1", "9"])
    if i == 137:
        dob = "02/30/1971"  # planted: impossible date
    if i == 412:
        sex = "X"  # planted: code missing from the codebook
    note = rnd.choice(["", "pt prefers evening calls", "see paper chart, box 12", "language: Português"])
    created = f"20{rnd.randint(5, 19):02d}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d} {rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}"
    row = [i, f"M{i * 7919 % 1000000:07d}", rnd.choice(LAST), rnd.choice(FIRST), dob, sex, rnd.choice(ZIPS),
           f"({rnd.randint(200, 999)}) 555-{rnd.randint(0, 9999):04d}", f"9{rnd.randint(0, 99):02d}-{rnd.randint(10, 99)}-{rnd.randint(1000, 9999)}",
           rnd.choice(["Y", "N", "Y"]), note, created]
    w.writerow(row)
    patients.append(i)
with open(os.path.join(out, "patients.csv"), "wb") as f:
    f.write(buf.getvalue().encode("windows-1252"))

visit_id = 0
for year in (2019, 2020):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["VISIT_ID", "PAT_ID", "ADMIT_DT", "DISCHARGE_DT", "DEPT_CODE", "CHARGE"])
    for _ in range(700):
        visit_id += 1
        m, d, h = rnd.randint(1, 12), rnd.randint(1, 27), rnd.randint(0, 22)
        charge = f"{rnd.randint(20, 9000)}.{rnd.randint(0, 99):02d}"
        if visit_id == 901:
            charge = "N/A"  # planted: not a number
        discharge = "" if rnd.random() < 0.1 else f"{year}-{m:02d}-{d + 1:02d}T{h + 1:02d}:00:00"
        w.writerow([visit_id, rnd.choice(patients), f"{year}-{m:02d}-{d:02d}T{h:02d}:{rnd.randint(0, 59):02d}:00", discharge,
                    rnd.choice(["ED", "CARD", "ONC", "PEDS", "ORTHO"]), charge])
    gz(os.path.join(out, f"visits_{year}.csv.gz"), buf.getvalue().encode("utf-8"))

lines = ["# LAB EXTRACT v2 -- generated for ehrlift's demo; all values are fake"]
lines.append("LAB_ID|PAT_ID|LOINC|VALUE|UNIT|RESULT_TS")
tests = [("2345-7", "mg/dL", 70, 140), ("718-7", "g/dL", 10, 17), ("2160-0", "mg/dL", 0.5, 1.6), ("6690-2", "10*3/uL", 3, 11)]
for i in range(1, 1201):
    code, unit, lo, hi = rnd.choice(tests)
    if i % 400 == 0:
        lines.append(f"# batch {i // 400} end")
    lines.append(f"{i}|{rnd.choice(patients)}|{code}|{rnd.uniform(lo, hi):.1f}|{unit}|2020-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:00-05:00")
raw = ("\n".join(lines) + "\n").encode("utf-8")
path = os.path.join(out, "labs.psv.zst")
try:
    import zstandard  # type: ignore
    with open(path, "wb") as f:
        f.write(zstandard.ZstdCompressor(level=3).compress(raw))
except ImportError:
    subprocess.run(["zstd", "-q", "-f", "-3", "-o", path], input=raw, check=True)
print(f"wrote demo export to {out}")
