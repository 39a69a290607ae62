//! Federation: the bundle endpoint, the fetcher in both profiles, and the
//! federated bundles the TLS configs read. Named after the SPIFFE rules
//! (see the shared spec, sections 4 and 5). Real TLS on 127.0.0.1 only;
//! certificates generated at run time.
#![cfg(feature = "federation")]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use mtls_tower::federation::{
    BundleEndpoint, BundleUrl, Endpoint, EndpointTls, EndpointTrust, Federation, FetchError,
    FetchErrorKind, FetchOptions, FetchStatus, Fetcher, UrlError, serve,
};
use mtls_tower::{
    ClientConfigBuilder, MtlsClientConfig, MtlsServerConfig, ServerConfigBuilder, TrustPolicy,
    authorizer,
};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName};
use spiffe_core::{
    BundleSet, BundleSource, MemoryBundleSource, MemorySvidSource, SpiffeBundle, SpiffeId,
    TrustDomain, X509Bundle, X509Svid,
};
use test_support::{CaSpec, TestCa, within};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt;

const PARTNER: &str = "partner.org";
const ENDPOINT_ID: &str = "spiffe://partner.org/bundle-endpoint";
const LOCAL: &str = "local.org";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn svid(ca: &TestCa, spiffe_id: &str) -> X509Svid {
    let leaf = ca.leaf(spiffe_id);
    X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap()
}

fn bundle(trust_domain: &str, cas: &[&TestCa], sequence: u64) -> SpiffeBundle {
    let roots = cas.iter().map(|c| c.root_cert()).collect();
    SpiffeBundle::from_x509(X509Bundle::new(td(trust_domain), roots).unwrap())
        .with_sequence(sequence)
}

fn options() -> FetchOptions {
    FetchOptions::default()
        .floor(Duration::from_millis(20))
        .timeout(Duration::from_secs(10))
}

/// Aborts a task when dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A partner trust domain publishing its bundle over `https_spiffe`.
struct Partner {
    ca: TestCa,
    bundles: Arc<MemoryBundleSource>,
    svids: Arc<MemorySvidSource>,
    addr: SocketAddr,
    _server: Task,
}

impl Partner {
    async fn start() -> Partner {
        let ca = TestCa::new(PARTNER);
        let bundles = Arc::new(MemoryBundleSource::new(BundleSet::from_iter([bundle(
            PARTNER,
            &[&ca],
            1,
        )])));
        let svids = Arc::new(MemorySvidSource::new(svid(&ca, ENDPOINT_ID)));
        let endpoint = BundleEndpoint::from_source(td(PARTNER), bundles.clone())
            .refresh_hint(Duration::from_secs(1));
        let tls = EndpointTls::https_spiffe(provider(), svids.clone()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Task(tokio::spawn(serve(listener, tls, endpoint)));
        Partner {
            ca,
            bundles,
            svids,
            addr,
            _server: server,
        }
    }

    fn url(&self) -> BundleUrl {
        format!("https://127.0.0.1:{}/", self.addr.port())
            .parse()
            .unwrap()
    }

    fn publish(&self, b: SpiffeBundle) {
        self.bundles.insert(b);
    }

    fn initial(&self) -> EndpointTrust {
        EndpointTrust::initial_bundle(bundle(PARTNER, &[&self.ca], 1))
    }
}

fn local_federation() -> (Federation, TestCa) {
    let local_ca = TestCa::new(LOCAL);
    let local = MemoryBundleSource::new(BundleSet::from_iter([bundle(LOCAL, &[&local_ca], 1)]));
    (Federation::new(provider(), local), local_ca)
}

fn trust_partner(
    federation: &Federation,
    url: BundleUrl,
    endpoint_id: &str,
    trust: EndpointTrust,
) -> Fetcher {
    federation
        .trust(
            td(PARTNER),
            Endpoint::https_spiffe(url, id(endpoint_id), trust).options(options()),
        )
        .unwrap()
}

async fn wait_for(fetcher: &Fetcher, what: impl Fn(&FetchStatus) -> bool) -> FetchStatus {
    let mut rx = fetcher.subscribe();
    let status = rx.wait_for(|s| what(s)).await.unwrap();
    status.clone()
}

/// An mTLS handshake over an in-memory pipe; the server's verdict first.
async fn handshake(server: &MtlsServerConfig, client: &MtlsClientConfig) -> Result<(), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server.rustls().clone());
    let connector = tokio_rustls::TlsConnector::from(client.rustls().clone());
    let name = ServerName::try_from("server.local.org").unwrap();
    let (s, c) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
    s.map_err(|e| format!("server: {e}"))?;
    c.map_err(|e| format!("client: {e}"))?;
    Ok(())
}

