"""Where a reward's handler runs: in this process, in isolated worker processes, or in threads (remote calls).

Each executor maps a list of batches to one `Outcome` per batch, in order, and never raises because of the
handler: an exception, a timeout or a dead worker is an outcome like any other. Worker processes are
replaced when they die or hang, so one bad call cannot stall or lose the others.

A worker owns what the reward starts: it leads its own process group, kills every process the reward left
behind after each call and when it stops, and dies with its parent. What a reward writes to stdout or stderr
is captured (bounded) for the report; it never reaches the caller's stdout.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import pickle
import queue
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

TRANSIENT = frozenset({
    "ConnectionError", "TimeoutError", "ThrottlingException", "TooManyRequestsException",
    "ServiceUnavailableException", "ProvisionedThroughputExceededException", "EndpointConnectionError",
    "ReadTimeoutError", "ConnectTimeoutError", "TransientError",
})
# A worker's first message: set up and listening. A call's timeout runs from then (or from when the call was
# sent, if later), so starting a process on a busy machine never counts against the reward's own time.
READY = "nbkit-worker-ready"
# How long a worker may take to get there (forking, importing the reward under spawn) before its call is
# recorded as a timeout; generous, as a busy machine is normal, but a worker that never starts cannot stall a run.
STARTUP_S = 120.0

_TRANSIENT_WORDS = ("throttl", "rate exceeded", "too many requests", "temporarily unavailable", "try again")


class Outcome:
    """What one handler call produced. kind: returned | raised | timeout | crash | unserializable."""

    __slots__ = ("kind", "value", "error", "error_types", "latency_s")

    def __init__(self, kind: str, value: Any = None, error: str | None = None,
                 error_types: tuple[str, ...] = (), latency_s: float = 0.0) -> None:
        self.kind, self.value, self.error, self.error_types, self.latency_s = kind, value, error, error_types, latency_s

    def __repr__(self) -> str:
        return f"Outcome({self.kind}, error={self.error!r}, latency_s={self.latency_s:.4f})"


# Called with (batch index, outcome) as each call completes. An executor given one hands every outcome to it
# and keeps none (map returns []), so a long run holds no results it has already classified.
OnDone = Callable[[int, "Outcome"], None]


def is_transient(error_types: tuple[str, ...], message: str) -> bool:
    """Default retry rule: network/throttling errors by type name (any base class) or by message."""
    low = (message or "").lower()
    return bool(TRANSIENT.intersection(error_types)) or any(w in low for w in _TRANSIENT_WORDS)


def describe_exception(exc: BaseException) -> tuple[str, tuple[str, ...]]:
    """'Type: message (at file:line in function)' for the frame that raised, and the type's class names."""
    if isinstance(exc, SystemExit):
        text = f"SystemExit: the reward called sys.exit({exc.code!r})"
    elif isinstance(exc, MemoryError):
        text = "MemoryError: the reward ran out of memory (the worker's memory limit, or the machine's)"
    else:
        text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    names = tuple(c.__name__ for c in type(exc).__mro__)
    code = getattr(exc, "response", None)
    if isinstance(code, dict):  # botocore ClientError: the AWS error code decides transience
        err = code.get("Error", {}).get("Code")
        if err:
            names += (str(err),)
    return text, names


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def exit_description(exitcode: int | None) -> str:
    """Why a worker died, in words a reward author can act on."""
    if exitcode is None:
        return "the worker process vanished"
    if exitcode < 0:
        name = _signal_name(exitcode)
        hint = {
            "SIGSEGV": " (a segmentation fault: native code in the reward crashed the interpreter)",
            "SIGKILL": " (killed from outside, often the machine's out-of-memory killer)",
            "SIGABRT": " (aborted: a native library failed an assertion)",
        }.get(name, "")
        return f"the worker process died from {name}{hint}"
    return f"the worker process exited with code {exitcode} (the reward called os._exit or the interpreter died)"


# ----------------------------------------------------------------------------------- captured output

OUTPUT_LIMIT = 64 * 1024  # bytes of a reward's output kept for the report; the rest is counted, not kept
_TAIL = 16 * 1024  # last bytes of each worker's output, where a crash leaves its Python stack


