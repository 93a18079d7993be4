"""atheris target for the segment parser: run by test_parser.py in a subprocess.

Any exception escaping ``parse`` is a crash; libFuzzer's ``-timeout`` catches slow inputs.
"""

import io
import sys

import atheris

with atheris.instrument_imports():
    from biometrics.prometheus import parse


def one_input(data: bytes) -> None:
    p = parse(io.BytesIO(data), path="fuzz.prom")
    for _ in p:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
