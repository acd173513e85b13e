//! `topic-init` binary: everything is in the library; see `topic_init::run`.

use service_runtime::launch::Service;
use std::process::ExitCode;
use topic_init::config::TopicInitConfig;

fn main() -> ExitCode {
    Service {
        name: "topic-init",
        has_health_port: false,
    }
    .main(
        TopicInitConfig::from_vars,
        |config| config.common.log_format,
        topic_init::run,
    )
}
