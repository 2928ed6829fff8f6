"""Motifs: analytical columns computed over the aggregated result."""

from __future__ import annotations

from typing import Any

from quarry.semantic.errors import SemanticError


def apply_motif(compiler: Any, final: Any, groups: Any, measures: Any) -> Any:
    raise SemanticError(f"unknown motif '{compiler.query.motif}'")
