"""Code-list standardisation: gender to F/M/X and country names/codes to ISO 3166-1 alpha-2."""

from __future__ import annotations

import polars as pl

from cdi_pipeline.lib.standardise.text import (
    clean_text,
    derive_on_unique,
    ensure_utf8_columns,
    fold_accents,
    keep_previous_issue,
)

_TMP = "__cd_"

# --- gender ----------------------------------------------------------------------------------
# Keys are lowercase, accent-folded, without dots ("Mevr." -> "mevr").
GENDER_CODES: dict[str, str] = {
    **dict.fromkeys(
        [
            "f",
            "v",
            "w",
            "vr",
            "vrouw",
            "vrouwelijk",
            "female",
            "woman",
            "women",
            "mevrouw",
            "mevr",
            "mw",
            "mrs",
            "ms",
            "miss",
            "weiblich",
            "frau",
            "femme",
            "feminin",
            "mujer",
        ],
        "F",
    ),
    **dict.fromkeys(
        [
            "m",
            "man",
            "mannelijk",
            "male",
            "men",
            "dhr",
            "de heer",
            "heer",
            "mr",
            "mister",
            "mannlich",
            "herr",
            "homme",
            "masculin",
            "hombre",
        ],
        "M",
    ),
    **dict.fromkeys(
        [
            "x",
            "o",
            "other",
            "divers",
            "diverse",
            "anders",
            "overig",
            "overige",
            "non binary",
            "nonbinary",
            "non-binary",
            "nb",
            "genderneutraal",
            "neutraal",
            "autre",
        ],
        "X",
    ),
}

# Explicit "not known" answers: null without an issue, unlike unrecognised codes.
GENDER_UNKNOWN: frozenset[str] = frozenset(
    {
        "?",
        "??",
        "-",
        "u",
        "unk",
        "unknown",
        "onbekend",
        "nvt",
        "n/a",
        "na",
        "none",
        "not specified",
        "niet opgegeven",
        "unspecified",
        "prefer not to say",
        "zeg ik liever niet",
        "wil ik niet zeggen",
    }
)


def standardise_gender(df: pl.DataFrame) -> pl.DataFrame:
    """Map `gender` to F/M/X; explicit unknowns become null, anything else gets an issue."""
    df = ensure_utf8_columns(df, ["gender"])
    key = pl.col(_TMP + "key")

    def derive(unique: pl.DataFrame) -> pl.DataFrame:
        cleaned = clean_text(
            fold_accents(pl.col("gender")).str.to_lowercase().str.replace_all(".", "", literal=True)
        )
        return (
            unique.lazy()
            .with_columns(cleaned.alias(_TMP + "key"))
            .with_columns(
                key.replace_strict(GENDER_CODES, default=None, return_dtype=pl.Utf8).alias(
                    _TMP + "gender"
                ),
                key.is_null().alias(_TMP + "was_null"),
            )
            .with_columns(
                pl.when(
                    key.is_not_null()
                    & pl.col(_TMP + "gender").is_null()
                    & ~key.is_in(list(GENDER_UNKNOWN))
                )
                .then(pl.lit("gender_unknown_code"))
                .alias(_TMP + "issue")
            )
            .select("gender", _TMP + "gender", _TMP + "issue", _TMP + "was_null")
            .collect()
        )

    derived = derive_on_unique(df.select("gender"), ["gender"], derive)
    new_issue = pl.col(_TMP + "issue")
    issue = keep_previous_issue(df, "gender_issue", new_issue, pl.col(_TMP + "was_null"))
    out = df.with_columns(derived.drop("gender").get_columns()).with_columns(
        pl.col(_TMP + "gender").alias("gender"), issue.alias("gender_issue")
    )
    return out.drop([c for c in out.columns if c.startswith(_TMP)])


