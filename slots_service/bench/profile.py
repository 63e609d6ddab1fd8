"""`bench --profile DIR`: the API runs under py-spy (`record --subprocesses`, folded stacks),
one file per API start, and what its time went to is printed when it stops.

The summary reads py-spy's raw (folded) format, one line per distinct stack: frames from the
outermost, `;`-separated, then the sample count. Per function: its own samples (the frame on
top) and the samples it was anywhere on the stack (counted once per stack), as shares of the
samples taken while the process was busy (py-spy leaves idle samples out by default).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str:
    """py-spy beside this interpreter, or on the PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("bench --profile needs py-spy (pip install py-spy)")
    return found


def wrap(argv: list[str], output: Path) -> list[str]:
    """`argv` run under py-spy, its children too, folded stacks written to `output` on exit."""
    return [
        py_spy(),
        "record",
        "--subprocesses",
        "-r",
        "200",
        "-f",
        "raw",
        "-o",
        str(output),
        "--",
        *argv,
    ]


def _where(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for root in ("slots_service/", "site-packages/"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return f"{match['name']} ({path})"


# Each sample goes to the part of its frame nearest the top that belongs to one (the work a
# frame does for a part below it is that part's); a sample with none is granian's, the event
# loop's or the drivers' native code.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Postgres: the driver and group commit", ("asyncpg/", "group_commit.py")),
    ("the Redis gate", ("resp.py", "counters.py", "seats.py")),
    (
        "booking rules, the statement's values, the answer",
        (
            *("booking.py", "people.py", "horizon.py", "catalog.py", "party.py", "models.py"),
            *("clock.py", "render.py", "events.py", "idempotency.py", "availability.py"),
        ),
    ),
    (
        "the route: caller, body, refusal (fast_booking, routes, problems)",
        ("fast_booking.py", "routes.py", "bodies.py", "problems.py", "auth.py"),
    ),
    ("our middleware: access line, histogram", ("app.py", "logs.py", "metrics.py")),
    ("Litestar", ("litestar/",)),
)
NATIVE = "granian, the event loop, native code"
STARTING = "start-up: imports"


def part_of(frames: list[str]) -> str:
    """The part a sample (its frames, outermost first, as `_where` names them) belongs to."""
    if any(frame.startswith("_find_and_load ") for frame in frames):  # an import
        return STARTING
    for frame in reversed(frames):
        path = frame.rsplit("(", 1)[-1].rstrip(")")
        for name, marks in PARTS:
            if any(path.startswith(m) if m.endswith("/") else path == m for m in marks):
                return name
    return NATIVE


def summary(folded: Path, top: int = 25) -> str:
    """The functions that took the API's time, by own samples and by samples under them."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_where(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        parts[part_of(frames)] += n
        for frame in set(frames):
            under[frame] += n
    if total == 0:
        return f"profile {folded}: no samples"
    lines = [f"profile {folded}: {total} samples while busy"]
    lines.append("  by part:")
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in parts.most_common()]
    lines.append("  own time (the frame on top):")
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
    lines.append("  time under (anywhere on the stack), this service's code:")
    ours = [
        (name, n)
        for name, n in under.most_common()
        if "(" in name and ".py)" in name and "/" not in name.split("(", 1)[1]
    ]
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in ours[:top]]
    return "\n".join(lines)
