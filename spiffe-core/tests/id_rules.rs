//! SPIFFE ID rules (ID-*, TD-*, PATH-* in docs/spec/spiffe.md): one test per rule, byte
//! tables over every byte for both charsets, and round-trip properties.

use proptest::prelude::*;
use spiffe_core::{IdError, MAX_SPIFFE_ID_LEN, SpiffeId, TrustDomain};

fn id(s: &str) -> Result<SpiffeId, IdError> {
    s.parse()
}

fn td(s: &str) -> Result<TrustDomain, IdError> {
    s.parse()
}

#[test]
fn id_1_scheme_must_be_spiffe() {
    assert_eq!(id("http://example.org/a"), Err(IdError::WrongScheme));
    assert_eq!(id("spiffe:/example.org/a"), Err(IdError::WrongScheme));
    assert_eq!(id("spif://example.org"), Err(IdError::WrongScheme));
    assert_eq!(id("example.org/a"), Err(IdError::MissingScheme));
    assert_eq!(id("//example.org/a"), Err(IdError::MissingScheme));
    assert_eq!(id(""), Err(IdError::Empty));
    assert!(id("spiffe://example.org/a").is_ok());
}

#[test]
fn id_2_trust_domain_must_not_be_empty() {
    assert_eq!(id("spiffe://"), Err(IdError::EmptyTrustDomain));
    assert_eq!(id("spiffe:///path"), Err(IdError::EmptyTrustDomain));
    assert_eq!(td(""), Err(IdError::EmptyTrustDomain));
}

#[test]
fn id_3_no_query_and_no_fragment() {
    assert_eq!(
        id("spiffe://example.org/a?x=1"),
        Err(IdError::Query { position: 22 })
    );
    assert_eq!(
        id("spiffe://example.org/a#frag"),
        Err(IdError::Fragment { position: 22 })
    );
    assert_eq!(
        id("spiffe://example.org?x"),
        Err(IdError::Query { position: 20 })
    );
    assert_eq!(
        id("spiffe://example.org#x"),
        Err(IdError::Fragment { position: 20 })
    );
}

#[test]
fn id_4_path_is_optional() {
    let root = id("spiffe://example.org").unwrap();
    assert!(root.is_root());
    assert_eq!(root.path(), "");
    assert_eq!(root, root.trust_domain().to_spiffe_id());
}

#[test]
fn id_5_scheme_and_trust_domain_are_case_insensitive_path_is_not() {
    let a = id("SPIFFE://EXAMPLE.org/Path/UPPER").unwrap();
    assert_eq!(a.as_str(), "spiffe://example.org/Path/UPPER");
    assert_eq!(a, id("spiffe://example.ORG/Path/UPPER").unwrap());
    assert_ne!(a, id("spiffe://example.org/path/upper").unwrap());
    assert_eq!(td("Example.Org").unwrap().as_str(), "example.org");
}

#[test]
fn id_6_ids_of_2048_bytes_parse_and_constructors_refuse_longer() {
    let td = td("example.org").unwrap();
    let prefix = "spiffe://example.org/".len();
    let long = format!(
        "spiffe://example.org/{}",
        "a".repeat(MAX_SPIFFE_ID_LEN - prefix)
    );
    assert_eq!(long.len(), MAX_SPIFFE_ID_LEN);
    assert!(id(&long).is_ok());
    let longer = format!("{long}b");
    assert!(id(&longer).is_ok(), "parsing must not reject long IDs");
    let path = &longer["spiffe://example.org".len()..];
    assert_eq!(
        SpiffeId::from_path(&td, path),
        Err(IdError::TooLong {
            len: MAX_SPIFFE_ID_LEN + 1
        })
    );
    let seg = "a".repeat(MAX_SPIFFE_ID_LEN - prefix + 1);
    assert!(matches!(
        SpiffeId::from_segments(&td, &[&seg]),
        Err(IdError::TooLong { .. })
    ));
    let ok = "a".repeat(MAX_SPIFFE_ID_LEN - prefix);
    assert_eq!(
        SpiffeId::from_segments(&td, &[&ok]).unwrap().as_str().len(),
        MAX_SPIFFE_ID_LEN
    );
}

