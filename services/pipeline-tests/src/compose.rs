//! Driving the compose stack from tests, the way a user does: `docker compose up --build
//! --wait`, `--scale`, `logs`, `stop`, `down`, on the committed `docker-compose.yml` and
//! `deploy/Dockerfile`, and reading what happened from two sources that do not depend on our own
//! code being right: Docker's records (container state, health, exit codes, `docker events`) and
//! the services' own JSON logs (`LOG_FORMAT=json`), read by structured field, never by prose.
//!
//! Where no registry can be reached (this project's CI machine), [`Setup::from_env`] builds the
//! stand-ins with `deploy/standins/build.sh` (shell is the right tool for building images) and
//! adds `deploy/compose.standin.yml`, which swaps only the broker and passes the stand-in base
//! images to the Dockerfile's own build arguments; on GitHub's runners the same test runs on the
//! real pinned images.
//!
//! Shaped for more checks: the test target (`tests/compose.rs`) is one stack brought up once and
//! a list of named checks run in order by [`Checks`]; a later issue adds a function and a line.
//! Log lines are read with the harness's one reader ([`crate::events::Event`]) and waits use its
//! one [`eventually`], so the compose checks and the integration tests agree on what a fact is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The lifecycle and per-order events the checks look for, as the services' `event` field names
/// them (issue 9: "lifecycle events carry a stable structured field").
pub mod event {
    /// Producer: one per delivery report that says delivered; fields `order_id`, `partition`,
    /// `offset`.
    pub const ORDER_DELIVERED: &str = "order_delivered";
    /// Tracker: one per order counted and printed; field `order_id`.
    pub const ORDER_TRACKED: &str = "order_tracked";
    /// Tracker: a redelivered order recognised and not counted again; field `order_id`.
    pub const DUPLICATE_SKIPPED: &str = "duplicate_skipped";
    /// Tracker: the group gave it partitions; field `partitions`.
    pub const PARTITIONS_ASSIGNED: &str = "partitions_assigned";
    /// Tracker: a message that is not a valid order was written to the dead-letter topic.
    pub const DEAD_LETTERED: &str = "dead_lettered";
    /// Tracker: the synchronous commit at shutdown succeeded.
    pub const FINAL_COMMIT: &str = "final_commit";
    /// Producer: everything queued was delivered or reported failed within the flush timeout.
    pub const PRODUCER_FLUSHED: &str = "producer_flushed";
}

/// The repository root (this crate is `services/pipeline-tests`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// `SKIP_E2E=1` is the one way to leave the end-to-end test out; anything else runs it, and a
/// machine without Docker then fails it rather than passing it unseen.
pub fn skip_requested() -> bool {
    std::env::var("SKIP_E2E").is_ok_and(|v| v == "1")
}

/// Seconds since the epoch, in the form `docker logs --since` takes.
pub fn now_for_since() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Nanoseconds since the epoch, comparable with `docker events`' `TimeNano`.
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

pub use crate::wait::eventually;

/// Runs a command to completion; `Err` carries the command line, status and stderr's tail.
pub fn run(command: &mut Command) -> Result<Output, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {command:?}: {err}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stdout), 20),
            tail(&String::from_utf8_lossy(&output.stderr), 40)
        ))
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn stdout_of(command: &mut Command) -> Result<String, String> {
    run(command).map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker() -> Command {
    Command::new("docker")
}

// ---------------------------------------------------------------------------------------------
// Which images, and how they are named

/// The images the stack runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Images {
    /// cp-kafka and distroless as pinned, pulled from their registries (GitHub's runners).
    Real,
    /// The local stand-ins from `deploy/standins/build.sh`, by name.
    StandIn {
        rust: String,
        runtime: String,
        broker: String,
        /// Prometheus from Debian's package, for the `observability` profile
        /// (`deploy/standins/prometheus.sh`).
        prometheus: String,
    },
}

