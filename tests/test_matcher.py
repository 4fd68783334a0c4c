"""Label-aligned matching against the real Echap indicators."""

from __future__ import annotations

import logging

import pytest

from sensor.feeds.matcher import Allowlist, IndicatorMatcher
from sensor.feeds.model import Category, Indicator
from sensor.feeds.names import normalize_domain
from tests import scenarios


@pytest.mark.parametrize("name", ["copy9.com", "x.copy9.com", "a.b.copy9.com", "COPY9.com.",
                                  "X.Copy9.Com"])
def test_listed_name_and_its_subdomains_match(echap_matcher, name) -> None:
    match = echap_matcher.match_domain(name)
    assert match is not None
    assert match.indicator.value == "copy9.com"
    assert match.indicator.app == "TheTruthSpy"


@pytest.mark.parametrize("name", ["notcopy9.com", "copy9.com.example.net", "copy9.co",
                                  "firebaseio.com", "other-db.firebaseio.com", "", ".", "a..b"])
def test_lookalikes_parents_and_garbage_do_not_match(echap_matcher, name) -> None:
    assert echap_matcher.match_domain(name) is None


def test_listed_firebase_subdomain_matches_but_not_its_parent(echap_matcher) -> None:
    assert echap_matcher.match_domain(scenarios.C2_FIREBASE).indicator.category is Category.C2
    assert echap_matcher.match_domain(f"x.{scenarios.C2_FIREBASE}") is not None
    assert echap_matcher.match_domain("firebaseio.com") is None


def test_scenario_indicators_have_the_categories_the_tests_assume(echap_matcher) -> None:
    assert echap_matcher.match_domain(scenarios.WATCHWARE_DOMAIN).indicator.category is \
        Category.WATCHWARE
    assert echap_matcher.match_domain(scenarios.WEBSITE_DOMAIN).indicator.category is \
        Category.WEBSITE
    assert echap_matcher.match_ip(scenarios.C2_IP).indicator.category is Category.C2


def test_unicode_feed_entry_matches_its_punycode_on_the_wire() -> None:
    matcher = IndicatorMatcher([Indicator(normalize_domain("spïon.example"), Category.C2, "X")])
    assert matcher.match_domain("api.xn--spon-6pa.example").indicator.app == "X"
    assert matcher.match_domain("API.SPÏON.example.").indicator.app == "X"


def test_ipv6_indicators_match_any_spelling() -> None:
    matcher = IndicatorMatcher([Indicator("2001:db8::66", Category.C2, "X", is_ip=True)])
    assert matcher.match_ip("2001:0db8:0000:0000:0000:0000:0000:0066") is not None
    assert matcher.match_ip("not-an-ip") is None


def test_the_most_severe_category_wins_over_a_more_specific_one() -> None:
    matcher = IndicatorMatcher([Indicator("app.vendor.example", Category.WEBSITE, "V"),
                                Indicator("vendor.example", Category.C2, "V")])
    assert matcher.match_domain("app.vendor.example").indicator.category is Category.C2


def test_allowlist_never_hides_a_c2_indicator(echap_feeds, caplog) -> None:
    allowlist = Allowlist(domains=["copy9.com", "exactspy.com", "firebaseio.com"],
                          networks=["69.64.74.0/24"])
    with caplog.at_level(logging.WARNING):
        matcher = IndicatorMatcher((i for f in echap_feeds for i in f.indicators), allowlist)
    assert matcher.match_domain("x.copy9.com") is not None
    assert matcher.match_domain(scenarios.C2_FIREBASE) is not None
    assert matcher.match_ip(scenarios.C2_IP) is not None
    assert matcher.match_domain("www.exactspy.com") is None  # a website: allowlisted
    assert "C2 indicators are always reported, the allowlist is ignored for them" in caplog.text
