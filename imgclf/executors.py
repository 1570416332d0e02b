"""Where independent tasks (tuning trials, cross-validation folds) run: in this process, in local worker
processes, or on a Dask cluster.

Every executor has the same three-step life:

    with make_executor(jobs=2) as ex:          # or scheduler="tcp://host:8786" / "local:2"
        data = ex.share({"X": X, "y": y})      # shipped to the workers ONCE
        for task, outcome in ex.map_unordered(fn, tasks, data):
            ...                                # outcome.ok, outcome.value, outcome.reason

`fn(task, data)` must be a module-level function (it travels by reference). It should catch its own
expected failures and return them as values; the executor reports only infrastructure failures (a
worker process that died, a task Dask gave up on) as `Outcome(ok=False, reason=...)`, after retrying.

Local workers are started with the `spawn` method and set their thread limits (OMP, OpenBLAS, MKL,
numba) before they import numpy, so that jobs x threads never exceeds the cores. This module imports
neither numpy nor dask at import time for that reason; dask is imported only when a scheduler is asked for.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from collections import deque
from dataclasses import dataclass

from .errors import UsageError

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
MAX_RESHARES = 3  # times a Dask map scatters its data again after losing every replica
DASK_MISSING = "scheduler needs Dask, which is not installed: pip install 'imgclf[dask]'"


@dataclass
class Outcome:
    ok: bool
    value: object = None
    reason: str | None = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """BLAS/numba threads each of `jobs` concurrent workers may use so that jobs x threads <= cores."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, jobs))


def thread_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in THREAD_ENV_VARS}


def make_executor(jobs: int = 1, scheduler: str | None = None, retries: int = 1):
    """The executor for `--jobs N` / `--scheduler tcp://HOST:PORT|local:N`."""
    if scheduler:
        return DaskExecutor(scheduler, retries=retries)
    if jobs < 1:
        raise UsageError(f"jobs must be >= 1, got {jobs}", param="jobs")
    from . import limits

    if jobs > limits.get("workers"):
        raise UsageError(f"jobs {jobs} asks for more worker processes than the limit of {limits.get('workers')} "
                         f"(the core count by default; set IMGCLF_MAX_WORKERS={jobs} to force it)",
                         param="jobs")
    if jobs == 1:
        return SerialExecutor()
    return ProcessExecutor(jobs, retries=retries)


def _indexed_call(item, data):
    _, fn, task = item
    return fn(task, data)


def map_ordered(executor, fn, tasks, data) -> list[Outcome]:
    """All outcomes in task order (e.g. one per cross-validation fold)."""
    items = [(i, fn, task) for i, task in enumerate(tasks)]
    out: list[Outcome | None] = [None] * len(items)
    for (i, _, _), outcome in executor.map_unordered(_indexed_call, items, data):
        out[i] = outcome
    return out


def map_folds(fn, folds, data, *, jobs: int = 1, scheduler: str | None = None) -> list:
    """Run `fn(fold, data)` for every fold and return the values in fold order.

    For `imgclf knn --cv` and the like: `data` (the training arrays) is shipped to the workers once.
    A fold whose worker could not run it raises RuntimeError naming the fold and the reason.
    """
    with make_executor(jobs=jobs, scheduler=scheduler) as ex:
        shared = ex.share(data)
        outcomes = map_ordered(ex, fn, folds, shared)
    for fold, outcome in zip(folds, outcomes):
        if not outcome.ok:
            raise RuntimeError(f"fold {fold!r} failed: {outcome.reason}")
    return [o.value for o in outcomes]


class SerialExecutor:
    """Runs tasks one after another in this process (threads as configured for the process)."""

    description = "in-process"
    workers = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def share(self, data):
        return data

    def map_unordered(self, fn, tasks, data):
        for task in tasks:
            try:
                outcome = Outcome(True, fn(task, data))
            except Exception as exc:  # noqa: BLE001 - reported like a worker failure; Ctrl-C still stops
                outcome = Outcome(False, reason=f"{type(exc).__name__}: {exc}")
            yield task, outcome


# -- local worker processes ---------------------------------------------------------------------------

_DATA_CACHE: dict[str, dict] = {}


def _load_shared(path: str) -> dict:
    """The shared arrays, memory-mapped copy-on-write: workers share the pages, writes stay private."""
    if path not in _DATA_CACHE:
        import numpy as np

        names = sorted(f[:-4] for f in os.listdir(path) if f.endswith(".npy"))
        _DATA_CACHE[path] = {n: np.asarray(np.load(os.path.join(path, n + ".npy"), mmap_mode="c")) for n in names}
    return _DATA_CACHE[path]