/// Everything decided before the stack starts, from the environment:
///
/// | Variable | Default | Meaning |
/// | --- | --- | --- |
/// | `E2E_IMAGES` | `auto` | `real`, `standin`, or `auto`: real when the pinned runtime base can be pulled |
/// | `E2E_PROJECT_PREFIX` | `orderpipe-e2e` | compose project name prefix (the process id follows) |
/// | `IMAGE_PREFIX`, `IMAGE_TAG` | `order-pipeline`, `latest` | our images' names, as docker-compose.yml reads them |
/// | `STANDIN_PREFIX` | `order-pipeline-standin` | the stand-ins' names (read by deploy/standins/build.sh) |
/// | `E2E_KEEP` | unset | `1` leaves the stack running at the end |
#[derive(Debug, Clone)]
pub struct Setup {
    pub images: Images,
    pub project: String,
    pub image_prefix: String,
    pub image_tag: String,
    pub keep: bool,
}

impl Setup {
    /// Checks that Docker and Compose v2 are there, decides real or stand-in images, and builds
    /// the stand-ins when they are needed. Every failure says what to install or set.
    pub fn from_env() -> Result<Setup, String> {
        stdout_of(docker().args(["version", "--format", "{{.Server.Version}}"])).map_err(
            |err| {
                format!(
                    "Docker is needed for the end-to-end test (SKIP_E2E=1 leaves it out): {err}"
                )
            },
        )?;
        let compose =
            stdout_of(docker().args(["compose", "version", "--short"])).map_err(|_| {
                "`docker compose` (Compose v2) is needed; deploy/install-compose-v2.sh installs it \
             from Debian's package"
                    .to_string()
            })?;
        if !(compose.starts_with('2') || compose.starts_with("v2")) {
            return Err(format!(
                "`docker compose` is {compose}, not Compose v2; see deploy/install-compose-v2.sh"
            ));
        }
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let images = match var("E2E_IMAGES", "auto").as_str() {
            "real" => Images::Real,
            "standin" => build_standins()?,
            "auto" => {
                let runtime = pinned_runtime_image()?;
                if can_pull(&runtime) {
                    Images::Real
                } else {
                    eprintln!(
                        "# {runtime} cannot be pulled here (no registry): using the local stand-ins \
                         (deploy/standins/build.sh) instead of the pinned base images and broker"
                    );
                    build_standins()?
                }
            }
            other => {
                return Err(format!(
                    "E2E_IMAGES={other:?}: expected auto, real or standin"
                ));
            }
        };
        Ok(Setup {
            images,
            project: format!(
                "{}-{}",
                var("E2E_PROJECT_PREFIX", "orderpipe-e2e"),
                std::process::id()
            ),
            image_prefix: var("IMAGE_PREFIX", "order-pipeline"),
            image_tag: var("IMAGE_TAG", "latest"),
            keep: var("E2E_KEEP", "0") == "1",
        })
    }

    /// Our image for one service, as docker-compose.yml names it.
    pub fn image(&self, service: &str) -> String {
        format!("{}/{service}:{}", self.image_prefix, self.image_tag)
    }
}

