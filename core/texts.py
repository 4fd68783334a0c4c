"""Notification texts in French and English, with named placeholders.

A test checks that both languages have the same keys and placeholders.
Texts never hold a device, an address or an app name unless the site opted
in (``notify.include_identity``): then ``alert_identity`` is added.
"""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "fr": {
        "alert_title": "Veilleuse : alerte {severity} sur {site}/{sensor}",
        "alert_body": "Un capteur a levé une alerte de gravité {severity} (type : {kind}). "
                      "Consultez la console du centre (identifiant {id}).",
        "alert_identity": "{title}\n{summary}\nAppareil : {device}. Application : {app}.",
        "silent_title": "Veilleuse : le capteur {site}/{sensor} ne répond plus",
        "silent_body": "Le capteur {site}/{sensor} ne surveille plus rien ({reasons}). "
                       "Vérifiez son alimentation et son réseau.",
        "degraded_title": "Veilleuse : le capteur {site}/{sensor} fonctionne mal",
        "degraded_body": "Le capteur {site}/{sensor} signale un problème ({reasons}) ; "
                         "sa surveillance est incomplète.",
        "recovered_title": "Veilleuse : le capteur {site}/{sensor} fonctionne de nouveau",
        "recovered_body": "Le capteur {site}/{sensor} surveille de nouveau normalement.",
        "high": "élevée", "medium": "moyenne", "low": "faible", "info": "information",
    },
    "en": {
        "alert_title": "Veilleuse: {severity} alert on {site}/{sensor}",
        "alert_body": "A sensor raised an alert of {severity} severity (kind: {kind}). "
                      "See the core's console (id {id}).",
        "alert_identity": "{title}\n{summary}\nDevice: {device}. App: {app}.",
        "silent_title": "Veilleuse: sensor {site}/{sensor} is silent",
        "silent_body": "Sensor {site}/{sensor} is no longer watching ({reasons}). "
                       "Check its power and network.",
        "degraded_title": "Veilleuse: sensor {site}/{sensor} is degraded",
        "degraded_body": "Sensor {site}/{sensor} reports a problem ({reasons}); its watch is "
                         "incomplete.",
        "recovered_title": "Veilleuse: sensor {site}/{sensor} has recovered",
        "recovered_body": "Sensor {site}/{sensor} is watching normally again.",
        "high": "high", "medium": "medium", "low": "low", "info": "info",
    },
}
