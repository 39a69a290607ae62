//! Workload API responses: arbitrary bytes decoded as one of the five
//! response messages (picked by the first byte), then converted to domain
//! types as the client does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_api::__fuzz::{Response, decode_and_convert};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let kind = Response::ALL[usize::from(which) % Response::ALL.len()];
    let _ = decode_and_convert(kind, bytes);
});
