"""Message catalogues: French and English say the same things, with the same placeholders."""

from __future__ import annotations

import io
import re

import pytest

from core.texts import TEXTS
from sensor.detect.model import Alert, AlertKind, Severity
from sensor.messages import load_catalogue, placeholders
from sensor.report import alert_record, all_catalogues, write_text


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


# A punctuation mark used as such (followed by a space or the end), or a closing guillemet.
_HIGH_PUNCTUATION = re.compile(r"(.?)([:;!?»])(?=\s|$|\")|«(.?)")
_NO_BREAK_SPACES = "\u00a0\u202f"


def _french_typography_faults(text: str) -> list[str]:
    """Where ``text`` lacks the no-break space French puts before : ; ! ? » and after «.

    >>> _french_typography_faults("Que faire: partir")
    ['Que faire:']
    >>> _french_typography_faults("Attendez ; « Tout va bien »  n'est pas 10:30\u00a0!")
    ['Attendez ;', '« Tou', 'ut va bien »']
    """
    faults = []
    for match in _HIGH_PUNCTUATION.finditer(text):
        before, after = match.group(1), match.group(3)
        if match.group(2) and before not in _NO_BREAK_SPACES:
            faults.append(text[max(0, match.end() - 12):match.end()].split("\n")[-1])
        if match.group(0).startswith("«") and after not in _NO_BREAK_SPACES:
            faults.append(text[match.start():match.end() + 3])
    return faults


def _french_texts() -> dict[str, str]:
    texts = {f"sensor {key}": text for key, text in load_catalogue("fr").messages.items()}
    texts |= {f"screen {key}": text
              for key, text in load_catalogue("fr", "screen.locales").messages.items()}
    return texts | {f"core {key}": text for key, text in TEXTS["fr"].items()}


def test_french_texts_put_a_no_break_space_before_high_punctuation() -> None:
    """« Que faire : » with U+00A0: a plain space would let the line wrap before the colon."""
    faults = {key: found for key, text in _french_texts().items()
              if (found := _french_typography_faults(text))}
    assert not faults
    assert sum(":" in text for text in _french_texts().values()) > 20  # the rule had matter


def test_a_french_report_keeps_the_no_break_spaces() -> None:
    alert = Alert(id="a" * 20, kind=AlertKind.DOMAIN, severity=Severity.HIGH,
                  device="192.168.1.10", indicator="copy9.com", observed="api.copy9.com",
                  app="TheTruthSpy", protocols=("dns",), first_seen=0.0, last_seen=60.0,
                  count=2)
    stream = io.StringIO()
    write_text([alert], stream, load_catalogue("fr"), capture="x.pcap", source="scapy",
               observations=3, feeds="ioc.yaml 6052636f (1659)")
    report = stream.getvalue()
    assert "Que faire\u00a0: TheTruthSpy" in report
    assert "Identifiant de l'alerte\u00a0: aaaa" in report
    assert not [line for line in report.splitlines()
                if _french_typography_faults(line) or line.lstrip().startswith(":")]
