//! The client's protobuf-to-domain conversion opened to the fuzz targets in
//! `fuzz/` (and to nothing else). Hidden from the documentation and not
//! part of the API; prost types stay private.

use prost::Message as _;

use crate::MalformedResponse;
use crate::client::convert;
use crate::proto;

/// Which Workload API response the bytes are decoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// `X509SVIDResponse`.
    X509Svid,
    /// `X509BundlesResponse`.
    X509Bundles,
    /// `JWTSVIDResponse`.
    JwtSvid,
    /// `JWTBundlesResponse`.
    JwtBundles,
    /// `ValidateJWTSVIDResponse`.
    ValidateJwtSvid,
}

impl Response {
    /// Every response kind, so a target can pick one by index.
    pub const ALL: [Response; 5] = [
        Response::X509Svid,
        Response::X509Bundles,
        Response::JwtSvid,
        Response::JwtBundles,
        Response::ValidateJwtSvid,
    ];
}

/// Decodes `bytes` as the protobuf message of `kind` and converts it as the
/// client does. `None`: not a valid protobuf encoding of that message.
pub fn decode_and_convert(kind: Response, bytes: &[u8]) -> Option<Result<(), MalformedResponse>> {
    Some(match kind {
        Response::X509Svid => {
            convert::x509_context(proto::X509svidResponse::decode(bytes).ok()?).map(drop)
        }
        Response::X509Bundles => {
            convert::x509_bundles(proto::X509BundlesResponse::decode(bytes).ok()?).map(drop)
        }
        Response::JwtSvid => {
            convert::jwt_svids(proto::JwtsvidResponse::decode(bytes).ok()?).map(drop)
        }
        Response::JwtBundles => {
            convert::jwt_bundles(proto::JwtBundlesResponse::decode(bytes).ok()?).map(drop)
        }
        Response::ValidateJwtSvid => {
            convert::validated(proto::ValidateJwtsvidResponse::decode(bytes).ok()?).map(drop)
        }
    })
}
