"""schemathesis hooks that sign every request the way an Ecco agent does.

Without them the fuzzer only ever reaches the 401 of a signed write. With them
it sends register, heartbeat, deregister and feedback requests that pass the
signature, timestamp and nonce checks, so that the handlers behind them are
fuzzed too. In writes, the path parameter naming a peer is set to the
signer's own peer id (acting on another agent's record is a 403, covered by
the router tests); reads keep the generated ids.

This is also a second, independent implementation of the signing rule in
docs/REGISTRY.md: if it drifts from the Rust one, signed writes start failing
and `.ci/run` notices.

Load with SCHEMATHESIS_HOOKS=signing_hooks and this directory on PYTHONPATH.
"""

import base64
import hashlib
import os
import time
import urllib.parse

import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DOMAIN = b"ecco/registry/request/v2"
SIGNATURE_PREFIX = b"ecco-sig-v1\0"
B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

KEY = Ed25519PrivateKey.generate()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def base58(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rest = divmod(number, 58)
        out = B58_ALPHABET[rest] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


def peer_id(key: Ed25519PrivateKey) -> str:
    """The libp2p peer id of an Ed25519 key: an identity multihash of the
    protobuf-encoded public key (type 1 = Ed25519), in base58btc."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    protobuf = b"\x08\x01\x12\x20" + raw
    return base58(b"\x00" + bytes([len(protobuf)]) + protobuf)


PEER_ID = peer_id(KEY)

# The registry's id, by base URL: signatures cover it.
REGISTRY_IDS = {}


def registry_id(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    if base not in REGISTRY_IDS:
        REGISTRY_IDS[base] = requests.get(f"{base}/health", timeout=10).json()["registry"]
    return REGISTRY_IDS[base]


class Sign(requests.auth.AuthBase):
    """Signs the prepared request: its exact method, path, query and body."""

    def __call__(self, request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        timestamp = str(int(time.time()))
        nonce = b64url(os.urandom(18))
        digest = b64url(hashlib.sha256(body).digest())
        registry = registry_id(request.url)
        message = (
            f"{request.method}\n{request.path_url}\n{digest}\n{timestamp}\n{nonce}\n{registry}"
        ).encode()
        signature = KEY.sign(SIGNATURE_PREFIX + bytes([len(DOMAIN)]) + DOMAIN + message)
        request.headers["x-ecco-agent"] = PEER_ID
        request.headers["x-ecco-timestamp"] = timestamp
        request.headers["x-ecco-nonce"] = nonce
        request.headers["x-ecco-signature"] = b64url(signature)
        return request


@schemathesis.hook
def before_call(context, case, kwargs):
    # Every phase (examples, coverage, fuzzing, stateful) passes through here.
    if case.method.upper() in ("PUT", "POST", "DELETE"):
        if case.path_parameters and "peer_id" in case.path_parameters:
            case.path_parameters["peer_id"] = PEER_ID
        kwargs["auth"] = Sign()
