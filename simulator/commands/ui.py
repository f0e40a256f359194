"""``b2bsim ui [--run-dir DIR] [--port P]``: the live view of a run that is already going.

Without ``--run-dir`` it shows the newest run of the state directory and
follows on to the next one when it starts.  It only reads the run's files, so
it may come and go while the chain runs.  ``b2bsim run --ui`` starts the same
view with the run itself.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from simulator.commands.args import check_port
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.state import StateDir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ui", help="show a running (or finished) run live in a browser")
    p.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="the run directory to show (default: the newest under STATE/runs, followed)",
    )
    p.add_argument(
        "--port", type=int, default=0, metavar="P", help="port on 127.0.0.1 (default: a free one)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simulator.views.ui_server import LiveView

    port = check_port(args.port)
    state = StateDir.resolve(args.state)
    if args.run_dir is not None and not args.run_dir.is_dir():
        raise ConfigError(
            f"no run directory at {args.run_dir}",
            hint=f"name one under {state.runs}, or leave out --run-dir for the newest",
        )
    if args.run_dir is None and not state.runs.is_dir():
        raise ConfigError(
            f"no runs in {state.root} yet",
            hint="start one with `b2bsim run SCENARIO` (or pass --state, or --run-dir)",
        )
    view = LiveView(port=port)
    url = view.start()
    if args.run_dir is not None:
        view.watch(args.run_dir.absolute())
        what = str(args.run_dir)
    else:
        view.follow(state.runs)
        what = f"the newest run in {state.runs}"
    if view.notice:
        print(f"live view: {view.notice}")
    print(f"live view of {what}: {url}  (Ctrl+C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        view.stop()
    return 0
