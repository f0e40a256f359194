"""Tests for simulator.vocabulary.errors: the one exception tree of the project."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

from simulator.vocabulary import errors
from simulator.vocabulary.errors import B2BSimError, CertificatePinError, ConfigError

PACKAGES = ("simulator", "ka_producer", "icc_bridge", "supplier_stub")


def project_modules() -> list[ModuleType]:
    """Every module of the project's packages, imported."""
    out = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        out.append(package)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            out.append(importlib.import_module(info.name))
    return out


def exception_classes(module: ModuleType) -> list[type[BaseException]]:
    """The exception classes ``module`` defines, at top level or nested in its classes."""
    found: list[type[BaseException]] = []
    todo = [obj for obj in vars(module).values() if inspect.isclass(obj)]
    while todo:
        cls = todo.pop()
        if cls.__module__ != module.__name__:
            continue
        if issubclass(cls, BaseException):
            found.append(cls)
        todo += [obj for obj in vars(cls).values() if inspect.isclass(obj)]
    return found


ERROR_CLASSES = sorted(exception_classes(errors), key=lambda c: c.__name__)


class TestOneTree:
    def test_every_exception_class_of_the_project_is_in_errors(self) -> None:
        """No module but simulator.vocabulary.errors defines an exception class."""
        elsewhere = {
            f"{module.__name__}.{cls.__qualname__}"
            for module in project_modules()
            if module is not errors
            for cls in exception_classes(module)
        }
        assert elsewhere == set()

    def test_the_module_scan_finds_the_tree(self) -> None:
        """The scan above sees classes: it finds every class of errors itself."""
        found = set(exception_classes(errors))
        assert {B2BSimError, ConfigError, CertificatePinError} <= found
        assert len(found) > 30

    @pytest.mark.parametrize("cls", ERROR_CLASSES, ids=[c.__name__ for c in ERROR_CLASSES])
    def test_every_class_is_a_b2bsim_error_with_a_code(self, cls: type[BaseException]) -> None:
        """Each class derives from B2BSimError and has a stable upper-case code."""
        assert issubclass(cls, B2BSimError)
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", cls.code)

    def test_one_line_names_the_code(self) -> None:
        """An error reads as one line: its code, what was wrong, what to do."""
        exc = ConfigError("no such file", hint="pass --state")
        assert exc.one_line() == "error [CONFIG]: no such file — pass --state"
