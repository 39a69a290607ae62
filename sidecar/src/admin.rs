//! The admin listener (Istio's 15000): metrics, readiness, config and
//! certificate dumps, endpoint health, log level.
//!
//! | path | what |
//! |---|---|
//! | `/stats/prometheus` | metrics, Prometheus text format |
//! | `/healthz/ready` | 200 once an SVID and policies are held, else 503 |
//! | `/config_dump` | the effective config and policy version, no secrets |
//! | `/certs` | current SVID (ID, expiry, fingerprint), bundle fingerprints |
//! | `/clusters` | services, endpoints, load estimates, ejections |
//! | `/logging?level=LEVEL` | changes the log filter (POST) |

use std::sync::Arc;

use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{ProxyBody, text};
use crate::runtime::Shared;

type SetLevel = Option<crate::runtime::LogLevelSetter>;

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    policies_ready: watch::Receiver<bool>,
    set_level: SetLevel,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        let ready = policies_ready.clone();
        let set_level = set_level.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let resp = route(&shared, &ready, set_level.as_ref(), &req);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn respond(
    code: StatusCode,
    content_type: &'static str,
    body: String,
) -> http::Response<ProxyBody> {
    let mut resp = http::Response::new(text(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

fn json(value: &serde_json::Value) -> http::Response<ProxyBody> {
    respond(
        StatusCode::OK,
        "application/json",
        serde_json::to_string_pretty(value).unwrap_or_default(),
    )
}

fn route(
    shared: &Shared,
    ready: &watch::Receiver<bool>,
    set_level: Option<&crate::runtime::LogLevelSetter>,
    req: &http::Request<Incoming>,
) -> http::Response<ProxyBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/stats/prometheus") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        (&Method::GET, "/healthz/ready") => {
            let svid = shared.identity.ready();
            let policies = *ready.borrow();
            if svid && policies {
                respond(StatusCode::OK, "text/plain", "LIVE\n".to_owned())
            } else {
                let why = match (svid, policies) {
                    (false, false) => "no SVID and no policies yet",
                    (false, true) => "no SVID yet",
                    _ => "no policies yet",
                };
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{why}\n"),
                )
            }
        }
        (&Method::GET, "/config_dump") => {
            // The config holds paths and addresses, never key material.
            json(&serde_json::json!({
                "config": &shared.config,
                "policy_version": shared.policies.version(),
                "spiffe_id": shared.local_id(),
            }))
        }
        (&Method::GET, "/certs") => json(&certs(shared)),
        (&Method::GET, "/clusters") => json(&shared.clusters()),
        (&Method::POST, "/logging") => {
            let level = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("level="));
            match (level, set_level) {
                (None, _) => respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "usage: POST /logging?level=FILTER (e.g. debug, mesh_sidecar=trace)\n"
                        .to_owned(),
                ),
                (Some(_), None) => respond(
                    StatusCode::NOT_IMPLEMENTED,
                    "text/plain",
                    "this process does not support changing the log level\n".to_owned(),
                ),
                (Some(level), Some(set)) => match set(level) {
                    Ok(()) => respond(StatusCode::OK, "text/plain", format!("level: {level}\n")),
                    Err(e) => respond(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
                },
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "admin paths: /stats/prometheus /healthz/ready /config_dump /certs /clusters /logging\n"
                .to_owned(),
        ),
    }
}

fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn certs(shared: &Shared) -> serde_json::Value {
    let svid = shared.identity.svid.x509_svid().map(|s| {
        let expires_in = s
            .not_after()
            .duration_since(std::time::SystemTime::now())
            .map_or(0, |d| d.as_secs());
        let not_after = s
            .not_after()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        serde_json::json!({
            "spiffe_id": s.spiffe_id().to_string(),
            "not_after_unix": not_after,
            "expires_in_seconds": expires_in,
            "leaf_sha256": fingerprint(s.leaf()),
            "chain_length": s.chain().len(),
        })
    });
    let bundles: Vec<serde_json::Value> = shared
        .identity
        .bundles
        .bundle_set()
        .iter()
        .map(|b| {
            let authorities: Vec<String> = b
                .x509()
                .authorities()
                .iter()
                .map(|a| fingerprint(a))
                .collect();
            serde_json::json!({
                "trust_domain": b.trust_domain().to_string(),
                "x509_authorities_sha256": authorities,
            })
        })
        .collect();
    serde_json::json!({ "svid": svid, "bundles": bundles })
}
