"""Tests for the synthetic source generator (small populations, so they run in seconds)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from cdi_pipeline.datagen import SOURCE_FILES, TRUTH_FILE, GenerationSummary, generate, namepool
from cdi_pipeline.datagen import vocabulary as vocab
from cdi_pipeline.datagen.__main__ import main
from cdi_pipeline.datagen.persons import build_persons

PERSONS = 300
SEED = 11
IDENTITY = {
    "crm_contacts": "contactnummer",
    "erp_customers": "customer_number",
    "webshop_accounts": "accountId",
    "support_tickets": "ticket_id",
    "newsletter_signups": "signup_id",
}
VALID_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

EXPECTED_YAML = """
sources:
  - name: crm_contacts
    description: Contacts from the sales CRM (Dutch headers).
    path: sources/crm_contacts.csv
    format: csv
    options: {delimiter: ";", encoding: utf-8}
    record_id: contactnummer
    trust: 1
    country: NL
    date_format: "%d-%m-%Y"
    fields: {first_name: voornaam, last_name: achternaam, date_of_birth: geboortedatum, gender: geslacht, email: email, phone: telefoon, street: straat, house_number: huisnummer, postcode: postcode, city: woonplaats, country: land}
    identifiers: {loyalty_number: klantkaart}
    attributes: [segment_code]
  - name: erp_customers
    description: Billing customers from the ERP.
    path: sources/erp_customers.parquet
    format: parquet
    record_id: customer_number
    trust: 2
    country: NL
    fields: {full_name: name, date_of_birth: birth_date, email: email, phone: phone, street: address, postcode: zip, city: city, country: country_code}
    attributes: [credit_limit]
  - name: webshop_accounts
    description: Web shop customer accounts.
    path: sources/webshop_accounts.jsonl
    format: jsonl
    record_id: accountId
    trust: 3
    country: NL
    date_format: "%Y-%m-%d"
    fields: {first_name: firstName, last_name: lastName, date_of_birth: birthDate, gender: gender, email: email, phone: mobile, street: street, house_number: houseNumber, postcode: zipCode, city: city, country: countryCode}
  - name: support_tickets
    description: Support desk tickets; each ticket carries the caller's name, email and phone.
    path: sources/support_tickets.csv
    format: csv
    options: {delimiter: ",", encoding: utf-8}
    record_id: ticket_id
    trust: 4
    country: NL
    fields: {full_name: customer_name, email: email, phone: phone}
    activity: {kind: ticket, occurred_at: created_at, occurred_at_format: "%Y-%m-%d %H:%M", channel: channel}
  - name: newsletter_signups
    description: Newsletter sign-ups with consent and cookie/device ids (Windows-1252 export).
    path: sources/newsletter_signups.csv
    format: csv
    options: {delimiter: ",", encoding: windows-1252}
    record_id: signup_id
    trust: 5
    country: NL
    date_format: "%d/%m/%Y"
    fields: {first_name: voornaam, email: email, postcode: postcode}
    identifiers: {cookie_id: cookie_id, device_id: device_id}
    activity: {kind: signup, occurred_at: aanmelddatum, consent: opt_in}
  - name: webshop_orders
    description: Web shop orders, linked to web shop accounts.
    path: sources/webshop_orders.parquet
    format: parquet
    record_id: order_id
    activity: {kind: order, customer: {source: webshop_accounts, column: account_id}, occurred_at: order_date, amount: total_amount, channel: channel}