#[test]
fn id_7_trust_domain_is_at_most_255_bytes() {
    let ok = "a".repeat(255);
    assert!(td(&ok).is_ok());
    assert!(id(&format!("spiffe://{ok}/x")).is_ok());
    let long = "a".repeat(256);
    assert_eq!(td(&long), Err(IdError::TrustDomainTooLong { len: 256 }));
    assert_eq!(
        id(&format!("spiffe://{long}")),
        Err(IdError::TrustDomainTooLong { len: 256 })
    );
}

#[test]
fn id_8_non_ascii_is_rejected_everywhere() {
    assert!(matches!(
        id("spiffe://exämple.org/a"),
        Err(IdError::TrustDomainChar { .. })
    ));
    assert!(matches!(
        id("spiffe://example.org/ä"),
        Err(IdError::PathChar { .. })
    ));
    assert!(matches!(
        td("例え.jp"),
        Err(IdError::TrustDomainChar { .. })
    ));
}

#[test]
fn td_1_host_must_not_be_empty() {
    assert_eq!(td("spiffe://"), Err(IdError::EmptyTrustDomain));
}

#[test]
fn td_2_userinfo_and_port_are_rejected() {
    assert_eq!(id("spiffe://user@example.org/a"), Err(IdError::Userinfo));
    assert_eq!(id("spiffe://example.org:8080/a"), Err(IdError::Port));
    assert_eq!(td("example.org:443"), Err(IdError::Port));
    assert_eq!(td("u:p@example.org"), Err(IdError::Port));
}

#[test]
fn td_3_stored_trust_domain_is_lowercase() {
    let t = td("spiffe://MiXeD.Example").unwrap();
    assert_eq!(t.to_string(), "mixed.example");
    assert_eq!(t.id_str(), "spiffe://mixed.example");
}

/// The error for byte `b` at `position` of a trust domain: the URI
/// delimiters have their own errors, every other byte is TD-4's.
fn td_char_error(b: u8, position: usize) -> IdError {
    match b {
        b'#' => IdError::Fragment { position },
        b'%' => IdError::PercentEncoded { position },
        b'?' => IdError::Query { position },
        b':' => IdError::Port,
        b'@' => IdError::Userinfo,
        _ => IdError::TrustDomainChar { byte: b, position },
    }
}

#[test]
fn td_4_trust_domain_charset_over_every_byte() {
    for b in 0u8..=255 {
        let name = format!("a{}b", b as char);
        let name_bytes = [b'a', b, b'b'];
        let Ok(s) = std::str::from_utf8(&name_bytes) else {
            // Non-UTF-8 bytes cannot appear in a &str; as chars they are
            // multi-byte and must fail.
            assert!(
                matches!(td(&name), Err(IdError::TrustDomainChar { position: 1, .. })),
                "byte {b:#04x} as char must be rejected"
            );
            continue;
        };
        let allowed = b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
        let upper = b.is_ascii_uppercase();
        let r = td(s);
        if allowed || upper {
            assert!(
                r.is_ok(),
                "byte {b:#04x} must be accepted in a trust domain: {r:?}"
            );
        } else {
            assert_eq!(
                r,
                Err(td_char_error(b, 1)),
                "byte {b:#04x} must be rejected in a trust domain"
            );
        }
        // The same through a full ID.
        let full = format!("spiffe://{s}/p");
        if allowed || upper {
            assert!(id(&full).is_ok(), "byte {b:#04x} in an ID's trust domain");
        } else {
            if b != b'/' {
                assert_eq!(
                    id(&full),
                    Err(td_char_error(b, 10)),
                    "byte {b:#04x} in an ID's trust domain"
                );
            }
        }
    }
}

#[test]
fn td_5_percent_encoding_is_rejected() {
    assert_eq!(
        td("exa%41mple.org"),
        Err(IdError::PercentEncoded { position: 3 })
    );
    assert_eq!(
        id("spiffe://exa%41mple.org/a"),
        Err(IdError::PercentEncoded { position: 12 })
    );
}

