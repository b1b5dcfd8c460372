"""Name tables for `normalize.py`: US states, Canadian provinces, ISO-3166-1 countries (data only).

The country table is ISO-3166-1 (alpha-2, alpha-3, English short/common/official names) as shipped by Debian's
`iso-codes` package, embedded so that no runtime dependency (pycountry) is needed. Lookups go through `fold()`:
lowercase, accents stripped, everything but letters/digits removed ("U.S.A." -> "usa", "Québec" -> "quebec").
"""

from __future__ import annotations

import unicodedata

__all__ = ["CA_PROVINCES", "COUNTRY_LOOKUP", "US_STATES", "fold", "state_lookup"]

US_STATES: dict[str, str] = {
    "al": "Alabama", "ak": "Alaska", "az": "Arizona", "ar": "Arkansas", "ca": "California", "co": "Colorado",
    "ct": "Connecticut", "de": "Delaware", "fl": "Florida", "ga": "Georgia", "hi": "Hawaii", "id": "Idaho",
    "il": "Illinois", "in": "Indiana", "ia": "Iowa", "ks": "Kansas", "ky": "Kentucky", "la": "Louisiana",
    "me": "Maine", "md": "Maryland", "ma": "Massachusetts", "mi": "Michigan", "mn": "Minnesota",
    "ms": "Mississippi", "mo": "Missouri", "mt": "Montana", "ne": "Nebraska", "nv": "Nevada",
    "nh": "New Hampshire", "nj": "New Jersey", "nm": "New Mexico", "ny": "New York", "nc": "North Carolina",
    "nd": "North Dakota", "oh": "Ohio", "ok": "Oklahoma", "or": "Oregon", "pa": "Pennsylvania",
    "ri": "Rhode Island", "sc": "South Carolina", "sd": "South Dakota", "tn": "Tennessee", "tx": "Texas",
    "ut": "Utah", "vt": "Vermont", "va": "Virginia", "wa": "Washington", "wv": "West Virginia",
    "wi": "Wisconsin", "wy": "Wyoming", "dc": "District of Columbia", "pr": "Puerto Rico", "gu": "Guam",
    "vi": "U.S. Virgin Islands", "as": "American Samoa", "mp": "Northern Mariana Islands",
}
CA_PROVINCES: dict[str, str] = {
    "ab": "Alberta", "bc": "British Columbia", "mb": "Manitoba", "nb": "New Brunswick",
    "nl": "Newfoundland and Labrador", "ns": "Nova Scotia", "nt": "Northwest Territories", "nu": "Nunavut",
    "on": "Ontario", "pe": "Prince Edward Island", "qc": "Quebec", "sk": "Saskatchewan", "yt": "Yukon",
}
# Spellings seen in CRM exports besides the official names (folded form -> code).
_STATE_ALIASES: dict[str, dict[str, str]] = {
    "us": {"washingtondc": "dc", "washingtond": "dc", "dstrictofcolumbia": "dc", "calif": "ca", "cal": "ca",
           "mass": "ma", "penn": "pa", "penna": "pa", "fla": "fl", "tex": "tx", "wash": "wa", "ariz": "az",
           "colo": "co", "conn": "ct", "ill": "il", "mich": "mi", "minn": "mn", "wisc": "wi", "wis": "wi",
           "virginislands": "vi", "usvirginislands": "vi", "virginislandsoftheunitedstates": "vi",
           "northernmarianas": "mp", "commonwealthofpuertorico": "pr"},
    "ca": {"pq": "qc", "que": "qc", "province de quebec": "qc", "newfoundland": "nl", "labrador": "nl",
           "nf": "nl", "nfld": "nl", "pei": "pe", "yukonterritory": "yt", "ont": "on", "alta": "ab",
           "sask": "sk", "man": "mb", "colombiebritannique": "bc", "nouveaubrunswick": "nb",
           "nouvelleecosse": "ns", "iledupringeedouard": "pe", "ileduprinceedouard": "pe",
           "terreneuveetlabrador": "nl", "territoiresdunordouest": "nt"},
}

