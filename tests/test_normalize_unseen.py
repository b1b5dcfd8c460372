"""Golden table of messy inputs the normalizer was not written against, checked end to end through
`capi-pipeline normalize` over real CSV and parquet files, hashed and with --no-hash.

Every expected value is written from capi.md §3 (Meta's documented normalization) and the README's choices, not
from running the code: em trim+lowercase; ph E.164 digits with the country code; fn/ln/ct NFC lowercase letters
only (accents kept); ge m/f; db YYYYMMDD within 1900..today; st US/CA 2-letter code, else lowercase without
spaces/punctuation; zp US first 5 digits, else lowercase without spaces/dashes; country ISO alpha-2 lowercase;
never-hashed keys trimmed only. Hashed output = SHA-256 hex of the normalized value; 64-hex passes lowercased.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest

from capi_pipeline import cli
from capi_pipeline.normalize import NEVER_HASHED_KEYS, NormalizeOptions, RawField, normalize_user_data


class Case(NamedTuple):
    key: str
    raw: str
    expected: str | None  # normalized, unhashed; None: dropped
    country: str | None = None  # the row's raw country column
    default: str = "US"  # --default-country ("" = none)


def H(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


SHA = H("test@example.com")
C = Case

EMAIL = [
    C("em", "  Mary.Smith@Example.COM ", "mary.smith@example.com"),
    C("em", "JANE+promo@GMAIL.com", "jane+promo@gmail.com"),
    C("em", "first.last@sub.domain.co.uk", "first.last@sub.domain.co.uk"),
    C("em", "\tTAB@example.com\t", "tab@example.com"),
    C("em", "ÜSER@MÜNCHEN.DE", "üser@münchen.de"),
    C("em", "用户@例子.广告", "用户@例子.广告"),
    C("em", "user@example", None), C("em", "user@@example.com", None), C("em", "user name@example.com", None),
    C("em", "user@exa mple.com", None), C("em", "@example.com", None), C("em", "user@", None),
    C("em", "n/a", None), C("em", "user.example.com", None),
    C("em", SHA.upper(), SHA), C("em", SHA, SHA), C("em", SHA[:-1], None),
    C("em", "098F6BCD4621D373CADE4E832627B4F6", None),  # MD5 is no email and is not trusted as a hash
]
PHONE = [
    C("ph", "001-323-656-9083", "13236569083", "US"),
    C("ph", "011 1 323 656 9083", "13236569083", "US"),
    C("ph", "+1 (323) 656-9083", "13236569083", "US"),
    C("ph", "1-323-656-9083", "13236569083", "USA"),
    C("ph", "(323) 656-9083 ext. 12", "13236569083", "United States"),
    C("ph", "323.656.9083 x12", "13236569083", "U.S."),
    C("ph", "(323) 656-9083", "13236569083"),  # no country column: the default, US
    C("ph", "(323) 656-9083", None, default=""),  # no country at all: the country code is unknown
    C("ph", "001 323 656 9083", "13236569083", default=""),
    C("ph", "+44 20 7946 0958", "442079460958", default=""),
    C("ph", "0044 20 7946 0958", "442079460958", default=""),
    C("ph", "0044 20 7946 0958", "442079460958", "US"),
    C("ph", "020 7946 0958", "442079460958", "UK"),
    C("ph", "+44 (0)20 7946 0958", "442079460958", "GB"),
    C("ph", "07911 123456", "447911123456", "Great Britain"),
    C("ph", "030 12345678", "493012345678", "Deutschland"),
    C("ph", "0151 23456789", "4915123456789", "GER"),
    C("ph", "+49 (0)30 12345678", "493012345678", "DE"),
    C("ph", "01 23 45 67 89", "33123456789", "France"),
    C("ph", "06 12 34 56 78", "33612345678", "FR"),
    C("ph", "(11) 91234-5678", "5511912345678", "Brasil"),
    C("ph", "(21) 2345-6789", "552123456789", "BR"),
    C("ph", "0055 11 91234-5678", "5511912345678", "BR"),
    C("ph", "090-1234-5678", "819012345678", "Japan"),
    C("ph", "03-1234-5678", "81312345678", "Nippon"),
    C("ph", "0412 345 678", "61412345678", "Australia"),
    C("ph", "(02) 9876 5432", "61298765432", "AU"),
    C("ph", "555-0100", None, "US"), C("ph", "12345", None, "US"), C("ph", "0000000000", None, "US"),
    C("ph", "+1 555 555 5555", None, "US"), C("ph", "n/a", None, "US"), C("ph", "+44 20 7946", None, "GB"),
    C("ph", "123 456", None, "DE"),
    C("ph", H("13236569083"), H("13236569083")),
]
NAMES = [C(key, raw, exp) for key in ("fn", "ln") for raw, exp in [
    ("Zoë", "zoë"), ("ZOË", "zoë"), ("Zoe\u0308", "zoë"), ("O'Brien", "obrien"), ("O\u2019Brien", "obrien"),
    ("Jean-Luc", "jeanluc"), ("  María José ", "maríajosé"), ("Nguyễn", "nguyễn"), ("ÅSA", "åsa"),
    ("Straße", "straße"), ("Smith Jr.", "smithjr"), ("D'Angelo-Smith", "dangelosmith"), ("李", "李"),
    ("François", "françois"), ("JOÃO", "joão"), ("Владимир", "владимир"), ("Mc Donald", "mcdonald"),
    ("123", None), ("--", None)]]
GENDER = [C("ge", raw, exp) for raw, exp in [
    ("M", "m"), ("Male", "m"), ("MALE", "m"), ("f", "f"), ("Female", "f"), ("woman", "f"), ("man", "m"),
    (" F ", "f"), ("männlich", "m"), ("weiblich", "f"), ("masculin", "m"), ("féminin", "f"), ("FÉMININ", "f"),
    ("masculino", "m"), ("feminino", "f"), ("FEMININO", "f"), ("hombre", "m"), ("mujer", "f"), ("Herr", "m"),
    ("Frau", "f"), ("homme", "m"), ("femme", "f"), ("男性", "m"), ("女性", "f"), ("Mrs.", "f"), ("Mr", "m"),
    ("U", None), ("unknown", None), ("X", None), ("other", None), ("N/A", None), ("0", None), ("1", None),
    ("non-binary", None), ("?", None)]]
DOB = [C("db", raw, exp) for raw, exp in [
    ("1990-02-03", "19900203"), ("19900203", "19900203"), ("02/03/1990", "19900203"), ("3.2.1990", "19900203"),
    ("03.02.1990", "19900203"), ("3 Feb 1990", "19900203"), ("February 3, 1990", "19900203"),
    ("Feb 3 1990", "19900203"), ("3rd February 1990", "19900203"), ("03-Feb-1990", "19900203"),
    ("1990/2/3", "19900203"), ("1990-02-03 00:00:00", "19900203"), ("1990-02-03T00:00:00Z", "19900203"),
    ("2/3/1990 12:00:00 AM", "19900203"), ("3. Februar 1990", "19900203"), ("3 février 1990", "19900203"),
    ("3 de fevereiro de 1990", "19900203"), ("3 de febrero de 1990", "19900203"), ("1990年2月3日", "19900203"),
    ("13/02/1990", "19900213"), ("2/29/2000", "20000229"), ("1900-01-01", "19000101"),
    ("1990-02-30", None), ("02/30/1990", None), ("1899-12-31", None), ("2999-01-01", None), ("1990-13-01", None),
    ("00/00/0000", None), ("0000-00-00", None), ("03/02/90", None), ("1990", None), ("unknown", None),
    ("2/29/1900", None)]]
DOB_DMY = [C("db", raw, exp) for raw, exp in [
    ("02/03/1990", "19900302"), ("13/02/1990", "19900213"), ("02/13/1990", "19900213"), ("3.2.1990", "19900203"),
    ("1990-02-03", "19900203")]]
CITY = [C("ct", raw, exp) for raw, exp in [
    ("New York", "newyork"), ("São Paulo", "sãopaulo"), ("St. Louis", "stlouis"), ("NEW YORK CITY", "newyorkcity"),
    ("Frankfurt am Main", "frankfurtammain"), ("Saint-Denis", "saintdenis"), ("Düsseldorf", "düsseldorf"),
    ("Washington, D.C.", "washingtondc"), ("東京都", "東京都"), ("L'Aquila", "laquila"), ("Москва", "москва"),
    ("  paris  ", "paris"), ("Winston\u2013Salem", "winstonsalem"), ("Coeur d'Alene", "coeurdalene"),
    ("Québec City", "québeccity"), ("ZÜRICH", "zürich"), ("100", None)]]
STATE = [
    C("st", "California", "ca", "US"), C("st", "calif.", "ca", "US"), C("st", "CA", "ca", "US"),
    C("st", " ny ", "ny", "US"), C("st", "N.Y.", "ny", "US"), C("st", "New York", "ny", "USA"),
    C("st", "Washington D.C.", "dc", "US"), C("st", "Québec", "qc", "Canada"), C("st", "QC", "qc", "CA"),
    C("st", "Ontario", "on", "CA"), C("st", "Bayern", "bayern", "Deutschland"), C("st", "Bavaria", "bavaria", "GER"),
    C("st", "Île-de-France", "îledefrance", "France"), C("st", "São Paulo", "sãopaulo", "Brasil"),
    C("st", "SP", "sp", "BR"), C("st", "NSW", "nsw", "Australia"), C("st", "東京都", "東京都", "Japan"),
    C("st", "Greater London", "greaterlondon", "UK"),
    C("st", "Greater London", "greaterlondon", default=""), C("st", "ON", "on", default=""),
    C("st", "SP", "sp", default=""), C("st", "England", "england", default=""), C("st", "Texas", "tx", default=""),
    C("st", "tx", "tx", default=""), C("st", "British Columbia", "bc", default=""),
    C("st", "Bayern", "bayern", default=""), C("st", "Greater London", "greaterlondon", "Narnia"),
    C("st", "Greater London", "greaterlondon"), C("st", "ON", "on"), C("st", "Ontario", "on"),
    C("st", "England", "england"), C("st", "Texas", "tx"), C("st", "...", None, "US"),
]
ZIP = [
    C("zp", "94107-1234", "94107", "US"), C("zp", "94107", "94107", "US"), C("zp", "941071234", "94107", "US"),
    C("zp", "94107 1234", "94107", "US"), C("zp", "9410", "09410", "US"), C("zp", " 02134 ", "02134", "USA"),
    C("zp", "SW1A 1AA", "sw1a1aa", "UK"), C("zp", "sw1a1aa", "sw1a1aa", "GB"), C("zp", "M1 1AE", "m11ae", "GB"),
    C("zp", "K1A 0B1", "k1a0b1", "Canada"), C("zp", "10115", "10115", "Germany"),
    C("zp", "75008", "75008", "France"), C("zp", "01310-100", "01310100", "Brazil"),
    C("zp", "100-0001", "1000001", "Japan"), C("zp", "2000", "2000", "Australia"),
    C("zp", "94107-1234", "94107", default=""), C("zp", "SW1A 1AA", "sw1a1aa", default=""),
    C("zp", "2000", "2000", default=""), C("zp", "SW1A 1AA", "sw1a1aa"), C("zp", "--", None, "US"),
]
COUNTRY = [C("country", raw, exp) for raw, exp in [
    ("GER", "de"), ("Bundesrepublik Deutschland", "de"), ("Deutschland", "de"), ("Allemagne", "de"),
    ("Alemania", "de"), ("Brasil", "br"), ("Brésil", "br"), ("Nippon", "jp"), ("Nihon", "jp"), ("Japão", "jp"),
    ("Japon", "jp"), ("日本", "jp"), ("Great Britain", "gb"), ("England", "gb"), ("Scotland", "gb"), ("Wales", "gb"),
    ("Northern Ireland", "gb"), ("Reino Unido", "gb"), ("Royaume-Uni", "gb"), ("Vereinigtes Königreich", "gb"),
    ("Großbritannien", "gb"), ("U.K.", "gb"), ("U.S.", "us"), ("U.S.A.", "us"), ("United States of America", "us"),
    ("America", "us"), ("Estados Unidos", "us"), ("EE.UU.", "us"), ("États-Unis", "us"),
    ("Vereinigte Staaten", "us"), ("Holland", "nl"), ("Países Bajos", "nl"), ("Korea, Republic of", "kr"),
    ("Republic of Korea", "kr"), ("South Korea", "kr"), ("España", "es"), ("Espanha", "es"), ("Frankreich", "fr"),
    ("França", "fr"), ("México", "mx"), ("Canadá", "ca"), ("Österreich", "at"), ("Schweiz", "ch"), ("de", "de"),
    ("DEU", "de"), (" gb ", "gb"), ("Congo", "cg"), ("Narnia", None), ("ZZ", None), ("EU", None), ("Europe", None)]]
EXTERNAL_ID = [
    C("external_id", " ABC-123 ", "abc-123"), C("external_id", "Loyalty 42", "loyalty42"),
    C("external_id", "12345", "12345"), C("external_id", SHA.upper(), SHA),
    C("external_id", "098F6BCD4621D373CADE4E832627B4F6", "098f6bcd4621d373cade4e832627b4f6"),
]
FBC = "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
UNHASHED = [
    C("client_ip_address", " 203.0.113.7 ", "203.0.113.7"), C("client_ip_address", "2001:db8::1", "2001:db8::1"),
    C("client_ip_address", "::ffff:192.0.2.128", "::ffff:192.0.2.128"),
    C("client_ip_address", "256.1.1.1", None), C("client_ip_address", "1.2.3", None),
    C("client_ip_address", "203.0.113.7:8080", None), C("client_ip_address", "not an ip", None),
    C("client_ip_address", "2001:db8::g", None),
    C("fbc", f"  {FBC} ", FBC), C("fbc", "fb.1.1554763741205", None),
    C("fbp", " fb.1.1596403881668.1116446470 ", "fb.1.1596403881668.1116446470"),
    C("fbp", "fb.2.1596403881668.1116446470", "fb.2.1596403881668.1116446470"), C("fbp", "1116446470", None),
    C("madid", "38400000-8CF0-11BD-B23E-10B96E40000D", "38400000-8CF0-11BD-B23E-10B96E40000D"),
    C("madid", " cdda802e-fb9c-47ad-9866-0794d394c912 ", "cdda802e-fb9c-47ad-9866-0794d394c912"),
    C("madid", "00000000-0000-0000-0000-000000000000", None),
    C("lead_id", "1234567890123456", "1234567890123456"), C("lead_id", "12.5", None),
    C("anon_id", " XZ123 ", "XZ123"), C("client_user_agent", " Mozilla/5.0 (X11) ", "Mozilla/5.0 (X11)"),
]
ALL = EMAIL + PHONE + NAMES + GENDER + DOB + CITY + STATE + ZIP + COUNTRY + EXTERNAL_ID + UNHASHED


def sent(case: Case, hashed: bool) -> str | None:
    """What Meta receives: the normalized value, its SHA-256 for hashed keys, 64-hex passed through."""
    if case.expected is None or not hashed or case.key in NEVER_HASHED_KEYS:
        return case.expected
    if len(case.expected) == 64 and all(c in "0123456789abcdef" for c in case.expected):
        return case.expected
    return H(case.expected)


def _frame(cases: list[Case]) -> pd.DataFrame:
    keys = list(dict.fromkeys(c.key for c in cases if c.key != "country")) + ["country"]
    rows = []
    for c in cases:
        row: dict[str, str | None] = dict.fromkeys(keys)
        row["country"] = c.country
        row[c.key] = c.raw
        rows.append(row)
    return pd.DataFrame(rows, columns=keys, dtype=object)


def _run(cases: list[Case], tmp: Path, fmt: str, hashed: bool, default: str, order: str = "mdy") -> pd.DataFrame:
    src, dst = tmp / f"in.{fmt}", tmp / f"out-{hashed}-{default or 'none'}.{fmt}"
    frame = _frame(cases)
    if fmt == "csv":
        frame.to_csv(src, index=False)
    else:
        frame.to_parquet(src, index=False)
    argv = ["normalize", str(src), "--out", str(dst), "--default-country", default, "--dob-order", order]
    assert cli.main(argv + ([] if hashed else ["--no-hash"])) == 0
    if fmt == "csv":
        return pd.read_csv(dst, dtype=str, keep_default_na=False)
    return pd.read_parquet(dst)


def _check(cases: list[Case], out: pd.DataFrame, hashed: bool) -> list[str]:
    bad = []
    for i, c in enumerate(cases):
        got = out.loc[i, c.key]
        got = None if pd.isna(got) or got == "" else got
        if got != sent(c, hashed):
            bad.append(f"{c.key} {c.raw!r} (country {c.country!r}, default {c.default!r}): got {got!r}, "
                       f"want {sent(c, hashed)!r}")
    return bad


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("hashed", [True, False], ids=["hashed", "no-hash"])
def test_cli_golden(tmp_path, fmt, hashed):
    bad = []
    for default in ("US", ""):
        cases = [c for c in ALL if c.default == default]
        bad += _check(cases, _run(cases, tmp_path, fmt, hashed, default), hashed)
    bad += _check(DOB_DMY, _run(DOB_DMY, tmp_path, fmt, hashed, "US", "dmy"), hashed)
    assert not bad, "\n".join(bad)


def test_reasons_name_only_dropped_keys(tmp_path):
    cases = [c for c in ALL if c.default == "US"]
    out = _run(cases, tmp_path, "csv", False, "US")
    for i, c in enumerate(cases):
        reasons = out.loc[i, "reasons"]
        assert (f"{c.key}:" in reasons) == (c.expected is None), (c, reasons)
        assert c.raw.strip() not in reasons or c.raw.strip() in ("?", "--", "U", "X", "0", "1")  # no values leak


def test_typed_parquet_cells(tmp_path):
    """Numbers and dates as the warehouse types them: Excel-style floats, integers, date and timestamp cells."""
    frame = pd.DataFrame({
        "ph": [13236569083.0, 3236569083.0, None], "zp": [2134, 501, 941071234],
        "db": [dt.date(1990, 2, 3), dt.date(1899, 12, 31), None], "lead_id": [1234567890123456, 42, 7],
        "external_id": [123.0, 45.5, None], "country": ["US", "us", "USA"]})
    frame["db"] = pd.to_datetime(frame["db"])
    src, dst = tmp_path / "typed.parquet", tmp_path / "typed-out.parquet"
    frame.to_parquet(src, index=False)
    assert cli.main(["normalize", str(src), "--out", str(dst), "--no-hash"]) == 0
    out = pd.read_parquet(dst).astype(object)
    out = out.where(out.notna(), None)
    assert out["ph"].tolist() == ["13236569083", "13236569083", None]
    assert out["zp"].tolist() == ["02134", "00501", "94107"]
    assert out["db"].tolist() == ["19900203", None, None]
    assert out["lead_id"].tolist() == ["1234567890123456", "42", "7"]
    assert out["external_id"].tolist() == ["123", "45.5", None]


def test_float_columns_written_to_csv(tmp_path):
    """A warehouse's integer zip and phone columns with blanks are floats, and their CSV export says "94035.0":
    read as the integers they were (the same as the float cells themselves, above)."""
    src, dst = tmp_path / "floats.csv", tmp_path / "floats-out.csv"
    pd.DataFrame({"zp": [94035.0, 501.0, 2134.0, None], "ph": [6505551212.0, None, 16505551212.0, 2079460958.0],
                  "country": ["US", "PR", "US", "GB"]}).to_csv(src, index=False)
    assert "94035.0" in src.read_text()
    assert cli.main(["normalize", str(src), "--out", str(dst), "--no-hash"]) == 0
    out = pd.read_csv(dst, dtype=str, keep_default_na=False)
    assert out["zp"].tolist() == ["94035", "00501", "02134", ""]
    assert out["ph"].tolist() == ["16505551212", "", "16505551212", "442079460958"]


def test_list_cells_become_arrays(tmp_path):
    """A parquet list<string> column: several values of one key per row, written as a JSON array."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    src, dst = tmp_path / "lists.parquet", tmp_path / "lists-out.parquet"
    pq.write_table(pa.table({"em": pa.array([[" A@B.com ", "c@d.org", "a@b.com"], None, ["x@y.org"], []],
                                            type=pa.list_(pa.string()))}), src)
    assert cli.main(["normalize", str(src), "--out", str(dst), "--no-hash"]) == 0
    out = pd.read_parquet(dst).astype(object)
    got = [json.loads(v) if isinstance(v, str) and v.startswith("[") else v for v in out["em"].where(
        out["em"].notna(), None).tolist()]
    assert got == [["a@b.com", "c@d.org"], None, "x@y.org", None]


