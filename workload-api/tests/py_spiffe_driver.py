"""Drives py-spiffe (on grpcio, gRPC C-core) against our Workload API.

Usage: py_spiffe_driver.py SOCKET TRUST_DOMAIN FEDERATED_TRUST_DOMAIN AUDIENCE

Prints one JSON object per line on stdout; the Rust test asserts on them.
Reads commands on stdin: after printing the "watching" line it waits for
"rotated" and then for the watch to deliver a different leaf.
No check is made here that the Rust side could not make: this script only
reports what py-spiffe saw, and exits non-zero on any unexpected error.
"""

import hashlib
import json
import sys
import threading

from cryptography.hazmat.primitives.serialization import Encoding

from spiffe import JwtSvid, TrustDomain, WorkloadApiClient
from spiffe.workloadapi.errors import ValidateJwtSvidError

TIMEOUT = 10.0


def emit(**fields):
    print(json.dumps(fields), flush=True)


def serial(svid):
    """The SHA-256 of the leaf certificate's DER."""
    return hashlib.sha256(svid.leaf.public_bytes(Encoding.DER)).hexdigest()


def main():
    socket, td, federated, audience = sys.argv[1:5]
    client = WorkloadApiClient("unix:" + socket, default_timeout=TIMEOUT)

    svid = client.fetch_x509_svid()
    emit(step="x509_svid", spiffe_id=str(svid.spiffe_id), serial=serial(svid),
         chain=len(svid.cert_chain))

    bundles = client.fetch_x509_bundles()
    emit(step="x509_bundles",
         trust_domains=sorted(str(b.trust_domain) for b in bundles.bundles),
         authorities=len(bundles.get_bundle_for_trust_domain(TrustDomain(td)).x509_authorities))

    ctx = client.fetch_x509_context()
    emit(step="x509_context",
         spiffe_ids=[str(s.spiffe_id) for s in ctx.x509_svids],
         default=str(ctx.default_svid.spiffe_id),
         trust_domains=sorted(str(b.trust_domain) for b in ctx.x509_bundle_set.bundles))

    jwt = client.fetch_jwt_svid(audience={audience})
    emit(step="jwt_svid", spiffe_id=str(jwt.spiffe_id), audience=sorted(jwt.audience),
         token=jwt.token)

    validated = client.validate_jwt_svid(jwt.token, audience)
    emit(step="validate_right_audience", spiffe_id=str(validated.spiffe_id))
    try:
        client.validate_jwt_svid(jwt.token, "someone-else")
        emit(step="validate_wrong_audience", refused=False, error="")
    except ValidateJwtSvidError as e:
        emit(step="validate_wrong_audience", refused=True, error=str(e))

    jwt_bundles = client.fetch_jwt_bundles()
    own = jwt_bundles.get_bundle_for_trust_domain(TrustDomain(td))
    offline = JwtSvid.parse_and_validate(jwt.token, own, {audience})
    emit(step="jwt_bundles",
         trust_domains=sorted(str(b.trust_domain) for b in jwt_bundles.bundles),
         key_ids=sorted(own.jwt_authorities.keys()),
         offline_spiffe_id=str(offline.spiffe_id))

    seen = []
    changed = threading.Event()
    errors = []

    def on_success(context):
        seen.append(serial(context.default_svid))
        if len(set(seen)) > 1:
            changed.set()

    def on_error(err):
        errors.append(str(err))
        changed.set()

    first = threading.Event()

    def on_first(context):
        on_success(context)
        first.set()

    handler = client.stream_x509_contexts(on_first, on_error, retry_connect=False)
    if not first.wait(TIMEOUT):
        emit(step="watching", error="no first update", errors=errors)
        return 1
    emit(step="watching", serial=seen[0])
    command = sys.stdin.readline().strip()
    if command != "rotated":
        emit(step="rotation", error="unexpected command " + command)
        return 1
    got = changed.wait(TIMEOUT)
    handler.cancel()
    emit(step="rotation", changed=got and not errors, serials=seen, errors=errors)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
