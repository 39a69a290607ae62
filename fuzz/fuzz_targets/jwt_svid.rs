//! JWT-SVIDs: `parse_insecure` (a workload's own token) and `validate`
//! against the fixed keys. A token that validates also parses, to the
//! same claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::JwtSvid;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = JwtSvid::parse_insecure(token);
    let bundle = spiffe_fuzz::jwt_bundle();
    if let Ok(valid) = JwtSvid::validate(token, &bundle, spiffe_fuzz::AUDIENCE, spiffe_fuzz::now())
    {
        let parsed = parsed.expect("a token that validates also parses");
        assert_eq!(
            parsed, valid,
            "validate and parse_insecure read the same token"
        );
    }
});
