//! authz's JWT path: a raw bearer token verified by the engine against a
//! RequestAuthentication with the fixed keys inline, then the time,
//! audience and issuer rules, then an AuthorizationPolicy that needs a
//! request principal.
#![no_main]

use std::sync::LazyLock;

use authz::{
    Engine, ExtAuthzVerdict, MeshConfig, PolicySet, PresentedToken, Request, TokenLocation,
    Workload,
};
use libfuzzer_sys::fuzz_target;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let jwks = spiffe_fuzz::JWKS.trim().replace('\n', "");
    let iss = spiffe_fuzz::ISSUER;
    let aud = spiffe_fuzz::AUDIENCE;
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
         metadata: {{name: jwt, namespace: foo}}\nspec:\n  jwtRules:\n  - issuer: {iss}\n    \
         audiences: [{aud}]\n    outputPayloadToHeader: x-jwt-payload\n    jwks: '{jwks}'\n\
         ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: need-jwt, namespace: foo}}\nspec:\n  rules:\n  - from:\n    \
         - source: {{requestPrincipals: [\"*\"]}}\n"
    );
    let set = PolicySet::from_yaml_str("fuzz.yaml", &yaml).expect("fixed policy loads");
    Engine::new(Workload::new("foo"), MeshConfig::default(), &set)
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let request = Request::http("GET", "/")
        .port(8080)
        .token(PresentedToken::raw(TokenLocation::bearer(), token));
    let no_ext = |_: &str, _: &Request| ExtAuthzVerdict::Deny { status: 403 };
    let decision = ENGINE.check_with(&request, &no_ext, spiffe_fuzz::now());
    // Only a token that one of the fixed keys signed can be allowed; a
    // token is allowed only when jsonwebtoken, run directly, verifies it.
    if decision.allowed {
        assert!(
            spiffe_fuzz::jsonwebtoken_verifies(token),
            "authz allowed a token whose signature does not verify"
        );
    }
});
