"""Training entry of the hyperprior: ``python -m icmcodec.methods.hyperprior.train``
(the same as ``python -m icmcodec.train --method hyperprior``; see :mod:`icmcodec.train`)."""
from icmcodec.train import main as _main


def main(argv=None) -> None:
    _main(["--method", "hyperprior", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    main()