def _worker_main(conn, env: dict[str, str]) -> None:
    """A worker's loop. The thread limits go into the environment before anything imports numpy."""
    os.environ.update(env)
    # Ctrl-C reaches the whole process group; the parent decides what to stop, workers just get terminated.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        fn, task, data_path = message
        try:
            data = _load_shared(data_path) if isinstance(data_path, str) else data_path
            reply = Outcome(True, fn(task, data))
        except BaseException as exc:  # noqa: BLE001 - any failure of one task is reported, the worker lives on
            reply = Outcome(False, reason=f"{type(exc).__name__}: {exc}")
        conn.send(reply)


class _Worker:
    def __init__(self, ctx, env):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, env), daemon=True)
        self.process.start()
        child.close()
        self.task = None

    def stop(self, timeout: float = 2.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
        self.conn.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        self.conn.close()


class ProcessExecutor:
    """`jobs` local worker processes (spawned), each limited to cores // jobs BLAS and numba threads.

    Shared data is written once as .npy files in a temporary directory that every worker memory-maps.
    A worker that dies (killed, out of memory, segfault) is replaced and its task retried `retries` times,
    then reported as failed.
    """

    def __init__(self, jobs: int, retries: int = 1, threads: int | None = None):
        import multiprocessing

        self.workers = jobs
        self.retries = retries
        self.threads = threads or threads_per_job(jobs)
        self.env = thread_env(self.threads)
        self.ctx = multiprocessing.get_context("spawn")
        self.description = f"{jobs} local processes x {self.threads} thread(s)"
        self._pool: list[_Worker] = []
        self._tmp: str | None = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(graceful=exc_type is None)
        return False

    def close(self, graceful: bool = True) -> None:
        for w in self._pool:
            w.stop() if graceful and w.task is None else w.kill()
        self._pool = []
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def share(self, data: dict) -> str:
        import numpy as np

        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="imgclf-shared-")
        path = tempfile.mkdtemp(dir=self._tmp)
        for name, arr in data.items():
            np.save(os.path.join(path, f"{name}.npy"), np.ascontiguousarray(arr))
        return path

    def _idle(self) -> _Worker:
        for w in self._pool:
            if w.task is None:
                return w
        w = _Worker(self.ctx, self.env)
        self._pool.append(w)
        return w

    def map_unordered(self, fn, tasks, data):
        from multiprocessing.connection import wait

        pending = deque((task, 0) for task in tasks)
        busy: dict[_Worker, tuple] = {}
        try:
            while pending or busy:
                while pending and len(busy) < self.workers:
                    task, attempt = pending.popleft()
                    worker = self._idle()
                    worker.task = (task, attempt)
                    worker.conn.send((fn, task, data))
                    busy[worker] = worker.task
                ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
                for worker in list(busy):
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    task, attempt = busy.pop(worker)
                    outcome = self._receive(worker)
                    if outcome is not None:
                        worker.task = None
                        yield task, outcome
                        continue
                    # The worker died under this task: replace it, retry the task or give up on it.
                    code = worker.process.exitcode
                    worker.kill()
                    self._pool.remove(worker)
                    if attempt < self.retries:
                        pending.appendleft((task, attempt + 1))
                    else:
                        yield task, Outcome(False, reason=f"worker process died (exit code {code}) "
                                                          f"after {attempt + 1} attempt(s)")
        except BaseException:
            # Ctrl-C or the consumer stopped early: running tasks are abandoned, their workers terminated.
            for worker in list(busy):
                worker.kill()
                self._pool.remove(worker)
            raise

    @staticmethod
    def _receive(worker: _Worker) -> Outcome | None:
        try:
            if worker.conn.poll():
                return worker.conn.recv()
        except (EOFError, OSError):
            return None
        return None


# -- Dask --------------------------------------------------------------------------------------------

def _import_dask():
    try:
        import dask.distributed as dd
    except ImportError:
        raise UsageError(DASK_MISSING, param="scheduler") from None
    return dd


