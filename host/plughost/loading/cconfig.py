"""Configuration trees handed to plugins: YAML (or plain Python values) copied into C.

Plugins read them through the typed getters of the host table; the tree remembers the
file, line and key path of every value so that a wrong value is reported precisely.
"""

from __future__ import annotations

from typing import Any

import yaml

from .runtime import Runtime

_YAML_INT = "tag:yaml.org,2002:int"
_YAML_FLOAT = "tag:yaml.org,2002:float"
_YAML_BOOL = "tag:yaml.org,2002:bool"
_YAML_NULL = "tag:yaml.org,2002:null"


class ConfigTree:
    """A C configuration tree, freed when this object is closed or collected.

    ``value`` is a mapping of plain Python values, or a ``yaml.MappingNode`` (from
    ``yaml.compose``), which also carries line numbers. ``path`` is the key path of the
    root as the user wrote it (``middlewares.Limiter.config``), ``source`` the file.
    """

    def __init__(
        self,
        runtime: Runtime,
        host_ptr: Any,
        value: Any,
        *,
        label: str,
        path: str = "config",
        source: str | None = None,
    ) -> None:
        self._rt = runtime
        ffi, lib = runtime.ffi, runtime.lib
        line = _line_of(value)
        root = lib.rt_config_new_root(
            host_ptr, label.encode(), _c(ffi, source), path.encode(), line
        )
        if root == ffi.NULL:
            raise MemoryError("cannot allocate a configuration tree")
        self.ptr = root
        try:
            if value is None or (isinstance(value, yaml.ScalarNode) and value.tag == _YAML_NULL):
                return
            if isinstance(value, yaml.MappingNode):
                for key_node, child in value.value:
                    self._add(root, str(key_node.value), child, _line_of(key_node))
            elif isinstance(value, dict):
                for key, child in value.items():
                    self._add(root, str(key), child)
            else:
                raise TypeError(f"{path} must be a map of options, got {type(value).__name__}")
        except BaseException:
            self.close()
            raise

    def _add(self, parent: Any, key: str | None, value: Any, line: int = 0) -> None:
        """Adds ``value`` under ``key`` (None in lists); ``line`` is where the key was
        written (a YAML map entry), else where the value starts."""
        ffi, lib = self._rt.ffi, self._rt.lib
        ckey = key.encode() if key is not None else ffi.NULL
        line = line or _line_of(value)
        if isinstance(value, yaml.Node):
            value = _plain_or_node(value)
        if isinstance(value, (yaml.MappingNode, dict)):
            node = _added(ffi, lib.rt_config_add(parent, ckey, lib.PH_CONFIG_MAP, line))
            items = (
                ((str(k.value), v, _line_of(k)) for k, v in value.value)
                if isinstance(value, yaml.MappingNode)
                else ((str(k), v, 0) for k, v in value.items())
            )
            for k, v, key_line in items:
                self._add(node, k, v, key_line)
        elif isinstance(value, (yaml.SequenceNode, list, tuple)):
            node = _added(ffi, lib.rt_config_add(parent, ckey, lib.PH_CONFIG_LIST, line))
            for v in value.value if isinstance(value, yaml.SequenceNode) else value:
                self._add(node, None, v)
        else:
            node = _added(ffi, lib.rt_config_add(parent, ckey, lib.PH_CONFIG_NULL, line))
            _set_scalar(self._rt, node, value)

    @property
    def error(self) -> str | None:
        """The error a plugin (or a getter) recorded on this tree, if any."""
        return self._rt.string(self._rt.lib.rt_config_error(self.ptr))

    def clear_error(self) -> None:
        self._rt.lib.rt_config_clear_error(self.ptr)

    def set_plugin_state(self, state: Any) -> None:
        self._rt.lib.rt_config_set_plugin_state(self.ptr, state)

    def set_owner(self, plugin: str, instance: str = "") -> None:
        """Names the plugin and the instance ("": the plugin's own config) the tree belongs
        to: the metrics it declares are labelled with them."""
        self._rt.lib.rt_config_set_owner(self.ptr, plugin.encode(), instance.encode())

    @property
    def storage_may_block(self) -> bool:
        """Whether a storage the create hook looked up through this tree may block."""
        return bool(self._rt.lib.rt_config_storage_may_block(self.ptr))

    @property
    def single_headers(self) -> frozenset[bytes]:
        """The header names (lower case) the create hook declared it reads as an identity
        (ph_require_single_header): requests must carry each at most once."""
        text = self._rt.ffi.string(self._rt.lib.rt_config_single_headers(self.ptr))
        return frozenset(text.split(b"\n")) - {b""}

    def close(self) -> None:
        """Frees the C tree. Only after every hook that may read it has returned."""
        if self.ptr is not None:
            self._rt.lib.rt_config_free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        self.close()


def _added(ffi: Any, node: Any) -> Any:
    """``node`` from rt_config_add, checked before anything is added below it."""
    if node == ffi.NULL:
        raise MemoryError("the host is out of memory building a plugin's configuration")
    return node


def _c(ffi: Any, text: str | None) -> Any:
    return text.encode() if text is not None else ffi.NULL


def _line_of(value: Any) -> int:
    return value.start_mark.line + 1 if isinstance(value, yaml.Node) else 0


def _plain_or_node(node: yaml.Node) -> Any:
    """Collections stay nodes (for their lines); scalars become (kind, python value, text)."""
    if isinstance(node, yaml.ScalarNode):
        text = node.value
        if node.tag == _YAML_NULL:
            return None
        if node.tag == _YAML_BOOL:
            return _Scalar(yaml.safe_load(text), text)
        if node.tag == _YAML_INT:
            return _Scalar(int(yaml.safe_load(text)), text)
        if node.tag == _YAML_FLOAT:
            return _Scalar(float(yaml.safe_load(text)), text)
        return text
    return node


class _Scalar:
    """A typed YAML scalar with the text the user wrote."""

    def __init__(self, value: Any, text: str) -> None:
        self.value = value
        self.text = text


def _set_scalar(rt: Runtime, node: Any, value: Any) -> None:
    lib = rt.lib
    text = None
    if isinstance(value, _Scalar):
        value, text = value.value, value.text
    if value is None:
        lib.rt_config_set_kind(node, lib.PH_CONFIG_NULL)
    elif isinstance(value, bool):
        lib.rt_config_set_bool(node, int(value), (text or str(value).lower()).encode())
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            lib.rt_config_set_string(node, (text or str(value)).encode())
        else:
            lib.rt_config_set_int(node, value, (text or str(value)).encode())
    elif isinstance(value, float):
        lib.rt_config_set_float(node, value, (text or repr(value)).encode())
    else:
        lib.rt_config_set_string(node, str(value).encode("utf-8", "surrogateescape"))
