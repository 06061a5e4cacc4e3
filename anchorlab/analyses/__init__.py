"""Analysis registry: one module per paper section, looked up by the recipe's `kind`."""
from __future__ import annotations

from .attribution import AttributionAnalysis
from .base import Analysis, AnalysisSpec, Context
from .head_interventions import HeadsAmplifyAnalysis, HeadsAnalysis
from .head_patching import HeadPatchingAnalysis
from .knockout import KnockoutAnalysis
from .path_blocking import PathBlockingAnalysis
from .signal import SignalAnalysis

REGISTRY: dict[str, type[Analysis]] = {
    a.kind: a for a in (SignalAnalysis, KnockoutAnalysis, PathBlockingAnalysis, AttributionAnalysis, HeadsAnalysis,
                HeadsAmplifyAnalysis, HeadPatchingAnalysis)
}
ANALYSES: dict[str, type[AnalysisSpec]] = {k: a.spec_cls for k, a in REGISTRY.items()}

__all__ = ["ANALYSES", "REGISTRY", "Analysis", "AnalysisSpec", "Context"]
