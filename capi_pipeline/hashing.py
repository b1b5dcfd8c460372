"""SHA-256 of normalized customer information, and strict "already hashed" detection.

Pure. Meta wants lowercase hex SHA-256 over the UTF-8 bytes of the normalized value (capi.md §3). Only a value that
is exactly 64 hex characters counts as already hashed; it is passed through lowercased, never hashed twice.
32-hex (MD5) strings are NOT treated as hashed (the SDKs pass them through, the docs ask for SHA-256).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd

__all__ = ["HASHED_KEYS", "is_sha256_hex", "sha256_hex", "sha256_hex_list"]

HASHED_KEYS: tuple[str, ...] = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id")

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

try:  # CPython's own SHA-256: same digests as OpenSSL's, about twice as fast per call on short values
    from _sha256 import sha256 as _sha256  # Python <= 3.11
except ImportError:  # pragma: no cover - depends on the interpreter build
    try:
        from _sha2 import sha256 as _sha256  # Python >= 3.12
    except ImportError:
        _sha256 = hashlib.sha256


def is_sha256_hex(values: pd.Series) -> pd.Series:
    """True where the value is a str of exactly 64 hex characters (any case)."""
    flags = [isinstance(v, str) and _HEX64.fullmatch(v) is not None for v in values.tolist()]
    return pd.Series(flags, index=values.index, dtype=bool)


def sha256_hex_list(values: list[str]) -> list[str]:
    """Hash a list of distinct normalized strings; 64-hex values pass through lowercased."""
    sha, hex64 = _sha256, _HEX64.fullmatch  # local names: this loop runs once per distinct value
    return [v.lower() if len(v) == 64 and hex64(v) else sha(v.encode("utf-8")).hexdigest() for v in values]


def sha256_hex(values: pd.Series) -> pd.Series:
    """SHA-256 hex of every str value, hashing each distinct value once; None/NaN stay None.

    A value that already is 64 hex characters is returned lowercased, not hashed again.
    """
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    table = np.array(sha256_hex_list([str(u) for u in uniques]) + [None], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype=object)
