"""What the libvirt host is asked for: the base image's source, the storage pool every volume
lives in, and the domain type."""

from __future__ import annotations

import posixpath
import re
from pathlib import PurePosixPath

from .exports import _within
from .model import ConfigError, ImageSettings, PoolSettings
from .names import _LIBVIRT_NAME
from .reader import _Section, _shown

DOMAIN_TYPES = ("kvm", "qemu")
_POOL_PATH_CHARACTERS = re.compile(r"^[A-Za-z0-9._/-]*$")
# What terraform-provider-libvirt v0.8.1 fetches a volume's source from (volume.go newImage):
# an http(s) URL, a file:// URL, or a path (relative: to the directory `pulumi` runs in).
_IMAGE_SOURCE = re.compile(r"^(https?://\S+|file:///\S*|(?![A-Za-z][A-Za-z0-9+.-]*:)\S+)$")


def _image(top: _Section, stack: str) -> ImageSettings:
    """`lvs:image`: a source the provider fetches, and the pool its volume goes in."""
    image_section = top.section("image")
    source = image_section.string("source")
    if not source.strip():
        raise ConfigError(f"{image_section.path('source')}: must not be empty")
    if source != source.strip() or not _IMAGE_SOURCE.match(source):
        raise ConfigError(
            f"{image_section.path('source')}: {_shown(source)} is not something the provider fetches "
            "(an http:// or https:// URL, a file:// URL or a path, without spaces around it)"
        )
    image = ImageSettings(source=source, pool=_pool(image_section, stack))
    image_section.reject_unknown()
    return image


def _pool(section: _Section, stack: str) -> PoolSettings:
    """An existing pool named by `pool`, or the `dir` pool the stack creates in `poolPath`."""
    existing = section.string("pool", None)
    raw_path = section.string("poolPath", None)
    if existing is not None:
        if not _LIBVIRT_NAME.fullmatch(existing):
            raise ConfigError(
                f"{section.path('pool')}: {_shown(existing)} is not a usable libvirt pool name "
                "(letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit)"
            )
        if raw_path is not None:
            raise ConfigError(
                f"{section.path('poolPath')}: {_shown(raw_path)} only applies to the pool the stack creates; "
                f"remove it, or remove {section.path('pool')} ({_shown(existing)}) to have the stack create its pool"
            )
        return PoolSettings(name=existing, path=None)
    created = f"{stack}-pool"
    if not _LIBVIRT_NAME.fullmatch(created):
        raise ConfigError(
            f"{section.path('pool')}: unset, and the pool the stack would create, {_shown(created)} (after the stack name), "
            "is not a usable libvirt pool name; name an existing pool, or use a shorter stack name"
        )
    value = f"/var/lib/libvirt/images/lvs-cluster-{stack}" if raw_path is None else raw_path
    if not value.startswith("/"):
        raise ConfigError(f"{section.path('poolPath')}: {_shown(value)} must be an absolute path")
    if not _POOL_PATH_CHARACTERS.fullmatch(value):
        raise ConfigError(f"{section.path('poolPath')}: {_shown(value)} has characters outside [A-Za-z0-9._/-]")
    # normpath keeps a leading `//` (POSIX leaves its meaning open): collapse runs of `/` first.
    normalised = posixpath.normpath(re.sub(r"/+", "/", value))
    if normalised == "/":
        raise ConfigError(f"{section.path('poolPath')}: {_shown(value)} is the root directory; the pool needs a directory of its own")
    if _within(PurePosixPath(normalised), "/root"):
        raise ConfigError(
            f"{section.path('poolPath')}: {_shown(value)} is under /root, which QEMU (running as libvirt-qemu) cannot enter: "
            "the domains would not start; use a directory under /var/lib/libvirt/images"
        )
    return PoolSettings(name=created, path=PurePosixPath(normalised))