# alpha-2 alpha-3 name|other names ...
_ISO_3166_1 = """
AW ABW Aruba
AF AFG Afghanistan|Islamic Republic of Afghanistan
AO AGO Angola|Republic of Angola
AI AIA Anguilla
AX ALA Åland Islands
AL ALB Albania|Republic of Albania
AD AND Andorra|Principality of Andorra
AE ARE United Arab Emirates
AR ARG Argentina|Argentine Republic
AM ARM Armenia|Republic of Armenia
AS ASM American Samoa
AQ ATA Antarctica
TF ATF French Southern Territories
AG ATG Antigua and Barbuda
AU AUS Australia
AT AUT Austria|Republic of Austria
AZ AZE Azerbaijan|Republic of Azerbaijan
BI BDI Burundi|Republic of Burundi
BE BEL Belgium|Kingdom of Belgium
BJ BEN Benin|Republic of Benin
BQ BES Bonaire, Sint Eustatius and Saba
BF BFA Burkina Faso
BD BGD Bangladesh|People's Republic of Bangladesh
BG BGR Bulgaria|Republic of Bulgaria
BH BHR Bahrain|Kingdom of Bahrain
BS BHS Bahamas|Commonwealth of the Bahamas
BA BIH Bosnia and Herzegovina|Republic of Bosnia and Herzegovina
BL BLM Saint Barthélemy
BY BLR Belarus|Republic of Belarus
BZ BLZ Belize
BM BMU Bermuda
BO BOL Bolivia, Plurinational State of|Bolivia|Plurinational State of Bolivia
BR BRA Brazil|Federative Republic of Brazil
BB BRB Barbados
BN BRN Brunei Darussalam
BT BTN Bhutan|Kingdom of Bhutan
BV BVT Bouvet Island
BW BWA Botswana|Republic of Botswana
CF CAF Central African Republic
CA CAN Canada
CC CCK Cocos (Keeling) Islands
CH CHE Switzerland|Swiss Confederation
CL CHL Chile|Republic of Chile
CN CHN China|People's Republic of China
CI CIV Côte d'Ivoire|Republic of Côte d'Ivoire
CM CMR Cameroon|Republic of Cameroon
CD COD Congo, The Democratic Republic of the
CG COG Congo|Republic of the Congo
CK COK Cook Islands
CO COL Colombia|Republic of Colombia
KM COM Comoros|Union of the Comoros
CV CPV Cabo Verde|Republic of Cabo Verde
CR CRI Costa Rica|Republic of Costa Rica
CU CUB Cuba|Republic of Cuba
CW CUW Curaçao
CX CXR Christmas Island
KY CYM Cayman Islands
CY CYP Cyprus|Republic of Cyprus
CZ CZE Czechia|Czech Republic
DE DEU Germany|Federal Republic of Germany
DJ DJI Djibouti|Republic of Djibouti
DM DMA Dominica|Commonwealth of Dominica
DK DNK Denmark|Kingdom of Denmark
DO DOM Dominican Republic
DZ DZA Algeria|People's Democratic Republic of Algeria
EC ECU Ecuador|Republic of Ecuador
EG EGY Egypt|Arab Republic of Egypt
ER ERI Eritrea|the State of Eritrea
EH ESH Western Sahara
ES ESP Spain|Kingdom of Spain
EE EST Estonia|Republic of Estonia
ET ETH Ethiopia|Federal Democratic Republic of Ethiopia
FI FIN Finland|Republic of Finland
FJ FJI Fiji|Republic of Fiji
FK FLK Falkland Islands (Malvinas)
FR FRA France|French Republic
FO FRO Faroe Islands
FM FSM Micronesia, Federated States of|Federated States of Micronesia
GA GAB Gabon|Gabonese Republic
GB GBR United Kingdom|United Kingdom of Great Britain and Northern Ireland
GE GEO Georgia
GG GGY Guernsey
GH GHA Ghana|Republic of Ghana
GI GIB Gibraltar
GN GIN Guinea|Republic of Guinea
GP GLP Guadeloupe
GM GMB Gambia|Republic of the Gambia
GW GNB Guinea-Bissau|Republic of Guinea-Bissau
GQ GNQ Equatorial Guinea|Republic of Equatorial Guinea
GR GRC Greece|Hellenic Republic
GD GRD Grenada
GL GRL Greenland
GT GTM Guatemala|Republic of Guatemala
GF GUF French Guiana
GU GUM Guam
GY GUY Guyana|Republic of Guyana
HK HKG Hong Kong|Hong Kong Special Administrative Region of China
HM HMD Heard Island and McDonald Islands
HN HND Honduras|Republic of Honduras
HR HRV Croatia|Republic of Croatia
HT HTI Haiti|Republic of Haiti
HU HUN Hungary
ID IDN Indonesia|Republic of Indonesia
IM IMN Isle of Man
IN IND India|Republic of India
IO IOT British Indian Ocean Territory
IE IRL Ireland
IR IRN Iran, Islamic Republic of|Iran|Islamic Republic of Iran
IQ IRQ Iraq|Republic of Iraq
IS ISL Iceland|Republic of Iceland
IL ISR Israel|State of Israel
IT ITA Italy|Italian Republic
JM JAM Jamaica
JE JEY Jersey
JO JOR Jordan|Hashemite Kingdom of Jordan
JP JPN Japan
KZ KAZ Kazakhstan|Republic of Kazakhstan
KE KEN Kenya|Republic of Kenya
KG KGZ Kyrgyzstan|Kyrgyz Republic
KH KHM Cambodia|Kingdom of Cambodia
KI KIR Kiribati|Republic of Kiribati
KN KNA Saint Kitts and Nevis
KR KOR Korea, Republic of|South Korea
KW KWT Kuwait|State of Kuwait
LA LAO Lao People's Democratic Republic|Laos
LB LBN Lebanon|Lebanese Republic
LR LBR Liberia|Republic of Liberia
LY LBY Libya
LC LCA Saint Lucia
LI LIE Liechtenstein|Principality of Liechtenstein
LK LKA Sri Lanka|Democratic Socialist Republic of Sri Lanka
LS LSO Lesotho|Kingdom of Lesotho
LT LTU Lithuania|Republic of Lithuania
LU LUX Luxembourg|Grand Duchy of Luxembourg
LV LVA Latvia|Republic of Latvia
MO MAC Macao|Macao Special Administrative Region of China
MF MAF Saint Martin (French part)
MA MAR Morocco|Kingdom of Morocco
MC MCO Monaco|Principality of Monaco
MD MDA Moldova, Republic of|Moldova|Republic of Moldova
MG MDG Madagascar|Republic of Madagascar
MV MDV Maldives|Republic of Maldives
MX MEX Mexico|United Mexican States
MH MHL Marshall Islands|Republic of the Marshall Islands
MK MKD North Macedonia|Republic of North Macedonia
ML MLI Mali|Republic of Mali
MT MLT Malta|Republic of Malta
MM MMR Myanmar|Republic of Myanmar
ME MNE Montenegro
MN MNG Mongolia
MP MNP Northern Mariana Islands|Commonwealth of the Northern Mariana Islands
MZ MOZ Mozambique|Republic of Mozambique
MR MRT Mauritania|Islamic Republic of Mauritania
MS MSR Montserrat
MQ MTQ Martinique
MU MUS Mauritius|Republic of Mauritius
MW MWI Malawi|Republic of Malawi
MY MYS Malaysia
YT MYT Mayotte
NA NAM Namibia|Republic of Namibia
NC NCL New Caledonia
NE NER Niger|Republic of the Niger
NF NFK Norfolk Island
NG NGA Nigeria|Federal Republic of Nigeria
NI NIC Nicaragua|Republic of Nicaragua
NU NIU Niue
NL NLD Netherlands|Kingdom of the Netherlands
NO NOR Norway|Kingdom of Norway
NP NPL Nepal|Federal Democratic Republic of Nepal
NR NRU Nauru|Republic of Nauru
NZ NZL New Zealand
OM OMN Oman|Sultanate of Oman
PK PAK Pakistan|Islamic Republic of Pakistan
PA PAN Panama|Republic of Panama
PN PCN Pitcairn
PE PER Peru|Republic of Peru
PH PHL Philippines|Republic of the Philippines
PW PLW Palau|Republic of Palau
PG PNG Papua New Guinea|Independent State of Papua New Guinea
PL POL Poland|Republic of Poland
PR PRI Puerto Rico
KP PRK Korea, Democratic People's Republic of|North Korea|Democratic People's Republic of Korea
PT PRT Portugal|Portuguese Republic
PY PRY Paraguay|Republic of Paraguay
PS PSE Palestine, State of|the State of Palestine
PF PYF French Polynesia
QA QAT Qatar|State of Qatar
RE REU Réunion
RO ROU Romania
RU RUS Russian Federation
RW RWA Rwanda|Rwandese Republic
SA SAU Saudi Arabia|Kingdom of Saudi Arabia
SD SDN Sudan|Republic of the Sudan
SN SEN Senegal|Republic of Senegal
SG SGP Singapore|Republic of Singapore
GS SGS South Georgia and the South Sandwich Islands
SH SHN Saint Helena, Ascension and Tristan da Cunha
SJ SJM Svalbard and Jan Mayen
SB SLB Solomon Islands
SL SLE Sierra Leone|Republic of Sierra Leone
SV SLV El Salvador|Republic of El Salvador
SM SMR San Marino|Republic of San Marino
SO SOM Somalia|Federal Republic of Somalia
PM SPM Saint Pierre and Miquelon
RS SRB Serbia|Republic of Serbia
SS SSD South Sudan|Republic of South Sudan
ST STP Sao Tome and Principe|Democratic Republic of Sao Tome and Principe
SR SUR Suriname|Republic of Suriname
SK SVK Slovakia|Slovak Republic
SI SVN Slovenia|Republic of Slovenia
SE SWE Sweden|Kingdom of Sweden
SZ SWZ Eswatini|Kingdom of Eswatini
SX SXM Sint Maarten (Dutch part)
SC SYC Seychelles|Republic of Seychelles
SY SYR Syrian Arab Republic|Syria
TC TCA Turks and Caicos Islands
TD TCD Chad|Republic of Chad
TG TGO Togo|Togolese Republic
TH THA Thailand|Kingdom of Thailand
TJ TJK Tajikistan|Republic of Tajikistan
TK TKL Tokelau
TM TKM Turkmenistan
TL TLS Timor-Leste|Democratic Republic of Timor-Leste
TO TON Tonga|Kingdom of Tonga
TT TTO Trinidad and Tobago|Republic of Trinidad and Tobago
TN TUN Tunisia|Republic of Tunisia
TR TUR Türkiye|Republic of Türkiye
TV TUV Tuvalu
TW TWN Taiwan, Province of China|Taiwan
TZ TZA Tanzania, United Republic of|Tanzania|United Republic of Tanzania
UG UGA Uganda|Republic of Uganda
UA UKR Ukraine
UM UMI United States Minor Outlying Islands
UY URY Uruguay|Eastern Republic of Uruguay
US USA United States|United States of America
UZ UZB Uzbekistan|Republic of Uzbekistan
VA VAT Holy See (Vatican City State)
VC VCT Saint Vincent and the Grenadines
VE VEN Venezuela, Bolivarian Republic of|Venezuela|Bolivarian Republic of Venezuela
VG VGB Virgin Islands, British|British Virgin Islands
VI VIR Virgin Islands, U.S.|Virgin Islands of the United States
VN VNM Viet Nam|Vietnam|Socialist Republic of Viet Nam
VU VUT Vanuatu|Republic of Vanuatu
WF WLF Wallis and Futuna
WS WSM Samoa|Independent State of Samoa
YE YEM Yemen|Republic of Yemen
ZA ZAF South Africa|Republic of South Africa
ZM ZMB Zambia|Republic of Zambia
ZW ZWE Zimbabwe|Republic of Zimbabwe
"""

