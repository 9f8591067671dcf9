//! The Python client's suite (`clients/python/tests`, pytest) against the real `themis`
//! binary, so that `cargo test` runs it with everything else.
//!
//! It needs Python 3.12 or newer (`THEMIS_PYTHON`, else `python3.12`, `python3.13`,
//! `python3` or the oldest such pyenv version) and fails, never skips, without one. The packages it
//! installs (the client with its `test` extra: httpx, httpx-sse, pydantic, pytest,
//! pandas, themis-eval) go into a venv under the build directory, made once and reused
//! while the interpreter and `clients/python/pyproject.toml` stay the same.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What the venv was made from; a change makes it again.
const PYPROJECT: &str = include_str!("../../clients/python/pyproject.toml");

#[test]
fn python_client_suite_passes_against_the_real_binary() {
    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let python = venv_python(&client_dir);
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&client_dir)
        .env("THEMIS_BIN", env!("CARGO_BIN_EXE_themis"))
        .env_remove("THEMIS_URL")
        .env_remove("THEMIS_API_KEY")
        .output()
        .expect("running pytest");
    let report = text(&output);
    assert!(
        output.status.success(),
        "the Python client's suite failed:\n{report}"
    );
    let summary = report
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("pytest ran no test:\n{report}"));
    assert!(!summary.contains("skipped"), "no test may skip: {summary}");
    println!("python client: {summary}");
}

/// The venv's interpreter, after making the venv if it is missing or stale.
fn venv_python(client_dir: &Path) -> PathBuf {
    let interpreter = find_python();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("themis-stamp");
    let wanted = format!("{}\n{PYPROJECT}", interpreter.display());
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    succeed(
        Command::new(&interpreter).arg("-m").arg("venv").arg(&venv),
        "creating the venv",
    );
    succeed(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "-e",
            ])
            .arg(format!("{}[test]", client_dir.display())),
        "installing the Python client with its test extra",
    );
    std::fs::write(&stamp, wanted).expect("writing the venv stamp");
    python
}

/// The first Python >= 3.12 among `THEMIS_PYTHON`, the usual names and pyenv's (oldest
/// first: 3.12 is what the client declares and the framework was checked with).
fn find_python() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("THEMIS_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.extend(["python3.12", "python3.13", "python3"].map(PathBuf::from));
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    if let Some(Ok(versions)) = pyenv.map(|root| std::fs::read_dir(root.join("versions"))) {
        let mut found: Vec<PathBuf> = versions
            .filter_map(Result::ok)
            .map(|v| v.path().join("bin").join("python"))
            .collect();
        found.sort_by_key(|p| version_key(p));
        candidates.extend(found);
    }
    candidates
        .into_iter()
        .find(|candidate| {
            Command::new(candidate)
                .args(["-c", "import sys; print(sys.version_info >= (3, 12))"])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"True"))
        })
        .unwrap_or_else(|| {
            panic!(
                "the Python client's suite needs Python >= 3.12: set THEMIS_PYTHON or install one"
            )
        })
}

/// `.../versions/3.12.1/bin/python` → `[3, 12, 1]`.
fn version_key(python: &Path) -> Vec<u32> {
    python
        .ancestors()
        .nth(2)
        .and_then(|dir| dir.file_name())
        .map(|name| {
            name.to_string_lossy()
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

fn succeed(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(output.status.success(), "{what} failed:\n{}", text(&output));
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
