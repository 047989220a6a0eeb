"""A policy version as files: built from a profile, validated with the command line's loader, hashed, diffed.

A *bundle* is ``{"policy.yaml": text, "lists/x.txt": text, ...}``: the rule file (a profile or a rules file,
the format of ``src/chokepoint/policy/profile.schema.json``) and every list file it names, by the relative
path it names them with. With the rule-param overrides (``params``) and the deployment's managed lists (a list
version's entries replace the entries of the list of that name the policy declares: ``list_files`` of the
loader) it is everything a node needs. The manager keeps every version's bundle whole, so any version can be
diffed, pushed again or rolled back to without the files it came from.

Validation materialises the bundle in a temporary directory and loads it with
:func:`chokepoint.policy.load_rules_file` — the loader ``analyze``, ``lab up`` and censord use — so a policy the
manager accepts is one every node accepts, and errors read ``policy.yaml:12:5: message`` (the temporary
directory cut off).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from chokepoint.policy.errors import PolicyError

ENTRY = "policy.yaml"
#: Limits on what one version may hold (a request over them is refused whole with 413/422).
MAX_FILES = 256
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_LIST_BYTES = 32 * 1024 * 1024
MANAGED_DIR = "managed-lists"


class BundleError(ValueError):
    """A bundle that is malformed as files (not as a policy): bad paths, too big, not text."""


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def policy_hash(files: Mapping[str, str], params: Mapping[str, str]) -> str:
    """SHA-256 over the files and the overrides (canonical JSON)."""
    return hashlib.sha256(_canonical({"files": dict(files), "params": dict(params)})).hexdigest()


def list_hash(name: str, entries: str) -> str:
    return hashlib.sha256(_canonical({"name": name, "entries": entries})).hexdigest()


def state_hash(policy: str | None, lists: Mapping[str, str]) -> str:
    """The hash a node acknowledges: its policy's hash and the hashes of the managed lists it enforces."""
    return hashlib.sha256(_canonical({"policy": policy, "lists": dict(sorted(lists.items()))})).hexdigest()


