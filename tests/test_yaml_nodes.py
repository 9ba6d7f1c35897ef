"""The loader: YAML text → located nodes, refusing everything a spec has no use for."""

from __future__ import annotations

import time

import pytest

from shapecli.errors import ShapecliError
from shapecli.spec.yaml_nodes import Map, Scalar, Seq, decode, parse


def error(text: str) -> tuple[str, int, int, str]:
    with pytest.raises(ShapecliError) as info:
        parse(text, "f.yaml")
    p = info.value.problem
    assert p.source is not None
    return p.code, p.source.line, p.source.column, p.message


def test_nodes_carry_one_based_line_and_column() -> None:
    root = parse("model:\n  - LazyLinear: 256\n", "f.yaml")
    assert isinstance(root, Map)
    model = root.values["model"]
    assert isinstance(model, Seq)
    entry = model.items[0]
    assert isinstance(entry, Map)
    assert (entry.keys["LazyLinear"].source.line, entry.keys["LazyLinear"].source.column) == (2, 5)
    value = entry.values["LazyLinear"]
    assert isinstance(value, Scalar) and value.value == 256


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("no", "no"), ("on", "on"), ("yes", "yes"), ("off", "off"),  # YAML 1.1 booleans
        ("true", True), ("False", False), ("~", None), ("null", None),
        ("12", 12), ("-3", -3), ("0x1f", 31), ("0o17", 15), ("1.5", 1.5), ("1e3", 1000.0),
        ("'12'", "12"), ('"true"', "true"), ("2x20", "2x20"), ("1_000", "1_000"),
    ],
)  # fmt: skip
def test_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    root = parse(f"a: {text}\n", "f.yaml")
    assert isinstance(root, Map)
    node = root.values["a"]
    assert isinstance(node, Scalar)
    assert node.value == value and type(node.value) is type(value)


def test_duplicate_key_is_reported_at_the_second_key() -> None:
    code, line, column, message = error("a: 1\nb: 2\na: 3\n")
    assert (code, line, column) == ("yaml-syntax", 3, 1)
    assert "first defined at line 1" in message


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system ['true']", "!!str 3", "!custom 1", "! x"]
)
def test_explicit_tags_are_refused(tag: str) -> None:
    code, line, column, message = error(f"a: {tag}\n")
    assert (code, line, column) == ("yaml-syntax", 1, 4)
    assert "tags are not allowed" in message


def test_billion_laughs_fails_fast() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    text = "\n".join(lines) + "\n"
    assert len(text) < 600
    start = time.perf_counter()
    code, _, _, message = error(text)
    assert time.perf_counter() - start < 1.0
    assert code == "yaml-syntax" and "expands to more than" in message


def test_deep_nesting_is_capped_without_recursion() -> None:
    code, line, _, message = error("[" * 5000 + "]" * 5000)
    assert code == "yaml-syntax" and line == 1
    assert "nesting" in message  # ours, or libyaml's own limit (PyYAML >= 6.0.4)
    code, line, _, message = error("a:\n" + "".join(f"{' ' * i}- \n" for i in range(1, 80)))
    assert (code, line) == ("yaml-syntax", 65) and "nesting deeper than 64" in message


def test_one_document_only() -> None:
    assert error("a: 1\n---\nb: 2\n")[:3] == ("yaml-syntax", 2, 1)


@pytest.mark.parametrize(("char", "column"), [("\x00", 4), ("\x1b", 4), ("\x85", 4)])
def test_control_characters_are_refused_with_position(char: str, column: int) -> None:
    code, line, col, message = error(f"a: {char}x\n")
    assert (code, line, col) == ("yaml-syntax", 1, column)
    assert "control character" in message


def test_recursive_alias_is_an_error() -> None:
    assert error("a: &x [1, *x]\n")[0] == "yaml-syntax"


def test_syntax_error_points_at_the_problem() -> None:
    code, line, _, _ = error("model:\n  - a: 1\n   - b\n")
    assert (code, line) == ("yaml-syntax", 3)


def test_non_name_keys_are_refused() -> None:
    assert error("? [1, 2]\n: x\n")[0] == "yaml-syntax"


def test_decode_accepts_a_bom_and_refuses_bad_utf8_with_position() -> None:
    assert decode("\ufeffa: 1\n".encode(), "f.yaml") == "a: 1\n"
    with pytest.raises(ShapecliError) as info:
        decode(b"a: 1\nb: \xff\n", "f.yaml")
    source = info.value.problem.source
    assert source is not None and (source.line, source.column) == (2, 4)


def test_decode_refuses_more_than_one_mebibyte() -> None:
    with pytest.raises(ShapecliError) as info:
        decode(b"#" * (1 << 20) + b"\n", "f.yaml")
    assert "at most" in info.value.problem.message


def test_huge_integers_are_refused() -> None:
    assert "too large" in error("a: " + "9" * 5000 + "\n")[3]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("input: 2x4\nmodel:\n  - Linear: [4, 3\n  - ReLU\n", (4, 9)),  # noticed a line later
        ("input: 2x4\nmodel:\n  - Linear: [4, 3\n", (3, 18)),  # the text ends inside it
    ],
)
def test_an_unclosed_bracket_names_where_it_opened_and_stays_in_the_file(
    text: str, where: tuple[int, int]
) -> None:
    with pytest.raises(ShapecliError) as caught:
        parse(text, "f.yaml")
    (problem,) = caught.value.problems
    assert problem.code == "yaml-syntax"
    assert (problem.source.line, problem.source.column) == where
    assert problem.hint == "the [ at line 3, column 13 is not closed: close it with `]`"
