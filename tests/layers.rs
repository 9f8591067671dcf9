//! Imports run one way. Every file under `src/` belongs to a layer (its top-level module);
//! a layer may name (`crate::…`) only the layers its rule lists, and a rule lists only
//! layers below it, so no cycle can form. docs/design/layout.md states the rule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a layer may import.
enum May {
    Only(&'static [&'static str]),
    /// Every layer below it but these.
    AllBelowBut(&'static [&'static str]),
}

/// The layers, bottom first, with the layers each may import.
const LAYERS: &[(&str, May)] = &[
    // Domain types, canonical JSON, the input-checking toolkit.
    ("model", May::Only(&[])),
    // Where outbound requests may go; a leaf.
    ("egress", May::Only(&[])),
    // Running untrusted code (bubblewrap, remote sandbox services); built by the server
    // and handed to the components.
    ("sandbox", May::Only(&["egress"])),
    ("stats", May::Only(&["model"])),
    ("store", May::Only(&["model"])),
    // The observation traits and the instrumentation a run asks for.
    ("observe", May::Only(&["model", "egress"])),
    (
        "components",
        May::Only(&["model", "egress", "sandbox", "observe"]),
    ),
    // Implements `observe`; handed to the engine by the server, never imported by it.
    ("telemetry", May::Only(&["model", "egress", "observe"])),
    (
        "engine",
        May::Only(&["model", "stats", "store", "observe", "components"]),
    ),
    ("api", May::AllBelowBut(&["egress"])),
    ("server", May::AllBelowBut(&[])),
];

/// The layers `LAYERS[position]` may import.
fn allowed(position: usize) -> Vec<&'static str> {
    let below = LAYERS[..position].iter().map(|(name, _)| *name);
    match &LAYERS[position].1 {
        May::Only(names) => names.to_vec(),
        May::AllBelowBut(except) => below.filter(|name| !except.contains(name)).collect(),
    }
}

/// The binary (`main.rs` and its CLI under `src/cli/`) is built on the library's exports
/// and sits above every layer; `lib` only declares the modules. The bench harness lives
/// in `benches/support`, outside `src/`.
const TOOLS: &[&str] = &["main", "lib", "cli"];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`engine` for
/// `src/engine/execute/plan.rs`, `egress` for `src/egress.rs`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    Path::new(first)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The code of a Rust file without comments and string contents, so only real paths
/// are looked at (doc comments may mention any module).
fn code_of(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        code.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut previous = ' ';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            '"' => {
                code.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '"' && !escaped {
                        break;
                    }
                    escaped = c == '\\' && !escaped;
                }
                code.push('"');
            }
            // A char literal such as '"' must not open a string; lifetimes pass through.
            '\'' => {
                code.push('\'');
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("\\") {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                }
            }
            c => code.push(c),
        }
    }
    code
}

/// Every top-level module `code` names through `crate::` (grouped imports included).
fn imported_modules(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut modules = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        // `$crate::` and paths such as `other_crate::` are not this crate's.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        modules.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            modules.insert(ident(rest));
        }
    }
    modules.retain(|m| !m.is_empty() && m != "self");
    modules
}

#[test]
fn the_rule_lists_only_lower_layers() {
    for (position, (layer, _)) in LAYERS.iter().enumerate() {
        let below: Vec<&str> = LAYERS[..position].iter().map(|(name, _)| *name).collect();
        for name in allowed(position) {
            assert!(
                below.contains(&name),
                "{layer} may import {name}, which is not below it"
            );
        }
    }
}

