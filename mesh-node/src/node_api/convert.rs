//! Registration entries between the domain type and the wire.

use std::time::Duration;

use spiffe_core::{EntryId, Selector, SpiffeId, TrustDomain};
use svid_ca::RegistrationEntry;

use crate::proto;

/// The wire form of an entry.
pub(crate) fn entry_to_proto(e: &RegistrationEntry) -> proto::Entry {
    proto::Entry {
        id: e.id.to_string(),
        spiffe_id: e.spiffe_id.to_string(),
        parent_id: e.parent_id.to_string(),
        selectors: e.selectors.iter().map(ToString::to_string).collect(),
        x509_svid_ttl_seconds: e.x509_svid_ttl.map_or(0, |d| d.as_secs()),
        jwt_svid_ttl_seconds: e.jwt_svid_ttl.map_or(0, |d| d.as_secs()),
        dns_names: e.dns_names.clone(),
        federates_with: e.federates_with.iter().map(ToString::to_string).collect(),
        admin: e.admin,
        hint: e.hint.clone().unwrap_or_default(),
    }
}

/// The entry a wire message describes; every field is parsed with the
/// same rules the server applied.
pub(crate) fn entry_from_proto(p: proto::Entry) -> Result<RegistrationEntry, String> {
    let spiffe_id: SpiffeId = p
        .spiffe_id
        .parse()
        .map_err(|e| format!("entry {}: spiffe_id: {e}", p.id))?;
    let parent_id: SpiffeId = p
        .parent_id
        .parse()
        .map_err(|e| format!("entry {}: parent_id: {e}", p.id))?;
    let selectors = p
        .selectors
        .iter()
        .map(|s| s.parse::<Selector>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("entry {}: selector: {e}", p.id))?;
    let federates_with = p
        .federates_with
        .iter()
        .map(|s| s.parse::<TrustDomain>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("entry {}: federates_with: {e}", p.id))?;
    let id: EntryId = p.id.parse().map_err(|e| format!("entry id: {e}"))?;
    let mut entry = RegistrationEntry::new(spiffe_id, parent_id, selectors)
        .map_err(|e| format!("entry {id}: {e}"))?;
    entry.id = id;
    entry.x509_svid_ttl = ttl(p.x509_svid_ttl_seconds);
    entry.jwt_svid_ttl = ttl(p.jwt_svid_ttl_seconds);
    entry.dns_names = p.dns_names;
    entry.federates_with = federates_with;
    entry.admin = p.admin;
    entry.hint = Some(p.hint).filter(|h| !h.is_empty());
    Ok(entry)
}

/// The wire form of an endpoint.
pub(crate) fn endpoint_to_proto(e: &crate::discovery::Endpoint) -> proto::Endpoint {
    proto::Endpoint {
        service: e.service.clone(),
        namespace: e.namespace.clone(),
        address: e.address.clone(),
        port: u32::from(e.port),
        protocol: e.protocol.clone(),
        spiffe_id: e.spiffe_id.to_string(),
        labels: e
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The endpoint a wire message describes.
pub(crate) fn endpoint_from_proto(
    p: proto::Endpoint,
) -> Result<crate::discovery::Endpoint, String> {
    Ok(crate::discovery::Endpoint {
        port: u16::try_from(p.port).map_err(|_| format!("port {} out of range", p.port))?,
        spiffe_id: p
            .spiffe_id
            .parse()
            .map_err(|e| format!("endpoint spiffe_id: {e}"))?,
        service: p.service,
        namespace: p.namespace,
        address: p.address,
        protocol: p.protocol,
        labels: p.labels.into_iter().collect(),
    })
}

/// The wire form of a policy set.
pub(crate) fn policy_to_proto(b: &crate::policy_feed::PolicyBundle) -> proto::PolicySet {
    proto::PolicySet {
        version: b.version,
        files: b
            .files
            .iter()
            .map(|f| proto::PolicyFile {
                name: f.name.clone(),
                yaml: f.yaml.clone(),
            })
            .collect(),
    }
}

/// A policy set from the wire.
pub(crate) fn policy_from_proto(p: proto::PolicySet) -> crate::policy_feed::PolicyBundle {
    crate::policy_feed::PolicyBundle {
        version: p.version,
        files: p
            .files
            .into_iter()
            .map(|f| crate::policy_feed::PolicyFile {
                name: f.name,
                yaml: f.yaml,
            })
            .collect(),
    }
}

fn ttl(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_the_wire() {
        let mut e = RegistrationEntry::new(
            "spiffe://example.org/web".parse().unwrap(),
            "spiffe://example.org/node/a".parse().unwrap(),
            vec!["unix:uid:1000".parse().unwrap()],
        )
        .unwrap();
        e.x509_svid_ttl = Some(Duration::from_secs(600));
        e.dns_names = vec!["web.local".into()];
        e.federates_with = vec!["partner.org".parse().unwrap()];
        e.hint = Some("internal".into());
        e.admin = true;
        let back = entry_from_proto(entry_to_proto(&e)).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn malformed_wire_entries_are_refused_with_the_field() {
        let mut p = entry_to_proto(
            &RegistrationEntry::new(
                "spiffe://example.org/web".parse().unwrap(),
                "spiffe://example.org/node/a".parse().unwrap(),
                vec!["unix:uid:1000".parse().unwrap()],
            )
            .unwrap(),
        );
        p.selectors = vec!["no-colon".into()];
        let err = entry_from_proto(p.clone()).unwrap_err();
        assert!(err.contains("selector"), "{err}");
        p.selectors = vec!["unix:uid:1".into()];
        p.spiffe_id = "http://x".into();
        let err = entry_from_proto(p.clone()).unwrap_err();
        assert!(err.contains("spiffe_id"), "{err}");
        p.spiffe_id = "spiffe://example.org/web".into();
        p.id = "bad id!".into();
        let err = entry_from_proto(p).unwrap_err();
        assert!(err.contains("entry id"), "{err}");
    }
}
