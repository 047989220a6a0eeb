"""The JSON Schema: shipped file current, valid Draft 2020-12, generated from the one declarations."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

from chokepoint.policy.fields import FIELDS, OPERATORS, SHORTHAND, fields_markdown
from chokepoint.policy.profile import BUNDLED_DIR, list_profiles
from chokepoint.policy.schema import SCHEMA_FILE, build_schema, main
from chokepoint.policy.verdict import Action
from chokepoint.policy.yamlsrc import load_yaml
from chokepoint.settings import EngineSettings


def test_shipped_schema_is_current_and_valid() -> None:
    assert main(["--check"]) == 0, "regenerate with: python -m chokepoint.policy.schema --write"
    shipped = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(shipped)
    assert shipped == build_schema()


def test_engine_section_is_generated_from_engine_settings() -> None:
    engine = build_schema()["$defs"]["engine"]
    # every EngineSettings field, in order, then the provenance keys every profile section may carry
    assert list(engine["properties"]) == [*EngineSettings.field_names(), "cite", "uncertain"]
    json_type = {bool: "boolean", int: "integer", float: "number"}
    for name, typ in EngineSettings.field_types().items():
        assert engine["properties"][name]["type"] == json_type[typ]
        assert engine["properties"][name]["default"] == getattr(EngineSettings(), name)
    assert engine["additionalProperties"] is False


def test_conditions_and_actions_come_from_their_registries() -> None:
    defs = build_schema()["$defs"]
    props = defs["condition"]["properties"]
    assert set(props) == set(FIELDS) | {"all", "any", "not"}
    for name, spec in FIELDS.items():
        operand = props[name]
        objects = (
            [operand]
            if operand.get("type") == "object"
            else [b for b in operand.get("anyOf", []) if b.get("type") == "object"]
        )
        (ops,) = objects
        assert list(ops["properties"]) == [op for op in OPERATORS[spec.kind] if op in ops["properties"]]
        assert set(ops["properties"]) == set(OPERATORS[spec.kind])
        assert ("anyOf" in operand) == (SHORTHAND[spec.kind] is not None)
    assert set(defs["rule"]["properties"]["action"]["enum"]) == {a.value for a in Action}
    assert {f"params.{a.value}" for a in Action} <= set(defs)


def test_bundled_profiles_validate_against_the_shipped_file() -> None:
    validator = Draft202012Validator(
        json.loads(SCHEMA_FILE.read_text(encoding="utf-8")), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    for name in list_profiles():
        path = BUNDLED_DIR / f"{name}.yaml"
        data, _ = load_yaml(path.read_text(encoding="utf-8"), str(path))
        assert list(validator.iter_errors(data)) == []


def test_field_table_for_the_docs_lists_every_field() -> None:
    table = fields_markdown()
    for name in FIELDS:
        assert f"| `{name}` |" in table
