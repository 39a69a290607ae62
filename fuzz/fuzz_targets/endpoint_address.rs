//! Workload API endpoint addresses (`SPIFFE_ENDPOINT_SOCKET` values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_api::EndpointAddress;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<EndpointAddress>();
});
