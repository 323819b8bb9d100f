"""What a user-supplied weights file is, read from its first bytes, before anything loads it.

anomed loads weights from safetensors only: a pickle (`torch.save`, `.pt` / `.bin` / `.pth`,
TorchScript archives) can run any code it holds when it is loaded, so it is refused by its
magic bytes and never unpickled. The fix says how to convert a trusted file once.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from anomed.errors import AnomedError

_PICKLE_PROTOCOLS = range(1, 6)  # b"\x80" then the protocol byte


def weights_format(path: Path) -> str:
    """ "safetensors", "zip-pickle" (torch.save since torch 1.6, TorchScript), "pickle" (older
    torch.save, plain pickles) or "unknown", from the file's first bytes only."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    size = path.stat().st_size
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size:
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:  # the directory only, nothing unpickled
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "unknown"
        return "zip-pickle" if any(n.endswith(".pkl") for n in names) else "unknown"
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return "pickle"
    return "unknown"


def check_weights_file(path: str | Path) -> None:
    """Refuse a weights file that is not safetensors, naming what it is and the fix."""
    path = Path(path)
    kind = weights_format(path)
    if kind == "safetensors":
        return
    convert = (
        "Fix: pass the weights as .safetensors (e.g. the model's open_clip_model.safetensors); "
        'for a file you trust, convert it once: python -c "import torch, safetensors.torch as '
        f"st; sd = torch.load('{path}', weights_only=True); "
        "st.save_file(sd.get('state_dict', sd), 'weights.safetensors')\""
    )
    if kind in ("pickle", "zip-pickle"):
        what = "a torch.save zip archive" if kind == "zip-pickle" else "a Python pickle"
        raise AnomedError(
            f"{path}: {what}, which anomed never loads: unpickling a file can run any code it "
            f"holds. Safetensors weights are needed. {convert}"
        )
    raise AnomedError(f"{path}: not a safetensors weights file (nor a known format). {convert}")
