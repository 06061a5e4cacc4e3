"""Run `python -m MODULE ARGS...` in this process, then write its peak resident memory (MiB) to FILE:
how the integration measures what an NDIF client needs (the client must fit a laptop).

    python scripts/ndif/peak_rss.py FILE -m anchorlab run RECIPE --remote
"""
import resource
import runpy
import sys


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        sys.exit(__doc__)
    out, module, args = sys.argv[1], sys.argv[3], sys.argv[4:]
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        with open(out, "w") as fh:  # ru_maxrss is KiB on Linux
            fh.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}\n")


if __name__ == "__main__":
    main()
