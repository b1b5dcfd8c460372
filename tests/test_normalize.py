from __future__ import annotations

import datetime as dt
import hashlib
import random
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings, strategies as st

from capi_pipeline.normalize import (NEVER_HASHED_KEYS, NormalizeOptions, RawField, explain, normalize_key,
                                     normalize_user_data)

OPT = NormalizeOptions(hash=False, today=dt.date(2026, 11, 23))
H = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731


def one(key, value, country=None, options=OPT):
    c = None if country is None else pd.Series([country], dtype=object)
    norm, why = normalize_key(key, pd.Series([value], dtype=object), country=c, options=options)
    return norm.iloc[0], why.iloc[0]


CASES = {
    "em": [(" Test@Example.com ", "test@example.com"), ("JOHN.DOE+tag@Mail.CO.UK", "john.doe+tag@mail.co.uk"),
           ("a@b.c", "a@b.c"), ("no-at-sign.com", None), ("two@@x.com", None), ("sp ace@x.com", None),
           ("x@nodot", None), ("@x.com", None), ("x@.com", None), ("ÉLODIE@exemple.fr", "élodie@exemple.fr"),
           ("\tuser@example.org\n", "user@example.org"), ("", None), ("   ", None), (None, None),
           ("user@example.com.", None), ("user@example..com", None), ("user@.example.com", None),
           ("user@sub.example.com", "user@sub.example.com")],
    "fn": [("Valéry", "valéry"), ("O'Brien", "obrien"), ("Müller-Lüdenscheidt", "müllerlüdenscheidt"),
           ("  JOHN ", "john"), ("Mary Jane", "maryjane"), ("J.R.", "jr"), ("José", "josé"), ("정", "정"),
           ("山田", "山田"), ("Zoë", "zoë"), ("Jean-Luc", "jeanluc"), ("Anne2", "anne"), ("!!!", None),
           ("Ｊｏｈｎ", "ｊｏｈｎ"), ("Cafe\u0301", "café"), ("d'Artagnan", "dartagnan"),
           # vowel signs are combining marks, not letters: they stay
           ("प्रिया", "प्रिया"), ("தமிழ்செல்வன்", "தமிழ்செல்வன்"), ("N/A", None), ("null", None), ("Nan", "nan"),
           # apostrophes Unicode files as letters, and the Arabic stretch, go like "'" does; Japanese ー 々 stay
           ("Мар\u02bcяна", "маряна"), ("Мар'яна", "маряна"), ("مح\u0640مد", "محمد"), ("ローラ", "ローラ"),
           ("佐々木", "佐々木")],
    "ct": [("New York", "newyork"), ("São Paulo", "sãopaulo"), ("Saint-Étienne", "saintétienne"),
           ("MÜNCHEN", "münchen"), ("Los Angeles 90001", "losangeles"), ("St. Louis", "stlouis"), ("東京", "東京"),
           ("  paris ", "paris"), ("Winston-Salem", "winstonsalem"), ("O'Fallon", "ofallon"), ("123", None),
           ("Zürich", "zürich"), ("Montréal", "montréal"), ("Rio de Janeiro", "riodejaneiro"), ("Köln", "köln"),
           ("नई दिल्ली", "नईदिल्ली"), ("กรุงเทพมหานคร", "กรุงเทพมหานคร"), ("Unknown", None)],
    "ge": [("M", "m"), ("female", "f"), ("Male", "m"), ("F", "f"), ("woman", "f"), ("Mr.", "m"), ("Mrs", "f"),
           ("Ms.", "f"), ("Homme", "m"), ("femme", "f"), ("männlich", "m"), ("weiblich", "f"), ("Frau", "f"),
           ("masculino", "m"), ("feminino", "f"), ("男", "m"), ("女", "f"), ("unknown", None), ("x", None),
           ("other", None), ("Kvinna", "f"), ("Dam", "f"), ("Kvinde", "f"), ("Mand", "m"), ("Vrouw", "f"),
           ("Nainen", "f"), ("Mies", "m"), ("Mężczyzna", "m"), ("Kobieta", "f"), ("Sig.ra", "f"), ("Signore", "m"),
           ("Женщина", "f"), ("Мужчина", "m")],
    "db": [("1985-07-14", "19850714"), ("19850714", "19850714"), ("07/14/1985", "19850714"),
           ("14/07/1985", "19850714"), ("03/04/1985", "19850304"), ("14.07.1985", "19850714"),
           ("1985/07/14", "19850714"), ("1985-07-14T00:00:00", "19850714"), ("July 14, 1985", "19850714"),
           ("14 Jul 1985", "19850714"), ("1985-02-30", None), ("1899-12-31", None), ("2030-01-01", None),
           ("07/14/85", None), ("not a date", None), ("13/13/1985", None), (dt.date(1990, 1, 2), "19900102"),
           (dt.datetime(1990, 1, 2, 3, 4), "19900102"), (pd.Timestamp("2000-02-29"), "20000229"),
           (19850714, "19850714")],
    "country": [("US", "us"), ("usa", "us"), ("U.S.A.", "us"), ("United States", "us"), ("America", "us"),
                ("UK", "gb"), ("Great Britain", "gb"), ("England", "gb"), ("United Kingdom", "gb"),
                ("Deutschland", "de"), ("DEU", "de"), ("Germany", "de"), ("Brasil", "br"), ("España", "es"),
                ("Nippon", "jp"), ("日本", "jp"), ("Japan", "jp"), ("France", "fr"), ("AUS", "au"),
                ("Australia", "au"), ("Canada", "ca"), ("Narnia", None), ("ZZ", None), ("NA", "na"), ("N/A", None),
                ("n.a.", None), ("NULL", None)],
    "external_id": [(" ABC 123 ", "abc123"), ("loyalty-42", "loyalty-42"), ("X\tY", "xy"), ("", None),
                    (12345, "12345"), (123.0, "123"), ("Ä1", "ä1"), ("id:9", "id:9"), ("  a  b ", "ab"),
                    ("UPPER", "upper"), ("mixed Case", "mixedcase"), ("0001", "0001"), ("a\u00a0b", "ab"),
                    ("-", None), ("N/A", None), ("null", None), ("x" * 100, "x" * 100),
                    ("\u200bAB12", "ab12")],
}


