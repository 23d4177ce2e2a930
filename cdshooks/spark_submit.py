"""Entry point for ``spark-submit``.

    spark-submit [--master URL] cdshooks/spark_submit.py simulate PATH... [--out DIR]


spark-submit runs a Python file, not a console script; this one runs ``cdshooks`` with the Spark
engine, and the session it builds takes spark-submit's master and settings.
"""

import sys

from cdshooks.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:] or ["--help"]
    if argv[0] == "simulate" and "--engine" not in argv:
        argv = [*argv, "--engine", "spark"]
    sys.exit(main(argv))