# --- country ---------------------------------------------------------------------------------
_ISO_ALPHA2_TEXT = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW XK
"""
# The 249 official codes plus XK (Kosovo), which EU and banking data use.
ISO_ALPHA2: frozenset[str] = frozenset(_ISO_ALPHA2_TEXT.split())


def _names(code: str, *names: str) -> dict[str, str]:
    return dict.fromkeys(names, code)


# Keys: lowercase, accent-folded, punctuation replaced by spaces, leading "the " removed.
COUNTRY_NAMES: dict[str, str] = {
    **_names(
        "NL",
        "nederland",
        "netherlands",
        "holland",
        "nld",
        "niederlande",
        "pays bas",
        "paises bajos",
        "koninkrijk der nederlanden",
        "kingdom of the netherlands",
    ),
    **_names("BE", "belgie", "belgium", "belgique", "belgien", "bel", "koninkrijk belgie"),
    **_names(
        "DE",
        "duitsland",
        "deutschland",
        "germany",
        "allemagne",
        "alemania",
        "deu",
        "ger",
        "bondsrepubliek duitsland",
        "brd",
        "bundesrepublik deutschland",
    ),
    **_names(
        "GB",
        "uk",
        "united kingdom",
        "verenigd koninkrijk",
        "gbr",
        "great britain",
        "groot brittannie",
        "britain",
        "engeland",
        "england",
        "scotland",
        "schotland",
        "wales",
        "northern ireland",
        "noord ierland",
    ),
    **_names(
        "US",
        "usa",
        "united states",
        "united states of america",
        "verenigde staten",
        "verenigde staten van amerika",
        "amerika",
        "america",
        "vs",
        "u s a",
    ),
    **_names("FR", "frankrijk", "france", "frankreich", "fra"),
    **_names("ES", "spanje", "spain", "espana", "spanien", "esp"),
    **_names("IT", "italie", "italy", "italia", "italien", "ita"),
    **_names("AU", "australie", "australia", "aus"),
    **_names("PL", "polen", "poland", "polska", "pol"),
    **_names("TR", "turkije", "turkey", "turkiye", "tur"),
    **_names("MA", "marokko", "morocco", "maroc", "mar"),
    **_names("SR", "suriname", "surinam", "sur"),
    **_names("LU", "luxemburg", "luxembourg", "lux", "groothertogdom luxemburg"),
    **_names("AT", "oostenrijk", "austria", "osterreich", "oesterreich", "aut"),
    **_names("CH", "zwitserland", "switzerland", "schweiz", "suisse", "svizzera", "che"),
    **_names("DK", "denemarken", "denmark", "danmark", "dnk"),
    **_names("SE", "zweden", "sweden", "sverige", "swe"),
    **_names("NO", "noorwegen", "norway", "norge", "nor"),
    **_names("FI", "finland", "suomi", "fin"),
    **_names("IE", "ierland", "ireland", "eire", "irl"),
    **_names("PT", "portugal", "prt"),
    **_names("GR", "griekenland", "greece", "hellas", "grc", "el"),
    **_names("CZ", "tsjechie", "czech republic", "czechia", "cze"),
    **_names("SK", "slowakije", "slovakia", "svk"),
    **_names("SI", "slovenie", "slovenia", "svn"),
    **_names("HU", "hongarije", "hungary", "magyarorszag", "hun"),
    **_names("RO", "roemenie", "romania", "rou"),
    **_names("BG", "bulgarije", "bulgaria", "bgr"),
    **_names("HR", "kroatie", "croatia", "hrvatska", "hrv"),
    **_names("RS", "servie", "serbia", "srb"),
    **_names("BA", "bosnie", "bosnia", "bosnia and herzegovina", "bosnie herzegovina", "bih"),
    **_names("LT", "litouwen", "lithuania", "ltu"),
    **_names("LV", "letland", "latvia", "lva"),
    **_names("EE", "estland", "estonia", "est"),
    **_names("UA", "oekraine", "ukraine", "ukr"),
    **_names("RU", "rusland", "russia", "russian federation", "rus"),
    **_names("CY", "cyprus", "cyp"),
    **_names("MT", "malta", "mlt"),
    **_names("IS", "ijsland", "iceland", "isl"),
    **_names("XK", "kosovo"),
    **_names("AL", "albanie", "albania", "alb"),
    **_names("MK", "noord macedonie", "north macedonia", "macedonia", "mkd"),
    **_names("CN", "china", "chn", "volksrepubliek china"),
    **_names("JP", "japan", "jpn"),
    **_names("IN", "india", "ind"),
    **_names("ID", "indonesie", "indonesia", "idn"),
    **_names("CA", "canada", "can"),
    **_names("BR", "brazilie", "brazil", "brasil", "bra"),
    **_names("MX", "mexico", "mex"),
    **_names("AR", "argentinie", "argentina", "arg"),
    **_names("ZA", "zuid afrika", "south africa", "zaf"),
    **_names("NZ", "nieuw zeeland", "new zealand", "nzl"),
    **_names("CW", "curacao", "cuw"),
    **_names("AW", "aruba", "abw"),
    **_names("SX", "sint maarten", "sxm"),
    **_names("BQ", "bonaire", "caribisch nederland", "bes"),
    **_names("EG", "egypte", "egypt", "egy"),
    **_names("TN", "tunesie", "tunisia", "tun"),
    **_names("DZ", "algerije", "algeria", "dza"),
    **_names("IL", "israel", "isr"),
    **_names("IR", "iran", "irn"),
    **_names("IQ", "irak", "iraq", "irq"),
    **_names("SY", "syrie", "syria", "syr"),
    **_names("AF", "afghanistan", "afg"),
    **_names("PK", "pakistan", "pak"),
    **_names("GH", "ghana", "gha"),
    **_names("NG", "nigeria", "nga"),
    **_names("CV", "kaapverdie", "cape verde", "cabo verde", "cpv"),
    **_names("ER", "eritrea", "eri"),
    **_names("SO", "somalie", "somalia", "som"),
    **_names("VN", "vietnam", "viet nam", "vnm"),
    **_names("TH", "thailand", "tha"),
    **_names("PH", "filipijnen", "philippines", "phl"),
    **_names("KR", "zuid korea", "south korea", "korea", "kor"),
    **_names("AE", "verenigde arabische emiraten", "united arab emirates", "uae", "are"),
}

_ALL_COUNTRY_KEYS = {**{c.lower(): c for c in ISO_ALPHA2}, **COUNTRY_NAMES}


def _country_key(expr: pl.Expr) -> pl.Expr:
    """Lookup key for a country value: folded, lowercase, punctuation as spaces, no 'the'."""
    key = fold_accents(clean_text(expr)).str.to_lowercase()
    key = key.str.replace_all(r"\.", "").str.replace_all(r"[^a-z0-9]+", " ").str.strip_chars()
    return key.str.strip_prefix("the ")


def country_expr(expr: pl.Expr) -> pl.Expr:
    """ISO-2 code for a country name/code expression; null when empty or not recognised."""
    return _country_key(expr).replace_strict(_ALL_COUNTRY_KEYS, default=None, return_dtype=pl.Utf8)


def standardise_country(df: pl.DataFrame) -> pl.DataFrame:
    """Map `country` names/ISO-2/ISO-3 codes to ISO 3166-1 alpha-2; flag unrecognised values."""
    df = ensure_utf8_columns(df, ["country"])

    def derive(unique: pl.DataFrame) -> pl.DataFrame:
        present = clean_text(pl.col("country")).is_not_null()
        return (
            unique.lazy()
            .with_columns(
                country_expr(pl.col("country")).alias(_TMP + "country"),
                (~present).alias(_TMP + "was_null"),
            )
            .with_columns(
                pl.when(present & pl.col(_TMP + "country").is_null())
                .then(pl.lit("country_unknown"))
                .alias(_TMP + "issue")
            )
            .collect()
        )

    derived = derive_on_unique(df.select("country"), ["country"], derive)
    issue = keep_previous_issue(
        df, "country_issue", pl.col(_TMP + "issue"), pl.col(_TMP + "was_null")
    )
    out = df.with_columns(derived.drop("country").get_columns()).with_columns(
        pl.col(_TMP + "country").alias("country"), issue.alias("country_issue")
    )
    return out.drop([c for c in out.columns if c.startswith(_TMP)])
