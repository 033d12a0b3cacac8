"""Rate-distortion benchmark; see icmcodec/bench/rd.py (``--help``)."""
from icmcodec.bench.rd import main

if __name__ == "__main__":
    main()