@pytest.mark.parametrize("key, value, expected", [(k, v, e) for k, cases in CASES.items() for v, e in cases])
def test_key_golden(key, value, expected):
    assert one(key, value, options=NormalizeOptions(hash=True, today=dt.date(2026, 11, 23)))[0] == expected \
        if key == "external_id" else one(key, value)[0] == expected


def test_ln_same_rules_as_fn():
    for value, expected in CASES["fn"]:
        assert one("ln", value)[0] == expected


@pytest.mark.parametrize("value, country, expected", [
    ("(650)555-1212", "us", "16505551212"), ("+44 20 7946 0958", None, "442079460958"),
    ("020 7946 0958", "gb", "442079460958"), ("650.555.1212", "us", "16505551212"),
    ("1-650-555-1212", "us", "16505551212"), ("(650) 555-1212 x123", "us", "16505551212"),
    ("650-555-1212 ext. 12", "us", "16505551212"), ("011 44 20 7946 0958", "us", "442079460958"),
    ("0044 20 7946 0958", "gb", "442079460958"), ("(416) 555-0199", "ca", "14165550199"), ("(416) 364-0199", "ca", "14163640199"),
    ("030 12345678", "de", "493012345678"), ("+49 30 12345678", "us", "493012345678"),
    ("01 23 45 67 89", "fr", "33123456789"), ("06 12 34 56 78", "fr", "33612345678"),
    ("(11) 91234-5678", "br", "5511912345678"), ("03-1234-5678", "jp", "81312345678"),
    ("090-1234-5678", "jp", "819012345678"), ("02 9876 5432", "au", "61298765432"),
    ("0412 345 678", "au", "61412345678"), ("555-1212", "us", None), ("123", "us", None), ("abc", "us", None),
    (16505551212.0, "us", "16505551212"), ("6505551212", None, "16505551212"),
    ("+1 650 555 1212 #12", "gb", "16505551212"),
    # a float column's CSV text is its integer; only that exact shape
    ("6505551212.0", "us", "16505551212"), ("2079460958.0", "gb", "442079460958"), ("650555121.20", "us", None),
])
def test_phone_golden(value, country, expected):
    assert one("ph", value, country)[0] == expected


