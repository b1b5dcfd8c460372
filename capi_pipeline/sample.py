"""Deterministic, deliberately messy warehouse exports for demos, tests and benchmarks.

`generate()` writes one day's partition, ``OUT/<kind>/dt=YYYY-MM-DD/part-NNNNN.parquet`` (or ``.csv``), plus a ready
pipeline file ``OUT/<kind>.pipeline.yaml`` that does not mention the date, so runs for other days reuse it.

What real CRM / POS / app-analytics exports look like, and what this generator therefore produces:

* Country drives a row: its phone formats, state, postcode, city spelling, currency, names, mail domains, locale.
  Countries: US (with LDU states CA, CO, CT, FL, OR, TX, NE, DE, NJ, MD, RI, MN), CA, GB, DE, FR, BR, JP, AU.
* Emails: mixed case, padding spaces, ``+tags``; ~1.5% invalid (``john.doe@``, ``@gmail.com``, ``n/a``...);
  ~3% already SHA-256 hashed (a third of those in UPPERCASE hex, which strict detectors must not trust).
* Phones valid per libphonenumber for their country, in national and international spellings:
  ``(650) 555-1212``, ``650.555.1212``, ``+1 650 555 1212``, ``001-650-555-1212``, ``020 7946 0958``,
  ``+44 (0)20 ...``, ``030 123456``, ``06 12 34 56 78``, ``(11) 91234-5678``, ``090-1234-5678``, ``0412 345 678``;
  ~2% with an extension (``x123``, ``ext. 45``); ~1.5% junk (``12``, ``n/a``, ``555-1212``).
* Names with accents, apostrophes, hyphens, padding and shouting (``  José ``, ``O'Brien``, ``Zoë``,
  ``Müller-Lüdenscheidt``, ``Nguyễn``, ``ANNE-MARIE``, ``山田``); gender as words in five languages
  (``Male``, ``F``, ``Woman``, ``homme``, ``Frau``, ``masculino``...), ~1% unusable (``U``, ``unknown``).
* Dates of birth as ``1985-07-14``, ``07/14/1985``, ``7/14/1985``, ``14.07.1985``, ``19850714``,
  ``1985-07-14 00:00:00``, ``July 14, 1985`` (slashes are always month first: pipelines use ``dob_order: mdy``).
* Cities with accents and case (``São Paulo``, ``Saint-Étienne``, ``MÜNCHEN``, ``Muenchen``); states as codes,
  names or abbreviations (``CA``, ``ca ``, ``California``, ``Calif.``, ``Bavaria``, ``東京都``); countries as names
  or codes (``United States``, ``U.S.A.``, ``us``, ``UK``, ``Great Britain``, ``Deutschland``, ``Brasil``...);
  ZIP+4 (``94035-1234``, ``940351234``, ``94035 1234``), ZIPs that lost their leading zero (``6103``),
  UK / Canadian postcodes in any spacing and case (``M1 1AE``, ``m11ae``).
* LiveRamp RampIDs (``XY`` + 47 url-safe characters) with ``identity_partner = liveramp``; currencies
  ``USD``/``usd``/``Usd``, ``EUR``, ``GBP``, ``BRL``, ``JPY`` (no minor units), ``AUD``, ``CAD``.
* Offline: ~74% store ``Purchase`` (``physical_store``, order id ``S<store>-<YYYYMMDD>-<n>``, store code, value,
  1-4 ``items`` lines as JSON whose sum is the value before US sales tax), ~24% CRM/phone ``Lead`` (``phone_call``
  or ``system_generated``, 16-digit ``lead_id``, no value), ~2% ``Other`` store visits. ``event_time`` is a
  string in one of three forms (UTC ``Z``, naive New York local time, explicit offset), spread over the
  partition day in America/New_York with a store-hours peak.
* App: ``MobileAppInstall``, ``AddToCart``, ``Purchase``, ``CompleteRegistration``, ``StartTrial`` with epoch-ms
  ``event_ts_ms``, ATT flags, 16 extinfo columns (``ext_00`` ``a2``/``i2`` ... ``ext_15`` device timezone),
  ``madid`` (lowercase AAID / uppercase IDFA, all-zero IDFA when ATT is off), ``anon_id`` (``XZ`` + UUID),
  IPv4 and IPv6 addresses, sometimes email / phone, install referrers on Android installs.

Invalid rows: exactly ``round(bad_rate * rows)`` rows carry exactly one defect each; the defects are dealt out in
turn (so they are evenly spread) over randomly chosen rows; see `OFFLINE_DEFECTS` / `APP_DEFECTS`. A duplicate
copies the id and event name of a random earlier valid row of the same event type, so the *later* row is the
bad one. Every other row is valid: ids present and unique, time inside the partition day, Purchase with value
and a known currency, RampID with its partner name, app rows with ATT flag, ``ext_00`` and ``ext_04``, and at
least one usable strong identifier.

Weak rows: about 3% of the valid rows (offline: of the valid non-lead rows, since a ``lead_id`` is an identifier)
keep only city / state / zip / country (+ gender) - or, for app rows, only country. They are well-formed but hit
Meta's "baseline invalid"
combinations; they are reported as ``weak_rows`` and not counted in ``bad_rows``.

Determinism: each part has its own generator seeded from (seed, kind, date, part number); parquet is written
with fixed options and no timestamps, so the same arguments give byte-identical files. Rows are generated part
by part with numpy / Arrow kernels, so memory is bounded by ``part_rows``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from capi_pipeline.errors import ConfigurationError

Kind = Literal["offline", "app"]
Format = Literal["parquet", "csv"]

OFFLINE_DEFECTS: tuple[str, ...] = (
    "missing_id",               # order_id and lead_id both null
    "unparseable_time",         # "not a date", "0000-00-00 00:00:00", ...
    "too_old",                  # partition date - 70 days (beyond the 62-day physical_store window)
    "future_time",              # partition date + 30 days
    "unknown_currency",         # Purchase with currency "XYZ"
    "purchase_without_value",   # Purchase with value null
    "duplicate_id",             # order_id / lead_id + event_name of an earlier row
    "partner_id_without_name",  # rampid without identity_partner
)
APP_DEFECTS: tuple[str, ...] = (
    "missing_id",               # event_id null
    "unparseable_time",         # event_ts_ms null, or in seconds instead of milliseconds
    "too_old",                  # partition date - 10 days
    "future_time",              # partition date + 30 days
    "unknown_currency",         # Purchase with currency "XYZ"
    "purchase_without_value",   # Purchase with value null
    "duplicate_id",             # event_id + event_name of an earlier row
    "missing_att",              # advertiser_tracking_enabled null
    "missing_extinfo",          # ext_00 or ext_04 empty / null
)
DEFAULT_DATASET_ID: dict[str, str] = {"offline": "1000000000000001", "app": "1000000000000002"}
DEFAULT_ENDPOINT = "https://graph.facebook.com"
TIMEZONE = "America/New_York"
WEAK_RATE = 0.03

OFFLINE_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("order_id", "lead_id", "event_name", "action_source", "event_time", "store_code",
                                "email", "email_alt", "phone", "first_name", "last_name", "gender",
                                "date_of_birth", "city", "state", "zip", "country", "loyalty_id", "rampid",
                                "identity_partner")]
    + [("value", pa.float64()), ("currency", pa.string()), ("items", pa.string())]
)
APP_SCHEMA = pa.schema(
    [("event_id", pa.string()), ("event_name", pa.string()), ("event_ts_ms", pa.int64()),
     ("advertiser_tracking_enabled", pa.int64()), ("application_tracking_enabled", pa.int64())]
    + [(f"ext_{i:02d}", pa.string()) for i in range(16)]
    + [(c, pa.string()) for c in ("madid", "anon_id", "client_ip_address", "email", "phone", "country")]
    + [("value", pa.float64()), ("currency", pa.string()), ("install_referrer", pa.string())]
)


@dataclass(frozen=True)
class SampleResult:
    """What `generate` wrote. `defects` counts bad rows per defect name; weak rows are valid, not bad."""

    kind: str
    files: list[Path]
    pipeline_path: Path
    rows: int
    bad_rows: int
    defects: dict[str, int] = field(default_factory=dict)
    weak_rows: int = 0


# --------------------------------------------------------------------------------------------------------------
# Reference data. Phone formats: '#' takes the next digit of the national significant number (NSN); prefixes and
# digit counts were checked with phonenumbers.is_valid_number (see tests/test_sample.py).

@dataclass(frozen=True)
class _Phone:
    prefixes: tuple[str, ...]
    length: int
    formats: tuple[str, ...]
    first: str = "0123456789"   # allowed first digit after the prefix (NANP exchanges never start with 0/1)
    weight: float = 1.0


@dataclass(frozen=True)
class _Place:
    city: tuple[str, ...]
    state: tuple[str, ...]
    zips: tuple[str, ...]       # US: 3-digit ZIP prefixes; elsewhere literal postcodes
    phones: tuple[_Phone, ...]
    weight: float = 1.0


@dataclass(frozen=True)
class _Country:
    iso: str
    weight: float
    names: tuple[str, ...]
    currency: tuple[str, ...]
    minor: int                  # currency minor units (JPY has none)
    scale: float                # prices relative to USD
    places: tuple[_Place, ...]
    mobile: tuple[_Phone, ...]
    first_m: tuple[str, ...]    # "Display|ascii" (ascii feeds the email local part)
    first_f: tuple[str, ...]
    last: tuple[str, ...]
    male: tuple[str, ...]
    female: tuple[str, ...]
    domains: tuple[str, ...]
    locale: str
    tz_abbr: str
    tz: str
    carriers: tuple[str, ...]
    ip4: tuple[int, ...]
    ip6: tuple[str, ...]


_NANP = ("(###) ###-####", "###.###.####", "###-###-####", "##########", "1-###-###-####", "+1 ### ### ####",
         "+1 (###) ###-####", "001-###-###-####", "+1##########")


def _nanp(*areas: str) -> tuple[_Phone, ...]:
    return (_Phone(areas, 10, _NANP, first="23456789"),)


_EN_M = ("Male", "M", "m", "male", "M ", "Man")
_EN_F = ("Female", "F", "f", "female", " F", "Woman")
_US_STATE = {  # code -> spellings seen in CRMs
    "NY": ("NY", "New York", "ny", "N.Y."), "CA": ("CA", "California", "ca ", "Calif.", "CALIFORNIA"),
    "TX": ("TX", "Texas", "tx", "TEXAS"), "CO": ("CO", "Colorado", "co"), "CT": ("CT", "Connecticut", "Conn."),
    "OR": ("OR", "Oregon", "or"), "FL": ("FL", "Florida", "Fla."), "IL": ("IL", "Illinois", "il"),
    "WA": ("WA", "Washington", "Wash."), "MA": ("MA", "Massachusetts", "Mass."), "MN": ("MN", "Minnesota"),
    "NJ": ("NJ", "New Jersey", "nj"), "MD": ("MD", "Maryland"), "RI": ("RI", "Rhode Island"),
    "GA": ("GA", "Georgia"), "NE": ("NE", "Nebraska"), "DE": ("DE", "Delaware"), "AZ": ("AZ", "Arizona"),
}


def _us(city: tuple[str, ...], st: str, zips: tuple[str, ...], areas: tuple[str, ...], w: float) -> _Place:
    return _Place(city, _US_STATE[st], zips, _nanp(*areas), w)


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "US", 0.60, ("United States", "USA", "US", "us", "U.S.A.", "usa", "United States of America"),
        ("USD", "usd", "Usd"), 2, 1.0,
        (
            _us(("New York", "new york", "NEW YORK", "New York City", "  New York"), "NY", ("100", "101", "102"),
                ("212", "646", "917"), 6),
            _us(("Brooklyn", "BROOKLYN", "brooklyn"), "NY", ("112",), ("718", "347"), 3),
            _us(("Los Angeles", "los angeles", "LOS ANGELES", "Los Ángeles"), "CA", ("900",), ("213", "310", "323"),
                5),
            _us(("San Francisco", "san francisco", "San Francisco "), "CA", ("941",), ("415", "628"), 3),
            _us(("Menlo Park", "MENLO PARK"), "CA", ("940",), ("650",), 1),
            _us(("San Jose", "San José", "SAN JOSE"), "CA", ("951",), ("408", "669"), 2),
            _us(("Austin", "AUSTIN", "austin"), "TX", ("787",), ("512", "737"), 2),
            _us(("Houston", "HOUSTON"), "TX", ("770",), ("713", "832"), 3),
            _us(("Denver", "denver"), "CO", ("802",), ("303", "720"), 2),
            _us(("Hartford", "HARTFORD"), "CT", ("061",), ("860",), 1),
            _us(("Portland", "portland"), "OR", ("972",), ("503", "971"), 1.5),
            _us(("Miami", "MIAMI", "Miami Beach"), "FL", ("331",), ("305", "786"), 2.5),
            _us(("Chicago", "chicago", "CHICAGO"), "IL", ("606",), ("312", "773"), 4),
            _us(("Seattle", "SEATTLE"), "WA", ("981",), ("206",), 2),
            _us(("Boston", "boston"), "MA", ("021",), ("617", "857"), 2),
            _us(("Minneapolis", "MINNEAPOLIS"), "MN", ("554",), ("612",), 1),
            _us(("Newark", "NEWARK"), "NJ", ("071",), ("973", "862"), 1),
            _us(("Baltimore", "baltimore"), "MD", ("212",), ("410", "443"), 1),
            _us(("Providence", "PROVIDENCE"), "RI", ("029",), ("401",), 0.5),
            _us(("Atlanta", "ATLANTA"), "GA", ("303",), ("404", "678"), 2),
            _us(("Omaha", "omaha"), "NE", ("681",), ("402",), 0.5),
            _us(("Wilmington", "WILMINGTON"), "DE", ("198",), ("302",), 0.5),
            _us(("Phoenix", "PHOENIX"), "AZ", ("850",), ("602", "480"), 2),
        ),
        (),
        ("John|john", "  José |jose", "Michael|michael", "Robert|robert", "D'Andre|dandre", "Jean-Luc|jeanluc",
         "Carlos|carlos", "DAVID|david", "James|james", "Kevin|kevin"),
        ("Mary|mary", "ANNE-MARIE|annemarie", "Zoë|zoe", "Jennifer|jennifer", "Mary Ann|maryann", "Chloé|chloe",
         "Linh|linh", "Sarah|sarah", "Emily|emily", "Ashley|ashley"),
        ("Smith|smith", "Johnson|johnson", "O'Brien|obrien", "Nguyễn|nguyen", "García|garcia",
         "Williams|williams", "Brown|brown", "Davis|davis", "Martínez|martinez", "Lee|lee", "St. John|stjohn",
         "Van der Berg|vanderberg", "Smith-Jones|smithjones", "MCDONALD|mcdonald", "Miller|miller"),
        _EN_M, _EN_F,
        ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com", "comcast.net"),
        "en_US", "EST", "America/New_York", ("Verizon", "T-Mobile", "AT&T", "Verizon Wireless"),
        (24, 50, 66, 73, 98, 174), ("2600:1700", "2601:0646", "2607:fb90"),
    ),
    _Country(
        "CA", 0.03, ("Canada", "CA", "ca", "CAN"), ("CAD", "cad"), 2, 1.35,
        (
            _Place(("Toronto", "TORONTO", "toronto"), ("ON", "Ontario", "Ont."), ("M5V 3L9", "M4W 1A8", "M5H 2N2"),
                   _nanp("416", "647"), 3),
            _Place(("Vancouver", "VANCOUVER"), ("BC", "British Columbia"), ("V6B 1A1", "V5K 0A1"),
                   _nanp("604", "778"), 2),
            _Place(("Montréal", "Montreal", "MONTRÉAL"), ("QC", "Québec", "Quebec"), ("H2X 1Y4", "H3B 4W8"),
                   _nanp("514", "438"), 2),
        ),
        (),
        ("Liam|liam", "Étienne|etienne", "Noah|noah", "Mathéo|matheo"),
        ("Olivia|olivia", "Émilie|emilie", "Charlotte|charlotte", "Zoë|zoe"),
        ("Tremblay|tremblay", "Gagnon|gagnon", "Roy|roy", "MacDonald|macdonald", "Côté|cote", "Smith|smith"),
        _EN_M, _EN_F, ("gmail.com", "hotmail.ca", "yahoo.ca", "videotron.ca"),
        "en_CA", "EST", "America/Toronto", ("Rogers", "Bell", "TELUS"), (99, 142, 174), ("2607:f2c0",),
    ),
    _Country(
        "GB", 0.08, ("United Kingdom", "UK", "Great Britain", "GB", "gb", "England", "U.K."), ("GBP", "gbp"),
        2, 0.8,
        (
            _Place(("London", "LONDON", "london", " London "), ("England", "Greater London"),
                   ("SW1A 1AA", "EC1A 1BB", "W1A 0AX", "N1 9GU", "E14 5AB", "SE1 7PB"),
                   (_Phone(("207", "208"), 10, ("0## #### ####", "0##########", "(0##) #### ####",
                                                "+44 ## #### ####", "+44 (0)## #### ####", "0044 ## #### ####",
                                                "+44##########")),), 4),
            _Place(("Manchester", "MANCHESTER"), ("England", "Greater Manchester"),
                   ("M1 1AE", "M4 5JD", "M15 4PS", "M20 2RN"),
                   (_Phone(("161",), 10, ("0### ### ####", "0##########", "+44 ### ### ####",
                                          "+44 (0)### ### ####")),), 2),
            _Place(("Birmingham", "birmingham"), ("England", "West Midlands"), ("B1 1BB", "B15 2TT"),
                   (_Phone(("121",), 10, ("0### ### ####", "+44 ### ### ####"), first="1234567"),), 1.5),
        ),
        (_Phone(("7400", "7812", "7480", "7563", "7957"), 10,
                ("0#### ######", "0##########", "+44 #### ######", "+44 (0)#### ######", "0044 #### ######"),
                weight=1.5),),
        ("Oliver|oliver", "Harry|harry", "George|george", "Seán|sean", "Rhys|rhys"),
        ("Amelia|amelia", "Siobhán|siobhan", "Isla|isla", "Sophie|sophie", "Chloë|chloe"),
        ("O'Connor|oconnor", "Smith|smith", "Jones|jones", "Taylor|taylor", "Davies|davies",
         "Wright|wright", "Ffoulkes-Harrington|ffoulkesharrington"),
        _EN_M, _EN_F, ("gmail.com", "btinternet.com", "yahoo.co.uk", "hotmail.co.uk", "sky.com"),
        "en_GB", "GMT", "Europe/London", ("EE", "Vodafone UK", "O2 - UK", "Three"), (31, 81, 86, 2),
        ("2a00:23c5", "2a02:0c7c"),
    ),
    _Country(
        "DE", 0.08, ("Deutschland", "Germany", "DE", "de", "GER", "Bundesrepublik Deutschland"),
        ("EUR", "eur", "Eur"), 2, 0.92,
        (
            _Place(("Berlin", "BERLIN", "berlin"), ("Berlin", "BE"), ("10115", "10178", "10435", "12043"),
                   (_Phone(("30",), 10, ("0## ########", "0##/########", "(0##) ########", "+49 ## ########",
                                         "+49 (0)## ########", "0049 ## ########"), first="123456789"),
                    _Phone(("30",), 8, ("0## ######", "+49 ## ######"), first="123456789", weight=0.5)), 3),
            _Place(("München", "Munich", "MÜNCHEN", "Muenchen", "münchen"), ("Bavaria", "Bayern", "BY"),
                   ("80331", "80802", "81667", "80469"),
                   (_Phone(("89",), 10, ("0## ########", "0##/########", "+49 ## ########", "+49 (0)## ########"),
                           first="123456789"),), 2),
            _Place(("Hamburg", "HAMBURG"), ("Hamburg", "HH"), ("20095", "22767"),
                   (_Phone(("40",), 10, ("0## ########", "+49 ## ########"), first="123456789"),), 2),
        ),
        (_Phone(("151", "152", "176"), 11, ("0### ########", "0###-########", "0###/########", "+49 ### ########",
                                            "+49 (0)### ########", "0049 ### ########", "+49###########")),
         _Phone(("160", "170", "171"), 10, ("0### #######", "+49 ### #######"), weight=0.5)),
        ("Jürgen|juergen", "Lukas|lukas", "Björn|bjoern", "Jörg|joerg", "Maximilian|maximilian"),
        ("Anna|anna", "Sophie|sophie", "Marie|marie", "Jülide|juelide", "Käthe|kaethe"),
        ("Müller-Lüdenscheidt|muellerluedenscheidt", "Müller|mueller", "Schröder|schroeder", "Schmidt|schmidt",
         "Weiß|weiss", "Meyer|meyer", "Groß|gross", "von Braun|vonbraun"),
        ("M", "Mann", "mann", "M "), ("F", "Frau", "frau", "f"),
        ("gmx.de", "web.de", "t-online.de", "gmail.com"),
        "de_DE", "CET", "Europe/Berlin", ("Telekom.de", "Vodafone.de", "o2 - de"), (79, 84, 91, 93),
        ("2003:00e2", "2a02:0908"),
    ),
    _Country(
        "FR", 0.07, ("France", "FR", "fr", "FRANCE", "République française"), ("EUR", "eur"), 2, 0.92,
        (
            _Place(("Paris", "PARIS", "paris"), ("Île-de-France", "Ile de France", "IDF"),
                   ("75018", "75001", "75011", "75015"),
                   (_Phone(("1",), 9, ("0# ## ## ## ##", "0#.##.##.##.##", "0#########", "+33 # ## ## ## ##",
                                       "+33 (0)# ## ## ## ##", "0033 # ## ## ## ##", "+33#########")),), 4),
            _Place(("Lyon", "LYON"), ("Auvergne-Rhône-Alpes", "Rhône"), ("69001", "69003", "69007"),
                   (_Phone(("472", "478"), 9, ("0# ## ## ## ##", "+33 # ## ## ## ##")),), 2),
            _Place(("Saint-Étienne", "St-Etienne", "SAINT ETIENNE", "Saint Étienne"),
                   ("Auvergne-Rhône-Alpes", "Loire"),
                   ("42000", "42100"), (_Phone(("477",), 9, ("0# ## ## ## ##", "0#.##.##.##.##")),), 1),
            _Place(("Marseille", "MARSEILLE"), ("Provence-Alpes-Côte d'Azur", "PACA"), ("13001", "13008"),
                   (_Phone(("491",), 9, ("0# ## ## ## ##", "+33 # ## ## ## ##")),), 2),
        ),
        (_Phone(("61", "62", "63", "64", "65", "66", "67", "68", "73", "74", "75", "76", "77", "78"), 9,
                ("0# ## ## ## ##", "0#.##.##.##.##", "0#########", "+33 # ## ## ## ##", "+33 (0)# ## ## ## ##",
                 "0033 # ## ## ## ##", "+33#########"), weight=1.5),),
        ("François|francois", "Jean-Pierre|jeanpierre", "Loïc|loic", "Théo|theo", "Gaël|gael"),
        ("Hélène|helene", "Zoé|zoe", "Élodie|elodie", "Anaïs|anais", "Camille|camille"),
        ("Lefèvre|lefevre", "Dubois|dubois", "Martin|martin", "Bernard|bernard", "Le Gall|legall",
         "D'Arcy|darcy", "Moreau|moreau"),
        ("M", "homme", "Homme"), ("F", "femme", "Femme"),
        ("orange.fr", "free.fr", "laposte.net", "gmail.com", "wanadoo.fr"),
        "fr_FR", "CET", "Europe/Paris", ("Orange F", "SFR", "Bouygues Telecom", "Free"), (78, 82, 90, 176),
        ("2a01:0cb0", "2a01:0e0a"),
    ),
    _Country(
        "BR", 0.07, ("Brasil", "Brazil", "BR", "br", "BRASIL"), ("BRL", "brl"), 2, 5.0,
        (
            _Place(("São Paulo", "Sao Paulo", "SÃO PAULO", "sao paulo"), ("SP", "São Paulo", "sp"),
                   ("01310-100", "04538-133", "01310100", "05407-002"),
                   (_Phone(("113", "112"), 10, ("(##) ####-####", "## ####-####", "+55 ## ####-####",
                                                "+55 (##) ####-####"), weight=0.5),
                    _Phone(("119",), 11, ("(##) #####-####", "## #####-####", "###########", "+55 ## #####-####",
                                          "+55 (##) #####-####", "+55###########"), first="6789")), 4),
            _Place(("Rio de Janeiro", "RIO DE JANEIRO", "Rio"), ("RJ", "Rio de Janeiro"),
                   ("20040-020", "22071-900", "22250-040"),
                   (_Phone(("213",), 10, ("(##) ####-####", "+55 ## ####-####"), weight=0.5),
                    _Phone(("219",), 11, ("(##) #####-####", "+55 ## #####-####", "## #####-####"),
                           first="6789")), 3),
            _Place(("Belo Horizonte", "BELO HORIZONTE"), ("MG", "Minas Gerais"), ("30130-110", "30140-071"),
                   (_Phone(("319",), 11, ("(##) #####-####", "+55 (##) #####-####"), first="6789"),), 1),
        ),
        (),
        ("João|joao", "José|jose", "Luís|luis", "Gabriel|gabriel", "Antônio|antonio"),
        ("Maria|maria", "Ana|ana", "Conceição|conceicao", "Thaís|thais", "Letícia|leticia"),
        ("Gonçalves|goncalves", "Silva|silva", "Santos|santos", "Araújo|araujo", "Oliveira|oliveira",
         "Pereira|pereira", "da Conceição|daconceicao"),
        ("M", "masculino", "Masculino"), ("F", "feminino", "Feminino"),
        ("gmail.com", "uol.com.br", "bol.com.br", "hotmail.com", "terra.com.br"),
        "pt_BR", "BRT", "America/Sao_Paulo", ("VIVO", "TIM", "Claro BR"), (177, 179, 187, 189, 200),
        ("2804:014c", "2804:0d59"),
    ),
    _Country(
        "JP", 0.04, ("Japan", "JP", "jp", "日本", "JAPAN"), ("JPY", "jpy"), 0, 150.0,
        (
            _Place(("Tokyo", "TOKYO", "東京", "Tōkyō"), ("Tokyo", "東京都", "Tokyo-to"),
                   ("100-0001", "150-0002", "160-0022", "〒106-0032", "1500002"),
                   (_Phone(("3",), 9, ("0#-####-####", "0#########", "(0#) ####-####", "+81 #-####-####",
                                       "+81-#-####-####", "+81#########"), first="123456789"),), 3),
            _Place(("Osaka", "大阪", "Ōsaka", "OSAKA"), ("Osaka", "大阪府"), ("530-0001", "542-0076"),
                   (_Phone(("6",), 9, ("0#-####-####", "+81 #-####-####"), first="123456789"),), 2),
        ),
        (_Phone(("90", "80", "70"), 10, ("0##-####-####", "0##########", "+81 ##-####-####", "+81-##-####-####",
                                         "+81##########"), first="123456789", weight=2),),
        ("Hiroshi|hiroshi", "Takeshi|takeshi", "Haruto|haruto", "太郎|taro", "Yūki|yuki"),
        ("Sakura|sakura", "Yui|yui", "花子|hanako", "Aoi|aoi", "Yōko|yoko"),
        ("Sato|sato", "Suzuki|suzuki", "Takahashi|takahashi", "Tanaka|tanaka", "山田|yamada", "Itō|ito",
         "Ōno|ono"),
        ("M", "male", "Male"), ("F", "female", "Female"),
        ("docomo.ne.jp", "yahoo.co.jp", "gmail.com", "ezweb.ne.jp"),
        "ja_JP", "JST", "Asia/Tokyo", ("NTT DOCOMO", "au", "SoftBank"), (1, 27, 60, 126, 133),
        ("2400:4050", "2001:0268"),
    ),
    _Country(
        "AU", 0.03, ("Australia", "AU", "au", "AUS", "Aus"), ("AUD", "aud"), 2, 1.5,
        (
            _Place(("Sydney", "SYDNEY", "sydney"), ("NSW", "New South Wales", "nsw"), ("2000", "2010", "2060"),
                   (_Phone(("29", "28"), 9, ("(0#) #### ####", "0# #### ####", "0#########", "+61 # #### ####",
                                             "+61 (0)# #### ####", "+61#########")),), 3),
            _Place(("Melbourne", "MELBOURNE"), ("VIC", "Victoria", "Vic."), ("3000", "3121", "3182"),
                   (_Phone(("39", "38"), 9, ("(0#) #### ####", "0# #### ####", "+61 # #### ####")),), 3),
            _Place(("Brisbane", "brisbane"), ("QLD", "Queensland", "Qld"), ("4000", "4101"),
                   (_Phone(("73",), 9, ("(0#) #### ####", "+61 # #### ####")),), 1.5),
        ),
        (_Phone(("40", "41", "42", "43"), 9, ("0### ### ###", "0#########", "+61 ### ### ###",
                                               "+61 (0)### ### ###", "+61#########"), weight=2),),
        ("Jack|jack", "Liam|liam", "Noah|noah", "Thomas|thomas", "Lachlan|lachlan"),
        ("Charlotte|charlotte", "Olivia|olivia", "Mia|mia", "Zoë|zoe", "Matilda|matilda"),
        ("Smith|smith", "Jones|jones", "Williams|williams", "Wilson|wilson", "Nguyễn|nguyen",
         "O'Sullivan|osullivan", "Taylor|taylor"),
        _EN_M, _EN_F, ("bigpond.com", "optusnet.com.au", "gmail.com", "outlook.com"),
        "en_AU", "AEST", "Australia/Sydney", ("Telstra", "Optus", "vodafone AU"), (1, 49, 101, 110, 120),
        ("2001:8003", "2403:5800"),
    ),
)

_INVALID_EMAIL = ("{f}.{l}@", "{f}.{l} at gmail.com", "{f}.{l}@gmail", "@gmail.com", "n/a", "{f}.{l}@@gmail.com")
_INVALID_PHONE = ("12", "n/a", "000", "555-1212", "0", "1234567", "+", "N/A")
_INVALID_GENDER = ("U", "unknown", "X", "-")
_INVALID_DOB = ("00/00/0000", "0000-00-00", "unknown", "13/45/1985")
_BAD_TIME = ("not a date", "0000-00-00 00:00:00", "N/A", "2026-13-45 25:61:00", "TBD", "yesterday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_COMPANY_DOMAINS = ("acme-corp.com", "globex.com", "initech.com", "umbrella.co", "example.org")
_APP_VERSIONS = (("4.12", "4.12.0 (41200)"), ("4.11", "4.11.2 (41102)"), ("4.10.1", "4.10.1 (41001)"),
                 ("5.0", "5.0.0 (50000)"))
_ANDROID = (  # model, OS versions, width, height, density, cores
    ("Pixel 8", ("14", "15"), "1080", "2400", "2.625", "8"),
    ("SM-S918B", ("14", "13"), "1440", "3088", "3.5", "8"),
    ("SM-A546B", ("13", "14"), "1080", "2340", "2.625", "8"),
    ("Pixel 6a", ("13", "14"), "1080", "2400", "2.625", "8"),
    ("moto g power (2022)", ("12",), "720", "1600", "1.75", "8"),
    ("Redmi Note 12", ("13",), "1080", "2400", "2.75", "8"),
)
_IOS = (
    ("iPhone15,2", ("17.4.1", "17.5"), "1179", "2556", "3.0", "6"),
    ("iPhone14,5", ("16.7.2", "17.1"), "1170", "2532", "3.0", "6"),
    ("iPhone16,1", ("17.5", "18.0"), "1179", "2556", "3.0", "6"),
    ("iPhone13,2", ("15.8",), "1170", "2532", "3.0", "6"),
    ("iPad13,1", ("17.2",), "1640", "2360", "2.0", "6"),
)
_STORAGE = ("64", "128", "256", "512")
_REFERRERS = ("utm_source=google-play&utm_medium=organic",
              "utm_source=facebook_ads&utm_medium=cpi&utm_campaign=spring_sale",
              "utm_source=(not%20set)&utm_medium=(not%20set)", "utm_source=tiktok&utm_medium=paid")
_B64URL = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", np.uint8)
_HEX_LO = np.frombuffer(b"0123456789abcdef", np.uint8)
_HEX_UP = np.frombuffer(b"0123456789ABCDEF", np.uint8)
_UUID = "########-####-####-####-############"
_KIND_CODE = {"offline": 1, "app": 2}


# --------------------------------------------------------------------------------------------------------------
# Vectorized string helpers. Columns are Arrow arrays; fixed-width text is built as a uint8 matrix and wrapped
# without copies. Variants are built only for the rows that use them (`_by_group`, `_scatter`, `_patch`).

_PAIRS = np.frombuffer(b"".join(f"{i:02d}".encode() for i in range(100)), np.uint16)
_SMALL = pa.array([str(i) for i in range(10_000)])


def _fixed(chars: np.ndarray) -> pa.Array:
    m, w = chars.shape
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    if m * w < 2**31 - 1:
        offsets = np.arange(0, (m + 1) * w, w, dtype=np.int32) if w else np.zeros(m + 1, np.int32)
        return pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(data))
    offsets64 = np.arange(0, (m + 1) * w, w, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(m, pa.py_buffer(offsets64), pa.py_buffer(data)).cast(pa.string())


def _render(pattern: str, chars: np.ndarray) -> pa.Array:
    """Fill each '#' of an ASCII pattern with the next column of `chars`."""
    pat = np.frombuffer(pattern.encode("ascii"), np.uint8)
    slots = np.flatnonzero(pat == ord("#"))
    out = np.empty((chars.shape[0], len(pat)), np.uint8)
    out[:] = pat
    out[:, slots] = chars[:, : len(slots)]
    return _fixed(out)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative ints as an (n, width) ASCII matrix, two digits per lookup."""
    v = np.asarray(values, np.int64)
    even = width + width % 2
    out = np.empty((len(v), even), np.uint8)
    pairs = out.view(np.uint16)
    for k in range(even // 2 - 1, -1, -1):
        v, r = np.divmod(v, 100)
        pairs[:, k] = _PAIRS[r]
    return out[:, even - width:]


def _hex(raw: np.ndarray, upper: bool = False) -> np.ndarray:
    table = _HEX_UP if upper else _HEX_LO
    out = np.empty((raw.shape[0], raw.shape[1] * 2), np.uint8)
    out[:, 0::2] = table[raw >> 4]
    out[:, 1::2] = table[raw & 15]
    return out


def _cat(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _str(values: np.ndarray) -> pa.Array:
    """Decimal text of non-negative ints (a lookup below 10,000, which is nearly always)."""
    v = np.asarray(values, np.int64)
    if len(v) == 0 or v.max() < 10_000:
        return _SMALL.take(v)
    return pc.cast(pa.array(v), pa.string())


def _pick(options: Sequence[str], idx: np.ndarray) -> pa.Array:
    return pa.array(options, pa.string()).take(np.asarray(idx, np.int64))


def _null_where(arr: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask, pa.bool_()), pa.scalar(None, arr.type), arr)


def _where(mask: np.ndarray, a: pa.Array | str, b: pa.Array | str) -> pa.Array:
    return pc.if_else(pa.array(mask, pa.bool_()), a, b)


def _scatter(values: pa.Array, mask: np.ndarray) -> pa.Array:
    """A full-length column: `values` (one per True in `mask`, in order) where mask is set, null elsewhere."""
    pos = np.cumsum(mask) - 1
    return values.take(pa.array(np.maximum(pos, 0), mask=~mask))


def _patch(arr: pa.Array, mask: np.ndarray, change: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Rewrite only the masked rows."""
    if not mask.any():
        return arr
    sel = pa.array(mask)
    return pc.replace_with_mask(arr, sel, change(pc.filter(arr, sel)))


def _by_pattern(group: np.ndarray, build: Callable[[int, np.ndarray], tuple[str, np.ndarray]]) -> pa.Array:
    """Like `_by_group` for fixed-width groups: each group gives (pattern, chars); rows are laid out in one
    padded matrix and packed once, with no per-group arrays to concatenate and reorder."""
    group = np.asarray(group, np.int64)
    n = len(group)
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    parts = []
    for idx in np.split(order, bounds) if n else []:
        pattern, chars = build(int(group[idx[0]]), idx)
        pat = np.frombuffer(pattern.encode("ascii"), np.uint8)
        parts.append((idx, pat, np.flatnonzero(pat == ord("#")), chars))
    width = max((len(p[1]) for p in parts), default=0)
    out = np.zeros((n, width), np.uint8)
    lengths = np.zeros(n, np.int64)
    for idx, pat, slots, chars in parts:
        block = np.empty((len(idx), width), np.uint8)
        block[:, : len(pat)] = pat
        block[:, slots] = chars[:, : len(slots)]
        out[idx] = block
        lengths[idx] = len(pat)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = out[np.arange(width)[None, :] < lengths[:, None]]
    if offsets[-1] < 2**31 - 1:
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data))
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data)).cast(pa.string())


def _by_group(group: np.ndarray, build: Callable[[int, np.ndarray], pa.Array]) -> pa.Array:
    """Build each group's rows with its own call, then put the rows back in their original order."""
    group = np.asarray(group, np.int64)
    if len(group) == 0:
        return pa.array([], pa.string())
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    pieces = [build(int(group[idx[0]]), idx) for idx in np.split(order, bounds)]
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return pa.concat_arrays([p.cast(pa.string()) for p in pieces]).take(inverse)

class _Pool:
    """Variant lists keyed by an outer index (country, place...), flattened into one Arrow array."""

    def __init__(self, groups: Sequence[Sequence[str | None]]) -> None:
        self.flat = [v for g in groups for v in g]
        self.values = pa.array(self.flat, pa.string())
        self.counts = np.array([len(g) for g in groups], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def index(self, rng: np.random.Generator, outer: np.ndarray, first: float = 0.0) -> np.ndarray:
        """Uniform pick inside each row's group; with `first`, the group's first variant that often."""
        pick = (rng.random(len(outer)) * self.counts[outer]).astype(np.int64)
        if first:
            pick = np.where(rng.random(len(outer)) < first, 0, pick)
        return self.offsets[outer] + pick

    def take(self, idx: np.ndarray) -> pa.Array:
        return self.values.take(pa.array(idx))


def _split(entries: Sequence[str], part: int) -> list[str]:
    return [e.split("|")[part] for e in entries]


def _name_variants(name: str) -> list[str]:
    return [name, name.upper(), name.lower(), f"  {name.strip()} "]


class _Tables:
    """Flattened lookup tables derived once from `_COUNTRIES`."""

    def __init__(self) -> None:
        cs = _COUNTRIES
        self.country_w = np.array([c.weight for c in cs])
        self.country_w = self.country_w / self.country_w.sum()
        places = [(ci, p) for ci, c in enumerate(cs) for p in c.places]
        self.place_country = np.array([ci for ci, _ in places])
        pw = np.array([p.weight / sum(q.weight for q in cs[ci].places) * self.country_w[ci] for ci, p in places])
        self.place_w = pw / pw.sum()
        self.is_us = np.array([c.iso == "US" for c in cs])
        self.minor = np.array([c.minor for c in cs])
        self.scale = np.array([c.scale for c in cs])
        self.country = _Pool([c.names for c in cs])
        self.currency = _Pool([c.currency for c in cs])
        self.city = _Pool([p.city for _, p in places])
        self.state = _Pool([p.state for _, p in places])
        self.zips = _Pool([p.zips for _, p in places])
        # phone kinds: every place gets its own fixed kinds plus its country's mobile kinds
        self.kinds: list[_Phone] = []
        kind_lists: list[list[int]] = []
        for ci, p in places:
            ids = []
            for ph in p.phones + cs[ci].mobile:
                self.kinds.append(ph)
                ids.append(len(self.kinds) - 1)
            kind_lists.append(ids)
        kmax = max(len(k) for k in kind_lists)
        self.place_kinds = np.full((len(places), kmax), -1, np.int64)
        self.place_kind_cum = np.full((len(places), kmax), 2.0)
        for pi, ids in enumerate(kind_lists):
            w = np.array([self.kinds[k].weight for k in ids])
            self.place_kinds[pi, : len(ids)] = ids
            self.place_kind_cum[pi, : len(ids)] = np.cumsum(w / w.sum())
        self.max_formats = max(len(k.formats) for k in self.kinds)
        # names: first names by (country, gender), display variants x4 aligned with ascii
        firsts = [[*c.first_m] for c in cs] + [[*c.first_f] for c in cs]   # outer = gender * C + country
        self.first = _Pool(firsts)
        self.last = _Pool([c.last for c in cs])
        self.first_display = pa.array([v for e in self.first.flat for v in _name_variants(e.split("|")[0])])
        self.last_display = pa.array([v for e in self.last.flat for v in _name_variants(e.split("|")[0])])
        self.first_ascii = pa.array(_split(self.first.flat, 1))
        self.last_ascii = pa.array(_split(self.last.flat, 1))
        self.first_cap = pa.array([s.capitalize() for s in _split(self.first.flat, 1)])
        self.last_cap = pa.array([s.capitalize() for s in _split(self.last.flat, 1)])
        self.gender = _Pool([c.male for c in cs] + [c.female for c in cs])
        self.domains = _Pool([c.domains for c in cs])
        self.locale = pa.array([c.locale for c in cs])
        self.tz_abbr = pa.array([c.tz_abbr for c in cs])
        self.tz = pa.array([c.tz for c in cs])
        self.carriers = _Pool([(*c.carriers, "") for c in cs])
        self.ip4 = _Pool([[str(o) for o in c.ip4] for c in cs])
        self.ip6 = _Pool([c.ip6 for c in cs])
        devices = [_ANDROID, _IOS]
        self.device = _Pool([[d[0] for d in ds] for ds in devices])
        flat_devices = [d for ds in devices for d in ds]
        self.os = _Pool([d[1] for d in flat_devices])
        self.device_cols = [pa.array([d[i] for d in flat_devices]) for i in (2, 3, 4, 5)]


_T: _Tables | None = None


def _tables() -> _Tables:
    global _T
    if _T is None:
        _T = _Tables()
    return _T


# --------------------------------------------------------------------------------------------------------------
# Column builders shared by both kinds. Each takes the rows it fills, already selected.

@dataclass
class _People:
    country: np.ndarray
    place: np.ndarray
    gender: np.ndarray      # 0 male, 1 female
    first: np.ndarray       # index into _Tables.first
    last: np.ndarray

    def take(self, mask: np.ndarray) -> _People:
        return _People(self.country[mask], self.place[mask], self.gender[mask], self.first[mask], self.last[mask])


def _people(rng: np.random.Generator, n: int) -> _People:
    t = _tables()
    place = rng.choice(len(t.place_w), size=n, p=t.place_w)
    country = t.place_country[place]
    gender = (rng.random(n) < 0.5).astype(np.int64)
    first = t.first.index(rng, gender * len(_COUNTRIES) + country)
    last = t.last.index(rng, country)
    return _People(country, place, gender, first, last)


def _variant(rng: np.random.Generator, idx: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    return idx * len(weights) + rng.choice(len(weights), size=len(idx), p=weights)


def _phones(rng: np.random.Generator, place: np.ndarray, junk: np.ndarray) -> pa.Array:
    """Valid numbers for the row's place in one of its country's spellings, ~2% with an extension; junk rows
    get unusable text instead."""
    t = _tables()
    n = len(place)
    col = (rng.random(n)[:, None] > t.place_kind_cum[place]).sum(axis=1)
    kind = t.place_kinds[place, col]
    n_formats = np.array([len(k.formats) for k in t.kinds])[kind]
    group = kind * t.max_formats + (rng.random(n) * n_formats).astype(np.int64)

    def build(g: int, idx: np.ndarray) -> tuple[str, np.ndarray]:
        ph = t.kinds[g // t.max_formats]
        m = len(idx)
        prefixes = np.array([np.frombuffer(p.encode(), np.uint8) for p in ph.prefixes])
        first = np.frombuffer(ph.first.encode(), np.uint8)
        rest = ph.length - prefixes.shape[1] - 1
        chars = np.hstack([prefixes[rng.integers(0, len(prefixes), m)],
                           first[rng.integers(0, len(first), m)][:, None],
                           rng.integers(48, 58, (m, rest), dtype=np.uint8)])
        return ph.formats[g % t.max_formats], chars

    phones = _by_pattern(group, build)
    ext = (rng.random(n) < 0.02) & ~junk
    phones = _patch(phones, ext, lambda p: _cat(p, _pick((" x", " ext. ", " ext ", " #"),
                                                         rng.integers(0, 4, len(p))),
                                                _str(rng.integers(1, 9999, len(p)))))
    return _patch(phones, junk, lambda p: _pick(_INVALID_PHONE, rng.integers(0, len(_INVALID_PHONE), len(p))))


_EMAIL_OK, _EMAIL_JUNK, _EMAIL_SHA, _EMAIL_SHA_UPPER = 0, 1, 2, 3
_EMAIL_KINDS = (0.955, 0.015, 0.02, 0.01)


def _emails(rng: np.random.Generator, people: _People, kind: np.ndarray) -> pa.Array:
    """Name-based addresses in mixed case and padding; `kind` picks junk or SHA-256 hex instead."""
    t = _tables()
    n = len(people.first)
    fa, la = t.first_ascii.take(people.first), t.last_ascii.take(people.last)
    domain = t.domains.take(t.domains.index(rng, people.country, first=0.4))

    def local(style: int, idx: np.ndarray) -> pa.Array:
        f, l, m = fa.take(idx), la.take(idx), len(idx)
        if style == 0:
            return _cat(f, ".", l)
        if style == 1:
            return _cat(f, l, _str(rng.integers(1, 100, m)))
        if style == 2:
            return _cat(pc.utf8_slice_codeunits(f, 0, 1), l)
        if style == 3:
            return _cat(f, "_", l, _fixed(_digits(rng.integers(0, 100, m), 2)))
        return _cat(f, ".", l, "+shop")

    email = _cat(_by_group(rng.choice(5, size=n, p=[0.4, 0.2, 0.15, 0.15, 0.1]), local), "@", domain)
    case = rng.choice(5, size=n, p=[0.72, 0.08, 0.05, 0.05, 0.1])
    email = _patch(email, case == 1, pc.utf8_upper)
    email = _patch(email, case == 2, pc.utf8_capitalize)
    email = _patch(email, case == 3, pc.utf8_title)
    email = _patch(email, case == 4, lambda e: _cat(_pick(("  ", "", " "), rng.integers(0, 3, len(e))), e,
                                                    _pick((" ", "  ", ""), rng.integers(0, 3, len(e)))))
    junk = kind == _EMAIL_JUNK
    if junk.any():
        templates = np.array(_INVALID_EMAIL)[rng.integers(0, len(_INVALID_EMAIL), int(junk.sum()))]
        bad = [tpl.format(f=a, l=b) for tpl, a, b in zip(templates, fa.filter(junk).to_pylist(),
                                                         la.filter(junk).to_pylist())]
        email = pc.replace_with_mask(email, pa.array(junk), pa.array(bad, pa.string()))
    hashed = kind >= _EMAIL_SHA
    if hashed.any():
        plain = pc.utf8_lower(pc.utf8_trim_whitespace(email.filter(hashed))).to_pylist()
        upper = kind[hashed] == _EMAIL_SHA_UPPER
        digests = [hashlib.sha256(v.encode()).hexdigest() for v in plain]
        email = pc.replace_with_mask(email, pa.array(hashed),
                                     pa.array([d.upper() if u else d for d, u in zip(digests, upper)]))
    return email


def _names(rng: np.random.Generator, people: _People) -> tuple[pa.Array, pa.Array]:
    t = _tables()
    w = (0.7, 0.1, 0.1, 0.1)    # as entered, UPPER, lower, padded
    return (t.first_display.take(_variant(rng, people.first, w)),
            t.last_display.take(_variant(rng, people.last, w)))


def _genders(rng: np.random.Generator, people: _People) -> pa.Array:
    t = _tables()
    words = t.gender.take(t.gender.index(rng, people.gender * len(_COUNTRIES) + people.country, first=0.3))
    junk = rng.random(len(people.gender)) < 0.01
    return _patch(words, junk, lambda w: _pick(_INVALID_GENDER, rng.integers(0, len(_INVALID_GENDER), len(w))))


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    y = d.astype("datetime64[Y]")
    m = d.astype("datetime64[M]")
    return (y.astype(np.int64) + 1970, (m - y.astype("datetime64[M]")).astype(np.int64) + 1,
            (d - m.astype("datetime64[D]")).astype(np.int64) + 1)


_DOB_FORMATS = ("####-##-##", "##/##/####", "m/d/y", "##.##.####", "########", "####-##-## 00:00:00",
                "Month d, y")


def _dobs(rng: np.random.Generator, n: int) -> pa.Array:
    lo, hi = dt.date(1940, 1, 1).toordinal(), dt.date(2007, 12, 31).toordinal()
    y, m, d = _ymd(rng.integers(lo, hi + 1, n) - dt.date(1970, 1, 1).toordinal())

    def build(f: int, idx: np.ndarray) -> pa.Array:
        yi, mi, di = y[idx], m[idx], d[idx]
        if f == 2:
            return _cat(_str(mi), "/", _str(di), "/", _str(yi))
        if f == 6:
            return _cat(_pick(_MONTHS, mi - 1), " ", _str(di), ", ", _str(yi))
        ys, ms, ds = _digits(yi, 4), _digits(mi, 2), _digits(di, 2)
        order = {1: (ms, ds, ys), 3: (ds, ms, ys)}.get(f, (ys, ms, ds))
        return _render(_DOB_FORMATS[f], np.hstack(order))

    out = _by_group(rng.choice(7, size=n, p=[0.35, 0.2, 0.07, 0.1, 0.1, 0.1, 0.08]), build)
    junk = rng.random(n) < 0.01
    return _patch(out, junk, lambda v: _pick(_INVALID_DOB, rng.integers(0, len(_INVALID_DOB), len(v))))


def _zips(rng: np.random.Generator, people: _People) -> pa.Array:
    """US: ZIP, ZIP+4 in three spellings, leading zero lost; elsewhere the place's postcodes in any spacing/case."""
    t = _tables()
    n = len(people.place)
    raw = t.zips.take(t.zips.index(rng, people.place))
    us = t.is_us[people.country]
    style = np.where(us, rng.choice(5, size=n, p=[0.55, 0.2, 0.1, 0.07, 0.08]),
                     5 + rng.choice(3, size=n, p=[0.75, 0.15, 0.1]))

    def build(s: int, idx: np.ndarray) -> pa.Array:
        r = raw.take(idx)
        if s >= 5:
            return [r, pc.utf8_lower(pc.replace_substring(r, " ", "")), pc.replace_substring(r, " ", "")][s - 5]
        five = _cat(r, _fixed(_digits(rng.integers(0, 100, len(idx)), 2)))
        plus4 = _fixed(_digits(rng.integers(1, 10000, len(idx)), 4))
        return [five, _cat(five, "-", plus4), _cat(five, plus4), _cat(five, " ", plus4),
                pc.utf8_ltrim(five, characters="0")][s]

    return _by_group(style, build)


def _amounts(rng: np.random.Generator, country: np.ndarray,
             with_items: bool) -> tuple[np.ndarray, pa.Array | None]:
    """(value, items JSON): 1-4 lines; the value is their sum, plus sales tax on most US receipts."""
    t = _tables()
    n = len(country)
    lines = rng.choice(4, size=n, p=[0.45, 0.3, 0.15, 0.1]) + 1
    qty = rng.choice([1, 1, 1, 2, 3], size=(n, 4))
    minor = t.minor[country]
    unit = 10.0 ** minor
    usd = np.exp(rng.normal(np.log(18.0), 0.8, (n, 4)))
    price = np.maximum(1, np.round(usd * (t.scale[country] * unit)[:, None])).astype(np.int64)
    active = np.arange(4)[None, :] < lines[:, None]
    subtotal = (qty * price * active).sum(axis=1)
    tax = np.where(t.is_us[country] & (rng.random(n) < 0.6), 0.08875, 0.0)
    value = np.round(subtotal * (1.0 + tax)) / unit
    if not with_items:
        return value, None
    whole = minor == 0
    pieces = []
    for s in range(4):
        rows = np.flatnonzero(lines > s)
        p, m = price[rows, s], len(rows)
        cents = _fixed(_digits(p % 100, 2))
        text = _cat(_str(p // 100), ".", cents)
        text = _patch(text, whole[rows], lambda _, p=p, rows=rows: _str(p[whole[rows]]))
        head = _render('{"id": "SKU-#####", "quantity": #, "item_price": ',
                       np.hstack([_digits(rng.integers(10000, 100000, m), 5), _digits(qty[rows, s], 1)]))
        piece = _cat(", " if s else "", head, text, "}")
        pieces.append(piece if s == 0 else pc.fill_null(_scatter(piece, lines > s), ""))
    return value, _cat("[", *pieces, "]")


def _currencies(rng: np.random.Generator, country: np.ndarray) -> pa.Array:
    t = _tables()
    return t.currency.take(t.currency.index(rng, country, first=0.7))


def _local_to_utc(local: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """New York wall-clock epoch values -> (UTC epoch, wall clock after DST fix-up), both in `unit`."""
    ts = pa.array(local.astype(f"datetime64[{unit}]"))
    utc = pc.assume_timezone(ts, TIMEZONE, ambiguous="earliest", nonexistent="latest")
    wall = pc.local_timestamp(utc)
    return (utc.cast(pa.timestamp(unit)).cast(pa.int64()).to_numpy(),
            wall.cast(pa.int64()).to_numpy())


def _day_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into the local day; most activity in opening hours."""
    busy = rng.random(n) < 0.85
    return np.where(busy, rng.integers(9 * 3600, 21 * 3600, n), rng.integers(0, 86400, n))


def _clock(epoch_s: np.ndarray) -> np.ndarray:
    y, m, d = _ymd(epoch_s // 86400)
    sod = epoch_s % 86400
    return np.hstack([_digits(y, 4), _digits(m, 2), _digits(d, 2),
                      _digits(sod // 3600, 2), _digits(sod // 60 % 60, 2), _digits(sod % 60, 2)])


def _event_time_text(rng: np.random.Generator, local: np.ndarray) -> pa.Array:
    """UTC 'Z', naive New York wall clock, or wall clock with its offset."""
    utc, wall = _local_to_utc(local, "s")

    def build(form: int, idx: np.ndarray) -> tuple[str, np.ndarray]:
        if form == 0:
            return "####-##-##T##:##:##Z", _clock(utc[idx])
        if form == 1:
            return "####-##-## ##:##:##", _clock(wall[idx])
        off = wall[idx] - utc[idx]
        sign = np.where(off < 0, ord("-"), ord("+")).astype(np.uint8)[:, None]
        off = np.abs(off)
        return "####-##-##T##:##:#####:##", np.hstack([_clock(wall[idx]), sign, _digits(off // 3600, 2),
                                                        _digits(off // 60 % 60, 2)])

    return _by_pattern(rng.choice(3, size=len(local), p=[0.45, 0.35, 0.2]), build)


def _uuid(raw: np.ndarray, upper: bool = False) -> pa.Array:
    return _render(_UUID, _hex(raw, upper))


def _uuid4_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw


def _pick_defects(rng: np.random.Generator, n: int, k: int, count: int) -> np.ndarray:
    """-1 for valid rows; k random rows get defect codes dealt out in turn from a random start."""
    defect = np.full(n, -1, np.int64)
    if k:
        rows = rng.choice(n, size=k, replace=False)
        defect[rows] = (np.arange(k) + rng.integers(0, count)) % count
    return defect


def _duplicate_sources(rng: np.random.Generator, defect: np.ndarray, dup: int, fallback: int,
                       etype: np.ndarray, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each duplicate row a random earlier eligible row of the same event type; rows without one
    get the `fallback` defect. Returns (rows, sources)."""
    rows = np.flatnonzero(defect == dup)
    src = np.full(len(rows), -1, np.int64)
    for e in np.unique(etype[rows]):
        sel = np.flatnonzero(etype[rows] == e)
        pool = np.flatnonzero(eligible & (etype == e))
        before = np.searchsorted(pool, rows[sel])
        ok = before > 0
        pick = np.minimum((rng.random(len(sel)) * before).astype(np.int64), np.maximum(before - 1, 0))
        src[sel[ok]] = pool[pick[ok]]
    defect[rows[src < 0]] = fallback
    keep = src >= 0
    return rows[keep], src[keep]


def _bad_rows(bad_rate: float, start: int, n: int) -> int:
    """Rows to spoil in [start, start+n) so that the running total is round(bad_rate * rows)."""
    return int(math.floor(bad_rate * (start + n) + 0.5)) - int(math.floor(bad_rate * start + 0.5))


# --------------------------------------------------------------------------------------------------------------
# The two kinds.

_PURCHASE, _LEAD = 0, 1   # _OFFLINE_EVENTS[2] is "Other"
_OFFLINE_EVENTS = ("Purchase", "Lead", "Other")
_APP_EVENTS = ("MobileAppInstall", "AddToCart", "Purchase", "CompleteRegistration", "StartTrial")
_APP_INSTALL, _APP_CART, _APP_PURCHASE = 0, 1, 2


@dataclass
class _Part:
    table: pa.Table
    defect: np.ndarray
    weak: np.ndarray


def _offline_part(rng: np.random.Generator, start: int, n: int, date: dt.date, k: int, seed: int,
                  total: int) -> _Part:
    t = _tables()
    d = {name: i for i, name in enumerate(OFFLINE_DEFECTS)}
    defect = _pick_defects(rng, n, k, len(OFFLINE_DEFECTS))
    people = _people(rng, n)
    etype = rng.choice(3, size=n, p=[0.74, 0.24, 0.02])
    etype[(defect == d["unknown_currency"]) | (defect == d["purchase_without_value"])] = _PURCHASE
    good = defect < 0
    is_lead = etype == _LEAD
    weak = good & ~is_lead & (rng.random(n) < WEAK_RATE)

    # ids: store + running order number; lead ids unique per (date, global row) so days never collide
    store = 100 + people.place * 10 + rng.integers(0, 4, n)
    order_no = np.arange(start, start + n, dtype=np.int64) + 1
    lead_no = (10**15 + (date.toordinal() % 100_000) * 10**10
               + (np.arange(start, start + n, dtype=np.int64) * 7_919_113 + (seed % 10**9) * 104_729) % 10**10)
    dup_rows, dup_src = _duplicate_sources(rng, defect, d["duplicate_id"], d["missing_id"], etype, good & ~weak)
    store[dup_rows], order_no[dup_rows], lead_no[dup_rows] = store[dup_src], order_no[dup_src], lead_no[dup_src]
    width = max(6, len(str(total)))
    missing = defect == d["missing_id"]
    store_digits = _digits(store, 4)
    order_id = _render(f"S####-{date.strftime('%Y%m%d')}-" + "#" * width,
                       np.hstack([store_digits, _digits(order_no, width)]))
    order_id = _null_where(order_id, is_lead | missing)
    lead_id = _null_where(_fixed(_digits(lead_no, 16)), ~is_lead | missing)
    action = _where(is_lead, _where(rng.random(n) < 0.6, "phone_call", "system_generated"), "physical_store")

    # time: the partition day in New York; bad rows shifted or unreadable
    shift = np.select([defect == d["too_old"], defect == d["future_time"]], [-70, 30], 0)
    day0 = (date.toordinal() - dt.date(1970, 1, 1).toordinal()) * 86400
    event_time = _event_time_text(rng, day0 + shift * 86400 + _day_seconds(rng, n))
    event_time = _patch(event_time, defect == d["unparseable_time"],
                        lambda v: _pick(_BAD_TIME, rng.integers(0, len(_BAD_TIME), len(v))))

    # who: decide presence first, make sure every valid non-weak row has a usable strong identifier
    has_email = rng.random(n) < 0.8
    email_kind = rng.choice(4, size=n, p=_EMAIL_KINDS)
    has_phone = rng.random(n) < np.where(is_lead, 0.92, 0.65)
    phone_junk = rng.random(n) < 0.015
    has_loyalty = rng.random(n) < 0.4
    has_rampid = (rng.random(n) < 0.15) | (defect == d["partner_id_without_name"])
    strong = ((has_email & (email_kind != _EMAIL_JUNK)) | (has_phone & ~phone_junk) | has_loyalty | has_rampid
              | is_lead)
    fix = ~strong & ~weak
    has_email[fix], email_kind[fix] = True, _EMAIL_OK
    keep = ~weak
    has_email &= keep
    has_phone &= keep
    has_loyalty &= keep
    has_rampid &= keep
    has_alt = (rng.random(n) < 0.08) & keep
    has_names = (rng.random(n) < 0.85) & keep
    has_dob = (rng.random(n) < 0.45) & keep

    email = _scatter(_emails(rng, people.take(has_email), email_kind[has_email]), has_email)
    pa_alt = people.take(has_alt)
    alt = _scatter(_cat(t.first_ascii.take(pa_alt.first), ".", t.last_ascii.take(pa_alt.last), "@",
                        _pick(_COMPANY_DOMAINS, rng.integers(0, len(_COMPANY_DOMAINS), len(pa_alt.first)))), has_alt)
    phone = _scatter(_phones(rng, people.place[has_phone], phone_junk[has_phone]), has_phone)
    first_name, last_name = _names(rng, people)
    loyalty = _render("C#########", _digits(rng.integers(0, 10**9, int(has_loyalty.sum())), 9))
    lcase = rng.random(len(loyalty))
    loyalty = _patch(_patch(loyalty, lcase < 0.05, pc.utf8_lower), lcase > 0.9, lambda v: _cat(v, " "))
    m = int(has_rampid.sum())
    rampid = _render("XY" + "#" * 47, np.hstack([_digits(rng.integers(1000, 10000, m), 4),
                                                 _B64URL[rng.integers(0, 64, (m, 43))]]))
    partner_missing = (defect == d["partner_id_without_name"])[has_rampid]
    partner = _null_where(_pick(("liveramp",), np.zeros(m, np.int64)), partner_missing)

    # money
    buy = etype == _PURCHASE
    value, items = _amounts(rng, people.country[buy], with_items=True)
    value_arr = _null_where(_scatter(pa.array(value), buy), defect == d["purchase_without_value"])
    currency = _scatter(_currencies(rng, people.country[buy]), buy)
    currency = _where(defect == d["unknown_currency"], "XYZ", currency)

    table = pa.table({
        "order_id": order_id,
        "lead_id": lead_id,
        "event_name": _pick(_OFFLINE_EVENTS, etype),
        "action_source": action,
        "event_time": event_time,
        "store_code": _null_where(_fixed(store_digits), is_lead),
        "email": email,
        "email_alt": alt,
        "phone": phone,
        "first_name": _null_where(first_name, ~has_names),
        "last_name": _null_where(last_name, ~has_names),
        "gender": _null_where(_genders(rng, people), rng.random(n) >= 0.6),
        "date_of_birth": _scatter(_dobs(rng, int(has_dob.sum())), has_dob),
        # weak rows always keep their location so they stay well-formed
        "city": _null_where(t.city.take(t.city.index(rng, people.place, first=0.6)),
                            (rng.random(n) >= 0.9) & keep),
        "state": _null_where(t.state.take(t.state.index(rng, people.place, first=0.55)),
                             (rng.random(n) >= 0.85) & keep),
        "zip": _null_where(_zips(rng, people), (rng.random(n) >= 0.9) & keep),
        "country": _null_where(t.country.take(t.country.index(rng, people.country, first=0.35)),
                               (rng.random(n) >= 0.92) & keep),
        "loyalty_id": _scatter(loyalty, has_loyalty),
        "rampid": _scatter(rampid, has_rampid),
        "identity_partner": _scatter(partner, has_rampid),
        "value": value_arr,
        "currency": currency,
        "items": _scatter(items, buy),
    }, schema=OFFLINE_SCHEMA)
    return _Part(table, defect, weak)


def _app_part(rng: np.random.Generator, start: int, n: int, date: dt.date, k: int, seed: int,
              total: int) -> _Part:
    t = _tables()
    d = {name: i for i, name in enumerate(APP_DEFECTS)}
    defect = _pick_defects(rng, n, k, len(APP_DEFECTS))
    people = _people(rng, n)
    etype = rng.choice(5, size=n, p=[0.25, 0.3, 0.2, 0.15, 0.1])
    etype[(defect == d["unknown_currency"]) | (defect == d["purchase_without_value"])] = _APP_PURCHASE
    good = defect < 0
    weak = good & (rng.random(n) < WEAK_RATE)

    id_bytes = _uuid4_bytes(rng, n)
    dup_rows, dup_src = _duplicate_sources(rng, defect, d["duplicate_id"], d["missing_id"], etype, good & ~weak)
    id_bytes[dup_rows] = id_bytes[dup_src]
    event_id = _null_where(_uuid(id_bytes), defect == d["missing_id"])

    shift = np.select([defect == d["too_old"], defect == d["future_time"]], [-10, 30], 0)
    day0 = (date.toordinal() - dt.date(1970, 1, 1).toordinal()) * 86400
    local_ms = (day0 + shift * 86400 + _day_seconds(rng, n)) * 1000 + rng.integers(0, 1000, n)
    ts_ms, _ = _local_to_utc(local_ms, "ms")
    unreadable = defect == d["unparseable_time"]
    in_seconds = unreadable & (rng.random(n) < 0.4)   # a classic export bug: seconds where ms are expected
    ts_ms = np.where(in_seconds, ts_ms // 1000, ts_ms)
    ts = pa.array(ts_ms, pa.int64(), mask=unreadable & ~in_seconds)

    ios = rng.random(n) < 0.45
    att = np.where(ios, rng.random(n) < 0.35, rng.random(n) < 0.95).astype(np.int64)
    att_arr = pa.array(att, pa.int64(), mask=defect == d["missing_att"])
    app_track = pa.array((rng.random(n) < 0.93).astype(np.int64), pa.int64(), mask=rng.random(n) < 0.03)

    dev = t.device.index(rng, ios.astype(np.int64))
    version = rng.integers(0, len(_APP_VERSIONS), n)
    storage = rng.integers(0, len(_STORAGE), n)
    country = pa.array(people.country)
    ext = [
        _where(ios, "i2", "a2"),
        _pick(("com.example.shop",), np.zeros(n, np.int64)),
        _pick([v[0] for v in _APP_VERSIONS], version),
        _pick([v[1] for v in _APP_VERSIONS], version),
        t.os.take(t.os.index(rng, dev)),
        t.device.take(dev),
        t.locale.take(country),
        t.tz_abbr.take(country),
        t.carriers.take(t.carriers.index(rng, people.country, first=0.3)),
        *[col.take(dev) for col in t.device_cols],
        _pick(_STORAGE, storage),
        _str(rng.integers(1, 64, n) * (storage + 1)),
        t.tz.take(country),
    ]
    broken = defect == d["missing_extinfo"]
    which = rng.random(n) < 0.5
    blank = rng.random(n) < 0.5
    for slot, hit in ((0, broken & which), (4, broken & ~which)):
        ext[slot] = _null_where(_where(hit & blank, "", ext[slot]), hit & ~blank)

    # who: ids, addresses; every valid non-weak row keeps at least one usable identifier
    zero_idfa = ios & (att == 0)
    has_madid = rng.random(n) < np.where(zero_idfa, 0.5, 0.9)
    has_anon = rng.random(n) < 0.85
    ip_kind = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    has_email = rng.random(n) < 0.3
    email_kind = rng.choice(4, size=n, p=_EMAIL_KINDS)
    has_phone = rng.random(n) < 0.2
    phone_junk = rng.random(n) < 0.015
    strong = ((has_madid & ~zero_idfa) | has_anon | (ip_kind < 2) | (has_email & (email_kind != _EMAIL_JUNK))
              | (has_phone & ~phone_junk))
    has_anon |= ~strong & ~weak
    keep = ~weak
    has_madid &= keep
    has_anon &= keep
    has_email &= keep
    has_phone &= keep
    ip_kind[weak] = 2

    mios, mzero = ios[has_madid], zero_idfa[has_madid]
    madid = _where(mios, _uuid(_uuid4_bytes(rng, len(mios)), upper=True), _uuid(_uuid4_bytes(rng, len(mios))))
    madid = _scatter(_where(mzero, "00000000-0000-0000-0000-000000000000", madid), has_madid)
    anon = _scatter(_render("XZ" + _UUID, _hex(_uuid4_bytes(rng, int(has_anon.sum())), upper=True)), has_anon)

    def ip(kind: int, idx: np.ndarray) -> pa.Array:
        c, m = people.country[idx], len(idx)
        if kind == 0:
            return _cat(t.ip4.take(t.ip4.index(rng, c)), ".", _str(rng.integers(0, 256, m)), ".",
                        _str(rng.integers(0, 256, m)), ".", _str(rng.integers(1, 255, m)))
        if kind == 1:
            return _cat(t.ip6.take(t.ip6.index(rng, c)),
                        _render(":####:####:####:####:####:####",
                                _hex(rng.integers(0, 256, (m, 12), dtype=np.uint8))))
        return pa.nulls(m, pa.string())

    email = _scatter(_emails(rng, people.take(has_email), email_kind[has_email]), has_email)
    phone = _scatter(_phones(rng, people.place[has_phone], phone_junk[has_phone]), has_phone)

    priced = (etype == _APP_PURCHASE) | (etype == _APP_CART)
    value, _ = _amounts(rng, people.country[priced], with_items=False)
    value_arr = _null_where(_scatter(pa.array(value), priced), defect == d["purchase_without_value"])
    currency = _where(defect == d["unknown_currency"], "XYZ",
                      _scatter(_currencies(rng, people.country[priced]), priced))
    referred = ~ios & (etype == _APP_INSTALL) & (rng.random(n) < 0.7)
    referrer = _scatter(_pick(_REFERRERS, rng.integers(0, len(_REFERRERS), int(referred.sum()))), referred)

    cols: dict[str, pa.Array] = {
        "event_id": event_id,
        "event_name": _pick(_APP_EVENTS, etype),
        "event_ts_ms": ts,
        "advertiser_tracking_enabled": att_arr,
        "application_tracking_enabled": app_track,
    }
    cols.update({f"ext_{i:02d}": col for i, col in enumerate(ext)})
    cols.update({
        "madid": madid,
        "anon_id": anon,
        "client_ip_address": _by_group(ip_kind, ip),
        "email": email,
        "phone": phone,
        # weak rows keep only their country
        "country": _null_where(t.country.take(t.country.index(rng, people.country, first=0.35)),
                               (rng.random(n) >= 0.9) & keep),
        "value": value_arr,
        "currency": currency,
        "install_referrer": referrer,
    })
    return _Part(pa.table(cols, schema=APP_SCHEMA), defect, weak)


# --------------------------------------------------------------------------------------------------------------
# Files.

# Only low-cardinality columns: dictionary-encoding unique ids costs time and gains nothing.
_DICTIONARY = ("event_name", "action_source", "store_code", "gender", "city", "state", "country",
               "identity_partner", "currency", "advertiser_tracking_enabled", "application_tracking_enabled",
               "install_referrer", *(f"ext_{i:02d}" for i in range(16)))


def _write(table: pa.Table, path: Path, fmt: Format) -> None:
    """Write next to the target and rename, so a reader's glob never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, tmp, compression="zstd", compression_level=1, use_dictionary=list(_DICTIONARY),
                       write_statistics=True, row_group_size=131_072, version="2.6")
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(include_header=True, delimiter=",",
                                                                     quoting_style="needed"))
    os.replace(tmp, path)


_COMMON_HEAD = """\
# capi-pipeline sample pipeline ({kind}), written by `capi-pipeline sample --kind {kind}`.
# Relative paths are relative to this file. The run date is not written here: it only picks the partition.
version: 1
name: {kind}_sample                  # [a-z0-9_]+ ; the Airflow DAG id is capi_{kind}_sample
schedule: "@daily"

# One warehouse partition per day; {{date}} becomes the run date (YYYY-MM-DD).
source:
  path: "{kind}/dt={{date}}/part-*.{ext}"
  format: {ext}                        # parquet | csv | jsonl
  batch_rows: 50000                    # rows read, validated and sent per chunk

# ODCS v3 data contract checked before anything is sent (builtin:<name> or a path relative to this file).
contract: builtin:{contract}

# The Meta dataset (pixel) receiving the events. The token is never stored here.
destination:
  dataset_id: {dataset_id}
  api_version: v25.0
  endpoint: {endpoint}   # `run --endpoint` overrides (e.g. the local sandbox)
  token_env: META_CAPI_ACCESS_TOKEN    # environment variable holding the access token (CLI runs)
  connection_id: meta_capi             # Airflow connection holding the token (DAG runs)
  test_event_code: null                # Test Events code; such events are NOT dropped by Meta
  partner_agent: null                  # default capi-pipeline-<version>
  upload_tag: null
  namespace_id: null
"""

_OFFLINE_BODY = """
# CAPI field <- source column. A list merges several columns into one de-duplicated array;
# {const: v} is a constant; {column: c, parse: json} parses JSON text.
mapping:
  event_name: event_name
  event_time: event_time
  action_source: action_source
  user_data.em: [email, email_alt]
  user_data.ph: phone
  user_data.fn: first_name
  user_data.ln: last_name
  user_data.ge: gender
  user_data.db: date_of_birth
  user_data.ct: city
  user_data.st: state
  user_data.zp: zip
  user_data.country: country
  user_data.external_id: loyalty_id
  user_data.lead_id: lead_id
  user_data.partner_id: rampid
  user_data.partner_name: identity_partner
  custom_data.value: value
  custom_data.currency: currency
  custom_data.order_id: order_id
  custom_data.contents: {column: items, parse: json}
  custom_data.store_data.store_code: store_code

# event_time arrives as text in several forms; naive values are New York wall-clock time.
event_time: {unit: auto, timezone: America/New_York}   # auto | s | ms | iso

# Stable event id (Meta's dedup key with event_name): the order id, or the lead id for CRM leads.
event_id: {keys: [order_id, lead_id]}

# Used when a row leaves the column empty.
defaults: {action_source: physical_store, currency: USD}
"""

_APP_BODY = """
# CAPI field <- source column. app_data.extinfo lists the 16 positional extinfo slots in order.
mapping:
  event_name: event_name
  event_time: event_ts_ms
  app_data.advertiser_tracking_enabled: advertiser_tracking_enabled
  app_data.application_tracking_enabled: application_tracking_enabled
  app_data.extinfo: [ext_00, ext_01, ext_02, ext_03, ext_04, ext_05, ext_06, ext_07,
                     ext_08, ext_09, ext_10, ext_11, ext_12, ext_13, ext_14, ext_15]
  app_data.install_referrer: install_referrer
  user_data.madid: madid
  user_data.anon_id: anon_id
  user_data.client_ip_address: client_ip_address
  user_data.em: email
  user_data.ph: phone
  user_data.country: country
  custom_data.value: value
  custom_data.currency: currency

# event_ts_ms is epoch milliseconds (UTC by definition).
event_time: {unit: ms}

# The app's own event id, shared with the SDK / MMP so Meta can deduplicate.
event_id: {column: event_id}

# Used when a row leaves the column empty.
defaults: {action_source: app, currency: USD}
"""

_COMMON_TAIL = """
# Customer information: normalize + SHA-256 here; list columns that already hold SHA-256 hex in `prehashed`.
user_data: {{hash: true, prehashed: [], default_country: US, dob_order: mdy}}

# Limited Data Use (off | all | by_state | consent). {ldu_note}
ldu: {{policy: {ldu_policy}}}

# At most 1,000 events per request (Meta's limit); requests in flight at once.
batching: {{size: 1000, concurrency: 4}}

# Meta's time windows: 7 days, 62 days for physical_store events.
rules: {{max_age_days: 7, physical_store_max_age_days: 62}}

# Exactly-once ledger: a path relative to this file (SQLite) or a SQLAlchemy URL.
ledger: state/ledger.sqlite

# Run reports go to <output>/<name>/<date>/.
output: out
"""

_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9._~:/%-]+$")


def pipeline_yaml(kind: Kind, fmt: Format = "parquet", *, dataset_id: str | None = None,
                  endpoint: str | None = None) -> str:
    """The pipeline file text for a sample of `kind` (the same for every date)."""
    endpoint = endpoint or DEFAULT_ENDPOINT
    head = _COMMON_HEAD.format(
        kind=kind, ext=fmt, contract="offline_conversions" if kind == "offline" else "app_events",
        dataset_id=json.dumps(dataset_id or DEFAULT_DATASET_ID[kind]),
        endpoint=endpoint if _PLAIN.match(endpoint) else json.dumps(endpoint))
    note = ("by_state flags rows whose state is a covered US state." if kind == "offline" else
            "App rows carry no state column, so by_state cannot apply: off here; use consent or all if you must.")
    policy = "by_state" if kind == "offline" else '"off"'  # quoted: YAML 1.1 reads a bare off as false
    text = head + (_OFFLINE_BODY if kind == "offline" else _APP_BODY) + _COMMON_TAIL.format(
        ldu_note=note, ldu_policy=policy)
    return "\n".join(_align(line) for line in text.split("\n"))


def _align(line: str, column: int = 39) -> str:
    """Line up trailing comments of the template, whatever the substituted values' lengths."""
    if line.startswith("#") or "  # " not in line:
        return line
    value, comment = line.split("  # ", 1)
    return f"{value.rstrip():<{column - 1}} # {comment}"


# --------------------------------------------------------------------------------------------------------------
# Public API.

def generate(kind: Kind, rows: int, date: dt.date, out: Path, *, seed: int = 7, bad_rate: float = 0.05,
             fmt: Format = "parquet", part_rows: int = 250_000, dataset_id: str | None = None,
             endpoint: str | None = None) -> SampleResult:
    """Write one day's messy partition of `kind` under `out`, and `out/<kind>.pipeline.yaml`."""
    if kind not in _KIND_CODE:
        raise ConfigurationError(f"unknown sample kind {kind!r}: use offline or app")
    if fmt not in ("parquet", "csv"):
        raise ConfigurationError(f"unknown sample format {fmt!r}: use parquet or csv")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ConfigurationError("rows must be a non-negative integer")
    if not 0.0 <= bad_rate <= 1.0:
        raise ConfigurationError("bad_rate must be between 0 and 1")
    if part_rows < 1:
        raise ConfigurationError("part_rows must be at least 1")
    if seed < 0:
        raise ConfigurationError("seed must be a non-negative integer")
    if dataset_id is not None and not dataset_id.isdigit():
        raise ConfigurationError("dataset_id must be digits")

    out = Path(out)
    part_dir = out / kind / f"dt={date.isoformat()}"
    part_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*part_dir.glob("part-*.parquet"), *part_dir.glob("part-*.csv")]:
        stale.unlink()   # a previous, larger run must not leave parts the glob would pick up

    builder = _offline_part if kind == "offline" else _app_part
    names = OFFLINE_DEFECTS if kind == "offline" else APP_DEFECTS
    counts = np.zeros(len(names), np.int64)
    weak = 0
    files: list[Path] = []
    # one writer thread: part i is encoded while part i+1 is generated (at most two parts in memory)
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future[None] | None = None
        for part in range(max(1, math.ceil(rows / part_rows))):
            start = part * part_rows
            n = min(part_rows, rows - start)
            if n <= 0:
                table = (OFFLINE_SCHEMA if kind == "offline" else APP_SCHEMA).empty_table()
            else:
                rng = np.random.default_rng([seed, _KIND_CODE[kind], date.toordinal(), part])
                result = builder(rng, start, n, date, _bad_rows(bad_rate, start, n), seed, rows)
                table = result.table
                counts += np.bincount(result.defect[result.defect >= 0], minlength=len(names))
                weak += int(result.weak.sum())
            if pending is not None:
                pending.result()
            files.append(part_dir / f"part-{part:05d}.{fmt}")
            pending = writer.submit(_write, table, files[-1], fmt)
        if pending is not None:
            pending.result()

    pipeline_path = out / f"{kind}.pipeline.yaml"
    text = pipeline_yaml(kind, fmt, dataset_id=dataset_id, endpoint=endpoint)
    tmp = pipeline_path.with_name(pipeline_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, pipeline_path)
    defects = {name: int(c) for name, c in zip(names, counts)}
    return SampleResult(kind=kind, files=files, pipeline_path=pipeline_path, rows=rows,
                        bad_rows=sum(defects.values()), defects=defects, weak_rows=weak)


def latest_complete_day(now: dt.datetime | None = None) -> dt.date:
    """The latest day that is over in the sample's timezone (New York): a sample of that day has no event in the
    future. "Yesterday" by the UTC date is not over there until 05:00 UTC, and its evening's events would be
    rejected as `event_in_future`."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(ZoneInfo(TIMEZONE)).date() - dt.timedelta(days=1)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"bad rate must be a number between 0 and 1, not {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `capi-pipeline sample`."""
    parser.add_argument("--kind", required=True, choices=("offline", "app"), help="which warehouse export")
    parser.add_argument("--rows", required=True, type=_count, help="number of rows (exact)")
    parser.add_argument("--date", required=True, type=_date, help="partition date, YYYY-MM-DD")
    parser.add_argument("--out", required=True, type=Path, help="warehouse root directory")
    parser.add_argument("--seed", type=_count, default=7, help="random seed (default 7)")
    parser.add_argument("--bad-rate", type=_rate, default=0.05, help="share of invalid rows, 0..1 (default 0.05)")
    parser.add_argument("--format", dest="format", choices=("parquet", "csv"), default="parquet",
                        help="file format (default parquet)")
    parser.add_argument("--part-rows", type=_count, default=250_000, help="rows per part file (default 250000)")
    parser.add_argument("--dataset-id", default=None, help="dataset id written to the pipeline file")
    parser.add_argument("--endpoint", default=None, help=f"Graph API endpoint (default {DEFAULT_ENDPOINT})")


def main_from_args(args: argparse.Namespace) -> int:
    """Run `generate` from parsed flags and print a one-line summary."""
    began = time.perf_counter()
    result = generate(args.kind, args.rows, args.date, args.out, seed=args.seed, bad_rate=args.bad_rate,
                      fmt=args.format, part_rows=max(1, args.part_rows), dataset_id=args.dataset_id,
                      endpoint=args.endpoint)
    spent = time.perf_counter() - began
    by_defect = ", ".join(f"{k}={v}" for k, v in result.defects.items() if v) or "none"
    print(f"sample {result.kind}: {result.rows} rows in {len(result.files)} part(s) under "
          f"{result.files[0].parent}, {result.bad_rows} bad ({by_defect}), {result.weak_rows} weak-only, "
          f"pipeline {result.pipeline_path} ({spent:.1f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="capi-pipeline sample", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


__all__ = ["APP_DEFECTS", "APP_SCHEMA", "OFFLINE_DEFECTS", "OFFLINE_SCHEMA", "SampleResult", "add_arguments",
           "generate", "latest_complete_day", "main_from_args", "pipeline_yaml"]

if __name__ == "__main__":
    raise SystemExit(main())