def check_path(path: str) -> str:
    """A bundle path: relative, POSIX, no ``..``, no hidden tricks. ``BundleError`` otherwise."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or str(pure) != path:
        raise BundleError(f"bad file name in the bundle: {path!r} (relative paths like lists/x.txt only)")
    if pure.parts[0] == MANAGED_DIR:
        raise BundleError(f"{MANAGED_DIR}/ is where the manager puts its lists: rename {path!r}")
    return path


def check_files(files: Mapping[str, str]) -> None:
    if ENTRY not in files:
        raise BundleError(f"the bundle has no {ENTRY}")
    if len(files) > MAX_FILES:
        raise BundleError(f"the bundle has {len(files)} files; at most {MAX_FILES}")
    size = 0
    for path, text in files.items():
        check_path(path)
        if not isinstance(text, str):
            raise BundleError(f"{path}: file contents must be text")
        size += len(text.encode("utf-8"))
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(f"the bundle is {size} bytes; at most {MAX_BUNDLE_BYTES}")


def _list_files(spec_lists: Any) -> list[str]:
    if not isinstance(spec_lists, dict):
        return []
    return [
        spec["file"] for spec in spec_lists.values() if isinstance(spec, dict) and isinstance(spec.get("file"), str)
    ]


def from_profile(name_or_path: str) -> dict[str, str]:
    """The bundle of a bundled profile (``"gfw"``) or of a profile/rule file, with the list files it names.
    ``PolicyError`` when the file cannot be read or parsed as YAML; ``BundleError`` for a list file outside
    the profile's directory."""
    from chokepoint.policy.profile import BUNDLED_DIR, list_profiles
    from chokepoint.policy.yamlsrc import load_yaml

    looks_like_path = "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(name_or_path)
    elif name_or_path in list_profiles():
        path = BUNDLED_DIR / f"{name_or_path}.yaml"
    else:
        raise PolicyError(
            name_or_path, 1, 1, f"no bundled profile {name_or_path!r}; bundled: {', '.join(list_profiles())}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), 1, 1, f"cannot read: {exc}") from None
    data, _ = load_yaml(text, str(path))
    files = {ENTRY: text}
    for rel in _list_files(data.get("lists") if isinstance(data, dict) else None):
        check_path(rel)
        try:
            files[rel] = (path.parent / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(str(path.parent / rel), 1, 1, f"cannot read list file: {exc}") from None
    return files


def materialize(files: Mapping[str, str], directory: Path, lists: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write the bundle under ``directory`` (and each managed list to ``managed-lists/NAME.txt``); return the
    managed lists' paths by name (the loader's ``list_files``)."""
    check_files(files)
    for rel, text in files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    managed: dict[str, Path] = {}
    for name, entries in (lists or {}).items():
        target = directory / MANAGED_DIR / f"{name}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entries, encoding="utf-8")
        managed[name] = target
    return managed


def _relative_error(exc: PolicyError, directory: Path) -> PolicyError:
    prefix = str(directory) + "/"
    file = exc.file[len(prefix) :] if exc.file.startswith(prefix) else exc.file
    message = exc.message.replace(prefix, "")
    return PolicyError(file, exc.line, exc.column, message)


@dataclass(frozen=True, slots=True)
class Checked:
    """What validation learnt of a bundle: the profile's name, its rules and the lists it declares."""

    profile: str
    rules: int
    lists: dict[str, str]  # name -> kind

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "rules": self.rules, "lists": self.lists}


def validate(files: Mapping[str, str], params: Mapping[str, str], lists: Mapping[str, str] | None = None) -> Checked:
    """Load the bundle as every node will; ``PolicyError`` (paths relative to the bundle) or ``BundleError``."""
    from chokepoint.policy import load_rules_file

    with tempfile.TemporaryDirectory(prefix="chokepoint-bundle-") as tmp:
        directory = Path(tmp)
        managed = materialize(files, directory, lists)
        try:
            profile = load_rules_file(directory / ENTRY, params=dict(params) or None, list_files=managed or None)
        except PolicyError as exc:
            raise _relative_error(exc, directory) from None
    return Checked(
        profile=profile.name if profile.name != "policy" else "",
        rules=len(profile.policy.rules),
        lists={name: d.kind for name, d in profile.policy.lists.items()},
    )


def declared_lists(files: Mapping[str, str]) -> dict[str, str]:
    """``{name: kind}`` of the lists the bundle's policy declares (read from the YAML, not compiled)."""
    from chokepoint.policy.yamlsrc import load_yaml

    data, _ = load_yaml(files[ENTRY], ENTRY)
    spec = data.get("lists") if isinstance(data, dict) else None
    if not isinstance(spec, dict):
        return {}
    return {name: str(s.get("kind", "")) for name, s in spec.items() if isinstance(s, dict)}


def check_list(name: str, kind: str, entries: str) -> tuple[str, ...]:
    """The canonical entries of a managed list (file syntax: one per line, ``#`` comments), or
    ``PolicyError`` at ``lists/NAME:line:column``."""
    from chokepoint.policy.errors import SourcePos
    from chokepoint.policy.lists import LIST_KINDS, parse_entries

    if kind not in LIST_KINDS:
        raise PolicyError(f"lists/{name}", 0, 0, f"unknown list kind {kind!r}")
    if len(entries.encode("utf-8")) > MAX_LIST_BYTES:
        raise BundleError(f"list {name!r} is over {MAX_LIST_BYTES} bytes")
    shown = f"lists/{name}"

    def items():
        for lineno, raw in enumerate(entries.splitlines(), 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            cut = text.find(" #")
            if cut < 0:
                cut = text.find("\t#")
            if cut > 0:
                text = text[:cut].rstrip()
            yield text, SourcePos(shown, lineno, len(raw) - len(raw.lstrip()) + 1)

    parsed, _ = parse_entries(kind, items())
    return parsed


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any], old_label: str, new_label: str) -> str:
    """A unified diff of two versions (``files`` and ``params`` of each), file by file; ``old`` None: all new."""
    old_files = dict((old or {}).get("files") or {})
    new_files = dict(new.get("files") or {})
    chunks: list[str] = []
    for path in sorted(set(old_files) | set(new_files)):
        a, b = old_files.get(path), new_files.get(path)
        if a == b:
            continue
        chunks.extend(
            difflib.unified_diff(
                (a or "").splitlines(keepends=True),
                (b or "").splitlines(keepends=True),
                fromfile=f"{old_label}/{path}" if a is not None else "/dev/null",
                tofile=f"{new_label}/{path}" if b is not None else "/dev/null",
            )
        )
    old_params = (old or {}).get("params") or {}
    new_params = new.get("params") or {}
    if old_params != new_params:
        a_lines = [f"{k}={v}\n" for k, v in sorted(old_params.items())]
        b_lines = [f"{k}={v}\n" for k, v in sorted(new_params.items())]
        chunks.extend(
            difflib.unified_diff(a_lines, b_lines, fromfile=f"{old_label}/params", tofile=f"{new_label}/params")
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)


def list_diff(old: str | None, new: str, old_label: str, new_label: str) -> str:
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True), new.splitlines(keepends=True), fromfile=old_label, tofile=new_label
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


__all__ = [
    "ENTRY",
    "BundleError",
    "Checked",
    "check_list",
    "declared_lists",
    "diff",
    "from_profile",
    "list_hash",
    "materialize",
    "policy_hash",
    "state_hash",
    "validate",
]
