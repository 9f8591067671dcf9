//! The documentation stays true to the repository: every link between markdown files
//! reaches an existing file and heading, the HTTP reference lists exactly the operations
//! of `openapi.yaml`, and the CLI reference lists exactly the flags `--help` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every markdown file of the repository (build output, virtualenvs and hidden
/// directories aside).
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || ["target", "node_modules", "venv"].contains(&name) {
            continue;
        }
        if path.is_dir() {
            markdown_files(&path, out);
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The text outside fenced code blocks, with inline code spans removed (a link written
/// as code is an example, not a link).
fn prose(markdown: &str) -> String {
    let code_span = Regex::new(r"`[^`\n]*`").expect("regex");
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(&code_span.replace_all(line, ""));
            out.push('\n');
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits,
/// `-`, `_` and spaces kept), spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings; a repeated heading gets `-1`, `-2`, ….
fn anchors(markdown: &str) -> BTreeSet<String> {
    let heading = Regex::new(r"^#{1,6}\s+(.*?)\s*#*$").expect("regex");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(caps) = heading.captures(line).filter(|_| !fenced) else {
            continue;
        };
        let base = slug(&caps[1].replace('`', ""));
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The link targets of a markdown file: `[text](target)`, `![alt](target)`,
/// `<img src>` and `<a href>`, external ones aside.
fn links(markdown: &str) -> Vec<String> {
    let inline = Regex::new(r#"\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).expect("regex");
    let html = Regex::new(r#"(?:src|href)="([^"]+)""#).expect("regex");
    let text = prose(markdown);
    inline
        .captures_iter(&text)
        .chain(html.captures_iter(&text))
        .map(|c| c[1].to_owned())
        .filter(|t| !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

fn broken_links(file: &Path) -> Vec<String> {
    let text = read(file);
    let mut broken = Vec::new();
    for target in links(&text) {
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().expect("a file's directory").join(path)
        };
        if !resolved.exists() {
            broken.push(format!("{target}: no such file"));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if resolved.extension().is_some_and(|e| e == "md")
            && !anchors(&read(&resolved)).contains(anchor)
        {
            broken.push(format!("{target}: no heading with this anchor"));
        }
    }
    broken
}

#[test]
fn every_markdown_link_reaches_a_file_and_heading() {
    let root = root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(files.len() > 20, "found only {files:?}");
    let mut broken = Vec::new();
    for file in &files {
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        broken.extend(
            broken_links(file)
                .into_iter()
                .map(|b| format!("{shown}: {b}")),
        );
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_finds_missing_files_and_anchors() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-link-check");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    std::fs::write(
        dir.join("target.md"),
        "# A `code` heading\n\n## Twice\n\n## Twice\n\n```sh\n# not a heading\n```\n",
    )
    .expect("target page");
    let page = dir.join("page.md");
    std::fs::write(
        &page,
        "[ok](target.md) [ok](target.md#a-code-heading) [ok](target.md#twice-1) \
         [ok](#here) `[example](nowhere.md)`\n\n# Here\n\n\
         [gone](missing.md) [gone](target.md#not-a-heading) ![gone](img/none.png) \
         [gone](#nowhere)\n\n```md\n[example](nowhere.md)\n```\n",
    )
    .expect("page");
    let broken = broken_links(&page);
    assert_eq!(
        broken,
        [
            "missing.md: no such file",
            "target.md#not-a-heading: no heading with this anchor",
            "img/none.png: no such file",
            "#nowhere: no heading with this anchor",
        ],
    );
}

#[test]
fn every_page_of_docs_is_in_the_summary() {
    let root = root();
    let docs = root.join("docs");
    let summary = read(&docs.join("SUMMARY.md"));
    let listed: BTreeSet<PathBuf> = links(&summary)
        .iter()
        .map(|l| docs.join(l.split('#').next().unwrap_or_default()))
        .collect();
    let mut pages = Vec::new();
    markdown_files(&docs, &mut pages);
    let unlisted: Vec<_> = pages
        .iter()
        .filter(|p| !p.ends_with("SUMMARY.md") && !listed.contains(*p))
        .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
        .collect();
    assert!(
        unlisted.is_empty(),
        "pages missing from docs/SUMMARY.md: {unlisted:?}"
    );
}

#[test]
fn the_readme_is_short_and_ci_runs_its_test_command() {
    let root = root();
    let readme = read(&root.join("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines");
    let ci = read(&root.join(".ci/run"));
    let ci_test: Vec<&str> = ci
        .lines()
        .filter(|l| l.trim_start().starts_with("cargo test"))
        .collect();
    assert_eq!(
        ci_test.len(),
        1,
        ".ci/run runs one test command: {ci_test:?}"
    );
    let command = ci_test[0].trim();
    assert!(
        readme.lines().any(|l| l.trim() == command),
        "the README does not give CI's test command `{command}` on a line of its own"
    );
    assert!(
        readme
            .lines()
            .any(|l| l.trim() == "cargo run --release -- serve"),
        "the README does not say how to start the service"
    );
}

/// `(METHOD, path)` of every row of the reference's endpoint table.
fn reference_operations(reference: &str) -> BTreeSet<(String, String)> {
    let row = Regex::new(r"(?m)^\| `([A-Z]+)` \| `([^`]+)` \|").expect("regex");
    row.captures_iter(reference)
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect()
}

#[test]
fn the_http_reference_lists_every_operation_of_openapi_yaml() {
    let root = root();
    let document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(&root.join("openapi.yaml"))).expect("openapi.yaml");
    let paths = document["paths"].as_mapping().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("a path is a string");
        for (method, _) in item.as_mapping().expect("a path item") {
            let method = method.as_str().expect("a method is a string");
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method) {
                documented.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    assert!(documented.len() > 20, "{documented:?}");
    let reference = reference_operations(&read(&root.join("docs/reference/http-api.md")));
    let missing: Vec<_> = documented.difference(&reference).collect();
    let extra: Vec<_> = reference.difference(&documented).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/reference/http-api.md lacks {missing:?} and lists {extra:?}, which openapi.yaml does not have"
    );
}

/// The long flags `--help` prints (`--help` and `--version` aside).
fn help_flags(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("running themis");
    assert!(out.status.success(), "themis {args:?} --help: {out:?}");
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    let flag = Regex::new(r"^\s+(?:-[a-zA-Z], )?(--[a-z][a-z0-9-]*)").expect("regex");
    help.lines()
        .filter_map(|line| flag.captures(line).map(|c| c[1].to_owned()))
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The flags in the first column of the table under a `## ` heading that starts with
/// `section` (or of the file's only table).
fn documented_flags(markdown: &str, section: Option<&str>) -> BTreeSet<String> {
    let row = Regex::new(r"^\| `(--[a-z][a-z0-9-]*)` \|").expect("regex");
    let mut inside = section.is_none();
    let mut flags = BTreeSet::new();
    for line in markdown.lines() {
        if let (Some(section), Some(heading)) = (section, line.strip_prefix("## ")) {
            inside = heading.starts_with(section);
            continue;
        }
        if let Some(c) = row.captures(line).filter(|_| inside) {
            flags.insert(c[1].to_owned());
        }
    }
    flags
}

#[test]
fn the_cli_reference_matches_every_commands_help() {
    let root = root();
    let cli = read(&root.join("docs/reference/cli.md"));
    let configuration = read(&root.join("docs/reference/configuration.md"));
    let commands: [(&[&str], BTreeSet<String>); 4] = [
        (&["run"], documented_flags(&cli, Some("`themis run"))),
        (&["serve"], documented_flags(&configuration, None)),
        (
            &["compare"],
            documented_flags(&cli, Some("`themis compare")),
        ),
        (
            &["datasets", "push"],
            documented_flags(&cli, Some("`themis datasets push")),
        ),
    ];
    let mut disagreements = Vec::new();
    for (command, documented) in commands {
        let help = help_flags(command);
        assert!(!help.is_empty(), "themis {command:?} --help lists no flag");
        let missing: Vec<_> = help.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&help).collect();
        if !missing.is_empty() || !extra.is_empty() {
            disagreements.push(format!(
                "themis {}: undocumented {missing:?}, documented but not in --help {extra:?}",
                command.join(" ")
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Each flag of `themis serve --help` with its variable and its default (when it has one).
fn help_settings(args: &[&str]) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("running themis");
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    let flag = Regex::new(r"^\s+(?:-[a-zA-Z], )?(--[a-z][a-z0-9-]*)").expect("regex");
    let env = Regex::new(r"\[env: ([A-Z0-9_]+)").expect("regex");
    let default = Regex::new(r"\[default: (.*)\]").expect("regex");
    let mut settings = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        if let Some(c) = flag.captures(line) {
            current = Some(c[1].to_owned());
            settings.insert(c[1].to_owned(), (None, None));
        } else if let Some(entry) = current.as_ref().and_then(|f| settings.get_mut(f)) {
            if let Some(c) = env.captures(line) {
                entry.0 = Some(c[1].to_owned());
            }
            if let Some(c) = default.captures(line) {
                entry.1 = Some(c[1].to_owned());
            }
        }
    }
    settings.remove("--help");
    settings
}

/// The configuration table gives each flag once, with the variable `--help` names and,
/// where clap has a default, that default first in its column (the defaults live in the
/// library; this keeps the page in step with them).
#[test]
fn the_configuration_table_gives_each_flags_variable_and_default() {
    let page = read(&root().join("docs/reference/configuration.md"));
    let row = Regex::new(r"^\| `(--[a-z][a-z0-9-]*)` \| ([^|]*) \| ([^|]*) \|").expect("regex");
    let mut documented: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut problems = Vec::new();
    for c in page.lines().filter_map(|line| row.captures(line)) {
        let cells = (c[2].trim().to_owned(), c[3].trim().to_owned());
        if documented.insert(c[1].to_owned(), cells).is_some() {
            problems.push(format!("{} has two rows", &c[1]));
        }
    }
    for (flag, (env, default)) in help_settings(&["serve"]) {
        let Some((documented_env, documented_default)) = documented.get(&flag) else {
            problems.push(format!("{flag} has no row"));
            continue;
        };
        if let Some(env) = env
            && *documented_env != format!("`{env}`")
        {
            problems.push(format!(
                "{flag}: variable {documented_env}, --help says {env}"
            ));
        }
        if let Some(default) = default
            && !documented_default.starts_with(&format!("`{default}`"))
        {
            problems.push(format!(
                "{flag}: default {documented_default}, --help says {default}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The source file of the test a claims-table entry names: `bin::module::test` lives in
/// `tests/bin/module.rs` (or `…/module/mod.rs`), `bin::test` in `tests/bin.rs` or
/// `tests/bin/main.rs`.
fn source_of(test: &str) -> Option<(PathBuf, String)> {
    let (module, _) = test.rsplit_once("::")?;
    let base = root().join("tests").join(module.replace("::", "/"));
    [
        base.with_extension("rs"),
        base.join("mod.rs"),
        base.join("main.rs"),
    ]
    .into_iter()
    .find_map(|path| std::fs::read_to_string(&path).ok().map(|text| (path, text)))
}

#[test]
fn readme_claims_name_tests_that_exist() {
    let claims = read(&root().join("docs/design/claims.md"));
    let start = claims
        .find("<!-- claims:start -->")
        .expect("claims table start");
    let end = claims
        .find("<!-- claims:end -->")
        .expect("claims table end");
    let table = &claims[start..end];
    let mut rows = 0;
    let rows_of_claims = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| claim") && !l.starts_with("| ---"));
    for row in rows_of_claims {
        let Some(tests) = row.rsplit('|').nth(1) else {
            panic!("malformed row {row}");
        };
        let named: Vec<&str> = tests.split('`').filter(|t| t.contains("::")).collect();
        assert!(!named.is_empty(), "a claim without a test: {row}");
        for test in named {
            let name = test.rsplit("::").next().unwrap_or(test);
            let (path, source) =
                source_of(test).unwrap_or_else(|| panic!("{test}: no file under tests/ holds it"));
            assert!(
                source.contains(&format!("fn {name}()")),
                "{test} is named in docs/design/claims.md but {} has no such test",
                path.display()
            );
        }
        rows += 1;
    }
    assert!(rows >= 20, "{rows} rows");
}
