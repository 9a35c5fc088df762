"""Independent stacks side by side in worker processes (CPU).

At MNIST sizes torch's intra-op threads scale poorly on a few cores, so independent stacks
train faster as single-threaded processes side by side than one after another on all
threads. Measured on the 2-core CPU (docs/benchmarks.md): the reproduction's three phase-1
stacks took 917 s this way against 1238 s one after another. A lone stack gains nothing
from being split across processes (5 TopK SAEs: 433 s split 3 + 2, 432 s whole on two
threads), and neither did the linear probes, so both stay in the calling process. Each
worker loads the data itself (spawned: nothing of the parent's thread pools is shared) and
writes its runs to their directories; the caller reads them back as after training them
itself. CUDA devices keep one process (stacks share the GPU through streams instead).
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from implicit_em.config import RunConfig, from_dict
from implicit_em.train.stacked import CHECKPOINT_EVERY, group_configs

UNWIND_SECONDS = 10.0  # how long a Ctrl-C'd parent waits for its workers to clean up and exit
EXIT_CODE_SECONDS = 2.0  # how long a broken pool's exit codes are read for a signal
RESIGNAL_SECONDS = 0.01  # a swallowed stop signal is sent again this much later (`_unraisable`)
STOP_SECONDS = 5.0  # a worker still alive this long after its stop signal exits anyway (`_watch`)


def stack_cost(cfgs: Sequence[RunConfig]) -> float:
    """Relative CPU time of a stack: each model's `Family.cost` (one model-step, measured on
    the reproduction's stacks) times its epochs."""
    from implicit_em.families import family

    return sum(family(c.model.type).cost * c.training.epochs for c in cfgs)


def plan_stacks(cfgs: list[RunConfig]) -> list[list[int]]:
    """The stacks of `cfgs` (indices), most expensive first: the order that keeps workers
    evenly loaded when each takes the next stack as it becomes free."""
    return sorted(group_configs(cfgs), key=lambda g: -stack_cost([cfgs[i] for i in g]))


class _Stop(BaseException):
    """Raised in a worker by Ctrl-C / SIGTERM, so that a file being written is cleaned up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_training = False  # a stack is training in this worker (not waiting for one)
_stop_pipe = -1  # write end of `_watch`'s pipe: the stop signal's number is written to it


def _quit(signum, frame) -> None:
    """A worker stops on Ctrl-C / SIGTERM without a traceback: the parent reports the
    interrupt in one line. While a stack trains, the first signal unwinds its stack (an
    `atomic_save` in progress removes its temporary file; finished files and the last stack
    checkpoint stay); otherwise, or on a second signal, the worker exits at once. Either way
    the worker ends within `STOP_SECONDS` (`_watch`)."""
    global _training
    if not _training:
        os._exit(128 + signum)
    _training = False
    if _stop_pipe >= 0:
        os.write(_stop_pipe, bytes([signum]))  # no lock taken: safe between any two bytecodes
    raise _Stop(signum)


def _watch(read_fd: int) -> None:
    """The body of a worker's watchdog thread. C code can swallow the `_Stop` that `_quit`
    raised without a trace (an error cleared inside an attribute lookup, say: no
    unraisable hook runs), and training would go on with nobody to stop it. So once a stop
    signal's number arrives on the pipe, this waits `STOP_SECONDS` (unwinding takes
    milliseconds) and, if the worker still lives, prints every thread's stack to stderr
    (`faulthandler`) and exits with the code the unwound worker would have (128 + signum)."""
    signum = os.read(read_fd, 1)[0]
    time.sleep(STOP_SECONDS)
    sys.stderr.write(f"implicit-em worker {os.getpid()}: still running {STOP_SECONDS:g} s "
                     f"after signal {signum}; its threads were:\n")  # fmt: skip
    sys.stderr.flush()
    faulthandler.dump_traceback(all_threads=True)
    os._exit(128 + signum)


def _install_stop_handlers() -> None:
    """Ctrl-C and SIGTERM end this worker (`_quit`, `_unraisable`), within `STOP_SECONDS`
    (`_watch`)."""
    global _stop_pipe
    read_fd, _stop_pipe = os.pipe()
    threading.Thread(target=_watch, args=(read_fd,), name="implicit-em stop watch",
                     daemon=True).start()  # fmt: skip
    signal.signal(signal.SIGINT, _quit)
    signal.signal(signal.SIGTERM, _quit)
    sys.unraisablehook = _unraisable


def _unraisable(info) -> None:
    """sys.unraisablehook of a worker. A `_Stop` that `_quit` raised while a finalizer or a
    callback ran (importlib's module-lock callback, a weakref's) cannot propagate: Python
    would print "Exception ignored in ..." and training would go on. Instead the same signal is
    sent again a moment later (a timer thread), to unwind the stack from ordinary code, with
    the stack marked training again so that it unwinds rather than exits at once. Anything
    else goes to Python's own hook."""
    global _training
    exc = getattr(info, "exc_value", None)
    if isinstance(exc, _Stop):
        _training = True
        threading.Timer(RESIGNAL_SECONDS, os.kill, (os.getpid(), exc.signum)).start()
        return
    sys.__unraisablehook__(info)


