//! Shared material for the examples: an in-process `svid-ca` authority for
//! `example.org` that issues each example workload its X509-SVID.
//!
//! Run an example with `cargo run -p examples --example NAME`; each starts
//! its server and client in one process, prints the result and exits.

pub mod greeter;

use std::error::Error;
use std::sync::Arc;

use spiffe_core::{BundleSet, MemoryBundleSource, MemorySvidSource, SpiffeId};
use svid_ca::{CaConfig, CertificateAuthority, Entitlement};

/// The result type of the examples' `main`.
pub type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// An authority for one trust domain and the bundle it publishes.
pub struct Authority {
    ca: CertificateAuthority,
    bundles: Arc<MemoryBundleSource>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A fresh in-memory authority for `trust_domain`.
    pub fn new(trust_domain: &str) -> Result<Self> {
        let ca = CertificateAuthority::builder(CaConfig::new(trust_domain.parse()?)).build()?;
        let bundles = Arc::new(MemoryBundleSource::new(BundleSet::from_iter([(*ca
            .bundle())
        .clone()])));
        Ok(Authority { ca, bundles })
    }

    /// The bundle source every workload of the trust domain shares.
    pub fn bundles(&self) -> Arc<MemoryBundleSource> {
        self.bundles.clone()
    }

    /// An SVID source holding a freshly issued SVID for `id`.
    pub fn workload(&self, id: &str) -> Result<Arc<MemorySvidSource>> {
        let id: SpiffeId = id.parse()?;
        let svid = self.ca.issue_x509_svid(&Entitlement::new(id))?;
        Ok(Arc::new(MemorySvidSource::new(svid)))
    }
}

/// The command line of the `first_service` examples:
/// `serve ADDR POLICY.yaml` or `call TARGET [WAIT_SECS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve on `addr` with the AuthorizationPolicy file `policy`.
    Serve {
        /// Listen address.
        addr: String,
        /// Policy file.
        policy: String,
    },
    /// Call `target`, waiting up to `wait` for this process's SVID.
    Call {
        /// URL or address.
        target: String,
        /// How long to wait for the first SVID.
        wait: std::time::Duration,
    },
}

impl Command {
    /// Parses the process's arguments; the error is the usage line.
    pub fn from_args(name: &str) -> Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let wait = |secs: Option<&&str>| -> Result<std::time::Duration> {
            Ok(match secs {
                Some(s) => std::time::Duration::from_secs(s.parse()?),
                None => workload_api::DEFAULT_CONNECT_WAIT,
            })
        };
        match args.as_slice() {
            ["serve", addr, policy] => Ok(Command::Serve {
                addr: (*addr).to_owned(),
                policy: (*policy).to_owned(),
            }),
            ["call", target, rest @ ..] if rest.len() <= 1 => Ok(Command::Call {
                target: (*target).to_owned(),
                wait: wait(rest.first())?,
            }),
            _ => Err(
                format!("usage: {name} serve ADDR POLICY.yaml | call TARGET [WAIT_SECS]").into(),
            ),
        }
    }
}

/// Ends the process: exit 0, or `NAME: error` on stderr and exit 1.
pub fn exit_with(name: &str, result: Result<()>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1)
        }
    }
}

/// The crypto provider the examples pass explicitly (aws-lc-rs).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
