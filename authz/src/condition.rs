//! `when` keys (§7): parsing and per-key value rules.

use crate::error::ValidationKind;

/// A parsed condition key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConditionKey {
    /// `request.headers[name]`, name lowercased (M-3).
    RequestHeader(String),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    SourceServiceAccount,
    SourceTrustDomain,
    RequestAuthPrincipal,
    RequestAuthAudiences,
    RequestAuthPresenter,
    /// `request.auth.claims[a][b]...`
    RequestAuthClaims(Vec<String>),
    DestinationIp,
    DestinationPort,
    ConnectionSni,
}

/// Splits `[a][b]` into `["a", "b"]`; the text inside brackets is literal.
fn bracket_list(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return None;
        }
        out.push(name.to_owned());
        rest = &inner[end + 1..];
    }
    (!out.is_empty()).then_some(out)
}

impl ConditionKey {
    pub(crate) fn parse(key: &str) -> Result<Self, ValidationKind> {
        let malformed = || ValidationKind::BadValue {
            value: key.to_owned(),
            why: "malformed `[...]` in condition key",
        };
        Ok(match key {
            "source.ip" => ConditionKey::SourceIp,
            "remote.ip" => ConditionKey::RemoteIp,
            "source.namespace" => ConditionKey::SourceNamespace,
            "source.principal" => ConditionKey::SourcePrincipal,
            "source.serviceAccount" => ConditionKey::SourceServiceAccount,
            "source.trustDomain" => ConditionKey::SourceTrustDomain,
            "request.auth.principal" => ConditionKey::RequestAuthPrincipal,
            "request.auth.audiences" => ConditionKey::RequestAuthAudiences,
            "request.auth.presenter" => ConditionKey::RequestAuthPresenter,
            "destination.ip" => ConditionKey::DestinationIp,
            "destination.port" => ConditionKey::DestinationPort,
            "connection.sni" => ConditionKey::ConnectionSni,
            "destination.namespace" | "destination.name" | "destination.user" => {
                return Err(ValidationKind::UnsupportedKey {
                    value: key.to_owned(),
                    why: "removed from the API; use selector or namespace",
                });
            }
            _ => {
                if let Some(rest) = key.strip_prefix("request.headers") {
                    let names = bracket_list(rest).ok_or_else(malformed)?;
                    let [name] = names.as_slice() else {
                        return Err(malformed());
                    };
                    ConditionKey::RequestHeader(name.to_ascii_lowercase())
                } else if let Some(rest) = key.strip_prefix("request.auth.claims") {
                    ConditionKey::RequestAuthClaims(bracket_list(rest).ok_or_else(malformed)?)
                } else if key.starts_with("destination.labels") {
                    return Err(ValidationKind::UnsupportedKey {
                        value: key.to_owned(),
                        why: "removed from the API; use selector",
                    });
                } else if key.starts_with("experimental.envoy.filters.") {
                    return Err(ValidationKind::UnsupportedKey {
                        value: key.to_owned(),
                        why: "Envoy dynamic metadata is not available to this engine",
                    });
                } else {
                    return Err(ValidationKind::UnknownKey {
                        value: key.to_owned(),
                    });
                }
            }
        })
    }

    /// Whether the attribute exists only for HTTP (T-1).
    pub(crate) fn http_only(&self) -> bool {
        matches!(
            self,
            ConditionKey::RequestHeader(_)
                | ConditionKey::RequestAuthPrincipal
                | ConditionKey::RequestAuthAudiences
                | ConditionKey::RequestAuthPresenter
                | ConditionKey::RequestAuthClaims(_)
        )
    }

    /// Whether the key reads the peer identity (forbidden in CUSTOM rules, E-2).
    pub(crate) fn reads_identity(&self) -> bool {
        matches!(
            self,
            ConditionKey::SourceNamespace
                | ConditionKey::SourcePrincipal
                | ConditionKey::SourceServiceAccount
                | ConditionKey::SourceTrustDomain
                | ConditionKey::RequestAuthPrincipal
                | ConditionKey::RequestAuthAudiences
                | ConditionKey::RequestAuthPresenter
                | ConditionKey::RequestAuthClaims(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ConditionKey;

    #[test]
    fn keys_parse() {
        assert_eq!(
            ConditionKey::parse("request.headers[X-Token]"),
            Ok(ConditionKey::RequestHeader("x-token".into()))
        );
        assert_eq!(
            ConditionKey::parse("request.auth.claims[a.b/c][d]"),
            Ok(ConditionKey::RequestAuthClaims(vec![
                "a.b/c".into(),
                "d".into()
            ]))
        );
        assert!(ConditionKey::parse("request.headers[]").is_err());
        assert!(ConditionKey::parse("request.headers[a][b]").is_err());
        assert!(ConditionKey::parse("request.auth.claims[a").is_err());
        assert!(ConditionKey::parse("request.auth.claims").is_err());
        assert!(ConditionKey::parse("destination.labels[app]").is_err());
        assert!(ConditionKey::parse("source.user").is_err());
    }
}
