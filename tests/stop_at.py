"""Run a command of the project and stop it at a chosen event, at the same point on every machine (a test helper).

    python -m tests.stop_at [--event step|write|any] [--at N] [--how sigint|sigkill|pause] [--count FILE] \
        -- SCRIPT.py ARGS...  |  -- -m MODULE ARGS...

Events are counted in the order they happen in this process: ``step`` is an optimizer step of any torch optimizer
(counted before it updates the weights), ``write`` an atomic write about to land (every ``os.replace``: the
temporary file is complete, the target not yet replaced). At the N-th event of the chosen kind the process
- ``sigint``: receives SIGINT, as from Ctrl-C (Python's KeyboardInterrupt, whatever the parent ignored);
- ``sigkill``: is killed by SIGKILL (no handler, no clean-up: a crash or an out-of-memory kill);
- ``pause``: prints ``paused at <event> N`` on stdout and waits until its stdin closes, then goes on.
With ``--at 0`` (the default) the command runs to its end; ``--count FILE`` then receives the number of events
of each kind as JSON. The command's exit status is the helper's. Tests use it instead of a sleep before a signal,
so that where an interrupt lands does not depend on the machine's speed.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import runpy
import signal
import sys
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_pre_hook

EVENTS = ("step", "write", "any")


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("usage: python -m tests.stop_at [options] -- COMMAND ...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m tests.stop_at")
    parser.add_argument("--event", choices=EVENTS, default="any")
    parser.add_argument("--at", type=int, default=0, help="the event that stops the command (1 = the first)")
    parser.add_argument("--how", choices=("sigint", "sigkill", "pause"), default="sigkill")
    parser.add_argument("--count", type=Path, default=None, help="write the events' counts here at exit")
    return parser.parse_args(argv[:split]), argv[split + 1:]


def _install(options: argparse.Namespace) -> None:
    counts = {"step": 0, "write": 0}

    def event(kind: str) -> None:
        counts[kind] += 1
        if options.event not in (kind, "any"):
            return
        if (sum(counts.values()) if options.event == "any" else counts[kind]) != options.at:
            return
        if options.how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif options.how == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            print(f"paused at {options.event} {options.at}", flush=True)
            sys.stdin.read()

    replace = os.replace

    def counted_replace(src, dst, *args, **kwargs):  # noqa: ANN001, ANN202 - os.replace's own signature
        event("write")
        return replace(src, dst, *args, **kwargs)

    os.replace = counted_replace
    register_optimizer_step_pre_hook(lambda optimizer, args, kwargs: event("step"))
    if options.count is not None:
        atexit.register(lambda: options.count.write_text(json.dumps(counts)))


def main(argv: list[str]) -> None:
    options, command = _parse(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background parent may have left SIGINT ignored
    _install(options)
    if command[:1] == ["-m"]:
        sys.argv = [command[1], *command[2:]]
        runpy.run_module(command[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = command
        runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
