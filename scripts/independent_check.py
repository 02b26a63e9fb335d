#!/usr/bin/env python3
"""Independent check of kill events and TRACE addenda, with nothing but Python's json and `cryptography`.

    python3 scripts/independent_check.py JWKS DOCUMENTS.ndjson [EXPECTED_CANONICAL.ndjson]

Every document and the JWKS must be strict JSON (docs/spec.md#6-strict-documents): no key twice in one
object, nesting at most 64 deep. For every document: the canonical JSON of the document without its
signature (docs/spec.md#5-canonical-json-and-signatures: json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=True)) equals the expected bytes when given;
the kid is the RFC 7638 thumbprint of a key in the JWKS; the Ed25519 signature verifies; a kill event's
event_id is sha256 of canonical {agent_id, epoch, action}; addenda chain per stream from sequence 1 with
prev_hash = sha256 of the previous addendum's canonical JSON including its signature.
Prints one line per problem and a summary; exits 1 when anything is wrong, 2 when the JWKS is unusable.
"""
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


MAX_DEPTH = 64


class NotStrict(ValueError):
    pass


def no_duplicates(pairs):
    # json.loads keeps the last of two equal keys; a signature over that value would vouch for a text
    # that a parser keeping the first one reads differently
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise NotStrict(f"duplicate key {json.dumps(key)}")
        seen.add(key)
    return dict(pairs)


def strict_loads(text):
    try:
        value = json.loads(text, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise NotStrict(f"nesting deeper than {MAX_DEPTH}") from None
    except NotStrict:
        raise
    except ValueError:
        raise NotStrict("not valid JSON") from None
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            raise NotStrict(f"nesting deeper than {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in children)
    return value


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def thumbprint(jwk):
    members = canonical({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]})
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        try:
            jwks = strict_loads(f.read())
        except NotStrict as e:
            print(f"{argv[1]}: {e}", file=sys.stderr)
            return 2
        keys = {thumbprint(k): Ed25519PublicKey.from_public_bytes(b64url_decode(k["x"])) for k in jwks["keys"]}
    with open(argv[2], encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    expected = None
    if len(argv) == 4:
        with open(argv[3], encoding="utf-8") as f:
            expected = [line for line in f.read().split("\n") if line]
        if len(expected) != len(lines):
            print(f"{argv[3]}: {len(expected)} canonical lines for {len(lines)} documents")
            return 1
    problems = 0
    tips = {}
    for n, line in enumerate(lines, start=1):
        try:
            doc = strict_loads(line)
        except NotStrict as e:
            print(f"#{n}: {e}")
            problems += 1
            continue
        if not isinstance(doc, dict):
            print(f"#{n}: not a JSON object")
            problems += 1
            continue
        unsigned = {k: v for k, v in doc.items() if k != "signature"}
        signed_bytes = canonical(unsigned)
        if expected is not None and signed_bytes != expected[n - 1]:
            print(f"#{n}: canonical JSON differs from the expected bytes")
            problems += 1
        kid = doc.get("issuer", {}).get("kid")
        if kid not in keys:
            print(f"#{n}: kid {kid} is not in the JWKS")
            problems += 1
        else:
            try:
                keys[kid].verify(b64url_decode(doc["signature"]), signed_bytes.encode("utf-8"))
            except (InvalidSignature, KeyError, ValueError):
                print(f"#{n}: signature does not verify")
                problems += 1
        if doc["type"] == "killswitch.kill-event/v1":
            want = "sha256:" + hashlib.sha256(canonical({"agent_id": doc["agent_id"], "epoch": doc["epoch"], "action": doc["action"]}).encode()).hexdigest()
            if doc["event_id"] != want:
                print(f"#{n}: event_id is not sha256 of canonical {{agent_id, epoch, action}}")
                problems += 1
        elif doc["type"] == "killswitch.trace-addendum/v1":
            chain = doc["chain"]
            seq, prev = tips.get(chain["stream"], (0, "genesis"))
            if chain["sequence_number"] != seq + 1 or chain["prev_hash"] != prev:
                print(f"#{n}: stream {chain['stream']} sequence {chain['sequence_number']} does not follow sequence {seq}")
                problems += 1
            tips[chain["stream"]] = (chain["sequence_number"], "sha256:" + hashlib.sha256(canonical(doc).encode()).hexdigest())
        else:
            print(f"#{n}: unknown document type {doc['type']!r}")
            problems += 1
    print(f"independent check: {len(lines)} documents, {problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
