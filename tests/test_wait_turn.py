"""Runs sharing a data folder take turns at its stages instead of stopping at each other's folder locks."""

import subprocess
import sys

from tests.environment import REPO, command_env

HOLDER = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
          "print('held', flush=True); sys.stdin.read()")


def test_a_second_run_waits_for_the_first_then_runs_its_command(tmp_path):
    lock = tmp_path / "data" / ".lock-shared-stages"
    lock.parent.mkdir()
    env = command_env()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        waiter = subprocess.Popen([sys.executable, "-m", "utils.wait_turn", str(lock), "--", sys.executable, "-c",
                                   "print('ran')"], cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
        assert waiter.stdout.readline().startswith("waiting for another run's turn")  # it is blocked, not failed
        holder.stdin.close()  # the first run ends
        assert holder.wait(timeout=60) == 0
        assert waiter.stdout.read().strip() == "ran" and waiter.wait(timeout=60) == 0
    finally:
        holder.kill()


def test_the_command_status_is_passed_on_and_a_bad_call_is_named(tmp_path):
    env = command_env()
    run = subprocess.run([sys.executable, "-m", "utils.wait_turn", str(tmp_path / "lock"), "--", sys.executable,
                          "-c", "raise SystemExit(3)"], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 3
    bad = subprocess.run([sys.executable, "-m", "utils.wait_turn", str(tmp_path / "lock")], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
