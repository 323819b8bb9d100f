"""Synthetic phantom datasets: what every test, the demo and the benchmarks run on.

Each writer takes the output folder first, then keyword settings (`seed`, sizes, counts), and
`overwrite`; each writes its folder atomically in one of anomed's dataset layouts:

- `brain.write_phantom_dataset`: 2D brain slices, folder layout (the demo's data);
- `organs.write_bmad_phantoms`: brain / liver / retina / chest in the BMAD (MVFA) layout;
- `chest.write_chest_phantoms`: chest films, folder or PPAD's data.json layout;
- `heads.write_phantom_volumes`: 3D heads, four MRI sequences as NIfTI plus a DICOM series.
"""
