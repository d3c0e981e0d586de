"""The stage guard: one last line with the elapsed time, each warning once with its count, errors as one line."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import logging, sys, warnings
    from clipprobe.errors import ClipprobeError
    from clipprobe.stage import run_stage

    def main():
        log = logging.getLogger("clipprobe.probes.logreg")
        for c in (0.1, 1.0, 10.0):
            log.warning("stopped at max_iter=%d (C=%g)", 50, c)
        warnings.warn("a library's note", UserWarning)
        logging.warning("No pretrained weights loaded for model 'x'. Model initialized randomly.")
        if sys.argv[1:] == ["fail"]:
            raise ClipprobeError("params.yaml: probe.C: must be > 0 or 'auto' (got -1)")

    run_stage("demo", main)
    """
)


def _run(tmp_path, *args):
    (tmp_path / "demo.py").write_text(SCRIPT)
    return subprocess.run([sys.executable, "demo.py", *args], cwd=tmp_path, capture_output=True, text=True)


def test_warnings_fold_into_one_line_each_before_the_timed_last_line(tmp_path):
    run = _run(tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == "warning: stopped at max_iter=50 (C=0.1) (3 times)"
    assert sum("a library's note" in line for line in lines) == 1 and lines[1].startswith("warning: ")
    assert len(lines) == 3, lines  # open_clip-style root warnings are collected too
    assert run.stdout.splitlines()[-1].startswith("demo: wrote nothing in ")
    assert run.stdout.splitlines()[-1].endswith(" s")


def test_an_error_is_one_stderr_line_and_exit_code_2(tmp_path):
    run = _run(tmp_path, "fail")
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["error: params.yaml: probe.C: must be > 0 or 'auto' (got -1)"]
