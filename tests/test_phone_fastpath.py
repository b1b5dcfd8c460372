"""The phone fast path must give exactly what phonenumbers gives (same digits, same drop/keep); the whole rule
(`phone_e164`) must give what `phone_reference` gives: phonenumbers, then the "00" international prefix."""
from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from capi_pipeline.phone import _SLOW, _phone_fast, _phone_fast_many, _phonenumbers, phone_e164, phone_reference

REGIONS = ["US", "CA", "GB", "DE", "FR", "BR", "JP", "AU"]
TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
         phonenumbers.PhoneNumberType.TOLL_FREE]
_EXAMPLES = [(r, phonenumbers.example_number_for_type(r, t)) for r in REGIONS for t in TYPES]
_EXAMPLES = [(r, e) for r, e in _EXAMPLES if e is not None]


@st.composite
def raw_phones(draw):
    src, ex = draw(st.sampled_from(_EXAMPLES))
    digits = list(phonenumbers.national_significant_number(ex))
    for _ in range(draw(st.integers(0, 3))):
        digits[draw(st.integers(0, len(digits) - 1))] = draw(st.sampled_from("0123456789"))
    digits = digits[:draw(st.integers(1, len(digits)))] if draw(st.booleans()) and draw(st.booleans()) else digits
    nsn = "".join(digits) + draw(st.text("0123456789", max_size=2))
    cc = str(ex.country_code)
    form = draw(st.sampled_from(["+{cc}{n}", "{n}", "0{n}", "1{n}", "90{n}", "{cc}{n}", "00{cc}{n}",
                                 "011{cc}{n}", "+{cc}0{n}"]))
    s = form.format(cc=cc, n=nsn)
    seps = draw(st.lists(st.sampled_from(["", "", "", " ", "-", ".", "(", ")", " - "]), min_size=len(s),
                         max_size=len(s)))
    s = "".join(sep + ch for sep, ch in zip(seps, s))
    s = draw(st.sampled_from(["", "(", " "])) + s + draw(st.sampled_from(["", "", ")", " x123", " ext. 12", "#12"]))
    region = draw(st.sampled_from(REGIONS + [None, "MX"]))
    return s, region


@settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw_phones())
def test_fast_path_equals_phonenumbers(pair):
    raw, region = pair
    got = _phone_fast(raw, region)
    if got is not _SLOW:
        assert got == _phonenumbers(raw, region)


@settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text("0123456789 +-().", min_size=1, max_size=20), st.sampled_from(REGIONS + [None]))
def test_fast_path_equals_phonenumbers_on_noise(raw, region):
    got = _phone_fast(raw, region)
    if got is not _SLOW:
        assert got == _phonenumbers(raw, region)


def test_fast_path_covers_common_shapes():
    shapes = [("(650) 555-1212", "US"), ("650.555.1212", "US"), ("1-650-555-1212", "US"), ("+1 650 555 1212", None),
              ("(416) 555-0199", "CA"), ("020 7946 0958", "GB"), ("+44 7911 123456", "FR"), ("030 12345678", "DE"),
              ("01 23 45 67 89", "FR"), ("(11) 91234-5678", "BR"), ("03-1234-5678", "JP"), ("090-1234-5678", "JP"),
              ("02 9876 5432", "AU"), ("0412 345 678", "AU"), ("+61 412 345 678", "US"),
              ("0044 20 7946 0958", "GB"), ("(650) 555-1212 x12", "US"), ("650-555-1212 ext. 12", "US"),
              ("0151/79609529", "DE"), ("+44 (0)7400 683241", "GB"), ("001-480-417-5900", "US"), ("N/A", "US"),
              ("0033 6 87 81 44 81", "FR"), ("(11) 91234-5678", "BR"), ("+81 (0)3-1234-5678", None)]
    for raw, region in shapes:
        got = _phone_fast(raw, region)
        assert got is not _SLOW, raw
        assert got == _phonenumbers(raw, region), raw


@pytest.mark.parametrize("region", REGIONS)
def test_nanp_and_country_metadata_assumptions(region):
    md = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if md.country_code == 1:  # the 11-digit "1..." shortcut relies on 11 digits being TOO_LONG
        assert max(md.general_desc.possible_length) == 10


