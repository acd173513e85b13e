//! What every `main` does, written once: answer the `healthcheck` subcommand, load the
//! configuration (one line and exit 78 if it is wrong), start logging, install the signal
//! handlers, run the service on a tokio runtime, and turn its outcome into the exit code.
//!
//! Configuration errors are printed with `eprintln!` before logging exists, as a single line:
//! no panic, no backtrace. Everything after that is logged through `tracing`.

use crate::config::{ConfigError, EXIT_CONFIG, Env, HEALTH_PORT, LogFormat, process_env};
use crate::health;
use crate::shutdown::{self, Shutdown};
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

/// What a service's `run` returns when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished its work or stopped on request: exit 0.
    Completed,
    /// Finished, but some of its work failed (e.g. orders not delivered): exit 1.
    PartlyFailed,
}

/// A service as `main` sees it.
#[derive(Debug)]
pub struct Service {
    /// The binary's name, used as the prefix of start-up errors.
    pub name: &'static str,
    /// Whether the binary serves `/readyz` and so answers `healthcheck`.
    pub has_health_port: bool,
}

impl Service {
    /// Runs the service and returns the process exit code.
    ///
    /// `load` reads the configuration from the environment; `log_format` picks the log format
    /// from it; `run` is the service itself, stopping when its [`Shutdown`] fires.
    pub fn main<C, E, Fut>(
        &self,
        load: impl FnOnce(&[(String, String)]) -> Result<C, ConfigError>,
        log_format: impl FnOnce(&C) -> LogFormat,
        run: impl FnOnce(C, Shutdown) -> Fut,
    ) -> ExitCode
    where
        Fut: Future<Output = Result<Outcome, E>>,
        E: Display,
    {
        let vars = process_env();
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => {}
            ["healthcheck"] if self.has_health_port => return healthcheck(self.name, &vars),
            _ => {
                let usage = if self.has_health_port {
                    format!("usage: {} [healthcheck]", self.name)
                } else {
                    format!("usage: {}", self.name)
                };
                eprintln!(
                    "{}: unexpected arguments {args:?}; all settings come from environment variables\n{usage}",
                    self.name
                );
                return ExitCode::from(2);
            }
        }
        let config = match load(&vars) {
            Ok(config) => config,
            Err(err) => {
                eprintln!("{}: {err}", self.name);
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        crate::telemetry::init(log_format(&config));
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(error = %err, "cannot start the async runtime");
                return ExitCode::FAILURE;
            }
        };
        let outcome = runtime.block_on(async {
            let (trigger, shutdown) = shutdown::channel();
            if let Err(err) = shutdown::on_signals(trigger) {
                tracing::error!(error = %err, "cannot install signal handlers");
                return None;
            }
            match run(config, shutdown).await {
                Ok(outcome) => Some(outcome),
                Err(err) => {
                    tracing::error!(error = %err, "{} failed: {err}", self.name);
                    None
                }
            }
        });
        match outcome {
            Some(Outcome::Completed) => ExitCode::SUCCESS,
            Some(Outcome::PartlyFailed) | None => ExitCode::FAILURE,
        }
    }
}

/// `<binary> healthcheck`: exit 0 if `/readyz` on `HEALTH_PORT` answers 200, else 1.
fn healthcheck(name: &str, vars: &[(String, String)]) -> ExitCode {
    // The same declaration and rule as the service's own HEALTH_PORT.
    let port = match Env::new(vars, &[&[&HEALTH_PORT]]).read(&HEALTH_PORT) {
        Ok(port) => port,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::FAILURE;
        }
    };
    if health::probe(port, "/readyz") {
        ExitCode::SUCCESS
    } else {
        eprintln!("{name}: not ready (http://127.0.0.1:{port}/readyz)");
        ExitCode::FAILURE
    }
}