def parse_scheduler(spec: str) -> tuple[str, object]:
    """("local", n_workers) for `local:N`, ("address", "tcp://host:port") for an address."""
    if spec.startswith("local:"):
        try:
            n = int(spec[len("local:"):])
            if n < 1:
                raise ValueError
        except ValueError:
            raise UsageError(f"scheduler local:N needs a worker count >= 1, got {spec!r}", param="scheduler") from None
        from . import limits

        if n > limits.get("workers"):
            raise UsageError(f"scheduler local:{n} asks for more worker processes than the limit of "
                             f"{limits.get('workers')} (the core count by default; set IMGCLF_MAX_WORKERS={n} "
                             "to force it)", param="scheduler")
        return "local", n
    return "address", _check_address(spec)


_SCHEMES = ("tcp", "tls", "ws", "wss", "inproc", "ucx")


def _check_address(spec: str) -> str:
    """tcp://HOST:PORT (or HOST:PORT, or another Dask comm scheme), with a port in range."""
    import urllib.parse

    url = urllib.parse.urlsplit(spec if "://" in spec else f"tcp://{spec}")
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme not in _SCHEMES or not url.hostname or port is None or url.path not in ("", "/"):
        raise UsageError(f"scheduler expects tcp://HOST:PORT or local:N, got {spec!r}", param="scheduler")
    return spec


class DaskExecutor:
    """Tasks on a Dask distributed cluster: an existing scheduler, or `local:N` worker processes here.

    Shared data is scattered to every worker once (broadcast) and passed to tasks as a future. When a
    worker dies, the scheduler reruns its tasks elsewhere (and the nanny restarts the worker); a task Dask
    gives up on (KilledWorker after `distributed.scheduler.allowed-failures` deaths) is resubmitted
    `retries` times, the data scattered again if every replica was lost, then reported with Dask's reason.
    """

    def __init__(self, scheduler: str, retries: int = 1, connect_timeout: float = 10.0):
        mode, target = parse_scheduler(scheduler)
        dd = _import_dask()
        self._dd = dd
        self.retries = retries
        self.cluster = None
        self._payloads = {}
        if mode == "local":
            threads = threads_per_job(target)
            self.cluster = dd.LocalCluster(n_workers=target, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=":0", env=thread_env(threads),
                                           silence_logs=logging.ERROR)
            self.client = dd.Client(self.cluster)
            self.description = f"Dask LocalCluster, {target} worker processes x {threads} thread(s)"
        else:
            try:
                self.client = dd.Client(target, timeout=connect_timeout)
            except (OSError, ValueError, TypeError) as exc:
                raise UsageError(f"cannot reach the Dask scheduler at {target}: {exc}") from None
            self.description = f"Dask cluster at {target}"
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def share(self, data):
        [future] = self.client.scatter([data], broadcast=True, hash=False)
        self._payloads[future.key] = data
        return future

    def _lost(self, shared) -> bool:
        """True when no worker holds the shared data any more (every worker holding it died)."""
        return shared.cancelled() or not self.client.who_has([shared.key]).get(shared.key)

    def _scatter_again(self, lost):
        """A fresh replica of lost shared data; the workers may still be restarting, so try a few times."""
        for wait in (0.5, 1.0, 2.0):
            try:
                return self.share(self._payloads[lost.key])
            except Exception:  # noqa: BLE001 - a closed connection to a dying worker, or no worker yet
                time.sleep(wait)
        return lost

    def map_unordered(self, fn, tasks, data):
        futures = {}
        state = {"data": data, "reshares": 0}

        def submit(task, attempt):
            fut = self.client.submit(fn, task, state["data"], pure=False)
            futures[fut] = (task, attempt, state["data"])
            return fut

        for task in tasks:
            submit(task, 0)
        done = self._dd.as_completed(list(futures))
        try:
            for fut in done:
                task, attempt, used = futures.pop(fut)
                try:
                    outcome = Outcome(True, fut.result())
                except Exception as exc:  # noqa: BLE001 - KilledWorker, lost data, task errors: all reported
                    # A task that failed because its data was lost is not at fault: scatter the data again
                    # (a bounded number of times) and rerun it without counting an attempt.
                    innocent = (used is not state["data"] or isinstance(exc, self._dd.CancelledError)
                                or self._lost(used))
                    if innocent and used is state["data"] and state["reshares"] < MAX_RESHARES:
                        state["reshares"] += 1
                        state["data"] = self._scatter_again(used)
                    if innocent and used is not state["data"]:
                        done.add(submit(task, attempt))
                        continue
                    if attempt < self.retries:
                        done.add(submit(task, attempt + 1))
                        continue
                    outcome = Outcome(False, reason=f"{type(exc).__name__}: {exc} (attempt {attempt + 1})")
                yield task, outcome
        finally:
            if futures:
                self.client.cancel(list(futures))