@pytest.mark.parametrize("value, country, expected", [
    ("California", "us", "ca"), ("CA", "us", "ca"), ("calif.", "us", "ca"), (" new  york ", "us", "ny"),
    ("District of Columbia", "us", "dc"), ("Puerto Rico", "us", "pr"), ("GU", "us", "gu"), ("Québec", "ca", "qc"),
    ("Ontario", "ca", "on"), ("BC", "ca", "bc"), ("Bavaria", "us", "bavaria"), ("Bayern", "de", "bayern"),
    ("Île-de-France", "fr", "îledefrance"), ("N.S.W.", "au", "nsw"), ("Texas", None, "tx"), ("Alberta", None, "ab"),
    ("Wash.", "us", "wa"), ("Greater London", None, "greaterlondon"), ("ON", None, "on"), ("SP", None, "sp"),
    ("England", None, "england"), ("Québec", None, "qc"), ("...", "us", None), ("-", None, None),
    ("Newfoundland & Labrador", "ca", "nl"), ("N. Carolina", "us", "nc"), ("So. Dakota", "us", "sd"), ("W Virginia", None, "wv"),
    ("N Dakota", "us", "nd"), ("S. Carolina", "us", "sc"), ("No Name", "us", "noname"), ("महाराष्ट्र", "in", "महाराष्ट्र"), ("N/A", "us", None),
])
def test_state_golden(value, country, expected):
    assert one("st", value, country, NormalizeOptions(hash=False, default_country=None))[0] == expected


@pytest.mark.parametrize("value, country, expected", [
    ("94035-1234", "us", "94035"), ("940351234", "us", "94035"), ("94035 1234", "us", "94035"),
    (" 94035", "us", "94035"), ("2134", "us", "02134"), (2134, "us", "02134"), (94035.0, "us", "94035"),
    ("123", "us", "123"), ("9403", "us", "09403"), ("501", "us", "00501"), (501, "us", "00501"),
    ("988", "us", "00988"), ("02134\u20131234", "us", "02134"), ("02134\u20111234", None, "02134"),
    ("N/A", "us", None), ("A\u00b4", "us", "\u00e1"),  # NFKC splits the acute off; NFC joins it again ("ABCDE", "us", "abcde"), ("M1 1AE", "gb", "m11ae"),
    ("K1A 0B1", "ca", "k1a0b1"), ("75018", "fr", "75018"), ("01310-100", "br", "01310100"),
    ("100-0001", "jp", "1000001"), ("2000", "au", "2000"), ("94035", None, "94035"), ("94035-1234", None, "94035"),
    ("94035-12", "us", "94035"), ("SW1A 1AA", "us", "sw1a1aa"), ("01310-100", "us", "01310"),
    ("--", "us", None),
    # what is left of an unshaped US value goes through the US rules once more: a normalized zip stays as it is
    ("4#689", "us", "04689"), ("46\t19", "us", "04619"), ("\u2013865", "us", "00865"), ("94035.1234", "us", "94035"),
    ("9403 51234", "us", "94035"), ("12.3", "us", "123"), ("4#689", "gb", "4689"),
    # a float column's CSV text is its integer ("94035.0" is no 6-digit zip, "501.0" no "05010")
    ("94035.0", "us", "94035"), ("501.0", "us", "00501"), ("2134.0", "us", "02134"), ("10115.0", "de", "10115"),
    ("1.0", "us", "1"),
    # the US ZIP system's other countries take the US rules
    ("00730-1234", "pr", "00730"), ("730", "pr", "00730"), ("96910-1234", "gu", "96910"), ("802", "vi", "00802"),
    ("96799", "as", "96799"), ("96950 1234", "mp", "96950"), ("730", "mx", "730"),
])
def test_zip_golden(value, country, expected):
    assert one("zp", value, country)[0] == expected


