//! Identity matching (§8): principals, namespaces, service accounts, trust
//! domains, trust-domain aliases, and JWT request principals (RA-7).

use spiffe_core::SpiffeId;

use crate::glob::glob_match;
use crate::pattern::StrMatch;

const SCHEME: &str = "spiffe://";

/// I-1: a `principals` value becomes a pattern over the full `spiffe://` ID.
pub(crate) fn principal(value: &str) -> StrMatch {
    match StrMatch::parse(value) {
        StrMatch::Presence => StrMatch::Presence,
        StrMatch::Exact(v) => StrMatch::Exact(format!("{SCHEME}{v}")),
        StrMatch::Prefix(v) => StrMatch::Prefix(format!("{SCHEME}{v}")),
        // `spiffe://.*v`: every SPIFFE ID starts with the scheme, so a suffix test suffices.
        StrMatch::Suffix(v) => StrMatch::Suffix(v),
    }
}

/// Trust-domain pattern test used by I-5 (`*x`, `x*`, `*`, exact).
fn td_pattern_matches(pattern: &str, td: &str) -> bool {
    StrMatch::parse(pattern).matches_present(td)
}

/// I-5: expands `principals`/`notPrincipals`/`source.principal` values over
/// `[trustDomain] + aliases`.
pub(crate) fn expand_principal_aliases(values: &[String], trust_domains: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let push = |v: String, out: &mut Vec<String>| {
        if !out.contains(&v) {
            out.push(v);
        }
    };
    for value in values {
        let parts: Vec<&str> = value.split('/').collect();
        if parts.len() != 5 || parts[0] == "*" {
            push(value.clone(), &mut out);
            continue;
        }
        let td = parts[0];
        let enforced =
            td == "cluster.local" || trust_domains.iter().any(|t| td_pattern_matches(td, t));
        if !enforced {
            push(value.clone(), &mut out);
            continue;
        }
        let rest = &value[td.len()..];
        for t in trust_domains {
            if td.starts_with('*') && td_pattern_matches(td, t) {
                push(value.clone(), &mut out);
            } else {
                push(format!("{t}{rest}"), &mut out);
            }
        }
    }
    out
}

/// I-2: `.*/ns/<ns>/.*` over the whole ID, `*` in the value becoming `.*`.
pub(crate) fn namespace_pattern(value: &str) -> String {
    format!("*/ns/{value}/*")
}

pub(crate) fn namespace_matches(pattern: &str, id: &SpiffeId) -> bool {
    glob_match(pattern, id.as_str())
}

/// I-3: `spiffe://<td>/ns/<ns>/(<anything>/)?sa/<sa>(/<anything>)?`.
pub(crate) fn service_account_matches(ns: &str, sa: &str, id: &SpiffeId) -> bool {
    let Some(rest) = id.path().strip_prefix("/ns/") else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(ns).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    let needle = format!("sa/{sa}");
    let mut start = 0;
    while let Some(found) = rest[start..].find(&needle) {
        let at = start + found;
        let before_ok = at == 0 || rest.as_bytes()[at - 1] == b'/';
        let end = at + needle.len();
        let after_ok = end == rest.len() || rest.as_bytes()[end] == b'/';
        if before_ok && after_ok {
            return true;
        }
        start = at + 1;
    }
    false
}

/// Splits a service-account value into (namespace, name); bare `sa` uses the
/// policy's namespace (I-3).
pub(crate) fn service_account(value: &str, policy_namespace: &str) -> (String, String) {
    match value.split_once('/') {
        Some((ns, sa)) => (ns.to_owned(), sa.to_owned()),
        None => (policy_namespace.to_owned(), value.to_owned()),
    }
}

/// I-4: trust-domain values; the mesh domain or an alias expands to all of them.
pub(crate) fn expand_trust_domains(values: &[String], trust_domains: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for v in values {
        let expanded: Vec<String> = if trust_domains.contains(v) {
            trust_domains.to_vec()
        } else {
            vec![v.clone()]
        };
        for e in expanded {
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

pub(crate) fn trust_domain_matches(pattern: &StrMatch, id: &SpiffeId) -> bool {
    let td = id.trust_domain().as_str();
    match pattern {
        StrMatch::Presence => true,
        // `spiffe://td/` prefix: the ID must have a path.
        StrMatch::Exact(t) => td == t && !id.path().is_empty(),
        other => other.matches(td),
    }
}

/// RA-7: a request-principal value split into issuer and subject patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPrincipal {
    pub(crate) iss: StrMatch,
    pub(crate) sub: StrMatch,
}

impl RequestPrincipal {
    pub(crate) fn parse(value: &str) -> Self {
        if value == "*" {
            return RequestPrincipal {
                iss: StrMatch::Presence,
                sub: StrMatch::Presence,
            };
        }
        if let Some((iss, sub)) = value.rsplit_once('/') {
            return RequestPrincipal {
                iss: StrMatch::parse(iss),
                sub: StrMatch::parse(sub),
            };
        }
        match StrMatch::parse(value) {
            StrMatch::Suffix(s) => RequestPrincipal {
                iss: StrMatch::Presence,
                sub: StrMatch::Suffix(s),
            },
            StrMatch::Prefix(p) => RequestPrincipal {
                iss: StrMatch::Prefix(p),
                sub: StrMatch::Presence,
            },
            other => RequestPrincipal {
                iss: other,
                sub: StrMatch::Exact(String::new()),
            },
        }
    }

    pub(crate) fn matches(&self, iss: &str, sub: &str) -> bool {
        self.iss.matches(iss) && self.sub.matches(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().expect("test SPIFFE ID parses")
    }

    #[test]
    fn i_3_service_account_shapes() {
        let sa = |s: &str| service_account_matches("foo", "bar", &id(s));
        assert!(sa("spiffe://td/ns/foo/sa/bar"));
        assert!(sa("spiffe://other/ns/foo/x/y/sa/bar/z"));
        assert!(!sa("spiffe://td/ns/foo/sa/barx"));
        assert!(!sa("spiffe://td/ns/foox/sa/bar"));
        assert!(!sa("spiffe://td/ns/foo/xsa/bar"));
    }
}