/// The distroless digest the Dockerfile pins (its `ARG RUNTIME_IMAGE=` default).
fn pinned_runtime_image() -> Result<String, String> {
    let dockerfile = repo_root().join("deploy/Dockerfile");
    let text = fs::read_to_string(&dockerfile)
        .map_err(|err| format!("cannot read {}: {err}", dockerfile.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("ARG RUNTIME_IMAGE="))
        .map(str::to_string)
        .ok_or_else(|| format!("no `ARG RUNTIME_IMAGE=` in {}", dockerfile.display()))
}

fn can_pull(image: &str) -> bool {
    Command::new("timeout")
        .args(["300", "docker", "pull", "--quiet", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn build_standins() -> Result<Images, String> {
    let script = repo_root().join("deploy/standins/build.sh");
    let started = Instant::now();
    let out = stdout_of(Command::new(&script).stderr(Stdio::inherit()))?;
    let vars: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |name: &str| {
        vars.get(name)
            .map(|v| v.to_string())
            .ok_or_else(|| format!("{} printed no {name}", script.display()))
    };
    eprintln!(
        "# stand-ins ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let prometheus_script = repo_root().join("deploy/standins/prometheus.sh");
    let prometheus = stdout_of(Command::new(&prometheus_script).stderr(Stdio::inherit()))?
        .lines()
        .find_map(|l| l.strip_prefix("STANDIN_PROMETHEUS_IMAGE="))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "{} printed no STANDIN_PROMETHEUS_IMAGE",
                prometheus_script.display()
            )
        })?;
    Ok(Images::StandIn {
        rust: get("STANDIN_RUST_IMAGE")?,
        runtime: get("STANDIN_RUNTIME_IMAGE")?,
        broker: get("STANDIN_BROKER_IMAGE")?,
        prometheus,
    })
}

// ---------------------------------------------------------------------------------------------
// Compose

/// One compose project on the committed files (plus the stand-in override when needed).
#[derive(Debug)]
pub struct Compose {
    pub setup: Setup,
    /// The directory holding docker-compose.yml (the repository, or a copy of it).
    pub dir: PathBuf,
    files: Vec<String>,
    env: Vec<(String, String)>,
    unset: Vec<String>,
}

impl Compose {
    /// The stack in `dir` with `env` passed to every compose command (service settings such
    /// as `LOG_FORMAT=json`; `None` removes a variable this process may have), plus our images'
    /// and the stand-ins' names.
    pub fn new(setup: &Setup, dir: &Path, env: &[(&str, Option<String>)]) -> Compose {
        let mut files = vec!["docker-compose.yml".to_string()];
        let mut all_env: Vec<(String, String)> = env
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
            .collect();
        let unset = env
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string())
            .collect();
        all_env.push(("IMAGE_PREFIX".into(), setup.image_prefix.clone()));
        all_env.push(("IMAGE_TAG".into(), setup.image_tag.clone()));
        if let Images::StandIn {
            rust,
            runtime,
            broker,
            prometheus,
        } = &setup.images
        {
            files.push("deploy/compose.standin.yml".to_string());
            // Inert unless the `observability` profile is asked for (its service is profiled).
            files.push("deploy/compose.observability-standin.yml".to_string());
            all_env.push(("STANDIN_RUST_IMAGE".into(), rust.clone()));
            all_env.push(("STANDIN_RUNTIME_IMAGE".into(), runtime.clone()));
            all_env.push(("STANDIN_BROKER_IMAGE".into(), broker.clone()));
            all_env.push(("STANDIN_PROMETHEUS_IMAGE".into(), prometheus.clone()));
        }
        Compose {
            setup: setup.clone(),
            dir: dir.to_path_buf(),
            files,
            env: all_env,
            unset,
        }
    }

    /// `docker compose -p <project> -f ... <args>`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = docker();
        command.current_dir(&self.dir).args([
            "compose",
            "--progress",
            "plain",
            "-p",
            &self.setup.project,
        ]);
        for file in &self.files {
            command.args(["-f", file]);
        }
        command.args(args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        for name in &self.unset {
            command.env_remove(name);
        }
        command
    }

    /// Runs `docker compose <args>`; `Ok` holds stdout and stderr together (build progress
    /// goes to stderr).
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = run(&mut self.command(args))?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// Runs `docker compose <args>`; `Ok` holds stdout alone (what a `run` of a service printed,
    /// without Compose's own progress lines).
    pub fn run_stdout(&self, args: &[&str]) -> Result<String, String> {
        run(&mut self.command(args)).map(|output| String::from_utf8_lossy(&output.stdout).into())
    }

    /// `docker compose --profile <profile> <args>` (`*` = every profile), run like
    /// [`Compose::run`]: for the commands that reach a profile's services.
    pub fn run_in_profile(&self, profile: &str, args: &[&str]) -> Result<String, String> {
        let output = run(self.command(args).env("COMPOSE_PROFILES", profile))?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// Like [`Compose::run`], but prints every line as it comes, each after `prefix`: for the
    /// long commands (`up --build`) whose progress a person watching wants to see.
    pub fn run_streaming(&self, args: &[&str], prefix: &str) -> Result<String, String> {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", self.describe(args)))?;
        let (collected, readers) = collect_lines(&mut child, Some(prefix));
        let status = child
            .wait()
            .map_err(|err| format!("{}: {err}", self.describe(args)))?;
        for reader in readers {
            let _ = reader.join();
        }
        let text = collected.lock().map(|t| t.clone()).unwrap_or_default();
        if status.success() {
            Ok(text)
        } else {
            Err(format!(
                "{} failed ({status}):\n{}",
                self.describe(args),
                tail(&text, 40)
            ))
        }
    }

    /// The shell form of a compose command, for messages.
    pub fn describe(&self, args: &[&str]) -> String {
        let mut line = format!("docker compose -p {}", self.setup.project);
        for file in &self.files {
            let _ = write!(line, " -f {file}");
        }
        format!("{line} {}", args.join(" "))
    }

    /// This project's containers of `service`, running or not, in replica order. By label
    /// rather than by name, which Compose versions spell differently.
    pub fn containers(&self, service: &str) -> Vec<Container> {
        let ids = stdout_of(docker().args([
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.setup.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]))
        .unwrap_or_default();
        let mut containers: Vec<Container> = ids
            .lines()
            .filter(|id| !id.is_empty())
            .map(|id| Container {
                id: id.to_string(),
                number: inspect(
                    id,
                    "{{index .Config.Labels \"com.docker.compose.container-number\"}}",
                )
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            })
            .collect();
        containers.sort_by_key(|c| c.number);
        containers
    }

    /// The first container of `service`.
    pub fn container(&self, service: &str) -> Result<Container, String> {
        self.containers(service)
            .into_iter()
            .next()
            .ok_or_else(|| format!("no {service} container"))
    }

    /// `down -v` with time to stop gracefully, every profile's services included; errors only
    /// reported (used on the way out).
    pub fn down_quietly(&self) {
        if let Err(err) =
            self.run_in_profile("*", &["down", "-v", "--remove-orphans", "--timeout", "30"])
        {
            eprintln!("# cleanup: {err}");
        }
    }

    /// Every container's log, in time order, without the per-order lines (thousands) except
    /// the last `order_lines`: what a person needs to see when a check failed.
    pub fn logs_for_report(&self, other_lines: usize, order_lines: usize) -> String {
        let logs = self
            .run(&["logs", "--no-color", "--timestamps"])
            .unwrap_or_else(|err| err);
        let mut lines: Vec<&str> = logs.lines().collect();
        // "<service-n>  | <timestamp> <line>": sort by the timestamp.
        lines.sort_by_key(|l| l.split_once("| ").map_or("", |(_, rest)| rest));
        let is_order = |l: &&str| {
            l.contains("order_tracker::orders") || l.contains("order_producer::delivery")
        };
        let (orders, others): (Vec<&str>, Vec<&str>) = lines.into_iter().partition(is_order);
        format!(
            "----- compose logs, all but per-order lines, last {other_lines} -----\n{}\
             ----- per-order lines, last {order_lines} -----\n{}",
            tail(&others.join("\n"), other_lines),
            tail(&orders.join("\n"), order_lines)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Containers and their logs

/// A container of the project; `number` is Compose's replica number (1 for the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub number: u32,
}

impl Container {
    /// The short id, for messages.
    pub fn short(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// `docker inspect -f <format>`.
    pub fn inspect(&self, format: &str) -> Result<String, String> {
        inspect(&self.id, format)
    }

    /// Its addresses on the project's networks, while it runs (none once it has stopped).
    pub fn running_ips(&self) -> Result<Vec<String>, String> {
        let text = self.inspect(
            "{{.State.Running}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        )?;
        let mut words = text.split_whitespace();
        Ok(if words.next() == Some("true") {
            words.map(str::to_string).collect()
        } else {
            Vec::new()
        })
    }

    /// `running`, `exited`, ...
    pub fn status(&self) -> String {
        self.inspect("{{.State.Status}}").unwrap_or_default()
    }

    /// `healthy`, `starting`, `unhealthy`, or `none` without a health check.
    pub fn health(&self) -> String {
        self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}")
            .unwrap_or_default()
    }

    pub fn exit_code(&self) -> Option<i64> {
        self.inspect("{{.State.ExitCode}}").ok()?.parse().ok()
    }

    /// Its log (stdout and stderr) parsed as JSON lines; `since` is a [`now_for_since`] value.
    pub fn logs(&self, since: Option<&str>) -> Logs {
        let mut command = docker();
        command.arg("logs");
        if let Some(since) = since {
            command.args(["--since", since]);
        }
        command.arg(&self.id);
        match command.stdin(Stdio::null()).output() {
            Ok(out) => Logs::parse(&format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(_) => Logs::default(),
        }
    }

    /// Starts following its log (`docker logs -f`) from now; [`LogFollower::finish`] returns
    /// what it read once the container has stopped. For reading a container's last words
    /// through `down`, which removes it.
    pub fn follow_logs(&self) -> Result<LogFollower, String> {
        let mut child = docker()
            .args(["logs", "-f", "--since", &now_for_since(), &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot run docker logs -f: {err}"))?;
        let (collected, readers) = collect_lines(&mut child, None);
        Ok(LogFollower {
            child,
            readers,
            collected,
        })
    }
}

/// Reads `child`'s stdout and stderr line by line on threads of their own, into one text
/// (lines in arrival order), echoing each line to stderr after `echo_prefix` when one is given.
/// The threads end when the child closes its output; join them before reading the text.
fn collect_lines(
    child: &mut Child,
    echo_prefix: Option<&str>,
) -> (Arc<Mutex<String>>, Vec<JoinHandle<()>>) {
    let collected = Arc::new(Mutex::new(String::new()));
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let readers = [stdout, stderr]
        .into_iter()
        .flatten()
        .map(|stream| {
            let sink = Arc::clone(&collected);
            let prefix = echo_prefix.map(str::to_string);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(prefix) = &prefix {
                        eprintln!("{prefix}{line}");
                    }
                    if let Ok(mut text) = sink.lock() {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            })
        })
        .collect();
    (collected, readers)
}

/// `docker inspect -f <format> <id>`.
pub fn inspect(id: &str, format: &str) -> Result<String, String> {
    stdout_of(docker().args(["inspect", "-f", format, id]))
}

/// A running `docker logs -f`.
#[derive(Debug)]
pub struct LogFollower {
    child: Child,
    readers: Vec<JoinHandle<()>>,
    collected: Arc<Mutex<String>>,
}

impl LogFollower {
    /// Waits for the log to end (the container stopped), at most `timeout`, and parses it.
    pub fn finish(mut self, timeout: Duration) -> Logs {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let text = self.collected.lock().map(|t| t.clone()).unwrap_or_default();
        Logs::parse(&text)
    }
}

// ---------------------------------------------------------------------------------------------
// Log lines

/// One JSON log line of a service: the harness's one reader of log lines, shared with the
/// integration tests ([`crate::events`]).
pub use crate::events::Event as LogLine;

/// `line` without terminal control sequences (`ESC [ ... letter`): Compose 2.26's `logs` starts
/// every line with "erase line" even under `--no-color`.
pub fn strip_terminal_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A container's log: its JSON lines, and how many lines were not JSON.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    pub lines: Vec<LogLine>,
    pub not_json: Vec<String>,
}

impl Logs {
    pub fn parse(text: &str) -> Logs {
        let mut logs = Logs::default();
        for line in text.lines().map(strip_terminal_escapes) {
            if line.trim().is_empty() {
                continue;
            }
            match LogLine::parse(&line) {
                Some(parsed) => logs.lines.push(parsed),
                None => logs.not_json.push(line),
            }
        }
        logs
    }

    /// The lines of one event.
    pub fn events<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a LogLine> + 'a {
        self.lines.iter().filter(move |l| l.is(name))
    }

    pub fn has(&self, name: &str) -> bool {
        self.events(name).next().is_some()
    }
}

// ---------------------------------------------------------------------------------------------
// Docker's event stream

/// `docker events` for one project, recorded from [`DockerEvents::start`] on: when each
/// container started, became healthy, died and with which exit code.
#[derive(Debug)]
pub struct DockerEvents {
    child: Child,
    reader: Option<JoinHandle<()>>,
    records: Arc<Mutex<Vec<DockerEvent>>>,
}

/// One record of `docker events`.
#[derive(Debug, Clone)]
pub struct DockerEvent {
    pub time_nanos: u128,
    pub service: String,
    pub container: String,
    /// `start`, `die`, `health_status: healthy`, ...
    pub action: String,
    /// On `die`: the exit code.
    pub exit_code: Option<i64>,
}

impl DockerEvents {
    pub fn start(project: &str) -> Result<DockerEvents, String> {
        let mut child = docker()
            .args([
                "events",
                "--filter",
                &format!("label=com.docker.compose.project={project}"),
                "--format",
                "{{.TimeNano}}|{{index .Actor.Attributes \"com.docker.compose.service\"}}|{{.Actor.ID}}|{{index .Actor.Attributes \"exitCode\"}}|{{.Action}}",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot run docker events: {err}"))?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&records);
        let stdout = child.stdout.take().ok_or("docker events has no stdout")?;
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parts: Vec<&str> = line.splitn(5, '|').collect();
                if let [time, service, container, exit_code, action] = parts[..]
                    && let (Ok(time_nanos), Ok(mut records)) = (time.parse(), sink.lock())
                {
                    records.push(DockerEvent {
                        time_nanos,
                        service: service.to_string(),
                        container: container.to_string(),
                        action: action.to_string(),
                        exit_code: exit_code.parse().ok(),
                    });
                }
            }
        });
        // `docker events` subscribes asynchronously; give it a moment before anything happens.
        std::thread::sleep(Duration::from_secs(1));
        Ok(DockerEvents {
            child,
            reader: Some(reader),
            records,
        })
    }

    pub fn all(&self) -> Vec<DockerEvent> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// When `service` first did `action`.
    pub fn first(&self, service: &str, action: &str) -> Option<u128> {
        self.all()
            .into_iter()
            .find(|e| e.service == service && e.action == action)
            .map(|e| e.time_nanos)
    }

    /// The exit code the last `die` of `container` reported.
    pub fn exit_code(&self, container: &str) -> Option<i64> {
        self.all()
            .into_iter()
            .rev()
            .find(|e| e.container == container && e.action == "die")
            .and_then(|e| e.exit_code)
    }

    /// For a failure report: every record but the health probes' exec events.
    pub fn report(&self) -> String {
        let mut out =
            String::from("----- docker events: time(ns) service container exit action -----\n");
        for e in self.all().iter().filter(|e| !e.action.starts_with("exec_")) {
            let _ = writeln!(
                out,
                "{} {} {} {} {}",
                e.time_nanos,
                e.service,
                &e.container[..12.min(e.container.len())],
                e.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                e.action
            );
        }
        out
    }
}

impl Drop for DockerEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Build output (BuildKit's plain progress)

/// What `docker compose --progress plain build` printed, read per build step.
#[derive(Debug, Clone, Default)]
pub struct BuildOutput {
    /// Step number -> its title, e.g. `[order-tracker builder 4/6] RUN cargo chef cook ...`.
    pub steps: BTreeMap<u32, String>,
    /// Steps answered from the cache.
    pub cached: Vec<u32>,
    /// Step number -> seconds it took (from `#N DONE 12.3s`).
    pub durations: BTreeMap<u32, f64>,
    /// Step number -> the crates cargo compiled in it (`Compiling <name> v<version>`).
    pub compiled: BTreeMap<u32, Vec<String>>,
}

impl BuildOutput {
    pub fn parse(text: &str) -> BuildOutput {
        let mut out = BuildOutput::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix('#') else {
                continue;
            };
            let Some((number, body)) = rest.split_once(' ') else {
                continue;
            };
            let Ok(step) = number.parse::<u32>() else {
                continue;
            };
            let body = body.trim();
            if body.starts_with('[') {
                out.steps.entry(step).or_insert_with(|| body.to_string());
            } else if body == "CACHED" {
                out.cached.push(step);
            } else if let Some(secs) = body.strip_prefix("DONE ") {
                if let Ok(secs) = secs.trim_end_matches('s').parse() {
                    out.durations.insert(step, secs);
                }
            } else if let Some(pos) = body.find("Compiling ") {
                let name = body[pos + "Compiling ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default();
                out.compiled.entry(step).or_default().push(name.to_string());
            }
        }
        out
    }

    /// The steps whose title contains `needle`.
    pub fn steps_matching<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = u32> + 'a {
        self.steps
            .iter()
            .filter(move |(_, title)| title.contains(needle))
            .map(|(step, _)| *step)
    }

    /// A few lines on where the time went: each RUN step's duration, or CACHED.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (step, title) in &self.steps {
            if !title.contains(" RUN ") {
                continue;
            }
            let how = if self.cached.contains(step) {
                "CACHED".to_string()
            } else {
                self.durations
                    .get(step)
                    .map_or_else(|| "?".to_string(), |s| format!("{s:.1} s"))
            };
            let short: String = title.chars().take(100).collect();
            let _ = writeln!(out, "#   {how:>8}  {short}");
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Named checks

/// Runs named checks in order, prints `ok - name` or `FAIL - name` with the reason as each
/// finishes, and reports them all at the end. A check is any `FnOnce() -> Result<(), String>`.
#[derive(Debug, Default)]
pub struct Checks {
    passed: Vec<String>,
    failed: Vec<(String, String)>,
}

impl Checks {
    pub fn run(&mut self, name: &str, check: impl FnOnce() -> Result<(), String>) {
        let started = Instant::now();
        let result = check();
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                eprintln!("ok - {name} ({secs:.1} s)");
                self.passed.push(name.to_string());
            }
            Err(reason) => {
                eprintln!("FAIL - {name} ({secs:.1} s)");
                for line in reason.lines() {
                    eprintln!("#   {line}");
                }
                self.failed.push((name.to_string(), reason));
            }
        }
    }

    /// Records a check that could not run because an earlier step failed.
    pub fn not_run(&mut self, name: &str, why: &str) {
        eprintln!("FAIL - {name}: not run: {why}");
        self.failed
            .push((name.to_string(), format!("not run: {why}")));
    }

    pub fn any_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// `Ok` when every check passed; otherwise the failed checks with their reasons.
    pub fn finish(self) -> Result<(), String> {
        eprintln!("{} passed, {} failed", self.passed.len(), self.failed.len());
        if self.failed.is_empty() {
            return Ok(());
        }
        let mut out = String::new();
        for (name, reason) in &self.failed {
            let _ = writeln!(out, "FAIL - {name}\n{}", indent(reason));
        }
        Err(out)
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_output_is_read_per_step() {
        let text = "#12 [order-tracker builder 4/6] RUN cargo chef cook --release\n\
                    #12 CACHED\n\
                    #15 [order-tracker builder 6/6] RUN cargo build --release\n\
                    #15 3.2    Compiling order-contract v0.1.0 (/src/services/order-contract)\n\
                    #15 9.9    Compiling order-tracker v0.1.0 (/src/services/order-tracker)\n\
                    #15 DONE 71.4s\n";
        let out = BuildOutput::parse(text);
        assert_eq!(out.cached, vec![12]);
        assert_eq!(
            out.steps_matching("chef cook").collect::<Vec<_>>(),
            vec![12]
        );
        assert_eq!(
            out.compiled.get(&15).cloned().unwrap_or_default(),
            vec!["order-contract", "order-tracker"]
        );
        assert_eq!(out.durations.get(&15).copied(), Some(71.4));
    }

    #[test]
    fn log_lines_are_read_by_field() {
        let logs = Logs::parse(
            "{\"level\":\"INFO\",\"target\":\"x\",\"event\":\"final_commit\",\"offsets\":\"orders/0@5\"}\n\
             not json\n\
             {\"level\":\"INFO\",\"target\":\"order_producer::delivery\",\"event\":\"order_delivered\",\"order_id\":\"a\",\"partition\":3,\"offset\":7,\"message\":\"delivered\"}\n",
        );
        assert_eq!(logs.not_json, vec!["not json"]);
        let erased = Logs::parse("\u{1b}[2K{\"level\":\"INFO\",\"event\":\"final_commit\"}\n");
        assert!(erased.not_json.is_empty() && erased.has(event::FINAL_COMMIT));
        assert!(logs.has(event::FINAL_COMMIT));
        let delivered: Vec<_> = logs.events(event::ORDER_DELIVERED).collect();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].int("partition"), Some(3));
        assert!(!logs.has(event::PRODUCER_FLUSHED));
    }
}
