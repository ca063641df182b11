//! Renders the validation report ([`Report`]) for people: a one-screen terminal summary
//! and a self-contained HTML page (inline CSS and SVG, no scripts, no external assets), so
//! the page opens from disk, survives being mailed or archived, and asks nothing of the
//! network.
//!
//! The report carries no cell values (min/max only for columns tagged `phi = "none"`);
//! this module adds none, and escapes every string it puts into HTML.

use std::fmt::Write as _;

use ehrlift_pipeline::Preflight;
use ehrlift_pipeline::report::{ColumnReport, Report, RowRef, Sampling, Severity, TableReport};

/// Lines the terminal summary aims to fit in.
const SCREEN_LINES: usize = 40;
/// Widest table name or location the terminal summary prints before truncating.
const NAME_WIDTH: usize = 32;

/// A one-screen plain-text summary: header, a line per table, the top problems in the
/// report's order, then the gates. Fits about 40 lines for a 17-table plan.
pub fn terminal_summary(r: &Report) -> String {
    let mut lines: Vec<String> = Vec::new();
    lines.push(format!(
        "ehrlift validate: {}: project {}, profile {}, {}",
        if r.ok { "ok" } else { "FAILED" },
        r.project,
        r.profile,
        sampling(r.sampling)
    ));
    lines.push(format!("plan {}: {} tables, {} problems", r.plan, r.tables.len(), r.problems.len()));
    for (what, p) in [("destination", &r.destination), ("keys", &r.keys)] {
        if let Some(p) = p {
            lines.push(match &p.problem {
                Some(problem) => format!("{what} {}: REFUSED: {problem}", p.target),
                None => format!("{what} {}: ok ({} passed)", p.target, plural(p.checks.len(), "check")),
            });
        }
    }
    lines.push(String::new());

    let w = r.tables.iter().map(|t| t.table.chars().count()).max().unwrap_or(0).clamp(5, NAME_WIDTH);
    lines.push(format!("{:<w$}  {:>10}  {:>10}  {:>18}  {:<10}  {:>5}  PROBLEMS", "TABLE", "READ", "WRITE", "QUARANTINED", "READ AS", "K"));
    for t in &r.tables {
        let (total, errors) = r
            .problems
            .iter()
            .filter(|p| p.table == t.table)
            .fold((0, 0), |(n, e), p| (n + 1, e + usize::from(p.severity == Severity::Error)));
        let k = t.k_anonymity.as_ref().map_or("-".to_string(), |k| k.k.to_string());
        let problems = if errors > 0 { format!("{total} ({})", plural(errors, "error")) } else { total.to_string() };
        lines.push(format!(
            "{:<w$}  {:>10}  {:>10}  {:>18}  {:<10}  {:>5}  {problems}",
            clip(&t.table, w),
            num(t.rows_read),
            num(t.rows_written),
            format!("{} ({})", num(t.rows_quarantined), pct(t.rows_quarantined, t.rows_read)),
            read_as(t),
            k,
        ));
    }
    lines.push(String::new());

    let gate_lines = r.gates.len().max(1);
    // What is left of the screen after the gates, the "… and N more" line and a blank.
    let room = SCREEN_LINES.saturating_sub(lines.len() + 1 + 1 + 1 + 1 + gate_lines).clamp(3, 10);
    if r.problems.is_empty() {
        lines.push("Problems: none".into());
    } else {
        lines.push("Problems, most severe first:".into());
        let shown = &r.problems[..r.problems.len().min(room)];
        let locs: Vec<String> = shown
            .iter()
            .map(|p| clip(&format!("{}{}", p.table, p.column.as_ref().map_or(String::new(), |c| format!(".{c}"))), 40))
            .collect();
        let cw = shown.iter().map(|p| p.code.chars().count()).max().unwrap_or(0);
        let lw = locs.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let nw = shown.iter().map(|p| num(p.count).len()).max().unwrap_or(0);
        for (p, loc) in shown.iter().zip(&locs) {
            lines.push(format!(
                "  {:<5}  {:<cw$}  {loc:<lw$}  {:>nw$}  {}",
                severity(p.severity),
                p.code,
                num(p.count),
                // Errors stop a run: their whole message, even if it wraps.
                if p.severity == Severity::Error { p.message.clone() } else { clip(&p.message, 80) }
            ));
        }
        if r.problems.len() > shown.len() {
            lines.push(format!("  … and {} more (see report.json / report.html)", r.problems.len() - shown.len()));
        }
    }
    lines.push(String::new());
    if r.gates.is_empty() {
        lines.push("Gates: none declared".into());
    } else {
        lines.push("Gates:".into());
        for g in &r.gates {
            lines.push(format!("  {}  {}: {}", if g.passed { "PASS" } else { "FAIL" }, g.gate, g.detail));
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The report as one self-contained HTML document: summary, gates, ranked problems, then
/// a section per table. Opens from disk; needs no network and no JavaScript.
pub fn html(r: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>ehrlift validation report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&r.project)
    );
    let status = if r.ok { "<span class=\"status ok\">OK</span>" } else { "<span class=\"status failed\">FAILED</span>" };
    let _ = write!(
        h,
        "<header>\n<h1>{status} ehrlift validation report: {}</h1>\n<p class=\"meta\">plan <code>{}</code> · profile <b>{}</b> · {} · \
         generated {} · ehrlift {} · report format {}</p>\n</header>\n<main>\n",
        esc(&r.project),
        esc(&r.plan),
        esc(&r.profile),
        esc(&sampling(r.sampling)),
        esc(&r.generated_at),
        esc(&r.tool_version),
        r.format,
    );

    h.push_str("<section id=\"gates\">\n<h2>Gates</h2>\n");
    if r.gates.is_empty() {
        h.push_str("<p class=\"muted\">No gates declared in the plan's <code>[validate]</code> section.</p>\n");
    } else {
        h.push_str("<table>\n<tr><th>result</th><th>gate</th><th>measured</th></tr>\n");
        for g in &r.gates {
            let badge = if g.passed { "<span class=\"b pass\">PASS</span>" } else { "<span class=\"b fail\">FAIL</span>" };
            let _ = writeln!(h, "<tr><td>{badge}</td><td><code>{}</code></td><td>{}</td></tr>", esc(&g.gate), esc(&g.detail));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");

    if r.destination.is_some() || r.keys.is_some() {
        h.push_str("<section id=\"preflight\">\n<h2>Preflight</h2>\n");
        for (what, p) in [("Destination", &r.destination), ("Keys", &r.keys)] {
            if let Some(p) = p {
                preflight(&mut h, what, p);
            }
        }
        h.push_str("</section>\n");
    }

    let _ =
        writeln!(h, "<section id=\"problems\">\n<h2>Problems <span class=\"muted\">({}, most severe first)</span></h2>", r.problems.len());
    if r.problems.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>\n");
    } else {
        h.push_str("<table>\n<tr><th>severity</th><th>code</th><th>where</th><th class=\"n\">count</th><th>what</th></tr>\n");
        for p in &r.problems {
            let table = match r.tables.iter().position(|t| t.table == p.table) {
                Some(i) => format!("<a href=\"#t-{i}\">{}</a>", esc(&p.table)),
                None => esc(&p.table),
            };
            let column = p.column.as_ref().map_or(String::new(), |c| format!(".{}", esc(c)));
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{table}{column}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                severity_badge(p.severity),
                esc(&p.code),
                num(p.count),
                esc(&p.message)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");

    overview(&mut h, r);
    for (i, t) in r.tables.iter().enumerate() {
        table_section(&mut h, i, t, r);
    }
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn preflight(h: &mut String, what: &str, p: &Preflight) {
    let badge = if p.problem.is_some() { "<span class=\"b fail\">REFUSED</span>" } else { "<span class=\"b pass\">OK</span>" };
    let _ = writeln!(h, "<h3>{badge} {what} <code>{}</code></h3>", esc(&p.target));
    if let Some(problem) = &p.problem {
        let _ = writeln!(h, "<p class=\"err\">{}</p>", esc(problem));
    }
    if !p.checks.is_empty() {
        h.push_str("<ul>");
        for c in &p.checks {
            let _ = write!(h, "<li>{}</li>", esc(c));
        }
        h.push_str("</ul>\n");
    }
}

/// One row per table with a written-vs-quarantined bar.
fn overview(h: &mut String, r: &Report) {
    h.push_str("<section id=\"tables\">\n<h2>Tables</h2>\n<table>\n<tr><th>table</th><th class=\"n\">read</th><th class=\"n\">would write</th>\
                <th class=\"n\">quarantined</th><th>written / quarantined</th><th>read as</th><th class=\"n\">k</th><th class=\"n\">problems</th></tr>\n");
    for (i, t) in r.tables.iter().enumerate() {
        let problems = r.problems.iter().filter(|p| p.table == t.table).count();
        let k = t.k_anonymity.as_ref().map_or("—".to_string(), |k| num(k.k));
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#t-{i}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} ({})</td>\
             <td>{}</td><td>{}</td><td class=\"n\">{k}</td><td class=\"n\">{problems}</td></tr>",
            esc(&t.table),
            num(t.rows_read),
            num(t.rows_written),
            num(t.rows_quarantined),
            pct(t.rows_quarantined, t.rows_read),
            split_bar(t.rows_written, t.rows_quarantined),
            read_as(t),
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn table_section(h: &mut String, i: usize, t: &TableReport, r: &Report) {
    let problems = r.problems.iter().filter(|p| p.table == t.table).count();
    let _ = writeln!(
        h,
        "<section class=\"tbl\" id=\"t-{i}\">\n<h2>{} <span class=\"b {}\">{}</span></h2>\n<p class=\"meta\">inputs: {}</p>",
        esc(&t.table),
        if t.problem.is_some() { "fail" } else { "info" },
        read_as(t),
        if t.inputs.is_empty() {
            "—".to_string()
        } else {
            t.inputs.iter().map(|s| format!("<code>{}</code>", esc(s))).collect::<Vec<_>>().join(", ")
        },
    );
    if let Some(p) = &t.problem {
        let _ = writeln!(h, "<p class=\"err\">Could not be read: {}</p>", esc(p));
    }
    let _ = writeln!(
        h,
        "<div class=\"cards\"><div><b>{}</b>rows read</div><div><b>{}</b>would write</div><div><b>{}</b>quarantined ({})</div><div><b>{problems}</b>problems</div></div>",
        num(t.rows_read),
        num(t.rows_written),
        num(t.rows_quarantined),
        pct(t.rows_quarantined, t.rows_read),
    );

    h.push_str("<div class=\"grid\">\n<div>\n<h3>Quarantine reasons</h3>\n");
    if t.quarantine_reasons.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>\n");
    } else {
        h.push_str(&bar_chart(&t.quarantine_reasons.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>()));
    }
    h.push_str("</div>\n<div>\n<h3>Key</h3>\n");
    match &t.key {
        None => h.push_str("<p class=\"muted\">No key declared.</p>\n"),
        Some(k) => {
            let _ = writeln!(
                h,
                "<dl><dt>columns</dt><dd>{}</dd><dt>duplicates</dt><dd>{}</dd><dt>nulls</dt><dd>{}</dd><dt>first duplicates</dt><dd>{}</dd></dl>",
                code_list(&k.columns),
                num(k.duplicates),
                num(k.nulls),
                positions(&k.first)
            );
        }
    }
    h.push_str("</div>\n</div>\n");

    h.push_str("<h3>Columns</h3>\n<table class=\"cols\">\n<tr><th>name</th><th>from</th><th>type</th><th>rule</th><th>phi</th><th class=\"n\">failures</th>\
                <th>null rate</th><th class=\"n\">distinct ≈</th><th>min</th><th>max</th><th>lossiness</th></tr>\n");
    for c in &t.columns {
        column_row(h, c);
    }
    h.push_str("</table>\n");

    h.push_str("<div class=\"grid\">\n<div>\n<h3>Foreign keys</h3>\n");
    if t.foreign_keys.is_empty() {
        h.push_str("<p class=\"muted\">None declared.</p>\n");
    } else {
        h.push_str("<table>\n<tr><th>column</th><th>references</th><th class=\"n\">orphans</th><th>first</th></tr>\n");
        for f in &t.foreign_keys {
            let exact = if f.exact {
                ""
            } else {
                " <span class=\"muted\" title=\"the referenced table was only sampled\">(sampled: may be false alarms)</span>"
            };
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td class=\"n\">{}{exact}</td><td>{}</td></tr>",
                esc(&f.column),
                esc(&f.references),
                num(f.orphans),
                positions(&f.first)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</div>\n<div>\n<h3>Source columns</h3>\n");
    let s = &t.source_columns;
    if s.unmapped.is_empty() && s.unclassified.is_empty() && s.new.is_empty() {
        h.push_str("<p class=\"muted\">Every source column is mapped and classified.</p>\n");
    } else {
        let _ = writeln!(
            h,
            "<dl><dt>unmapped</dt><dd>{}</dd><dt>unclassified</dt><dd>{}</dd><dt>new</dt><dd>{}</dd></dl>",
            code_list(&s.unmapped),
            code_list(&s.unclassified),
            code_list(&s.new)
        );
    }
    h.push_str("</div>\n</div>\n");

    h.push_str("<h3>Residual PHI</h3>\n");
    if t.residual_phi.is_empty() {
        h.push_str("<p class=\"muted\">The detectors found nothing in text columns written as they are.</p>\n");
    } else {
        h.push_str("<table>\n<tr><th>column</th><th>detector</th><th class=\"n\">values</th><th>first</th></tr>\n");
        for p in &t.residual_phi {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&p.column),
                esc(&p.detector),
                num(p.count),
                positions(&p.first)
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str("<div class=\"grid\">\n<div>\n<h3>Safe Harbor checklist</h3>\n");
    if t.safe_harbor.is_empty() {
        h.push_str("<p class=\"muted\">Not applicable.</p>\n");
    } else {
        h.push_str("<table class=\"sh\">\n<tr><th>category</th><th>covered by</th></tr>\n");
        for c in &t.safe_harbor {
            let by = if c.columns.is_empty() {
                "<span class=\"muted\">no column</span>".to_string()
            } else {
                c.columns.iter().map(|b| format!("<code>{}</code>: {}", esc(&b.column), esc(&b.rule))).collect::<Vec<_>>().join("<br>")
            };
            let _ = writeln!(h, "<tr><td>{}</td><td>{by}</td></tr>", esc(c.category));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</div>\n<div>\n<h3>k-anonymity</h3>\n");
    match &t.k_anonymity {
        None => h.push_str("<p class=\"muted\">No quasi-identifiers.</p>\n"),
        Some(k) => {
            let _ = writeln!(
                h,
                "<dl><dt>quasi-identifiers</dt><dd>{}</dd><dt>classes</dt><dd>{}</dd><dt>k</dt><dd><b>{}</b></dd>\
                 <dt>records in classes &lt; 5</dt><dd>{}</dd><dt>records in classes &lt; 11</dt><dd>{}</dd>\
                 <dt>prosecutor risk, max</dt><dd>{:.3}</dd><dt>prosecutor risk, average</dt><dd>{:.3}</dd></dl>",
                code_list(&k.columns),
                num(k.classes),
                num(k.k),
                num(k.records_below_5),
                num(k.records_below_11),
                finite(k.prosecutor_risk_max),
                finite(k.prosecutor_risk_avg),
            );
        }
    }
    h.push_str("<h3>Estimate for a full run</h3>\n");
    let e = &t.estimate;
    let _ = writeln!(
        h,
        "<dl><dt>source bytes</dt><dd>{}</dd><dt>source rows</dt><dd>{}</dd><dt>Parquet bytes</dt><dd>{}</dd><dt>time</dt><dd>{}</dd></dl>",
        e.source_bytes.map_or("unknown".to_string(), bytes),
        e.source_rows.map_or("unknown".to_string(), |n| if t.complete { num(n) } else { format!("≈ {}", num(n)) }),
        bytes(e.output_bytes),
        duration(e.seconds),
    );
    h.push_str("</div>\n</div>\n</section>\n");
}

fn column_row(h: &mut String, c: &ColumnReport) {
    let mut failures = num(c.failures);
    if !c.failure_reasons.is_empty() {
        let reasons: Vec<String> = c.failure_reasons.iter().map(|(k, v)| format!("{} {}", esc(k), num(*v))).collect();
        let _ = write!(failures, "<br><small>{}</small>", reasons.join(", "));
    }
    if !c.first_failures.is_empty() {
        let _ = write!(failures, "<details><summary>rows</summary>{}</details>", positions(&c.first_failures));
    }
    let opt = |v: &Option<String>| v.as_ref().map_or("—".to_string(), |s| format!("<code>{}</code>", esc(s)));
    let _ = writeln!(
        h,
        "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{failures}</td>\
         <td class=\"nr\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&c.name),
        esc(&c.from),
        esc(&c.r#type),
        esc(&c.rule),
        c.phi.as_deref().map_or("—".to_string(), esc),
        rate_bar(c.null_rate),
        num(c.distinct_approx),
        opt(&c.min),
        opt(&c.max),
        if c.lossiness.is_empty() { "—".to_string() } else { c.lossiness.iter().map(|s| esc(s)).collect::<Vec<_>>().join("<br>") },
    );
}

/// A horizontal bar chart of labelled counts, as inline SVG.
fn bar_chart(items: &[(&str, u64)]) -> String {
    const LABEL: usize = 190;
    const BAR: usize = 240;
    const ROW: usize = 22;
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let height = items.len() * ROW + 4;
    let width = LABEL + BAR + 90;
    let mut s = format!(
        "<svg class=\"chart\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"quarantine reasons\">\n"
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = i * ROW + 2;
        let w = ((*n as f64 / max as f64) * BAR as f64).round().max(1.0);
        let _ = writeln!(
            s,
            "<g><title>{}: {}</title><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{w}\" height=\"16\" rx=\"2\" fill=\"#d9534f\"/>\
             <text x=\"{}\" y=\"{}\">{}</text></g>",
            esc(label),
            num(*n),
            LABEL - 8,
            y + 13,
            esc(&clip(label, 28)),
            LABEL as f64 + w + 6.0,
            y + 13,
            num(*n)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A small inline bar for a rate in [0, 1], with the rate as text.
fn rate_bar(rate: f64) -> String {
    let rate = finite(rate).clamp(0.0, 1.0);
    let w = (rate * 60.0 * 10.0).round() / 10.0;
    format!(
        "<svg width=\"60\" height=\"10\" viewBox=\"0 0 60 10\" aria-hidden=\"true\"><rect width=\"60\" height=\"10\" fill=\"#e5e7eb\"/>\
         <rect width=\"{w}\" height=\"10\" fill=\"#6c8ebf\"/></svg> {:.1}%",
        rate * 100.0
    )
}

/// Written (green) against quarantined (red) rows, as one 160-pixel bar.
fn split_bar(written: u64, quarantined: u64) -> String {
    let total = written + quarantined;
    let q = if total == 0 { 0.0 } else { ((quarantined as f64 / total as f64) * 160.0).round() };
    // A quarantined row stays visible however few there are.
    let q = if quarantined > 0 { q.max(2.0) } else { q };
    let fill = if total == 0 { "#e5e7eb" } else { "#5cb85c" };
    format!(
        "<svg width=\"160\" height=\"12\" viewBox=\"0 0 160 12\" aria-hidden=\"true\"><rect width=\"160\" height=\"12\" fill=\"{fill}\"/>\
         <rect x=\"{}\" width=\"{q}\" height=\"12\" fill=\"#d9534f\"/></svg>",
        160.0 - q
    )
}

/// `file:line (record N)`; databases have no line, so `source:relation (record N)`.
fn position(r: &RowRef) -> String {
    if r.line == 0 { format!("{} (record {})", r.file, r.record) } else { format!("{}:{} (record {})", r.file, r.line, r.record) }
}

fn positions(rows: &[RowRef]) -> String {
    if rows.is_empty() {
        return "—".into();
    }
    rows.iter().map(|r| format!("<code>{}</code>", esc(&position(r)))).collect::<Vec<_>>().join(", ")
}

fn code_list(items: &[String]) -> String {
    if items.is_empty() { "—".into() } else { items.iter().map(|s| format!("<code>{}</code>", esc(s))).collect::<Vec<_>>().join(", ") }
}

/// `1 check`, `2 checks`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "ERROR",
        Severity::Warning => "WARN",
        Severity::Info => "INFO",
    }
}

fn severity_badge(s: Severity) -> String {
    let class = match s {
        Severity::Error => "fail",
        Severity::Warning => "warn",
        Severity::Info => "info",
    };
    format!("<span class=\"b {class}\">{}</span>", severity(s))
}

fn read_as(t: &TableReport) -> &'static str {
    if t.problem.is_some() {
        "unreadable"
    } else if t.complete {
        "complete"
    } else {
        "sampled"
    }
}

fn sampling(s: Sampling) -> String {
    match s {
        Sampling::Sample(n) => format!("sample of the first {} rows per table", num(n)),
        Sampling::Full => "full read".into(),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// At most `width` characters, the last one `…` when cut.
fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width { s.to_string() } else { s.chars().take(width.saturating_sub(1)).chain(['…']).collect() }
}

/// `1234567` → `1,234,567`.
fn num(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    let p = part as f64 / whole as f64 * 100.0;
    if part > 0 && p < 0.1 { "<0.1%".into() } else { format!("{p:.1}%") }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn duration(secs: f64) -> String {
    let s = finite(secs).max(0.0);
    if s < 1.0 {
        "under 1 s".into()
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{} h {} min", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

const CSS: &str = "
:root{--fg:#1f2328;--muted:#6b7280;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:16px 24px;background:var(--soft);border-bottom:1px solid var(--line)}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
main{padding:0 24px 48px;max-width:1400px}
.meta{color:var(--muted);margin:4px 0}
.muted{color:var(--muted);font-weight:normal}
.err{color:#b42318;font-weight:600}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:1px 3px;border-radius:3px}
table{border-collapse:collapse;margin:4px 0 8px}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.nr{white-space:nowrap;font-variant-numeric:tabular-nums}
td.nr svg{vertical-align:middle}
.status{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-size:16px;vertical-align:middle}
.status.ok{background:#1a7f37}.status.failed{background:#b42318}
.b{display:inline-block;padding:0 6px;border-radius:3px;font-size:11px;font-weight:700;color:#fff;vertical-align:middle}
.b.pass{background:#1a7f37}.b.fail{background:#b42318}.b.warn{background:#b35900}.b.info{background:#57606a}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}
.cards div{border:1px solid var(--line);border-radius:6px;padding:6px 12px;min-width:140px;color:var(--muted)}
.cards b{display:block;font-size:20px;color:var(--fg)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:0 32px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:4px 0}
dt{color:var(--muted)}dd{margin:0}
svg.chart text{font-size:12px;fill:var(--fg)}
section.tbl{margin-top:32px}
details summary{cursor:pointer;color:var(--muted);font-size:12px}
@media print{details{display:block}}
";

#[cfg(test)]
#[path = "report_view_tests.rs"]
mod tests;
