"""Message catalogues: French and English say the same things, with the same placeholders."""

from __future__ import annotations

import pytest

from sensor.detect.model import Alert, AlertKind, Severity
from sensor.messages import load_catalogue, placeholders
from sensor.report import alert_record, all_catalogues


def test_french_and_english_have_the_same_keys_and_placeholders() -> None:
    english, french = load_catalogue("en").messages, load_catalogue("fr").messages
    assert english.keys() == french.keys()
    for key in english:
        assert placeholders(english[key]) == placeholders(french[key]), key


@pytest.mark.parametrize("kind", list(AlertKind))
def test_every_alert_kind_is_explained_in_both_languages(kind) -> None:
    alert = Alert(id="x", kind=kind, severity=Severity.HIGH, device="192.168.1.10",
                  indicator="copy9.com", observed="api.copy9.com", app="TheTruthSpy",
                  protocols=("dns",), first_seen=0.0, last_seen=60.0, count=2,
                  details=(("interval_s", "60"),))
    record = alert_record(alert, all_catalogues())
    for language in ("fr", "en"):
        assert record["title"][language] and record["advice"][language]
        assert "192.168.1.10" in record["summary"][language]
        assert "{" not in record["summary"][language] + record["advice"][language]


@pytest.mark.parametrize("kind", ["domain", "ip"])
def test_stalkerware_advice_warns_against_removal_and_points_to_an_advocate(kind) -> None:
    english, french = load_catalogue("en"), load_catalogue("fr")
    assert "Do not uninstall" in english.messages[f"kind.{kind}.advice"]
    assert "advocate" in english.messages[f"kind.{kind}.advice"]
    assert "Ne le désinstallez pas" in french.messages[f"kind.{kind}.advice"]
    assert "intervenante" in french.messages[f"kind.{kind}.advice"]


def test_all_clear_never_claims_absence_of_stalkerware() -> None:
    assert "does not prove" in load_catalogue("en").messages["report.caveat"]
    assert "ne prouve pas" in load_catalogue("fr").messages["report.caveat"]
