"""anchorlab: causal dissection of modality arbitration in multimodal LLMs."""
from .api import run

__version__ = "0.1.0"
__all__ = ["run", "__version__"]
