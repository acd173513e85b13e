//! Running one measured process: wall time from our side, peak RSS and CPU time from the
//! operating system's own accounting.
//!
//! Each command runs under GNU `/usr/bin/time`, which waits for it with `wait4` and so reports
//! the exact peak resident set (`ru_maxrss`) and CPU seconds of that one process, however it
//! ends. Polling `/proc/PID/status` would miss a peak reached just before exit. The measured
//! process is `time`'s child; signals go to it directly (found through `/proc`), never to
//! `time`.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the operating system says about one finished run.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Start to exit, as seen from here.
    pub wall: Duration,
    /// Peak resident set size in bytes.
    pub peak_rss_bytes: u64,
    /// User plus system CPU seconds.
    pub cpu_secs: f64,
    /// Whether it exited with status 0 (or, for a service we stopped, after our SIGTERM).
    pub success: bool,
    /// Everything it wrote to stdout.
    pub stdout: String,
}

/// A command to run measured.
#[derive(Debug)]
pub struct Measured {
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    clear_env: bool,
}

impl Measured {
    /// A command with exactly the environment given (plus `PATH`).
    pub fn new(program: impl AsRef<Path>) -> Self {
        Measured {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            clear_env: true,
        }
    }

    /// Keeps the caller's environment (for Python, which wants `HOME` and friends).
    pub fn inherit_env(mut self) -> Self {
        self.clear_env = false;
        self
    }

    pub fn arg(mut self, arg: impl ToString) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    pub fn envs(mut self, pairs: &[(String, String)]) -> Self {
        self.envs.extend(pairs.iter().cloned());
        self
    }

    /// Starts it, stdout to `<dir>/<label>.out`.
    pub fn spawn(self, dir: &Path, label: &str) -> Running {
        let stdout_path = dir.join(format!("{label}.out"));
        let time_path = dir.join(format!("{label}.time"));
        let stderr_path = dir.join(format!("{label}.err"));
        let stdout = File::create(&stdout_path).expect("create the stdout file");
        let stderr = File::create(&stderr_path).expect("create the stderr file");
        let mut command = Command::new("/usr/bin/time");
        if self.clear_env {
            command
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        }
        command
            .arg("--format=%M %U %S")
            .arg("--output")
            .arg(&time_path)
            .arg(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let started = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("start /usr/bin/time {:?}: {err}", self.program));
        Running {
            label: label.to_string(),
            child,
            started,
            stdout_path,
            stderr_path,
            time_path,
            terminated: false,
        }
    }
}

/// A measured process that is running.
#[derive(Debug)]
pub struct Running {
    label: String,
    child: Child,
    started: Instant,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    time_path: PathBuf,
    terminated: bool,
}

impl Running {
    /// What it has written to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Waits until its stdout contains `text`; false if it exited or `timeout` passed first.
    pub fn wait_for_output(&mut self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stdout_so_far().contains(text) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The measured process (the child of `time`), once it exists.
    fn measured_pid(&self) -> Option<i32> {
        let parent = self.child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let children =
                std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
                    .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                return pid.parse().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Sends SIGTERM to the measured process: a service's own, graceful stop.
    pub fn terminate(&mut self) {
        if let Some(pid) = self.measured_pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            self.terminated = true;
        }
    }

    /// Waits for it to exit; kills it and says so after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Result<Finished, String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                if let Some(pid) = self.measured_pid() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = self.child.wait();
                return Err(format!(
                    "{} did not finish within {} s; see {}",
                    self.label,
                    timeout.as_secs(),
                    self.stderr_path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let wall = self.started.elapsed();
        // GNU time writes "Command exited with non-zero status N" or "Command terminated by
        // signal N" before its own line when the command did not exit 0.
        let report = std::fs::read_to_string(&self.time_path).unwrap_or_default();
        let last = report.lines().last().unwrap_or_default();
        let fields: Vec<f64> = last
            .split_whitespace()
            .filter_map(|field| field.parse().ok())
            .collect();
        let [peak_kib, user, system] = fields[..] else {
            return Err(format!(
                "{}: cannot read /usr/bin/time's report {:?}",
                self.label, report
            ));
        };
        let exited_cleanly = status.success() && !report.contains("Command");
        Ok(Finished {
            wall,
            peak_rss_bytes: (peak_kib * 1024.0) as u64,
            cpu_secs: user + system,
            success: exited_cleanly || (self.terminated && status.success()),
            stdout: std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
        })
    }

    /// The end of its stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr_path)
    }
}

/// The last lines of a file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
