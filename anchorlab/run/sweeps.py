"""Ablations (docs/method.md §3.7): an analysis with `sweep: {param: [values, ...]}` runs once per combination
and its results are stacked along one new dimension per swept parameter."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
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


def _fill(dtype: np.dtype):
    """Padding that no real entry holds: -1 for integer ids, False, NaN (allowed by the finiteness check
    only where `<dim>_valid` is false), ''."""
    return {"i": -1, "u": 0, "b": False, "f": np.nan, "c": np.nan}.get(dtype.kind, "")


def _pad_ragged(datasets: list[xr.Dataset]) -> list[xr.Dataset]:
    """Dimensions whose length differs between combinations (e.g. the shared heads each (k, pool)
    finds, zero included) are padded to their union: each padded variable says with what in its
    `padding` attr, and a `<dim>_valid` mask (swept parameters, dim) marks the real entries."""
    sizes = {d: {ds.sizes.get(d) for ds in datasets} for ds in datasets for d in ds.dims}
    ragged = [d for d, seen in sizes.items() if len(seen) > 1 and None not in seen]
    for dim in ragged:
        own = [ds.indexes[dim] if dim in ds.indexes else pd.RangeIndex(ds.sizes[dim]) for ds in datasets]
        union = own[0]
        for index in own[1:]:
            union = union.union(index)
        padded = []
        for ds, index in zip(datasets, own):
            positional = dim not in ds.indexes
            if positional:
                ds = ds.assign_coords({dim: index})
            names = [v for v in ds.variables if dim in ds[v].dims and v != dim]
            out = ds.reindex({dim: union}, fill_value={v: _fill(ds[v].dtype) for v in names})
            for v in names:
                out[v].attrs["padding"] = (f"{_fill(ds[v].dtype)!r} where {dim}_valid is false (a ragged sweep: "
                                           f"combinations differ in their number of {dim} entries)")
                out[v].attrs["padded_by"] = ",".join(filter(None, [out[v].attrs.get("padded_by"), f"{dim}_valid"]))
            out[f"{dim}_valid"] = ((dim,), np.isin(union, index))
            out[f"{dim}_valid"].attrs["description"] = (f"true for this combination's real {dim} entries "
                                                        "(the rest is padding)")
            padded.append(out.drop_vars(dim) if positional else out)
        datasets = padded
    return datasets


def real_cells(ds: xr.Dataset, var: str) -> xr.DataArray | None:
    """Where `var` holds real values (not a ragged sweep's padding); None when it has no padding."""
    masks = [ds[m] for m in ds[var].attrs.get("padded_by", "").split(",") if m in ds]
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = out & m
    return out


def _per_combination(parts: list[tuple[dict, xr.Dataset]], key: str) -> str:
    return "; ".join(f"{', '.join(f'{p}={v}' for p, v in combo.items())}: {ds.attrs.get(key, 'unset')}"
                     for combo, ds in parts)


def stack(parts: list[tuple[dict, xr.Dataset]]) -> xr.Dataset:
    """One dataset with a dimension per swept parameter (coordinates = the swept values). Results of
    differing lengths (ragged) are padded, never refused: the sweep's compute is already spent. An attr
    that differs between combinations is kept per combination ("k=1, pool=max: 3; ...")."""
    if len(parts) == 1 and not parts[0][0]:
        return parts[0][1]
    params = list(parts[0][0])
    padded = _pad_ragged([ds for _, ds in parts])
    tagged = [ds.expand_dims({p: [combo[p]] for p in params}) for (combo, _), ds in zip(parts, padded)]
    out = xr.combine_by_coords(tagged, data_vars="all", coords="different", compat="no_conflicts", join="outer",
                               combine_attrs="drop_conflicts")
    out.attrs.update(parts[0][1].attrs)
    out.attrs["ablation"] = ", ".join(params)
    for key in parts[0][1].attrs:
        if any(ds.attrs.get(key) != parts[0][1].attrs[key] for _, ds in parts):
            out.attrs[key] = _per_combination(parts, key)
    if all("decoder_cells" in ds.attrs for _, ds in parts):  # the whole sweep's cost
        out.attrs["decoder_cells"] = sum(int(ds.attrs["decoder_cells"]) for _, ds in parts)
    for p in params:
        out.attrs[f"param_{p}"] = ", ".join(dict.fromkeys(str(c[p]) for c, _ in parts))
    return out