@pytest.mark.parametrize("key, value, expected", [
    ("client_ip_address", " 203.0.113.7 ", "203.0.113.7"), ("client_ip_address", "2001:db8::1", "2001:db8::1"),
    ("client_ip_address", "999.1.1.1", None), ("client_ip_address", "10.1.2.3", "10.1.2.3"),
    ("client_ip_address", "0.0.0.0", None), ("client_ip_address", "127.0.0.1", None),
    ("client_ip_address", "169.254.1.1", None), ("client_ip_address", "224.0.0.1", None),
    ("client_ip_address", "255.255.255.255", None), ("client_ip_address", "::", None),
    ("client_ip_address", "::1", None), ("client_ip_address", "fe80::1%eth0", None),
    ("client_ip_address", "fe80::1", None), ("client_ip_address", "::ffff:127.0.0.1", None),
    ("client_ip_address", "::ffff:203.0.113.7", "::ffff:203.0.113.7"), ("client_ip_address", "ff02::1", None), ("fbc", "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890",
                                                  "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890"),
    ("fbp", "fb.1.1596403881668.1116446470", "fb.1.1596403881668.1116446470"), ("fbp", "1596403881668", None),
    ("lead_id", "123456789", "123456789"), ("lead_id", 123456789.0, "123456789"), ("lead_id", "12a", None),
    ("madid", "38400000-8cf0-11bd-b23e-10b96e40000d", "38400000-8cf0-11bd-b23e-10b96e40000d"),
    ("madid", "00000000-0000-0000-0000-000000000000", None), ("madid", "not-a-uuid", None),
    ("anon_id", " abc ", "abc"), ("client_user_agent", "Mozilla/5.0", "Mozilla/5.0"),
])
def test_never_hashed_golden(key, value, expected):
    assert one(key, value)[0] == expected


def test_prehashed_and_never_hashed_keys():
    sha = H("test@example.com")
    res = normalize_user_data([
        RawField("em", pd.Series(["Test@Example.com", sha.upper(), "bad"])),
        RawField("ph", pd.Series(["not-hex", sha, None]), prehashed=True),
        RawField("client_ip_address", pd.Series(["1.2.3.4", None, None])),
    ], NormalizeOptions(), with_reasons=True)
    assert res.values["em"].tolist() == [sha, sha, None]
    assert res.values["ph"].tolist() == [None, sha, None]
    assert res.values["client_ip_address"].tolist() == ["1.2.3.4", None, None]
    assert res.prehashed["em"] == 1 and res.hashed["em"] == 1 and res.prehashed["ph"] == 1
    assert res.drops[("em", "invalid_email")] == 1 and res.drops[("ph", "not_sha256")] == 1
    assert res.field_reasons.tolist() == [("ph:not_sha256",), (), ("em:invalid_email",)]
    assert res.row_rejection.tolist() == [None, None, "no_customer_information"]
    assert res.present_before["em"] == 3 and res.present_after["em"] == 2


def test_md5_is_not_passed_through():
    md5 = "098f6bcd4621d373cade4e832627b4f6"
    res = normalize_user_data([RawField("external_id", pd.Series([md5]))], NormalizeOptions())
    assert res.values["external_id"].iloc[0] == H(md5)


def test_multi_value_dedup_and_lists():
    res = normalize_user_data([
        RawField("em", pd.Series(["A@x.com", "b@x.com", None])),
        RawField("em", pd.Series([" a@x.com", "c@x.com", "bad"])),
        RawField("ph", pd.Series([["650 555 1212", "+1 (650) 555-1212", "+44 20 7946 0958"], None, []])),
    ], NormalizeOptions(hash=False))
    assert res.values["em"].tolist() == ["a@x.com", ["b@x.com", "c@x.com"], None]
    assert res.values["ph"].tolist() == [["16505551212", "442079460958"], None, None]
    hashed = normalize_user_data([RawField("em", pd.Series(["A@x.com"])), RawField("em", pd.Series(["a@x.com"]))],
                                 NormalizeOptions())
    assert hashed.values["em"].tolist() == [H("a@x.com")]


