//! Python clients the project did not write, for the tests that need an outside view.
//!
//! A test that only ever talks to the pipeline through the pipeline's own code proves that the
//! pipeline agrees with itself, not that another team can use it. So a few tests drive
//! `python/outside_client.py`, written with `confluent-kafka` and `jsonschema` from PyPI, and
//! the HTTP intake is fuzzed by `schemathesis` from its OpenAPI document.
//!
//! [`python_client`] makes a virtual environment under `target/test-python/` from the pinned
//! `python/requirements.txt` the first time it is needed, and reuses it while the requirements
//! file is unchanged (its text is kept beside the environment and compared). Nothing is
//! installed into the machine's own Python; only `python3` with `venv` and `pip` is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The crate's `python/` folder: the scripts and their requirements.
pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// `target/test-python`, next to the other things the harness fetches.
fn venv_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("test-python")
}

/// Tests of one binary run on threads: one of them builds the environment, the others wait.
static VENV_LOCK: Mutex<()> = Mutex::new(());

/// The Python interpreter of the test environment, made (once) with the pinned requirements.
pub fn python_client() -> PathBuf {
    let _guard = VENV_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let venv = venv_dir();
    let python = venv.join("bin/python");
    let requirements = python_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("read python/requirements.txt");
    let stamp = venv.join("requirements.installed");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    run_ok(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    run_ok(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
    );
    std::fs::write(&stamp, wanted).expect("write the requirements stamp");
    python
}

/// Runs `outside_client.py` with `args` and returns its output, whatever its exit status.
pub fn outside_client(args: &[&str]) -> Output {
    Command::new(python_client())
        .arg(python_dir().join("outside_client.py"))
        .args(args)
        .output()
        .expect("start outside_client.py")
}

fn run_ok(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("start {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
