"""Python elements declared in the configuration: ``- module: acme.gateway_elements``.

The module declares its types as a native plugin does, in a :class:`PythonPlugin` named
``PLUGHOST_PLUGIN``::

    from plughost.sdk import Option, PythonMiddleware, PythonPlugin

    class Tenant(PythonMiddleware):
        \"\"\"Copies the tenant from the host name into a header.\"\"\"
        options = (Option("header", "string", default="X-Tenant",
                          description="the request header to set"),)

        def __init__(self, config):          # the checked options, defaults filled in
            self.header = config["header"]

        def on_request(self, ex):
            host = ex.request_header("host") or ""
            ex.set_request_header(self.header, host.split(".")[0])

    PLUGHOST_PLUGIN = PythonPlugin("acme", version="1.0.0", middlewares=[Tenant])

and the configuration lists it and uses its types by id, like any plugin's::

    plugins:
      - module: acme.gateway_elements
    middlewares:
      Tenant:
        use: plugins.acme.middlewares.Tenant
        config: {header: X-Org}

A type's id is ``plugins.<plugin name>.<kind>s.<type_name or class name>``. Its options
(:class:`~plughost.config.options.Option`) are checked like a native type's; the class is
created with ``cls(config)``, ``config`` holding the options as Python values (durations in
seconds, sizes in bytes, every default filled in), or the config as written when the type
declares no options. The module is imported from ``sys.path`` and the configuration's folder.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config.options import KINDS, Option
from .pyelements import PythonAction, PythonMiddleware

ATTRIBUTE = "PLUGHOST_PLUGIN"


@dataclass
class PythonPlugin:
    """What a Python module declares: its name (the ``<plugin>`` of its type ids), its
    middleware and action classes, and the options of its own ``config:`` (``init`` is
    called with them, checked and typed, once per gateway)."""

    name: str
    version: str = ""
    description: str = ""
    middlewares: Sequence[type[PythonMiddleware]] = ()
    actions: Sequence[type[PythonAction]] = ()
    options: tuple[Option, ...] | None = None
    init: Callable[[dict[str, Any]], None] | None = None


class ModuleError(Exception):
    """A module that cannot serve as a plugin; the message says why and what to do."""


@dataclass
class PythonType:
    """A middleware or action type a Python module declares."""

    kind: str  # "middleware" or "action"
    id: str
    cls: type
    description: str
    options: tuple[Option, ...] | None


@dataclass
class LoadedModule:
    """A Python module's plugin, shaped like a loaded native plugin for describe/schema."""

    module: str
    declared: PythonPlugin
    middlewares: dict[str, PythonType] = field(default_factory=dict)
    actions: dict[str, PythonType] = field(default_factory=dict)
    storages: dict[str, PythonType] = field(default_factory=dict)  # always empty

    @property
    def name(self) -> str:
        return self.declared.name

    @property
    def version(self) -> str:
        return self.declared.version

    @property
    def description(self) -> str:
        return self.declared.description

    @property
    def options(self) -> tuple[Option, ...] | None:
        return self.declared.options

    @property
    def path(self) -> str:
        return f"module:{self.module}"

    abi = None  # a Python module has no ABI

    @property
    def types(self) -> dict[str, PythonType]:
        return {**self.middlewares, **self.actions}


def load_module(module: str, search_dir: Path | None = None) -> LoadedModule:
    """Imports ``module`` (from ``sys.path``, then ``search_dir``) and reads its plugin."""
    added = search_dir is not None and str(search_dir) not in sys.path
    if added:
        sys.path.append(str(search_dir))
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise ModuleError(
                f"there is no Python module '{module}': install it, or put it "
                "on PYTHONPATH or in the configuration's folder"
            ) from None
        raise ModuleError(f"importing Python module '{module}' failed: {_where(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the module's own code failed
        raise ModuleError(f"importing Python module '{module}' failed: {_where(exc)}") from None
    finally:
        if added:
            sys.path.remove(str(search_dir))
    declared = getattr(mod, ATTRIBUTE, None)
    if not isinstance(declared, PythonPlugin):
        raise ModuleError(
            f"Python module '{module}' declares no plugin: define {ATTRIBUTE} = "
            "PythonPlugin(name, middlewares=[...], actions=[...]) in it"
        )
    if (
        not declared.name
        or not declared.name.replace("_", "a").isalnum()
        or not declared.name[0].isalpha()
        or declared.name != declared.name.lower()
    ):
        raise ModuleError(
            f"Python module '{module}': plugin name {declared.name!r} is not [a-z][a-z0-9_]*"
        )
    _check_declared(declared.options, f"Python module '{module}'")
    loaded = LoadedModule(module, declared)
    for kind, classes, base, into in (
        ("middleware", declared.middlewares, PythonMiddleware, loaded.middlewares),
        ("action", declared.actions, PythonAction, loaded.actions),
    ):
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise ModuleError(
                    f"Python module '{module}': {kind}s must be subclasses of "
                    f"{base.__name__}, not {cls!r}"
                )
            name = getattr(cls, "type_name", None) or cls.__name__
            type_id = f"plugins.{declared.name}.{kind}s.{name}"
            if type_id in loaded.types:
                raise ModuleError(f"Python module '{module}' declares {type_id} twice")
            _check_declared(getattr(cls, "options", None), f"{module}: {type_id}")
            doc = (cls.__doc__ or "").strip().splitlines()
            into[type_id] = PythonType(
                kind,
                type_id,
                cls,
                getattr(cls, "description", "") or (doc[0] if doc else ""),
                getattr(cls, "options", None),
            )
    return loaded


def _check_declared(options: Any, where: str) -> None:
    """A module's option declarations are the host's own Option objects, of known kinds."""
    if options is None:
        return
    if not isinstance(options, (tuple, list)) or not all(isinstance(o, Option) for o in options):
        raise ModuleError(f"{where}: options must be a tuple of plughost.sdk.Option")
    for option in options:
        if option.kind not in KINDS.values():
            raise ModuleError(
                f"{where}: option '{option.name}' has kind {option.kind!r}, not "
                f"one of {', '.join(KINDS.values())}"
            )
        if (option.kind == "enum" or option.items == "enum") and not option.choices:
            raise ModuleError(f"{where}: option '{option.name}' is an enum without choices")
        if option.fields is not None:
            _check_declared(tuple(option.fields), f"{where}: {option.name}")


def create_element(ptype: PythonType, config: Any) -> PythonMiddleware | PythonAction:
    """``ptype.cls(config)``; a ModuleError with the exception when the class refuses."""
    try:
        obj = ptype.cls(config)
    except Exception as exc:  # noqa: BLE001 - the element's own code failed
        raise ModuleError(f"{ptype.id} refused its configuration: {_where(exc)}") from None
    return obj


def _where(exc: BaseException) -> str:
    """``ValueError: bad port (elements.py:12)``: the exception and the last frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{place}"
