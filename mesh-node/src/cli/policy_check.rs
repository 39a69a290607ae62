//! `mesh-node policy check`: request file → `authz::Request` → decision JSON.
//!
//! Besides the statuses of the contract (200, 401, 403 and the TCP words),
//! a request a sidecar rejects before authorization (M-9: lower-case
//! method, `%00` in the path, whitespace in a header name) reports `400`.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::IpAddr;
use std::time::SystemTime;

use authz::{
    Action, Decision, Engine, ExtAuthzVerdict, ExtensionProvider, JwtFailure, MeshConfig,
    PolicySet, PresentedToken, ProviderKind, Request, Response, TokenLocation, Workload,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use spiffe_core::{SpiffeId, TrustDomain};

use super::CheckArgs;

/// Why the check could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    #[error("{0}")]
    Policy(#[from] authz::LoadError),
    #[error("cannot read request file {path}: {source}")]
    ReadRequest {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid request file: {0}")]
    ParseRequest(String),
    #[error("invalid request: `{field}`: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("invalid trust domain `{value}`: {reason}")]
    BadTrustDomain { value: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireProtocol {
    Http,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireExtAuthz {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HeaderValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireLocation {
    header: Option<String>,
    prefix: Option<String>,
    param: Option<String>,
}

/// The request file, field names as in the CLI contract.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    protocol: WireProtocol,
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, HeaderValue>,
    #[serde(default)]
    source_ip: Option<String>,
    #[serde(default)]
    remote_ip: Option<String>,
    #[serde(default)]
    destination_ip: Option<String>,
    #[serde(default)]
    sni: Option<String>,
    #[serde(default)]
    jwt_claims: Option<Map<String, Value>>,
    #[serde(default)]
    jwt_valid: Option<bool>,
    #[serde(default)]
    jwt_location: Option<WireLocation>,
    #[serde(default)]
    ext_authz: Option<WireExtAuthz>,
}

fn ip(field: &'static str, value: Option<&str>) -> Result<Option<IpAddr>, CheckError> {
    value
        .map(|v| {
            v.parse().map_err(|_| CheckError::BadField {
                field,
                reason: format!("`{v}` is not an IP address"),
            })
        })
        .transpose()
}

fn location(wire: Option<WireLocation>) -> Result<TokenLocation, CheckError> {
    let bad = |reason: &str| CheckError::BadField {
        field: "jwt_location",
        reason: reason.to_owned(),
    };
    match wire {
        None => Ok(TokenLocation::bearer()),
        Some(WireLocation {
            header: Some(name),
            prefix,
            param: None,
        }) => Ok(TokenLocation::Header {
            name,
            prefix: prefix.unwrap_or_default(),
        }),
        Some(WireLocation {
            header: None,
            prefix: None,
            param: Some(name),
        }) => Ok(TokenLocation::Param(name)),
        Some(_) => Err(bad("expected {header: NAME, prefix: P} or {param: NAME}")),
    }
}

fn read_request(path: &std::path::Path) -> Result<String, CheckError> {
    let mut text = String::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    result.map_err(|source| CheckError::ReadRequest {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text)
}

fn build_request(wire: WireRequest) -> Result<(Request, ExtAuthzVerdict), CheckError> {
    let mut req = match wire.protocol {
        WireProtocol::Tcp => Request::tcp(),
        WireProtocol::Http => {
            let method = wire.method.ok_or(CheckError::BadField {
                field: "method",
                reason: "required for HTTP".to_owned(),
            })?;
            let path = wire.path.ok_or(CheckError::BadField {
                field: "path",
                reason: "required for HTTP".to_owned(),
            })?;
            Request::http(method, path)
        }
    };
    if let Some(p) = wire.principal {
        let id: SpiffeId = p.parse().map_err(|e| CheckError::BadField {
            field: "principal",
            reason: format!("`{p}` is not a SPIFFE ID: {e}"),
        })?;
        req = req.peer(id);
    }
    if let Some(port) = wire.port {
        req = req.port(port);
    }
    if let Some(host) = wire.host {
        req = req.host(host);
    }
    for (name, value) in wire.headers {
        match value {
            HeaderValue::One(v) => req = req.header(name, v),
            HeaderValue::Many(list) => {
                for v in list {
                    req = req.header(name.clone(), v);
                }
            }
        }
    }
    if let Some(ip) = ip("source_ip", wire.source_ip.as_deref())? {
        req = req.source_ip(ip);
    }
    if let Some(ip) = ip("remote_ip", wire.remote_ip.as_deref())? {
        req = req.remote_ip(ip);
    }
    if let Some(ip) = ip("destination_ip", wire.destination_ip.as_deref())? {
        req = req.destination_ip(ip);
    }
    if let Some(sni) = wire.sni {
        req = req.sni(sni);
    }
    let loc = location(wire.jwt_location)?;
    match (wire.jwt_claims, wire.jwt_valid.unwrap_or(true)) {
        (Some(claims), true) => req = req.token(PresentedToken::verified(loc, claims)),
        (Some(_), false) => {
            req = req.token(PresentedToken::failed(loc, JwtFailure::VerificationFailed));
        }
        (None, _) => {}
    }
    let verdict = match wire.ext_authz {
        Some(WireExtAuthz::Deny) => ExtAuthzVerdict::Deny { status: 403 },
        _ => ExtAuthzVerdict::Allow,
    };
    Ok((req, verdict))
}

fn trust_domain(value: &str) -> Result<String, CheckError> {
    value
        .parse::<TrustDomain>()
        .map(|td| td.to_string())
        .map_err(|e| CheckError::BadTrustDomain {
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

fn mesh_config(args: &CheckArgs, set: &PolicySet) -> Result<MeshConfig, CheckError> {
    let mut mesh = MeshConfig::default()
        .with_root_namespace(args.root_namespace.clone())
        .with_trust_domain(trust_domain(&args.trust_domain)?);
    for alias in &args.trust_domain_aliases {
        mesh = mesh.with_trust_domain_alias(trust_domain(alias)?);
    }
    // The request file says what the external authorizer answers, so every
    // provider a CUSTOM policy names is treated as a configured gRPC provider.
    let mut providers: Vec<&str> = set
        .authorization
        .iter()
        .filter(|p| p.action == Action::Custom)
        .filter_map(|p| p.provider.as_deref())
        .collect();
    providers.sort_unstable();
    providers.dedup();
    for name in providers {
        mesh = mesh.with_extension_provider(ExtensionProvider::new(name, ProviderKind::Grpc));
    }
    Ok(mesh)
}

fn render(decision: &Decision) -> Value {
    let status = match decision.response {
        Response::Http(code) => json!(code),
        Response::Connected => json!("connected"),
        Response::ConnectionClosed => json!("connection_closed"),
        Response::ConnectionReset => json!("connection_reset"),
        _ => json!("unknown"),
    };
    json!({
        "decision": if decision.allowed { "allow" } else { "deny" },
        "status": status,
        "policy": decision.policy,
        "audit": decision.audit,
        "reason": decision.reason.to_string(),
    })
}

/// Runs the check and returns the JSON line to print.
pub(crate) fn run(args: &CheckArgs) -> Result<String, CheckError> {
    let set = PolicySet::load(&args.policies)?;
    for warning in &set.warnings {
        eprintln!("warning: {warning}");
    }
    let text = read_request(&args.request)?;
    let opts = serde_saphyr::options! { strict_booleans: true };
    let wire: WireRequest = serde_saphyr::from_str_with_options(&text, opts)
        .map_err(|e| CheckError::ParseRequest(e.to_string()))?;
    let (request, verdict) = build_request(wire)?;
    let mut workload = Workload::new(args.workload_namespace.clone());
    for (k, v) in &args.workload_labels {
        workload = workload.label(k.clone(), v.clone());
    }
    let mesh = mesh_config(args, &set)?;
    let engine = Engine::new(workload, mesh, &set);
    let ext = move |_: &str, _: &Request| verdict;
    let decision = engine.check_with(&request, &ext, SystemTime::now());
    Ok(render(&decision).to_string())
}