#[test]
fn td_6_ipv4_allowed_ipv6_literals_rejected() {
    assert!(td("10.0.0.1").is_ok());
    assert_eq!(
        td("[::1]"),
        Err(IdError::TrustDomainChar {
            byte: b'[',
            position: 0
        })
    );
    assert_eq!(
        id("spiffe://[::1]/a"),
        Err(IdError::TrustDomainChar {
            byte: b'[',
            position: 9
        })
    );
}

#[test]
fn td_7_no_dns_label_validation() {
    for name in [
        "example..org",
        ".example.org",
        "example.org.",
        "-example.org",
        "example-.org",
    ] {
        assert!(td(name).is_ok(), "{name} is a valid trust domain");
    }
}

#[test]
fn td_8_trust_domains_are_self_assigned_names_compared_exactly() {
    assert_ne!(td("example.org").unwrap(), td("example.org.").unwrap());
    assert_ne!(td("example.org").unwrap(), td("example.com").unwrap());
}

#[test]
fn path_1_percent_encoding_is_rejected() {
    assert_eq!(
        id("spiffe://example.org/a%20b"),
        Err(IdError::PercentEncoded { position: 22 })
    );
}

#[test]
fn path_2_empty_and_dot_segments_are_rejected() {
    assert_eq!(id("spiffe://example.org//a"), Err(IdError::EmptySegment));
    assert_eq!(id("spiffe://example.org/a//b"), Err(IdError::EmptySegment));
    assert_eq!(id("spiffe://example.org/./a"), Err(IdError::DotSegment));
    assert_eq!(id("spiffe://example.org/a/.."), Err(IdError::DotSegment));
    assert_eq!(id("spiffe://example.org/.."), Err(IdError::DotSegment));
    let td = td("example.org").unwrap();
    assert_eq!(
        SpiffeId::from_segments(&td, &[""]),
        Err(IdError::TrailingSlash)
    );
    assert_eq!(
        SpiffeId::from_segments(&td, &["a", "", "b"]),
        Err(IdError::EmptySegment)
    );
    assert_eq!(
        SpiffeId::from_segments(&td, &["."]),
        Err(IdError::DotSegment)
    );
}

#[test]
fn path_3_trailing_slash_is_rejected() {
    assert_eq!(id("spiffe://example.org/"), Err(IdError::TrailingSlash));
    assert_eq!(id("spiffe://example.org/a/"), Err(IdError::TrailingSlash));
    let td = td("example.org").unwrap();
    assert_eq!(SpiffeId::from_path(&td, "/a/"), Err(IdError::TrailingSlash));
    assert_eq!(SpiffeId::from_path(&td, "a"), Err(IdError::RelativePath));
}

#[test]
fn path_4_path_charset_over_every_byte() {
    for b in 0u8..=255 {
        let bytes = [b'/', b'a', b, b'b'];
        let Ok(path) = std::str::from_utf8(&bytes) else {
            let s = format!("spiffe://example.org/a{}b", b as char);
            assert!(
                matches!(id(&s), Err(IdError::PathChar { position: 22, .. })),
                "byte {b:#04x} as char must be rejected in a path"
            );
            continue;
        };
        let allowed = b.is_ascii_alphanumeric() || b"._-".contains(&b);
        let r = id(&format!("spiffe://example.org{path}"));
        if allowed {
            assert_eq!(r.unwrap().path(), path, "byte {b:#04x} kept byte for byte");
        } else if b == b'/' {
            assert!(r.is_ok(), "`/` separates segments");
        } else {
            let expected = match b {
                b'#' => IdError::Fragment { position: 22 },
                b'%' => IdError::PercentEncoded { position: 22 },
                b'?' => IdError::Query { position: 22 },
                _ => IdError::PathChar {
                    byte: b,
                    position: 22,
                },
            };
            assert_eq!(r, Err(expected), "byte {b:#04x} must be rejected in a path");
        }
    }
}

#[test]
fn path_5_segments_containing_dots_are_fine() {
    for p in ["/.path", "/..path", "/...", "/a..b", "/a.", "/.a."] {
        let parsed = id(&format!("spiffe://example.org{p}")).unwrap();
        assert_eq!(parsed.path(), p);
    }
}

