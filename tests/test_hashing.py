from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from capi_pipeline.hashing import HASHED_KEYS, is_sha256_hex, sha256_hex

TEST_EMAIL_SHA = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"


@pytest.mark.parametrize("value, expected", [
    ("test@example.com", TEST_EMAIL_SHA),
    ("16505551212", hashlib.sha256(b"16505551212").hexdigest()),
    ("valéry", hashlib.sha256("valéry".encode()).hexdigest()),
    ("m", "62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a"),
    ("f", "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111"),
    ("us", "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"),
    (TEST_EMAIL_SHA, TEST_EMAIL_SHA),
    (TEST_EMAIL_SHA.upper(), TEST_EMAIL_SHA),
    ("098f6bcd4621d373cade4e832627b4f6", hashlib.sha256(b"098f6bcd4621d373cade4e832627b4f6").hexdigest()),  # MD5
    (None, None),
])
def test_sha256_golden(value, expected):
    assert sha256_hex(pd.Series([value], dtype=object)).tolist() == [expected]


@pytest.mark.parametrize("value, expected", [
    (TEST_EMAIL_SHA, True), (TEST_EMAIL_SHA.upper(), True), (TEST_EMAIL_SHA[:-1], False), (TEST_EMAIL_SHA + "0", False),
    ("g" * 64, False), ("098f6bcd4621d373cade4e832627b4f6", False), (None, False), (12, False), (" " + TEST_EMAIL_SHA, False),
])
def test_is_sha256_hex(value, expected):
    assert is_sha256_hex(pd.Series([value], dtype=object)).tolist() == [expected]


def test_keeps_index_and_dedupes():
    s = pd.Series(["a", None, "a", "b"], index=[10, 11, 12, 13], dtype=object)
    out = sha256_hex(s)
    assert out.index.tolist() == [10, 11, 12, 13]
    assert out[10] == out[12] == hashlib.sha256(b"a").hexdigest() and out[11] is None


def test_hashed_keys():
    assert HASHED_KEYS == ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id")


@given(st.text(min_size=1))
def test_never_double_hashes(text):
    once = sha256_hex(pd.Series([text], dtype=object))
    assert sha256_hex(once).tolist() == once.tolist()
    assert is_sha256_hex(once).all()
