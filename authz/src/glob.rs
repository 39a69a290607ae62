//! A minimal glob where `*` matches any run of characters (regex `.*`).

/// Matches `text` against `pattern`, where every `*` matches any characters.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_behaves_like_dot_star() {
        assert!(glob_match("*/ns/foo/*", "spiffe://td/ns/foo/sa/x"));
        assert!(!glob_match("*/ns/foo/*", "spiffe://td/ns/foox/sa/x"));
        assert!(glob_match("*/ns/f*o/*", "spiffe://td/ns/fzzo/sa/x"));
        assert!(glob_match("abc", "abc"));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("a*a", "aa"));
        assert!(!glob_match("ab*ba", "aba"));
    }
}