/// A local.org server admitting partner.org clients through the federation.
fn federated_server(
    federation: &Federation,
    local_ca: &TestCa,
    policy: TrustPolicy,
) -> MtlsServerConfig {
    let svids = MemorySvidSource::new(svid(local_ca, "spiffe://local.org/server"));
    ServerConfigBuilder::new(provider(), svids, federation.bundles(), authorizer::any())
        .trust_policy(policy)
        .on_unknown_authority(federation.unknown_authority_hook())
        .build()
        .unwrap()
}

/// A client with `svid`, trusting local.org servers.
fn client_of(svid: X509Svid, local_ca: &TestCa) -> MtlsClientConfig {
    let bundles = MemoryBundleSource::new(BundleSet::from_iter([bundle(LOCAL, &[local_ca], 1)]));
    let policy = TrustPolicy::local_only().with_federated([td(LOCAL)]);
    ClientConfigBuilder::new(
        provider(),
        MemorySvidSource::new(svid),
        bundles,
        authorizer::any(),
    )
    .trust_policy(policy)
    .build()
    .unwrap()
}

// ---------------------------------------------------------------- endpoint

#[tokio::test]
async fn fed_1_web_5_endpoint_answers_get_with_json_and_405_otherwise() {
    let ca = TestCa::new(PARTNER);
    let source = MemoryBundleSource::new(BundleSet::from_iter([bundle(PARTNER, &[&ca], 3)]));
    let endpoint = BundleEndpoint::from_source(td(PARTNER), source);

    let get = Request::get("/any/path")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = endpoint.clone().oneshot(get).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let published = SpiffeBundle::parse(td(PARTNER), &body).unwrap();
    assert_eq!(published.sequence(), Some(3));
    assert_eq!(published.refresh_hint(), Some(Duration::from_secs(300)));
    assert_eq!(published.x509().authorities(), [ca.root_cert()]);

    let post = Request::post("/").body(Empty::<Bytes>::new()).unwrap();
    let r = endpoint.clone().oneshot(post).await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()[header::ALLOW], "GET");

    let on_path = endpoint.path("/bundle");
    let r = on_path
        .clone()
        .oneshot(Request::get("/other").body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = on_path
        .oneshot(Request::get("/bundle").body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn bun_4_published_sequence_increases_on_every_change() {
    let a = TestCa::new(PARTNER);
    let b = TestCa::new(PARTNER);
    let current = Arc::new(Mutex::new(SpiffeBundle::from_x509(
        X509Bundle::new(td(PARTNER), vec![a.root_cert()]).unwrap(),
    )));
    let c = current.clone();
    let endpoint = BundleEndpoint::new(move || Some(c.lock().unwrap().clone()));
    let seq = |endpoint: &BundleEndpoint| {
        let doc = endpoint.current_document().unwrap();
        SpiffeBundle::parse(td(PARTNER), &doc)
            .unwrap()
            .sequence()
            .unwrap()
    };
    let first = seq(&endpoint);
    assert_eq!(seq(&endpoint), first, "no change, same sequence");
    *current.lock().unwrap() = SpiffeBundle::from_x509(
        X509Bundle::new(td(PARTNER), vec![a.root_cert(), b.root_cert()]).unwrap(),
    );
    let second = seq(&endpoint);
    assert!(second > first);
    *current.lock().unwrap() =
        SpiffeBundle::from_x509(X509Bundle::new(td(PARTNER), vec![b.root_cert()]).unwrap());
    assert!(seq(&endpoint) > second);
}

// ------------------------------------------------------------ https_web

/// A web PKI CA (not SPIFFE) and serving certificates from it.
struct WebCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: CertificateDer<'static>,
}

impl WebCa {
    fn new() -> WebCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "federation test web CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let cert = p.self_signed(&key).unwrap().der().clone();
        WebCa {
            issuer: rcgen::Issuer::new(p, key),
            cert,
        }
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        Arc::new(roots)
    }

    /// Writes a serving chain and key for `sans` to two files.
    fn write_serving(
        &self,
        sans: Vec<rcgen::SanType>,
        dir: &std::path::Path,
    ) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        // A subject of its own: with the issuer's name, OpenSSL would
        // take the leaf for a self-signed certificate.
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "bundle endpoint");
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// A partner.org CA and a bundle source publishing its root at `sequence`.
fn partner_source(sequence: u64) -> (TestCa, Arc<MemoryBundleSource>) {
    let ca = TestCa::new(PARTNER);
    let source = Arc::new(MemoryBundleSource::new(BundleSet::from_iter([bundle(
        PARTNER,
        &[&ca],
        sequence,
    )])));
    (ca, source)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtls-fed-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn localhost_ip() -> rcgen::SanType {
    rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn dns(name: &str) -> rcgen::SanType {
    rcgen::SanType::DnsName(name.try_into().unwrap())
}

async fn serve_web(dir: &std::path::Path, source: Arc<MemoryBundleSource>) -> (BundleUrl, Task) {
    let tls =
        EndpointTls::https_web(provider(), dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    let endpoint = BundleEndpoint::from_source(td(PARTNER), source);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/bundle",
        listener.local_addr().unwrap().port()
    );
    (
        url.parse().unwrap(),
        Task(tokio::spawn(serve(listener, tls, endpoint))),
    )
}

#[tokio::test]
async fn web_7_https_web_fetch_is_validated_against_the_roots_and_url_host() {
    within(60, async {
        let web = WebCa::new();
        let dir = temp_dir("web7");
        web.write_serving(vec![localhost_ip()], &dir);
        let (partner_ca, source) = partner_source(4);
        let (url, _server) = serve_web(&dir, source).await;
        let (federation, _) = local_federation();
        let fetcher = federation
            .trust(
                td(PARTNER),
                Endpoint::https_web(url.clone(), web.roots()).options(options()),
            )
            .unwrap();
        let fetched = fetcher.fetch().await.unwrap();
        assert_eq!(fetched.sequence(), Some(4));
        let stored = federation.bundles().bundle_set();
        assert_eq!(
            stored.get(&td(PARTNER)).unwrap().x509().authorities(),
            [partner_ca.root_cert()]
        );

        // Roots that do not include the serving CA: refused.
        let other = WebCa::new();
        let (f2, _) = local_federation();
        let fetcher = f2
            .trust(
                td(PARTNER),
                Endpoint::https_web(url, other.roots()).options(options()),
            )
            .unwrap();
        assert!(matches!(
            *fetcher.fetch().await.unwrap_err(),
            FetchError::Tls(_)
        ));
        assert!(f2.bundles().bundle_set().get(&td(PARTNER)).is_none());
        std::fs::remove_dir_all(dir).ok();
    })
    .await
}

#[tokio::test]
async fn web_7_certificate_for_another_host_is_refused_then_web_3_reload_fixes_it() {
    within(60, async {
        let web = WebCa::new();
        let dir = temp_dir("web7-host");
        // Valid chain, but for a name that is not the URL's host.
        web.write_serving(vec![dns("bundles.partner.test")], &dir);
        let (_partner_ca, source) = partner_source(1);
        let (url, _server) = serve_web(&dir, source).await;
        let (federation, _) = local_federation();
        let fetcher = federation
            .trust(
                td(PARTNER),
                Endpoint::https_web(url, web.roots()).options(options()),
            )
            .unwrap();
        let err = fetcher.fetch().await.unwrap_err();
        assert!(matches!(*err, FetchError::Tls(_)), "{err}");
        assert_eq!(fetcher.status().refused(FetchErrorKind::Tls), 1);
        assert!(
            federation
                .bundles()
                .bundle_set()
                .get(&td(PARTNER))
                .is_none()
        );

        // The endpoint's files are replaced: the next handshake serves the
        // new certificate, without restarting anything.
        web.write_serving(vec![localhost_ip()], &dir);
        fetcher.fetch().await.unwrap();
        assert_eq!(fetcher.status().accepted, 1);
        std::fs::remove_dir_all(dir).ok();
    })
    .await
}

#[test]
fn web_1_spf_1_non_https_or_userinfo_url_is_refused_at_config() {
    assert_eq!(
        "http://127.0.0.1:8443/".parse::<BundleUrl>().unwrap_err(),
        UrlError::NotHttps
    );
    assert_eq!(
        "https://user@127.0.0.1:8443/"
            .parse::<BundleUrl>()
            .unwrap_err(),
        UrlError::UserInfo
    );
    assert_eq!(
        "https://user:secret@127.0.0.1/"
            .parse::<BundleUrl>()
            .unwrap_err(),
        UrlError::UserInfo
    );
    assert!("not a url".parse::<BundleUrl>().is_err());
    let url: BundleUrl = "https://127.0.0.1:8443/bundle".parse().unwrap();
    assert_eq!((url.host(), url.port()), ("127.0.0.1", 8443));
}

// --------------------------------------------------------- https_spiffe

#[tokio::test]
async fn spf_2_self_serving_uses_the_initial_bundle_then_the_latest_fetched() {
    within(60, async {
        let partner = Partner::start().await;
        let (federation, _) = local_federation();
        let fetcher = trust_partner(&federation, partner.url(), ENDPOINT_ID, partner.initial());
        // The initial bundle is stored at once and authenticates the first fetch.
        assert_eq!(
            federation
                .bundles()
                .bundle_set()
                .get(&td(PARTNER))
                .unwrap()
                .sequence(),
            Some(1)
        );
        fetcher.fetch().await.unwrap();

        // The partner rotates: publishes old + new roots, then moves its
        // endpoint to an SVID of the new CA and drops the old root.
        let new_ca = TestCa::new(PARTNER);
        partner.publish(bundle(PARTNER, &[&partner.ca, &new_ca], 2));
        let b = fetcher.fetch().await.unwrap();
        assert_eq!((b.sequence(), b.x509().authorities().len()), (Some(2), 2));
        partner.svids.set(svid(&new_ca, ENDPOINT_ID));
        partner.publish(bundle(PARTNER, &[&new_ca], 3));
        // Only the fetched bundle (not the initial one) anchors the new SVID.
        let b = fetcher.fetch().await.unwrap();
        assert_eq!(b.sequence(), Some(3));
        let b = fetcher.fetch().await.unwrap();
        assert_eq!(b.x509().authorities(), [new_ca.root_cert()]);
        assert_eq!(fetcher.status().accepted, 4);
        assert_eq!(fetcher.status().failures(), 0);
    })
    .await
}

#[tokio::test]
async fn spf_2_initial_bundle_in_pem_and_json_is_accepted() {
    within(60, async {
        let partner = Partner::start().await;
        for trust in [
            EndpointTrust::initial_pem(test_support::pem("CERTIFICATE", &partner.ca.root_cert())),
            EndpointTrust::initial_json(bundle(PARTNER, &[&partner.ca], 1).to_json()),
        ] {
            let (federation, _) = local_federation();
            let fetcher = trust_partner(&federation, partner.url(), ENDPOINT_ID, trust);
            fetcher.fetch().await.unwrap();
        }
        // Self-serving without an initial bundle, or an initial bundle for
        // an endpoint of another trust domain: configuration errors.
        let (federation, _) = local_federation();
        let err = federation
            .trust(
                td(PARTNER),
                Endpoint::https_spiffe(
                    partner.url(),
                    id(ENDPOINT_ID),
                    EndpointTrust::through_federation(),
                ),
            )
            .unwrap_err();
        assert!(err.to_string().contains("SPF-2"), "{err}");
        let err = federation
            .trust(
                td(PARTNER),
                Endpoint::https_spiffe(
                    partner.url(),
                    id("spiffe://other.org/ep"),
                    partner.initial(),
                ),
            )
            .unwrap_err();
        assert!(err.to_string().contains("SPF-2"), "{err}");
    })
    .await
}

#[tokio::test]
async fn spf_2_not_self_serving_endpoint_is_trusted_through_another_source() {
    within(60, async {
        // partner.org's bundle is served by an endpoint with an
        // operator.net identity; operator.net's bundle is known out of band.
        let partner = Partner::start().await;
        let operator_ca = TestCa::new("operator.net");
        partner
            .svids
            .set(svid(&operator_ca, "spiffe://operator.net/bundles"));
        let operator = MemoryBundleSource::new(BundleSet::from_iter([bundle(
            "operator.net",
            &[&operator_ca],
            1,
        )]));
        let (federation, _) = local_federation();
        let fetcher = trust_partner(
            &federation,
            partner.url(),
            "spiffe://operator.net/bundles",
            EndpointTrust::through_source(operator),
        );
        let b = fetcher.fetch().await.unwrap();
        assert_eq!(b.x509().authorities(), [partner.ca.root_cert()]);
    })
    .await
}

#[tokio::test]
async fn spf_3_wrong_endpoint_id_is_refused() {
    within(60, async {
        let partner = Partner::start().await;
        let (federation, _) = local_federation();
        let fetcher = trust_partner(
            &federation,
            partner.url(),
            "spiffe://partner.org/some-other-server",
            partner.initial(),
        );
        partner.publish(bundle(PARTNER, &[&partner.ca], 2));
        let err = fetcher.fetch().await.unwrap_err();
        match &*err {
            FetchError::WrongEndpointId { presented, .. } => {
                assert_eq!(presented, &id(ENDPOINT_ID))
            }
            other => panic!("expected WrongEndpointId, got {other}"),
        }
        assert_eq!(fetcher.status().refused(FetchErrorKind::WrongEndpointId), 1);
        // The initial bundle stays.
        let stored = federation.bundles().bundle_set();
        assert_eq!(stored.get(&td(PARTNER)).unwrap().sequence(), Some(1));
    })
    .await
}

#[tokio::test]
async fn fed_9_lower_sequence_is_refused_and_the_last_good_bundle_kept() {
    within(60, async {
        let partner = Partner::start().await;
        let (federation, _) = local_federation();
        let fetcher = trust_partner(&federation, partner.url(), ENDPOINT_ID, partner.initial());
        partner.publish(bundle(PARTNER, &[&partner.ca], 5));
        fetcher.fetch().await.unwrap();
        let other = TestCa::new(PARTNER);
        partner.publish(bundle(PARTNER, &[&partner.ca, &other], 4));
        let err = fetcher.fetch().await.unwrap_err();
        assert!(
            matches!(
                *err,
                FetchError::SequenceRegressed {
                    stored: 5,
                    fetched: 4
                }
            ),
            "{err}"
        );
        assert_eq!(fetcher.status().refused(FetchErrorKind::Sequence), 1);
        let stored = federation.bundles().bundle_set();
        let stored = stored.get(&td(PARTNER)).unwrap();
        assert_eq!(
            (stored.sequence(), stored.x509().authorities().len()),
            (Some(5), 1)
        );
    })
    .await
}

// ------------------------------------------------------- a scripted server

/// An `https_spiffe` endpoint server whose answers a closure scripts, and
/// which can be taken down (connections are accepted and dropped).
struct Scripted {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    paths: Arc<Mutex<Vec<String>>>,
    _task: Task,
}

type Script = Arc<dyn Fn(&str, u16) -> Response<Full<Bytes>> + Send + Sync>;

impl Scripted {
    async fn start(svids: Arc<MemorySvidSource>, script: Script) -> Scripted {
        let tls = EndpointTls::https_spiffe(provider(), svids).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls().clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (d, p) = (down.clone(), paths.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(tcp);
                    continue;
                }
                let (acceptor, script, paths) = (acceptor.clone(), script.clone(), p.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            paths.lock().unwrap().push(req.uri().path().to_owned());
                            let r = script(req.uri().path(), addr.port());
                            async move { Ok::<_, Infallible>(r) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Scripted {
            addr,
            down,
            paths,
            _task: Task(task),
        }
    }

    fn url(&self) -> BundleUrl {
        format!("https://127.0.0.1:{}/", self.addr.port())
            .parse()
            .unwrap()
    }
}

fn json(body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from(body)))
}

fn redirect(location: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut()
        .insert(header::LOCATION, location.parse().unwrap());
    r
}

#[tokio::test]
async fn spf_5_web_6_redirect_to_http_is_refused() {
    within(60, async {
        let ca = TestCa::new(PARTNER);
        let svids = Arc::new(MemorySvidSource::new(svid(&ca, ENDPOINT_ID)));
        let server = Scripted::start(
            svids,
            Arc::new(|_, port| redirect(format!("http://127.0.0.1:{port}/plain"))),
        )
        .await;
        let (federation, _) = local_federation();
        let fetcher = trust_partner(
            &federation,
            server.url(),
            ENDPOINT_ID,
            EndpointTrust::initial_bundle(bundle(PARTNER, &[&ca], 1)),
        );
        let err = fetcher.fetch().await.unwrap_err();
        assert!(
            matches!(*err, FetchError::Redirect(UrlError::NotHttps)),
            "{err}"
        );
        assert_eq!(fetcher.status().refused(FetchErrorKind::Redirect), 1);
    })
    .await
}

#[tokio::test]
async fn spf_5_web_6_redirect_is_followed_but_never_remembered() {
    within(60, async {
        let ca = TestCa::new(PARTNER);
        let doc = bundle(PARTNER, &[&ca], 2).to_json();
        let svids = Arc::new(MemorySvidSource::new(svid(&ca, ENDPOINT_ID)));
        let server = Scripted::start(
            svids,
            Arc::new(move |path, port| match path {
                // A "permanent" redirect, absolute; then a relative one.
                "/" => {
                    let mut r = redirect(format!("https://127.0.0.1:{port}/moved"));
                    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
                    r
                }
                "/moved" => redirect("/bundle".into()),
                _ => json(doc.clone()),
            }),
        )
        .await;
        let (federation, _) = local_federation();
        let fetcher = trust_partner(
            &federation,
            server.url(),
            ENDPOINT_ID,
            EndpointTrust::initial_bundle(bundle(PARTNER, &[&ca], 1)),
        );
        fetcher.fetch().await.unwrap();
        fetcher.fetch().await.unwrap();
        assert_eq!(
            *server.paths.lock().unwrap(),
            ["/", "/moved", "/bundle", "/", "/moved", "/bundle"]
        );
        assert_eq!(fetcher.status().url.to_string(), server.url().to_string());
    })
    .await
}

#[tokio::test]
async fn fed_refusals_are_counted_per_reason_and_keep_the_last_good_bundle() {
    within(60, async {
        let ca = TestCa::new(PARTNER);
        let example_ca = TestCa::new("example.org");
        let cert = base64_cert(&ca.root_cert());
        let answers: Vec<Response<Full<Bytes>>> = vec![
            json(b"not json".to_vec()),
            json(
                format!(
                    r#"{{"keys":[{{"kty":"EC","use":"x509-svid","x5c":["{cert}"]}},{{"kty":"EC","use":"x509-svid","x5c":["{cert}"]}}],"spiffe_sequence":9}}"#
                )
                .into_bytes(),
            ),
            // A bundle whose authority names another trust domain.
            json(bundle("example.org", &[&example_ca], 9).to_json()),
            {
                let mut r = json(Vec::new());
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r
            },
            json(vec![b' '; 2 << 20]),
        ];
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let svids = Arc::new(MemorySvidSource::new(svid(&ca, ENDPOINT_ID)));
        let server = Scripted::start(
            svids,
            Arc::new(move |_, _| answers.lock().unwrap().next().unwrap()),
        )
        .await;
        let (federation, _) = local_federation();
        let fetcher = trust_partner(
            &federation,
            server.url(),
            ENDPOINT_ID,
            EndpointTrust::initial_bundle(bundle(PARTNER, &[&ca], 1)),
        );
        for _ in 0..5 {
            fetcher.fetch().await.unwrap_err();
        }
        let status = fetcher.status();
        for kind in [
            FetchErrorKind::Malformed,
            FetchErrorKind::DuplicateKey,
            FetchErrorKind::ForeignTrustDomain,
            FetchErrorKind::Status,
            FetchErrorKind::TooLarge,
        ] {
            assert_eq!(status.refused(kind), 1, "{kind:?} in {status:?}");
        }
        let stored = federation.bundles().bundle_set();
        assert_eq!(stored.get(&td(PARTNER)).unwrap().sequence(), Some(1));
    })
    .await
}

fn base64_cert(der: &[u8]) -> String {
    // The PEM body is the standard base64 of the DER, in lines.
    test_support::pem("CERTIFICATE", der)
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

// --------------------------------------------------------------- polling

#[tokio::test]
async fn fed_8_polls_at_a_quarter_of_the_refresh_hint_or_5_minutes() {
    within(60, async {
        let partner = Partner::start().await;
        let (federation, _) = local_federation();
        let fetcher = federation
            .trust(
                td(PARTNER),
                Endpoint::https_spiffe(partner.url(), id(ENDPOINT_ID), partner.initial())
                    .options(FetchOptions::default().floor(Duration::from_secs(1))),
            )
            .unwrap();
        // The initial bundle has no hint: 5 minutes.
        assert_eq!(fetcher.status().interval, Duration::from_secs(300));
        // The endpoint publishes a 1 s hint: a quarter is under the floor.
        fetcher.fetch().await.unwrap();
        assert_eq!(fetcher.status().interval, Duration::from_secs(1));
        partner.publish(
            bundle(PARTNER, &[&partner.ca], 2).with_refresh_hint(Duration::from_secs(120)),
        );
        // The endpoint publishes its own hint (1 s), not the source's.
        fetcher.fetch().await.unwrap();
        assert_eq!(fetcher.status().interval, Duration::from_secs(1));
        // An endpoint publishing a 120 s hint: polled every 30 s.
        let fetcher = {
            let (f, _) = local_federation();
            let ep = BundleEndpoint::from_source(td(PARTNER), partner.bundles.clone())
                .refresh_hint(Duration::from_secs(120));
            let tls = EndpointTls::https_spiffe(provider(), partner.svids.clone()).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!(
                "https://127.0.0.1:{}/",
                listener.local_addr().unwrap().port()
            );
            let server = Task(tokio::spawn(serve(listener, tls, ep)));
            let fetcher = trust_partner(&f, url.parse().unwrap(), ENDPOINT_ID, partner.initial());
            fetcher.fetch().await.unwrap();
            drop(server);
            fetcher
        };
        assert_eq!(fetcher.status().interval, Duration::from_secs(30));
    })
    .await
}

#[tokio::test]
async fn fed_8_endpoint_down_for_several_intervals_keeps_the_bundle_and_recovers() {
    within(60, async {
        let ca = TestCa::new(PARTNER);
        let current = Arc::new(MemoryBundleSource::new(BundleSet::from_iter([bundle(
            PARTNER,
            &[&ca],
            2,
        )])));
        let endpoint = BundleEndpoint::from_source(td(PARTNER), current.clone())
            .refresh_hint(Duration::from_secs(1));
        let svids = Arc::new(MemorySvidSource::new(svid(&ca, ENDPOINT_ID)));
        let server = Scripted::start(
            svids,
            Arc::new(move |_, _| json(endpoint.current_document().unwrap())),
        )
        .await;
        let (federation, _) = local_federation();
        let fetcher = trust_partner(
            &federation,
            server.url(),
            ENDPOINT_ID,
            EndpointTrust::initial_bundle(bundle(PARTNER, &[&ca], 1)),
        );
        let _run = Task(tokio::spawn(fetcher.clone().run()));
        wait_for(&fetcher, |s| s.sequence == Some(2)).await;

        server.down.store(true, Ordering::SeqCst);
        let down = wait_for(&fetcher, |s| s.failures() >= 3).await;
        assert!(down.last_error.is_some());
        let stored = federation.bundles().bundle_set();
        assert_eq!(stored.get(&td(PARTNER)).unwrap().sequence(), Some(2));

        current.insert(bundle(PARTNER, &[&ca], 3));
        server.down.store(false, Ordering::SeqCst);
        let up = wait_for(&fetcher, |s| s.sequence == Some(3)).await;
        assert!(up.last_error.is_none());
        assert_eq!(
            federation
                .bundles()
                .bundle_set()
                .get(&td(PARTNER))
                .unwrap()
                .sequence(),
            Some(3)
        );
    })
    .await
}

// --------------------------------------------------- federated trust (TLS)

#[tokio::test]
async fn fed_12_federated_bundle_authenticates_only_its_own_trust_domain() {
    within(60, async {
        let partner = Partner::start().await;
        // example.org's CA, without a URI SAN so the fetcher cannot tell,
        // is published inside partner.org's bundle.
        let mut spec = CaSpec::new("example.org");
        spec.uri = None;
        let example_ca = TestCa::root(spec);
        partner.publish(bundle(PARTNER, &[&partner.ca, &example_ca], 2));
        let (federation, local_ca) = local_federation();
        let fetcher = trust_partner(&federation, partner.url(), ENDPOINT_ID, partner.initial());
        fetcher.fetch().await.unwrap();

        for policy in [
            TrustPolicy::local_only().with_federated([td(PARTNER)]),
            TrustPolicy::any_in_bundle_set(),
        ] {
            let server = federated_server(&federation, &local_ca, policy);
            // A partner.org workload is admitted.
            let partner_client =
                client_of(svid(&partner.ca, "spiffe://partner.org/app"), &local_ca);
            handshake(&server, &partner_client).await.unwrap();
            // An example.org workload is not, although its CA is in
            // partner.org's bundle: it is looked up under example.org only.
            let example_client =
                client_of(svid(&example_ca, "spiffe://example.org/app"), &local_ca);
            let err = handshake(&server, &example_client).await.unwrap_err();
            assert!(err.starts_with("server:"), "{err}");
        }
    })
    .await
}

#[tokio::test]
async fn fed_10_removing_a_relationship_fails_the_next_handshake() {
    within(60, async {
        let partner = Partner::start().await;
        let (federation, local_ca) = local_federation();
        let fetcher = trust_partner(&federation, partner.url(), ENDPOINT_ID, partner.initial());
        let mut run = tokio::spawn(fetcher.clone().run());
        wait_for(&fetcher, |s| s.accepted >= 1).await;
        let server = federated_server(
            &federation,
            &local_ca,
            TrustPolicy::local_only().with_federated([td(PARTNER)]),
        );
        let client = client_of(svid(&partner.ca, "spiffe://partner.org/app"), &local_ca);
        handshake(&server, &client).await.unwrap();

        assert!(federation.remove(&td(PARTNER)));
        assert!(fetcher.status().removed);
        assert!(
            federation
                .bundles()
                .bundle_set()
                .get(&td(PARTNER))
                .is_none()
        );
        handshake(&server, &client).await.unwrap_err();
        // The run future ends by itself.
        (&mut run).await.unwrap();
        assert!(!federation.remove(&td(PARTNER)));
    })
    .await
}

#[tokio::test]
async fn refresh_now_is_rate_limited() {
    let partner_ca = TestCa::new(PARTNER);
    let (federation, _) = local_federation();
    let fetcher = trust_partner(
        &federation,
        "https://127.0.0.1:9/".parse().unwrap(),
        ENDPOINT_ID,
        EndpointTrust::initial_bundle(bundle(PARTNER, &[&partner_ca], 1)),
    );
    assert!(fetcher.refresh_now());
    assert!(
        !fetcher.refresh_now(),
        "a second call within 10 s is refused"
    );
    assert!(!fetcher.refresh_now());
}

#[tokio::test]
async fn unknown_authority_in_a_handshake_makes_the_relationship_refetch_early() {
    within(60, async {
        let partner = Partner::start().await;
        let (federation, local_ca) = local_federation();
        // Polling alone would wait a minute at least.
        let fetcher = federation
            .trust(
                td(PARTNER),
                Endpoint::https_spiffe(partner.url(), id(ENDPOINT_ID), partner.initial()),
            )
            .unwrap();
        let _run = Task(tokio::spawn(fetcher.clone().run()));
        wait_for(&fetcher, |s| s.accepted >= 1).await;
        assert!(fetcher.status().interval >= Duration::from_secs(60));

        // partner.org rotates to a new CA before our next poll.
        let new_ca = TestCa::new(PARTNER);
        partner.publish(bundle(PARTNER, &[&partner.ca, &new_ca], 2));
        let server = federated_server(
            &federation,
            &local_ca,
            TrustPolicy::local_only().with_federated([td(PARTNER)]),
        );
        let client = client_of(svid(&new_ca, "spiffe://partner.org/app"), &local_ca);
        let err = handshake(&server, &client).await.unwrap_err();
        assert!(err.starts_with("server:"), "{err}");
        // The failed handshake nudged the fetcher.
        wait_for(&fetcher, |s| s.sequence == Some(2)).await;
        handshake(&server, &client).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn federated_bundles_source_reports_changes() {
    let (federation, _) = local_federation();
    let bundles = federation.bundles();
    let before = bundles.generation();
    let partner_ca = TestCa::new(PARTNER);
    let rx = bundles.subscribe();
    trust_partner(
        &federation,
        "https://127.0.0.1:9/".parse().unwrap(),
        ENDPOINT_ID,
        EndpointTrust::initial_bundle(bundle(PARTNER, &[&partner_ca], 1)),
    );
    assert!(bundles.generation() > before);
    assert!(rx.has_changed().unwrap());
    assert_eq!(bundles.federated_trust_domains(), [td(PARTNER)]);
}

#[tokio::test(start_paused = true)]
async fn fed_8_a_failed_fetch_is_retried_at_the_next_interval_not_sooner() {
    within(60, async {
        // A port with nothing listening: every fetch fails at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let partner_ca = TestCa::new(PARTNER);
        let (federation, _) = local_federation();
        // No hint in the initial bundle: the 5-minute default interval.
        let fetcher = federation
            .trust(
                td(PARTNER),
                Endpoint::https_spiffe(
                    format!("https://127.0.0.1:{port}/").parse().unwrap(),
                    id(ENDPOINT_ID),
                    EndpointTrust::initial_bundle(bundle(PARTNER, &[&partner_ca], 1)),
                ),
            )
            .unwrap();
        let start = tokio::time::Instant::now();
        let _run = Task(tokio::spawn(fetcher.clone().run()));
        let status = wait_for(&fetcher, |s| s.failures() >= 3).await;
        // Paused time: the clock moved only by the poll sleeps.
        let elapsed = start.elapsed();
        assert_eq!(status.refused(FetchErrorKind::Connect), 3, "{status:?}");
        assert!(
            elapsed >= Duration::from_secs(600) && elapsed < Duration::from_secs(900),
            "{elapsed:?}"
        );
        // The last good (initial) bundle is still there.
        assert!(
            federation
                .bundles()
                .bundle_set()
                .get(&td(PARTNER))
                .is_some()
        );
    })
    .await
}

#[tokio::test]
async fn web_4_web_5_curl_fetches_the_bundle_without_a_client_certificate() {
    within(60, async {
        let Some(curl) = test_support::require_binary("federation", "curl") else {
            return;
        };
        let web = WebCa::new();
        let dir = temp_dir("curl");
        web.write_serving(vec![localhost_ip()], &dir);
        std::fs::write(
            dir.join("ca.pem"),
            test_support::pem("CERTIFICATE", &web.cert),
        )
        .unwrap();
        let (_partner_ca, source) = partner_source(6);
        let (url, _server) = serve_web(&dir, source).await;
        let curl_to = |extra: &[&str]| {
            let mut cmd = tokio::process::Command::new(&curl);
            cmd.args(["--silent", "--show-error", "--include", "--cacert"])
                .arg(dir.join("ca.pem"))
                .args(extra)
                .arg(url.to_string());
            cmd
        };
        let out = curl_to(&[]).output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let b = SpiffeBundle::parse(td(PARTNER), body.as_bytes()).unwrap();
        assert_eq!((b.sequence(), b.x509().authorities().len()), (Some(6), 1));

        let out = curl_to(&["-X", "POST"]).output().await.unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("HTTP/1.1 405"), "{text}");
        assert!(text.to_ascii_lowercase().contains("allow: get"), "{text}");
        std::fs::remove_dir_all(dir).ok();
    })
    .await
}

#[tokio::test]
async fn fed_1_endpoint_serves_through_hyper_util_and_is_fetched() {
    within(60, async {
        // The endpoint as a plain Tower service under hyper-util's server,
        // over the https_spiffe TLS config, with our own accept loop.
        let ca = TestCa::new(PARTNER);
        let source = MemoryBundleSource::new(BundleSet::from_iter([bundle(PARTNER, &[&ca], 8)]));
        let endpoint = BundleEndpoint::from_source(td(PARTNER), source).path("/bundle");
        let svids = MemorySvidSource::new(svid(&ca, ENDPOINT_ID));
        let tls = EndpointTls::https_spiffe(provider(), svids).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls().clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _server = Task(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, endpoint) = (acceptor.clone(), endpoint.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(
                        TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(endpoint),
                    )
                    .await;
                });
            }
        }));
        let (federation, _) = local_federation();
        let fetcher = trust_partner(
            &federation,
            format!("https://127.0.0.1:{port}/bundle").parse().unwrap(),
            ENDPOINT_ID,
            EndpointTrust::initial_bundle(bundle(PARTNER, &[&ca], 1)),
        );
        assert_eq!(fetcher.fetch().await.unwrap().sequence(), Some(8));
    })
    .await
}
