"""The shipped systemd files: verified by systemd, hardened, and their commands work as written.

No systemd runs here (no PID 1 in the sandbox), so the units are not started by systemd itself:
``systemd-analyze verify`` and ``security --offline`` check them, ``systemd-sysusers`` and
``systemd-tmpfiles`` apply the user and spool files to a scratch root, and the ``ExecStart=``
command lines run with their paths pointed into ``tmp_path``.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import readme_recipe, scrape

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib" / "systemd"
UNITS = ("biometrics-serve.service", "biometrics-ship.service")
ANALYZE = "/usr/bin/systemd-analyze"
BIOMETRICS = str(Path(sys.executable).parent / "biometrics")


def installed_copies(directory: Path) -> list[Path]:
    """The units with ``ExecStart=`` pointing at this venv's ``biometrics`` script."""
    copies = []
    for name in UNITS:
        text = (CONTRIB / name).read_text().replace("/usr/local/bin/biometrics", BIOMETRICS)
        (directory / name).write_text(text)
        copies.append(directory / name)
    return copies


def analyze(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ANALYZE, *argv], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def exec_start(name: str, **values: str) -> list[str]:
    """The unit's ``ExecStart=`` words, ``$VAR``/``${VAR}`` expanded from ``values`` (a
    ``$VAR`` word with an empty value disappears, as systemd does)."""
    line = next(
        ln for ln in (CONTRIB / name).read_text().splitlines() if ln.startswith("ExecStart=")
    )
    words = []
    for word in shlex.split(line.removeprefix("ExecStart=")):
        whole = re.fullmatch(r"\$(\w+)", word)
        if whole is not None:
            words += values.get(whole[1], "").split()
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: values[m[1]], word))
    return words


def test_systemd_verifies_both_units_without_a_remark(tmp_path: Path) -> None:
    """``systemd-analyze verify`` exits 0 and says nothing about our files; the check can fail:
    a misspelt directive is reported at its line."""
    copies = installed_copies(tmp_path)
    done = analyze("verify", *map(str, copies))
    assert done.returncode == 0, done.stderr
    ours = [ln for ln in (done.stdout + done.stderr).splitlines() if "biometrics-" in ln]
    assert ours == []
    typo = tmp_path / "typo.service"
    typo.write_text(copies[0].read_text().replace("ProtectSystem=", "ProtectSystm="))
    assert "Unknown key 'ProtectSystm'" in analyze("verify", str(typo)).stderr


def test_both_units_are_hardened(tmp_path: Path) -> None:
    """``systemd-analyze security --offline`` rates each unit's exposure at most 2.0 ("OK";
    serve measured 1.5, ship 1.6 here) and the strict settings are there."""
    for copy in installed_copies(tmp_path):
        done = analyze("security", "--offline=true", "--threshold=20", str(copy))
        assert done.returncode == 0, done.stdout[-3000:]
        text = copy.read_text()
        for setting in ("User=biometrics", "ProtectSystem=strict", "NoNewPrivileges=yes",
                        "PrivateTmp=yes", "ReadWritePaths=/var/spool/biometrics",
                        "CapabilityBoundingSet=\n", "RestartPreventExitStatus=2"):  # fmt: skip
            assert setting in text, (copy.name, setting)
    serve, ship = ((CONTRIB / name).read_text() for name in UNITS)
    assert "Conflicts=biometrics-ship.service" in serve, "one consumer per spool"
    assert "Conflicts=biometrics-serve.service" in ship


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles must chown: run as root")
def test_sysusers_and_tmpfiles_make_the_user_and_a_shared_setgid_spool(tmp_path: Path) -> None:
    """Applied to a scratch root: user and group ``biometrics``, and the spool 2775 owned by
    them, so every writer in the group can write and serve can delete."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for tool, config in (("systemd-sysusers", "biometrics.sysusers"),
                         ("systemd-tmpfiles", "biometrics.tmpfiles")):  # fmt: skip
        argv = [tool, f"--root={root}", *(["--create"] if "tmpfiles" in tool else [])]
        done = subprocess.run([*argv, str(CONTRIB / config)], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    users = (root / "etc/passwd").read_text().splitlines()
    user = next(ln for ln in users if ln.startswith("biometrics:"))
    uid, gid = int(user.split(":")[2]), int(user.split(":")[3])
    assert user.endswith(":/var/lib/biometrics:/usr/sbin/nologin")
    assert f"biometrics:x:{gid}:" in (root / "etc/group").read_text()
    spool = (root / "var/spool/biometrics").stat()
    assert (oct(spool.st_mode & 0o7777), spool.st_uid, spool.st_gid) == (oct(0o2775), uid, gid)


def in_tmp(words: list[str], tmp_path: Path) -> list[str]:
    """The unit's paths moved into ``tmp_path`` (spool, state), run by this venv's Python."""
    spool, state = str(tmp_path / "spool"), str(tmp_path / "lib")
    moved = [w.replace("/var/spool/biometrics", spool).replace("/var/lib/biometrics", state)
             for w in words]  # fmt: skip
    assert moved[0] == "/usr/local/bin/biometrics"
    return [sys.executable, "-m", "biometrics", *moved[1:]]


def test_the_serve_command_line_runs_as_written(tmp_path: Path) -> None:
    """The unit's ``serve`` command, its paths pointed into tmp_path and its port free: it
    starts, keeps its state where the unit says, serves a page and stops cleanly on SIGTERM."""
    argv = in_tmp(exec_start("biometrics-serve.service",
                             BIOMETRICS_SERVE_ARGS="--log-level warning"), tmp_path)  # fmt: skip
    (tmp_path / "spool").mkdir()
    assert argv[3:5] == ["serve", str(tmp_path / "spool")]
    assert "--forget-after" in argv and "127.0.0.1:9464" in argv
    argv[argv.index("127.0.0.1:9464")] = "127.0.0.1:0"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        match = re.search(r"http://127.0.0.1:(\d+)/metrics", proc.stdout.readline())
        assert match is not None
        assert "biometrics_exporter" in scrape(int(match[1]))
        assert (tmp_path / "lib" / "serve").is_dir(), "the state goes to StateDirectory="
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_the_ship_command_line_runs_as_written(tmp_path: Path) -> None:
    """The unit's ``ship`` command with the URL from its environment file: it accepts every
    option (``--once`` on an empty spool: nothing to send, exit 0), and with no URL set it
    exits 2, which the unit does not restart."""
    url = "http://127.0.0.1:9/api/v1/write"
    argv = exec_start("biometrics-ship.service", BIOMETRICS_SHIP_URL=url,
                      BIOMETRICS_SHIP_ARGS="--once --deadline 5s")  # fmt: skip
    (tmp_path / "spool").mkdir()
    done = subprocess.run(in_tmp(argv, tmp_path), capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lib" / "ship").is_dir(), "the progress goes to StateDirectory="
    unset = in_tmp(exec_start("biometrics-ship.service", BIOMETRICS_SHIP_URL=""), tmp_path)
    done = subprocess.run(unset, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr


def test_the_deploy_recipe_installs_the_shipped_files() -> None:
    """Every ``contrib/`` path README's deploy recipe installs exists, and every shipped file is
    installed by it."""
    install = readme_recipe("deploy")["install"]
    named = set(re.findall(r"contrib/systemd/[\w.-]+", install))
    assert named == {f"contrib/systemd/{p.name}" for p in CONTRIB.iterdir()}