class Captured:
    """What a reward wrote to stdout and stderr: the first `limit` bytes kept, every byte counted."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit, self.total, self.head = limit, 0, bytearray()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]

    def text(self) -> str:
        text = self.head.decode("utf-8", errors="replace")
        if self.total > len(self.head):
            text += f"\n[... {self.total - len(self.head):,} more bytes not kept]"
        return text


class Sink(io.TextIOBase):
    """sys.stdout/sys.stderr stand-in while a reward runs in this process: text goes to a Captured."""

    encoding = "utf-8"

    def __init__(self, captured: Captured) -> None:
        self.captured = captured

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.captured.add(text.encode("utf-8", errors="backslashreplace"))
        return len(text)


@contextlib.contextmanager
def python_output_to(captured: Captured) -> Iterator[None]:
    """Send Python-level writes to sys.stdout and sys.stderr into `captured` for the duration."""
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = Sink(captured)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def deep_copy(batch: list[dict]) -> list[dict]:
    """A copy the reward may change at will: the caller's samples stay as they were. pickle copies plain
    JSON data several times faster than copy.deepcopy and keeps every type (numpy scalars included)."""
    try:
        return pickle.loads(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
    except Exception:  # something pickle cannot take (a lambda in metadata): the slow general copy
        return copy.deepcopy(batch)


# --------------------------------------------------------------------------------------- in-process

class _CallTimeout(BaseException):
    """Raised by SIGALRM inside a handler that ran past its time (BaseException: `except Exception` in the
    reward cannot swallow it)."""


class InlineExecutor:
    """Calls the handler in this process: the cheapest path (the local trainer scores every GRPO step here).

    Each call gets a deep copy of its batch (`copy_samples`; off only for nbkit's own graders, which never
    change a sample), so a reward cannot rewrite the caller's samples or the records they share data with.
    Python-level writes to stdout and stderr during the run go to `captured`.

    The per-call timeout is a watchdog: one interval timer (SIGALRM) ticks while the run lasts and raises in
    the handler once the current call is past its deadline, so a call costs no system call. It is enforced
    only in the main thread, only while Python bytecode runs, and within a tenth of the timeout (at most
    1 s) of the deadline; a reward that calls os._exit, segfaults or blocks in native code takes this
    process with it. Use worker processes (workers >= 1) for rewards you do not trust.
    """

    def __init__(self, handler: Callable[[Any, Any], Any], timeout: float | None, context: Any = None,
                 copy_samples: bool = True) -> None:
        self.handler, self.timeout, self.context, self.copy_samples = handler, timeout, context, copy_samples
        self.captured = Captured()
        self.timeout_enforced = bool(
            timeout and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )

    def map(self, batches: Sequence[list[dict]], on_done: OnDone | None = None) -> list[Outcome]:
        handler, context, timer = self.handler, self.context, self.timeout if self.timeout_enforced else 0.0
        copy_samples = self.copy_samples
        outcomes: list[Outcome] = []
        clock = time.perf_counter
        deadline = [math.inf]  # of the call in progress; inf between calls

        def on_alarm(signum: int, frame: Any) -> None:
            if clock() >= deadline[0]:
                deadline[0] = math.inf
                raise _CallTimeout()

        previous, previous_timer = None, (0.0, 0.0)
        if timer:
            previous = signal.signal(signal.SIGALRM, on_alarm)
            tick = min(timer / 10, 1.0)
            previous_timer = signal.setitimer(signal.ITIMER_REAL, tick, tick)
        try:
            with python_output_to(self.captured):
                for c, batch in enumerate(batches):
                    event = deep_copy(batch) if copy_samples else batch
                    start = clock()
                    try:
                        deadline[0] = start + timer if timer else math.inf
                        try:
                            value = handler(event, context)
                        finally:
                            deadline[0] = math.inf
                        outcome = Outcome("returned", value, latency_s=clock() - start)
                    except _CallTimeout:
                        outcome = Outcome("timeout", error=f"the call ran past the {timer:g} s timeout",
                                          latency_s=clock() - start)
                    except KeyboardInterrupt:
                        raise
                    except BaseException as exc:  # SystemExit too: a reward must not end the caller
                        text, names = describe_exception(exc)
                        outcome = Outcome("raised", error=text, error_types=names, latency_s=clock() - start)
                    if on_done:
                        on_done(c, outcome)
                    else:
                        outcomes.append(outcome)
        finally:
            if timer:  # put back whatever alarm the caller had
                signal.setitimer(signal.ITIMER_REAL, *previous_timer)
                signal.signal(signal.SIGALRM, previous)
        return outcomes


# --------------------------------------------------------------------------------- worker processes

def _limit_memory(memory_mb: int | None) -> None:
    """Cap the worker's address space at what it already maps plus `memory_mb`, so a reward that eats memory
    gets a MemoryError instead of the machine's OOM killer (which might pick the notebook)."""
    if not memory_mb:
        return
    try:
        import resource

        with open("/proc/self/statm") as fh:
            mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = mapped + int(memory_mb) * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError, ImportError):  # not Linux: the limit is best effort, isolation still holds
        pass


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    """prctl(2) through ctypes; False where there is none (not Linux) or it fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _children(pid: int) -> list[int]:
    """Live and zombie children of `pid` (Linux /proc; every thread's list, since threads fork too)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:  # no /proc: not Linux, the process group kill at the end is what there is
        return []
    found: list[int] = []
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found.extend(int(c) for c in fh.read().split())
        except FileNotFoundError:
            if os.path.isdir(f"/proc/{pid}/task/{tid}"):  # a kernel without CONFIG_PROC_CHILDREN
                return _scan_children(pid)
        except OSError:  # the thread ended meanwhile
            continue
    return found


def _scan_children(pid: int) -> list[int]:
    """Children of `pid` from every process's stat line: the fallback without /proc/<pid>/task/*/children."""
    out = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _has_children() -> bool:
    """Whether this process has any child, running or not yet reaped: one system call, so the check after
    every call costs next to nothing when the reward started nothing (the usual case)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except (AttributeError, OSError):  # no waitid here: look
        pass
    return True


def kill_descendants() -> int:
    """Kill every process this one started, however deep (this process is their subreaper, so orphans come
    back to it), and reap them; the number killed."""
    me, killed = os.getpid(), 0
    for _ in range(1000):  # each round kills one generation; a fork loop cannot outlast it for long
        if not _has_children():
            break
        children = _children(me)
        if not children:
            break
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
                killed += 1
    return killed


def _die_with_parent(parent_pid: int) -> None:
    """Exit (killing what the reward started) when the parent dies: the kernel sends SIGTERM then (Linux
    parent-death signal), and a watchdog thread checks getppid() each second as the fallback elsewhere."""
    def stop(signum: int, frame: Any) -> None:
        _exit_worker(0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs in the main thread, even mid-call

    signal.signal(signal.SIGTERM, stop)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        _exit_worker(0)
    threading.Thread(target=watch, name="nbkit-parent-watch", daemon=True).start()


def _exit_worker(code: int) -> None:
    """Leave nothing behind: kill the reward's processes (descendants, then the whole group) and exit."""
    with contextlib.suppress(Exception):
        kill_descendants()
    with contextlib.suppress(Exception):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    if os.getpgid(0) == os.getpid():  # only a group we lead: never the caller's, should setpgid have failed
        os.killpg(0, signal.SIGKILL)  # the whole group, this process last of all
    os._exit(code)


def _own_output(output: Any) -> None:
    """Point fds 1 and 2 (and sys.stdout/err, and a crash's stack dump) at the parent's capture pipe."""
    import faulthandler

    fd = output.fileno()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    output.close()
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True)
    faulthandler.enable(file=sys.stderr, all_threads=False)  # the crashing thread: the watchdog is noise


