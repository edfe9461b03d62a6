"""Cloud-init documents as data.

Templates under ``cloud-init/`` are YAML documents. They are parsed first, and only their
string scalars are templated, so a value can never change the document's structure:

* a scalar that is exactly ``{{ expression }}`` becomes the expression's value (a list stays
  a list, a number a number);
* any other scalar containing ``{{`` or ``{%`` is rendered as Jinja2 text (file contents);
* a list item ``{for_each: "x in xs", item: {...}}`` repeats ``item`` once per element.

Each role's template is merged onto ``base.yaml`` (mappings merge, lists concatenate) and the
result is written with PyYAML.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import yaml

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "cloud-init"
BASE_TEMPLATE = "base.yaml"

_EXPRESSION = re.compile(r"^\{\{\s*(?P<expr>[^{}]+?)\s*\}\}$")
_FOR_EACH = re.compile(r"^\s*(?P<var>[A-Za-z_]\w*)\s+in\s+(?P<expr>.+?)\s*$")
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,  # renders config files and shell; the one HTML page escapes with `| e` itself
)


class TemplateError(ValueError):
    """A template refers to something the context lacks, or is malformed."""


def _plain(value: Any) -> Any:
    """YAML-safe Python values: addresses and paths become strings."""
    if isinstance(value, (IPv4Address, IPv4Network, IPv4Interface, PurePosixPath)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _render_scalar(text: str, context: Mapping[str, Any]) -> Any:
    try:
        whole = _EXPRESSION.match(text)
        if whole:
            value = _ENV.compile_expression(whole["expr"], undefined_to_none=False)(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return _plain(value)
        if "{{" in text or "{%" in text:
            return _ENV.from_string(text).render(**context)
    except jinja2.TemplateError as error:
        raise TemplateError(f"{error} in {text!r}") from error
    return text


def _render(node: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(node, str):
        return _render_scalar(node, context)
    if isinstance(node, Mapping):
        return {key: _render(value, context) for key, value in node.items()}
    if isinstance(node, list):
        rendered: list[Any] = []
        for item in node:
            if isinstance(item, Mapping) and "for_each" in item:
                rendered.extend(_expand(item, context))
            else:
                rendered.append(_render(item, context))
        return rendered
    return node


def _expand(loop: Mapping[str, Any], context: Mapping[str, Any]) -> list[Any]:
    spec = _FOR_EACH.match(str(loop["for_each"]))
    if not spec or set(loop) != {"for_each", "item"}:
        raise TemplateError(f"malformed for_each {dict(loop)!r}: write {{for_each: 'x in xs', item: ...}}")
    values = _render_scalar("{{ " + spec["expr"] + " }}", context)
    return [_render(loop["item"], {**context, spec["var"]: value}) for value in values]


def merge(base: Any, overlay: Any) -> Any:
    """Mappings merge key by key, lists concatenate, anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(overlay, Mapping):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(overlay, list):
        return [*base, *overlay]
    return overlay


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (file contents) as literal blocks, as a person would write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _represent_str)


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_ReadableDumper, sort_keys=False, default_flow_style=False, width=1000)


def load_template(name: str) -> Any:
    with (TEMPLATE_DIR / name).open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def render_template(name: str, context: Mapping[str, Any]) -> dict[str, Any]:
    document = _render(load_template(name), _plain(context))
    if not isinstance(document, dict):
        raise TemplateError(f"{name} does not render to a mapping")
    return document


def user_data(role_template: str, context: Mapping[str, Any], *, overlays: Sequence[str] = ()) -> str:
    """The `#cloud-config` user-data of one node: base.yaml plus its role's template, plus
    each overlay in order (a variant of the role, such as a web node that holds the VIP)."""
    document = merge(render_template(BASE_TEMPLATE, context), render_template(role_template, context))
    for overlay in overlays:
        document = merge(document, render_template(overlay, context))
    return "#cloud-config\n" + dump(document)


@dataclass(frozen=True)
class NicSpec:
    """One guest NIC: which network, its MAC, its name in the guest, and its address."""

    network: str  # "internal" or "external"
    name: str
    mac: str
    interface: IPv4Interface
    gateway: IPv4Address | None = None


def network_config(nics: Sequence[NicSpec]) -> str:
    """Network-config v2: static addresses on NICs matched by MAC and renamed predictably."""
    ethernets: dict[str, Any] = {}
    for nic in nics:
        ethernet: dict[str, Any] = {
            "match": {"macaddress": nic.mac},
            "set-name": nic.name,
            "addresses": [str(nic.interface)],
        }
        if nic.gateway is not None:
            # Debian 12's cloud-init (22.4) rejects `to: default`; spell the default route out.
            ethernet["routes"] = [{"to": "0.0.0.0/0", "via": str(nic.gateway)}]
        ethernets[nic.name] = ethernet
    return dump({"version": 2, "ethernets": ethernets})


def meta_data(domain_name: str, hostname: str, *documents: str) -> str:
    """NoCloud meta-data. The instance-id follows the documents, so a changed user-data
    re-runs cloud-init even when the root volume is kept."""
    digest = hashlib.sha256("\0".join(documents).encode()).hexdigest()[:12]
    return dump({"instance-id": f"{domain_name}-{digest}", "local-hostname": hostname})
