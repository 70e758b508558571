"""Property-based fuzzing of the user-facing inputs: arch dicts, pipeline configs and space kwargs.

Whatever comes in, only the library's own errors come out (`ArchError` for archs, `ConfigError` for configs and
space arguments), and their messages name the offending decision or key. Examples are derandomized so CI runs
the same cases every time.
"""

from __future__ import annotations

import typing
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supernet as sn
from supernet.config import PipelineConfig
from supernet.spaces import SPACES, build_space
from supernet.training import ConfigError
from tiny_spaces import TINY

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SPACE_CACHE: dict[str, sn.SuperModule] = {}


def small_space(name: str) -> sn.SuperModule:
    if name not in SPACE_CACHE:
        SPACE_CACHE[name] = build_space(name, **TINY[name])
    return SPACE_CACHE[name]


# --- values of every kind -----------------------------------------------------------------------------------------

small_ints = st.integers(-2, 6)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    small_ints,
    st.integers(-(10**6), 10**6),
    st.floats(-3, 8),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 2.0, 0.5]),
    st.text(alphabet="abcxyz_.:", max_size=4),
    st.sampled_from(["3", "1.5", "", "true", "none"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(alphabet="abc", max_size=3), inner, max_size=2),
    ),
    max_leaves=6,
)
arrays = st.one_of(
    st.lists(small_ints, max_size=3).map(np.array),
    st.lists(small_ints, max_size=3).map(torch.tensor),
    small_ints.map(np.int64),
    st.floats(-3, 8).map(np.float32),
)
anything = st.one_of(junk, arrays)


# --- (a) arch dicts against every ready space ---------------------------------------------------------------------


