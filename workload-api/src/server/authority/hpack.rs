//! Just enough HPACK (RFC 7541) to read a client's header blocks and
//! write them again: a decoder that follows the client's dynamic table,
//! and an encoder that writes every field as a literal without indexing
//! (so the receiving decoder's dynamic table is never used).

use std::collections::VecDeque;

use super::huffman;

/// The dynamic table size the server's decoder allows (`SETTINGS_HEADER_
/// TABLE_SIZE`). The server never advertises another value, so the
/// client's encoder stays within the protocol default.
pub(super) const TABLE_SIZE_LIMIT: usize = 4096;

/// Why a header block could not be decoded. Each would be an HPACK
/// `COMPRESSION_ERROR` in the server's own decoder too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HpackError {
    /// The block ended in the middle of a representation.
    #[error("truncated header block")]
    Truncated,
    /// An integer did not fit the limits of a header block.
    #[error("integer overflow in header block")]
    Integer,
    /// An index named no entry of the static or dynamic table.
    #[error("header index {0} is out of range")]
    Index(usize),
    /// A Huffman-coded string was invalid.
    #[error("invalid Huffman code")]
    Huffman,
    /// A dynamic table size update exceeded the limit or came after a field.
    #[error("invalid dynamic table size update")]
    SizeUpdate,
    /// The decoded header list exceeded the bound.
    #[error("header list larger than {0} bytes")]
    TooLarge(usize),
}

/// One header field, as bytes.
pub(super) type Field = (Vec<u8>, Vec<u8>);

/// RFC 7541 Appendix A, indices 1..=61.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Per-entry overhead in the table size accounting (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// The decoder for one connection's client-to-server header blocks.
#[derive(Debug)]
pub(super) struct Decoder {
    table: VecDeque<Field>,
    size: usize,
    max_size: usize,
}

impl Decoder {
    pub(super) fn new() -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: TABLE_SIZE_LIMIT,
        }
    }

    /// Decodes one complete header block. `bound` caps the decoded list
    /// (name + value + 32 per field, as `SETTINGS_MAX_HEADER_LIST_SIZE`
    /// counts it), so indexed references cannot blow a small block up.
    pub(super) fn decode(&mut self, block: &[u8], bound: usize) -> Result<Vec<Field>, HpackError> {
        let mut src = block;
        let mut fields = Vec::new();
        let mut list_size = 0usize;
        while let Some(&first) = src.first() {
            let field = if first & 0x80 != 0 {
                let index = integer(&mut src, 7)?;
                self.entry(index)?
            } else if first & 0x40 != 0 {
                let field = self.literal(&mut src, 6)?;
                self.insert(field.clone());
                field
            } else if first & 0x20 != 0 {
                if !fields.is_empty() {
                    return Err(HpackError::SizeUpdate);
                }
                let size = integer(&mut src, 5)?;
                if size > TABLE_SIZE_LIMIT {
                    return Err(HpackError::SizeUpdate);
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // Without indexing (0000) and never indexed (0001).
                self.literal(&mut src, 4)?
            };
            list_size = list_size.saturating_add(field.0.len() + field.1.len() + ENTRY_OVERHEAD);
            if list_size > bound {
                return Err(HpackError::TooLarge(bound));
            }
            fields.push(field);
        }
        Ok(fields)
    }

    fn entry(&self, index: usize) -> Result<Field, HpackError> {
        match index {
            0 => Err(HpackError::Index(0)),
            1..=61 => STATIC
                .get(index - 1)
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .ok_or(HpackError::Index(index)),
            _ => self
                .table
                .get(index - 62)
                .cloned()
                .ok_or(HpackError::Index(index)),
        }
    }

    fn literal(&self, src: &mut &[u8], prefix: u8) -> Result<Field, HpackError> {
        let index = integer(src, prefix)?;
        let name = if index == 0 {
            string(src)?
        } else {
            self.entry(index)?.0
        };
        let value = string(src)?;
        Ok((name, value))
    }

    fn insert(&mut self, field: Field) {
        let size = field.0.len() + field.1.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // RFC 7541 §4.4: an entry larger than the table empties it.
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front(field);
    }

    /// Evicts the oldest entries until `incoming` more bytes fit.
    fn evict(&mut self, incoming: usize) {
        while self.size + incoming > self.max_size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1), capped
/// well below anything a 64 KiB header block could mean.
fn integer(src: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    const MAX: usize = 1 << 24;
    let (&first, rest) = src.split_first().ok_or(HpackError::Truncated)?;
    *src = rest;
    let mask = (1u16 << prefix) as usize - 1;
    let mut value = usize::from(first) & mask;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let (&b, rest) = src.split_first().ok_or(HpackError::Truncated)?;
        *src = rest;
        value += usize::from(b & 0x7f) << shift;
        if value > MAX {
            return Err(HpackError::Integer);
        }
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(HpackError::Integer);
        }
    }
}