def worker_main(conn: Any, reward: Any, context: Any, memory_mb: int | None, output: Any = None,
                parent_pid: int | None = None, inherited: Sequence[int] = ()) -> None:
    """Loop of a worker process: receive (call id, batch), run the handler, send back what happened.

    The worker leads its own process group and is the subreaper of what the reward starts: after each call
    it kills every process left behind, before answering. It exits when its parent dies (see
    _die_with_parent). `inherited` are descriptors of the parent's it got by fork (its own pipe's other end
    among them) and closes, so a dead parent also reads as end-of-file.
    """
    parent_pid = parent_pid or os.getppid()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent(parent_pid)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    if output is not None:
        _own_output(output)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the notebook stops the parent, which stops us
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    _limit_memory(memory_mb)
    handler = getattr(reward, "handler", reward)
    try:
        conn.send(READY)
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            call_id, batch = message
            start = time.perf_counter()
            reply: tuple[Any, str, Any, str | None, tuple[str, ...], float]
            try:
                value = handler(batch, context)
                reply = (call_id, "returned", value, None, (), time.perf_counter() - start)
            except BaseException as exc:  # everything, SystemExit included, is reported, never fatal
                text, names = describe_exception(exc)
                reply = (call_id, "raised", None, text, names, time.perf_counter() - start)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            kill_descendants()
            try:
                conn.send(reply)
            except Exception as exc:  # the result cannot be pickled: it could not be JSON either
                conn.send((call_id, "unserializable", None,
                           f"the result cannot be serialized ({type(exc).__name__}: {exc})", (), reply[5]))
    finally:
        _exit_worker(0)


