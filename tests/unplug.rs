//! The hardware RNG unplugged while the daemon reads it: the virtio-rng
//! driver is unbound from its device (as a hot-unplug or a driver unload
//! would leave it), then bound again. Alone in its own test binary, so that
//! no other test reads /dev/hwrng meanwhile; the binding is restored
//! whatever happens.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const DRIVER: &str = "/sys/bus/virtio/drivers/virtio_rng";
const BOUND: Duration = Duration::from_secs(90);

/// Unbinds the device; binds it again when dropped.
struct Unbound(String);

impl Unbound {
    fn unbind(device: &str) -> std::io::Result<Self> {
        std::fs::write(Path::new(DRIVER).join("unbind"), device)?;
        Ok(Self(device.to_string()))
    }

    fn bind(&self) {
        if !Path::new(DRIVER).join(&self.0).exists() {
            let _ = std::fs::write(Path::new(DRIVER).join("bind"), &self.0);
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        self.bind();
    }
}

fn virtio_rng_device() -> Option<String> {
    std::fs::read_dir(DRIVER)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("virtio"))
}

#[test]
fn an_unplugged_hwrng_fails_over_and_is_used_again_when_it_returns() {
    if !require_root() {
        return;
    }
    let Some(device) = virtio_rng_device() else {
        eprintln!("skipped: no virtio-rng device bound to {DRIVER} on this machine");
        return;
    };
    if !random_refresher::source::CpuInstruction::RdRand.supported() {
        eprintln!("skipped: no second source (rdrand) to fail over to");
        return;
    }
    let d = Daemon::start(&[
        "--source",
        "/dev/hwrng",
        "--source",
        "rdrand",
        "--sink",
        "stdout",
        "--interval",
        "200ms",
        "--read-timeout",
        "2s",
        "--retry-initial",
        "500ms",
        "--retry-max",
        "1s",
        "--max-failed-cycles",
        "100000",
    ]);
    let hwrng_up = "random_refresher_source_up{source=\"/dev/hwrng\"}";
    let ok = || {
        d.metric("random_refresher_cycles_total{result=\"ok\"}")
            .unwrap_or(0.0)
    };
    assert!(
        eventually(BOUND, || (d.metric(hwrng_up)? == 1.0).then_some(())).is_some(),
        "{}",
        d.log()
    );
    let unbound = Unbound::unbind(&device).expect("unbind the virtio-rng driver");
    assert!(
        eventually(BOUND, || d.wait_for_log("now reading rdrand")).is_some(),
        "{}",
        d.log()
    );
    assert_eq!(d.metric(hwrng_up), Some(0.0), "{}", d.log());
    let during = ok();
    assert!(
        eventually(BOUND, || (ok() > during + 3.0).then_some(())).is_some(),
        "cycles stopped: {}",
        d.log()
    );
    assert!(
        d.log().contains("device gone") || d.log().contains("source read failed"),
        "{}",
        d.log()
    );
    unbound.bind();
    let back = PathBuf::from(DRIVER).join(&device);
    assert!(back.exists(), "the driver did not bind again");
    assert!(
        eventually(BOUND, || (d.metric(hwrng_up)? == 1.0).then_some(())).is_some(),
        "{}",
        d.log()
    );
    assert!(
        eventually(BOUND, || d.wait_for_log("now reading /dev/hwrng")).is_some(),
        "{}",
        d.log()
    );
    drop(unbound);
    assert_eq!(d.get("/healthz").0, 200);
}
