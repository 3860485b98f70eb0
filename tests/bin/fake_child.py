"""A fake child process for supervisor tests: prints N numbered lines, then exits with code K.

usage: fake_child.py LINES EXIT_CODE [--say TEXT]... [--stderr-every M] [--sleep S] [--hang]
                     [--ansi] [--ignore-term] [--no-final-newline] [--exit-on-usr1] [--send-usr1 PID]
                     [--append FILE TEXT]... [--note TEXT]

`--say` prints a given line first (a Flower answer, a telemetry line). `--exit-on-usr1` and
`--send-usr1` stand in for `flwr run --stream` exiting by itself once `flwr stop` stopped the run.
`--append` writes a line to a file first, as a ServerApp writes its telemetry channel; `--note`
is ignored (an argument that only shows in the argv FedML echoes).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("lines", type=int)
    parser.add_argument("exit_code", type=int)
    parser.add_argument("--say", action="append", default=[], help="print this line before the numbered ones")
    parser.add_argument("--stderr-every", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--hang", action="store_true", help="after printing, wait to be signalled")
    parser.add_argument("--ansi", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--no-final-newline", action="store_true")
    parser.add_argument("--exit-on-usr1", action="store_true", help="SIGUSR1 makes it exit with EXIT_CODE")
    parser.add_argument("--send-usr1", type=int, default=0, help="send SIGUSR1 to this pid first")
    parser.add_argument("--append", nargs=2, action="append", default=[], metavar=("FILE", "TEXT"))
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    for path, text in args.append:
        with open(path, "a", encoding="utf-8") as channel:
            channel.write(text + "\n")
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.exit_on_usr1:

        def _exit(_signum: int, _frame: FrameType | None) -> None:
            print("stopped: exiting", flush=True)
            sys.exit(args.exit_code)

        signal.signal(signal.SIGUSR1, _exit)
    if args.send_usr1:
        os.kill(args.send_usr1, signal.SIGUSR1)
    for text in args.say:
        print(text, flush=True)
    for i in range(1, args.lines + 1):
        text = f"line {i}"
        if args.ansi:
            text = f"\x1b[92mINFO\x1b[0m: {text}"
        stream = sys.stderr if args.stderr_every and i % args.stderr_every == 0 else sys.stdout
        end = "" if args.no_final_newline and i == args.lines else "\n"
        stream.write(text + end)
        stream.flush()
        if args.sleep:
            time.sleep(args.sleep)
    if args.hang:
        while True:
            time.sleep(0.1)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
