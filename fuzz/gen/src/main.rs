//! Writes `fuzz/corpus/<target>/` seeds and, on the first run, the fixed
//! JWT test keys in `fuzz/fixtures/`. Run from the repository root:
//!
//! ```text
//! cargo run --manifest-path fuzz/gen/Cargo.toml
//! ```
//!
//! Certificates come from test-support's rcgen CA (so they differ on every
//! run); tokens are signed with the fixed keys, so the JWT targets' fixed
//! JWKS verifies them.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use spiffe_core::jwt::JwtSigner;
use spiffe_core::{BundleSet, JwtBundle, PrivateKey, SpiffeBundle, X509Bundle};
use test_support::{
    ExtendedKeyUsagePurpose as E, KeyKind, KeyUsagePurpose as K, LeafSpec, TestCa, TestJwtKey, pem,
};

const TD: &str = "example.org";
const ISS: &str = "https://issuer.example";
/// 2033-05-18: after the targets' fixed "now" (2027).
const EXP: u64 = 2_000_000_000;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let keys = Keys::load_or_create(&root.join("fixtures"));
    let corpus = root.join("corpus");
    let w = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(name), bytes).expect("corpus file");
    };

    for (i, id) in [
        "spiffe://example.org/ns/prod/sa/api",
        "spiffe://cluster.local/ns/default/sa/web",
        "spiffe://Example.ORG/w",
        "spiffe://example.org",
        "spiffe://td/a/b/c-_.9",
        "spiffe://example.org/a/../b",
        "spiffe://example.org//a",
        "spiffe://example.org/%41",
        "spiffe://exa mple.org/a",
        "spiffe://example.org:443/a",
        "spiffe://user@example.org/a",
        "spiffe://example.org/a?q#f",
        "https://example.org/a",
    ]
    .iter()
    .enumerate()
    {
        w("spiffe_id", &format!("id{i}"), id.as_bytes());
    }
    for (i, td) in [
        "example.org",
        "Example.ORG",
        "cluster.local",
        "a-b_c.d9",
        "spiffe://example.org",
        "exa mple",
        "",
        "xn--bcher-kva.example",
    ]
    .iter()
    .enumerate()
    {
        w("trust_domain", &format!("td{i}"), td.as_bytes());
    }
    for (i, addr) in [
        "unix:///tmp/spire-agent/public/api.sock",
        "unix:/run/spire/sockets/agent.sock",
        "tcp:127.0.0.1:8081",
        "tcp:[::1]:8081",
        "unix://host/path",
        "tcp:localhost:80",
        "unix:///",
        "tcp:127.0.0.1",
    ]
    .iter()
    .enumerate()
    {
        w("endpoint_address", &format!("addr{i}"), addr.as_bytes());
    }

    // Certificates: every leaf shape test-support makes, a CA, an
    // intermediate.
    let ca = TestCa::new(TD);
    let id = "spiffe://example.org/w";
    let leaves = [
        ("leaf", ca.leaf(id)),
        ("leaf_ca", ca.leaf_with(LeafSpec::new(id).ca(true))),
        (
            "leaf_no_ku",
            ca.leaf_with(LeafSpec::new(id).key_usages(None)),
        ),
        (
            "leaf_signing_ku",
            ca.leaf_with(LeafSpec::new(id).key_usages(Some(vec![K::KeyCertSign, K::CrlSign]))),
        ),
        (
            "leaf_eku_server",
            ca.leaf_with(LeafSpec::new(id).eku(vec![E::ServerAuth])),
        ),
        (
            "leaf_two_uris_dns",
            ca.leaf_with(LeafSpec::new(id).uris(&[id, "spiffe://x/y"]).dns(&["a.b"])),
        ),
        (
            "leaf_empty_subject",
            ca.leaf_with(LeafSpec::new(id).empty_subject()),
        ),
        (
            "leaf_rsa",
            ca.leaf_with(LeafSpec::new(id).key(KeyKind::Rsa2048)),
        ),
        (
            "leaf_p384",
            ca.leaf_with(LeafSpec::new(id).key(KeyKind::P384)),
        ),
    ];
    let inter = ca.intermediate(test_support::CaSpec::new(TD));
    let via_inter = inter.leaf("spiffe://example.org/via");
    w("x509_cert_diff", "ca", ca.cert());
    w("x509_cert_diff", "intermediate", inter.cert());
    for (name, leaf) in &leaves {
        w("x509_cert_diff", name, &leaf.chain[0]);
    }
    for (name, leaf) in leaves
        .iter()
        .take(3)
        .chain([("via_inter", via_inter.clone())].iter())
    {
        let chain = leaf.chain_der();
        w("x509_svid_der", name, &two(&chain, &leaf.key_der));
        let chain_pem: String = leaf.chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
        let key_pem = pem("PRIVATE KEY", &leaf.key_der);
        w(
            "x509_svid_pem",
            name,
            &two(chain_pem.as_bytes(), key_pem.as_bytes()),
        );
    }

    // JWT-SVIDs and authz tokens, signed with the fixed keys.
    let svid_claims =
        json!({"sub": "spiffe://example.org/w", "aud": ["api"], "exp": EXP, "iat": 1_700_000_000});
    let tokens = [
        ("es256", keys.sign("ES256", "p256", &svid_claims)),
        ("rs256", keys.sign("RS256", "rsa", &svid_claims)),
        ("ps256", keys.sign("PS256", "rsa", &svid_claims)),
        (
            "aud_string_nbf",
            keys.sign(
                "ES256",
                "p256",
                &json!({"sub": "spiffe://example.org/w", "aud": "api", "exp": EXP, "nbf": 1_600_000_000, "x": {"y": [1, 2.5, null, true]}}),
            ),
        ),
        (
            "expired",
            keys.sign("ES256", "p256", &json!({"sub": "spiffe://example.org/w", "aud": ["api"], "exp": 1_700_000_000})),
        ),
        (
            "wrong_aud",
            keys.sign("ES256", "p256", &json!({"sub": "spiffe://example.org/w", "aud": ["other"], "exp": EXP})),
        ),
        (
            "alg_key_mismatch",
            keys.sign_as("ES384", "p256", "ES256", &svid_claims),
        ),
    ];
    for (name, token) in &tokens {
        w("jwt_svid", name, token.as_bytes());
        w("jwt_svid_diff", name, token.as_bytes());
    }
    let authz_claims =
        json!({"iss": ISS, "sub": "alice", "aud": "api", "exp": EXP, "groups": ["a", "b"]});
    for (name, token) in [
        ("es256", keys.sign("ES256", "p256", &authz_claims)),
        ("rs256", keys.sign("RS256", "rsa", &authz_claims)),
        (
            "no_kid",
            keys.sign_without_kid("ES256", "p256", &authz_claims),
        ),
        (
            "other_issuer",
            keys.sign(
                "ES256",
                "p256",
                &json!({"iss": "https://else", "sub": "bob", "exp": EXP}),
            ),
        ),
        (
            "exp_string",
            keys.sign(
                "ES256",
                "p256",
                &json!({"iss": ISS, "sub": "c", "aud": "api", "exp": "soon"}),
            ),
        ),
    ] {
        w("authz_jwt", name, token.as_bytes());
    }

    // Bundles and JWKS.
    let td = TD.parse().expect("trust domain");
    let jwt_bundle = JwtBundle::from_jwks(td, keys.jwks.as_bytes()).expect("fixed JWKS");
    let x509 = X509Bundle::new(TD.parse().expect("td"), vec![ca.root_cert()]).expect("bundle");
    let bundle = SpiffeBundle::new(x509, jwt_bundle.clone())
        .expect("bundle")
        .with_sequence(7)
        .with_refresh_hint(Duration::from_secs(300));
    w("spiffe_bundle", "x509_and_jwt", &bundle.to_json());
    w(
        "spiffe_bundle",
        "jwt_only",
        &SpiffeBundle::from_jwt(jwt_bundle.clone()).to_json(),
    );
    w("spiffe_bundle", "empty_keys", br#"{"keys":[]}"#);
    w("jwks", "fixed", keys.jwks.as_bytes());
    w(
        "jwks",
        "use_skipped",
        br#"{"keys":[{"kty":"EC","use":"x509-svid","crv":"P-256"},{"kty":"oct","kid":"s"}]}"#,
    );
    let other = TestCa::new("other.test");
    let other_bundle = SpiffeBundle::from_x509(
        X509Bundle::new("other.test".parse().expect("td"), vec![other.root_cert()])
            .expect("bundle"),
    );
    let set: BundleSet = [bundle, other_bundle].into_iter().collect();
    w("bundle_map", "two_domains", &set.to_bundle_map());
    w("bundle_map", "empty", br#"{"trust_domains":{}}"#);

    // Policies: one of each kind, in the shapes the authz tests use.
    let jwks_inline = keys.jwks.replace('\n', "");
    let policies = [
        ("allow_principals", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  selector: {matchLabels: {app: web}}\n  action: ALLOW\n  rules:\n  - from:\n    - source: {principals: [\"cluster.local/ns/foo/sa/web\"], notNamespaces: [bar]}\n    to:\n    - operation: {methods: [GET], paths: [\"/api/*\"], ports: [\"8080\"]}\n    when:\n    - key: request.headers[x-env]\n      values: [prod]\n".to_owned()),
        ("deny_ip", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: istio-system}\nspec:\n  action: DENY\n  rules:\n  - from:\n    - source: {ipBlocks: [\"10.0.0.0/8\"], notRemoteIpBlocks: [\"10.1.2.3\"]}\n".to_owned()),
        ("custom", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: c, namespace: foo}\nspec:\n  action: CUSTOM\n  provider: {name: opa}\n  rules:\n  - to:\n    - operation: {notPaths: [\"/health\"], hosts: [\"*.example.com\"]}\n".to_owned()),
        ("request_auth", format!("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: foo}}\nspec:\n  jwtRules:\n  - issuer: {ISS}\n    audiences: [api]\n    fromHeaders: [{{name: x-jwt, prefix: \"Bearer \"}}]\n    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]\n    jwks: '{jwks_inline}'\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: need, namespace: foo}}\nspec:\n  rules:\n  - from:\n    - source: {{requestPrincipals: [\"{ISS}/*\"]}}\n    when:\n    - key: request.auth.claims[groups]\n      values: [a]\n")),
        ("peer_auth", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: foo}\nspec:\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: PERMISSIVE}\n".to_owned()),
        ("allow_nothing", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: n, namespace: foo}\nspec: {}\n".to_owned()),
    ];
    for (name, yaml) in &policies {
        w("policy_yaml", name, yaml.as_bytes());
    }

    // Workload API responses, hand-encoded protobuf; the first byte picks
    // the message (0 X509SVIDResponse, 1 X509BundlesResponse, 2
    // JWTSVIDResponse, 3 JWTBundlesResponse, 4 ValidateJWTSVIDResponse).
    let leaf = &leaves[0].1;
    let x509_svid = [
        field_bytes(1, id.as_bytes()),
        field_bytes(2, &leaf.chain_der()),
        field_bytes(3, &leaf.key_der),
        field_bytes(4, ca.cert()),
        field_bytes(5, b"internal"),
    ]
    .concat();
    let federated = map_entry(3, b"spiffe://other.test", other.cert());
    let mut msg = vec![0u8];
    msg.extend(field_bytes(1, &x509_svid));
    msg.extend(&federated);
    w("workload_proto", "x509_svid", &msg);
    let mut msg = vec![1u8];
    msg.extend(map_entry(2, b"spiffe://example.org", ca.cert()));
    w("workload_proto", "x509_bundles", &msg);
    let jwt_svid = [
        field_bytes(1, id.as_bytes()),
        field_bytes(2, tokens[0].1.as_bytes()),
        field_bytes(3, b"hint"),
    ]
    .concat();
    let mut msg = vec![2u8];
    msg.extend(field_bytes(1, &jwt_svid));
    w("workload_proto", "jwt_svid", &msg);
    let mut msg = vec![3u8];
    msg.extend(map_entry(1, b"example.org", keys.jwks.as_bytes()));
    w("workload_proto", "jwt_bundles", &msg);
    // google.protobuf.Struct { fields: map<string, Value> }, Value
    // number_value = 2, string_value = 3.
    let number = [vec![0x11], 1_800_000_000f64.to_le_bytes().to_vec()].concat();
    let fields = [
        map_entry(1, b"exp", &number),
        map_entry(1, b"sub", &field_bytes(3, id.as_bytes())),
    ]
    .concat();
    let mut msg = vec![4u8];
    msg.extend(field_bytes(1, id.as_bytes()));
    msg.extend(field_bytes(2, &fields));
    w("workload_proto", "validate_jwt_svid", &msg);
    println!("wrote {}", corpus.display());
}

/// The two-part input of the x509_svid targets.
fn two(a: &[u8], b: &[u8]) -> Vec<u8> {
    let len = u16::try_from(a.len()).expect("seed part under 64 KiB");
    [&len.to_be_bytes()[..], a, b].concat()
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited protobuf field.
fn field_bytes(number: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    varint(value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

/// One entry of a protobuf `map<string, _>` field.
fn map_entry(number: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    field_bytes(
        number,
        &[field_bytes(1, key), field_bytes(2, value)].concat(),
    )
}

/// The fixed JWT test keys.
struct Keys {
    p256: EcdsaKeyPair,
    rsa: RsaKeyPair,
    jwks: String,
}

impl Keys {
    fn load_or_create(dir: &Path) -> Keys {
        fs::create_dir_all(dir).expect("fixtures dir");
        let read = |name: &str, kind: KeyKind| -> Vec<u8> {
            let path: PathBuf = dir.join(name);
            fs::read(&path).unwrap_or_else(|_| {
                let der = TestJwtKey::generate(kind).pkcs8().to_vec();
                fs::write(&path, &der).expect("write key");
                der
            })
        };
        let p256_der = read("jwt-p256.pk8", KeyKind::P256);
        let rsa_der = read("jwt-rsa.pk8", KeyKind::Rsa2048);
        let jwk = |der: &[u8], kid: &str| -> Value {
            let key = PrivateKey::from_pkcs8_der(der).expect("fixed key loads");
            let public = JwtSigner::new(&key).expect("signer").public_key().clone();
            serde_json::to_value(public.to_jwk(kid)).expect("jwk")
        };
        let jwks = serde_json::to_string_pretty(
            &json!({"keys": [jwk(&p256_der, "p256"), jwk(&rsa_der, "rsa")]}),
        )
        .expect("jwks")
            + "\n";
        fs::write(dir.join("jwks.json"), &jwks).expect("write jwks");
        let p256 = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &p256_der)
            .expect("p256 key");
        let _ = p256.public_key();
        let rsa = RsaKeyPair::from_pkcs8(&rsa_der).expect("rsa key");
        Keys { p256, rsa, jwks }
    }

    fn sign(&self, alg: &str, kid: &str, claims: &Value) -> String {
        self.sign_as(alg, kid, alg, claims)
    }

    fn sign_without_kid(&self, alg: &str, key: &str, claims: &Value) -> String {
        self.compact(&json!({"alg": alg, "typ": "JWT"}), key, alg, claims)
    }

    /// Header says `alg`; the signature is made with `sign_alg`.
    fn sign_as(&self, alg: &str, kid: &str, sign_alg: &str, claims: &Value) -> String {
        self.compact(
            &json!({"alg": alg, "kid": kid, "typ": "JWT"}),
            kid,
            sign_alg,
            claims,
        )
    }

    fn compact(&self, header: &Value, key: &str, alg: &str, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match (key, alg) {
            ("p256", _) => self
                .p256
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            (_, alg) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    "PS256" => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; self.rsa.public_modulus_len()];
                self.rsa
                    .sign(padding, &rng, input.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}
