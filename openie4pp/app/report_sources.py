"""The English sources of a project-mode folder, for its report: read from the input file the
manifest names, with the annotator's own input reader (the same ids, the same triples).

Why here and not in :mod:`openie4pp.report`: the base never imports the annotator, and a record
keeps only its own sentence; the application joins the two.
"""

from __future__ import annotations

from pathlib import Path

from openie4pp.report.annotation import SourceSentence, read_json_object


def project_sources(folder: Path, input_path: str | None = None) -> tuple[dict[str, SourceSentence], str]:
    """``(input id -> English source, a note for the report)``; empty for an extract-mode folder.
    ``input_path`` overrides the manifest's (the input moved since the run)."""
    from openie4pp.annotate.inputs import WorkItem, read_inputs

    manifest = read_json_object(folder / "manifest.json")
    config = manifest.get("build_config") or {}
    if ((config.get("pipeline") or {}).get("mode")) != "project":
        return {}, ""
    recorded = config.get("input") or {}
    path = input_path or _recorded_path(folder, recorded.get("path"))
    if not path:
        return {}, (f"The English sources are in the run's input {recorded.get('path') or '(not recorded)'}, "
                    "which is not here: give it with --input to show them beside the translations.")
    sources: dict[str, SourceSentence] = {}
    for item in read_inputs(str(path), fmt=recorded.get("format") or "auto", lang=recorded.get("lang")):
        if isinstance(item, WorkItem):
            sources[item.id] = SourceSentence(item.text, item.triples)
    return sources, f"English sources read from {path}."


def _recorded_path(folder: Path, recorded: str | None) -> str | None:
    """The input the manifest names, where it is: as recorded (absolute, or relative to here), else
    relative to the output folder's parent or the folder itself (a relative ``--input`` was typed in
    the run's working directory, usually beside ``--out``). ``hf:`` datasets are read as named."""
    if not recorded:
        return None
    if recorded.startswith("hf:"):
        return recorded
    for candidate in (Path(recorded), folder.parent / recorded, folder / recorded):
        if candidate.exists():
            return str(candidate)
    return None
