from __future__ import annotations

import pytest

from capi_pipeline import geo


def country(name: str) -> str | None:
    return geo.COUNTRY_LOOKUP.get(geo.fold(name))


@pytest.mark.parametrize("text, folded", [
    ("U.S.A.", "usa"), ("Québec", "quebec"), ("Großbritannien", "grossbritannien"), ("Ōsutoraria", "osutoraria"),
    ("  Île-de-France ", "iledefrance"), ("Øresund", "oresund"), ("日本", "日本"),
    ("Korea, Republic of", "korearepublicof"),
])
def test_fold(text, folded):
    assert geo.fold(text) == folded


@pytest.mark.parametrize("name, code", [
    # English, codes, sports codes
    ("US", "us"), ("usa", "us"), ("U.S.", "us"), ("U.S.A.", "us"), ("United States of America", "us"),
    ("America", "us"), ("GER", "de"), ("DEU", "de"), ("de", "de"), ("UK", "gb"), ("U.K.", "gb"), ("GBR", "gb"),
    ("Great Britain", "gb"), ("England", "gb"), ("Scotland", "gb"), ("Wales", "gb"), ("Northern Ireland", "gb"),
    ("Holland", "nl"), ("The Netherlands", "nl"), ("NED", "nl"), ("SUI", "ch"), ("Korea, Republic of", "kr"),
    ("Republic of Korea", "kr"), ("South Korea", "kr"), ("North Korea", "kp"), ("Czech Republic", "cz"),
    ("Turkey", "tr"), ("Türkiye", "tr"), ("Russia", "ru"), ("Vietnam", "vn"), ("Ivory Coast", "ci"),
    ("U.S. Virgin Islands", "vi"), ("British Virgin Islands", "vg"), ("UAE", "ae"),
    # German
    ("Deutschland", "de"), ("Bundesrepublik Deutschland", "de"), ("BRD", "de"), ("Vereinigte Staaten", "us"),
    ("Vereinigtes Königreich", "gb"), ("Großbritannien", "gb"), ("Frankreich", "fr"), ("Österreich", "at"),
    ("Schweiz", "ch"), ("Spanien", "es"), ("Niederlande", "nl"), ("Südkorea", "kr"),
    # French
    ("Allemagne", "de"), ("États-Unis", "us"), ("Royaume-Uni", "gb"), ("Angleterre", "gb"), ("Brésil", "br"),
    ("Japon", "jp"), ("Espagne", "es"), ("Pays-Bas", "nl"), ("Suisse", "ch"),
    # Portuguese
    ("Brasil", "br"), ("Alemanha", "de"), ("Estados Unidos da América", "us"), ("EUA", "us"), ("Japão", "jp"),
    ("Espanha", "es"), ("França", "fr"), ("Reino Unido", "gb"), ("Países Baixos", "nl"),
    # Spanish
    ("Alemania", "de"), ("Estados Unidos", "us"), ("EE.UU.", "us"), ("España", "es"), ("México", "mx"),
    ("Países Bajos", "nl"), ("Canadá", "ca"), ("Corea del Sur", "kr"),
    # Japanese, romanized and not
    ("Nippon", "jp"), ("Nihon", "jp"), ("日本", "jp"), ("日本国", "jp"), ("Amerika", "us"), ("アメリカ", "us"),
    ("米国", "us"), ("Igirisu", "gb"), ("イギリス", "gb"), ("Doitsu", "de"), ("ドイツ", "de"), ("Furansu", "fr"),
    ("Burajiru", "br"), ("Kankoku", "kr"), ("韓国", "kr"), ("Ōsutoraria", "au"),
    # ISO names with a comma: the part before it, unless it is another country or shared
    ("Bolivia", "bo"), ("Iran", "ir"), ("Congo", "cg"), ("Virgin Islands", None),
    ("Narnia", None), ("ZZ", None), ("EU", None), ("", None),
])
def test_country_names(name, code):
    assert country(name) == code


def test_every_iso_code_maps_to_itself_and_no_alias_shadows_one():
    lines = geo._ISO_3166_1.strip().splitlines()
    for line in lines:
        a2, a3, _ = line.split(" ", 2)
        assert geo.COUNTRY_LOOKUP[a2.lower()] == a2.lower()
        assert geo.COUNTRY_LOOKUP[a3.lower()] == a2.lower()
    assert all(len(code) == 2 and code.islower() for code in geo.COUNTRY_LOOKUP.values())


@pytest.mark.parametrize("country_code, text, code", [
    ("us", "California", "ca"), ("us", "calif", "ca"), ("us", "ny", "ny"), ("us", "washingtondc", "dc"),
    ("us", "puertorico", "pr"), ("ca", "quebec", "qc"), ("ca", "pq", "qc"), ("ca", "colombiebritannique", "bc"),
    ("ca", "on", "on"), ("us", "on", None), ("ca", "texas", None), ("de", "bayern", None),
])
def test_state_lookup(country_code, text, code):
    assert geo.state_lookup(country_code, geo.fold(text)) == code


def test_us_and_canadian_codes_do_not_collide():
    assert not set(geo.US_STATES) & set(geo.CA_PROVINCES)
