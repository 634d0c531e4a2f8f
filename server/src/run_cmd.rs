//! `weir run`: run statements over NDJSON events offline, as a Unix filter.
//!
//! Events are read from `--input STREAM=FILE` (any number, read one after the other in
//! the order given) or from standard input (`--stream NAME`, which may be left out when
//! the statements declare exactly one stream). Every output record (language §7) is
//! written to standard output as one NDJSON line, in a deterministic order: the order the
//! engine decides them in. At the end of the input every stream's watermark moves to the
//! end, so pending absences, greedy tails and open windows are emitted.
//!
//! A line that cannot be used (bad JSON, wrong type, missing event time) is reported on
//! standard error with its file and line number and skipped; the run goes on. Exit code:
//! 0 = every line was used, 1 = some lines were rejected (or the statements have errors),
//! 2 = the run could not start.
//!
//! Offsets: the log offset of an event is its 0-based line number in its input, so
//! output ids depend only on the inputs and the statements.
//!
//! Speed: a second thread reads the input, splits it into lines and decodes them straight
//! into rows (`RowDecoder::decode_str`, no intermediate `serde_json::Value`), in batches
//! and in order; this thread runs the engine and prints. Reports and output are the same
//! as if everything ran on one thread.

use crate::check_cmd::{collect_files, read_text};
use anyhow::{bail, Context as _};
use dsl::check::Catalog;
use indicatif::{ProgressBar, ProgressStyle};
use matcher::engine::{Engine, EngineConfig};
use matcher::value::{Row, RowDecoder};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Args {
    /// Statement files or folders of `*.weir` files.
    #[arg(long = "rules", required = true, num_args = 1..)]
    pub rules: Vec<PathBuf>,
    /// Events of a stream from an NDJSON file: `STREAM=FILE` (repeatable).
    #[arg(long = "input", value_name = "STREAM=FILE")]
    pub inputs: Vec<String>,
    /// The stream that events on standard input belong to.
    #[arg(long = "stream")]
    pub stream: Option<String>,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Inputs larger than this get a progress bar (when standard error is a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

/// Longest accepted input line.
const MAX_LINE_BYTES: usize = 16 << 20;

/// Loads statement files into a catalog; on errors prints them and returns `None`.
pub fn load_catalog(paths: &[PathBuf]) -> anyhow::Result<Option<Catalog>> {
    let files = collect_files(paths)?;
    let mut catalog = Catalog::new();
    let mut failed = false;
    for f in &files {
        let src = read_text(f)?;
        let name = f.display().to_string();
        let diags = catalog.check_source(&src);
        for d in &diags {
            eprint!("{}", d.render(&name, &src));
        }
        failed |= diags.iter().any(|d| d.is_error());
    }
    Ok((!failed).then_some(catalog))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Source {
    stream: String,
    label: String,
    reader: Box<dyn Read + Send>,
    size: Option<u64>,
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let Some(catalog) = load_catalog(&args.rules)? else {
        eprintln!("weir run: the statements have errors; nothing was run");
        return Ok(ExitCode::from(1));
    };
    let mut engine = match Engine::new(&catalog, 0, &EngineConfig::default()) {
        Ok(e) => e,
        Err(diags) => {
            for d in diags {
                eprintln!("weir run: error: {}", d.message);
            }
            return Ok(ExitCode::from(1));
        }
    };
    let streams = engine.source_streams().to_vec();
    let mut sources = Vec::new();
    for spec in &args.inputs {
        let Some((stream, file)) = spec.split_once('=') else {
            bail!("--input takes STREAM=FILE, got `{spec}`");
        };
        if !streams.iter().any(|s| s == stream) {
            bail!(
                "--input {spec}: unknown stream `{stream}` (declared streams: {})",
                streams.join(", ")
            );
        }
        let f = File::open(file).with_context(|| format!("cannot open `{file}`"))?;
        let size = f.metadata().ok().map(|m| m.len());
        sources.push(Source {
            stream: stream.to_string(),
            label: file.to_string(),
            reader: Box::new(f),
            size,
        });
    }
    if sources.is_empty() {
        let stream = match (&args.stream, streams.as_slice()) {
            (Some(s), _) => {
                if !streams.contains(s) {
                    bail!(
                        "--stream {s}: unknown stream (declared streams: {})",
                        streams.join(", ")
                    );
                }
                s.clone()
            }
            (None, [one]) => one.clone(),
            (None, []) => bail!("the statements declare no stream to read events into"),
            (None, _) => bail!(
                "several streams are declared ({}); say which one standard input holds with --stream NAME, or use --input STREAM=FILE",
                streams.join(", ")
            ),
        };
        sources.push(Source {
            stream,
            label: "<stdin>".into(),
            reader: Box::new(io::stdin()),
            size: None,
        });
    }

    let stdout = io::stdout().lock();
    let mut w = BufWriter::with_capacity(1 << 16, stdout);
    let mut out = Vec::new();
    let mut rejected = 0u64;
    let show_progress = !args.no_progress && io::stderr().is_terminal();
    for src in sources {
        let bar = match (show_progress, src.size) {
            (true, Some(n)) if n >= PROGRESS_MIN_BYTES => {
                let b = ProgressBar::new(n);
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.set_message(src.label.clone());
                Some(b)
            }
            _ => None,
        };
        let Some(decoder) = engine.decoder(&src.stream).cloned() else {
            bail!("unknown stream `{}`", src.stream);
        };
        let label = src.label.clone();
        // A second thread reads, splits and decodes lines (in batches, in order); this
        // thread runs the engine and prints. The output is the same as one thread's.
        // Not a scoped thread: if this thread stops early (a write error such as a closed
        // pipe), the process must not wait for a reader blocked on an idle stdin.
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<Line>>>(QUEUED_BATCHES);
        let reader = src.reader;
        let decoding = std::thread::Builder::new()
            .name("weir-decode".into())
            .spawn(move || decode_lines(reader, &decoder, &tx))
            .context("cannot start the decoding thread")?;
        for batch in rx {
            let batch = batch.with_context(|| format!("cannot read `{label}`"))?;
            let now = now_ms();
            let mut bytes = 0u64;
            for line in batch {
                bytes += line.bytes;
                let (row, ts) = match line.row {
                    Ok(Some(decoded)) => decoded,
                    Ok(None) => continue,
                    Err(message) => {
                        rejected += 1;
                        eprintln!("{label}:{}: error: {message}; skipped", line.lineno);
                        continue;
                    }
                };
                if let Err(e) =
                    engine.ingest_row(&src.stream, line.lineno - 1, row, ts, now, &mut out)
                {
                    rejected += 1;
                    eprintln!("{label}:{}: error: {e}; skipped", line.lineno);
                    continue;
                }
                for r in out.drain(..) {
                    r.write_line(&mut w)?;
                }
            }
            if let Some(b) = &bar {
                b.inc(bytes);
            }
        }
        // The channel closed: the reader is done, or it died (then the input was not read
        // to the end, which must not pass for a complete run).
        if decoding.join().is_err() {
            bail!("reading `{label}` failed (the decoding thread stopped)");
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }
    engine.finish(&mut out);
    for r in out.drain(..) {
        r.write_line(&mut w)?;
    }
    w.flush()?;
    if rejected > 0 {
        eprintln!("weir run: {rejected} input line(s) rejected");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines per batch handed from the decoding thread to the engine thread.
const BATCH_LINES: usize = 512;

/// Batches decoded ahead of the engine (bounds the memory of a fast reader).
const QUEUED_BATCHES: usize = 8;

/// One input line, decoded.
struct Line {
    /// 1-based line number.
    lineno: u64,
    /// Bytes of input it took (for the progress bar).
    bytes: u64,
    /// The row and its event time (read here, where the row is hot); `None` for a blank
    /// line; `Err` = why the line is skipped.
    row: Result<Option<(Row, Option<i64>)>, String>,
}

/// Reads `reader` line by line and sends the decoded lines in batches, in input order.
/// Stops at the end of input, at a read error (sent) or when the receiver is gone.
fn decode_lines(
    reader: Box<dyn Read + Send>,
    decoder: &RowDecoder,
    tx: &mpsc::SyncSender<io::Result<Vec<Line>>>,
) {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    let mut batch = Vec::with_capacity(BATCH_LINES);
    loop {
        buf.clear();
        let n = match read_line_bounded(&mut reader, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        if n == 0 {
            break;
        }
        lineno += 1;
        batch.push(Line {
            lineno,
            bytes: n as u64,
            row: decode_line(decoder, &buf),
        });
        if batch.len() == BATCH_LINES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES));
            if tx.send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch));
    }
}

/// Decodes one raw line (newline included); `Ok(None)` for a blank line.
fn decode_line(decoder: &RowDecoder, line: &[u8]) -> Result<Option<(Row, Option<i64>)>, String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!("line longer than {MAX_LINE_BYTES} bytes"));
    }
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(e) => {
            return Err(format!(
                "not UTF-8 (invalid byte at column {})",
                e.valid_up_to() + 1
            ))
        }
    };
    if text.is_empty() {
        return Ok(None);
    }
    match decoder.decode_str(text) {
        Ok(row) => {
            let ts = decoder.event_time(&row);
            Ok(Some((row, ts)))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Reads one line (up to and including `\n`) but keeps at most `MAX_LINE_BYTES + 1` bytes
/// of it, so a hostile input without newlines cannot exhaust memory. Returns the number of
/// bytes consumed.
fn read_line_bounded(r: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        r.consume(n);
        consumed += n;
        if done {
            return Ok(consumed);
        }
    }
}