#[test]
fn path_6_path_structure_is_opaque() {
    let a = id("spiffe://example.org/ns/default/sa/web").unwrap();
    let b = id("spiffe://example.org/9f1c2c0e-7d5a-4c5e-9d0a-4c1b5e6f7a8b").unwrap();
    assert_eq!(a.path(), "/ns/default/sa/web");
    assert_eq!(b.path(), "/9f1c2c0e-7d5a-4c5e-9d0a-4c1b5e6f7a8b");
}

#[test]
fn trust_domain_accepts_spiffe_id_form_and_validates_it_whole() {
    assert_eq!(td("spiffe://example.org").unwrap().as_str(), "example.org");
    assert_eq!(
        td("spiffe://example.org/a/b").unwrap().as_str(),
        "example.org"
    );
    assert_eq!(td("spiffe://example.org/a//b"), Err(IdError::EmptySegment));
    // Without the scheme, a path is no part of a trust domain name.
    assert_eq!(
        td("example.org/path"),
        Err(IdError::TrustDomainChar {
            byte: b'/',
            position: 11
        })
    );
}

#[test]
fn membership_and_ordering() {
    let a = id("spiffe://example.org/a").unwrap();
    assert!(a.is_member_of(&td("EXAMPLE.org").unwrap()));
    assert!(!a.is_member_of(&td("example.com").unwrap()));
    let mut v = [
        id("spiffe://b.org/a").unwrap(),
        id("spiffe://a.org/b").unwrap(),
        id("spiffe://a.org/a").unwrap(),
    ];
    v.sort();
    let s: Vec<_> = v.iter().map(SpiffeId::as_str).collect();
    assert_eq!(
        s,
        ["spiffe://a.org/a", "spiffe://a.org/b", "spiffe://b.org/a"]
    );
}

#[test]
fn serde_uses_canonical_strings_and_rejects_bad_ones() {
    let a: SpiffeId = serde_json::from_str("\"spiffe://Example.org/x\"").unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        "\"spiffe://example.org/x\""
    );
    let t: TrustDomain = serde_json::from_str("\"Example.org\"").unwrap();
    assert_eq!(serde_json::to_string(&t).unwrap(), "\"example.org\"");
    let err = serde_json::from_str::<SpiffeId>("\"spiffe://example.org/a/\"").unwrap_err();
    assert!(err.to_string().contains("PATH-3"), "{err}");
    assert!(serde_json::from_str::<SpiffeId>("42").is_err());
}

#[test]
fn errors_name_their_rule() {
    let msg = id("spiffe://example.org:1/a").unwrap_err().to_string();
    assert!(msg.contains("TD-2"), "{msg}");
    let msg = id("spiffe://ex$ample.org").unwrap_err().to_string();
    assert!(msg.contains("TD-4") && msg.contains("0x24"), "{msg}");
}

fn td_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn seg_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}".prop_filter("not a dot segment", |s| s != "." && s != "..")
}

proptest! {
    #[test]
    fn display_then_parse_round_trips(t in td_strategy(), segs in prop::collection::vec(seg_strategy(), 0..6)) {
        let td: TrustDomain = t.parse().unwrap();
        let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let built = SpiffeId::from_segments(&td, &refs).unwrap();
        let reparsed: SpiffeId = built.to_string().parse().unwrap();
        prop_assert_eq!(&reparsed, &built);
        prop_assert_eq!(reparsed.trust_domain(), &td);
        let td_again: TrustDomain = td.to_string().parse().unwrap();
        prop_assert_eq!(td_again, td);
    }

    #[test]
    fn parse_never_panics_and_accepted_input_is_canonical(s in "(spiffe|SPIFFE|http)?(://)?[ -~]{0,60}") {
        if let Ok(parsed) = s.parse::<SpiffeId>() {
            prop_assert!(parsed.as_str().starts_with("spiffe://"));
            prop_assert_eq!(parsed.as_str().to_ascii_lowercase(), s.to_ascii_lowercase());
            let again: SpiffeId = parsed.as_str().parse().unwrap();
            prop_assert_eq!(again, parsed);
        }
    }
}
