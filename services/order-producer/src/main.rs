//! `order-producer` binary: everything is in the library; see `order_producer::run`.

use order_producer::config::ProducerConfig;
use service_runtime::launch::Service;
use std::process::ExitCode;

fn main() -> ExitCode {
    Service {
        name: "order-producer",
        has_health_port: true,
    }
    .main(
        ProducerConfig::from_vars,
        |config| config.common.log_format,
        order_producer::run,
    )
}
