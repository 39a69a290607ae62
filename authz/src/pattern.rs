//! String patterns (M-1): exact, `prefix*`, `*suffix` and the presence `*`.

/// A compiled M-1 string pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: the attribute is present (see M-2 for what "present" means).
    Presence,
}

impl StrMatch {
    /// Parses a pattern: only one leading or one trailing `*` is special.
    pub(crate) fn parse(value: &str) -> Self {
        if value == "*" {
            StrMatch::Presence
        } else if let Some(rest) = value.strip_prefix('*') {
            StrMatch::Suffix(rest.to_owned())
        } else if let Some(rest) = value.strip_suffix('*') {
            StrMatch::Prefix(rest.to_owned())
        } else {
            StrMatch::Exact(value.to_owned())
        }
    }

    /// Lowercases the pattern (for case-insensitive fields such as hosts).
    pub(crate) fn lowercase(self) -> Self {
        match self {
            StrMatch::Exact(s) => StrMatch::Exact(s.to_ascii_lowercase()),
            StrMatch::Prefix(s) => StrMatch::Prefix(s.to_ascii_lowercase()),
            StrMatch::Suffix(s) => StrMatch::Suffix(s.to_ascii_lowercase()),
            StrMatch::Presence => StrMatch::Presence,
        }
    }

    /// Matches a value; presence requires a non-empty value (regex `.+`).
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(s) => value == s,
            StrMatch::Prefix(s) => value.starts_with(s.as_str()),
            StrMatch::Suffix(s) => value.ends_with(s.as_str()),
            StrMatch::Presence => !value.is_empty(),
        }
    }

    /// Matches a value where presence only needs the attribute to exist,
    /// even empty (hosts, methods, headers; M-2).
    pub(crate) fn matches_present(&self, value: &str) -> bool {
        match self {
            StrMatch::Presence => true,
            other => other.matches(value),
        }
    }

    /// The exact string, when the pattern is an exact match.
    pub(crate) fn exact(&self) -> Option<&str> {
        match self {
            StrMatch::Exact(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StrMatch;

    #[test]
    fn m_1_only_edge_stars_are_special() {
        assert!(StrMatch::parse("abc").matches("abc"));
        assert!(!StrMatch::parse("abc").matches("abcd"));
        assert!(StrMatch::parse("abc*").matches("abcd"));
        assert!(StrMatch::parse("*abc").matches("xabc"));
        assert!(StrMatch::parse("/api/*/users").matches("/api/*/users"));
        assert!(!StrMatch::parse("/api/*/users").matches("/api/v1/users"));
        // `*abc*` is a suffix match on the literal `abc*`.
        assert!(StrMatch::parse("*abc*").matches("xabc*"));
        assert!(!StrMatch::parse("*abc*").matches("xabcd"));
        assert!(!StrMatch::parse("*").matches(""));
        assert!(StrMatch::parse("*").matches_present(""));
    }
}