def _init_worker(threads: int, counter, lock, jobs: int) -> None:
    _install_stop_handlers()  # first: a Ctrl-C during the imports below ends the worker too
    import torch
    from tqdm.auto import tqdm

    from implicit_em import progress

    with counter.get_lock():  # each worker draws its bars on a line of its own
        progress.set_position(counter.value % jobs)
        counter.value += 1
    tqdm.set_lock(lock)  # one lock across processes: bars and lines do not interleave

    from implicit_em.allocator import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)


def _train_stack(
    cfg_dicts: list[dict], run_dirs: list[str], eval_every: int, checkpoint_every: int,
    show_progress: bool,
) -> None:  # fmt: skip
    from implicit_em.data import load_dataset
    from implicit_em.train.stacked import train_many

    global _training
    _training = True
    try:
        cfgs = [from_dict(d) for d in cfg_dicts]
        data = load_dataset(cfgs[0].data, "cpu")
        train_many(cfgs, data.x_train, data.x_test, run_dirs=run_dirs, device="cpu",
                   progress=show_progress, stacked=True, eval_every=eval_every,
                   checkpoint_every=checkpoint_every)  # fmt: skip
    except _Stop as stop:
        os._exit(128 + stop.signum)
    finally:
        _training = False


def _signal_of(procs) -> int | None:
    """The signal (SIGINT or SIGTERM) that ended one of the worker processes `procs`, read
    from the exit codes: `_quit` exits with 128 + signum; -SIGINT is SIGINT's default action.
    (-SIGTERM is not read as a signal: the broken pool terminates the other workers so.)
    SIGINT wins over SIGTERM; None when no worker ended by either."""
    codes = {proc.exitcode for proc in procs}
    if codes & {128 + signal.SIGINT, -signal.SIGINT}:
        return signal.SIGINT
    if 128 + signal.SIGTERM in codes:
        return signal.SIGTERM
    return None


def train_stacks(
    cfgs: list[RunConfig], run_dirs: list[Path], jobs: int, threads: int, eval_every: int,
    checkpoint_every: int = CHECKPOINT_EVERY, progress: bool = False,
) -> None:  # fmt: skip
    """Train `cfgs` on CPU in `jobs` processes of `threads` threads; each run is saved to its
    directory by the worker that trains it, and each stack checkpoints as in `train_many`.
    progress: each worker shows its stack's bar (`implicit_em.progress`) on a line of its own.
    A worker's exception is raised here."""
    ctx = multiprocessing.get_context("spawn")
    init = (threads, ctx.Value("i", 0), ctx.RLock(), jobs)
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        futures = [
            pool.submit(_train_stack, [cfgs[i].to_dict() for i in g],
                        [str(run_dirs[i]) for i in g], eval_every, checkpoint_every, progress)
            for g in plan_stacks(cfgs)
        ]  # fmt: skip
        try:
            try:
                for f in futures:
                    f.result()
            except BrokenProcessPool as broken:
                # a worker that Ctrl-C / SIGTERM ended can break the pool before the same
                # signal reaches this process's main thread: report it as that signal
                procs = list(getattr(pool, "_processes", {}).values())
                deadline = time.monotonic() + EXIT_CODE_SECONDS
                # the pool's thread may be reaping a worker: its exit code can read None for
                # a moment (multiprocessing's poll), so look again until one shows a signal
                while (signum := _signal_of(procs)) is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt from broken
                if signum == signal.SIGTERM:
                    os.kill(os.getpid(), signal.SIGTERM)  # this process's own SIGTERM action
                raise
        except BaseException as e:  # Ctrl-C, SIGTERM, a failed worker: stop the others now
            procs = list(getattr(pool, "_processes", {}).values())
            if isinstance(e, KeyboardInterrupt):
                # Ctrl-C reaches the whole process group: each worker is already unwinding
                # (removing a half-written checkpoint). A SIGTERM now would be its second
                # signal, which exits at once and leaves the temporary file behind.
                deadline = time.monotonic() + UNWIND_SECONDS
                for proc in procs:
                    proc.join(max(0.0, deadline - time.monotonic()))
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            # shutdown(wait=False) drops the pool's reference to its manager thread, so the
            # `with` block's own shutdown no longer joins it: join it here (bounded). Left
            # running, it closes its wakeup pipe while the interpreter's exit hook
            # (concurrent.futures.process._python_exit) writes to it, an unlocked race in
            # CPython 3.11 that prints "OSError: [Errno 9] Bad file descriptor" at exit.
            manager = getattr(pool, "_executor_manager_thread", None)
            pool.shutdown(wait=False, cancel_futures=True)
            if manager is not None:
                manager.join(UNWIND_SECONDS)
            raise
