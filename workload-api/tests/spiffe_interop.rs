//! Interop: the `spiffe` 0.19 crate (code we did not write) as a client of
//! our server. Also a raw gRPC call without the security header, on the
//! exact path `/SpiffeWorkloadAPI/FetchX509SVID`.

mod common;

use std::sync::Arc;

use common::{Domain, TempDir, World, entry_for, my_uid_selector, provider_for, serve};
use futures_util::StreamExt;
use spiffe::{JwtSvid, TrustDomain, WorkloadApiClient, WorkloadApiError};

async fn connect(socket: &std::path::Path) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(format!("unix://{}", socket.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn spiffe_crate_fetches_x509_context_and_sees_a_rotation() {
    common::within(60, async move {
        let dir = TempDir::new("interop-x509");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let partner = Domain::new("partner.test");
        let provider = provider_for(&domain);
        let mut set = spiffe_core::BundleSet::new();
        set.insert(domain.bundle());
        set.insert(partner.bundle());
        provider.set_bundles(set);
        let entry = provider
            .add_entry(
                entry_for(domain.id("/web"), [my_uid_selector()])
                    .with_hint("main")
                    .with_federates_with(partner.td.clone()),
                domain.svid("/web"),
            )
            .unwrap();
        let _server = serve(Arc::clone(&provider), &socket);
        let client = connect(&socket).await;

        let ctx = client.fetch_x509_context().await.unwrap();
        let svid = ctx.default_svid().unwrap();
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/web");
        assert_eq!(svid.hint(), Some("main"));
        let bundles = ctx.bundle_set();
        let own = bundles
            .get(&TrustDomain::new("example.org").unwrap())
            .unwrap();
        assert_eq!(
            own.authorities()[0].as_bytes(),
            domain.ca.root_cert().as_ref()
        );
        assert!(
            bundles
                .get(&TrustDomain::new("partner.test").unwrap())
                .is_some()
        );

        let mut stream = client.stream_x509_contexts().await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        let first_leaf = first.default_svid().unwrap().leaf().as_bytes().to_vec();
        provider.rotate(&entry, domain.svid("/web")).unwrap();
        let second = stream.next().await.unwrap().unwrap();
        let second_svid = second.default_svid().unwrap();
        assert_eq!(
            second_svid.spiffe_id().to_string(),
            "spiffe://example.org/web"
        );
        assert_ne!(second_svid.leaf().as_bytes(), first_leaf.as_slice());
    })
    .await;
}

#[tokio::test]
async fn spiffe_crate_fetches_bundles() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain,
            provider,
            entry: _,
        } = World::new("interop-bundles");
        let _server = serve(provider, &socket);
        let client = connect(&socket).await;
        let td = TrustDomain::new("example.org").unwrap();

        let x509 = client.fetch_x509_bundles().await.unwrap();
        assert_eq!(x509.len(), 1);
        assert_eq!(x509.get(&td).unwrap().authorities().len(), 1);

        let jwt = client.fetch_jwt_bundles().await.unwrap();
        assert!(
            jwt.get(&td)
                .unwrap()
                .find_jwt_authority(&domain.kid)
                .is_some()
        );
    })
    .await;
}

#[tokio::test]
async fn spiffe_crate_fetches_and_validates_jwt_svids() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain: _,
            provider,
            entry: _,
        } = World::new("interop-jwt");
        let _server = serve(provider, &socket);
        let client = connect(&socket).await;

        let svid = client.fetch_jwt_svid(["db"], None).await.unwrap();
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/web");
        assert_eq!(svid.audience(), ["db"]);

        // Validated by our server through ValidateJWTSVID...
        let validated = client.validate_jwt_token("db", svid.token()).await.unwrap();
        assert_eq!(
            validated.spiffe_id().to_string(),
            "spiffe://example.org/web"
        );
        // ...and offline by the spiffe crate against the bundles we served.
        let bundles = client.fetch_jwt_bundles().await.unwrap();
        let offline = JwtSvid::parse_and_validate(svid.token(), &bundles, &["db"]).unwrap();
        assert_eq!(offline.spiffe_id().to_string(), "spiffe://example.org/web");

        let err = client
            .validate_jwt_token("other", svid.token())
            .await
            .unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        let err = client
            .fetch_jwt_svid(Vec::<String>::new(), None)
            .await
            .unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
    })
    .await;
}

