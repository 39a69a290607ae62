//! Registry validation and matching; join-token node attestation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use spiffe_core::{SpiffeId, verify_x509_svid};
use svid_ca::{
    AttestError, Clock, EntryError, EntryId, JoinTokenAttestor, ManualClock, NodeAttestor,
    NodeStore, RegistrationEntry, Registry, Selector, SelectorError, Selectors, SqliteStore,
};

fn id(path: &str) -> SpiffeId {
    format!("spiffe://{TD}{path}").parse().unwrap()
}

fn sels(list: &[&str]) -> Selectors {
    list.iter().map(|s| sel(s)).collect()
}

fn sel(s: &str) -> Selector {
    s.parse().unwrap()
}

fn registry() -> Registry {
    Registry::new(TD.parse().unwrap(), config().max_svid_ttl())
}

fn entry(path: &str, parent: &str, sels: &[&str]) -> RegistrationEntry {
    RegistrationEntry::new(id(path), id(parent), sels.iter().map(|s| sel(s)).collect()).unwrap()
}

#[test]
fn invalid_entries_are_rejected_with_specific_errors() {
    let r = registry();
    let foreign = RegistrationEntry::new(
        "spiffe://other.org/w".parse().unwrap(),
        id("/node/n1"),
        vec![sel("unix:uid:1")],
    )
    .unwrap();
    assert!(matches!(
        r.create(foreign),
        Err(EntryError::ForeignTrustDomain { .. })
    ));
    let root = RegistrationEntry::new(id(""), id("/node/n1"), vec![sel("unix:uid:1")]).unwrap();
    assert!(matches!(r.create(root), Err(EntryError::RootId)));
    assert!(matches!(
        r.create(entry("/node/fake", "/node/n1", &["unix:uid:1"])),
        Err(EntryError::ReservedPath { .. })
    ));
    assert!(matches!(
        r.create(entry("/server", "/node/n1", &["unix:uid:1"])),
        Err(EntryError::ReservedPath { .. })
    ));
    // "/nodes" is not under "/node".
    r.create(entry("/nodes", "/node/n1", &["unix:uid:1"]))
        .unwrap();
    assert!(matches!(
        r.create(entry("/w", "/node/n1", &[])),
        Err(EntryError::NoSelectors)
    ));
    let mut long = entry("/w", "/node/n1", &["unix:uid:1"]);
    long.x509_svid_ttl = Some(Duration::from_secs(5 * 3600));
    assert!(matches!(
        r.create(long),
        Err(EntryError::TtlTooLong {
            kind: "X509-SVID",
            ..
        })
    ));
    let mut zero = entry("/w", "/node/n1", &["unix:uid:1"]);
    zero.jwt_svid_ttl = Some(Duration::ZERO);
    assert!(matches!(
        r.create(zero),
        Err(EntryError::ZeroTtl { kind: "JWT-SVID" })
    ));
    let mut dns = entry("/w", "/node/n1", &["unix:uid:1"]);
    dns.dns_names = vec!["bad name".into()];
    assert!(matches!(
        r.create(dns),
        Err(EntryError::InvalidDnsName { .. })
    ));
    for (bad, why) in [
        ("nocolon", SelectorError::MissingSeparator),
        (":v", SelectorError::EmptyKind),
        ("t:", SelectorError::EmptyValue),
        ("UP:x", SelectorError::InvalidKind),
        ("t:a\nb", SelectorError::ControlCharacter),
    ] {
        assert_eq!(bad.parse::<Selector>(), Err(why), "{bad}");
    }
    assert_eq!(
        EntryId::new("../etc").unwrap_err(),
        svid_ca::EntryIdError::InvalidCharacter
    );
    let e = entry("/w", "/node/n1", &["unix:uid:1"]);
    let dup = e.clone();
    r.create(e).unwrap();
    assert!(matches!(r.create(dup), Err(EntryError::Duplicate { .. })));
    assert_eq!(r.len(), 2, "nothing else was added");
}

#[test]
fn entry_matches_only_when_all_selectors_are_attested_under_its_parent() {
    let r = registry();
    let e = r
        .create(entry("/db", "/node/n1", &["unix:uid:1000", "unix:gid:50"]))
        .unwrap();
    let now = start();
    let n1 = id("/node/n1");
    assert!(r.matching(&n1, &sels(&["unix:uid:1000"]), now).is_empty());
    let m = r.matching(&n1, &sels(&["unix:gid:50", "unix:uid:1000", "x:y"]), now);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].id, e.id);
    // Another node does not get it.
    assert!(
        r.matching(
            &id("/node/n2"),
            &sels(&["unix:gid:50", "unix:uid:1000"]),
            now
        )
        .is_empty()
    );
    // Expired entries stop matching.
    let mut exp = entry("/tmp", "/node/n1", &["unix:uid:7"]);
    exp.expires_at = Some(now);
    r.create(exp).unwrap();
    assert!(r.matching(&n1, &sels(&["unix:uid:7"]), now).is_empty());
    // Deleting removes it from the index.
    r.delete(&e.id).unwrap();
    assert!(
        r.matching(&n1, &sels(&["unix:gid:50", "unix:uid:1000"]), now)
            .is_empty()
    );
    assert!(matches!(r.delete(&e.id), Err(EntryError::NotFound { .. })));
}

