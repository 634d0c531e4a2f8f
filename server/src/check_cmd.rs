//! `weir check PATH...`: validate statement files without running anything.
//!
//! Files and folders (searched recursively for `*.weir`, sorted by name) are checked
//! together, in the order given, so a later file may read streams declared in an earlier
//! one. Exit 0 when valid (warnings are printed), 1 with diagnostics, 2 on usage errors
//! (missing path, unreadable or non-UTF-8 file).

use anyhow::{bail, Context};
use dsl::check::Catalog;
use dsl::error::render_all;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:column: error: message`, the source line and a caret.
    Text,
    /// One JSON array of diagnostics, for editors.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Statement files (`*.weir`) or folders of them; `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format of the diagnostics.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Expand the paths into files, in order: a file as given, a folder's `*.weir` files
/// recursively, sorted by path.
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(p.clone());
            continue;
        }
        let meta =
            std::fs::metadata(p).with_context(|| format!("cannot read `{}`", p.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            if found.is_empty() {
                bail!("folder `{}` has no *.weir files", p.display());
            }
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list `{}`", dir.display()))?;
        let path = entry.path();
        let ty = entry
            .file_type()
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if ty.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "weir") {
            out.push(path);
        }
    }
    Ok(())
}

pub(crate) fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .context("cannot read standard input")?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?
    };
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
        let (line, col) = dsl::error::line_col(&text, text.len());
        anyhow::anyhow!(
            "`{}` is not UTF-8 text (invalid byte at {}:{line}:{col}); statement files must be UTF-8",
            path.display(),
            path.display()
        )
    })
}

/// The result of checking files: rendered output and counts.
#[derive(Debug)]
pub struct Report {
    pub output: String,
    pub errors: usize,
    pub warnings: usize,
}