/// An HPACK string literal (RFC 7541 §5.2).
fn string(src: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman = src.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(src, 7)?;
    if len > src.len() {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = src.split_at(len);
    *src = rest;
    if huffman {
        let mut out = Vec::with_capacity(len * 8 / 5);
        huffman::decode(raw, &mut out)?;
        Ok(out)
    } else {
        Ok(raw.to_vec())
    }
}

fn put_integer(out: &mut Vec<u8>, first_bits: u8, prefix: u8, value: usize) {
    let mask = (1u16 << prefix) as usize - 1;
    if value < mask {
        out.push(first_bits | value as u8);
        return;
    }
    out.push(first_bits | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Encodes `fields` as literals without indexing, new name, plain strings.
pub(super) fn encode(fields: &[Field], out: &mut Vec<u8>) {
    for (name, value) in fields {
        out.push(0x00);
        put_integer(out, 0x00, 7, name.len());
        out.extend_from_slice(name);
        put_integer(out, 0x00, 7, value.len());
        out.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn text(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8(n.clone()).unwrap(),
                    String::from_utf8(v.clone()).unwrap(),
                )
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn rfc_7541_c4_requests_with_huffman_and_the_dynamic_table() {
        let mut d = Decoder::new();
        let one = d
            .decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"), 1 << 16)
            .unwrap();
        assert_eq!(
            text(&one),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        let two = d
            .decode(&hex("8286 84be 5886 a8eb 1064 9cbf"), 1 << 16)
            .unwrap();
        assert_eq!(
            text(&two),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        let three = d
            .decode(
                &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
                1 << 16,
            )
            .unwrap();
        assert_eq!(
            text(&three),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(d.size, 164);
    }

    #[test]
    fn rfc_7541_c5_eviction_follows_the_table_size() {
        // C.5 responses with a 256-byte table: the first entry is evicted.
        let mut d = Decoder::new();
        d.max_size = 256;
        d.decode(
            &hex(
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                 6c65 2e63 6f6d",
            ),
            1 << 16,
        )
        .unwrap();
        assert_eq!(d.size, 222);
        let two = d.decode(&hex("4803 3330 37c1 c0bf"), 1 << 16).unwrap();
        assert_eq!(two[0].1, b"307");
        assert_eq!(d.size, 222);
        assert_eq!(d.table.len(), 4);
    }

    #[test]
    fn bad_blocks_are_refused() {
        let mut d = Decoder::new();
        assert_eq!(d.decode(&[0x80], 1 << 16), Err(HpackError::Index(0)));
        assert_eq!(d.decode(&[0xbe], 1 << 16), Err(HpackError::Index(62)));
        assert_eq!(
            d.decode(&[0x40, 0x05, b'a'], 1 << 16),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 1 << 16),
            Err(HpackError::Integer)
        );
        // A size update above the limit, and one after a field.
        assert_eq!(
            d.decode(&[0x3f, 0xe2, 0x1f], 1 << 16),
            Err(HpackError::SizeUpdate)
        );
        assert_eq!(
            d.decode(&[0x82, 0x20], 1 << 16),
            Err(HpackError::SizeUpdate)
        );
    }

    #[test]
    fn indexed_references_cannot_exceed_the_bound() {
        let mut d = Decoder::new();
        let mut block = vec![0x40, 0x01, b'x', 0x7f, 0xa1, 0x1e];
        block.extend(std::iter::repeat_n(b'v', 4000));
        d.decode(&block, 1 << 16).unwrap();
        // 20 one-byte references to the 4 KB entry: 80 KB decoded.
        assert_eq!(
            d.decode(&[0xbe; 20], 1 << 16),
            Err(HpackError::TooLarge(1 << 16))
        );
    }

    #[test]
    fn encoded_fields_decode_to_themselves() {
        let fields: Vec<Field> = vec![
            (b":authority".to_vec(), b"localhost".to_vec()),
            (b"x".to_vec(), vec![b'y'; 300]),
        ];
        let mut out = Vec::new();
        encode(&fields, &mut out);
        let mut d = Decoder::new();
        assert_eq!(d.decode(&out, 1 << 16).unwrap(), fields);
        assert!(d.table.is_empty());
    }
}
