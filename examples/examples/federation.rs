//! Two trust domains that trust each other through their bundle endpoints
//! (SPIFFE federation), in one process on 127.0.0.1.
//!
//! example.org and partner.org each publish their trust bundle on an
//! `https_spiffe` bundle endpoint, served with the SVID of their bundle
//! server. Each trusts the other through a [`Federation`]: configured with
//! the other's trust domain, endpoint URL and endpoint SPIFFE ID, and a
//! first bundle obtained out of band; the fetcher keeps it current from
//! then on. partner.org's API admits example.org's frontend; the frontend
//! calls it over mTLS. A client of example.org that does not federate
//! cannot even verify the API's certificate.

use std::sync::Arc;

use bytes::Bytes;
use examples::{Authority, Result, provider};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mtls_tower::federation::{
    BundleEndpoint, BundleUrl, Endpoint, EndpointTls, EndpointTrust, Federation, serve,
};
use mtls_tower::{
    ClientConfigBuilder, MtlsAcceptor, MtlsClientConfig, MtlsConnector, Peer, ServerConfigBuilder,
    TrustPolicy, authorizer, error_chain,
};
use spiffe_core::{BundleSource, SpiffeBundle, TrustDomain};

const FRONTEND: &str = "spiffe://example.org/ns/default/sa/frontend";
const API: &str = "spiffe://partner.org/ns/default/sa/api";

/// Serves `authority`'s bundle on an `https_spiffe` endpoint with the SVID
/// of `server_id`; the endpoint's URL.
async fn publish(authority: &Authority, td: &TrustDomain, server_id: &str) -> Result<BundleUrl> {
    let endpoint = BundleEndpoint::from_source(td.clone(), authority.bundles());
    let tls = EndpointTls::https_spiffe(provider(), authority.workload(server_id)?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}/", listener.local_addr()?.port()).parse()?;
    tokio::spawn(serve(listener, tls, endpoint));
    Ok(url)
}

/// `local`'s bundles plus those of `td`, fetched from its endpoint and
/// kept current: "trust partner.org through this endpoint".
async fn trust(
    local: &Authority,
    td: &TrustDomain,
    url: BundleUrl,
    endpoint_id: &str,
    first: SpiffeBundle,
) -> Result<Federation> {
    let federation = Federation::new(provider(), local.bundles());
    let endpoint = Endpoint::https_spiffe(
        url,
        endpoint_id.parse()?,
        EndpointTrust::initial_bundle(first),
    );
    let fetcher = federation.trust(td.clone(), endpoint)?;
    let fetched = fetcher.fetch().await?;
    println!(
        "{} fetched {td}'s bundle (sequence {:?})",
        local_name(local),
        fetched.sequence()
    );
    tokio::spawn(fetcher.run());
    Ok(federation)
}

fn local_name(authority: &Authority) -> String {
    authority
        .bundles()
        .bundle_set()
        .iter()
        .map(|b| b.trust_domain().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The bundle of `td` as `authority` publishes it: what the partner
/// receives out of band before its first fetch.
fn bundle_of(authority: &Authority, td: &TrustDomain) -> Result<SpiffeBundle> {
    Ok(authority
        .bundles()
        .bundle_set()
        .get(td)
        .cloned()
        .ok_or("no bundle")?)
}

async fn get(config: MtlsClientConfig, url: &str) -> Result<String> {
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(MtlsConnector::new(config));
    let resp = client
        .get(url.parse()?)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned())
}

#[tokio::main]
async fn main() -> Result<()> {
    let (example_org, partner_org): (TrustDomain, TrustDomain) =
        ("example.org".parse()?, "partner.org".parse()?);
    let example = Authority::new("example.org")?;
    let partner = Authority::new("partner.org")?;
    let example_url = publish(&example, &example_org, "spiffe://example.org/bundle-server").await?;
    let partner_url = publish(&partner, &partner_org, "spiffe://partner.org/bundle-server").await?;

    // partner.org's API admits example.org's frontend.
    let partner_trusts = trust(
        &partner,
        &example_org,
        example_url,
        "spiffe://example.org/bundle-server",
        bundle_of(&example, &example_org)?,
    )
    .await?;
    let server = ServerConfigBuilder::new(
        provider(),
        partner.workload(API)?,
        partner_trusts.bundles(),
        authorizer::exact(FRONTEND.parse()?),
    )
    .trust_policy(TrustPolicy::local_only().with_federated([example_org.clone()]))
    .on_unknown_authority(partner_trusts.unknown_authority_hook())
    .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}/", listener.local_addr()?.port());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(
            |Peer(peer): Peer| async move { format!("hello, {}", peer.spiffe_id()) },
        ),
    );
    tokio::spawn(async move {
        axum::serve(
            MtlsAcceptor::new(listener, server),
            mtls_tower::into_make_service(app),
        )
        .await
    });

    // example.org's frontend calls it.
    let example_trusts = trust(
        &example,
        &partner_org,
        partner_url,
        "spiffe://partner.org/bundle-server",
        bundle_of(&partner, &partner_org)?,
    )
    .await?;
    let frontend = example.workload(FRONTEND)?;
    let federated = ClientConfigBuilder::new(
        provider(),
        frontend.clone(),
        example_trusts.bundles(),
        authorizer::exact(API.parse()?),
    )
    .trust_policy(TrustPolicy::local_only().with_federated([partner_org.clone()]))
    .build()?;
    let answer = get(federated, &url).await?;
    println!("frontend -> partner.org api: {answer}");
    if answer != format!("hello, {FRONTEND}") {
        return Err("unexpected answer".into());
    }

    // Without the federation: example.org's own bundles only.
    let alone = ClientConfigBuilder::new(
        provider(),
        frontend,
        Arc::clone(&example.bundles()),
        authorizer::exact(API.parse()?),
    )
    .trust_policy(TrustPolicy::local_only().with_federated([partner_org]))
    .build()?;
    match get(alone, &url).await {
        Ok(body) => Err(format!("a client without partner.org's bundle was served: {body}").into()),
        Err(e) => {
            println!("without the federation: refused ({e})");
            Ok(())
        }
    }
}