/// Check files together (one catalog, in order) and render the diagnostics.
pub fn check_files(files: &[PathBuf], format: Format) -> anyhow::Result<Report> {
    let mut catalog = Catalog::new();
    // What the engine builds from the statements so far (while they have no errors): a
    // statement the checker accepts but the engine cannot build (a regex or pattern too
    // large) is an error here too, as `weir serve` refuses it.
    let config = matcher::engine::EngineConfig::default();
    let mut program = Some(matcher::engine::Program::empty(&config));
    let mut text = String::new();
    let mut json = Vec::new();
    let (mut errors, mut warnings) = (0, 0);
    for f in files {
        let src = read_text(f)?;
        let name = if f.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            f.display().to_string()
        };
        let mut diags = catalog.check_source(&src);
        if diags.iter().any(|d| d.is_error()) {
            program = None;
        } else if let Some(p) = &program {
            match p.apply(&catalog, &config) {
                Ok(next) => program = Some(next),
                Err(more) => {
                    diags.extend(more);
                    diags.sort_by_key(|d| (d.span.start, d.span.end));
                    program = None;
                }
            }
        }
        errors += diags.iter().filter(|d| d.is_error()).count();
        warnings += diags.len() - diags.iter().filter(|d| d.is_error()).count();
        match format {
            Format::Text => text.push_str(&render_all(&diags, &name, &src)),
            Format::Json => json.extend(diags.iter().map(|d| d.to_json(&name, &src))),
        }
    }
    let output = match format {
        Format::Text => {
            if errors > 0 || warnings > 0 {
                text.push_str(&format!(
                    "{errors} error{}, {warnings} warning{}\n",
                    if errors == 1 { "" } else { "s" },
                    if warnings == 1 { "" } else { "s" }
                ));
            }
            text
        }
        Format::Json => format!("{}\n", serde_json::Value::Array(json)),
    };
    Ok(Report {
        output,
        errors,
        warnings,
    })
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let files = collect_files(&args.paths)?;
    let report = check_files(&files, args.format)?;
    print!("{}", report.output);
    if args.format == Format::Text && report.errors == 0 {
        let w = report.warnings;
        println!(
            "ok: {} file{} checked{}",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            if w > 0 { " (with warnings)" } else { "" }
        );
    }
    Ok(if report.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-check-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn folders_are_searched_recursively_and_sorted() {
        let d = tmp("walk");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("b.weir"), "").unwrap();
        std::fs::write(d.join("a.weir"), "").unwrap();
        std::fs::write(d.join("notes.txt"), "").unwrap();
        std::fs::write(d.join("sub/c.weir"), "").unwrap();
        let files = collect_files(std::slice::from_ref(&d)).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(&d).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.weir", "b.weir", "sub/c.weir"]);
    }

    #[test]
    fn missing_path_and_non_utf8_are_clear_errors() {
        let d = tmp("bad");
        let err = collect_files(&[d.join("nope.weir")]).unwrap_err();
        assert!(format!("{err:#}").contains("nope.weir"), "{err:#}");
        std::fs::write(d.join("x.weir"), b"-- ok\n\xff\xfe").unwrap();
        let err = check_files(&[d.join("x.weir")], Format::Text).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("not UTF-8") && msg.contains(":2:1"), "{msg}");
    }

    #[test]
    fn later_files_see_earlier_streams_and_errors_render() {
        let d = tmp("together");
        std::fs::write(
            d.join("a.weir"),
            "CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP) WITH (event_time = 'ts');\n",
        )
        .unwrap();
        std::fs::write(
            d.join("b.weir"),
            "CREATE RULE big AS FROM pay PATTERN (x) WITHIN 1 MINUTE DEFINE x AS amount > 10;\n",
        )
        .unwrap();
        let ok = check_files(&[d.join("a.weir"), d.join("b.weir")], Format::Text).unwrap();
        assert_eq!((ok.errors, ok.warnings), (0, 0), "{}", ok.output);
        // Alone, b.weir does not know `pay`.
        let bad = check_files(&[d.join("b.weir")], Format::Text).unwrap();
        assert_eq!(bad.errors, 1);
        let first = bad.output.lines().next().unwrap();
        assert!(first.ends_with("b.weir:1:25: error: unknown stream `pay`; no streams exist yet (CREATE STREAM first)"), "{first}");
        assert!(
            bad.output.contains("\n    |                         ^^^\n"),
            "{}",
            bad.output
        );
        // JSON: one array.
        let json = check_files(&[d.join("b.weir")], Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json.output).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["line"], 1);
        assert_eq!(v[0]["column"], 25);
        assert_eq!(v[0]["end_column"], 28);
        assert_eq!(v[0]["severity"], "error");
        // A warning alone does not fail.
        std::fs::write(d.join("c.weir"), "CREATE RULE w AS FROM pay PATTERN (x);\n").unwrap();
        let warn = check_files(&[d.join("a.weir"), d.join("c.weir")], Format::Text).unwrap();
        assert_eq!((warn.errors, warn.warnings), (0, 1));
        assert!(warn.output.contains("warning: rule `w` has no WITHIN"));
        let json = check_files(&[d.join("a.weir")], Format::Json).unwrap();
        assert_eq!(json.output.trim(), "[]");
    }

    /// What `weir check` accepts, the engines compile: every shipped rules file and every
    /// valid case of the dsl case suite builds a `matcher::engine::Engine`.
    #[test]
    fn what_check_accepts_the_engine_compiles() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut inputs: Vec<(String, String)> = Vec::new();
        for f in collect_files(&[root.join("rules")]).unwrap() {
            inputs.push((
                f.display().to_string(),
                std::fs::read_to_string(&f).unwrap(),
            ));
        }
        for f in std::fs::read_dir(root.join("dsl/tests/cases")).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_none_or(|e| e != "case") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for chunk in text.split("\n=== ").skip(1) {
                let (name, body) = chunk.split_once('\n').unwrap();
                let Some(i) = body.find("-- expect") else {
                    continue;
                };
                let expect = &body[i..];
                if expect.starts_with("-- expect: ") || expect.starts_with("-- expect-warning") {
                    inputs.push((format!("{}: {name}", f.display()), body[..i].to_string()));
                }
            }
        }
        assert!(inputs.len() > 80, "{}", inputs.len());
        let config = matcher::engine::EngineConfig::default();
        let mut failures = Vec::new();
        for (name, src) in &inputs {
            let (statements, syntax) = dsl::parse::parse_statements(src);
            assert!(syntax.iter().all(|d| !d.is_error()), "{name}");
            let mut catalog = Catalog::new();
            catalog
                .apply(&statements)
                .unwrap_or_else(|d| panic!("{name}: {d:?}"));
            if let Err(diags) = matcher::engine::Engine::new(&catalog, 0, &config) {
                failures.push(format!("{name}:\n{}", render_all(&diags, name, src)));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// What the engine cannot build is an error of `weir check` too (as `weir serve`
    /// refuses it), at the statement, in the file it comes from.
    #[test]
    fn statements_the_engine_cannot_build_are_errors() {
        let d = tmp("uncompilable");
        std::fs::write(
            d.join("a.weir"),
            "CREATE STREAM tx (card STRING, amount FLOAT, ts TIMESTAMP) WITH (event_time = 'ts');\n",
        )
        .unwrap();
        std::fs::write(
            d.join("b.weir"),
            "CREATE SEARCH s AS FROM tx WHERE card MATCHES '/a{1000}{1000}/';\n",
        )
        .unwrap();
        std::fs::write(
            d.join("c.weir"),
            "CREATE RULE r AS FROM tx PARTITION BY card PATTERN ((a{1000}){1000})\n  DEFINE a AS amount > 0 MEASURES COUNT(*) AS n;\n",
        )
        .unwrap();
        for bad in ["b.weir", "c.weir"] {
            let r = check_files(&[d.join("a.weir"), d.join(bad)], Format::Text).unwrap();
            assert_eq!(r.errors, 1, "{}", r.output);
            assert!(r.output.contains(&format!("{bad}:1:")), "{}", r.output);
        }
        let ok = check_files(&[d.join("a.weir")], Format::Text).unwrap();
        assert_eq!(ok.errors, 0, "{}", ok.output);
    }

    #[test]
    fn empty_folder_is_an_error() {
        let d = tmp("empty");
        assert!(collect_files(&[d]).is_err());
    }
}
