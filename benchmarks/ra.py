"""Rate-accuracy benchmark per machine task; see icmcodec/bench/ra.py (``--help``)."""
from icmcodec.bench.ra import main

if __name__ == "__main__":
    main()
