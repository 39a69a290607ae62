//! Client errors, with gRPC status codes classified once here.

use spiffe_core::{IdError, JwtError, X509Error};

use crate::EndpointAddress;

/// A gRPC status code, as the Workload API server sent it (EP-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusCode {
    /// `CANCELLED`.
    Cancelled,
    /// `UNKNOWN`.
    Unknown,
    /// `INVALID_ARGUMENT`: a bad request (or missing security header); do not retry.
    InvalidArgument,
    /// `DEADLINE_EXCEEDED`.
    DeadlineExceeded,
    /// `NOT_FOUND`.
    NotFound,
    /// `PERMISSION_DENIED`: the caller has no identity (yet); retry with backoff.
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED`.
    ResourceExhausted,
    /// `UNIMPLEMENTED`: the server lacks the RPC; do not retry.
    Unimplemented,
    /// `INTERNAL`.
    Internal,
    /// `UNAVAILABLE`: retry with backoff.
    Unavailable,
    /// `ALREADY_EXISTS`.
    AlreadyExists,
    /// `FAILED_PRECONDITION`.
    FailedPrecondition,
    /// `ABORTED`.
    Aborted,
    /// `OUT_OF_RANGE`: for example a message larger than the server takes.
    OutOfRange,
    /// `DATA_LOSS`.
    DataLoss,
    /// `UNAUTHENTICATED`.
    Unauthenticated,
    /// Any other code (`OK` on an error path).
    Other,
}

impl StatusCode {
    /// Kept off the public API: tonic's types stay private.
    pub(crate) fn from_tonic(c: tonic::Code) -> Self {
        use tonic::Code as C;
        match c {
            C::Cancelled => StatusCode::Cancelled,
            C::Unknown => StatusCode::Unknown,
            C::InvalidArgument => StatusCode::InvalidArgument,
            C::DeadlineExceeded => StatusCode::DeadlineExceeded,
            C::NotFound => StatusCode::NotFound,
            C::PermissionDenied => StatusCode::PermissionDenied,
            C::ResourceExhausted => StatusCode::ResourceExhausted,
            C::Unimplemented => StatusCode::Unimplemented,
            C::Internal => StatusCode::Internal,
            C::Unavailable => StatusCode::Unavailable,
            C::AlreadyExists => StatusCode::AlreadyExists,
            C::FailedPrecondition => StatusCode::FailedPrecondition,
            C::Aborted => StatusCode::Aborted,
            C::OutOfRange => StatusCode::OutOfRange,
            C::DataLoss => StatusCode::DataLoss,
            C::Unauthenticated => StatusCode::Unauthenticated,
            C::Ok => StatusCode::Other,
        }
    }
}

/// A response that breaks a Workload API rule; clients discard it and keep
/// the previous good state (WL-8).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedResponse {
    /// The response has no SVIDs.
    #[error("the response has no SVIDs")]
    NoSvids,
    /// A mandatory field is empty.
    #[error("mandatory field {field} is empty")]
    EmptyField {
        /// The field's name in the proto.
        field: &'static str,
    },
    /// A SPIFFE ID field does not parse.
    #[error("invalid SPIFFE ID {value:?}: {source}")]
    SpiffeId {
        /// The field's value.
        value: String,
        /// Why.
        #[source]
        source: IdError,
    },
    /// A bundle map key is not a trust domain.
    #[error("invalid trust domain key {key:?}: {source}")]
    TrustDomainKey {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: IdError,
    },
    /// An SVID or X.509 bundle does not parse.
    #[error("invalid X.509 material: {0}")]
    X509(#[from] X509Error),
    /// A JWT-SVID or JWKS does not parse.
    #[error("invalid JWT material: {0}")]
    Jwt(#[from] JwtError),
    /// The certificate or token names another SPIFFE ID than its field.
    #[error("document is for {found}, the response says {declared}")]
    IdMismatch {
        /// The ID in the `spiffe_id` field.
        declared: String,
        /// The ID in the certificate or token.
        found: String,
    },
}

/// Why a Workload API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint address is invalid (EP-6).
    #[error("invalid Workload API address: {0}")]
    Address(#[from] crate::AddressError),
    /// The endpoint could not be reached.
    #[error("connecting to {address}: {source}")]
    Connect {
        /// The endpoint.
        address: EndpointAddress,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with a gRPC error status.
    #[error("the Workload API answered {code:?}: {message}")]
    Status {
        /// The status code.
        code: StatusCode,
        /// The server's message.
        message: String,
    },
    /// The response broke a rule and was discarded.
    #[error("malformed Workload API response: {0}")]
    Malformed(#[from] MalformedResponse),
    /// The server ended a watch stream.
    #[error("the server closed the stream")]
    StreamClosed,
    /// The server did not answer in time ([`crate::ClientOptions`]).
    #[error("no answer from the Workload API within {after:?}")]
    DeadlineExceeded {
        /// The deadline that passed.
        after: std::time::Duration,
    },
}

impl ClientError {
    /// The status code, when the server sent one.
    pub fn code(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying cannot help (EP-7: `InvalidArgument` and
    /// `Unimplemented` are reported, not retried).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self.code(),
            Some(StatusCode::InvalidArgument | StatusCode::Unimplemented)
        )
    }
}

impl ClientError {
    pub(crate) fn from_status(s: tonic::Status) -> Self {
        ClientError::Status {
            code: StatusCode::from_tonic(s.code()),
            message: s.message().to_owned(),
        }
    }
}
