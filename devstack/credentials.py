"""Credentials the way ext-authz reads them: one directory per profile, shaped like a mounted
Kubernetes Secret (`access_key_id`, `secret_access_key`), readable by the owner only."""

import os
from pathlib import Path


def write_secret(directory: Path, access_key: str, secret_key: str):
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name, value in (("access_key_id", access_key), ("secret_access_key", secret_key)):
        path = directory / name
        path.write_text(value + "\n")
        os.chmod(path, 0o600)
