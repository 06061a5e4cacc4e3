"""Open a result with plain xarray and draw your own figure.

    python3 -m anchorlab run recipes/quickstart.yaml
    python3 examples/custom_plot.py outputs/quickstart/signal.nc
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

path = sys.argv[1] if len(sys.argv) > 1 else "outputs/quickstart/signal.nc"
ds = xr.open_dataset(path)
print(ds)

# Arbitration margin ΔS = Φ_f - Φ_c per sample at the instruction positions, for vision following.
vf = ds["signal"].sel(task="vf")
margin = (vf.sel(modality="vision") - vf.sel(modality="text")).where(ds["selected"].sel(task="vf"))
fig, ax = plt.subplots(figsize=(5, 3.5))
margin.plot.line(x="layer", hue="sample", ax=ax, add_legend=False, alpha=0.3, color="k")
margin.mean("sample").plot(ax=ax, color="C3", lw=2, label="mean")
ax.axhline(0, ls="--", color="grey")
ax.set(title=f"ΔS per sample — {ds.attrs['model_id']}", ylabel="Φ_vision − Φ_text")
ax.legend()
out = path.replace(".nc", "_margin.png")
fig.tight_layout()
fig.savefig(out, dpi=120)
print("wrote", out)
