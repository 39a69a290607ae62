"""Fetches what py-spiffe (on grpcio, gRPC C-core) gets from an agent.

Usage: netns_py_spiffe.py SOCKET TRUST_DOMAIN

Prints one JSON object on stdout, for tests/netns.rs, tests/up.rs and
tests/federation.rs to assert on: the uid it ran as, the SPIFFE IDs and
hints of its X509-SVIDs, the SHA-256 of the default leaf, the trust
domains of the X.509 bundles (its own and the federated ones), and the
authority count of TRUST_DOMAIN's bundle. A refusal is reported as
{"error": ...} with exit code 0; any other failure exits non-zero. No
check is made here.
"""

import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.serialization import Encoding

from spiffe import TrustDomain, WorkloadApiClient

TIMEOUT = 10.0


def main():
    socket, td = sys.argv[1:3]
    client = WorkloadApiClient("unix:" + socket, default_timeout=TIMEOUT)
    try:
        ctx = client.fetch_x509_context()
    except Exception as e:  # a refusal is a result, reported as such
        print(json.dumps({"uid": os.getuid(), "error": str(e)}), flush=True)
        return 0
    bundles = client.fetch_x509_bundles()
    own = bundles.get_bundle_for_trust_domain(TrustDomain(td))
    leaf = ctx.default_svid.leaf.public_bytes(Encoding.DER)
    print(json.dumps({
        "uid": os.getuid(),
        "spiffe_ids": sorted(str(s.spiffe_id) for s in ctx.x509_svids),
        "hints": sorted(getattr(s, "hint", None) or "" for s in ctx.x509_svids),
        "serial": hashlib.sha256(leaf).hexdigest(),
        "trust_domains": sorted(str(b.trust_domain) for b in bundles.bundles),
        "authorities": len(own.x509_authorities) if own else 0,
    }), flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
