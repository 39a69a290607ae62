//! A minimal strict DER reader: just enough to walk certificates and the
//! Workload API's concatenated DER encodings. Every read is bounds-checked;
//! nothing here can panic on input.

use super::X509Error;

/// Tags used by the certificate walker.
pub(crate) mod tag {
    pub(crate) const BOOLEAN: u8 = 0x01;
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTC_TIME: u8 = 0x17;
    pub(crate) const GENERALIZED_TIME: u8 = 0x18;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const EXPLICIT_0: u8 = 0xA0;
    pub(crate) const IMPLICIT_1: u8 = 0x81;
    pub(crate) const IMPLICIT_2: u8 = 0x82;
    pub(crate) const EXPLICIT_3: u8 = 0xA3;
    pub(crate) const URI_NAME: u8 = 0x86;
}

/// A cursor over DER elements.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element: (tag, contents, whole element including header).
    pub(crate) fn any(&mut self) -> Option<(u8, &'a [u8], &'a [u8])> {
        let input = self.rest;
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags never occur in certificates
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(n);
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (value, tail) = rest.split_at(len);
        let whole = &input[..input.len() - tail.len()];
        self.rest = tail;
        Some((tag, value, whole))
    }

    /// Reads one element that must have `expected` as its tag.
    pub(crate) fn expect(&mut self, expected: u8) -> Option<&'a [u8]> {
        match self.any()? {
            (t, v, _) if t == expected => Some(v),
            _ => None,
        }
    }

    /// Reads an element with tag `t` if it comes next.
    pub(crate) fn optional(&mut self, t: u8) -> Option<Option<&'a [u8]>> {
        if self.peek_tag() == Some(t) {
            self.expect(t).map(Some)
        } else {
            Some(None)
        }
    }

    /// Reads a BIT STRING: (unused bits in the last byte, the bytes). The
    /// unused-bits count must be 0 to 7, 0 when there are no bytes, and
    /// the unused bits themselves zero (X.690 §11.2.1).
    pub(crate) fn bit_string(&mut self) -> Option<(u8, &'a [u8])> {
        let (&unused, bytes) = self.expect(super::tag::BIT_STRING)?.split_first()?;
        let valid = match bytes.last() {
            None => unused == 0,
            Some(last) => unused <= 7 && last & ((1u8 << unused) - 1) == 0,
        };
        valid.then_some((unused, bytes))
    }

    /// Reads an OBJECT IDENTIFIER whose encoding is valid DER: at least one
    /// byte, every sub-identifier minimal (no leading 0x80) and terminated
    /// (the last byte has its high bit clear).
    pub(crate) fn oid(&mut self) -> Option<&'a [u8]> {
        self.expect(super::tag::OID).filter(|v| valid_oid(v))
    }

    /// [`Reader::oid`], if an OID comes next.
    pub(crate) fn optional_oid(&mut self) -> Option<Option<&'a [u8]>> {
        match self.optional(super::tag::OID)? {
            Some(v) if !valid_oid(v) => None,
            other => Some(other),
        }
    }
}

pub(crate) fn valid_oid(v: &[u8]) -> bool {
    let Some(last) = v.last() else {
        return false;
    };
    let mut start = true;
    for &b in v {
        if start && b == 0x80 {
            return false;
        }
        start = b & 0x80 == 0;
    }
    last & 0x80 == 0
}

/// Splits `input` into successive DER `SEQUENCE`s, as the Workload API
/// concatenates certificates.
pub(crate) fn split_der_sequence(input: &[u8]) -> Result<Vec<&[u8]>, X509Error> {
    let mut out = Vec::new();
    let mut r = Reader::new(input);
    while !r.is_empty() {
        match r.any() {
            Some((tag::SEQUENCE, _, whole)) => out.push(whole),
            _ => {
                return Err(X509Error::Malformed {
                    index: out.len(),
                    reason: "truncated or invalid DER element".into(),
                });
            }
        }
    }
    Ok(out)
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
        assert!(split_der_sequence(&[0x30, 0x80]).is_err());
        assert!(split_der_sequence(&[0x30]).is_err());
        assert!(split_der_sequence(&[0x1f, 0x01, 0x00]).is_err());
        assert_eq!(split_der_sequence(&[]).unwrap().len(), 0);
    }

    #[test]
    fn oids_must_be_minimal_and_terminated() {
        assert!(valid_oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]));
        assert!(!valid_oid(&[]));
        assert!(!valid_oid(&[0xff; 7]), "never terminated");
        assert!(
            !valid_oid(&[0x2a, 0x80, 0x01]),
            "non-minimal sub-identifier"
        );
        assert!(!valid_oid(&[0x80, 0x01]), "non-minimal first arc");
    }

    #[test]
    fn bit_strings_carry_a_valid_unused_bits_count() {
        fn read(der: &[u8]) -> Option<(u8, &[u8])> {
            Reader::new(der).bit_string()
        }
        assert_eq!(read(&[0x03, 0x02, 0x05, 0xa0]), Some((5, &[0xa0u8][..])));
        assert_eq!(read(&[0x03, 0x02, 0x05, 0xa1]), None, "an unused bit set");
        assert_eq!(read(&[0x03, 0x01, 0x00]), Some((0, &[][..])));
        assert_eq!(
            read(&[0x03, 0x02, 0x80, 0x04]),
            None,
            "more than 7 unused bits"
        );
        assert_eq!(read(&[0x03, 0x01, 0x03]), None, "unused bits without bytes");
        assert_eq!(read(&[0x03, 0x00]), None, "no unused-bits byte");
    }

    #[test]
    fn optional_elements() {
        let mut r = Reader::new(&[0x02, 0x01, 0x05, 0x04, 0x00]);
        assert_eq!(r.optional(0xA0), Some(None));
        assert_eq!(r.optional(0x02), Some(Some(&[5u8][..])));
        assert_eq!(r.expect(0x04), Some(&[][..]));
        assert!(r.is_empty());
        assert_eq!(r.expect(0x04), None);
    }
}
