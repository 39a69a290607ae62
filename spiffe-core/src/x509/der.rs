//! Splitting a plain concatenation of DER certificates, as the Workload API
//! sends chains and bundles.

use super::X509Error;

/// Splits `input` into successive DER `SEQUENCE`s (tag, length, contents).
pub(crate) fn split_der_sequence(input: &[u8]) -> Result<Vec<&[u8]>, X509Error> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let len = element_len(rest).ok_or(X509Error::Malformed {
            index: out.len(),
            reason: "truncated or invalid DER element".into(),
        })?;
        let (item, tail) = rest.split_at(len);
        out.push(item);
        rest = tail;
    }
    Ok(out)
}

/// Total length (header included) of the DER SEQUENCE at the start of `input`.
fn element_len(input: &[u8]) -> Option<usize> {
    let (&tag, rest) = input.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (content_len, header_len) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    let total = header_len.checked_add(content_len)?;
    (total <= input.len()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_concatenated_sequences() {
        let a = [0x30, 0x01, 0xAA];
        let b = [0x30, 0x81, 0x02, 0xBB, 0xCC];
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        let parts = split_der_sequence(&both).unwrap();
        assert_eq!(parts, vec![&a[..], &b[..]]);
    }

    #[test]
    fn rejects_truncated_and_non_sequence_input() {
        assert!(split_der_sequence(&[0x30, 0x05, 0x00]).is_err());
        assert!(split_der_sequence(&[0x02, 0x01, 0x00]).is_err());
        assert!(split_der_sequence(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(split_der_sequence(&[0x30]).is_err());
        assert_eq!(split_der_sequence(&[]).unwrap().len(), 0);
    }
}