class _Worker:
    __slots__ = ("proc", "conn", "out", "eof", "tail", "call", "deadline", "sent", "born", "ready")

    def __init__(self, proc: Any, conn: Any, out: Any) -> None:
        self.proc, self.conn, self.out, self.eof, self.tail = proc, conn, out, False, bytearray()
        self.call: int | None = None  # the batch index in flight
        self.deadline, self.sent = 0.0, 0.0
        self.born, self.ready = time.monotonic(), False  # ready: its READY message has been read

    def arm(self, timeout: float | None, now: float) -> None:
        """Set the call's deadline: `timeout` after the later of sending and the worker being ready; until it
        is ready, STARTUP_S after it was started plus the timeout."""
        if not timeout:
            self.deadline = math.inf
        elif self.ready:
            self.deadline = max(self.sent, now) + timeout
        else:
            self.deadline = self.born + STARTUP_S + timeout


def crash_frames(text: str) -> str:
    """' (in f (file.py:12) <- g (other.py:3))' from a faulthandler dump: the innermost frames up to and
    including the first one outside the standard library and nbkit, or '' when there is no dump."""
    dump = text[text.rfind("Fatal Python error"):] if "Fatal Python error" in text else ""
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', dump)
    shown = []
    for filename, line, func in frames:
        shown.append(f"{func} ({os.path.basename(filename)}:{line})")
        if "site-packages" not in filename and "/lib/python" not in filename and "/nbkit/" not in filename:
            break
    return f" (in {' <- '.join(shown[:4])})" if shown else ""


