//! [`error_chain`]: an error and its causes on one line.

use std::error::Error;

/// `error` followed by each of its [`Error::source`]s, joined with `": "`,
/// skipping a cause whose text the line already holds (wrappers that
/// repeat their source's message).
///
/// HTTP and gRPC clients wrap the reason a connection failed several
/// layers deep (`client error (SendRequest)` → `connection error` → the
/// TLS refusal); printing the chain shows the reason.
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// #[error("client error")]
/// struct Outer(#[source] std::io::Error);
/// let e = Outer(std::io::Error::other("the server refused this client"));
/// assert_eq!(
///     spiffe_core::error_chain(&e),
///     "client error: the server refused this client"
/// );
/// ```
pub fn error_chain(error: &(dyn Error + '_)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(String, #[source] Option<Box<Layer>>);

    #[test]
    fn repeated_causes_appear_once() {
        let inner = Layer("connection refused".into(), None);
        let mid = Layer(
            "connecting to x: connection refused".into(),
            Some(Box::new(inner)),
        );
        let top = Layer("request failed".into(), Some(Box::new(mid)));
        assert_eq!(
            error_chain(&top),
            "request failed: connecting to x: connection refused"
        );
    }
}
