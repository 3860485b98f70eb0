"""The SuperNode authentication key pair of a participant node, kept on the site's disk."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings

from orchestration.models import Node


def key_paths(node: Node) -> tuple[Path, Path]:
    directory = settings.DATA_DIR / "keys" / str(node.pk)
    return directory / "supernode_key", directory / "supernode_key.pub"


def private_key_path(node: Node) -> Path | None:
    private, _ = key_paths(node)
    return private if private.is_file() else None


def keypair_ensure(node: Node) -> str:
    """Create the node's P-384 key pair once (OpenSSH format, private key 0600); return the public key."""
    private, public = key_paths(node)
    if private.is_file() and public.is_file():
        return public.read_text().strip()
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP384R1())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
        )
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    public.write_text(f"{line} fedml-{node.external_id}\n")
    return public.read_text().strip()
