//! Reading a compact JWT without its signature: the three segments, the
//! payload as a JSON object, and the `aud` claim. One reading for the whole
//! workspace: JWT-SVID validation here and authz's RequestAuthentication
//! both use it, so the two never disagree on what a token says.

use serde_json::{Map, Value};

use super::b64url;

/// The three segments of a compact JWS (`header.payload.signature`), or
/// `None` unless there are exactly three (JWT-1).
///
/// ```
/// use spiffe_core::jwt::compact_segments;
/// assert_eq!(compact_segments("a.b.c"), Some(("a", "b", "c")));
/// assert_eq!(compact_segments("a.b"), None);
/// assert_eq!(compact_segments("a.b.c.d"), None);
/// ```
pub fn compact_segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) => Some((h, p, s)),
        _ => None,
    }
}

/// Decodes a payload segment (unpadded base64url) as a JSON object.
/// `None` when it is not base64url or not a JSON object.
pub fn decode_payload(segment: &str) -> Option<Map<String, Value>> {
    serde_json::from_slice(&b64url(segment)?).ok()
}

/// The payload of a compact token, unverified: for routing a token to the
/// keys that may verify it, never for trusting what it says.
pub fn unverified_payload(token: &str) -> Option<Map<String, Value>> {
    decode_payload(compact_segments(token)?.1)
}

/// A registered time claim (`exp`, `nbf`, `iat`: an RFC 7519 NumericDate)
/// in seconds since the Unix epoch. Absent is `Ok(None)`; present but not a
/// finite, non-negative number makes the token invalid, never "absent" (a
/// string `exp` must not turn into "no expiry").
///
/// ```
/// use spiffe_core::jwt::{NotNumericDate, numeric_date};
/// let claims = serde_json::json!({"exp": 1700000000, "nbf": "soon"});
/// let claims = claims.as_object().unwrap();
/// assert_eq!(numeric_date(claims, "exp"), Ok(Some(1700000000.0)));
/// assert_eq!(numeric_date(claims, "iat"), Ok(None));
/// assert_eq!(numeric_date(claims, "nbf"), Err(NotNumericDate { claim: "nbf" }));
/// ```
pub fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<f64>, NotNumericDate> {
    match claims.get(claim) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(Some(secs)),
            _ => Err(NotNumericDate { claim }),
        },
    }
}

/// A time claim that is present but not a NumericDate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {claim} claim is not a NumericDate")]
pub struct NotNumericDate {
    /// `exp`, `nbf` or `iat`.
    pub claim: &'static str,
}

/// The `aud` claim (RFC 7519 §4.1.3): a string or an array of strings.
/// Absent is `Some(vec![])`; any other shape, or an array holding a
/// non-string, is `None` (malformed, never read as "no audience").
///
/// ```
/// use serde_json::json;
/// use spiffe_core::jwt::audience_claim;
/// let claims = |v: serde_json::Value| v.as_object().cloned().unwrap();
/// assert_eq!(audience_claim(&claims(json!({"aud": "a"}))), Some(vec!["a"]));
/// assert_eq!(audience_claim(&claims(json!({"aud": ["a", "b"]}))), Some(vec!["a", "b"]));
/// assert_eq!(audience_claim(&claims(json!({}))), Some(vec![]));
/// assert_eq!(audience_claim(&claims(json!({"aud": ["a", 5]}))), None);
/// ```
pub fn audience_claim(claims: &Map<String, Value>) -> Option<Vec<&str>> {
    match claims.get("aud") {
        None => Some(Vec::new()),
        Some(Value::String(s)) => Some(vec![s.as_str()]),
        Some(Value::Array(list)) => list.iter().map(Value::as_str).collect(),
        Some(_) => None,
    }
}
