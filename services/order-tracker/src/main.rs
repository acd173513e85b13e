//! `order-tracker` binary: everything is in the library; see `order_tracker::run`.

use order_tracker::config::TrackerConfig;
use service_runtime::launch::Service;
use std::process::ExitCode;

fn main() -> ExitCode {
    Service {
        name: "order-tracker",
        has_health_port: true,
    }
    .main(
        TrackerConfig::from_vars,
        |config| config.common.log_format,
        order_tracker::run,
    )
}
