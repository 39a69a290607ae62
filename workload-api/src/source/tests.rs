//! The source against a scripted server: malformed updates are discarded,
//! and `InvalidArgument` ends the task.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use spiffe_core::SvidSource;
use test_support::TestCa;
use tonic::{Request, Response, Status};

use spiffe_core::X509Svid;

use super::*;
use crate::EndpointAddress;
use crate::proto;
use crate::proto::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};

type Msgs<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>;

/// Sends its script on `FetchX509SVID`, then keeps the stream open.
struct Scripted {
    script: Vec<Result<proto::X509svidResponse, Status>>,
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Scripted {
    type FetchX509SVIDStream = Msgs<proto::X509svidResponse>;
    type FetchX509BundlesStream = Msgs<proto::X509BundlesResponse>;
    type FetchJWTBundlesStream = Msgs<proto::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _: Request<proto::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let items = futures_util::stream::iter(self.script.clone());
        Ok(Response::new(Box::pin(futures_util::StreamExt::chain(
            items,
            futures_util::stream::pending(),
        ))))
    }
    async fn fetch_x509_bundles(
        &self,
        _: Request<proto::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn fetch_jwt_bundles(
        &self,
        _: Request<proto::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn fetch_jwtsvid(
        &self,
        _: Request<proto::JwtsvidRequest>,
    ) -> Result<Response<proto::JwtsvidResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn validate_jwtsvid(
        &self,
        _: Request<proto::ValidateJwtsvidRequest>,
    ) -> Result<Response<proto::ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
}

fn start(
    script: Vec<Result<proto::X509svidResponse, Status>>,
) -> (EndpointAddress, std::path::PathBuf) {
    let mut rnd = [0u8; 6];
    aws_lc_rs::rand::fill(&mut rnd).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "wlapi-scripted-{}",
        rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("api.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let svc = SpiffeWorkloadApiServer::new(Scripted { script });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(crate::server::accept::unattested(listener)),
    );
    (EndpointAddress::Unix(socket), dir)
}

fn good() -> proto::X509svidResponse {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf("spiffe://example.org/web");
    proto::X509svidResponse {
        svids: vec![proto::X509svid {
            spiffe_id: "spiffe://example.org/web".into(),
            x509_svid: leaf.chain_der(),
            x509_svid_key: leaf.key_der.clone(),
            bundle: ca.root_cert().to_vec(),
            hint: String::new(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn wl_8_malformed_updates_are_discarded_and_the_good_state_kept() {
    let mut no_bundle = good();
    if let Some(s) = no_bundle.svids.first_mut() {
        s.bundle.clear();
    }
    let (address, dir) = start(vec![
        Ok(proto::X509svidResponse::default()),
        Ok(good()),
        Ok(no_bundle),
    ]);
    let (source, task) = X509Source::new(address);
    let _task = tokio::spawn(task);
    let mut health = source.watch_health();
    health
        .wait_for(|h| *h == SourceHealth::Ready)
        .await
        .unwrap();
    let svid: Arc<X509Svid> = source.x509_svid().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while source.discarded_updates() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("both malformed updates are seen within 10 s");
    assert_eq!(source.health(), SourceHealth::Ready);
    assert_eq!(source.x509_svid().unwrap(), svid, "the good SVID is kept");
    assert_eq!(SvidSource::generation(&source), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn ep_7_invalid_argument_ends_the_task_without_retrying() {
    let (address, dir) = start(vec![Err(Status::invalid_argument("bad request"))]);
    let (source, task) = X509Source::new(address);
    let err = tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("the task ends within 10 s")
        .unwrap_err();
    assert_eq!(err.code(), Some(StatusCode::InvalidArgument));
    assert_eq!(
        source.health(),
        SourceHealth::Failed {
            code: StatusCode::InvalidArgument
        }
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn context(
    ca: &TestCa,
    path: &str,
    valid: Option<(time::Duration, time::Duration)>,
) -> crate::X509Context {
    let mut spec = test_support::LeafSpec::new(&format!("spiffe://example.org{path}"));
    if let Some((from, until)) = valid {
        spec = spec.valid(from, until);
    }
    let leaf = ca.leaf_with(spec);
    let svid = X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap();
    let mut bundles = spiffe_core::BundleSet::new();
    bundles.insert_x509(
        spiffe_core::X509Bundle::new("example.org".parse().unwrap(), vec![ca.root_cert()]).unwrap(),
    );
    crate::X509Context {
        svids: vec![crate::WorkloadSvid { svid, hint: None }],
        bundles,
    }
}

#[test]
fn the_svid_and_its_bundle_are_published_as_one_snapshot() {
    // Two CAs take turns (a CA rotation seen by the source); readers check
    // that every snapshot pairs each SVID with the bundle of its own CA.
    let (ca_a, ca_b) = (TestCa::new("example.org"), TestCa::new("example.org"));
    let (a, b) = (context(&ca_a, "/a", None), context(&ca_b, "/b", None));
    let pairs = [
        (a.svids[0].svid.leaf().clone(), a.bundles.clone()),
        (b.svids[0].svid.leaf().clone(), b.bundles.clone()),
    ];
    let source = x509::test_inner(None);
    source.apply_for_test(a.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Arc::new(std::sync::Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (source, stop, start, pairs) = (
                source.clone(),
                Arc::clone(&stop),
                Arc::clone(&start),
                pairs.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let snap = source.snapshot();
                    let leaf = snap.svid().expect("an SVID").leaf().clone();
                    let pair = pairs
                        .iter()
                        .find(|(l, _)| *l == leaf)
                        .expect("a known SVID");
                    assert_eq!(
                        **snap.bundles(),
                        pair.1,
                        "torn snapshot after {reads} reads"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    start.wait();
    for i in 0..4000 {
        source.apply_for_test(if i % 2 == 0 { b.clone() } else { a.clone() });
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("no torn snapshot") > 0);
    }
    assert_eq!(source.snapshot().generation(), 4001);
}

#[test]
fn an_expired_svid_is_never_served() {
    let ca = TestCa::new("example.org");
    let hour = time::Duration::hours(1);
    let source = x509::test_inner(None);
    source.mark_ready_for_test();
    source.apply_for_test(context(&ca, "/old", Some((-hour * 2, -hour))));
    assert!(
        source.x509_svid().is_none(),
        "the expired SVID is not served"
    );
    assert!(source.snapshot().svid().is_none());
    assert_eq!(source.health(), SourceHealth::Expired);
    // A valid one is served again and the source is ready.
    source.apply_for_test(context(&ca, "/new", None));
    assert_eq!(source.x509_svid().unwrap().spiffe_id().path(), "/new");
    assert_eq!(source.health(), SourceHealth::Ready);
}

#[tokio::test]
async fn connect_waits_for_the_first_svid() {
    let (address, dir) = start(vec![Ok(good())]);
    let source = X509Source::connect(address, SourceOptions::default(), DEFAULT_CONNECT_WAIT)
        .await
        .expect("the scripted server sends an SVID");
    assert_eq!(source.health(), SourceHealth::Ready);
    assert_eq!(
        source.x509_svid().unwrap().spiffe_id().to_string(),
        "spiffe://example.org/web"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(start_paused = true)]
async fn wl_11_connect_denied_names_the_selector_to_register() {
    let (address, dir) = start(vec![Err(Status::permission_denied("no identity issued"))]);
    let shown = address.to_string();
    let err = X509Source::connect(address, SourceOptions::default(), Duration::from_secs(10))
        .await
        .unwrap_err();
    let uid = RegistrationHint::current()
        .uid
        .expect("/proc/self is readable");
    assert_eq!(
        err,
        WaitError::Denied {
            waited: Duration::from_secs(10),
            address: shown.clone(),
            hint: RegistrationHint { uid: Some(uid) },
        }
    );
    let text = err.to_string();
    assert!(
        text.starts_with("no identity for this process after 10s"),
        "{text}"
    );
    assert!(text.contains(&shown), "{text}");
    assert!(text.contains("PermissionDenied"), "{text}");
    assert!(
        text.contains(&format!("registration entry for unix:uid:{uid}")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(start_paused = true)]
async fn connect_to_a_missing_socket_says_why() {
    let dir = std::env::temp_dir().join("wlapi-connect-missing");
    let address = EndpointAddress::Unix(dir.join("absent.sock"));
    let err = X509Source::connect(address, SourceOptions::default(), Duration::from_secs(3))
        .await
        .unwrap_err();
    let WaitError::Unreachable { waited, why, .. } = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert_eq!(*waited, Duration::from_secs(3));
    assert!(why.contains("absent.sock"), "{why}");
    assert!(why.contains("No such file"), "{why}");
    assert!(
        err.to_string()
            .starts_with("no identity for this process after 3s: connecting to")
    );
}

#[tokio::test]
async fn ep_7_connect_returns_at_once_on_invalid_argument() {
    let (address, dir) = start(vec![Err(Status::invalid_argument(
        "security header missing",
    ))]);
    let err = X509Source::connect(address, SourceOptions::default(), Duration::from_secs(600))
        .await
        .unwrap_err();
    let WaitError::Failed { why, .. } = &err else {
        panic!("expected Failed, got {err:?}");
    };
    assert!(why.contains("InvalidArgument"), "{why}");
    assert!(why.contains("security header missing"), "{why}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn ep_6_from_env_without_the_variable_is_an_address_error() {
    // The test binary never sets SPIFFE_ENDPOINT_SOCKET.
    if std::env::var_os(crate::ENDPOINT_SOCKET_ENV).is_some() {
        return;
    }
    let err = X509Source::from_env(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err, WaitError::Address(crate::AddressError::NotSet));
    assert_eq!(
        err.to_string(),
        "cannot locate the Workload API: SPIFFE_ENDPOINT_SOCKET is not set"
    );
}
