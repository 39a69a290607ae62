//! The X509-SVID certificate rules, applied to what [`super::cert`] reads.

use super::X509Error;
use super::cert::{CertInfo, ku};
use crate::SpiffeId;

/// The SPIFFE ID named by a leaf (X509-1, X509-3): exactly one URI SAN, a
/// valid ID, and a critical SAN extension when the subject is empty.
pub(crate) fn leaf_id(cert: &CertInfo<'_>) -> Result<SpiffeId, X509Error> {
    let uri = match cert.uris.as_slice() {
        [] => return Err(X509Error::NoUriSan),
        [one] => *one,
        many => return Err(X509Error::MultipleUriSans { count: many.len() }),
    };
    if cert.subject_empty && !cert.san_critical {
        return Err(X509Error::SanNotCritical);
    }
    uri.parse().map_err(X509Error::InvalidSpiffeId)
}

/// Leaf rules for authentication (X509-7 and the leaf column of table 2.2).
pub(crate) fn check_leaf(cert: &CertInfo<'_>, id: &SpiffeId) -> Result<(), X509Error> {
    if id.is_root() {
        return Err(X509Error::RootPathLeaf { id: id.to_string() });
    }
    if cert.is_ca {
        return Err(X509Error::LeafIsCa);
    }
    let Some(bits) = cert.key_usage else {
        return Err(X509Error::LeafNoKeyUsage);
    };
    if bits & ku::KEY_CERT_SIGN != 0 {
        return Err(X509Error::LeafKeyCertSign);
    }
    if bits & ku::CRL_SIGN != 0 {
        return Err(X509Error::LeafCrlSign);
    }
    if bits & ku::DIGITAL_SIGNATURE == 0 {
        return Err(X509Error::LeafNoDigitalSignature);
    }
    if let Some(eku) = cert.eku
        && !(eku.any || eku.server_auth && eku.client_auth)
    {
        return Err(X509Error::LeafEku);
    }
    Ok(())
}

/// Rules for a signing certificate in a chain (X509-4, table 2.2).
pub(crate) fn check_signing(cert: &CertInfo<'_>, index: usize) -> Result<(), X509Error> {
    if !cert.is_ca {
        return Err(X509Error::SigningCertNotCa { index });
    }
    if cert
        .key_usage
        .is_none_or(|bits| bits & ku::KEY_CERT_SIGN == 0)
    {
        return Err(X509Error::SigningCertNoKeyCertSign { index });
    }
    for uri in &cert.uris {
        if let Ok(id) = uri.parse::<SpiffeId>()
            && !id.is_root()
        {
            return Err(X509Error::SigningCertIdHasPath { index });
        }
    }
    Ok(())
}