class ProcessExecutor:
    """Runs calls in `workers` child processes with a hard per-call timeout and a memory limit each.

    A worker that hangs is killed at its deadline (status timeout); one that dies (os._exit, segfault, OOM
    kill) yields a crash outcome for its call; both are replaced by a fresh worker and the run goes on.
    Stopping a worker kills its whole process group, so nothing the reward started survives the run.
    The workers' stdout and stderr go to `captured`. `start_method` defaults to fork where available, so
    rewards defined in a notebook need no pickling.
    """

    def __init__(self, reward: Any, workers: int, timeout: float | None, memory_mb: int | None = 2048,
                 start_method: str | None = None, context: Any = None) -> None:
        import multiprocessing

        if workers < 1:
            raise ValueError(f"workers must be >= 1 for worker processes, got {workers}")
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("fork" if "fork" in methods else "spawn")
        self.forks = method == "fork"
        # The worker checks that its parent is this process; a forkserver's children have the server instead.
        self.parent_pid = os.getpid() if method in ("fork", "spawn") else None
        self.ctx = multiprocessing.get_context(method)
        self.reward, self.workers, self.timeout, self.memory_mb, self.context = reward, workers, timeout, memory_mb, context
        self.replaced = 0
        self.timeout_enforced = bool(timeout)
        self.captured = Captured()
        self.pool: list[_Worker] = []

    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        reader, writer = self.ctx.Pipe(duplex=False)
        # A forked worker holds copies of the parent's descriptors: its pipe's other end and the other
        # workers' ends; it closes them, so none keeps a pipe open for a parent that is gone.
        inherited = [parent.fileno(), reader.fileno()] + [
            fd for w in self.pool if not w.conn.closed for fd in (w.conn.fileno(), w.out.fileno())
        ] if self.forks else []
        # every concrete context has Process; typeshed's get_context(str) returns BaseContext, which lacks it
        proc = self.ctx.Process(target=worker_main, daemon=True, name="nbkit-reward-worker",  # type: ignore[attr-defined]
                                args=(child, self.reward, self.context, self.memory_mb, writer, self.parent_pid,
                                      inherited))
        proc.start()
        with contextlib.suppress(OSError):  # also set here: no window where a kill could miss the group
            os.setpgid(proc.pid, proc.pid)
        child.close()
        writer.close()
        os.set_blocking(reader.fileno(), False)
        return _Worker(proc, parent, reader)

    def _drain(self, w: _Worker) -> None:
        """Move what a worker has written so far (up to 16 MiB a time) from its pipe into `captured`."""
        for _ in range(256):
            try:
                data = os.read(w.out.fileno(), 1 << 16)
            except OSError:  # nothing more for now (EAGAIN), or closed
                return
            if not data:
                w.eof = True
                return
            self.captured.add(data)
            w.tail += data
            del w.tail[:-_TAIL]

    def _stop(self, worker: _Worker, kill: bool) -> None:
        """Stop a worker and every process in its group (what the reward started and left behind)."""
        from multiprocessing.connection import wait

        if not kill:
            with contextlib.suppress(OSError, ValueError):  # already gone: nothing to tell it
                worker.conn.send(None)
            wait([worker.proc.sentinel], timeout=2.0)
        elif worker.proc.exitcode is None:  # SIGTERM first: the worker kills what it started, even outside
            with contextlib.suppress(ProcessLookupError):  # its group, unless stuck in native code
                os.kill(worker.proc.pid, signal.SIGTERM)
            wait([worker.proc.sentinel], timeout=1.0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.proc.pid, signal.SIGKILL)  # before the join: the pid cannot be reused meanwhile
        if worker.proc.is_alive():
            worker.proc.kill()
        worker.proc.join(timeout=2.0)
        self._drain(worker)
        worker.conn.close()
        worker.out.close()

    def map(self, batches: Sequence[list[dict]], on_done: OnDone | None = None) -> list[Outcome]:
        from multiprocessing.connection import wait

        outcomes: list[Outcome | None] = [None] * len(batches)
        pending = deque(range(len(batches)))
        pool = self.pool = []
        for _ in range(min(self.workers, len(batches))):
            pool.append(self._spawn())

        def finish(w: _Worker, outcome: Outcome, replace: bool) -> None:
            call = w.call
            assert call is not None  # only a worker with a call in flight finishes one
            if on_done:
                on_done(call, outcome)
            else:
                outcomes[call] = outcome
            w.call = None
            if replace:
                self._stop(w, kill=True)
                pool[pool.index(w)] = self._spawn()
                self.replaced += 1

        try:
            while pending or any(w.call is not None for w in pool):
                for i, w in enumerate(pool):
                    while w.call is None and pending:
                        idx = pending[0]
                        try:
                            w.conn.send((idx, batches[idx]))
                        except (OSError, ValueError):  # died while idle: replace it and try again
                            self._stop(w, kill=True)
                            w = pool[i] = self._spawn()
                            self.replaced += 1
                            continue
                        pending.popleft()
                        w.call, w.sent = idx, time.monotonic()
                        w.arm(self.timeout, w.sent)
                busy = [w for w in pool if w.call is not None]
                now = time.monotonic()
                wait_s = max(0.0, min(w.deadline for w in busy) - now) if busy else 0.0
                outs = {w.out: w for w in pool if not w.eof}
                ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy] + list(outs),
                                 timeout=None if wait_s == float("inf") else wait_s))
                for out in ready.intersection(outs):
                    self._drain(outs[out])
                now = time.monotonic()
                for w in busy:
                    if w.conn in ready or w.proc.sentinel in ready:
                        self._collect(w, finish)
                    elif now >= w.deadline:
                        error = (f"the call ran past the {self.timeout:g} s timeout; the worker was killed and "
                                 "replaced") if w.ready else (f"the worker process did not start within "
                                                              f"{STARTUP_S:g} s; it was killed and replaced")
                        finish(w, Outcome("timeout", error=error, latency_s=now - w.sent), True)
        finally:
            for w in pool:
                self._stop(w, kill=w.call is not None)
            self.pool = []
        return [] if on_done else cast("list[Outcome]", outcomes)  # every slot is filled by now

    def _collect(self, w: _Worker, finish: Callable[[_Worker, Outcome, bool], None]) -> None:
        """Read a finished call's reply (or the worker's READY, which starts the call's clock), or record the
        crash of a worker that died without one."""
        from multiprocessing.connection import wait

        try:
            while w.conn.poll():
                message = w.conn.recv()
                if message == READY:
                    w.ready = True
                    w.arm(self.timeout, time.monotonic())
                    continue
                call_id, kind, value, error, names, latency = message
                finish(w, Outcome(kind, value, error, tuple(names), latency), False)
                return
            if not wait([w.proc.sentinel], timeout=0):
                return  # only the READY message: the call is under way
        except (EOFError, OSError):
            pass
        except Exception as exc:  # a reply that cannot be unpickled here
            finish(w, Outcome("unserializable", error=f"the result could not be read back ({exc})",
                              latency_s=time.monotonic() - w.sent), True)
            return
        w.proc.join(timeout=1.0)
        self._drain(w)
        where = crash_frames(w.tail.decode("utf-8", errors="replace"))
        finish(w, Outcome("crash", error=exit_description(w.proc.exitcode) + where,
                          latency_s=time.monotonic() - w.sent), True)


