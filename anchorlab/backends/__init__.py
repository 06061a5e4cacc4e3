"""Where traces run. `local` wraps the loaded HF model in nnsight; NDIF comes as a second backend."""
from .local import LocalBackend, envoy_at

__all__ = ["LocalBackend", "envoy_at"]
