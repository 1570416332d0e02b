"""The numpydoc Parameters sections of the main classes name every constructor parameter with the
signature's default (or refer to NeuralNet's entry for it): help(NeuralNet) and the code cannot drift apart."""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from imgclf.ensemble import Ensemble
from imgclf.nn.convnet import ConvNet
from imgclf.nn.net import NeuralNet
from imgclf.nn.solver import Solver


def documented(cls) -> list[tuple[str, str | None]]:
    """(name, default text or None) per entry of the Parameters section; "a, b : ..." gives two entries."""
    doc = inspect.getdoc(cls) or ""
    section = re.search(r"^Parameters\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    assert section, f"{cls.__name__} has no Parameters section"
    out = []
    for line in section.group(1).splitlines():
        m = re.match(r"^(\w+(?:, \w+)*)(?: : (.*))?$", line)
        if m:
            default = re.search(r"default=(.*)$", m.group(2) or "")
            out += [(name, default.group(1) if default else None) for name in m.group(1).split(", ")]
        elif re.match(r"^\s+As in NeuralNet, with the same defaults", line):
            # the entries just listed take NeuralNet's documented defaults
            theirs = dict(documented(NeuralNet))
            out = [(name, theirs[name] if d is None and name in theirs else d) for name, d in out]
    return out


@pytest.mark.parametrize("cls", [NeuralNet, ConvNet, Solver, Ensemble])
def test_parameters_section_matches_the_signature(cls):
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    docs = documented(cls)
    assert sorted(name for name, _ in docs) == sorted(p.name for p in params)
    docs = dict(docs)
    for p in params:
        name, default = p.name, docs[p.name]
        if p.default is inspect.Parameter.empty:
            assert default is None, f"{name} has no default, the docstring says {default}"
        else:
            assert default is not None, f"{name}: the docstring gives no default"
            assert ast.literal_eval(default) == p.default, f"{name}: docstring {default}, signature {p.default!r}"
