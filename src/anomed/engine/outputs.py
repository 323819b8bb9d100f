"""Moved to `anomed.outputs` (output folders are used by data tools too); kept for imports."""

from anomed.outputs import (  # noqa: F401
    check_output_dir,
    clear_dir,
    dumps_json,
    finite_or_none,
    staged_dir,
    write_json,
    write_text,
)