#[tokio::test]
async fn spiffe_crate_sees_no_identity_issued() {
    common::within(60, async move {
        let dir = TempDir::new("interop-denied");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        let _server = serve(provider, &socket);
        let client = connect(&socket).await;
        let err = client.fetch_x509_context().await.unwrap_err();
        assert!(matches!(err, WorkloadApiError::NoIdentityIssued), "{err}");
        let err = client.fetch_jwt_svid(["db"], None).await.unwrap_err();
        assert!(matches!(err, WorkloadApiError::NoIdentityIssued), "{err}");
    })
    .await;
}

/// The request message of `FetchX509SVID` (empty), declared here so the
/// call does not go through any Workload API client.
#[derive(Clone, PartialEq, prost::Message)]
struct EmptyRequest {}

#[tokio::test]
async fn ep_3_request_without_security_header_is_invalid_argument() {
    common::within(60, async move {
        use hyper_util::rt::TokioIo;
        use tonic::transport::{Endpoint, Uri};

        let World {
            dir: _dir,
            socket,
            domain: _,
            provider,
            entry: _,
        } = World::new("interop-header");
        let _server = serve(provider, &socket);
        let path = socket.clone();
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap();

        for (header, expected) in [
            (None, tonic::Code::InvalidArgument),
            (Some("false"), tonic::Code::InvalidArgument),
            (Some("true"), tonic::Code::Ok),
        ] {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let mut req = tonic::Request::new(EmptyRequest {});
            if let Some(v) = header {
                req.metadata_mut()
                    .insert("workload.spiffe.io", v.parse().unwrap());
            }
            let codec = tonic_prost::ProstCodec::<EmptyRequest, EmptyRequest>::default();
            let got = grpc
                .server_streaming(
                    req,
                    tonic::codegen::http::uri::PathAndQuery::from_static(
                        "/SpiffeWorkloadAPI/FetchX509SVID",
                    ),
                    codec,
                )
                .await;
            match got {
                Ok(_) => assert_eq!(expected, tonic::Code::Ok),
                Err(status) => assert_eq!(status.code(), expected, "header {header:?}"),
            }
        }

        // A method the server does not have (e.g. the WIT profile) is Unimplemented (WL-1).
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let mut req = tonic::Request::new(EmptyRequest {});
        req.metadata_mut()
            .insert("workload.spiffe.io", "true".parse().unwrap());
        let status = grpc
            .server_streaming(
                req,
                tonic::codegen::http::uri::PathAndQuery::from_static(
                    "/SpiffeWorkloadAPI/FetchWITSVID",
                ),
                tonic_prost::ProstCodec::<EmptyRequest, EmptyRequest>::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    })
    .await;
}

/// The spiffe crate's own `X509Source` (reconnecting supervisor) follows a
/// rotation, a restart of our server, and a rotation after the restart.
#[tokio::test]
async fn spiffe_crate_x509_source_survives_our_server_restart() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain,
            provider,
            entry,
        } = World::new("interop-source");
        let server = serve(Arc::clone(&provider), &socket);
        let source = spiffe::X509Source::builder()
            .endpoint(format!("unix://{}", socket.display()))
            .build()
            .await
            .unwrap();
        let mut updates = source.updated();
        assert_eq!(
            source.svid().unwrap().spiffe_id().to_string(),
            "spiffe://example.org/web"
        );

        let rotated = domain.svid("/web");
        let rotated_leaf = rotated.leaf().to_vec();
        provider.rotate(&entry, rotated).unwrap();
        updates.changed().await.unwrap();
        assert_eq!(
            source.svid().unwrap().leaf().as_bytes(),
            rotated_leaf.as_slice()
        );

        server.stop().await;
        let _server = serve(Arc::clone(&provider), &socket);
        let after = domain.svid("/web");
        let after_leaf = after.leaf().to_vec();
        provider.rotate(&entry, after).unwrap();
        // Fails (instead of hanging) if no reconnect within 30 s.
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            loop {
                updates.changed().await.unwrap();
                if source.svid().unwrap().leaf().as_bytes() == after_leaf.as_slice() {
                    break;
                }
            }
        })
        .await
        .expect("the spiffe X509Source reconnected to the restarted server");
        source.shutdown().await;
    })
    .await;
}
