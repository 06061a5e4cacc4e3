"""Ablations (docs/method.md §3.7): an analysis with `sweep: {param: [values, ...]}` runs once per combination
and its results are stacked along one new dimension per swept parameter."""
from __future__ import annotations

import itertools

import xarray as xr
from pydantic import ValidationError

from ..errors import UserError


def expand(spec, where: str) -> list[tuple[dict, object]]:
    """[(combination, spec for it)]; a single ([], spec) when nothing is swept."""
    if not spec.sweep:
        return [({}, spec)]
    base = spec.model_dump(exclude={"sweep"})
    for param, values in spec.sweep.items():
        if param not in base or param in ("kind", "rows", "name", "sweep"):
            raise UserError(f"{where}.sweep.{param}: not a parameter of {spec.kind} "
                            f"(sweepable: {', '.join(k for k in base if k not in ('kind', 'rows', 'name'))})")
        if not values:
            raise UserError(f"{where}.sweep.{param}: give at least one value")
    out = []
    for combo in itertools.product(*spec.sweep.values()):
        chosen = dict(zip(spec.sweep, combo))
        try:
            out.append((chosen, type(spec).model_validate({**base, **chosen})))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UserError(f"{where}.sweep: {chosen} is not valid: {'.'.join(map(str, first['loc']))}: "
                            f"{first['msg']}") from None
    return out


def stack(parts: list[tuple[dict, xr.Dataset]]) -> xr.Dataset:
    """One dataset with a dimension per swept parameter (coordinates = the swept values)."""
    if len(parts) == 1 and not parts[0][0]:
        return parts[0][1]
    params = list(parts[0][0])
    tagged = [ds.expand_dims({p: [combo[p]] for p in params}) for combo, ds in parts]
    out = xr.combine_by_coords(tagged, combine_attrs="drop_conflicts")
    out.attrs.update(parts[0][1].attrs)
    out.attrs["ablation"] = ", ".join(params)
    if all("decoder_cells" in ds.attrs for _, ds in parts):  # the whole sweep's cost
        out.attrs["decoder_cells"] = sum(int(ds.attrs["decoder_cells"]) for _, ds in parts)
    for p in params:
        out.attrs[f"param_{p}"] = ", ".join(dict.fromkeys(str(c[p]) for c, _ in parts))
    return out
