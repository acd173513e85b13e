//! `order-tracker` binary: everything is in the library; see `order_tracker::run`, and
//! `order_tracker::window_totals` for `order-tracker window-totals [--json]`.

use order_tracker::config::TrackerConfig;
use service_runtime::config::process_env;
use service_runtime::launch::Service;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("window-totals") {
        return order_tracker::window_totals(&args[1..], &process_env(), &mut std::io::stdout());
    }
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
