//! The compiled boolean matcher tree (B-1 … B-5) and its evaluation.

use std::net::IpAddr;

use serde_json::Value;
use spiffe_core::SpiffeId;

use crate::cidr::Cidr;
use crate::identity::{self, RequestPrincipal};
use crate::jwt::{self, RequestIdentity};
use crate::pattern::StrMatch;
use crate::template::PathTemplate;

/// Normalised facts about one request, as matchers read them (no `Debug`:
/// the headers hold credentials).
pub(crate) struct Ctx<'a> {
    pub(crate) peer: Option<&'a SpiffeId>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) remote_ip: Option<IpAddr>,
    pub(crate) destination_ip: Option<IpAddr>,
    pub(crate) port: u16,
    pub(crate) sni: Option<&'a str>,
    pub(crate) method: &'a str,
    /// Normalised path without query (M-7, M-9).
    pub(crate) path: &'a str,
    /// Lowercased host (M-3).
    pub(crate) host: Option<&'a str>,
    /// Lowercased header names, repeated headers joined by `,`.
    pub(crate) headers: &'a [(String, String)],
    pub(crate) jwt: Option<&'a RequestIdentity>,
    pub(crate) space_delimited: &'a [String],
}

impl Ctx<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A path value: an M-1 pattern or an M-8 template.
#[derive(Debug, Clone)]
pub(crate) enum PathMatch {
    Pattern(StrMatch),
    Template(PathTemplate),
}

/// One value of one field, compiled.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    Principal(StrMatch),
    Namespace(String),
    ServiceAccount { ns: String, sa: String },
    TrustDomain(StrMatch),
    SourceIp(Cidr),
    RemoteIp(Cidr),
    DestinationIp(Cidr),
    RequestPrincipal(RequestPrincipal),
    Host(StrMatch),
    Port(u16),
    Method(StrMatch),
    Path(PathMatch),
    Header(String, StrMatch),
    Audience(StrMatch),
    Presenter(StrMatch),
    Claim(Vec<String>, StrMatch),
    Sni(StrMatch),
}

impl Matcher {
    /// Whether the attribute exists only on HTTP (T-1).
    pub(crate) fn http_only(&self) -> bool {
        matches!(
            self,
            Matcher::RequestPrincipal(_)
                | Matcher::Host(_)
                | Matcher::Method(_)
                | Matcher::Path(_)
                | Matcher::Header(..)
                | Matcher::Audience(_)
                | Matcher::Presenter(_)
                | Matcher::Claim(..)
        )
    }

    /// Positive match; a missing attribute never matches (M-5).
    pub(crate) fn matches(&self, cx: &Ctx<'_>) -> bool {
        match self {
            Matcher::Principal(p) => cx.peer.is_some_and(|id| p.matches(id.as_str())),
            Matcher::Namespace(p) => cx.peer.is_some_and(|id| identity::namespace_matches(p, id)),
            Matcher::ServiceAccount { ns, sa } => cx
                .peer
                .is_some_and(|id| identity::service_account_matches(ns, sa, id)),
            Matcher::TrustDomain(p) => cx
                .peer
                .is_some_and(|id| identity::trust_domain_matches(p, id)),
            Matcher::SourceIp(c) => cx.source_ip.is_some_and(|ip| c.contains(ip)),
            Matcher::RemoteIp(c) => cx.remote_ip.is_some_and(|ip| c.contains(ip)),
            Matcher::DestinationIp(c) => cx.destination_ip.is_some_and(|ip| c.contains(ip)),
            Matcher::RequestPrincipal(p) => cx.jwt.is_some_and(|j| p.matches(&j.iss, &j.sub)),
            Matcher::Host(p) => cx.host.is_some_and(|h| p.matches_present(h)),
            Matcher::Port(p) => cx.port == *p,
            Matcher::Method(p) => p.matches_present(cx.method),
            Matcher::Path(PathMatch::Pattern(p)) => p.matches(cx.path),
            Matcher::Path(PathMatch::Template(t)) => t.matches(cx.path),
            Matcher::Header(name, p) => cx.header(name).is_some_and(|v| p.matches_present(v)),
            Matcher::Audience(p) => cx.jwt.is_some_and(|j| {
                jwt::audiences(&j.claims)
                    .unwrap_or_default()
                    .iter()
                    .any(|a| p.matches(a))
            }),
            Matcher::Presenter(p) => cx.jwt.is_some_and(|j| {
                j.claims
                    .get("azp")
                    .and_then(Value::as_str)
                    .is_some_and(|a| p.matches(a))
            }),
            Matcher::Claim(names, p) => cx
                .jwt
                .is_some_and(|j| claim_matches(&j.claims, names, p, cx.space_delimited)),
            Matcher::Sni(p) => cx.sni.is_some_and(|s| p.matches(s)),
        }
    }
}

