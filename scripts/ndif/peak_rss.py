"""Run `python -m MODULE ARGS...` in this process, then write its peak resident memory (MiB) to FILE:
how the integration measures what an NDIF client needs (the client must fit a laptop).

    python scripts/ndif/peak_rss.py FILE -m anchorlab run RECIPE --remote
"""
import runpy
import sys


def peak_mib() -> float:
    """This process image's high-water resident memory (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    over exec from the parent's memory (subprocess's vfork shares it), so a child of a 3 GiB parent reads 3 GiB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        sys.exit(__doc__)
    out, module, args = sys.argv[1], sys.argv[3], sys.argv[4:]
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        with open(out, "w") as fh:
            fh.write(f"{peak_mib():.1f}\n")


if __name__ == "__main__":
    main()
