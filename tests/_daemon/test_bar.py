"""The progress bar the file tools draw on stderr: a terminal only, never in a pipe or log."""

import io

from biometrics._daemon.bar import ProgressBar


def test_progress_bar_draws_on_a_terminal_only() -> None:
    """The bar draws on a terminal and ends with a carriage return; on a pipe it is silent."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    clock = iter(range(1000))
    bar = ProgressBar(tty, min_total=2, interval=0.5, clock=lambda: float(next(clock)))
    for i in range(1, 5):
        bar(i, 4)
    assert "files [" in tty.getvalue() and "4/4" in tty.getvalue()
    bar.close()
    assert tty.getvalue().endswith("\r")
    quiet = ProgressBar(pipe, min_total=0)
    quiet(1, 1)
    quiet.close()
    assert pipe.getvalue() == ""