#[test]
fn imports_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if TOOLS.contains(&module.as_str()) {
            continue;
        }
        let Some(position) = LAYERS.iter().position(|(name, _)| *name == module) else {
            violations.push(format!(
                "{}: module `{module}` is in no layer; place it in LAYERS (and docs/design/layout.md)",
                file.display()
            ));
            continue;
        };
        let allowed = allowed(position);
        let text = std::fs::read_to_string(file).unwrap();
        for imported in imported_modules(&code_of(&text)) {
            if imported != module && !allowed.contains(&imported.as_str()) {
                violations.push(format!(
                    "{}: `{module}` imports `crate::{imported}`",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The library's public modules: what an embedder needs, and why. Everything else in
/// `src/` is private to the crate; `lib.rs` declares no other `pub` item.
const PUBLIC_MODULES: &[&str] = &[
    // The router (`router`, `ApiConfig`, `CorsOrigins`) to serve or nest the HTTP API.
    "api",
    // The `Registry`, the component traits to register one's own, `Outbound` providers.
    "components",
    // The outbound policy the server and providers are handed (`parse_allow`, `Egress`).
    "egress",
    // `Engine`, `Scheduler`, typed definitions, run ids, comparing runs.
    "engine",
    // The records and events every other public signature speaks.
    "model",
    // The observation traits an embedder implements or passes (`Observers`, spans).
    "observe",
    // The sandboxes code metrics run programs in (`Sandboxes`, `SandboxSpec`).
    "sandbox",
    // `launch` and its `ServerConfig`.
    "server",
    // The `Store` trait and the memory, SQLite and Postgres stores.
    "store",
    // `Telemetry` to instrument an engine, `Metrics`, `RecordingTracer`.
    "telemetry",
];

/// The `pub` declarations of a file's top level (`pub mod x`, `pub use y`, `pub fn z`, ...)
/// as (kind, name); `pub(crate)` and `pub(super)` are not public.
fn public_declarations(code: &str) -> Vec<(String, String)> {
    code.lines()
        .filter_map(|line| line.strip_prefix("pub "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let kind = words.next().unwrap_or_default().to_owned();
            let name: String = words
                .next()
                .unwrap_or_default()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            (kind, name)
        })
        .collect()
}

#[test]
fn the_library_exports_only_the_embedders_api() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = code_of(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let exported = public_declarations(&lib);
    let expected: Vec<(String, String)> = PUBLIC_MODULES
        .iter()
        .map(|name| ("mod".to_owned(), (*name).to_owned()))
        .collect();
    assert_eq!(
        exported, expected,
        "src/lib.rs exports other than the embedder's API; update PUBLIC_MODULES (and the \
         docs/design/layout.md) only for what an embedder needs"
    );

    // Below the top level no module is `pub`: a public module's surface is what its own
    // file declares and re-exports, so internals cannot leak through a `pub mod`.
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut leaks = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "lib.rs"))
    {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for line in code.lines() {
            if line.trim_start().starts_with("pub mod ") {
                let relative = file.strip_prefix(&src).unwrap();
                leaks.push(format!("{}: {}", relative.display(), line.trim()));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "submodules must be private or pub(crate); re-export what the embedder needs:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn the_surface_reader_sees_only_pub_declarations() {
    let code = "pub mod api;\npub(crate) mod stats;\nmod x;\npub use a::b;\npub fn run() {}\n";
    assert_eq!(
        public_declarations(code),
        [
            ("mod".to_owned(), "api".to_owned()),
            ("use".to_owned(), "a::b".to_owned()),
            ("fn".to_owned(), "run".to_owned()),
        ]
    );
}

#[test]
fn the_reader_finds_paths_in_code_only() {
    let code = code_of(
        r#"
        use crate::model::RunId; // crate::telemetry in a comment
        /// See [`crate::engine::run_id`].
        use crate::{observe::Span, store::{Store, StoreError}};
        let url = "http://x/crate::api";
        let quote = '"'; let c = crate::components::Registry::builtin();
        other_crate::x(); $crate::y();
        "#,
    );
    let found: Vec<String> = imported_modules(&code).into_iter().collect();
    assert_eq!(found, ["components", "model", "observe", "store"]);
}

/// `Result<_, String>` (on one line, as `grep "Result<[^;]*, String>"` finds it) per file
/// under `src/`.
fn string_errors(dir: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut counts = std::collections::BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let found = text
            .lines()
            .filter(|line| {
                line.match_indices("Result<").any(|(at, _)| {
                    let rest = &line[at..];
                    let rest = rest.split(';').next().unwrap_or(rest);
                    rest.contains(", String>")
                })
            })
            .count();
        if found > 0 {
            let name = file
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(&file)
                .to_string_lossy()
                .trim_start_matches('/')
                .to_owned();
            counts.insert(name, found);
        }
    }
    counts
}

/// Errors below HTTP are typed; a function returns a bare message only where it checks
/// one value and its error is the text a person reads, and docs/design/errors.md lists
/// each such file with its count.
#[test]
fn string_errors_are_only_the_documented_leaf_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = string_errors(&root.join("src"));
    let doc = std::fs::read_to_string(root.join("docs/design/errors.md")).unwrap();
    let documented: std::collections::BTreeMap<String, usize> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let file = cells.get(1)?.strip_prefix("`src/")?.strip_suffix('`')?;
            let count = cells.get(2)?.parse().ok()?;
            Some((format!("src/{file}"), count))
        })
        .collect();
    assert_eq!(
        found, documented,
        "Result<_, String> per file (left: src/, right: docs/design/errors.md); give a new \
         error a variant of its layer's error, or document a leaf check"
    );
}
