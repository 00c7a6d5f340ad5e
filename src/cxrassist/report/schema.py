"""The versioned JSON schema of ``report.json`` and a small validator for it.

The schema is standard JSON Schema (draft 2020-12 keywords only), so other tools can check reports with it; the
validator below implements just the keywords the schema uses, which keeps ``jsonschema`` out of the dependencies.
Bump ``SCHEMA_VERSION`` (major for breaking changes) whenever the shape changes, and update docs/report-schema.md.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = "1.7"

_PROB = {"type": "number", "minimum": 0, "maximum": 1}
_PATH = {"type": ["string", "null"]}  # relative to the report folder; null when that format was not requested
_STR_OR_NULL = {"type": ["string", "null"]}

_SUMMARY = {
    "type": "object",
    "required": ["source_format", "view", "height", "width"],
    "properties": {
        "source_format": {"type": "string"},
        "modality": _STR_OR_NULL,
        "view": {"type": "string", "enum": ["PA", "AP", "LATERAL", "UNKNOWN"]},
        "height": {"type": "integer", "minimum": 1},
        "width": {"type": "integer", "minimum": 1},
        "pixel_spacing_mm": {"type": ["array", "null"], "items": {"type": "number"}},
        "study_uid": _STR_OR_NULL,
    },
}

_NUM_OR_NULL = {"type": ["number", "null"]}
_WINDOW = {  # 1.5: a picture's linear display window [low, high] -> black..white, in the radiograph's [0, 1] units
    "type": "object",
    "required": ["low", "high", "units", "method"],
    "properties": {
        "low": {"type": "number"},
        "high": {"type": "number"},
        "units": {"type": "string"},
        "method": {"type": "string"},
    },
    "additionalProperties": False,
}
_MEASURED = {  # 1.2: how well a label was measured (its model card's operating point), null when never measured
    "anyOf": [
        {"type": "null"},
        {
            "type": "object",
            "required": ["auroc", "auroc_ci95", "sensitivity", "specificity", "n_pos", "n", "measured_on"],
            "properties": {
                "auroc": _NUM_OR_NULL,
                "auroc_ci95": {"type": ["array", "null"], "items": _NUM_OR_NULL},
                "sensitivity": _NUM_OR_NULL,
                "specificity": _NUM_OR_NULL,
                "n_pos": {"type": ["integer", "null"]},
                "n": {"type": ["integer", "null"]},
                "measured_on": _STR_OR_NULL,
                "threshold_rule": _STR_OR_NULL,
                "chosen_on": _STR_OR_NULL,
                "ece_raw": _NUM_OR_NULL,
                "ece_calibrated": _NUM_OR_NULL,
                "teacher_auroc": _NUM_OR_NULL,
                "teacher_set": _STR_OR_NULL,
            },
            "additionalProperties": False,
        },
    ],
}

_FINDING = {
    "type": "object",
    "required": ["code", "name", "probability", "threshold", "positive", "validated", "heatmap", "heatmap_map"],
    "properties": {
        "code": {"type": "string"},
        "name": {"type": "string"},
        "probability": _PROB,
        "threshold": _PROB,
        "positive": {"type": "boolean"},
        "validated": {"type": "boolean"},
        "measured": _MEASURED,
        "threshold_measured": {"type": "boolean"},  # 1.4
        "validation_note": _STR_OR_NULL,  # 1.4: why not validated (null when validated)
        "critical": {"type": "boolean"},
        "heatmap": _PATH,
        "heatmap_map": _PATH,
        "heatmap_lateral": _PATH,
        "heatmap_empty": {"type": "boolean"},  # 1.4: the map is constant (nothing to show)
        "method": _STR_OR_NULL,  # 1.7: how the score was made when not by the classifier (a measurement)
    },
    "additionalProperties": False,
}

_MODEL = {
    "type": "object",
    "required": ["role", "name", "version", "status", "sha256", "metrics"],
    "properties": {
        "role": {"type": "string", "enum": ["lung", "bone", "classifier", "triage", "heart"]},
        "name": {"type": "string"},
        "version": {"type": "string"},
        "architecture": {"type": "string"},
        "sha256": _STR_OR_NULL,
        "status": {"type": "string", "enum": ["trained", "untrained"]},
        "metrics": {"type": "object"},
        "intended_use": _STR_OR_NULL,
        "date": _STR_OR_NULL,
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://cxrassist.invalid/report-schema/{SCHEMA_VERSION}",
    "title": "cxrassist analysis report",
    "type": "object",
    "required": [
        "schema_version",
        "generator",
        "created",
        "disclaimer",
        "untrained",
        "forced",
        "warnings",
        "chest_check",
        "input",
        "triage",
        "findings",
        "lung",
        "bone",
        "images",
        "models",
        "timings_ms",
        "outputs",
    ],
    "properties": {
        "schema_version": {"type": "string", "const": SCHEMA_VERSION},
        "generator": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "created": {"type": "string"},
        "disclaimer": {"type": "string", "minLength": 1},
        "untrained": {"type": "boolean"},
        "forced": {"type": "boolean"},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "impression": {"type": "string", "minLength": 1},  # 1.4: plain text for the reader's report
        "ood": {  # 1.3: the out-of-distribution gate's verdict (null when the weights have no gate)
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["score", "threshold", "passed"],
                    "properties": {
                        "score": {"type": "number", "minimum": 0},
                        "threshold": {"type": "number", "minimum": 0},
                        "passed": {"type": "boolean"},
                        "gate": {"type": "object"},
                        "view": {  # gates >= 1.1: the view head (lateral / rotated / cropped / inverted films)
                            "type": "object",
                            "required": ["score", "threshold", "passed"],
                            "properties": {
                                "score": {"type": "number", "minimum": 0, "maximum": 1},
                                "threshold": {"type": "number"},
                                "passed": {"type": "boolean"},
                            },
                        },
                    },
                },
            ],
        },
        "chest_check": {
            "type": "object",
            "required": ["is_chest", "is_frontal", "reason"],
            "properties": {
                "is_chest": {"type": "boolean"},
                "is_frontal": {"type": ["boolean", "null"]},
                "reason": {"type": "string"},
            },
        },
        "input": {
            "type": "object",
            "required": ["frontal", "lateral"],
            "properties": {"frontal": _SUMMARY, "lateral": {"anyOf": [_SUMMARY, {"type": "null"}]}},
        },
        "triage": {
            "type": "object",
            "required": ["abnormal_probability", "threshold", "priority", "priority_score", "critical_findings"],
            "properties": {
                "abnormal_probability": _PROB,
                "threshold": _PROB,
                "priority": {"type": "string", "enum": ["critical", "high", "routine"]},
                "priority_score": {"type": "number", "minimum": 0, "maximum": 3},
                "critical_findings": {"type": "array", "items": {"type": "string"}},
                "measured": _MEASURED,
                "reason": {"type": "string"},  # 1.4: which finding or triage score set the priority
            },
        },
        "findings": {"type": "array", "minItems": 13, "maxItems": 13, "items": _FINDING},
        "heatmap_legend": {  # 1.1: what the heatmap colours mean and how they are drawn
            "type": "object",
            "required": ["meaning", "zero", "one", "transparent_below", "opacity", "colors"],
            "properties": {
                "meaning": {"type": "string", "minLength": 1},
                "zero": {"type": "string", "minLength": 1},
                "one": {"type": "string", "minLength": 1},
                "transparent_below": {"type": "number", "minimum": 0, "maximum": 1},
                "opacity": {"type": "number", "minimum": 0, "maximum": 1},
                "colors": {"type": "array", "minItems": 2, "items": {"type": "string"}},
            },
        },
        "lung": {
            "type": "object",
            "required": ["mask", "segmented", "contour", "area", "side_convention"],
            "properties": {
                "mask": _PATH,
                "segmented": _PATH,
                "contour": _PATH,
                "side_convention": {"type": "string"},
                "tilt": {  # 1.6: how far the lungs lie off the horizontal (a rotated film is refused past the limit)
                    "type": "object",
                    "required": ["degrees", "limit_degrees", "method"],
                    "properties": {
                        "degrees": {"type": ["number", "null"], "minimum": 0, "maximum": 90},
                        "limit_degrees": {"type": "number"},
                        "method": {"type": "string"},
                    },
                },
                "area": {
                    "type": "object",
                    "required": ["right_px", "left_px", "total_px", "right_cm2", "left_cm2"],
                    "properties": {
                        "right_px": {"type": "integer", "minimum": 0},
                        "left_px": {"type": "integer", "minimum": 0},
                        "total_px": {"type": "integer", "minimum": 0},
                        "right_cm2": {"type": ["number", "null"], "minimum": 0},
                        "left_cm2": {"type": ["number", "null"], "minimum": 0},
                        "total_cm2": {"type": ["number", "null"], "minimum": 0},
                    },
                },
            },
        },
        "heart": {  # 1.7: the cardiothoracic ratio (null without a heart model, or when it could not be measured)
            "type": ["object", "null"],
            "required": ["ratio", "heart_width_px", "thorax_width_px", "method"],
            "properties": {
                "ratio": {"type": "number", "minimum": 0, "maximum": 1},
                "heart_width_px": {"type": "integer", "minimum": 1},
                "thorax_width_px": {"type": "integer", "minimum": 1},
                "method": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "bone": {
            "type": "object",
            "required": ["subtracted", "suppressed", "display_window"],
            "properties": {
                "subtracted": _PATH,
                "suppressed": _PATH,
                # 1.5: how each bone picture was windowed for display (the raw bone image feeds the classifier)
                "display_window": {
                    "type": "object",
                    "required": ["subtracted", "suppressed"],
                    "additionalProperties": _WINDOW,
                },
            },
        },
        "images": {
            "type": "object",
            "required": ["radiograph", "lateral"],
            "properties": {"radiograph": _PATH, "lateral": _PATH},
        },
        "models": {"type": "array", "minItems": 1, "items": _MODEL},
        "timings_ms": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
        "outputs": {
            "type": "object",
            "required": ["html", "dicom"],
            "properties": {
                "html": _PATH,
                "dicom": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kind", "path", "sop_instance_uid"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["SR", "SC"]},
                            "path": {"type": "string"},
                            "sop_instance_uid": {"type": "string"},
                            "study_instance_uid": {"type": "string"},
                            "description": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}


class ReportValidationError(ValueError):
    """A report does not match REPORT_SCHEMA; ``errors`` lists every problem as 'path: message'."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} schema error(s): " + "; ".join(errors[:5]))
        self.errors = errors


_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    return isinstance(value, _TYPES[name])


def _check(value: Any, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if "anyOf" in schema:
        if not any(not _errors(value, sub, path) for sub in schema["anyOf"]):
            errors.append(f"{path}: matches none of the allowed shapes")
        return
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, n) for n in names):
            errors.append(f"{path}: expected {'/'.join(names)}, got {type(value).__name__}")
            return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", errors)
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{path}.{key}", errors)
            elif extra is False:
                errors.append(f"{path}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, f"{path}.{key}", errors)


def _errors(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    _check(value, schema, path, errors)
    return errors


def validate_report(report: dict[str, Any]) -> None:
    """Raise :class:`ReportValidationError` listing every mismatch between ``report`` and REPORT_SCHEMA."""
    errors = _errors(report, REPORT_SCHEMA, "$")
    if errors:
        raise ReportValidationError(errors)
