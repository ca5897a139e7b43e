"""monitor: embedding-based outlier monitor for streams of text, backed by Chroma.

The flow, one module each: ``sources`` -> ``preprocess`` -> ``embedders`` -> ``store`` ->
``baseline`` / ``detector`` -> ``scoring`` (arrival check) -> ``query`` / ``snapshot``.
:class:`Monitor` ties them together; the ``monitor`` command is a thin layer over it.
"""

from monitor.api import Monitor
from monitor.baseline import Baseline, build_baseline, load_baseline
from monitor.calibration import Calibration, ThresholdPolicy
from monitor.detector import CategoryDetector, CentroidDetector, RadiusPolicy, Verdict
from monitor.embedders import Embedder, make_embedder
from monitor.errors import (
    BaselineError,
    EmbedderError,
    EmbedderMismatchError,
    InputError,
    LockedError,
    MonitorError,
    StoreError,
)
from monitor.posts import Post, Skipped
from monitor.scores import ScoreSpec
from monitor.sources import open_source
from monitor.store import ChromaStore

__version__ = "0.1.0"

__all__ = [
    "Baseline",
    "BaselineError",
    "Calibration",
    "CategoryDetector",
    "CentroidDetector",
    "ChromaStore",
    "Embedder",
    "EmbedderError",
    "EmbedderMismatchError",
    "InputError",
    "LockedError",
    "Monitor",
    "MonitorError",
    "Post",
    "RadiusPolicy",
    "ScoreSpec",
    "Skipped",
    "StoreError",
    "ThresholdPolicy",
    "Verdict",
    "__version__",
    "build_baseline",
    "load_baseline",
    "make_embedder",
    "open_source",
]
