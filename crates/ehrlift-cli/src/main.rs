//! `ehrlift`: the command line. Only this crate knows about terminals, flags and
//! exit statuses; the libraries report through `Reporter` and typed errors.

mod init;
mod layout;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ehrlift_core::ErrorClass;
use ehrlift_load::{FindingKind, ObjectStore, RunStatus};
use ehrlift_mapping::{Plan, ProcessEnv, load_plan};
use ehrlift_pipeline::{DestOverrides, PipelineError, RunOptions};

mod read;
mod report_view;

/// Move legacy EHR data into encrypted object storage without leaking it.
///
/// Exit status: 0 ok; 1 rows quarantined over a table's threshold, or `verify` found
/// a problem; 2 configuration error (nothing was read or written); 3 transient
/// infrastructure failure (run again to resume); 4 internal error (a bug).
#[derive(Debug, Parser)]
#[command(name = "ehrlift", version, about, max_term_width = 100)]
struct Cli {
    /// Log format on stderr: `plain` for people, `json` for log stacks.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    /// Progress display: bars on a terminal, periodic log lines otherwise.
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Seconds between progress log lines when not drawing bars.
    #[arg(long, global = true, default_value_t = 10)]
    progress_interval: u64,
    /// More log detail (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum LayoutCommand {
    /// Convert another tool's fixed-width layout into an ehrlift layout (TOML).
    ///
    /// Example: ehrlift layout import --format naaccr-xml naaccr-14-layout.xml --record-length 3339 -o naaccr14.layout.toml
    Import {
        /// What the input is.
        #[arg(long, value_enum)]
        format: layout::ImportFormat,
        /// The layout file to read.
        input: PathBuf,
        /// Keep only fields that end within this many bytes, and make it the record
        /// length (NAACCR: 3339 for the incidence record of the full layout).
        #[arg(long)]
        record_length: Option<usize>,
        /// Write here instead of stdout.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plan, or resume its interrupted run.
    ///
    /// Example: ehrlift run mappings/demo/ehrlift.toml --dest file://out/demo
    Run {
        /// The plan file (ehrlift.toml).
        plan: PathBuf,
        #[command(flatten)]
        dest: DestArgs,
        /// Start over: delete this plan's tables at the destination and begin a new run.
        #[arg(long)]
        fresh: bool,
        /// Print the run outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Threads encoding Parquet columns (default: the plan's `encode_threads`; 0 = one per core).
        #[arg(long, value_name = "N")]
        encode_threads: Option<usize>,
        /// Tables extracted at the same time, 1 to 64 (default: the plan's `[run] jobs`, else 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: Option<u16>,
        /// Run shard I of N (0-based) of a sharded run. Without it the shard comes from
        /// EHRLIFT_SHARD=I/N, AWS Batch (AWS_BATCH_JOB_ARRAY_INDEX, AWS_BATCH_JOB_ARRAY_SIZE)
        /// or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with EHRLIFT_SHARDS=N).
        #[arg(long, value_name = "I/N", conflicts_with = "fresh")]
        shard: Option<ehrlift_pipeline::Shard>,
    },
    /// Finish a sharded run: check every shard committed all its units and write the run
    /// manifest. The last shard to finish does this itself; exit 3 while shards are
    /// still to finish (a scheduler may retry).
    ///
    /// Example: ehrlift finalize mappings/demo/ehrlift.toml --dest s3://bucket/demo
    Finalize {
        /// The plan file.
        plan: PathBuf,
        #[command(flatten)]
        dest: DestArgs,
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Scaffold a plan and one mapping per table from a database's catalog.
    ///
    /// Primary keys become resume keys, foreign keys are noted, PHI tags are guessed from
    /// names and sampled values, and every column init is not sure of is dropped with a
    /// REVIEW comment: the scaffold fails closed until a person reviews it. The URL is never
    /// written; the plan reads it from EHRLIFT_SOURCE_URL.
    ///
    /// Example: ehrlift init --source-env LEGACY_URL --schema emr --out mappings/legacy/
    Init {
        /// Database URL (postgres://, mysql://, mariadb://, sqlite://PATH). A password on the
        /// command line is visible to other users of the machine: prefer --source-env.
        #[arg(long, required_unless_present = "source_env", conflicts_with = "source_env")]
        source: Option<String>,
        /// Environment variable holding the database URL.
        #[arg(long, value_name = "VAR")]
        source_env: Option<String>,
        /// Schema (PostgreSQL; default public) or database (MySQL; default the URL's).
        #[arg(long)]
        schema: Option<String>,
        /// Directory to write ehrlift.toml and tables/*.toml into.
        #[arg(long)]
        out: PathBuf,
        /// Project name (default: the --out directory's name).
        #[arg(long)]
        project: Option<String>,
        /// Rows sampled per table to guess PHI from values (kept in memory only).
        #[arg(long, default_value_t = 200)]
        sample_rows: u32,
        /// Overwrite an existing scaffold.
        #[arg(long)]
        force: bool,
    },
    /// Check a plan, its mappings, its source files' headers and its database tables, and
    /// the destination's preflight (for S3: reachable, default encryption aws:kms, KMS key
    /// usable, a probe object written and deleted); writes nothing else.
    ///
    /// With --sample N or --full it also reads the sources, runs every mapping and privacy
    /// rule without writing anything, and reports what a run would do: rows written and
    /// quarantined by reason, per-column failures and null rates, key and reference checks,
    /// unmapped and unclassified columns, residual PHI in kept text, k-anonymity over the
    /// quasi-identifiers, estimates; the plan's [validate] gates decide the exit status.
    ///
    /// Example: ehrlift validate mappings/synthea/ehrlift.toml --sample 10000 --report-dir out/report
    Validate {
        /// The plan file.
        plan: PathBuf,
        #[command(flatten)]
        dest: DestArgs,
        /// Read the first N source rows of each table and report on them.
        #[arg(long, value_name = "N", conflicts_with = "full", value_parser = clap::value_parser!(u64).range(1..))]
        sample: Option<u64>,
        /// Read every source row and report on them.
        #[arg(long)]
        full: bool,
        /// Write report.json and report.html into DIR (with --sample or --full).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Recompute every object of the destination's current run against its manifest; on
    /// S3, also check each object's SSE-KMS encryption and key.
    ///
    /// Example: ehrlift verify file://out/demo
    Verify {
        /// Destination URL (file://PATH, a plain directory path, or s3://BUCKET/PREFIX).
        url: String,
        /// Plan whose [destination] settings (region, endpoint, kms_key) apply; its KMS key
        /// must be the one every object is encrypted with.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// KMS key every object must be encrypted with (id, alias/NAME or ARN).
        #[arg(long, value_name = "KEY_ID_OR_ARN")]
        kms_key: Option<String>,
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Reverse the tokens of a `tokenize` column: prints each token's value on stdout.
    ///
    /// The values are PHI: they go to stdout only, never to logs. Tokens come from the
    /// arguments, or one per line on stdin. With --dest, the key must be the one that
    /// destination was written with.
    ///
    /// Example: ehrlift reidentify plan.toml --column patients.mrn tok_Qm9...
    Reidentify {
        /// The plan file.
        plan: PathBuf,
        /// The tokenized column, as TABLE.COLUMN.
        #[arg(long, value_name = "TABLE.COLUMN")]
        column: String,
        #[command(flatten)]
        dest: DestArgs,
        /// Print `[{"token": .., "value": ..}]` as JSON instead of one value per line.
        #[arg(long)]
        json: bool,
        /// Tokens (default: read from stdin, one per line).
        tokens: Vec<String>,
    },
    /// Print the rows of Parquet objects written by ehrlift, decrypting encrypted columns
    /// for a reader who holds their keys (KMS keys through the standard AWS chain; local
    /// keys through --plan's keyring). The rows may be PHI: they go to stdout only.
    ///
    /// Example: ehrlift read s3://bucket/prefix/patients/ --columns id,birth_year --format json
    Read {
        /// An object (…/part-000001.parquet) or a table prefix (every .parquet under it),
        /// as file://PATH, a path, or s3://BUCKET/KEY.
        url: String,
        /// Columns to print, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = read::Format::Csv)]
        format: read::Format,
        /// Stop after this many rows.
        #[arg(long)]
        limit: Option<usize>,
        /// Plan whose keyring (local keys) and [destination] settings apply.
        #[arg(long)]
        plan: Option<PathBuf>,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Fixed-width layouts.
    #[command(subcommand)]
    Layout(LayoutCommand),
    /// Show how far a plan's run at its destination has got.
    ///
    /// Example: ehrlift status mappings/demo/ehrlift.toml
    Status {
        /// The plan file.
        plan: PathBuf,
        #[command(flatten)]
        dest: DestArgs,
        /// Print the status as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Where a plan's run writes: flags overriding its `[destination]`.
#[derive(Debug, Clone, Args)]
struct DestArgs {
    /// Destination URL (file://PATH, a directory path, or s3://BUCKET/PREFIX), overriding the plan's.
    #[arg(long, value_name = "URL")]
    dest: Option<String>,
    /// KMS key for SSE-KMS on an s3:// destination (id, alias/NAME or ARN), overriding the plan's `kms_key`.
    #[arg(long, value_name = "KEY_ID_OR_ARN")]
    kms_key: Option<String>,
    /// S3 endpoint of an S3-compatible store (default: AWS_ENDPOINT_URL, else AWS).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
}

impl DestArgs {
    fn overrides(&self) -> DestOverrides {
        DestOverrides { url: self.dest.clone(), kms_key: self.kms_key.clone(), endpoint_url: self.endpoint_url.clone() }
    }
}

/// Endpoint flags of commands that take a URL instead of a plan.
#[derive(Debug, Clone, Args)]
struct EndpointArgs {
    /// S3 endpoint of an S3-compatible store (default: AWS_ENDPOINT_URL, else AWS).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region (default: the standard chain).
    #[arg(long)]
    region: Option<String>,
    /// Path-style S3 addressing (https://host/bucket/key).
    #[arg(long)]
    path_style: bool,
    /// Allow an http:// endpoint (a local test server).
    #[arg(long)]
    allow_insecure_endpoint: bool,
}

impl EndpointArgs {
    /// The cloud settings: the plan's, with these flags over them.
    fn cloud(&self, plan: Option<&Plan>) -> ehrlift_mapping::CloudSettings {
        let mut c = plan.map(|p| p.cloud.clone()).unwrap_or_default();
        if self.endpoint_url.is_some() {
            c.endpoint_url = self.endpoint_url.clone();
        }
        if self.region.is_some() {
            c.region = self.region.clone();
        }
        c.path_style |= self.path_style;
        c.allow_insecure_endpoint |= self.allow_insecure_endpoint;
        c
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressMode {
    Auto,
    Bars,
    Log,
    None,
}

/// A failure with its class; the message names no value.
struct Failure {
    class: ErrorClass,
    message: String,
}

impl From<PipelineError> for Failure {
    fn from(e: PipelineError) -> Self {
        Failure { class: e.class(), message: e.to_string() }
    }
}

fn config(message: impl Into<String>) -> Failure {
    Failure { class: ErrorClass::Configuration, message: message.into() }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ui =
        progress::Ui::new(cli.progress == ProgressMode::Bars || (cli.progress == ProgressMode::Auto && progress::stderr_is_terminal()));
    progress::init_tracing(cli.log_format == LogFormat::Json, cli.verbose, ui.clone());
    install_panic_hook();
    let result = match &cli.command {
        Command::Run { plan, dest, fresh, json, encode_threads, jobs, shard } => {
            let overrides = RunOverrides { encode_threads: *encode_threads, jobs: *jobs };
            match shard.map(Some).map_or_else(|| ehrlift_pipeline::Shard::from_env(|k| std::env::var(k).ok()), Ok).map_err(config) {
                Ok(shard) => cmd_run(&cli, &ui, plan, dest, *fresh, *json, overrides, shard),
                Err(e) => Err(e),
            }
        }
        Command::Finalize { plan, dest, json } => cmd_finalize(plan, dest, *json),
        Command::Init { source, source_env, schema, out, project, sample_rows, force } => {
            let url = match (source, source_env) {
                (Some(u), _) => Ok(u.clone()),
                (None, Some(var)) => std::env::var(var).map_err(|_| config(format!("environment variable {var} is not set"))),
                (None, None) => Err(config("give --source URL or --source-env VAR")),
            };
            url.and_then(|url| {
                init::cmd_init(&init::InitOptions {
                    url: &url,
                    schema: schema.as_deref(),
                    out,
                    project: project.as_deref(),
                    sample_rows: *sample_rows,
                    force: *force,
                })
            })
        }
        Command::Validate { plan, dest, sample, full, report_dir, json } => match (sample, full) {
            (None, false) if report_dir.is_some() => Err(config("--report-dir needs --sample N or --full")),
            (None, false) => cmd_validate(plan, dest, *json),
            (Some(n), _) => cmd_report(plan, dest, ehrlift_pipeline::report::Sampling::Sample(*n), report_dir.as_deref(), *json),
            (None, true) => cmd_report(plan, dest, ehrlift_pipeline::report::Sampling::Full, report_dir.as_deref(), *json),
        },
        Command::Verify { url, plan, kms_key, endpoint, json } => cmd_verify(url, plan.as_deref(), kms_key.as_deref(), endpoint, *json),
        Command::Status { plan, dest, json } => cmd_status(plan, dest, *json),
        Command::Reidentify { plan, column, dest, json, tokens } => cmd_reidentify(plan, column, dest, *json, tokens),
        Command::Layout(LayoutCommand::Import { format, input, record_length, out, force }) => {
            layout::cmd_import(*format, input, *record_length, out.as_ref(), *force)
        }
        Command::Read { url, columns, format, limit, plan, endpoint } => {
            let plan = plan.as_deref().map(load).transpose();
            plan.and_then(|plan| read::cmd_read(url, columns, *format, *limit, plan.as_ref(), &endpoint.cloud(plan.as_ref())))
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            ui.clear();
            tracing::error!(class = ?f.class, "{}", f.message);
            ExitCode::from(f.class.exit_code() as u8)
        }
    }
}

/// Panics are bugs: say so, with the location, and never the payload (it may hold a value).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("ehrlift: internal error (a bug) at {at}; please report it. Exit status 4.");
        std::process::exit(4);
    }));
}

/// Loads a plan and checks it against its privacy profile: every problem at once,
/// each with its file and line.
fn load(plan: &Path) -> Result<Plan, Failure> {
    let plan = load_plan(plan, &ProcessEnv).map_err(|d| {
        let n = d.len();
        config(format!("{n} problem(s) in the plan:\n{d}"))
    })?;
    let violations = ehrlift_deid::policy::check(&plan);
    if violations.is_empty() {
        return Ok(plan);
    }
    let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
    Err(config(format!("{} problem(s) under the {} profile:\n{}", lines.len(), plan.profile.name(), lines.join("\n"))))
}

fn store_for(plan: &Plan, dest: &DestArgs) -> Result<Box<dyn ObjectStore>, Failure> {
    Ok(ehrlift_pipeline::plan_destination(plan, &dest.overrides())?)
}

/// The destination `validate` preflights: the plan's or --dest; none for a plan without
/// a destination (validated without a preflight).
fn preflight_store(plan: &Plan, dest: &DestArgs) -> Result<Option<Box<dyn ObjectStore>>, Failure> {
    match (&plan.destination, &dest.dest) {
        (None, None) => Ok(None),
        _ => store_for(plan, dest).map(Some),
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure { class: ErrorClass::Internal, message: e.to_string() })?;
    write_stdout(&format!("{s}\n"))
}

/// Writes a command's result to stdout. A reader that stopped early (`| head`) is not an
/// error; any other write failure is.
fn write_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure { class: ErrorClass::Transient, message: format!("cannot write to stdout: {e}") })
        }
        _ => Ok(()),
    }
}

/// `run` flags that override the plan's `[run]` settings.
struct RunOverrides {
    encode_threads: Option<usize>,
    jobs: Option<u16>,
}

#[allow(clippy::too_many_arguments)]
fn cmd_run(
    cli: &Cli,
    ui: &progress::Ui,
    plan_path: &Path,
    dest: &DestArgs,
    fresh: bool,
    json: bool,
    overrides: RunOverrides,
    shard: Option<ehrlift_pipeline::Shard>,
) -> Result<u8, Failure> {
    let mut plan = load(plan_path)?;
    if let Some(n) = overrides.encode_threads {
        plan.run.encode_threads = n;
    }
    if let Some(n) = overrides.jobs {
        plan.run.jobs = usize::from(n);
    }
    let store = store_for(&plan, dest)?;
    let reporter: Arc<dyn ehrlift_core::Reporter> = match cli.progress {
        ProgressMode::None => Arc::new(ehrlift_core::NullReporter),
        _ if ui.bars() => Arc::new(progress::BarReporter::new(ui.clone())),
        _ => Arc::new(progress::LogReporter::new(std::time::Duration::from_secs(cli.progress_interval.max(1)))),
    };
    let opts = RunOptions { fresh, reporter };
    let outcome = match shard {
        Some(shard) => ehrlift_pipeline::run_shard(&plan, store.as_ref(), &opts, shard)?,
        None => ehrlift_pipeline::run(&plan, store.as_ref(), &opts)?,
    };
    ui.clear();
    report_outcome(&outcome, store.as_ref(), json)
}

/// Logs a run's (or shard's) outcome, prints it as JSON if asked, and gives its exit status.
fn report_outcome(outcome: &ehrlift_pipeline::RunOutcome, store: &dyn ObjectStore, json: bool) -> Result<u8, Failure> {
    if outcome.already_finished {
        match &outcome.shard {
            Some(shard) if outcome.status == RunStatus::Running => {
                tracing::info!(run_id = %outcome.run_id, %shard, "shard already finished; nothing to do")
            }
            Some(shard) => tracing::info!(run_id = %outcome.run_id, %shard, "run already finished; nothing to do"),
            None => tracing::info!(run_id = %outcome.run_id, "run already finished; nothing to do (use --fresh to start over)"),
        }
    }
    // Run id and shard on every line, as the run's own lines carry them in their span.
    let _span = tracing::info_span!("run", run_id = %outcome.run_id, shard = outcome.shard.as_deref()).entered();
    for t in &outcome.tables {
        // Items of other types (HL7, fixed-width) are named only where there were some.
        let passed_over = (t.rows_passed_over > 0).then_some(t.rows_passed_over);
        let slices = (!t.slices.is_empty()).then_some(t.slices.len());
        tracing::info!(
            table = %t.table, rows_read = t.rows_read, rows_written = t.rows_written, rows_quarantined = t.rows_quarantined,
            passed_over, parts = t.parts, slices, status = ?t.status, "table summary"
        );
    }
    if outcome.status == RunStatus::Running {
        let pending = outcome.pending_shards.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        tracing::info!(run_id = %outcome.run_id, pending_shards = %pending, "shard complete; the last shard to finish writes the run manifest");
    } else {
        tracing::info!(run_id = %outcome.run_id, status = ?outcome.status, manifest = %format!("{}/{}", store.url(), outcome.manifest), "run complete");
    }
    if json {
        print_json(outcome)?;
    }
    // A shard's own tables decide its status until the run is finalized.
    let failed = match outcome.status {
        RunStatus::Complete => false,
        RunStatus::Failed => true,
        RunStatus::Running => outcome.tables.iter().any(|t| t.status != ehrlift_load::TableStatus::Complete),
    };
    Ok(if failed { ErrorClass::Data.exit_code() as u8 } else { 0 })
}

fn cmd_finalize(plan_path: &Path, dest: &DestArgs, json: bool) -> Result<u8, Failure> {
    let plan = load(plan_path)?;
    let store = store_for(&plan, dest)?;
    let outcome = ehrlift_pipeline::finalize(&plan, store.as_ref())?;
    report_outcome(&outcome, store.as_ref(), json)
}

fn cmd_validate(plan_path: &Path, dest: &DestArgs, json: bool) -> Result<u8, Failure> {
    let plan = load(plan_path)?;
    let store = preflight_store(&plan, dest)?;
    let report = ehrlift_pipeline::validate(&plan, store.as_deref());
    if json {
        print_json(&report)?;
    }
    eprintln!("profile: {}", report.profile);
    for p in report.destination.iter().chain(&report.keys) {
        match &p.problem {
            None => eprintln!("ok    {}", p.target),
            Some(problem) => eprintln!("ERROR {}: {problem}", p.target),
        }
        for c in &p.checks {
            eprintln!("        {c}");
        }
    }
    for t in &report.tables {
        match &t.problem {
            None => eprintln!("ok    {:<24} {} file(s), {} bytes, {} output column(s)", t.table, t.files, t.bytes, t.columns),
            Some(p) => eprintln!("ERROR {:<24} {p}", t.table),
        }
        eprintln!("      Safe Harbor identifiers:");
        for c in &t.safe_harbor {
            let cover = if c.columns.is_empty() {
                "-".to_owned()
            } else {
                c.columns.iter().map(|c| format!("{}: {}", c.column, c.rule)).collect::<Vec<_>>().join(", ")
            };
            eprintln!("        {:<12} {cover}", c.category);
        }
    }
    if report.ok() {
        eprintln!("plan {} is valid: {} table(s)", plan_path.display(), report.tables.len());
        Ok(0)
    } else {
        Ok(ErrorClass::Configuration.exit_code() as u8)
    }
}

/// `validate --sample N | --full`: the data report, on stderr as a summary, as JSON on
/// stdout with --json, as report.json and report.html under --report-dir.
fn cmd_report(
    plan_path: &Path,
    dest: &DestArgs,
    sampling: ehrlift_pipeline::report::Sampling,
    report_dir: Option<&Path>,
    json: bool,
) -> Result<u8, Failure> {
    let plan = load(plan_path)?;
    let store = preflight_store(&plan, dest)?;
    // The preflights of a plain validate; then the sources are read (the profile finds
    // and checks each table's input itself), nothing is written.
    let (destination, keys) = ehrlift_pipeline::preflights(&plan, store.as_deref());
    let opts = ehrlift_pipeline::ProfileOptions { sampling, destination, keys };
    let report = ehrlift_pipeline::profile(&plan, &opts)?;
    if let Some(dir) = report_dir {
        let io = |e: std::io::Error| Failure { class: ErrorClass::Transient, message: format!("report directory {}: {e}", dir.display()) };
        std::fs::create_dir_all(dir).map_err(io)?;
        let body = serde_json::to_vec_pretty(&report).map_err(|e| Failure { class: ErrorClass::Internal, message: e.to_string() })?;
        std::fs::write(dir.join("report.json"), body).map_err(io)?;
        std::fs::write(dir.join("report.html"), report_view::html(&report)).map_err(io)?;
    }
    if json {
        print_json(&report)?;
    }
    eprint!("{}", report_view::terminal_summary(&report));
    if let Some(dir) = report_dir {
        eprintln!("report: {} and {}", dir.join("report.json").display(), dir.join("report.html").display());
    }
    Ok(if report.tables.iter().any(|t| t.problem.is_some()) {
        ErrorClass::Configuration.exit_code() as u8
    } else if report.ok {
        0
    } else {
        ErrorClass::Data.exit_code() as u8
    })
}

fn cmd_verify(url: &str, plan: Option<&Path>, kms_key: Option<&str>, endpoint: &EndpointArgs, json: bool) -> Result<u8, Failure> {
    let plan = plan.map(load).transpose()?;
    let cloud = endpoint.cloud(plan.as_ref());
    let project = plan.as_ref().map_or("", |p| p.project.as_str());
    let store = ehrlift_pipeline::open_destination(url, project, &cloud, &DestOverrides::default())?;
    // The key objects must carry: --kms-key, else the plan's; resolved to its ARN.
    let expected = match kms_key.map(str::to_owned).or_else(|| plan.as_ref().and_then(|p| p.cloud.kms_key.clone())) {
        Some(k) if url.starts_with("s3://") => Some(
            ehrlift_aws::KmsWrapper::new(&k, &ehrlift_pipeline::kms_settings(&cloud))
                .and_then(|w| w.check())
                .map_err(|e| Failure { class: e.class(), message: e.to_string() })?,
        ),
        _ => None,
    };
    let mut report = ehrlift_load::verify(store.as_ref(), expected.as_deref()).map_err(|e| match e {
        ehrlift_load::VerifyError::Store(s) => Failure { class: s.class(), message: s.to_string() },
        other => Failure { class: ErrorClass::Data, message: other.to_string() },
    })?;
    // The vault is not a run object (runs share it), but a lost segment would give its
    // values new surrogates: its headers' counts must cover what was recorded.
    if let Some(v) = ehrlift_pipeline::check_vault(store.as_ref())?
        && !v.ok()
    {
        eprintln!(
            "FAIL {}: {} segment(s) hold {} entries, {} recorded: a segment is missing",
            ehrlift_pipeline::VAULT_PREFIX,
            v.segments,
            v.in_segments,
            v.recorded
        );
        report.findings.push(ehrlift_load::Finding { key: ehrlift_pipeline::VAULT_PREFIX.to_owned(), kind: FindingKind::Missing });
    }
    if json {
        print_json(&report)?;
    }
    for f in &report.findings {
        let what = match f.kind {
            FindingKind::Missing => "missing",
            FindingKind::Extra => "extra (not in the manifest)",
            FindingKind::Altered => "altered (size or SHA-256 differs)",
            FindingKind::NotEncrypted => "not encrypted with SSE-KMS",
            FindingKind::WrongKey => "encrypted with another KMS key than the manifest's or the plan's",
        };
        eprintln!("FAIL {}: {what}", f.key);
    }
    if report.findings.is_empty() {
        eprintln!(
            "verified run {}: {} object(s), {} bytes, {} rows; all match the manifest{}",
            report.run_id,
            report.objects_checked,
            report.bytes_hashed,
            report.rows,
            report.kms_key_arn.as_ref().map(|k| format!(", all SSE-KMS under {k}")).unwrap_or_default()
        );
        Ok(0)
    } else {
        eprintln!("verification of run {} FAILED: {} problem(s)", report.run_id, report.findings.len());
        Ok(ErrorClass::Data.exit_code() as u8)
    }
}

fn cmd_reidentify(plan_path: &Path, column: &str, dest: &DestArgs, json: bool, tokens: &[String]) -> Result<u8, Failure> {
    let plan = load(plan_path)?;
    let (table, col) = column.split_once('.').ok_or_else(|| config(format!("--column `{column}`: expected TABLE.COLUMN")))?;
    // The destination's key record is checked when one is given; a KMS-wrapped project
    // key is kept there, so the plan's destination is used for it.
    let store = match (&dest.dest, &plan.keys) {
        (Some(_), _) | (None, ehrlift_mapping::KeysConfig::AwsKms { .. }) => Some(store_for(&plan, dest)?),
        (None, _) => None,
    };
    let key = ehrlift_pipeline::load_project_key(&plan, store.as_deref())?;
    let tokenizer = ehrlift_deid::tokenizer_for(&plan, &key, table, col).map_err(config)?;
    let tokens: Vec<String> = if tokens.is_empty() {
        std::io::stdin().lines().map_while(Result::ok).filter(|l| !l.trim().is_empty()).collect()
    } else {
        tokens.to_vec()
    };
    let mut failed = 0usize;
    let mut out = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let value = tokenizer.reveal(t);
        if value.is_none() {
            failed += 1;
            eprintln!("token #{}: not a token of {table}.{col} under key {}", i + 1, key.id());
        }
        out.push(serde_json::json!({ "token": t, "value": value.as_deref().map(String::as_str) }));
        if !json {
            println!("{}", value.as_deref().map_or("", String::as_str));
        }
    }
    if json {
        print_json(&out)?;
    }
    Ok(if failed > 0 { ErrorClass::Data.exit_code() as u8 } else { 0 })
}