def test_row_rejection_and_partner_pair():
    res = normalize_user_data([
        RawField("fn", pd.Series(["Ann", "Ann", None, "Ann", None])),
        RawField("ge", pd.Series(["f", "f", "f", None, None])),
        RawField("em", pd.Series([None, "a@x.com", None, None, None])),
        RawField("partner_id", pd.Series([None, None, None, "R1", "R2"])),
        RawField("partner_name", pd.Series([None, None, None, "liveramp", None])),
    ], OPT, with_reasons=True)
    assert res.row_rejection.tolist() == ["baseline_invalid_combination", None, "baseline_invalid_combination",
                                          None, "no_customer_information"]
    assert res.values["partner_id"].tolist() == [None, None, None, "R1", None]
    assert res.field_reasons.iloc[4] == ("partner_id:partner_pair_incomplete",)
    assert res.drops[("partner_id", "partner_pair_incomplete")] == 1


def test_row_country_drives_phone_state_zip():
    res = normalize_user_data([
        RawField("country", pd.Series(["United Kingdom", None, "Canada"])),
        RawField("ph", pd.Series(["020 7946 0958", "(650) 555-1212", "416 364 0199"])),
        RawField("st", pd.Series(["Greater London", "calif", "Québec"])),
        RawField("zp", pd.Series(["M1 1AE", "94035-1234", "H2X 1Y4"])),
    ], NormalizeOptions(hash=False, default_country="US"))
    assert res.values["country"].tolist() == ["gb", None, "ca"]
    assert res.values["ph"].tolist() == ["442079460958", "16505551212", "14163640199"]
    assert res.values["st"].tolist() == ["greaterlondon", "ca", "qc"]
    assert res.values["zp"].tolist() == ["m11ae", "94035", "h2x1y4"]


def test_datetime64_column():
    s = pd.Series(pd.to_datetime(["1985-07-14", None]))
    assert normalize_key("db", s, country=None, options=OPT)[0].tolist() == ["19850714", None]


def test_external_id_unhashed_option():
    res = normalize_user_data([RawField("external_id", pd.Series([" AB c "]))],
                              NormalizeOptions(hash_external_id=False))
    assert res.values["external_id"].tolist() == ["AB c"] and res.hashed["external_id"] == 0


def test_never_hashed_even_with_hash_true():
    for key in NEVER_HASHED_KEYS:
        res = normalize_user_data([RawField(key, pd.Series(["1"]))], NormalizeOptions())
        assert res.values[key].iloc[0] in (None, "1") and res.hashed[key] == 0


def test_explain_golden():
    frame = pd.DataFrame({"em": [" A@x.com", "bad"], "ph": ["(650)555-1212", "020 7946 0958"],
                          "country": ["US", "UK"], "ge": ["F", "?"]})
    plain = explain(frame, NormalizeOptions(hash=False))
    assert plain.columns.tolist() == ["em", "ph", "country", "ge", "reasons"]
    assert plain.to_dict("records") == [
        {"em": "a@x.com", "ph": "16505551212", "country": "us", "ge": "f", "reasons": ""},
        {"em": None, "ph": "442079460958", "country": "gb", "ge": None,
         "reasons": "em:invalid_email; ge:invalid_gender"}]
    hashed = explain(frame, NormalizeOptions())
    assert hashed.iloc[0].tolist() == [H("a@x.com"), H("16505551212"), H("us"), H("f"), ""]
    multi = explain(pd.DataFrame({"em": [["a@x.com", "b@x.com"]]}), NormalizeOptions(hash=False))
    assert multi.iloc[0, 0] == '["a@x.com", "b@x.com"]'
    # the row's own verdict ends the reasons when the pipeline would quarantine the row
    rows = explain(pd.DataFrame({
        "em": ["p@x.com", None, "bad", None, None],
        "fn": [None, "Ann", None, None, None], "ge": [None, "f", None, None, None],
        "partner_id": ["XYZ", None, None, None, None],
        "client_ip_address": [None, None, None, '["8.8.8.8", "1.1.1.1"]', None]}), NormalizeOptions(hash=False))
    assert rows["reasons"].tolist() == [
        "partner_id:partner_pair_incomplete; row:partner_pair_incomplete", "row:baseline_invalid_combination",
        "em:invalid_email; row:no_customer_information", "client_ip_address:extra_values",
        "row:no_customer_information"]
    assert rows["em"].tolist()[0] == "p@x.com" and rows["client_ip_address"].tolist()[3] == "8.8.8.8"
    with pytest.raises(ValueError, match="column 2 is no user_data key") as err:  # by position: the name
        explain(pd.DataFrame({"em": ["a@x.com"], "jane@x.com": [1]}), NormalizeOptions())  # may be a value
    assert "jane" not in str(err.value)


