#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_ca::{CaConfig, CertificateAuthority, Entitlement, ManualClock};

pub const TD: &str = "example.org";

pub fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn config() -> CaConfig {
    CaConfig::new(TD.parse().unwrap())
}

pub fn ca_with(config: CaConfig) -> (CertificateAuthority, ManualClock) {
    let clock = ManualClock::new(start());
    let ca = CertificateAuthority::builder(config)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    (ca, clock)
}

pub fn ca() -> (CertificateAuthority, ManualClock) {
    ca_with(config())
}

pub fn ent(path: &str) -> Entitlement {
    Entitlement::new(format!("spiffe://{TD}{path}").parse().unwrap())
}
