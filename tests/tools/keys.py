#!/usr/bin/env python3
"""Test keys made independently of treeport, with Python's `cryptography`,
`hashlib.scrypt` and PyNaCl.

    keys.py cosign OUT      OUT.key: cosign's encrypted format (scrypt, then
                            NaCl secretbox over the PKCS#8 key, in an
                            ENCRYPTED SIGSTORE PRIVATE KEY block), the
                            passphrase from $KEY_PASSWORD; OUT.pub: the
                            public key (SPKI PEM), as `cosign
                            generate-key-pair` writes them
    keys.py ec OUT          an unencrypted P-256 key (PKCS#8) and OUT.pub
    keys.py ed25519 OUT     an Ed25519 key (PKCS#8), a type cosign's ECDSA
    keys.py rsa OUT         an RSA key (PKCS#8)     verifiers do not take
"""

import base64
import hashlib
import json
import os
import sys

import nacl.secret
import nacl.utils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def pem(label, der):
    b = base64.b64encode(der).decode()
    lines = [b[i : i + 64] for i in range(0, len(b), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def pkcs8(key):
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def spki(key):
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def encrypt(der, password):
    # go-tuf's `encrypted` package, cosign's defaults: N=32768, r=8, p=1.
    salt = os.urandom(32)
    n, r, p = 32768, 8, 1
    key = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 << 20)
    nonce = nacl.utils.random(24)
    sealed = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
    b64 = lambda x: base64.b64encode(x).decode()
    doc = {
        "kdf": {"name": "scrypt", "params": {"N": n, "r": r, "p": p}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }
    return json.dumps(doc).encode()


def main():
    kind, out = sys.argv[1], sys.argv[2]
    if kind in ("cosign", "ec"):
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        sys.exit(f"unknown kind {kind}")
    if kind == "cosign":
        body = encrypt(pkcs8(key), os.environ["KEY_PASSWORD"].encode())
        text = pem("ENCRYPTED SIGSTORE PRIVATE KEY", body)
    else:
        text = pem("PRIVATE KEY", pkcs8(key))
    with open(out + ".key", "w") as f:
        f.write(text)
    with open(out + ".pub", "w") as f:
        f.write(pem("PUBLIC KEY", spki(key)))


if __name__ == "__main__":
    main()
