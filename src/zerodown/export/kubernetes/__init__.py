"""Kubernetes + Argo Rollouts as an export target: `zerodown export kubernetes`.

`export(spec, options)` is pure: it returns the objects (Rollout, Services, Ingress,
AnalysisTemplates, the migration Job) and a Note for everything of the spec that does not carry
over as it is; `to_yaml` renders a file. docs/kubernetes.md has the mapping, field by field.
"""

from zerodown.export.kubernetes.coverage import FIELDS, Maps, Reported
from zerodown.export.kubernetes.export import export
from zerodown.export.kubernetes.model import (
    DEFAULT_PROMETHEUS,
    Bundle,
    ExportOptions,
    Manifest,
    MigrationFile,
    Note,
    Traffic,
)
from zerodown.export.kubernetes.render import to_yaml

__all__ = [
    "DEFAULT_PROMETHEUS",
    "FIELDS",
    "Bundle",
    "ExportOptions",
    "Manifest",
    "Maps",
    "MigrationFile",
    "Note",
    "Reported",
    "Traffic",
    "export",
    "to_yaml",
]
