//! The HTTP translation, done once per request and only here: an
//! `http::Request` and its connection's facts become the [`View`] the
//! engine decides on (normalised path, the headers some rule reads,
//! tokens located; borrowed wherever nothing changes), and the URI the
//! backend must see is computed from the same normalised path (M-9).

use std::borrow::Cow;
use std::net::IpAddr;

use http::uri::PathAndQuery;
use spiffe_core::ConnectionFacts;

use crate::authn::TokenHandling;
use crate::jwt::{PresentedToken, TokenLocation};
use crate::path;
use crate::request::{Protocol, View, lowercase, method_malformed, path_error_text};

/// One translated request: the facts the engine reads in their M-9
/// form, borrowed from the `http::Request` where they need no change.
pub(crate) struct Translated<'r> {
    pub(crate) method: Cow<'static, str>,
    /// Normalised, without query; empty when it cannot be normalised.
    pub(crate) path: Cow<'r, str>,
    /// The target's authority, lowercased.
    pub(crate) host: Option<Cow<'r, str>>,
    /// The headers the decision can read: lowercase names, repeated
    /// values joined by `,`.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) tokens: Vec<PresentedToken>,
    /// Why a sidecar would answer 400, if it would.
    pub(crate) malformed: Option<&'static str>,
    /// The URI to forward when normalisation changed the path: the
    /// normalised path with the original query (M-9).
    pub(crate) uri: Option<http::Uri>,
    /// Whether a token was found at each of `TokenHandling::locations`.
    pub(crate) found: Vec<bool>,
}

fn lossy(v: &http::HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name && !v.is_empty()).then_some(v)
    })
}

fn cookie<'c>(header: &'c str, name: &str) -> Option<&'c str> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// Finds the token at one configured location. Repeated headers are
/// joined with `,` first (so two `Authorization` headers give a malformed
/// token, never a choice); each `Cookie` header is searched on its own.
pub(crate) fn find_token<'r, B>(
    req: &'r http::Request<B>,
    loc: &TokenLocation,
) -> Option<Cow<'r, str>> {
    match loc {
        TokenLocation::Header { name, prefix } => {
            let mut values = req.headers().get_all(name.as_str()).iter();
            let first = values.next()?;
            let mut value = lossy(first);
            for more in values {
                let joined = value.to_mut();
                joined.push(',');
                joined.push_str(&lossy(more));
            }
            match value {
                Cow::Borrowed(v) => v.strip_prefix(prefix.as_str()).map(Cow::Borrowed),
                Cow::Owned(v) => v
                    .strip_prefix(prefix.as_str())
                    .map(|t| Cow::Owned(t.to_owned())),
            }
        }
        TokenLocation::Param(name) => query_param(req.uri().query()?, name).map(Cow::Borrowed),
        TokenLocation::Cookie(name) => req
            .headers()
            .get_all(http::header::COOKIE)
            .iter()
            .find_map(|v| cookie(v.to_str().ok()?, name))
            .map(Cow::Borrowed),
    }
}

/// The URI with its path replaced by `normalised`, query kept.
fn rewrite_uri(uri: &http::Uri, normalised: &str) -> Option<http::Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{normalised}?{q}"),
        None => normalised.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
    http::Uri::from_parts(parts).ok()
}

/// The name of a standard method as a static string, so that the
/// translation of an ordinary request does not allocate for it.
fn method_text(method: &http::Method) -> Cow<'static, str> {
    Cow::Borrowed(match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        other => return Cow::Owned(other.to_owned()),
    })
}

/// Translates `req`; the connection's facts join in [`Translated::view`].
/// Only what normalisation changes is copied: the path when it was not
/// already normal, the authority when it has upper case, joined repeated
/// headers, located tokens. Of the request's headers only those the
/// decision can read are taken, when `read` is given: those names (the
/// ones the policies' rules test), `host` when the target names no
/// authority, and the two a CORS preflight is recognised by (RA-3) when
/// the method is `OPTIONS`; a header no rule reads cannot change the
/// decision. `None` takes every header (for an external authorizer).
pub(crate) fn translate<'r, B>(
    req: &'r http::Request<B>,
    handling: &TokenHandling,
    read: Option<&[String]>,
) -> Translated<'r> {
    let raw_path = req.uri().path();
    let method = method_text(req.method());
    let mut malformed = method_malformed(&method);
    let mut uri = None;
    let path = match path::normalize_cow(raw_path) {
        Ok(p) => {
            if p != raw_path {
                uri = rewrite_uri(req.uri(), &p);
                if uri.is_none() {
                    malformed = malformed.or(Some("normalised path is not a valid request target"));
                }
            }
            p
        }
        Err(e) => {
            malformed = malformed.or(Some(path_error_text(e)));
            Cow::Borrowed("")
        }
    };
    let host = req.uri().authority().map(|a| lowercase(a.as_str()));
    let preflight = req.method() == http::Method::OPTIONS;
    let host_read = host.is_none();
    let wanted = |name: &str| {
        read.is_none_or(|read| read.iter().any(|r| r == name))
            || (host_read && name == "host")
            || (preflight && (name == "origin" || name == "access-control-request-method"))
    };
    let mut headers = Vec::new();
    let map = req.headers();
    for name in map.keys() {
        if !wanted(name.as_str()) {
            continue;
        }
        let mut values = map.get_all(name).iter();
        let Some(first) = values.next() else {
            continue;
        };
        let mut joined = lossy(first).into_owned();
        for more in values {
            joined.push(',');
            joined.push_str(&lossy(more));
        }
        headers.push((name.as_str().to_owned(), joined));
    }
    let mut found = Vec::with_capacity(handling.locations.len());
    let mut tokens = Vec::new();
    for (loc, _) in &handling.locations {
        let token = find_token(req, loc);
        found.push(token.is_some());
        if let Some(token) = token {
            tokens.push(PresentedToken::raw(loc.clone(), token.into_owned()));
        }
    }
    Translated {
        method,
        path,
        host,
        headers,
        tokens,
        malformed,
        uri,
        found,
    }
}