IDEMPOTENT = ["em", "fn", "ln", "ct", "ge", "db", "country", "external_id", "zp", "st", "ph"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(IDEMPOTENT), st.one_of(st.text(max_size=20), st.sampled_from(
    [v for cases in CASES.values() for v, _ in cases if isinstance(v, str)])), st.sampled_from(["us", "gb", "de"]))
@example("zp", "4#689", "us").via("a US zip whose cleanup is a 4-digit zip")
@example("zp", "94035.1234", "us").via("a ZIP+4 with a dot")
@example("st", "\u0130\u02bc('a#", "us").via("a state whose cleanup folds to a code ('i\u0307a' -> 'ia')")
def test_idempotent(key, value, country):
    once = one(key, value, country)[0]
    if once is not None:
        if key == "ph":
            assert one(key, "+" + once, country)[0] == once
        else:
            assert one(key, once, country)[0] == once


def test_throughput_200k_messy_rows():
    rng = random.Random(7)
    n = 200_000

    def pick(options):
        return [rng.choice(options) for _ in range(n)]
    frame = {
        "em": [f"User{rng.randrange(150_000)}@Example.com " for _ in range(n)],
        "ph": [rng.choice(["(%03d) 555-%04d", "+1 %03d 555 %04d"]) % (rng.randrange(200, 999), rng.randrange(10_000))
               for _ in range(n)],
        "fn": pick(["Valéry", "O'Brien", "ANN", "José", None]), "ln": [f"Name{rng.randrange(20_000)}" for _ in range(n)],
        "ge": pick(["F", "male", "m", "?"]), "db": [f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(9)}"
                                                      for _ in range(n)],
        "ct": pick(["New York", "São Paulo", "Paris"]), "st": pick(["CA", "New York", "Québec"]),
        "zp": [f"{rng.randrange(10_000, 99_999)}-1234" for _ in range(n)], "country": pick(["US", "usa", "Canada"]),
        "external_id": [f"L{rng.randrange(10**6)}" for _ in range(n)],
    }
    fields = [RawField(k, pd.Series(v, dtype=object)) for k, v in frame.items()]
    t, cpu = time.perf_counter(), time.process_time()
    res = normalize_user_data(fields, NormalizeOptions())
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"\nnormalize+hash {n:,} rows: {n / took:,.0f} rows/s wall, {n / cpu:,.0f} rows/s of CPU time")
    assert len(res.values["em"]) == n


def test_with_reasons_false_same_values_and_counters():
    rng = random.Random(3)
    n = 2000
    frame = {
        "em": [rng.choice([f"U{i}@x.com", "bad", None, " a@b.co "]) for i in range(n)],
        "ph": [rng.choice(["(650) 555-1212", "+44 20 7946 0958", "555", None, "0044 20 7946 0958"]) for _ in range(n)],
        "ge": [rng.choice(["F", "?", None]) for _ in range(n)], "fn": [rng.choice(["Ann", None]) for _ in range(n)],
        "partner_id": [rng.choice(["R1", None]) for _ in range(n)],
        "partner_name": [rng.choice(["liveramp", None]) for _ in range(n)],
        "country": [rng.choice(["US", "UK", None, "Narnia"]) for _ in range(n)],
    }
    fields = [RawField(k, pd.Series(v, dtype=object)) for k, v in frame.items()]
    fast = normalize_user_data(fields, NormalizeOptions())
    full = normalize_user_data(fields, NormalizeOptions(), with_reasons=True)
    assert fast.field_reasons is None and full.field_reasons is not None
    assert {k: s.tolist() for k, s in fast.values.items()} == {k: s.tolist() for k, s in full.values.items()}
    for attr in ("drops", "present_before", "present_after", "prehashed", "hashed"):
        assert getattr(fast, attr) == getattr(full, attr)
    assert fast.row_rejection.tolist() == full.row_rejection.tolist()
    assert all(isinstance(r, tuple) for r in full.field_reasons) and any(full.field_reasons)