def plain(value: Any) -> Any:
    """The value an arch option stands for (numpy scalars and one-element arrays/tensors unwrapped)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


def is_allowed(value: Any, options: tuple[Any, ...]) -> bool:
    value = plain(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, str)):
        return False
    return any(type(o) is not bool and isinstance(o, str) == isinstance(value, str) and o == value for o in options)


MISSING = object()


@st.composite
def fuzzed_arch(draw: st.DrawFn, name: str) -> dict[Any, Any]:
    space = small_space(name)
    arch: dict[Any, Any] = {}
    for decision, options in space.choices.items():
        valid = st.sampled_from(options)
        wrapped = valid.flatmap(
            lambda o: st.sampled_from(
                [o, np.array([o]), np.array(o)] + ([np.int64(o), torch.tensor(o), torch.tensor([o])]
                                                   if isinstance(o, int) else [])
            )
        )
        value = draw(st.one_of(valid, wrapped, anything, st.just(MISSING)) if draw(st.integers(0, 5)) == 0
                     else st.one_of(valid, wrapped))
        if value is not MISSING:
            arch[decision] = value
    extra = draw(st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-3, 3), st.none()), anything, max_size=1))
    for key, value in extra.items():
        if key in space.choices:
            continue
        if draw(st.booleans()):
            arch = {key: value, **arch}
        else:
            arch[key] = value
    return arch


def expected_error(space: sn.SuperModule, arch: dict[Any, Any]) -> tuple[type[Exception], str] | None:
    """What `validate` must raise (the error class and the decision it names), or None for a valid arch."""
    for key in arch:
        if not isinstance(key, str) or key not in space.choices:
            return sn.UnknownDecisionError, repr(key)
    for decision, options in space.choices.items():
        if decision not in arch:
            return sn.MissingDecisionError, repr(decision)
        if not is_allowed(arch[decision], options):
            return sn.InvalidOptionError, repr(decision)
    return None


@pytest.mark.parametrize("name", sorted(SPACES))
def test_fuzzed_archs_raise_only_arch_errors_naming_the_decision(name: str) -> None:
    space = small_space(name)

    @FUZZ
    @given(arch=fuzzed_arch(name))
    def check(arch: dict[Any, Any]) -> None:
        before = space.arch
        expected = expected_error(space, arch)
        if expected is None:
            got = space.validate(arch)
            assert list(got) == list(space.choices)
            assert all(type(v) in (int, float, str) and v == plain(arch[k]) for k, v in got.items())
            assert space.validate(got) == got
            space.set_arch(arch)
            assert space.arch == got
            space.set_arch(before)
            return
        cls, named = expected
        with pytest.raises(sn.ArchError) as err:
            space.set_arch(arch)
        assert type(err.value) is cls, (arch, err.value)
        assert named in str(err.value), (arch, str(err.value))
        assert space.arch == before  # nothing changes on error

    check()


@FUZZ
@given(arch=st.one_of(junk.filter(lambda v: not isinstance(v, dict)), arrays))
def test_non_mappings_are_arch_errors(arch: Any) -> None:
    with pytest.raises(sn.ArchError, match="an arch must be a dict"):
        small_space("gpt").validate(arch)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_valid_archs_round_trip(name: str) -> None:
    space = small_space(name)
    archs = st.fixed_dictionaries({d: st.sampled_from(o) for d, o in space.choices.items()})

    @settings(FUZZ, max_examples=20)
    @given(arch=archs)
    def check(arch: dict[str, Any]) -> None:
        assert space.validate(arch) == arch
        assert space.validate(space.validate(arch)) == arch

    check()


# --- (b) pipeline configs -----------------------------------------------------------------------------------------

SECTIONS = {name: field.annotation for name, field in PipelineConfig.model_fields.items()}
SAFE_SPACE_NAMES = ["gpt", "nb201", "resnet", "", ":", "a:", ":b", "no_such_module_xyz:f", "json:dumps", "math:pi",
                    "supernet.spaces:gpt", "supernet.spaces:nope", "1bad:x"]


def _is_number(annotation: Any) -> bool:
    while typing.get_origin(annotation) in (typing.Union, type(int | None)) or typing.get_origin(
        annotation
    ) is typing.Annotated:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0]
    return annotation in (int, float)


@st.composite
def fuzzed_config(draw: st.DrawFn) -> tuple[dict[str, Any], str, str | None, Any]:
    section = draw(st.sampled_from([*SECTIONS, "bogus"]))
    model = SECTIONS.get(section)
    if model is None or not hasattr(model, "model_fields") or draw(st.integers(0, 9)) == 0:
        value = draw(anything) if section != "space" else draw(st.sampled_from([None, 3, "gpt", [1]]))
        return {section: value}, section, None, value
    key = draw(st.sampled_from([*model.model_fields, "bogus_key"]))
    if section == "space" and key == "name":
        value = draw(st.sampled_from(SAFE_SPACE_NAMES))
    elif section == "space" and key == "kwargs":
        value = draw(st.dictionaries(st.sampled_from([*TINY["gpt"], "n_layer"]), anything, max_size=3))
    else:
        value = draw(anything)
    return {section: {key: value}}, section, key, value


@FUZZ
@given(case=fuzzed_config())
def test_fuzzed_configs_raise_only_config_errors_naming_the_key(case: tuple) -> None:
    data, section, key, value = case
    try:
        PipelineConfig.from_dict(data)
    except ConfigError as err:
        msg = str(err)
        if key is None:
            assert f"'{section}" in msg, (data, msg)
        else:  # a field's own error, or the section's cross-field check naming the key (min_lr > lr)
            assert f"'{section}.{key}" in msg or (f"'{section}'" in msg and key in msg), (data, msg)
    else:
        if key is not None and isinstance(value, bool):
            annotation = SECTIONS[section].model_fields.get(key)
            assert annotation is None or not _is_number(annotation.annotation), data


@FUZZ
@given(data=st.one_of(anything, st.dictionaries(st.text(max_size=5), anything, max_size=3)))
def test_arbitrary_top_level_data_gives_config_errors(data: Any) -> None:
    if isinstance(data, dict):
        data.pop("space", None)  # a fuzzed space name could import an arbitrary module
    try:
        PipelineConfig.from_dict(data)
    except ConfigError:
        pass


# --- (b) build_space with fuzzed kwargs ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors:UserWarning")
@pytest.mark.parametrize("name", sorted(SPACES))
def test_fuzzed_space_kwargs_raise_only_config_errors_naming_the_key(name: str) -> None:
    keys = [*TINY[name], "bogus"]
    size_lists = st.lists(small_ints, max_size=3)
    plausible = st.one_of(small_ints, size_lists, st.lists(st.floats(0.5, 4), max_size=3), st.floats(0.5, 4))
    values = st.one_of(plausible, plausible, anything, st.lists(size_lists, max_size=2))

    @settings(FUZZ, max_examples=40)
    @given(key=st.sampled_from(keys), value=values)
    def check(key: str, value: Any) -> None:
        kwargs = {**TINY[name], key: value}
        try:
            space = build_space(name, **kwargs)
        except ConfigError as err:  # SpaceError; UnknownSpaceError is never expected here
            msg = str(err)
            assert msg.startswith(f"space {name!r}"), msg
            assert repr(key) in msg or f"{key}=" in msg, msg
        else:
            assert isinstance(space, sn.SuperModule)
            assert space.spec["space"] == name

    check()
