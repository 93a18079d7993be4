"""README's cron recipe, run as written: the crontab line's command, its job, its alert."""

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from biometrics.cli import run

from ..helpers import page_value, readme_recipe, series_value
from ._prometheus import PROMTOOL, needs_prometheus

JOB = '{job_name="backup"}'


def crontab(text: str) -> tuple[dict[str, str], str]:
    """The crontab's ``NAME=value`` lines and its one job's command (after the 5 time fields)."""
    variables: dict[str, str] = {}
    commands = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, eq, value = line.partition("=")
        if eq and name.isidentifier():
            variables[name] = value
        else:
            commands.append(line.split(None, 5)[5])
    assert len(commands) == 1, commands
    return variables, commands[0]


def test_the_crontab_line_reports_each_run_and_keeps_the_exit_code(tmp_path: Path) -> None:
    """Three runs of the crontab's command (its variables pointed into tmp_path, cron's /bin/sh):
    two successes, then a failure (the data directory is gone).  Each run exits with the job's
    code; the merged page serve would show has the third run's exit code, the second run's end
    as the last success, and 2 + 1 runs."""
    blocks = readme_recipe("cron")
    variables, command = crontab(blocks["crontab"])
    assert set(variables) == {"PATH", "BIOMETRICS_SPOOL", "DATA_DIR", "BACKUP_DIR"}
    bin_dir, spool, data, backups = (tmp_path / d for d in ("bin", "spool", "data", "backups"))
    for made in (bin_dir, data, backups):
        made.mkdir()
    (data / "file.txt").write_text("precious\n")
    script = bin_dir / "backup.sh"
    script.write_text(blocks["backup.sh"])
    script.chmod(0o755)
    env = {
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin:/bin"]),
        "BIOMETRICS_SPOOL": str(spool),  # made by the wrapper: it does not exist yet
        "DATA_DIR": str(data),
        "BACKUP_DIR": str(backups),
        "HOME": str(tmp_path),
    }
    codes = []
    for attempt in range(3):
        if attempt == 2:
            shutil.rmtree(data)
        done = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
        codes.append(done.returncode)
    assert codes[:2] == [0, 0] and codes[2] not in (0, 126, 127), (codes, done.stderr)
    assert (backups / "data.tgz").stat().st_size > 0
    assert oct(spool.stat().st_mode & 0o7777) == oct(0o2775), "--mode 664: a shared spool"
    assert {oct(p.stat().st_mode & 0o777) for p in spool.glob("*.prom")} == {oct(0o664)}

    out = io.StringIO()
    assert run(["cat", str(spool)], out) == 0
    page = out.getvalue()
    assert page_value(page, f"biometrics_job_last_exit_code{JOB}") == codes[2]
    assert page_value(page, 'biometrics_job_runs_total{job_name="backup",result="success"}') == 2
    assert page_value(page, 'biometrics_job_runs_total{job_name="backup",result="failure"}') == 1
    last_success = series_value(page, f"biometrics_job_last_success_timestamp_seconds{JOB}")
    assert last_success is not None and abs(last_success - script.stat().st_mtime) < 600
    assert page_value(page, f"biometrics_job_duration_seconds{JOB}") < 60
    assert shlex.split(command)[0] == "biometrics"


@needs_prometheus
def test_the_alert_fires_after_25_hours_without_success_and_when_the_series_is_gone(
    tmp_path: Path,
) -> None:
    """promtool runs the recipe's alert rule: silent 24 h after a success, firing at 26 h; and
    firing when the series left the page (forgotten) more than 26 h ago."""
    assert PROMTOOL is not None
    rules = readme_recipe("cron")["alerts.yml"]
    (tmp_path / "alerts.yml").write_text(rules)
    summary = re.search(r"summary: (.*)", rules)
    assert summary is not None
    labels = "{severity: page, job_name: backup}"
    fired = f"[{{exp_labels: {labels}, exp_annotations: {{summary: {summary[1]}}}}}]"
    metric = 'biometrics_job_last_success_timestamp_seconds{job_name="backup"}'
    (tmp_path / "test.yml").write_text(textwrap.dedent(f"""\
        rule_files: [alerts.yml]
        evaluation_interval: 1m
        tests:
          - interval: 1h
            input_series:
              - series: '{metric}'
                values: '0x30'
            alert_rule_test:
              - {{eval_time: 24h, alertname: BackupNoSuccessIn25h, exp_alerts: []}}
              - eval_time: 26h
                alertname: BackupNoSuccessIn25h
                exp_alerts: {fired}
          - interval: 1h
            input_series:
              - series: '{metric}'
                values: '0x2'
            alert_rule_test:
              - {{eval_time: 20h, alertname: BackupNoSuccessIn25h, exp_alerts: []}}
              - eval_time: 30h
                alertname: BackupNoSuccessIn25h
                exp_alerts: {fired}
        """))  # fmt: skip
    done = subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
