"""Attention implementations and masks (issue 13). Knockout replaces each layer's attention mask
with a dense [R, 1, q, S] one; sdpa and eager apply it exactly, but flash-attention kernels take no
dense mask and would silently ignore it. So intervention passes run with sdpa: a model loaded with
`flash_attention_2` (what GPU users load by default) is switched to sdpa before the first one
(logged, and recorded in result attrs as `attn_implementation_used`), and `apply_knockout` refuses
to edit a mask an implementation would not read."""
from __future__ import annotations

import logging

from ..errors import UserError

log = logging.getLogger("anchorlab")
DENSE_MASK = ("sdpa", "eager")


def current_implementation(bundle) -> str | None:
    return getattr(bundle.lm_config, "_attn_implementation", None) or getattr(
        bundle.model.config, "_attn_implementation", None
    )


def ensure_dense_mask(bundle, why: str = "attention knockout") -> str:
    """The implementation the intervention passes will run with: this one if it reads a dense mask,
    else sdpa (the model is switched in place, once)."""
    impl = current_implementation(bundle)
    if impl in DENSE_MASK or impl is None:
        return impl or "sdpa"
    try:
        bundle.model.set_attn_implementation("sdpa")
    except Exception as exc:  # noqa: BLE001 - any failure: say what to do instead
        raise UserError(f"{why} needs a dense attention mask, which {impl} cannot take, and switching the model to "
                        f"sdpa failed ({exc}); load it with model.attn_implementation: sdpa") from None
    if current_implementation(bundle) not in DENSE_MASK:
        raise UserError(f"{why} needs a dense attention mask, which {impl} cannot take; load the model with "
                        "model.attn_implementation: sdpa (or eager)")
    log.warning("%s needs a dense attention mask: model switched from %s to sdpa for this run", why, impl)
    bundle.model._anchorlab_attn_switched = (impl, "sdpa")
    return "sdpa"
