"""Pulumi components of lvs-cluster: one idea each, wired together by ``__main__.py``."""
