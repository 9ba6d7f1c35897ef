"""The JSON report and its codec: ``from_json`` is the exact inverse of ``to_json``, and
a document that is not a report is refused at the JSON path of its first problem.

The round trip is a property over reports hypothesis builds from the type hints
themselves (every field, every Optional, nested), so a field added to a dataclass is
covered without touching this file. No torch here: the codec is plain data.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
from pathlib import Path
from typing import Annotated, Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shapecli import codec
from shapecli.codec import DecodeError
from shapecli.errors import Problem, Source
from shapecli.inputs import InputSpec
from shapecli.report import (
    Memory,
    ParamInfo,
    Report,
    Row,
    Totals,
    from_json,
    read_report,
    report_schema,
    to_json,
)

DATA = Path(__file__).parent / "data"
# Small enough that the derived sums (a training peak adds five figures) stay in int64;
# the int64 bounds themselves are tested one by one below.
LARGEST = 2**60


def strategy(kind: codec.Kind) -> st.SearchStrategy[Any]:
    """Values of the type a compiled kind describes: what hypothesis builds reports from."""
    if isinstance(kind, codec.Record):
        fields = {f.name: strategy(f.kind) for f in kind.fields}
        return st.builds(kind.cls, **fields)
    if isinstance(kind, codec.Through):
        return strategy(kind.form).map(kind.via.read)
    if isinstance(kind, codec.Nullable):
        return st.one_of(st.just(kind.sentinel), strategy(kind.inner))
    if isinstance(kind, codec.Union):
        return st.one_of(*(strategy(a) for a in kind.alternatives))
    if isinstance(kind, codec.Array):
        return st.lists(strategy(kind.item), max_size=3).map(kind.container)
    if isinstance(kind, codec.Fixed):
        return st.tuples(*(strategy(k) for k in kind.items))
    if isinstance(kind, codec.Mapping):
        return st.dictionaries(st.text(max_size=4), strategy(kind.value), max_size=3)
    if isinstance(kind, codec.Choice):
        return st.sampled_from(kind.values)
    if isinstance(kind, codec.Integer):
        return st.integers(kind.minimum, min(kind.maximum, LARGEST))
    assert isinstance(kind, codec.Scalar)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "string": st.text(max_size=6),
        "number": st.floats(allow_nan=False, allow_infinity=False),
    }
    return simple[kind.kind]


REPORTS = strategy(codec.compile_hint(Report))


@pytest.mark.slow
@given(REPORTS)
def test_from_json_is_the_inverse_of_to_json(report: Report) -> None:
    text = json.dumps(to_json(report), ensure_ascii=False)
    assert read_report(text) == report
    assert to_json(from_json(json.loads(text))) == json.loads(text)


def test_the_generated_reports_reach_every_field() -> None:
    """Every dataclass of the report is in the compiled tree the strategy walks (a type
    the codec did not reach would never be generated either)."""
    reached: set[type] = set()

    def walk(kind: codec.Kind) -> None:
        children: list[codec.Kind] = []
        if isinstance(kind, codec.Record):
            if kind.cls in reached:
                return
            reached.add(kind.cls)
            children = [f.kind for f in (*kind.fields, *kind.derived)]
        elif isinstance(kind, codec.Through):
            children = [kind.form]
        elif isinstance(kind, codec.Nullable):
            children = [kind.inner]
        elif isinstance(kind, codec.Union):
            children = list(kind.alternatives)
        elif isinstance(kind, codec.Array):
            children = [kind.item]
        elif isinstance(kind, codec.Fixed):
            children = list(kind.items)
        for child in children:
            walk(child)

    walk(codec.compile_hint(Report))
    names = {cls.__name__ for cls in reached}
    assert names >= {"Report", "Row", "ParamInfo", "Origin", "Totals", "Memory", "Problem"}
    assert names >= {"Source", "InputForm"}


def test_a_field_added_to_a_dataclass_is_written_read_checked_and_published() -> None:
    """The point of the codec: a new field needs no list of keys updated anywhere."""
    grown = dataclasses.make_dataclass(
        "GrownMemory",
        [("activation_peak", int | None, dataclasses.field(default=None))],
        bases=(Memory,),
        frozen=True,
    )
    value = grown(params=8, activation_peak=64)
    written = codec.encode(value)
    assert written["activation_peak"] == 64 and written["training_peak"] is None
    assert codec.decode(grown, written) == value
    published = codec.schema(grown)["$defs"]["GrownMemory"]
    assert "activation_peak" in published["properties"]
    with pytest.raises(
        DecodeError, match=r'\$\.activation_peak: expected an integer or null, got "x"'
    ):
        codec.decode(grown, {**written, "activation_peak": "x"})
    # written before the field existed: refused until the field is marked Added
    with pytest.raises(DecodeError, match='missing key "activation_peak"'):
        codec.decode(grown, {k: v for k, v in written.items() if k != "activation_peak"})


class Derivation(enum.StrEnum):
    derived = "derived"
    sampled = "sampled"


@dataclasses.dataclass(frozen=True)
class Figures:
    """What no report field has yet, but a new one may: floats, lists, mappings, enums."""

    ratio: float
    per_device: dict[str, int]
    order: list[str]
    pair: tuple[int, str]
    how: Derivation | None


def test_floats_lists_mappings_and_enums_are_written_read_and_published() -> None:
    value = Figures(0.5, {"cuda:0": 3}, ["a"], (1, "b"), Derivation.sampled)
    assert codec.encode(value)["how"] == "sampled"
    with pytest.raises(
        DecodeError, match=r'^\$\.how: expected one of "derived", "sampled" or null'
    ):
        codec.decode(Figures, {**codec.encode(value), "how": "guessed"})
    assert codec.decode(Figures, json.loads(json.dumps(codec.encode(value)))) == value
    assert jsonschema.Draft202012Validator(codec.schema(Figures)).is_valid(codec.encode(value))
    with pytest.raises(DecodeError, match=r'^\$\.per_device\["cuda:0"\]: expected an integer'):
        codec.decode(Figures, {**codec.encode(value), "per_device": {"cuda:0": 1.5}})
    with pytest.raises(DecodeError, match=r"^\$\.pair: expected an array of 2 items, got 3$"):
        codec.decode(Figures, {**codec.encode(value), "pair": [1, "b", 2]})
    with pytest.raises(DecodeError, match=r"^\$\.ratio: expected a finite number, got Infinity$"):
        codec.decode(Figures, {**codec.encode(value), "ratio": float("inf")})


def test_what_the_codec_cannot_write_is_refused_when_the_type_is_read() -> None:
    with pytest.raises(TypeError, match="must differ in JSON kind"):
        codec.compile_hint(tuple[int, ...] | list[str])
    with pytest.raises(TypeError, match="cannot write"):
        codec.compile_hint(set[int])
    undefaulted = dataclasses.make_dataclass(
        "Undefaulted", [("late", Annotated[int, codec.Added()])], frozen=True
    )
    with pytest.raises(TypeError, match="an Added field needs a default"):
        codec.compile_hint(undefaulted)


def test_a_report_saved_by_an_earlier_shapecli_still_loads() -> None:
    """``report-v1-mlp.json`` is what ``inspect -f json`` wrote before the report was
    lossless (no ``named``, ``ran``, ``samples``, nor a row source's ``file``) and before
    rows were calls (no ``call``, ``returns``, ``merge``)."""
    text = (DATA / "report-v1-mlp.json").read_text()
    try:
        report = read_report(text)
    except DecodeError as e:
        pytest.fail(
            f"{e}: a field added to a report dataclass must be Annotated[..., Added()] (with "
            "a default that is true of reports saved before it), or old reports stop loading"
        )
    assert report.totals.params == 7_946 and report.inputs == (InputSpec((2, 20)),)
    assert report.rows[1].source == Source("", 6, 5) and report.ran
    again = to_json(report)
    for key in ("ran", "samples"):
        del again[key]
    for item in again["inputs"]:
        del item["named"]
    for row in again["layers"]:
        del row["source"]["file"]
        for key in ("call", "returns", "merge", "arguments"):  # added with rows per call
            del row[key]
        for origin in row["sources"]:
            del origin["call"]
    del again["totals"]["memory"]["per_device"]  # added with --shard
    assert again == json.loads(text)  # the same document, but for the keys added since


def test_an_input_the_spec_named_stays_named() -> None:
    unnamed = Report("m", "m.yaml", (InputSpec((2, 3)), InputSpec((4,))))
    named = Report("m", "m.yaml", (InputSpec((2, 3), name="input0"), InputSpec((4,), name="x")))
    for report in (unnamed, named):
        assert read_report(json.dumps(to_json(report))) == report
    assert [i["name"] for i in to_json(unnamed)["inputs"]] == ["input0", "input1"]
    # a report from before `named`: shapecli's own names are taken as shapecli's
    old = to_json(named)
    for item in old["inputs"]:
        del item["named"]
    assert from_json(old).inputs == (InputSpec((2, 3)), InputSpec((4,), name="x"))


# -- documents that are not reports --------------------------------------------------------

REPORT = Report(
    name="mlp",
    spec="mlp.yaml",
    inputs=(InputSpec((2, 20)),),
    rows=(
        Row("", "mlp", "Sequential", 0, Source("mlp.yaml", 3, 3), ((2, 20),), ((2, 4),)),
        Row(
            "0",
            "0",
            "LazyLinear",
            1,
            Source("mlp.yaml", 4, 5),
            ((2, 20),),
            ((2, 4),),
            (ParamInfo("weight", (4, 20), 80), ParamInfo("bias", (4,), 4)),
            param_count=84,
        ),
    ),
    totals=Totals(params=84, trainable=84, param_bytes=336, memory=Memory(params=336)),
    warnings=(Problem("unused-input", "x is never read", severity="warning"),),
)
GOOD = to_json(REPORT)


def changed(edit: Any) -> str:
    """The good report's JSON with one edit applied, as text."""
    doc = copy.deepcopy(GOOD)
    edit(doc)
    return json.dumps(doc)


def put(where: str, value: Any) -> Any:
    """An edit setting ``where`` (``layers.1.param_count``) to ``value``."""

    def edit(doc: Any) -> None:
        *parents, last = where.split(".")
        for part in parents:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        doc[int(last) if isinstance(doc, list) else last] = value

    return edit


def bad_code(doc: Any) -> None:
    doc["errors"] = [dict(GOOD["warnings"][0], code="no-such-code", severity="error")]
    doc["ok"] = False


INT64_MAX = 2**63 - 1
REFUSED = [
    (changed(put("layers.1.param_count", "many")),
     '$.layers[1].param_count: expected an integer from 0 to 2**63 - 1, got "many"'),
    (json.dumps(GOOD).replace('"param_count": 84', '"param_count": 1' + "0" * 400),
     "$.layers[1].param_count: expected an integer from 0 to 2**63 - 1, got 100000000000… (401 digits)"),
    (changed(put("layers.1.param_count", INT64_MAX + 1)), "$.layers[1].param_count: expected an integer"),
    (changed(put("layers.1.param_count", -1)), "$.layers[1].param_count: expected an integer"),
    (changed(put("layers.1.output_shapes.0.0", 2.0)), "$.layers[1].output_shapes[0][0]: expected an integer from 0 to 2**63 - 1 or a string or null, got 2.0"),
    (changed(put("layers.1.depth", True)), "$.layers[1].depth: expected an integer from 0 to 2**63 - 1, got true"),
    (changed(put("totals.params", "84")), '$.totals.params: expected an integer from 0 to 2**63 - 1, got "84"'),
    (changed(put("totals.flops", float("nan"))), "$.totals.flops: expected an integer from 0 to 2**63 - 1 or null, got NaN"),
    (changed(put("inputs.0.shape.0", 0)), "$.inputs[0].shape[0]: expected an integer from 1 to 2**63 - 1 or a string, got 0"),
    (changed(put("inputs.0.dtype", "complex64")), '$.inputs[0].dtype: expected one of "float32"'),
    (changed(put("layers.1.status", "fine")), '$.layers[1].status: expected one of "ok", "failed", "not-run", got "fine"'),
    (changed(bad_code), '$.errors[0].code: expected one of "yaml-syntax"'),
    (changed(put("layers.1.colour", "red")), "$.layers[1].colour: unexpected key"),
    (changed(put("layers.1.\x1b[2J", 1)), r'$.layers[1]["\u001b[2J"]: unexpected key'),
    (changed(lambda doc: doc["totals"].pop("params")), '$.totals: missing key "params"'),
    (changed(put("layers", {})), "$.layers: expected an array, got an object"),
    (changed(put("layers.1.params.0.shape", [[[[[4]]]]])), "$.layers[1].params[0].shape[0]: expected an integer from 0 to 2**63 - 1 or a string or null, got an array"),
    (changed(put("name", json.loads("[" * 500 + "]" * 500))), "$.name: expected a string, got an array"),
    (changed(put("ok", False)), "$.ok: is false, but the rest of the document implies true"),
    (changed(put("totals.memory.training_peak", 336)), "$.totals.memory.training_peak: is 336, but the rest of the document implies null"),
    (changed(put("warnings.0.source", {"file": "a", "line": 0, "column": 0})), "$.warnings[0].source.line: expected an integer from 1 to 2**63 - 1 or null, got 0"),
    (changed(put("schema_version", 2)), "$.schema_version: expected 1, got 2"),
    (changed(put("schema_version", True)), "$.schema_version: expected 1, got true"),
    (changed(lambda doc: doc.pop("schema_version")), '$: missing key "schema_version"'),
    ("[1, 2]", "$: expected a shapecli report (an object), got an array"),
    ("{" + json.dumps(GOOD)[1:-1] + ', "name": "again"}', '$: the key "name" appears twice in one object'),
    ("[" * 100_000 + "]" * 100_000, "$[0][0][0][0][0][0]: nested deeper than 6 levels"),
    ('{"schema_version": 1, "name": ' + "[" * 100_000 + "]" * 100_000 + "}", "$.name[0][0][0][0][0]: nested deeper than 6 levels"),
    ('{"a": {"b c": [0, ' + "[" * 100_000 + "]" * 100_000 + "]}}", '$.a["b c"][1][0][0][0]: nested deeper than 6 levels'),
    ('{"schema_version": 1,', "$: not JSON: Expecting property name"),
    (json.dumps(GOOD).replace('"name": "mlp"', '"name": "\\ud800"'), '$.name: expected a string of characters, got "\\ud800"'),
]  # fmt: skip


@pytest.mark.parametrize(("text", "says"), REFUSED, ids=[s[:40] for _, s in REFUSED])
def test_a_document_that_is_not_a_report_is_refused_where_it_goes_wrong(
    text: str, says: str
) -> None:
    with pytest.raises(DecodeError) as refused:
        read_report(text)
    assert str(refused.value).startswith(says), str(refused.value)
    assert "\x1b" not in str(refused.value)


def test_the_good_document_is_a_report() -> None:
    assert read_report(json.dumps(GOOD)) == REPORT
    at_the_limit = changed(put("layers.1.param_count", INT64_MAX))
    assert read_report(at_the_limit).rows[1].param_count == INT64_MAX


def test_what_is_wrong_inside_an_optional_object_is_said_there() -> None:
    with pytest.raises(DecodeError, match=r'^\$\.warnings\[0\]\.source: missing key "line"$'):
        read_report(changed(put("warnings.0.source", {"file": "a", "column": 1})))


# -- the published schema says what the decoder checks -------------------------------------

VALIDATOR = jsonschema.Draft202012Validator(report_schema())
# What JSON Schema cannot say: that a derived key agrees with the rest, that a string
# holds no lone surrogate; and its "integer" is any number with no fraction, 2.0 too.
BEYOND_SCHEMA = (
    "$.ok:",
    "$.totals.memory.training_peak:",
    "$.layers[1].output_shapes[0][0]",
    "$.name: expected a string of characters",
)


@pytest.mark.slow
@given(REPORTS)
def test_every_report_written_validates_against_the_schema(report: Report) -> None:
    assert [e.message for e in VALIDATOR.iter_errors(to_json(report))] == []


@pytest.mark.parametrize(("text", "says"), REFUSED, ids=[s[:40] for _, s in REFUSED])
def test_the_schema_refuses_what_the_decoder_refuses(text: str, says: str) -> None:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return  # not JSON to a validator either
    if "appears twice" in says or says.startswith(BEYOND_SCHEMA):
        assert VALIDATOR.is_valid(document)
        return
    assert not VALIDATOR.is_valid(document)