# Names CRM exports use besides ISO's: English common names, the names in the languages of the data we see (German,
# French, Portuguese, Spanish, Italian, Japanese romanized and in kana/kanji, ...), sports codes (IOC/FIFA: GER,
# NED, SUI...) and abbreviations. "alpha-2 name|name|...", folded at import; an alias never shadows another code.
_LOCAL_NAMES = """
us America|Amerika|United States of America|U.S.|U.S.A.|USA|Estados Unidos|Estados Unidos de América|EE.UU.|EEUU|\
Estados Unidos da América|EUA|E.U.A.|États-Unis|États-Unis d'Amérique|Vereinigte Staaten|\
Vereinigte Staaten von Amerika|Stati Uniti|Beikoku|Amerika Gasshūkoku|アメリカ|アメリカ合衆国|米国
gb UK|U.K.|Great Britain|Britain|England|Scotland|Wales|Northern Ireland|ENG|SCO|WAL|Großbritannien|\
Vereinigtes Königreich|Schottland|Nordirland|Royaume-Uni|Grande-Bretagne|Angleterre|Écosse|Pays de Galles|\
Irlande du Nord|Reino Unido|Gran Bretaña|Grã-Bretanha|Inglaterra|Escocia|Escócia|Gales|País de Gales|\
Irlanda del Norte|Irlanda do Norte|Regno Unito|Igirisu|Eikoku|イギリス|英国
de Deutschland|Bundesrepublik Deutschland|BRD|GER|Allemagne|Alemania|Alemanha|Germania|Doitsu|ドイツ
fr Frankreich|Francia|França|République française|Furansu|フランス
br Brasil|Brésil|Brasilien|República Federativa do Brasil|Burajiru|ブラジル
jp Nippon|Nihon|Nippon-koku|Nihon-koku|Japon|Japão|Giappone|日本|日本国
es España|Espagne|Spanien|Espanha|Spagna|Supein|スペイン
ca Kanada|Canadá|カナダ
au Australien|Australie|Austrália|Ōsutoraria|Oz|オーストラリア
mx México|Mexiko|Mexique|Messico|メキシコ
it Italia|Italien|Italie|Itália|Itaria|イタリア
nl Holland|Nederland|The Netherlands|Niederlande|Pays-Bas|Países Bajos|Países Baixos|Holanda|Hollande|\
Paesi Bassi|NED|Oranda|オランダ
pt POR|ポルトガル
ch Schweiz|Suisse|Svizzera|Suiza|Suíça|SUI|スイス
at Österreich|Autriche|Áustria|オーストリア
be Belgien|Belgique|België|Bélgica|Belgio
ie Irland|Irlande|Irlanda|Éire|Eire|アイルランド
kr South Korea|Republic of Korea|Korea|Südkorea|Corée du Sud|Corea del Sur|Coreia do Sul|Kankoku|韓国|대한민국|한국
kp North Korea|Nordkorea|Corée du Nord|Corea del Norte|Coreia do Norte|Kita Chōsen|北朝鮮
cn China|Chine|Volksrepublik China|PRC|Chūgoku|中国|中華人民共和国
tw Taiwan|台湾
hk Hongkong|Hong Kong SAR|香港
mo Macau|Macao|Macau SAR
in Indien|Inde|Índia|Bharat
ru Russia|Russland|Russie|Rusia|Rússia|Россия
pl Polen|Pologne|Polonia|Polônia|Polska
se Schweden|Suède|Suecia|Suécia|Svezia|Sverige
no Norwegen|Norvège|Noruega|Norvegia|Norge
dk Dänemark|Danemark|Dinamarca|Danimarca|Danmark|DEN
fi Finnland|Finlande|Finlandia|Finlândia|Suomi
gr Griechenland|Grèce|Grecia|Grécia|Hellas|GRE
tr Turkey|Türkei|Turquie|Turquía|Turquia|Turchia|Turkiye
cz Czech Republic|Tschechien|Tchéquie|Chequia|República Checa|Tchéquia|República Tcheca
hu Ungarn|Hongrie|Hungría|Hungria|Ungheria
ro Rumänien|Roumanie|Rumania|Romênia|Roménia
hr Kroatien|Croatie|Croacia|Croácia|CRO
lu Luxemburg|Luxemburgo|Lussemburgo
ar Argentinien|Argentine
co Kolumbien|Colombie
cl Chili
pe Perú|Pérou
ma Marokko|Maroc|Marruecos|Marrocos|Marocco
eg Ägypten|Égypte|Egipto|Egito|Egitto
za Südafrika|Afrique du Sud|Sudáfrica|África do Sul|Sudafrica|RSA
nz Neuseeland|Nouvelle-Zélande|Nueva Zelanda|Nova Zelândia|Aotearoa|NZ
ae UAE|U.A.E.|Emirates|Vereinigte Arabische Emirate|Émirats arabes unis|Emiratos Árabes Unidos|\
Emirados Árabes Unidos
sa Saudi-Arabien|Arabie saoudite|Arabia Saudita|Arábia Saudita|Saudi
sg Singapur|Singapour|Cingapura
id Indonesien|Indonésie
ph Philippinen|Filipinas
th Thailand|Thaïlande|Tailandia|Tailândia
vn Vietnam
ua Ucrania|Ucrânia
il Israël
ir Iran
sy Syria
la Laos
bo Bolivia
ve Venezuela
tz Tanzania
md Moldova
mk Macedonia
va Vatican|Vatican City
ci Ivory Coast|Elfenbeinküste
ps Palestine
vi U.S. Virgin Islands|USVI
"""


