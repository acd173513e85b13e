//! The process runner: starts one of the workspace's binaries (built by `cargo build --bins`)
//! with `LOG_FORMAT=json` and only the variables a test gives it, collects its stdout as
//! [`Event`]s, and sends it SIGTERM or SIGKILL. Dropping a [`Service`] kills the process.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::events::Event;
use crate::wait::eventually;

/// The path of a workspace binary next to the running test: `target/<profile>/<name>`.
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the services first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// Configures a service before it starts.
#[derive(Debug)]
pub struct ServiceBuilder {
    name: String,
    envs: Vec<(String, String)>,
}

impl ServiceBuilder {
    /// Sets one environment variable.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts the binary with only the variables given (plus JSON logs at info).
    pub fn spawn(self) -> Service {
        let mut child = Command::new(binary_path(&self.name))
            .env_clear()
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.name));
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let stdout: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let (events_in, stdout_in) = (events.clone(), stdout.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(event) = Event::parse(&line) {
                    events_in.lock().expect("events").push(event);
                }
                stdout_in.lock().expect("stdout").push(line);
            }
        });
        let stderr_in = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                stderr_in.lock().expect("stderr").push(line);
            }
        });
        Service {
            name: self.name,
            child,
            events,
            stdout,
            stderr,
        }
    }
}

/// A running service binary; killed when dropped if still running.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    events: Arc<Mutex<Vec<Event>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// A service `name` talking to `bootstrap`.
    pub fn builder(name: &str, bootstrap: &str) -> ServiceBuilder {
        ServiceBuilder {
            name: name.to_string(),
            envs: vec![("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.to_string())],
        }
    }

    /// A service `name` with exactly these variables (for configuration tests).
    pub fn with_env_only(name: &str) -> ServiceBuilder {
        ServiceBuilder {
            name: name.to_string(),
            envs: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every event logged so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }

    /// Runs `read` over the events logged so far, without copying them (for checks polled
    /// often over long runs).
    pub fn with_events<R>(&self, read: impl FnOnce(&[Event]) -> R) -> R {
        read(&self.events.lock().expect("events"))
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout").clone()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").join("\n")
    }

    /// Waits until `done` holds for the events so far; false on timeout.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Event]) -> bool) -> bool {
        eventually(timeout, || done(&self.events.lock().expect("events")))
    }

    /// Waits for a lifecycle event `name` (its `event` field).
    pub fn wait_for_event(&self, name: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, |events| events.iter().any(|e| e.is(name)))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
    }

    /// Sends SIGKILL: a crash, with no chance to commit or flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        eventually(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            // Let the reader threads drain the last lines.
            std::thread::sleep(Duration::from_millis(100));
        }
        status
    }

    /// A report for assertion messages: the name, stderr and the last log lines.
    pub fn report(&self) -> String {
        let stdout = self.stdout();
        let tail = stdout[stdout.len().saturating_sub(30)..].join("\n");
        // Debug lines can push the telling ones out of the tail: warnings and errors apart.
        let alarming: Vec<&String> = stdout
            .iter()
            .filter(|line| {
                line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"")
            })
            .collect();
        let alarming = alarming[alarming.len().saturating_sub(20)..]
            .iter()
            .map(|line| line.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "--- {} stderr:\n{}\n--- {} last warnings and errors:\n{alarming}\n--- {} last stdout lines:\n{tail}",
            self.name,
            self.stderr(),
            self.name,
            self.name
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
