"""Synthetic phantom datasets: what every test, the demo and the benchmarks run on.

Each writer takes the output folder first, then keyword settings (`seed`, sizes, counts), and
`overwrite`; each writes its folder atomically in one of anomed's dataset layouts:

- `brain.write_phantom_dataset`: 2D brain slices, folder layout (the demo's data);
- `organs.write_bmad_phantoms`: brain / liver / retina / chest in the BMAD (MVFA) layout;
- `chest.write_chest_phantoms`: chest films, folder or PPAD's data.json layout;
- `heads.write_phantom_volumes`: 3D heads, four MRI sequences as NIfTI plus a DICOM series.
"""

from pathlib import Path


def is_phantom_dataset(root: str | Path) -> bool:
    """True for a dataset written by these phantom writers (their README.txt, in the dataset
    folder or the parent folder of a BMAD or volume set, says so): published figures of real
    datasets are never printed beside phantoms."""
    root = Path(root)
    for folder in (root, root.parent):
        readme = folder / "README.txt"
        try:
            text = readme.read_text(errors="replace")[:2000].lower() if readme.is_file() else ""
        except OSError:
            continue
        if "anomed" in text and "phantom" in text:
            return True
    return False
