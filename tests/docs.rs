//! The documentation agrees with the code: the configuration reference names every key of
//! every section with its real default, the command-line reference is generated from the clap
//! definitions, the metrics reference names every metric the relay exports, and every link of
//! the README and the book points at a file that exists.
//!
//! `OUTBOX_RELAY_BLESS=1 cargo test --test docs` rewrites the generated page
//! (`docs/reference/cli.md`) after a change to the command line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap_markdown::MarkdownOptions;
use outbox_relay::cli::Cli;
use outbox_relay::config::Config;

#[path = "common/tools.rs"]
mod tools;

use tools::{read, REPO};

/// A config with every required key and nothing else.
const MINIMAL: &str = "[source]\ntable_name = \"T\"\n\n[[routes]]\nname = \"r\"\n\
                       event_bus_name = \"b\"\nsource = \"s\"\ndetail_type = \"d\"\n\
                       unmarshall = \"NewImage\"\n";

/// `MINIMAL` with `line` added to the table `section` (`source`, `routes`, `aws.endpoints`, …).
fn with_line(section: &str, line: &str) -> String {
    match section {
        "source" => MINIMAL.replace("[source]\n", &format!("[source]\n{line}\n")),
        "routes" => format!("{MINIMAL}{line}\n"),
        other => format!("[{other}]\n{line}\n\n{MINIMAL}"),
    }
}

/// The keys a section's struct accepts, read from serde's answer to an unknown key.
fn accepted_keys(section: &str) -> BTreeSet<String> {
    let errors = Config::from_toml(&with_line(section, "zz_probe = 1")).expect_err("unknown key");
    let problem = errors
        .0
        .iter()
        .find(|e| e.key.ends_with("zz_probe"))
        .unwrap_or_else(|| panic!("no problem for the probe in {section}: {errors}"));
    // serde says "expected one of `a`, `b`, `c`", or "expected `a`" for a single key.
    let (_, expected) = problem
        .reason
        .split_once("expected one of ")
        .or_else(|| problem.reason.split_once("expected "))
        .unwrap_or_else(|| panic!("{}", problem.reason));
    // "expected `a` or `b`" for two; the config crate may add " for key `section`".
    let expected = expected.split(" for key ").next().unwrap_or_default();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Debug text of one section of a loaded config: what two configs are compared by.
fn section_debug(config: &Config, section: &str) -> String {
    match section {
        "aws" | "aws.endpoints" => format!("{:?}", config.aws),
        "source" => format!("{:?}", config.source),
        "leases" => format!("{:?}", config.leases),
        "routes" => format!("{:?}", config.routes),
        "publisher" => format!("{:?}", config.publisher),
        "dead_letter" => format!("{:?}", config.dead_letter),
        "http" => format!("{:?}", config.http),
        "log" => format!("{:?}", config.log),
        "shutdown" => format!("{:?}", config.shutdown),
        "telemetry" => format!("{:?}", config.telemetry),
        "runtime" => format!("{:?}", config.runtime),
        other => panic!("unknown section {other}"),
    }
}

/// A documented row: its keys (the backticked names of the first cell) and its default cell.
struct Row {
    keys: Vec<String>,
    default: String,
}

/// The rows of docs/reference/config.md, by section (`[[routes]]` is `routes`).
fn documented_rows() -> Vec<(String, Row)> {
    let text = read("docs/reference/config.md");
    let mut section = None;
    let mut in_key_table = false;
    let mut rows = Vec::new();
    for line in text.lines() {
        // Only the tables headed `| key | default | meaning |` list keys.
        if line.starts_with("| key |") {
            in_key_table = true;
        } else if !line.starts_with('|') {
            in_key_table = false;
        }
        if !in_key_table {
            if let Some(heading) = line.strip_prefix("## `") {
                let name = heading.split('`').next().unwrap_or_default();
                section = Some(name.trim_matches(|c| c == '[' || c == ']').to_owned());
            } else if line.starts_with("## ") {
                section = None;
            }
            continue;
        }
        let (Some(section), Some(cells)) = (&section, line.strip_prefix("| `")) else {
            continue;
        };
        let row = format!("`{cells}");
        let cells: Vec<&str> = row.split(" | ").collect();
        let keys = cells[0]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        rows.push((
            section.clone(),
            Row {
                keys,
                default: cells.get(1).map(|c| (*c).to_owned()).unwrap_or_default(),
            },
        ));
    }
    rows
}

/// The TOML value of a documented default (`1s`, `1000`, `true`, `[]`, `TRIM_HORIZON`), when
/// the cell is one literal; `None` for prose such as "unset" or "SDK chain".
fn default_literal(cell: &str) -> Option<String> {
    let rest = cell.strip_prefix('`')?;
    let (literal, _) = rest.split_once('`')?;
    if literal == "[]"
        || literal == "{}"
        || literal == "true"
        || literal == "false"
        || literal.parse::<i64>().is_ok()
    {
        Some(literal.to_owned())
    } else {
        Some(format!("{literal:?}"))
    }
}

#[test]
fn the_config_reference_names_every_key_with_its_real_default() {
    let rows = documented_rows();
    let defaults = Config::from_toml(MINIMAL).expect("minimal config");
    let mut checked_defaults = 0;
    for &section in outbox_relay::config::SECTIONS {
        let documented: BTreeSet<String> = rows
            .iter()
            .filter(|(s, _)| s == section)
            .flat_map(|(_, r)| r.keys.clone())
            .collect();
        let mut accepted = accepted_keys(section);
        if section == "aws" {
            // `[aws.endpoints]` is a table: its keys are documented as `endpoints.<service>`.
            accepted.remove("endpoints");
            accepted.extend(
                accepted_keys("aws.endpoints")
                    .into_iter()
                    .map(|k| format!("endpoints.{k}")),
            );
        }
        assert_eq!(
            documented, accepted,
            "docs/reference/config.md, section {section}: documented keys against the code's"
        );
        for (_, row) in rows.iter().filter(|(s, _)| s == section) {
            let Some(value) = default_literal(&row.default) else {
                continue;
            };
            for key in &row.keys {
                let (table, key) = match key.split_once('.') {
                    Some((table, key)) => (format!("{section}.{table}"), key),
                    None => (section.to_owned(), key.as_str()),
                };
                let text = with_line(&table, &format!("{key} = {value}"));
                let config = Config::from_toml(&text).unwrap_or_else(|e| {
                    panic!("{section}.{key}: the documented default {value} is refused: {e}")
                });
                assert_eq!(
                    section_debug(&config, section),
                    section_debug(&defaults, section),
                    "{section}.{key}: the documented default {value} is not the code's"
                );
                checked_defaults += 1;
            }
        }
    }
    assert!(
        checked_defaults >= 25,
        "{checked_defaults} defaults checked"
    );
}

/// The generated command-line reference.
fn cli_reference() -> String {
    let body = clap_markdown::help_markdown_custom::<Cli>(
        &MarkdownOptions::new()
            .title("Command line".to_owned())
            .show_footer(false),
    );
    format!(
        "<!-- Generated from src/cli.rs by tests/docs.rs: OUTBOX_RELAY_BLESS=1 cargo test --test docs -->\n\n{body}"
    )
}

#[test]
fn the_command_line_reference_is_generated_from_the_code() {
    let path = Path::new(REPO).join("docs/reference/cli.md");
    let generated = cli_reference();
    if std::env::var_os("OUTBOX_RELAY_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/reference/cli.md");
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/reference/cli.md is stale: run OUTBOX_RELAY_BLESS=1 cargo test --test docs"
    );
    for needed in ["--config", "--output", "--since", "completions", "--aws"] {
        assert!(generated.contains(needed), "{needed} missing");
    }
}

