//! PEM text for certificates and keys.

use base64::Engine;

fn block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A certificate as PEM.
pub(crate) fn certificate(der: &[u8]) -> String {
    block("CERTIFICATE", der)
}

/// A PKCS#8 private key as PEM.
pub(crate) fn private_key(pkcs8: &[u8]) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(block("PRIVATE KEY", pkcs8))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_blocks_wrap_at_64_columns_and_round_trip() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = super::certificate(&der);
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        let back: Vec<_> = rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<rustls_pki_types::CertificateDer<'_>>, _>>()
            .unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref(), &der[..]);
    }
}
