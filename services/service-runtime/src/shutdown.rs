//! Graceful shutdown, designed in rather than bolted on.
//!
//! A [`ShutdownTrigger`] is pulled once (by a signal, or by a test); every clone of
//! [`Shutdown`] sees it. Services stop taking new work when it fires, finish what is in hand,
//! flush or commit, and return from `run` so that `main` can exit 0. A watch channel is used
//! rather than a broadcast so that a task which starts waiting *after* the trigger still sees it.
//!
//! [`on_signals`] turns the first SIGTERM or SIGINT into that trigger, via signal-hook-tokio; a
//! second signal means "now": the process exits 130 at once, for an operator who will not wait.

use futures::StreamExt;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::watch;

/// Pulled once to ask everything to stop.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

/// Waits for, or checks, the shutdown request.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// A connected trigger and listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger { sender }, Shutdown { receiver })
}

impl ShutdownTrigger {
    /// Asks every [`Shutdown`] to stop. Pulling it twice is harmless.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// A listener connected to this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            receiver: self.sender.subscribe(),
        }
    }
}

impl Shutdown {
    /// Whether shutdown has been asked for.
    pub fn is_requested(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes when shutdown is asked for (at once if it already was). If every trigger is
    /// dropped without firing, this never completes: nobody can ask any more.
    pub async fn requested(&mut self) {
        if self.receiver.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts listening for SIGTERM and SIGINT: the first pulls `trigger`, a second exits 130.
pub fn on_signals(trigger: ShutdownTrigger) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    tokio::spawn(async move {
        let mut received = 0;
        while let Some(signal) = signals.next().await {
            received += 1;
            let name = if signal == SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            };
            if received == 1 {
                tracing::info!(signal = name, "shutdown requested, finishing work in hand");
                trigger.trigger();
            } else {
                tracing::warn!(signal = name, "second signal, exiting now without cleanup");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_listener_sees_the_trigger_even_one_that_starts_late() {
        let (trigger, mut early) = channel();
        assert!(!early.is_requested());
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(1), early.requested())
            .await
            .expect("early listener woken");
        let mut late = trigger.subscribe();
        assert!(late.is_requested());
        tokio::time::timeout(Duration::from_secs(1), late.requested())
            .await
            .expect("late listener sees it at once");
    }

    #[tokio::test]
    async fn nothing_completes_before_the_trigger() {
        let (_trigger, mut shutdown) = channel();
        let waited = tokio::time::timeout(Duration::from_millis(50), shutdown.requested()).await;
        assert!(waited.is_err());
    }
}
