"""Export a trained hyperprior checkpoint: ``python -m icmcodec.export RUN/last.pt OUT_DIR
--name NAME`` dispatches here. The file format and the writer are shared by the methods
built on the hyperprior (:mod:`icmcodec.coding.export`)."""
from icmcodec.coding import export as _export


def main(argv=None) -> None:
    _export.main(argv)


if __name__ == "__main__":
    main()