truth: truth/persons.csv
"""  # noqa: E501


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_csv(path: Path, separator: str, encoding: str = "utf-8") -> pl.DataFrame:
    # Read everything as text: the files deliberately contain unparseable values.
    text = path.read_bytes().decode(encoding)
    return pl.read_csv(io.StringIO(text), separator=separator, infer_schema=False)


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("gen")
    return out, generate(PERSONS, SEED, out, progress=False)


@pytest.fixture(scope="module")
def tables(gen) -> dict[str, pl.DataFrame]:
    out, _ = gen
    src = out / "sources"
    return {
        "crm_contacts": _read_csv(src / "crm_contacts.csv", ";"),
        "erp_customers": pl.read_parquet(src / "erp_customers.parquet"),
        "webshop_accounts": pl.read_ndjson(
            src / "webshop_accounts.jsonl", infer_schema_length=None
        ),
        "webshop_orders": pl.read_parquet(src / "webshop_orders.parquet"),
        "support_tickets": _read_csv(src / "support_tickets.csv", ","),
        "newsletter_signups": _read_csv(src / "newsletter_signups.csv", ",", "cp1252"),
        "truth": _read_csv(out / TRUTH_FILE, ","),
    }


def test_writes_all_files_and_summary(gen, tables):
    out, summary = gen
    for rel in [*SOURCE_FILES.values(), TRUTH_FILE, "sources.yaml"]:
        assert (out / rel).is_file(), rel
    assert summary.persons == PERSONS
    assert summary.out_dir == out
    for name, df in tables.items():
        assert summary.records[name] == df.height, name
    assert summary.identity_records == sum(tables[s].height for s in IDENTITY)
    # Roughly 2.3 identity records per person.
    assert 1.9 * PERSONS < summary.identity_records < 2.8 * PERSONS


def test_deterministic_per_seed(gen, tmp_path):
    out, _ = gen
    again = tmp_path / "again"
    generate(PERSONS, SEED, again, progress=False)
    assert _hashes(again) == _hashes(out)
    other = tmp_path / "other"
    generate(PERSONS, SEED + 1, other, progress=False)
    other_hashes = _hashes(other)
    for rel in SOURCE_FILES.values():
        assert other_hashes[rel] != _hashes(out)[rel], rel


def test_truth_covers_every_identity_record_once(tables):
    truth = tables["truth"]
    assert truth.columns == ["source", "source_record_id", "person_id"]
    assert truth.select(pl.struct("source", "source_record_id").is_unique().all()).item()
    expected = set()
    for source, key in IDENTITY.items():
        ids = tables[source][key].cast(pl.String).drop_nulls()
        ids = ids.filter(ids != "")
        expected |= {(source, i) for i in ids}
    got = set(zip(truth["source"], truth["source_record_id"], strict=True))
    assert got == expected
    # Person ids are P + zero-padded number within the population.
    nums = truth["person_id"].str.extract(r"^P(\d{7})$", 1).cast(pl.Int64)
    assert nums.null_count() == 0
    assert nums.min() >= 1 and nums.max() <= PERSONS
    per_person = truth.group_by("person_id").agg(pl.col("source").n_unique().alias("n"))
    assert per_person["n"].min() >= 1 and per_person["n"].max() <= 5


def test_record_ids_unique_and_orders_reference_accounts(tables):
    for source, key in IDENTITY.items():
        ids = tables[source][key].drop_nulls()
        assert ids.is_unique().all(), source
    tickets = tables["support_tickets"]["ticket_id"]
    assert tickets.null_count() >= 1  # a few tickets without a number
    orders = tables["webshop_orders"]
    assert orders["order_id"].is_unique().all()
    assert orders["account_id"].is_in(tables["webshop_accounts"]["accountId"].implode()).all()
    assert (orders["total_amount"] > 0).all()
    assert set(orders["currency"]) == {"EUR"}
    assert set(orders["channel"]) <= {"web", "app"}


def test_file_formats_and_types(gen, tables):
    out, _ = gen
    src = out / "sources"
    header = (src / "crm_contacts.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(";") == [
        "contactnummer",
        "voornaam",
        "achternaam",
        "geboortedatum",
        "geslacht",
        "email",
        "telefoon",
        "straat",
        "huisnummer",
        "postcode",
        "woonplaats",
        "land",
        "klantkaart",
        "segment_code",
    ]
    erp = tables["erp_customers"]
    assert erp.schema["customer_number"] == pl.Int64
    assert erp.schema["birth_date"] == pl.Date
    assert erp.schema["credit_limit"] == pl.Float64
    assert 0.1 < erp["birth_date"].null_count() / erp.height < 0.35
    orders = tables["webshop_orders"]
    assert orders.schema["order_date"] == pl.Datetime("us")
    assert orders.schema["total_amount"] == pl.Float64
    assert orders["order_date"].max().date().isoformat() < "2026-10-01"

    lines = (src / "webshop_accounts.jsonl").read_text(encoding="utf-8").splitlines()
    objs = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objs)
    assert all(not isinstance(val, dict | list) for o in objs for val in o.values())
    assert any("birthDate" not in o for o in objs)
    assert any("birthDate" in o and o["birthDate"] is None for o in objs)

    raw = (src / "newsletter_signups.csv").read_bytes()
    text = raw.decode("cp1252")
    assert not text.isascii(), "expected accented first names in the newsletter export"
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8", errors="strict")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "signup_id",
        "email",
        "voornaam",
        "postcode",
        "aanmelddatum",
        "opt_in",
        "cookie_id",
        "device_id",
    ]
    assert all(len(r) == 8 for r in rows)
    ticket_rows = list(csv.reader(io.StringIO((src / "support_tickets.csv").read_text("utf-8"))))
    assert all(len(r) == 7 for r in ticket_rows)


def test_noise_and_injected_errors_present(tables):
    crm = tables["crm_contacts"]
    last = crm["achternaam"].drop_nulls()
    assert last.str.contains(r"^\S.*, (van|de|den|ter|ten|in|'t)").any()  # "Berg, van der"
    assert last.str.contains("v.d. ", literal=True).any()
    for source in IDENTITY:
        emails = tables[source]["email"].drop_nulls()
        assert (~emails.str.contains(VALID_EMAIL)).any(), source
    dob = crm["geboortedatum"].drop_nulls()
    parsed = dob.str.strptime(pl.Date, "%d-%m-%Y", strict=False)
    bad = dob.filter(parsed.is_null())
    assert bad.str.contains(r"^(30|31)-(02|04|06|09|11)-\d{4}$").any()  # impossible dates
    assert bad.str.contains(r"^\d{4}/\d{2}/\d{2}$").any()  # wrong format
    assert (parsed.drop_nulls().dt.year() > 2026).any()  # future birth dates
    shop_dob = tables["webshop_accounts"]["birthDate"].drop_nulls()
    assert shop_dob.str.strptime(pl.Date, "%Y-%m-%d", strict=False).null_count() > 0
    phones = crm["telefoon"].drop_nulls()
    assert phones.is_in(vocab.INVALID_PHONES).any()
    names = pl.concat([crm["voornaam"], crm["achternaam"]]).drop_nulls()
    assert names.is_in(vocab.SQL_JUNK_NAMES).any()
    assert (names.str.strip_chars() == "").any()
    # Unusable rows: only the record id and segment survived.
    identity_cols = [c for c in crm.columns if c not in ("contactnummer", "segment_code")]
    empty = crm.filter(pl.all_horizontal(pl.col(identity_cols).is_null()))
    assert empty.height >= 1


def test_households_share_an_address(tables):
    truth = tables["truth"]
    parts = []
    for source, key, pc, hnr in [
        ("crm_contacts", "contactnummer", "postcode", "huisnummer"),
        ("webshop_accounts", "accountId", "zipCode", "houseNumber"),
    ]:
        t = truth.filter(pl.col("source") == source)
        df = tables[source].join(t, left_on=key, right_on="source_record_id")
        parts.append(
            df.select(
                pc=pl.col(pc).str.to_uppercase().str.replace_all(" ", ""),
                hnr=pl.col(hnr).str.to_uppercase().str.replace_all(r"[\s-]", ""),
                person_id="person_id",
            )
        )
    addr = pl.concat(parts).drop_nulls()
    shared = addr.group_by("pc", "hnr").agg(pl.col("person_id").n_unique().alias("n"))
    assert (shared["n"] >= 2).any()


def test_sources_yaml(gen):
    out, _ = gen
    text = (out / "sources.yaml").read_text(encoding="utf-8")
    assert text.startswith(
        f"# Source registry generated by cdi_pipeline.datagen (persons={PERSONS}, seed={SEED})"
    )
    doc = yaml.safe_load(text)
    assert doc == yaml.safe_load(EXPECTED_YAML)
    assert len(doc["sources"]) == 6
    for s in doc["sources"]:
        assert (out / s["path"]).is_file()


def test_foreign_postcodes_are_well_formed(tables):
    erp = tables["erp_customers"].drop_nulls(["zip", "country_code"])
    patterns = {
        "NL": r"^\d{4} ?[A-Za-z]{2}$",
        "BE": r"^\d{4}$",
        "DE": r"^\d{5}$",
        "US": r"^\d{5}$",
        "GB": r"^[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}$",
    }
    for code, pattern in patterns.items():
        zips = erp.filter(pl.col("country_code") == code)["zip"]
        assert zips.str.contains(pattern).all(), code
    nl_pc = erp.filter(pl.col("country_code") == "NL")["zip"].str.to_uppercase()
    assert not nl_pc.str.contains(r"^\d{4} ?(SA|SD|SS)$").any()


def test_vocabulary_fits_windows_1252():
    strings = []
    for name, _, nicks in vocab.MALE_FIRST_NAMES + vocab.FEMALE_FIRST_NAMES:
        strings += [name, *nicks]
    strings += [t + " " + b for t, b, _ in vocab.SURNAMES]
    # The full pools, composed long tail included.
    strings += namepool.first_names().names.to_list()
    pool = namepool.surnames()
    strings += (pool.tv + " " + pool.base).to_list()
    for s in strings:
        s.encode("cp1252")
    assert any(not s.isascii() for s in strings)


def test_name_pools_are_long_tailed_like_real_ones():
    pool = namepool.surnames()
    w = pool.weight
    assert len(pool.base) == len(pool.tv) == len(w) > 20_000
    assert abs(w.sum() - 1) < 1e-9 and (w > 0).all()
    # Head first, in the vocabulary's order; the tail never outranks the rarest head name.
    head = len(vocab.SURNAMES)
    assert pool.base[:head].to_list() == [b for _, b, _ in vocab.SURNAMES]
    head_w = np.array([s[2] for s in vocab.SURNAMES])
    assert np.allclose(w[:head] / w[:head].sum(), head_w / head_w.sum())
    assert w[head:].max() < w[:head].min() and (np.diff(w[head:]) <= 0).all()
    # Netherlands-like: top surname ~0.5%, top 100 roughly an eighth, a quarter+ with a prefix.
    assert 0.004 <= w.max() <= 0.006
    assert 0.10 <= np.sort(w)[::-1][:100].sum() <= 0.16
    assert 0.2 <= w[(pool.tv != "").to_numpy()].sum() <= 0.4
    full = pl.select(pl.concat_str(pool.tv, pool.base)).to_series()
    assert full.is_unique().all()
    assert pool.base.str.contains(r"^[A-Z][a-z]+( [A-Z][a-z]+)?$").mean() > 0.9
    # Given names: both genders keep their head (with nicknames) and gain a nickname-less tail.
    first = namepool.first_names()
    assert first.names.is_unique().all()
    for code, head_names in (("M", vocab.MALE_FIRST_NAMES), ("F", vocab.FEMALE_FIRST_NAMES)):
        block = np.flatnonzero(first.gender == code)
        assert first.names.gather(block[: len(head_names)]).to_list() == [
            n for n, _, _ in head_names
        ]
        assert len(block) > 2 * len(head_names)
        assert (first.nick_count[block[len(head_names) :]] == 0).all()
        share = first.weight[block] / first.weight[block].sum()
        assert share.max() < 0.05


def test_generated_names_are_varied():
    # A real customer base of 3,000 has few namesakes; a 150-surname vocabulary gave a third.
    persons = build_persons(3000, 42)
    full = persons.select(pl.concat_str("first", "tv_b", "base_b", separator=" ")).to_series()
    shared = full.is_duplicated().mean()
    assert shared < 0.08, shared
    surnames = persons.select(pl.concat_str("tv_b", "base_b", separator=" ")).to_series()
    assert surnames.n_unique() > 1500
    assert surnames.value_counts()["count"].max() < 0.01 * persons.height


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--persons", "40", "--seed", "3", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "crm_contacts.csv" in printed and "identity records" in printed
    assert re.search(r"in \d+\.\d s", printed)
    assert (out / "sources.yaml").is_file()
