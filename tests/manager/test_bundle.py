"""Policy bundles: built from profiles with their list files, validated by the CLI's loader, hashed, diffed."""

from __future__ import annotations

import pytest

from chokepoint.manager import bundle
from chokepoint.policy.errors import PolicyError
from tests.manager.conftest import POLICY


def test_a_bundled_profile_comes_with_the_list_files_it_names():
    files = bundle.from_profile("gfw")
    assert bundle.ENTRY in files and any(p.startswith("lists/") for p in files)
    checked = bundle.validate(files, {})
    assert checked.rules > 0 and checked.lists


def test_a_profile_file_and_its_lists(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "x.txt").write_text("x.test\n")
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("items: [blocked.test]", "file: lists/x.txt"))
    files = bundle.from_profile(str(policy))
    assert files["lists/x.txt"] == "x.test\n"
    with pytest.raises(PolicyError, match="no bundled profile"):
        bundle.from_profile("nope")


def test_validation_errors_are_relative_to_the_bundle():
    with pytest.raises(PolicyError) as err:
        bundle.validate({bundle.ENTRY: POLICY.replace("reset", "resett")}, {})
    assert err.value.file == "policy.yaml" and err.value.line > 1
    with pytest.raises(PolicyError, match="--param block-sni.count=9x"):
        bundle.validate({bundle.ENTRY: POLICY}, {"block-sni.count": "9x"})


def test_paths_sizes_and_hashes():
    for bad in ("../x", "/etc/passwd", "a/../b", "managed-lists/x.txt", ""):
        with pytest.raises(bundle.BundleError):
            bundle.check_path(bad)
    with pytest.raises(bundle.BundleError, match="no policy.yaml"):
        bundle.check_files({"x.yaml": ""})
    a = bundle.policy_hash({bundle.ENTRY: POLICY}, {})
    assert (
        a == bundle.policy_hash({bundle.ENTRY: POLICY}, {}) != bundle.policy_hash({bundle.ENTRY: POLICY}, {"r.p": "1"})
    )
    assert bundle.state_hash(a, {"x": "1", "y": "2"}) == bundle.state_hash(a, {"y": "2", "x": "1"})


def test_list_entries_are_checked_with_the_declared_kind():
    assert bundle.check_list("b", "domain", "A.test\n# c\n  b.test  # why\n\n") == ("a.test", "b.test")
    with pytest.raises(PolicyError) as err:
        bundle.check_list("b", "cidr", "198.18.0.0/24\n300.1.1.1\n")
    assert (err.value.file, err.value.line, err.value.column) == ("lists/b", 2, 1)
    assert bundle.declared_lists({bundle.ENTRY: POLICY}) == {"blocked": "domain"}


def test_diffs_read_file_by_file_and_show_params():
    old = {"files": {bundle.ENTRY: POLICY}, "params": {}}
    new = {
        "files": {bundle.ENTRY: POLICY.replace("blocked.test", "new.test"), "lists/n.txt": "n\n"},
        "params": {"a.b": "1"},
    }
    text = bundle.diff(old, new, "v1", "v2")
    assert "--- v1/policy.yaml" in text and "+++ v2/lists/n.txt" in text and "+a.b=1" in text
    assert bundle.diff(old, old, "v1", "v1") == ""