# ------------------------------------------------------------------------------------------ threads

class ThreadExecutor:
    """Concurrent calls for remote rewards (a deployed Lambda): `workers` calls in flight at most.

    A call past its timeout is recorded as a timeout and abandoned (its thread ends when the client's own
    read timeout fires); it no longer counts against the concurrency limit.
    """

    def __init__(self, handler: Callable[[Any, Any], Any], workers: int, timeout: float | None,
                 context: Any = None) -> None:
        self.handler, self.workers, self.timeout, self.context = handler, max(1, workers), timeout, context
        self.timeout_enforced = bool(timeout)
        self.abandoned = 0

    def _call(self, idx: int, batch: list[dict], done: queue.Queue) -> None:
        start = time.perf_counter()
        try:
            value = self.handler(batch, self.context)
            done.put((idx, Outcome("returned", value, latency_s=time.perf_counter() - start)))
        except BaseException as exc:  # reported through the outcome, never lost in a thread
            text, names = describe_exception(exc)
            done.put((idx, Outcome("raised", error=text, error_types=names, latency_s=time.perf_counter() - start)))

    def map(self, batches: Sequence[list[dict]], on_done: OnDone | None = None) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batches)
        pending = deque(range(len(batches)))
        inflight: dict[int, float] = {}
        done: queue.Queue = queue.Queue()

        def record(idx: int, outcome: Outcome) -> None:
            del inflight[idx]
            if on_done:
                on_done(idx, outcome)
            else:
                outcomes[idx] = outcome

        while pending or inflight:
            while pending and len(inflight) < self.workers:
                idx = pending.popleft()
                inflight[idx] = time.monotonic()
                threading.Thread(target=self._call, args=(idx, batches[idx], done), daemon=True,
                                 name="nbkit-reward-call").start()
            wait_s = None
            if self.timeout:
                wait_s = max(0.0, min(inflight.values()) + self.timeout - time.monotonic())
            try:
                idx, outcome = done.get(timeout=wait_s)
                if idx in inflight:  # a late answer from an abandoned call is dropped
                    record(idx, outcome)
            except queue.Empty:
                pass
            if self.timeout:
                now = time.monotonic()
                for idx, started in list(inflight.items()):
                    if now - started >= self.timeout:
                        self.abandoned += 1
                        record(idx, Outcome("timeout", error=f"no answer within the {self.timeout:g} s timeout",
                                            latency_s=now - started))
        return [] if on_done else cast("list[Outcome]", outcomes)  # every slot is filled by now