def test_py_space_is_str_isspace():
    from capi_pipeline.columns import PY_SPACE
    assert set(PY_SPACE) == {c for c in map(chr, range(0x110000)) if c.isspace()}


_ASCII = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=24)
_SHAPED = st.from_regex(r"[ \t\x0b\x1c]?[0-9a-zA-Z@._/ :\-]{0,20}[ \x1f]?", fullmatch=True)
_MONTH_WORDS = "(feb|february|februar|fevrier|febrero|fevereiro|de|mai|sept|okt|dez|xyz|[A-Za-z]{3,9})"
_DATES = st.from_regex(r"\d{1,4}[-/. ]?\d{1,2}[-/. ]?\d{1,4}( \d{1,2}:\d\d(:\d\d)?( [AaPp][Mm])?)?|"
                       r"\d{1,2} [A-Za-z]{3,9}\.? ?,?\d{4}|[A-Za-z]{3,9}\.? \d{1,2}(st|nd|rd|th)?,? \d{4}|"
                       rf"\d{{1,2}}(st|nd|rd|th|er|\.)?[ -](de )?{_MONTH_WORDS}\.?( de)?[ ,-]*\d{{4}}|"
                       rf"{_MONTH_WORDS}\.?[ -]\d{{1,2}}(st|nd|rd|th)?,?[ -]\d{{4}}",
                       fullmatch=True).filter(str.isascii)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["em", "fn", "ct", "zp", "external_id", "lead_id", "fbc", "madid", "client_ip_address", "db",
                        "st", "ge"]),
       st.lists(st.one_of(_ASCII, _SHAPED, _DATES, st.sampled_from(
           [v for cases in CASES.values() for v, _ in cases if isinstance(v, str)])), min_size=1, max_size=12),
       st.sampled_from(["us", "gb", None]), st.sampled_from(["mdy", "dmy"]))
def test_ascii_twins_equal_python_rules(key, values, region, order):
    """Every vectorized ASCII route gives what the Python rule gives (forced by marking nothing ASCII)."""
    from capi_pipeline.columns import Texts
    from capi_pipeline.normalize import _RULES
    texts = [v.strip() for v in values if v.strip()]
    if not texts:
        return
    py = np.array(texts + [None], dtype=object)[:-1]
    t = Texts.of(py)
    regions = np.array([region] * len(py), dtype=object)
    opts = NormalizeOptions(dob_order=order, today=dt.date(2026, 11, 23))
    rule = _RULES[key][0]
    python_only = Texts(t.py, t.arrow, np.zeros(len(py), dtype=bool))
    assert rule(t, regions, opts).tolist() == rule(python_only, regions, opts).tolist()


@pytest.mark.parametrize("key", NEVER_HASHED_KEYS)
def test_never_hashed_keys_send_one_value(key):
    """capi.md §3: arrays only for the hashed keys; several values of a never-hashed key -> the first one."""
    a, b = {"client_ip_address": ("203.0.113.7", "203.0.113.8"), "fbc": ("fb.1.1.a", "fb.1.1.b"),
            "fbp": ("fb.1.1.a", "fb.1.1.b"), "madid": ("6D92078A-8246-4BA4-AE5B-76104861E7DC",
                                                    "7D92078A-8246-4BA4-AE5B-76104861E7DC"),
            }.get(key, ("123", "456"))
    res = normalize_user_data([RawField(key, pd.Series([a, a, None])), RawField(key, pd.Series([b, None, b]))],
                              NormalizeOptions())
    if key in ("partner_id", "partner_name"):  # alone, each loses its pair
        return
    assert res.values[key].tolist() == [a, a, b]
    assert res.drops[(key, "extra_values")] == 1
    cells = normalize_user_data([RawField(key, pd.Series([f'["{a}", "{b}"]']))], NormalizeOptions())
    assert cells.values[key].tolist() == [a]