#[test]
fn node_alias_parents_workload_entries() {
    let r = registry();
    let server = r.server_id();
    let alias =
        RegistrationEntry::new(id("/cluster/a"), server, vec![sel("join_token:abc")]).unwrap();
    r.create(alias).unwrap();
    r.create(entry("/api", "/cluster/a", &["k8s:sa:api"]))
        .unwrap();
    let node = id("/node/join_token/abc");
    let got = r.entries_for_workload(
        &node,
        &sels(&["join_token:abc"]),
        &sels(&["k8s:sa:api"]),
        start(),
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].spiffe_id, id("/api"));
    let none = r.entries_for_workload(
        &node,
        &sels(&["join_token:zzz"]),
        &sels(&["k8s:sa:api"]),
        start(),
    );
    assert!(none.is_empty());
}

#[test]
fn matching_with_100k_entries_returns_exactly_the_right_entries() {
    let r = registry();
    for i in 0..100_000 {
        r.create(entry(
            &format!("/w/{i}"),
            "/node/n1",
            &["unix:gid:0", &format!("unix:uid:{i}")],
        ))
        .unwrap();
    }
    let n1 = id("/node/n1");
    let m = r.matching(&n1, &sels(&["unix:gid:0", "unix:uid:77777"]), start());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].spiffe_id, id("/w/77777"));
    assert!(
        r.matching(&n1, &sels(&["unix:uid:77777"]), start())
            .is_empty()
    );
}

fn attestor() -> (
    JoinTokenAttestor,
    ManualClock,
    Arc<SqliteStore>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let clock = ManualClock::new(start());
    let a = JoinTokenAttestor::new(TD.parse().unwrap(), store.clone(), Arc::new(clock.clone()));
    (a, clock, store, dir)
}

#[test]
fn join_token_is_single_use_and_yields_a_node_svid() {
    let (a, _clock, store, _dir) = attestor();
    let token = a.create_token(Duration::from_secs(600)).unwrap();
    assert!(!format!("{token:?}").contains(token.secret()));
    let node = a.attest(token.secret().as_bytes()).unwrap();
    assert!(node.spiffe_id.path().starts_with("/node/join_token/"));
    // The token announced the selector its node now carries (what a node
    // alias entry for `token generate --spiffe-id` names).
    assert_eq!(
        node.selectors.iter().collect::<Vec<_>>(),
        [token.selector()]
    );
    assert!(node.spiffe_id.path().ends_with(token.selector().value()));
    assert_eq!(
        store.attested_node(&node.spiffe_id).unwrap(),
        Some(node.clone())
    );
    assert!(matches!(
        a.attest(token.secret().as_bytes()),
        Err(AttestError::UnknownToken)
    ));
    let (ca, _c) = ca();
    let svid = ca.issue_x509_svid(&node.entitlement()).unwrap();
    verify_x509_svid(svid.chain(), ca.bundle().x509(), ca.now()).unwrap();
}

#[test]
fn join_token_expired_or_unknown_or_malformed_is_rejected() {
    let (a, clock, _store, dir) = attestor();
    let token = a.create_token(Duration::from_secs(60)).unwrap();
    clock.advance(Duration::from_secs(60));
    assert!(matches!(
        a.attest(token.secret().as_bytes()),
        Err(AttestError::Expired { .. })
    ));
    // Still expired (not consumed, not turned into "unknown").
    assert!(matches!(
        a.attest(token.secret().as_bytes()),
        Err(AttestError::Expired { .. })
    ));
    assert!(matches!(a.attest(b"nope"), Err(AttestError::UnknownToken)));
    assert!(matches!(
        a.attest(b"\xff\xfe"),
        Err(AttestError::Malformed { .. })
    ));
    assert!(matches!(a.attest(b""), Err(AttestError::Malformed { .. })));
    assert!(matches!(
        a.create_token(Duration::ZERO),
        Err(AttestError::ZeroTtl)
    ));
    // The token is stored hashed: its text is nowhere in the database files.
    let t2 = a.create_token(Duration::from_secs(60)).unwrap();
    for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if f.path().is_file() {
            let bytes = std::fs::read(f.path()).unwrap();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(t2.secret()), "{:?} holds the token", f.path());
        }
    }
    let _ = clock.now();
}

#[test]
fn join_token_presented_twice_at_once_is_consumed_exactly_once() {
    let (a, _clock, store, _dir) = attestor();
    let a = Arc::new(a);
    for _ in 0..25 {
        let token = a.create_token(Duration::from_secs(60)).unwrap();
        let start = Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (a, start) = (a.clone(), start.clone());
                let secret = token.secret().to_owned();
                std::thread::spawn(move || {
                    start.wait();
                    a.attest(secret.as_bytes())
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "exactly one use wins: {results:?}");
        let loser = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("the other use is refused");
        assert!(matches!(loser, AttestError::UnknownToken), "{loser:?}");
        assert_eq!(loser.to_string(), "unknown or already used join token");
        assert_eq!(
            store.attested_node(&winners[0].spiffe_id).unwrap().as_ref(),
            Some(winners[0])
        );
    }
}
