"""Score studies from a PACS over DICOMweb and send the results back (SEG, Parametric Map, SR).

`client` talks to the server (QIDO-RS, WADO-RS, STOW-RS, retries, auth), `ledger` remembers
every series in SQLite, `score` scores a series as `anomed predict` does, `sr` writes the TID
1500 report, `worker` is the loop `anomed pacs watch` runs.
"""

from anomed.pacs.client import PacsClient, PacsError, PacsUnavailable, RetryPolicy
from anomed.pacs.ledger import Ledger
from anomed.pacs.worker import WatchConfig, Watcher

__all__ = [
    "Ledger",
    "PacsClient",
    "PacsError",
    "PacsUnavailable",
    "RetryPolicy",
    "WatchConfig",
    "Watcher",
]
