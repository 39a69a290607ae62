//! The X509-SVID certificate rules, on certificates parsed by x509-parser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::X509Error;
use crate::SpiffeId;

/// Parses one DER certificate, reporting `index` on failure.
pub(crate) fn parse(der: &[u8], index: usize) -> Result<X509Certificate<'_>, X509Error> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(X509Error::Malformed {
            index,
            reason: "trailing bytes after certificate".into(),
        }),
        Err(e) => Err(X509Error::Malformed {
            index,
            reason: e.to_string(),
        }),
    }
}

fn malformed(index: usize, e: impl std::fmt::Display) -> X509Error {
    X509Error::Malformed {
        index,
        reason: e.to_string(),
    }
}

/// The URI SANs of a certificate, with whether the SAN extension is critical.
fn uri_sans<'a>(
    cert: &'a X509Certificate<'_>,
    index: usize,
) -> Result<(Vec<&'a str>, bool), X509Error> {
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| malformed(index, e))?
    else {
        return Ok((Vec::new(), false));
    };
    let uris = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    Ok((uris, san.critical))
}

/// The SPIFFE ID named by a leaf (X509-1): exactly one URI SAN, a valid ID.
pub(crate) fn leaf_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, X509Error> {
    let (uris, critical) = uri_sans(cert, 0)?;
    let uri = match uris.as_slice() {
        [] => return Err(X509Error::NoUriSan),
        [one] => *one,
        many => return Err(X509Error::MultipleUriSans { count: many.len() }),
    };
    if cert.subject().iter().next().is_none() && !critical {
        return Err(X509Error::SanNotCritical);
    }
    uri.parse().map_err(X509Error::InvalidSpiffeId)
}

/// Leaf rules for authentication (X509-7 and the leaf column of table 2.2).
pub(crate) fn check_leaf(cert: &X509Certificate<'_>, id: &SpiffeId) -> Result<(), X509Error> {
    if id.is_root() {
        return Err(X509Error::RootPathLeaf { id: id.to_string() });
    }
    let bc = cert.basic_constraints().map_err(|e| malformed(0, e))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(X509Error::LeafIsCa);
    }
    let Some(ku) = cert.key_usage().map_err(|e| malformed(0, e))? else {
        return Err(X509Error::LeafNoKeyUsage);
    };
    if ku.value.key_cert_sign() {
        return Err(X509Error::LeafKeyCertSign);
    }
    if ku.value.crl_sign() {
        return Err(X509Error::LeafCrlSign);
    }
    if !ku.value.digital_signature() {
        return Err(X509Error::LeafNoDigitalSignature);
    }
    if let Some(eku) = cert.extended_key_usage().map_err(|e| malformed(0, e))? {
        let eku = eku.value;
        if !(eku.any || eku.server_auth && eku.client_auth) {
            return Err(X509Error::LeafEku);
        }
    }
    Ok(())
}

/// Rules for a signing certificate presented in a chain (X509-4).
pub(crate) fn check_signing(cert: &X509Certificate<'_>, index: usize) -> Result<(), X509Error> {
    let bc = cert.basic_constraints().map_err(|e| malformed(index, e))?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err(X509Error::SigningCertNotCa { index });
    }
    let ku = cert.key_usage().map_err(|e| malformed(index, e))?;
    if !ku.is_some_and(|ku| ku.value.key_cert_sign()) {
        return Err(X509Error::SigningCertNoKeyCertSign { index });
    }
    let (uris, _) = uri_sans(cert, index)?;
    for uri in uris {
        if let Ok(id) = uri.parse::<SpiffeId>()
            && !id.is_root()
        {
            return Err(X509Error::SigningCertIdHasPath { index });
        }
    }
    Ok(())
}

/// The certificate's notAfter as a `SystemTime`.
pub(crate) fn not_after(cert: &X509Certificate<'_>) -> SystemTime {
    let secs = cert.validity().not_after.timestamp();
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}