def test_slow_path_runs_once_per_distinct_pair_and_agrees():
    raws = ["(650) 555-1212 X12", "+52 55 1234 5678", "+1 (650) 555-1212", "tel:+1-650-555-1212"]
    out, slow = phone_e164(raws, ["US", "GB", "CA", "US"])
    assert out == [phone_reference(r, g) for r, g in zip(raws, ["US", "GB", "CA", "US"])]
    assert slow == 3


def test_fast_path_equals_phonenumbers_bulk():
    """Many thousands of seeded random numbers (hypothesis is too slow for this volume)."""
    rng = random.Random(20261123)
    checked = 0
    cases = []
    for _ in range(30000):
        src, ex = rng.choice(_EXAMPLES)
        digits = list(phonenumbers.national_significant_number(ex))
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            digits[rng.randrange(len(digits))] = str(rng.randrange(10))
        if rng.random() < 0.2:
            digits = digits[:rng.randrange(1, len(digits) + 1)] + [str(rng.randrange(10))] * rng.randrange(0, 3)
        form = rng.choice(["+{cc}{n}", "{n}", "0{n}", "1{n}", "{cc}{n}", "00{cc}{n}", "011{cc}{n}", "+{cc}0{n}"])
        s = form.format(cc=ex.country_code, n="".join(digits))
        s = "".join(rng.choice(["", "", "", " ", "-", ".", "(", ")"]) + ch for ch in s)
        region = rng.choice(REGIONS + [None])
        cases.append((s, region))
    for (s, region), got in zip(cases, _phone_fast_many([c[0] for c in cases], [c[1] for c in cases])):
        if got is not _SLOW:
            checked += 1
            assert got == _phonenumbers(s, region), (s, region)
    assert checked > 5000


@pytest.mark.parametrize("raw, region, expected", [
    ("001-323-656-9083", "US", "13236569083"), ("011-1-323-656-9083", "US", "13236569083"),
    ("00 1 (323) 656-9083", "CA", "13236569083"), ("001 323 656 9083", None, "13236569083"),
    ("+1 (323) 656-9083", "US", "13236569083"), ("1-323-656-9083", "US", "13236569083"),
    ("(323) 656-9083 ext. 12", "US", "13236569083"), ("323.656.9083 x12", "US", "13236569083"),
    ("001-323-656-9083 x12", "US", "13236569083"), ("0044 20 7946 0958", "US", "442079460958"),
    ("011 44 20 7946 0958", "US", "442079460958"), ("0044 (0)20 7946 0958", "DE", "442079460958"),
    ("0081 3-1234-5678", "JP", "81312345678"), ("010 81 3-1234-5678", "JP", "81312345678"),
    ("0055 11 91234-5678", "BR", "5511912345678"), ("0061 2 9876 5432", "AU", "61298765432"),
    ("0011 61 2 9876 5432", "AU", "61298765432"), ("00 49 30 12345678", "FR", "493012345678"),
    ("001-555-555-5555", "US", None), ("00", "US", None), ("0012", "US", None), ("+001 323 656 9083", "US", None),
])
def test_international_prefix_00(raw, region, expected):
    assert phone_reference(raw, region) == expected
    assert phone_e164([raw], [region])[0] == [expected]


def test_whole_rule_equals_reference_bulk():
    """phone_e164 (fast path + phonenumbers + the 00 retry) against phone_reference, one number at a time."""
    rng = random.Random(11)
    cases = []
    for _ in range(4000):
        src, ex = rng.choice(_EXAMPLES)
        nsn = phonenumbers.national_significant_number(ex)
        if rng.random() < 0.3:
            nsn = nsn[:-1] + str(rng.randrange(10))
        form = rng.choice(["00{cc}{n}", "00 {cc} {n}", "011{cc}{n}", "(00{cc}) {n}", "00{cc}0{n}", "{n}", "0{n}"])
        s = form.format(cc=ex.country_code, n=nsn)
        cases.append((s, rng.choice(REGIONS + [None, "MX"])))
    out, _ = phone_e164([c[0] for c in cases], [c[1] for c in cases])
    assert out == [phone_reference(s, r) for s, r in cases]
    assert sum(o is not None for o in out) > 1000
