//! Path templates with `{*}` and `{**}` (M-8).

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// `{*}`: exactly one non-empty segment.
    Segment,
    /// `{**}`: zero or more characters, `/` included.
    Rest,
}

/// A validated path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    pieces: Vec<Piece>,
}

/// Whether a value is a template rather than a plain M-1 pattern.
pub(crate) fn is_template(value: &str) -> bool {
    value.contains("{*}") || value.contains("{**}")
}

fn is_pchar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'%'
        )
}

impl PathTemplate {
    /// Parses and validates a template; the error says which M-8 rule broke.
    pub(crate) fn parse(value: &str) -> Result<Self, &'static str> {
        let Some(rest) = value.strip_prefix('/') else {
            return Err("a path template must start with `/`");
        };
        let mut pieces = Vec::new();
        let mut literal = String::from("/");
        let mut seen_rest = false;
        let segments: Vec<&str> = rest.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 {
                literal.push('/');
            }
            match *seg {
                "{*}" | "{**}" => {
                    if seen_rest {
                        return Err("`{**}` must be the last operator");
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    if *seg == "{**}" {
                        seen_rest = true;
                        pieces.push(Piece::Rest);
                    } else {
                        pieces.push(Piece::Segment);
                    }
                }
                s if s.contains(['*', '{', '}']) => {
                    return Err("an operator must fill its whole segment; no other `*`, `{`, `}`");
                }
                s if !s.bytes().all(is_pchar_byte) || !valid_percent(s) => {
                    return Err("a literal segment must be RFC 3986 pchar");
                }
                s => literal.push_str(s),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(PathTemplate { pieces })
    }

    /// Matches a normalised path without query.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match_pieces(&self.pieces, path)
    }
}

fn valid_percent(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn match_pieces(pieces: &[Piece], path: &str) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return path.is_empty();
    };
    match first {
        Piece::Literal(lit) => path
            .strip_prefix(lit.as_str())
            .is_some_and(|p| match_pieces(rest, p)),
        Piece::Segment => {
            let end = path.find('/').unwrap_or(path.len());
            end > 0 && match_pieces(rest, &path[end..])
        }
        // `{**}` is the last operator: only a literal (or nothing) follows.
        Piece::Rest => match rest {
            [] => true,
            [Piece::Literal(lit)] => path.ends_with(lit.as_str()),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::PathTemplate;

    fn t(s: &str) -> PathTemplate {
        PathTemplate::parse(s).unwrap_or(PathTemplate { pieces: vec![] })
    }

    #[test]
    fn m_8_observed_behaviour() {
        let a = t("/allow/admin/{**}");
        assert!(a.matches("/allow/admin/"));
        assert!(a.matches("/allow/admin/foo/temp.txt"));
        assert!(!a.matches("/allow/admin"));
        let b = t("/foo/{*}/bar/{**}");
        assert!(b.matches("/foo/buzz/bar/bat"));
        assert!(!b.matches("/foo//bar/x"));
        assert!(!b.matches("/foo/a/b/bar/x"));
        let c = t("/store/{**}/cart");
        assert!(c.matches("/store//cart"));
        assert!(c.matches("/store/a/b/cart"));
        assert!(!c.matches("/store/cart"));
        let d = t("/foo/{**}/");
        assert!(!d.matches("/foo/bar/baz.txt"));
    }

    #[test]
    fn m_8_invalid_templates() {
        assert!(PathTemplate::parse("/foo/{*}.txt").is_err());
        assert!(PathTemplate::parse("/foo/{**}/{*}").is_err());
        assert!(PathTemplate::parse("/foo/{**}/{**}").is_err());
        assert!(PathTemplate::parse("/foo*/{*}").is_err());
        assert!(PathTemplate::parse("/fo o/{*}").is_err());
        assert!(PathTemplate::parse("/a/{*}/b/{**}").is_ok());
    }
}
