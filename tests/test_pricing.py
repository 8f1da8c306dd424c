"""``SMS_PRICES``: every shape it may take, every way it can be wrong, and a hub that will not
start on a wrong one."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal

import pytest

from services.messaging.pricing import PriceConfigError, PriceTable, load_prices
from tests.support import ROOT

DEFAULT = Decimal("0.0075")


def _file(tmp_path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize(("setting", "expected"), [
    ("", {}),
    ("   ", {}),
    ('{"FR": 0.04, "DE": 0.07}', {"FR": Decimal("0.04"), "DE": Decimal("0.07")}),
    ('{"fr": 0.04, " de ": 1}', {"FR": Decimal("0.04"), "DE": Decimal("1")}),
    ('{"ZZ": 0.5}', {"ZZ": Decimal("0.5")}),
    ('{"US": 0}', {"US": Decimal("0")}),
    ('{"US": 0.007900}', {"US": Decimal("0.007900")}),
    ('{"US": 0.123456}', {"US": Decimal("0.123456")}),
    ('{"US": 1e-3}', {"US": Decimal("0.001")}),
    ("{}", {}),
])
def test_inline_json_prices(setting, expected):
    assert load_prices(setting, DEFAULT) == PriceTable(DEFAULT, expected)


@pytest.mark.parametrize(("content", "expected"), [
    ("country,price\nFR,0.04\nDE,0.07\n", {"FR": Decimal("0.04"), "DE": Decimal("0.07")}),
    ("Country , Price\r\nfr , 0.04\r\n", {"FR": Decimal("0.04")}),
    ("\ufeffcountry,price\nGB,0.035\n", {"GB": Decimal("0.035")}),  # Excel's byte order mark
    ("country,price\n\nFR,0.04\n\n", {"FR": Decimal("0.04")}),
    ("country,price\n", {}),
    ('{"FR": 0.04}', {"FR": Decimal("0.04")}),  # a JSON file, whatever its name
    ('\n  {"FR": 0.04}\n', {"FR": Decimal("0.04")}),
])
def test_price_files(tmp_path, content, expected):
    assert load_prices(_file(tmp_path, "prices.csv", content), DEFAULT) \
        == PriceTable(DEFAULT, expected)


def test_an_unlisted_country_pays_the_default_price():
    table = load_prices('{"FR": 0.04}', DEFAULT)
    assert (table.price_for("FR"), table.price_for("DE"), table.price_for("ZZ")) \
        == (Decimal("0.04"), DEFAULT, DEFAULT)


@pytest.mark.parametrize(("setting", "complaint"), [
    ('{"FR": 0.04,}', "SMS_PRICES (inline JSON): not valid JSON at line 1 column 13"),
    ('{"UK": 0.04}', "SMS_PRICES (inline JSON): 'UK': 'UK' is not an ISO 3166-1 alpha-2 country"),
    ('{"XX": 0.04}', "'XX' is not an ISO 3166-1 alpha-2 country code"),
    ('{"FRA": 0.04}', "'FRA' is not an ISO 3166-1 alpha-2 country code"),
    ('{"": 0.04}', "'' is not an ISO 3166-1 alpha-2 country code"),
    ('{"FR": -0.01}', "'FR': the price must be a number of 0 or more"),
    ('{"FR": "0.04"}', "'FR': the price must be a JSON number, not \"0.04\""),
    ('{"FR": true}', "'FR': the price must be a JSON number, not true"),
    ('{"FR": null}', "'FR': the price must be a JSON number, not null"),
    ('{"FR": NaN}', "'FR': the price must be a JSON number, not NaN"),
    ('{"FR": Infinity}', "'FR': the price must be a JSON number, not Infinity"),
    ('{"FR": 0.0000001}', "'FR': the price '0.0000001' has more than 6 decimal places"),
    ('{"FR": 1000000}', "'FR': the price '1000000' is too large"),
    ('{"FR": 0.04, "fr": 0.05}', "'fr': FR is priced twice"),
    ("[0.04]", 'SMS_PRICES (inline JSON): must be a JSON object such as {"FR": 0.04}'),
])
def test_bad_inline_json_is_refused_saying_what_and_where(setting, complaint):
    with pytest.raises(PriceConfigError) as refused:
        load_prices(setting, DEFAULT)
    assert complaint in str(refused.value)


@pytest.mark.parametrize(("content", "complaint"), [
    ("FR,0.04\n", "line 1: the header must be 'country,price', not 'FR,0.04'"),
    ("", "line 1: the header must be 'country,price', not ''"),
    ("country,price,currency\nFR,0.04,EUR\n", "line 1: the header must be 'country,price'"),
    ("country,price\nFR,0.04\nDE,abc\n", "line 3: the price must be a number, not 'abc'"),
    ("country,price\nFR,0.04\nDE\n", "line 3: expected 'country,price', got 'DE'"),
    ("country,price\nFR,0.04,x\n", "line 2: expected 'country,price', got 'FR,0.04,x'"),
    ("country,price\nFR,\n", "line 2: the price must be a number, not ''"),
    ("country,price\nFR,-1\n", "line 2: the price must be a number of 0 or more"),
    ("country,price\nFR,nan\n", "line 2: the price must be a number of 0 or more"),
    ("country,price\nFR,1e400\n", "line 2: the price '1e400' is too large"),
    ("country,price\nFR,0.04\n\nfr,0.05\n", "line 4: FR is priced twice"),
    ("country,price\nEuropa,0.04\n", "line 2: 'Europa' is not an ISO 3166-1 alpha-2"),
    ('{"FR": 0.04', "not valid JSON at line 1 column 12"),
])
def test_a_bad_price_file_is_refused_with_its_line(tmp_path, content, complaint):
    path = _file(tmp_path, "prices.csv", content)
    with pytest.raises(PriceConfigError) as refused:
        load_prices(path, DEFAULT)
    assert f"SMS_PRICES file {path}" in str(refused.value)
    assert complaint in str(refused.value)


def test_an_unreadable_price_file_is_refused(tmp_path):
    with pytest.raises(PriceConfigError, match="SMS_PRICES: cannot read .*missing.csv: "
                                               "No such file or directory"):
        load_prices(str(tmp_path / "missing.csv"), DEFAULT)
    binary = _file(tmp_path, "prices.bin", b"\xff\xfe\x00country")
    with pytest.raises(PriceConfigError, match="SMS_PRICES: cannot read"):
        load_prices(binary, DEFAULT)


def _start(env: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {**os.environ, "HUB_ENV": "testing", "DATABASE_URL": "sqlite://", **env}
    return subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


def test_the_hub_does_not_start_on_a_price_file_with_a_bad_row(tmp_path):
    path = _file(tmp_path, "prices.csv", "country,price\nFR,0.04\nDE,0,07\n")
    started = _start({"SMS_PRICES": path})
    assert started.returncode != 0
    assert (f"RuntimeError: SMS_PRICES file {path} line 3: expected 'country,price', "
            "got 'DE,0,07'") in started.stderr
    assert _start({"SMS_PRICES": path.replace("prices.csv", "none.csv")}).returncode != 0
    assert _start({"SMS_PRICES": '{"FR": 0.04}'}).returncode == 0


@pytest.mark.parametrize(("default", "complaint"), [
    ("-0.01", "SMS_PRICE_PER_SEGMENT: the price must be a number of 0 or more"),
    ("0.0000001", "SMS_PRICE_PER_SEGMENT: the price '0.0000001' has more than 6 decimal places"),
])
def test_the_hub_does_not_start_on_a_default_price_it_cannot_bill(default, complaint):
    started = _start({"SMS_PRICE_PER_SEGMENT": default})
    assert started.returncode != 0
    assert complaint in started.stderr