impl Translated<'_> {
    /// What the engine decides on: this request on the connection of
    /// `facts` (the peer identity comes only from the verifier's proof
    /// they carry), from `remote_ip` when a trusted proxy named the
    /// original client.
    pub(crate) fn view<'a>(
        &'a self,
        facts: &'a ConnectionFacts,
        remote_ip: Option<IpAddr>,
    ) -> View<'a> {
        View {
            protocol: Protocol::Http,
            peer: facts.peer().map(|p| p.spiffe_id()),
            source_ip: Some(facts.remote_addr().ip()),
            remote_ip,
            destination_ip: Some(facts.local_addr().ip()),
            port: facts.local_addr().port(),
            sni: facts.sni(),
            method: &self.method,
            path: &self.path,
            host: self.host.as_deref(),
            headers: &self.headers,
            tokens: &self.tokens,
            malformed: self.malformed,
            owned: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> http::Request<()> {
        http::Request::get(uri)
            .body(())
            .expect("test request builds")
    }

    fn translated(req: &http::Request<()>) -> Translated<'_> {
        translate(req, &TokenHandling::default(), Some(&[]))
    }

    fn copied(req: &http::Request<()>, read: &[&str]) -> Vec<(String, String)> {
        let read: Vec<String> = read.iter().map(|n| (*n).to_owned()).collect();
        translate(req, &TokenHandling::default(), Some(&read)).headers
    }

    #[test]
    fn only_the_headers_a_rule_reads_are_copied() {
        let req = http::Request::get("http://shop.example/x")
            .header("x-tenant", "blue")
            .header("x-tenant", "green")
            .header("x-other", "1")
            .header("host", "shop.example")
            .header("origin", "https://a.example")
            .body(())
            .expect("test request builds");
        // Repeated values are still joined (M-9).
        assert_eq!(
            copied(&req, &["x-tenant"]),
            vec![("x-tenant".to_owned(), "blue,green".to_owned())]
        );
        // No rule reads a header: none is copied. The target names the
        // authority, so `host` is not read either; `origin` only matters
        // to a preflight.
        assert!(copied(&req, &[]).is_empty());
        // A name no header carries copies nothing.
        assert!(copied(&req, &["x-absent"]).is_empty());
        // For an external authorizer every header is kept.
        let all = translate(&req, &TokenHandling::default(), None).headers;
        assert_eq!(all.len(), 4, "{all:?}");
    }

    #[test]
    fn host_is_copied_without_an_authority_and_the_preflight_pair_for_options() {
        let origin_form = http::Request::get("/x")
            .header("Host", "Shop.Example")
            .header("origin", "https://a.example")
            .body(())
            .expect("test request builds");
        assert_eq!(
            copied(&origin_form, &[]),
            vec![("host".to_owned(), "Shop.Example".to_owned())]
        );
        let t = translate(&origin_form, &TokenHandling::default(), Some(&[]));
        let facts = ConnectionFacts::new(
            "127.0.0.1:8080".parse().expect("address"),
            "127.0.0.1:40000".parse().expect("address"),
        );
        assert_eq!(
            t.view(&facts, None).effective_host().as_deref(),
            Some("shop.example")
        );
        let preflight = http::Request::options("http://shop.example/x")
            .header("origin", "https://a.example")
            .header("access-control-request-method", "POST")
            .header("x-other", "1")
            .body(())
            .expect("test request builds");
        let mut names: Vec<String> = copied(&preflight, &[])
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        assert_eq!(names, ["access-control-request-method", "origin"]);
    }

    #[test]
    fn standard_methods_are_static_and_others_kept_as_sent() {
        let req = get("/x");
        let t = translated(&req);
        assert!(matches!(t.method, Cow::Borrowed("GET")));
        let custom = http::Request::builder()
            .method("PURGE")
            .uri("/x")
            .body(())
            .expect("test request builds");
        let t = translate(&custom, &TokenHandling::default(), Some(&[]));
        assert_eq!(t.method, "PURGE");
        assert!(t.malformed.is_none());
    }

    #[test]
    fn m_9_forwarded_uri_is_the_normalised_path_with_query() {
        let req = get("/admin/../public/x?a=1&b=%2e");
        let t = translated(&req);
        assert_eq!(t.path, "/public/x");
        assert_eq!(
            t.uri.map(|u| u.to_string()),
            Some("/public/x?a=1&b=%2e".to_owned())
        );
        // An already normal path is forwarded untouched.
        assert!(translated(&get("/public/x?q")).uri.is_none());
        let req = get("http://shop.example:8080/a/%2E%2e/b");
        let t = translated(&req);
        assert_eq!(
            t.uri.map(|u| u.to_string()),
            Some("http://shop.example:8080/b".to_owned())
        );
        assert_eq!(t.host.as_deref(), Some("shop.example:8080"));
    }
}