/// RA-8: strings and lists of strings only; `scope`, `permission` and the
/// configured space-delimited claims are split on whitespace first.
fn claim_matches(
    claims: &serde_json::Map<String, Value>,
    names: &[String],
    pattern: &StrMatch,
    space_delimited: &[String],
) -> bool {
    let Some((first, rest)) = names.split_first() else {
        return false;
    };
    let mut value = claims.get(first);
    for name in rest {
        value = value.and_then(|v| v.as_object()).and_then(|o| o.get(name));
    }
    let last = names.last().map(String::as_str).unwrap_or_default();
    let split = names.len() == 1
        && (last == "scope" || last == "permission" || space_delimited.iter().any(|s| s == last));
    let string_matches = |s: &str| {
        if split {
            s.split_whitespace().any(|part| pattern.matches(part))
        } else {
            pattern.matches(s)
        }
    };
    match value {
        Some(Value::String(s)) => string_matches(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(string_matches),
        _ => false,
    }
}

/// A field with its positive and negative lists (B-4).
#[derive(Debug, Clone, Default)]
pub(crate) struct Field {
    pub(crate) any: Vec<Matcher>,
    pub(crate) none: Vec<Matcher>,
}

impl Field {
    pub(crate) fn is_empty(&self) -> bool {
        self.any.is_empty() && self.none.is_empty()
    }

    pub(crate) fn holds(&self, cx: &Ctx<'_>) -> bool {
        (self.any.is_empty() || self.any.iter().any(|m| m.matches(cx)))
            && !self.none.iter().any(|m| m.matches(cx))
    }

    pub(crate) fn http_only(&self) -> bool {
        self.any.iter().chain(&self.none).any(Matcher::http_only)
    }
}

/// A `source` or `operation`: all fields must hold (B-3).
#[derive(Debug, Clone, Default)]
pub(crate) struct Clause {
    pub(crate) fields: Vec<Field>,
}

impl Clause {
    pub(crate) fn holds(&self, cx: &Ctx<'_>) -> bool {
        self.fields.iter().all(|f| f.holds(cx))
    }
}

/// A compiled rule (B-2).
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    /// `ns[NS]-policy[NAME]-rule[N]` (S-7).
    pub(crate) name: String,
    pub(crate) from: Option<Vec<Clause>>,
    pub(crate) to: Option<Vec<Clause>>,
    pub(crate) when: Vec<Field>,
}

impl CompiledRule {
    pub(crate) fn matches(&self, cx: &Ctx<'_>) -> bool {
        self.from
            .as_ref()
            .is_none_or(|f| f.iter().any(|c| c.holds(cx)))
            && self
                .to
                .as_ref()
                .is_none_or(|t| t.iter().any(|c| c.holds(cx)))
            && self.when.iter().all(|f| f.holds(cx))
    }

    /// Whether any attribute of the rule is HTTP-only (T-2).
    pub(crate) fn mentions_http(&self) -> bool {
        let clauses = self.from.iter().chain(self.to.iter()).flatten();
        clauses
            .flat_map(|c| c.fields.iter())
            .chain(self.when.iter())
            .any(Field::http_only)
    }

    /// Adds the names of the request headers the rule reads to `out`.
    pub(crate) fn header_names(&self, out: &mut Vec<String>) {
        let clauses = self.from.iter().chain(self.to.iter()).flatten();
        let fields = clauses
            .flat_map(|c| c.fields.iter())
            .chain(self.when.iter());
        for m in fields.flat_map(|f| f.any.iter().chain(f.none.iter())) {
            if let Matcher::Header(name, _) = m {
                out.push(name.clone());
            }
        }
    }

    /// T-3: removes HTTP-only fields; what is left empty matches everything.
    pub(crate) fn strip_http(&mut self) {
        for list in [&mut self.from, &mut self.to].into_iter().flatten() {
            for clause in list.iter_mut() {
                clause.fields.retain(|f| !f.http_only());
            }
        }
        self.when.retain(|f| !f.http_only());
    }
}