def test_json_array_cells_in_a_csv_become_arrays(tmp_path):
    """A CSV has no list type: a cell holding a JSON array of values is several values of that key (and what
    is no JSON array, "[555] 123", stays one text)."""
    import json

    src, dst = tmp_path / "multi.csv", tmp_path / "multi-out.csv"
    pd.DataFrame({"em": ['["a@x.com", " A@X.com", "b@y.org"]', "c@d.org", '["a@x.com"]'],
                  "fn": ['["Anna", "ANNA"]', "[Anna]", "Bo"],
                  "ph": ['["(415) 555-0134", "+44 20 7946 0018"]', "[415] 555 0134", None]}).to_csv(src, index=False)
    assert cli.main(["normalize", str(src), "--out", str(dst), "--no-hash"]) == 0
    out = pd.read_csv(dst, dtype=str, keep_default_na=False)
    assert [json.loads(v) if v.startswith("[") else v for v in out["em"]] == [["a@x.com", "b@y.org"], "c@d.org",
                                                                             "a@x.com"]
    assert out["fn"].tolist() == ["anna", "anna", "bo"]
    assert json.loads(out.loc[0, "ph"]) == ["14155550134", "442079460018"]
    assert out.loc[1, "ph"] == "14155550134"


def test_placeholders_are_no_country(tmp_path):
    """"N/A" in the country column is no Namibia: the row's phone and zip follow the default country."""
    src, dst = tmp_path / "na.csv", tmp_path / "na-out.csv"
    pd.DataFrame({"country": ["N/A", "NA", "null"], "ph": ["(415) 555-0134", "081 123 4567", "(415) 555-0134"],
                  "zp": ["2134", "9000", "501"]}).to_csv(src, index=False)
    assert cli.main(["normalize", str(src), "--out", str(dst), "--no-hash"]) == 0
    out = pd.read_csv(dst, dtype=str, keep_default_na=False)
    assert out["country"].tolist() == ["", "na", ""]
    assert out["ph"].tolist() == ["14155550134", "264811234567", "14155550134"]
    assert out["zp"].tolist() == ["02134", "9000", "00501"]


def test_partner_ids_travel_together():
    res = normalize_user_data([RawField("partner_id", pd.Series([" XY1abc ", "XY2", None])),
                               RawField("partner_name", pd.Series([" liveramp ", None, "liveramp"]))],
                              NormalizeOptions())
    assert res.values["partner_id"].tolist() == ["XY1abc", None, None]
    assert res.values["partner_name"].tolist() == ["liveramp", None, None]


def test_console_script_round_trip(tmp_path):
    """The installed entry point, in a subprocess, over a CSV."""
    cases = [c for c in PHONE + STATE if c.default == "US"][:12]
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    _frame(cases).to_csv(src, index=False)
    done = subprocess.run([sys.executable, "-m", "capi_pipeline", "normalize", str(src), "--out", str(dst),
                           "--no-hash"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not _check(cases, pd.read_csv(dst, dtype=str, keep_default_na=False), False)
