//! One vocabulary: the Workload API's selectors are spiffe-core's (the
//! type svid-ca re-exports), so a selector is accepted or refused by the
//! same rule wherever it is written.

use spiffe_core::MAX_SELECTOR_LEN;
use workload_api::{Selector, SelectorError};

/// Parses with the Workload API's name and with spiffe-core's (which is
/// svid-ca's) and requires the same answer.
fn both(text: &str) -> Result<Selector, SelectorError> {
    let here = text.parse::<Selector>();
    let core = text.parse::<spiffe_core::Selector>();
    assert_eq!(here, core, "{text:?}");
    here
}

#[test]
fn selector_kind_must_be_lowercase_ascii_in_workload_api_as_in_svid_ca() {
    // workload-api used to accept all of these; svid-ca refused them.
    for text in [
        "Unix:uid:0",
        "UNIX:uid:0",
        "un ix:uid:0",
        "ünix:uid:0",
        "k8s.io:ns:a",
    ] {
        assert_eq!(both(text), Err(SelectorError::InvalidKind), "{text:?}");
    }
    for text in ["unix:uid:0", "k8s:ns:prod", "join_token:ab-1", "x-y_9:v"] {
        assert!(both(text).is_ok(), "{text:?}");
    }
}

#[test]
fn selector_parts_are_capped_at_max_selector_len_in_workload_api_as_in_svid_ca() {
    let at_cap = "v".repeat(MAX_SELECTOR_LEN);
    assert!(both(&format!("unix:{at_cap}")).is_ok());
    // workload-api used to accept any length.
    let over = "v".repeat(MAX_SELECTOR_LEN + 1);
    assert_eq!(
        both(&format!("unix:{over}")),
        Err(SelectorError::TooLong {
            part: "value",
            len: MAX_SELECTOR_LEN + 1
        })
    );
    assert_eq!(
        Selector::new(over.as_str(), "v"),
        Err(SelectorError::TooLong {
            part: "type",
            len: MAX_SELECTOR_LEN + 1
        })
    );
}

#[test]
fn selector_value_control_characters_are_refused_in_workload_api_as_in_svid_ca() {
    for text in ["unix:uid:\n1", "unix:a\u{0}b", "unix:\u{7f}"] {
        assert_eq!(both(text), Err(SelectorError::ControlCharacter), "{text:?}");
    }
}

#[test]
fn workload_api_selectors_are_spiffe_core_selectors() {
    // The same types, not look-alikes: no conversion is needed between the
    // Workload API, svid-ca and spiffe-core.
    let s: spiffe_core::Selector = "unix:uid:1000".parse::<Selector>().unwrap();
    let set: workload_api::Selectors = [s.clone()].into_iter().collect();
    let core: &spiffe_core::Selectors = &set;
    assert!(core.satisfies(&[s]));
    assert_eq!(workload_api::MAX_SELECTOR_LEN, MAX_SELECTOR_LEN);
}

fn svid(ca: &test_support::TestCa, id: &str) -> spiffe_core::X509Svid {
    let leaf = ca.leaf(id);
    spiffe_core::X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap()
}

fn entry(id: &str) -> workload_api::RegistrationEntry {
    workload_api::RegistrationEntry::new(
        id.parse().unwrap(),
        "spiffe://example.org/node/n1".parse().unwrap(),
        vec!["unix:uid:1".parse().unwrap()],
    )
    .unwrap()
}

#[test]
fn entry_ids_follow_spiffe_core_entry_id_rule_in_workload_api_as_in_svid_ca() {
    use workload_api::{EntryId, EntryIdError, MemoryIdentityProvider};
    // The memory provider used to number entries itself (`EntryId(u64)`);
    // now an entry carries spiffe-core's id, chosen or random.
    assert_eq!(EntryId::new("a/b"), Err(EntryIdError::InvalidCharacter));
    let chosen: EntryId = "web-1".parse().unwrap();
    let ca = test_support::TestCa::new("example.org");
    let p = MemoryIdentityProvider::new();
    let got = p
        .add_entry(
            entry("spiffe://example.org/web").with_id(chosen.clone()),
            svid(&ca, "spiffe://example.org/web"),
        )
        .unwrap();
    assert_eq!(got, chosen);
    let core: &spiffe_core::EntryId = &got;
    assert_eq!(core.as_str(), "web-1");
}

#[test]
fn memory_provider_applies_the_entry_rule_svid_ca_applies() {
    use workload_api::{EntryRuleError, MemoryIdentityProvider, ProviderError};
    // Entries the registry refuses are refused here with the same reason:
    // one `RegistrationEntry`, one `validate`.
    let ca = test_support::TestCa::new("example.org");
    let p = MemoryIdentityProvider::new();
    let web = || svid(&ca, "spiffe://example.org/web");
    let mut zero = entry("spiffe://example.org/web");
    zero.jwt_svid_ttl = Some(std::time::Duration::ZERO);
    let mut dns = entry("spiffe://example.org/web");
    dns.dns_names = vec!["bad name".into()];
    let mut foreign = entry("spiffe://example.org/web");
    foreign.parent_id = "spiffe://other.org/node/n1".parse().unwrap();
    for e in [zero, dns, foreign] {
        let rule = e.validate().unwrap_err();
        assert_eq!(
            p.add_entry(e, web()),
            Err(ProviderError::InvalidEntry(rule))
        );
    }
    let long =
        entry("spiffe://example.org/web").with_hint("h".repeat(workload_api::MAX_HINT_LEN + 1));
    assert!(matches!(
        p.add_entry(long, web()),
        Err(ProviderError::InvalidEntry(
            EntryRuleError::HintTooLong { .. }
        ))
    ));
    // The SVID must carry the entry's SPIFFE ID.
    assert!(matches!(
        p.add_entry(entry("spiffe://example.org/api"), web()),
        Err(ProviderError::WrongIdentity { .. })
    ));
}
