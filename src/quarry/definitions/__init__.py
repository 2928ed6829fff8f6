"""Typed models of the Oxy workspace formats, their parser, and reference checks.

Pure: nothing here performs I/O (enforced by import-linter), so the compiler and
the runtime can both use it, and tests need no services.
"""

from quarry.definitions.kinds import Kind, classify_path, definition_name
from quarry.definitions.models.config import config_names, dataset_dirs
from quarry.definitions.parse import ParsedDefinition, load_model, parse_definition
from quarry.definitions.references import Ref, ReferenceIndex, RefKind, check_references

__all__ = [
    "Kind",
    "ParsedDefinition",
    "Ref",
    "RefKind",
    "ReferenceIndex",
    "check_references",
    "classify_path",
    "config_names",
    "dataset_dirs",
    "definition_name",
    "load_model",
    "parse_definition",
]
