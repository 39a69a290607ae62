//! The HPACK Huffman code (RFC 7541 Appendix B), decoding only.
//!
//! The code is canonical: codes are assigned in order of (length, symbol),
//! so the table below holds only each symbol's code length, and the codes
//! follow from it.

use super::hpack::HpackError;

/// Code length in bits of each symbol 0..=255 and of EOS (256),
/// RFC 7541 Appendix B.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
    30, // EOS
];

const EOS: u16 = 256;
const MAX_LEN: usize = 30;

/// The canonical decoding tables: for each code length, the first code of
/// that length, how many codes have it, and where its symbols start in the
/// symbols sorted by (length, symbol).
struct Canonical {
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    offset: [u32; MAX_LEN + 1],
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut count = [0u32; MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[CODE_LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut first = [0u32; MAX_LEN + 1];
    let mut offset = [0u32; MAX_LEN + 1];
    let mut code = 0u32;
    let mut seen = 0u32;
    let mut len = 1;
    while len <= MAX_LEN {
        first[len] = code;
        offset[len] = seen;
        code = (code + count[len]) << 1;
        seen += count[len];
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = offset;
    let mut s = 0;
    while s < 257 {
        let l = CODE_LENGTHS[s] as usize;
        symbols[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    Canonical {
        first,
        count,
        offset,
        symbols,
    }
}

static TABLE: Canonical = canonical();

/// Decodes a Huffman-coded string. Padding must be fewer than 8 bits, all
/// ones (the EOS prefix); an encoded EOS is an error (RFC 7541 §5.2).
pub(super) fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let t = &TABLE;
    let mut code = 0u32;
    let mut len = 0usize;
    for byte in src {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if len > MAX_LEN {
                return Err(HpackError::Huffman);
            }
            let (Some(first), Some(count), Some(offset)) =
                (t.first.get(len), t.count.get(len), t.offset.get(len))
            else {
                return Err(HpackError::Huffman);
            };
            if *count > 0 && code >= *first && code - first < *count {
                let sym = t
                    .symbols
                    .get((offset + code - first) as usize)
                    .copied()
                    .ok_or(HpackError::Huffman)?;
                if sym == EOS {
                    return Err(HpackError::Huffman);
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
            }
        }
    }
    // Leftover bits: at most 7, all ones.
    if len >= 8 || code != (1u32 << len) - 1 {
        return Err(HpackError::Huffman);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn dec(h: &str) -> Result<Vec<u8>, HpackError> {
        let mut out = Vec::new();
        decode(&hex(h), &mut out).map(|()| out)
    }

    #[test]
    fn rfc_7541_c4_strings_decode() {
        assert_eq!(dec("f1e3c2e5f23a6ba0ab90f4ff").unwrap(), b"www.example.com");
        assert_eq!(dec("a8eb10649cbf").unwrap(), b"no-cache");
        assert_eq!(dec("25a849e95ba97d7f").unwrap(), b"custom-key");
        assert_eq!(dec("25a849e95bb8e8b4bf").unwrap(), b"custom-value");
        // C.6.1: a date with digits and punctuation.
        assert_eq!(
            dec("d07abe941054d444a8200595040b8166e082a62d1bff").unwrap(),
            b"Mon, 21 Oct 2013 20:13:21 GMT"
        );
    }

    #[test]
    fn padding_must_be_short_and_all_ones() {
        // "a" is 00011 (5 bits): 000111 11 is valid, 00011 000 is not.
        assert_eq!(dec("1f").unwrap(), b"a");
        assert!(matches!(dec("18"), Err(HpackError::Huffman)));
        // A full byte of padding is refused.
        assert!(matches!(dec("1fff"), Err(HpackError::Huffman)));
        // EOS itself (30 ones) is refused.
        assert!(matches!(dec("ffffffff"), Err(HpackError::Huffman)));
    }

    #[test]
    fn every_length_class_is_canonical() {
        // The lengths describe a complete prefix code: Kraft sum exactly 1.
        let sum: u64 = CODE_LENGTHS.iter().map(|l| 1u64 << (30 - l)).sum();
        assert_eq!(sum, 1 << 30);
    }
}
