import io

import pytest

from biometrics import __version__
from biometrics.cli import main, run


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"biometrics {__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """--help and no arguments both describe the tool."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out
    out = io.StringIO()
    assert run([], out) == 0
    assert "usage: biometrics" in out.getvalue()


def test_demo_prints_readings_of_every_sensor() -> None:
    """The demo records a workload and emits every sensor kind at the given time."""
    out = io.StringIO()
    assert run(["demo", "--requests", "500"], out, now_ms=1234) == 0
    lines = out.getvalue().splitlines()
    assert "demo.requests 1234 500" in lines
    assert any(line.startswith("demo.latency.seconds 1234 {le=") for line in lines)
    assert any(line.startswith("demo.response.bytes 1234 500 ") for line in lines)
    assert all(" 1234 " in line for line in lines)


def test_demo_rejects_negative_requests(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments exit 2 with a message."""
    assert run(["demo", "--requests", "-1"], io.StringIO()) == 2
    assert "--requests" in capsys.readouterr().err
