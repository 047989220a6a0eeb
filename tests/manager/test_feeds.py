"""List feeds: Citizen Lab test lists, plain lists (Wu et al., S&P 2025), the Russian registry dump."""

from __future__ import annotations

import pytest

from chokepoint.manager import feeds

CITIZENLAB = """url,category_code,category_description,date_added,source,notes
https://www.news.test/,NEWS,News Media,2017-04-12,citizenlab,
http://forum.test/path?x=1,POLR,Political Criticism,2018-01-01,,
https://www.news.test/other,NEWS,News Media,2019-01-01,,
http://198.18.5.5/,ANON,Anonymization and circumvention tools,2020-01-01,,
not a url,NEWS,News Media,2020-01-01,,
"""

RKN = "Updated: 2026-12-01 12:00:00 +0000\n" + "\n".join(
    [
        "198.18.7.1 | 198.18.7.2;blocked.ru.test;http://blocked.ru.test/x;Org;27-31-2020/Id2971-20;2020-04-16",
        "198.18.8.0/24;;;Org;2-1;2021-01-01",
        ";*.wild.ru.test;;Org;3-1;2022-01-01",
        "garbage",
    ]
)


def test_citizenlab_hosts_become_domain_entries_and_addresses_are_skipped_with_reasons():
    feed = feeds.read("citizenlab", CITIZENLAB.encode())
    assert feed.entries == ["www.news.test", "forum.test"]
    assert feed.rows == 5 and feed.skipped["duplicate"] == 1
    assert feed.skipped["an address in a domain list"] == 1 and feed.skipped["no host"] == 1
    assert feeds.read("citizenlab", CITIZENLAB.encode(), "cidr").entries == ["198.18.5.5"]
    assert feeds.read("citizenlab", CITIZENLAB.encode(), categories=["POLR"]).entries == ["forum.test"]
    with pytest.raises(feeds.FeedError, match="not a Citizen Lab test list"):
        feeds.read("citizenlab", b"a,b\n1,2\n")


def test_plain_lists_with_comments():
    text = b"# GFW list\nGoogle.test\n  youtube.test  # video\n\n*.cdn.test\n198.18.0.1\n"
    feed = feeds.read("plain", text)
    assert feed.entries == ["google.test", "youtube.test", "*.cdn.test"]
    assert feed.skipped["an address in a domain list"] == 1
    assert feeds.read("plain", text, "cidr").entries == ["198.18.0.1"]


def test_the_registry_dump_in_windows_1251_with_its_stated_date():
    data = RKN.replace("Org", "Роскомнадзор").encode("cp1251")
    feed = feeds.read("rkn-dump", data)
    assert feed.stated_date == "2026-12-01 12:00:00 +0000"
    assert feed.entries == ["blocked.ru.test", "*.wild.ru.test"]
    assert feed.skipped["no domain (address-only row)"] == 1 and feed.skipped["fewer than 3 columns"] == 1
    assert feeds.read("rkn-dump", data, "cidr").entries == ["198.18.7.1", "198.18.7.2", "198.18.8.0/24"]
    with pytest.raises(feeds.FeedError, match="Updated:"):
        feeds.read("rkn-dump", b"x;y;z\n")


def test_unknown_formats_and_bad_text():
    with pytest.raises(feeds.FeedError, match="unknown format"):
        feeds.read("xml", b"")
    with pytest.raises(feeds.FeedError, match="not UTF-8"):
        feeds.read("plain", b"\xff\xfe\xfa")
