//! The HTTP translation, done once per request and only here: an
//! `http::Request` becomes the engine's [`Request`] (normalised path, each
//! header copied once, tokens located), and the URI the backend must see
//! is computed from the same normalised path (M-9).

use std::borrow::Cow;

use http::uri::PathAndQuery;

use crate::authn::TokenHandling;
use crate::jwt::{PresentedToken, TokenLocation};
use crate::path;
use crate::request::Request;

/// One translated request.
pub(crate) struct Translated {
    /// What the engine decides on.
    pub(crate) request: Request,
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

/// Translates `req`; connection facts are added by the caller.
pub(crate) fn translate<B>(req: &http::Request<B>, handling: &TokenHandling) -> Translated {
    let raw_path = req.uri().path();
    let normalised = path::normalize(raw_path);
    let mut uri = None;
    let mut bad_uri = false;
    if let Ok(p) = &normalised
        && p != raw_path
    {
        uri = rewrite_uri(req.uri(), p);
        bad_uri = uri.is_none();
    }
    let mut out = Request::http_normalised(req.method().as_str().to_owned(), normalised);
    if bad_uri {
        out.malformed = out
            .malformed
            .or(Some("normalised path is not a valid request target"));
    }
    if let Some(authority) = req.uri().authority() {
        out = out.host(authority.as_str());
    }
    let headers = req.headers();
    for name in headers.keys() {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else {
            continue;
        };
        let mut joined = lossy(first).into_owned();
        for more in values {
            joined.push(',');
            joined.push_str(&lossy(more));
        }
        out.push_header(name.as_str(), joined);
    }
    let mut found = Vec::with_capacity(handling.locations.len());
    for (loc, _) in &handling.locations {
        let token = find_token(req, loc);
        found.push(token.is_some());
        if let Some(token) = token {
            out = out.token(PresentedToken::raw(loc.clone(), token.into_owned()));
        }
    }
    Translated {
        request: out,
        uri,
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(uri: &str) -> Translated {
        let req = http::Request::get(uri)
            .body(())
            .expect("test request builds");
        translate(&req, &TokenHandling::default())
    }

    #[test]
    fn m_9_forwarded_uri_is_the_normalised_path_with_query() {
        let t = translated("/admin/../public/x?a=1&b=%2e");
        assert_eq!(t.request.path, "/public/x");
        assert_eq!(
            t.uri.map(|u| u.to_string()),
            Some("/public/x?a=1&b=%2e".to_owned())
        );
        // An already normal path is forwarded untouched.
        assert!(translated("/public/x?q").uri.is_none());
        let t = translated("http://shop.example:8080/a/%2E%2e/b");
        assert_eq!(
            t.uri.map(|u| u.to_string()),
            Some("http://shop.example:8080/b".to_owned())
        );
        assert_eq!(t.request.host.as_deref(), Some("shop.example:8080"));
    }
}