_UNACCENT = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "þ": "th", "ı": "i"})


def fold(text: str) -> str:
    """Lookup form: lowercase, accents stripped ("ß" -> "ss"), only letters and digits kept."""
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_UNACCENT))
    return "".join(ch for ch in decomposed if ch.isalnum())


def _country_lookup() -> dict[str, str]:
    table: dict[str, str] = {}
    before_comma: dict[str, set[str]] = {}
    for line in _ISO_3166_1.strip().splitlines():
        a2, a3, names = line.split(" ", 2)
        for name in names.split("|"):
            table.setdefault(fold(name), a2.lower())
            if "," in name:
                before_comma.setdefault(fold(name.split(",")[0]), set()).add(a2.lower())
        table[a3.lower()] = a2.lower()
    # "Korea, Republic of" / "Bolivia, Plurinational State of": the part before the comma is common, unless it is
    # another country's name ("Congo") or shared ("Virgin Islands, British" / "Virgin Islands, U.S.").
    for name, owners in before_comma.items():
        if len(owners) == 1:
            table.setdefault(name, owners.pop())
    codes = {line.split(" ", 1)[0].lower() for line in _ISO_3166_1.strip().splitlines()}
    for a2 in codes:
        table[a2] = a2  # codes win over any name that folds the same
    for line in _LOCAL_NAMES.strip().splitlines():
        a2, names = line.split(" ", 1)
        for name in names.split("|"):
            key = fold(name)
            assert a2 in codes and table.get(key, a2) == a2, (name, table.get(key))  # no alias shadows a name
            table[key] = a2
    return table


COUNTRY_LOOKUP: dict[str, str] = _country_lookup()


def _state_tables() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for country, names in (("us", US_STATES), ("ca", CA_PROVINCES)):
        table = {fold(name): code for code, name in names.items()}
        table.update({fold(k): v for k, v in _STATE_ALIASES[country].items()})
        table.update({code: code for code in names})
        out[country] = table
    return out


_STATE_TABLES = _state_tables()


def state_lookup(country: str, folded: str) -> str | None:
    """2-letter code of a US state / Canadian province from its folded name or code; None when unknown."""
    table = _STATE_TABLES.get(country)
    return table.get(folded) if table is not None else None