#[test]
fn the_metrics_reference_names_every_exported_metric_and_no_other() {
    let text = read("docs/reference/metrics.md");
    let exported: BTreeSet<String> = outbox_relay::telemetry::Metrics::new()
        .names()
        .iter()
        .cloned()
        .collect();
    let documented: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|name| name.starts_with("outbox_relay_") || name.starts_with("process_"))
        .map(str::to_owned)
        .collect();
    assert_eq!(documented, exported, "docs/reference/metrics.md rows");
}

/// Every Markdown file of the README and the book.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![Path::new(REPO).join("README.md")];
    walk(&Path::new(REPO).join("docs"), &mut files);
    files
}

#[test]
fn every_link_of_the_readme_and_the_book_resolves() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("readable");
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = &rest[..end];
            let path = target.split('#').next().unwrap_or_default();
            if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
                continue;
            }
            let resolved = file.parent().expect("in a folder").join(path);
            if !resolved.exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_book_summary_lists_every_page() {
    let summary = read("docs/SUMMARY.md");
    let docs = Path::new(REPO).join("docs");
    for file in markdown_files().into_iter().skip(1) {
        let relative = file
            .strip_prefix(&docs)
            .expect("under docs")
            .display()
            .to_string();
        if relative != "SUMMARY.md" {
            assert!(
                summary.contains(&format!("]({relative})")),
                "docs/SUMMARY.md does not list {relative}"
            );
        }
    }
}
