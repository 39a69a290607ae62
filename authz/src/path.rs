//! HTTP path normalisation as a sidecar does it by default (M-9, `BASE`).

/// The request path could not be normalised; the sidecar answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    /// `%00` in the path.
    EncodedNul,
    /// The path does not start with `/`.
    NotAbsolute,
}

/// Returns the normalised path with query and fragment removed (what the
/// matchers see). Decodes only the unreserved characters listed in M-9,
/// once; turns `\` into `/`; resolves `.` and `..`. Does not merge `//`,
/// decode `%2F`/`%5C`, or change case.
pub(crate) fn normalize(raw: &str) -> Result<String, PathError> {
    normalize_cow(raw).map(std::borrow::Cow::into_owned)
}

/// [`normalize`], borrowing `raw`'s path when it is already normal.
pub(crate) fn normalize_cow(raw: &str) -> Result<std::borrow::Cow<'_, str>, PathError> {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = &raw[..end];
    if already_normal(path) {
        return Ok(std::borrow::Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let slashed = decoded.replace('\\', "/");
    if !slashed.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    Ok(std::borrow::Cow::Owned(remove_dot_segments(&slashed)))
}

/// Whether normalising `path` would give it back unchanged: absolute, no
/// `%` (nothing to decode), no backslash, no `.` or `..` segment. Most
/// paths are, and this check allocates nothing.
fn already_normal(path: &str) -> bool {
    path.starts_with('/')
        && !path.bytes().any(|b| b == b'%' || b == b'\\')
        && !path.split('/').any(|s| s == "." || s == "..")
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let c = h * 16 + l;
            if c == 0 {
                return Err(PathError::EncodedNul);
            }
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(c));
                i += 3;
                continue;
            }
        }
        // Copy one UTF-8 character.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    Ok(out)
}

/// RFC 3986 section 5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                output.pop();
                trailing_slash = i == last;
            }
            s => {
                output.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &output {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{PathError, normalize};

    #[test]
    fn m_9_base_normalisation() {
        let n = |s: &str| normalize(s).unwrap_or_else(|e| format!("{e:?}"));
        assert_eq!(n("/a/b?x=1"), "/a/b");
        assert_eq!(n("/a/b#frag"), "/a/b");
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/%2e%2E/admin"), "/admin");
        assert_eq!(n("/public/../admin"), "/admin");
        assert_eq!(n("/public/./admin/."), "/public/admin/");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a\\b"), "/a/b");
        // Not decoded or merged by default.
        assert_eq!(n("/a%2Fb"), "/a%2Fb");
        assert_eq!(n("/a%5cb"), "/a%5cb");
        assert_eq!(n("/a//b"), "/a//b");
        assert_eq!(n("/Admin"), "/Admin");
        assert_eq!(n("/%41"), "/A");
        assert_eq!(n("/%7e%5f"), "/~_");
        assert_eq!(n("/%"), "/%");
        assert_eq!(n("/%4"), "/%4");
        assert_eq!(n("/ü/%zz"), "/ü/%zz");
        assert_eq!(normalize("/a%00"), Err(PathError::EncodedNul));
        assert_eq!(n(""), "NotAbsolute");
        assert_eq!(n("/"), "/");
        assert_eq!(n("/.."), "/");
    }

    /// The full algorithm, without the shortcut for paths already normal.
    fn normalize_in_full(raw: &str) -> Result<String, PathError> {
        let end = raw.find(['?', '#']).unwrap_or(raw.len());
        let slashed = super::decode_unreserved(&raw[..end])?.replace('\\', "/");
        if !slashed.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        Ok(super::remove_dot_segments(&slashed))
    }

    #[test]
    fn m_9_the_shortcut_for_normal_paths_agrees_with_the_full_algorithm() {
        // Every string of up to six characters over an alphabet that can
        // form dot segments, escapes, backslashes, queries and empty
        // segments: 8^0 + ... + 8^6 inputs.
        let alphabet = ['/', 'a', '.', '%', '2', 'e', '\\', '?'];
        let mut inputs = vec![String::new()];
        let mut all = vec![String::new()];
        for _ in 0..6 {
            inputs = inputs
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            all.extend(inputs.iter().cloned());
        }
        let mut shortcut = 0;
        for raw in &all {
            assert_eq!(normalize(raw), normalize_in_full(raw), "{raw:?}");
            let end = raw.find(['?', '#']).unwrap_or(raw.len());
            shortcut += usize::from(super::already_normal(&raw[..end]));
        }
        // Both branches were taken, many times.
        assert!(shortcut > 1000 && shortcut < all.len() - 1000, "{shortcut}");
    }
}