fn cmd_status(plan_path: &Path, dest: &DestArgs, json: bool) -> Result<u8, Failure> {
    let plan = load(plan_path)?;
    let store = store_for(&plan, dest)?;
    let report = ehrlift_pipeline::status(&plan, store.as_ref())?;
    if json {
        print_json(&report)?;
        return Ok(0);
    }
    let Some(state) = &report.state else {
        eprintln!("no run at {} yet", store.url());
        return Ok(0);
    };
    match state.shards {
        Some(n) => eprintln!("run {} ({:?}, {n} shards, started {})", state.run_id, state.status, state.started_at),
        None => eprintln!("run {} ({:?}, attempt {}, started {})", state.run_id, state.status, state.attempts, state.started_at),
    }
    if !report.plan_matches {
        eprintln!("warning: the plan or its mappings changed since this run started; `run` will refuse to resume it (use --fresh)");
    }
    for s in &report.shards {
        let st = if s.finished {
            "finished"
        } else if s.attempts == 0 {
            "not started"
        } else {
            "in progress"
        };
        eprintln!("  shard {:<18} {:<20} units {:>5}  attempts {:>3}", s.shard, st, s.units, s.attempts);
    }
    if state.shards.is_some() && report.tables.is_empty() {
        eprintln!("  (no shard has split the run into units yet)");
    }
    for t in &report.tables {
        let st = match t.finished {
            Some(s) => format!("{s:?}").to_lowercase(),
            None if t.parts == 0 => "not started".into(),
            None => "in progress".into(),
        };
        let name = match (t.slice, t.shard) {
            (Some(slice), Some(shard)) => format!("{} [{slice}] @{shard}", t.table),
            (None, Some(shard)) => format!("{} @{shard}", t.table),
            _ => t.table.clone(),
        };
        eprintln!(
            "  {:<24} {:<20} parts {:>5}  read {:>12}  written {:>12}  quarantined {:>10}",
            name, st, t.parts, t.rows_read, t.rows_written, t.rows_quarantined
        );
    }
    Ok(0)
}
