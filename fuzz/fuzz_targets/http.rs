//! Request handling of the metrics server on arbitrary bytes: parsing never
//! panics, and every complete request gets one of the statuses the server
//! documents.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use random_refresher::kernel::KernelPaths;
use random_refresher::telemetry::LoopStatus;
use random_refresher::telemetry::exporter::Exporter;
use random_refresher::telemetry::http::{HttpState, Parsed, parse, respond};

fn state() -> &'static HttpState {
    static STATE: OnceLock<HttpState> = OnceLock::new();
    STATE.get_or_init(|| HttpState {
        exporter: Arc::new(Exporter::new(&[], KernelPaths::new("/proc".as_ref(), "/sys".as_ref())).unwrap()),
        status: Arc::new(LoopStatus::default()),
        liveness_limit: Duration::from_secs(60),
        users: None,
    })
}

fuzz_target!(|data: &[u8]| {
    if let Parsed::Complete(request) = parse(data) {
        let r = respond(&request, state());
        assert!(matches!(r.status, 200 | 404 | 405 | 503), "{} for {request:?}", r.status);
        if r.status == 405 {
            assert_eq!(r.header, "Allow: GET, HEAD\r\n");
        }
    }
});
