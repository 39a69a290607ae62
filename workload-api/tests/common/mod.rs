//! Shared fixtures for the integration tests: a trust domain with X.509
//! and JWT authorities, SVIDs, and a server on a Unix socket in a temp dir.
#![allow(dead_code, unreachable_pub)]

pub mod raw;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use spiffe_core::{
    BundleSet, JwtBundle, PrivateKey, SpiffeBundle, SpiffeId, TrustDomain, X509Bundle, X509Svid,
};
use test_support::{KeyKind, TestCa, TestJwtKey};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use workload_api::{
    EndpointAddress, EntryId, MemoryIdentityProvider, RegistrationEntry, Selector, ServerLimits,
    UnixAttestor, WorkloadApiServer,
};

/// A trust domain: X.509 CA and JWT signing key.
pub struct Domain {
    pub td: TrustDomain,
    pub ca: TestCa,
    pub jwt_key: TestJwtKey,
    pub kid: String,
}

impl Domain {
    pub fn new(td: &str) -> Self {
        Domain {
            td: td.parse().unwrap(),
            ca: TestCa::new(td),
            jwt_key: TestJwtKey::generate(KeyKind::P256),
            kid: format!("{td}-jwt-1"),
        }
    }

    /// `spiffe://<td><path>`.
    pub fn id(&self, path: &str) -> SpiffeId {
        SpiffeId::from_path(&self.td, path).unwrap()
    }

    pub fn svid(&self, path: &str) -> X509Svid {
        let leaf = self.ca.leaf(&format!("spiffe://{}{path}", self.td));
        X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap()
    }

    pub fn bundle(&self) -> SpiffeBundle {
        let x509 = X509Bundle::new(self.td.clone(), vec![self.ca.root_cert()]).unwrap();
        let jwks = serde_json::json!({"keys": [self.jwt_key.jwk(&self.kid)]});
        let jwt = JwtBundle::from_jwks(self.td.clone(), jwks.to_string().as_bytes()).unwrap();
        let mut set = BundleSet::new();
        set.insert_x509(x509);
        set.insert_jwt(jwt);
        set.get(&self.td).unwrap().clone()
    }

    pub fn signing_key(&self) -> PrivateKey {
        PrivateKey::from_pkcs8_der(self.jwt_key.pkcs8()).unwrap()
    }
}

/// Fails the test when `body` takes longer than `secs` seconds of real
/// time: a regression fails instead of hanging CI.
pub async fn within<T>(secs: u64, body: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(secs), body)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {secs} s"))
}

#[allow(unused_imports)] // not every test binary that includes this module skips
pub use test_support::skip;

/// The test process's own uid selector.
pub fn my_uid_selector() -> Selector {
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    Selector::new("unix", format!("uid:{uid}")).unwrap()
}

/// A registration entry granting `id` to callers with all of `selectors`,
/// parented by the node `spiffe://<td>/node/test`; it passes the shared
/// entry rule.
pub fn entry_for(id: SpiffeId, selectors: impl IntoIterator<Item = Selector>) -> RegistrationEntry {
    let node = SpiffeId::from_path(id.trust_domain(), "/node/test").unwrap();
    RegistrationEntry::new(id, node, selectors.into_iter().collect()).unwrap()
}

/// The common test world: a temp dir holding the socket path, the trust
/// domain `example.org`, and a provider that gives the test process's uid
/// `spiffe://example.org/web`.
pub struct World {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub domain: Domain,
    pub provider: Arc<MemoryIdentityProvider>,
    pub entry: EntryId,
}

impl World {
    pub fn new(tag: &str) -> Self {
        Self::with_path(tag, "/web")
    }

    /// The same world, the test uid's entry naming `spiffe://example.org<path>`.
    pub fn with_path(tag: &str, path: &str) -> Self {
        let dir = TempDir::new(tag);
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        let entry = provider
            .add_entry(
                entry_for(domain.id(path), [my_uid_selector()]),
                domain.svid(path),
            )
            .expect("the test entry is valid");
        World {
            dir,
            socket,
            domain,
            provider,
            entry,
        }
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let mut rnd = [0u8; 8];
        aws_lc_rs::rand::fill(&mut rnd).unwrap();
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let p = std::env::temp_dir().join(format!("wlapi-{tag}-{name}"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server; stops when `stop` is called or on drop.
pub struct Running {
    pub server: Arc<WorkloadApiServer>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), workload_api::ServerError>>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn serve(provider: Arc<MemoryIdentityProvider>, socket: &std::path::Path) -> Running {
    serve_with(provider, socket, ServerLimits::default())
}

pub fn serve_with(
    provider: Arc<MemoryIdentityProvider>,
    socket: &std::path::Path,
    limits: ServerLimits,
) -> Running {
    let attestor = Arc::new(UnixAttestor::new());
    start(
        WorkloadApiServer::with_limits(provider, attestor, limits),
        socket,
    )
}

/// Binds `socket` (replacing a stale file) and serves on it until stopped.
fn start(server: WorkloadApiServer, socket: &std::path::Path) -> Running {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let server = Arc::new(server);
    let (tx, rx) = oneshot::channel::<()>();
    let s = Arc::clone(&server);
    let task = tokio::spawn(async move {
        s.serve_unix(listener, async {
            let _ = rx.await;
        })
        .await
    });
    Running {
        server,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn unix_address(socket: &std::path::Path) -> EndpointAddress {
    EndpointAddress::Unix(socket.to_path_buf())
}

/// A provider with one trust domain, its bundle and JWT signer, and no entries.
pub fn provider_for(domain: &Domain) -> Arc<MemoryIdentityProvider> {
    let provider = Arc::new(MemoryIdentityProvider::new());
    let mut set = BundleSet::new();
    set.insert(domain.bundle());
    provider.set_bundles(set);
    provider
        .set_jwt_signer(domain.td.clone(), &domain.signing_key(), domain.kid.clone())
        .expect("test signing keys are P-256");
    provider
}

pub fn serve_attested(
    provider: Arc<MemoryIdentityProvider>,
    socket: &std::path::Path,
    attestor: Arc<dyn workload_api::Attestor>,
) -> Running {
    start(WorkloadApiServer::new(provider, attestor), socket)
}
