//! The byte-level grammar of SPIFFE IDs: one pass, a lookup table per charset.

use super::IdError;

/// `spiffe://`, the only prefix a SPIFFE ID can have.
pub(crate) const PREFIX: &str = "spiffe://";

const TD: u8 = 1;
const PATH: u8 = 2;
const UPPER: u8 = 4;

/// Class bits for every byte: which charset admits it.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let v = match c {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => TD | PATH,
            b'A'..=b'Z' => PATH | UPPER,
            _ => 0,
        };
        t[b] = v;
        b += 1;
    }
    t
};

/// What the trust-domain scan found.
pub(crate) struct Authority {
    /// End of the trust domain (exclusive), as a byte offset into the input.
    pub(crate) end: usize,
    /// Whether any byte needs lowercasing.
    pub(crate) has_upper: bool,
}

/// Checks the scheme case-insensitively and returns the offset after `://`.
pub(crate) fn scheme(input: &str) -> Result<usize, IdError> {
    let bytes = input.as_bytes();
    if bytes.is_empty() {
        return Err(IdError::Empty);
    }
    if bytes.len() >= PREFIX.len() && bytes[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
    {
        return Ok(PREFIX.len());
    }
    if input.contains("://") || input.starts_with("spiffe:") || input.starts_with("SPIFFE:") {
        Err(IdError::WrongScheme)
    } else {
        Err(IdError::MissingScheme)
    }
}

/// Scans the trust domain starting at `start`, up to the first `/` or the end.
pub(crate) fn authority(input: &str, start: usize) -> Result<Authority, IdError> {
    let bytes = input.as_bytes();
    let mut has_upper = false;
    let mut i = start;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'/' {
            break;
        }
        let class = CLASS[c as usize];
        if class & TD == 0 {
            if class & UPPER != 0 {
                has_upper = true;
            } else {
                return Err(td_char_error(c, i));
            }
        }
        i += 1;
    }
    let len = i - start;
    if len == 0 {
        return Err(IdError::EmptyTrustDomain);
    }
    if len > super::MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong { len });
    }
    Ok(Authority { end: i, has_upper })
}

/// Validates a path (empty, or `/seg/seg...`) occupying `input[start..]`.
pub(crate) fn path(input: &str, start: usize) -> Result<(), IdError> {
    let bytes = input.as_bytes();
    if start == bytes.len() {
        return Ok(());
    }
    if bytes[start] != b'/' {
        return Err(IdError::RelativePath);
    }
    let mut seg_start = start + 1;
    let mut i = seg_start;
    loop {
        if i == bytes.len() || bytes[i] == b'/' {
            let seg = &bytes[seg_start..i];
            match seg {
                b"" if i == bytes.len() => return Err(IdError::TrailingSlash),
                b"" => return Err(IdError::EmptySegment),
                b"." | b".." => return Err(IdError::DotSegment),
                _ => {}
            }
            if i == bytes.len() {
                return Ok(());
            }
            seg_start = i + 1;
        } else if CLASS[bytes[i] as usize] & PATH == 0 {
            return Err(path_char_error(bytes[i], i));
        }
        i += 1;
    }
}

fn td_char_error(byte: u8, position: usize) -> IdError {
    match byte {
        b'@' => IdError::Userinfo,
        b':' => IdError::Port,
        _ => {
            common_char_error(byte, position).unwrap_or(IdError::TrustDomainChar { byte, position })
        }
    }
}

fn path_char_error(byte: u8, position: usize) -> IdError {
    common_char_error(byte, position).unwrap_or(IdError::PathChar { byte, position })
}

fn common_char_error(byte: u8, position: usize) -> Option<IdError> {
    match byte {
        b'%' => Some(IdError::PercentEncoded { position }),
        b'?' => Some(IdError::Query { position }),
        b'#' => Some(IdError::Fragment { position }),
        _ => None,
    }
}
