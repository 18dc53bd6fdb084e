"""The engine in a process of its own, so the node's ROS threads and the training thread stop
sharing one interpreter lock (issue 11; docs/architecture.md "Threading and process model").

:class:`EngineProcess` starts a child process (``multiprocessing`` *spawn*: a fresh interpreter
with its own CUDA context) that builds the Mapper from the node's parameters
(:func:`~semnerf_ros.bridge.engine_setup.make_mapper`, warm-up included) and serves the node's
calls (:class:`~semnerf_ros.bridge.mapper_api.MapperAPI`) over a socket (:class:`Channel`).  Each call is pickled
(a 320x240 frame with depth is ~0.9 MB of arrays), run by a worker thread of the child -- so a
mesh extraction or a save does not hold up frames and views, exactly as the in-process Mapper's
threads do -- and its result or exception is sent back.  A mesh extraction's ``cancel`` callable
stays in the node's process: polled there, and a cancel message sets the child's flag; its
``progress`` callback receives the child's stage reports.  Views come back without the class
probabilities (``Mapper.render(with_probs=False)``: the node publishes labels and entropy).

The child ignores SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole process group): the
node's orderly shutdown still needs it to stop training and save the map.  It ends when the node
calls :meth:`EngineProcess.close` or when the socket closes (the node's process ended, even by
SIGKILL).  If the child dies, every pending and later call raises :class:`EngineProcessError`
naming its exit code.

Nothing here imports ``rclpy``; the same class serves any client of the engine.
"""
from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import torch

from ..engine.mapper import FrameDecision
from ..logs import dump_stacks_on_sigusr1

log = logging.getLogger("semnerf_ros.engine_process")

#: the Mapper's methods the child serves (MapperAPI, plus warmup)
METHODS = frozenset({"add_frame", "render", "extract_mesh", "stats", "start", "pause", "resume",
                     "stop", "save", "load_state", "reset", "warmup"})
#: worker threads of the child: calls run side by side as the node's threads call them
WORKERS = 8
#: seconds between two looks at a mesh extraction's ``cancel`` callable in the node's process
CANCEL_POLL_S = 0.1
#: seconds the child may take to build the engine and warm it up (kernel compilation: ~10 s on a GPU)
START_TIMEOUT_S = 600.0
#: seconds :meth:`EngineProcess.close` waits for the child to end before terminating it
CLOSE_TIMEOUT_S = 10.0
#: socket buffer asked for each direction (the kernel caps it at net.core.wmem_max / rmem_max)
SOCKET_BUFFER_BYTES = 4 << 20


class EngineProcessError(RuntimeError):
    """The engine process could not start, or ended while the node still needed it."""


class Channel:
    """Length-prefixed pickled messages over the socket of a ``multiprocessing`` pipe.

    Why not ``Connection.send`` / ``recv``: they move a large message in socket-buffer-sized
    chunks, and a process whose interpreter lock is busy (the engine's training thread) takes the
    lock back after every chunk.  Measured with a busy thread in the child, a 320x240 frame's call
    took 12 ms that way.  Here a message is received in one system call (``MSG_WAITALL``) however
    large it is, and the socket buffers are enlarged where the kernel allows it."""

    HEADER = struct.Struct("!Q")

    def __init__(self, conn):
        self._sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
            except OSError:   # keep the default size
                pass
        self._send_lock = threading.Lock()

    def send(self, obj) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self._sock.sendall(self.HEADER.pack(len(data)))
            self._sock.sendall(data)

    def _recv_exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self._sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
            if k == 0:
                raise EOFError("the other process closed the channel")
            got += k
        return buf

    def recv(self):
        (n,) = self.HEADER.unpack(self._recv_exact(self.HEADER.size))
        return pickle.loads(self._recv_exact(n))

    def poll(self, timeout: float) -> bool:
        return bool(select.select([self._sock], [], [], timeout)[0])

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles (the node then sees the engine's own exception class), else a
    RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception that does not survive pickling
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def serve(conn, factory: Callable, values: dict, num_classes: int, class_names: Optional[list]) -> None:
    """The child's main function: build the engine with ``factory`` (``make_mapper``), then serve
    calls until ``close`` or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    dump_stacks_on_sigusr1()   # to stderr: the node's log
    channel = Channel(conn)
    send = channel.send

    try:
        mapper = factory(values, num_classes, class_names, lambda text: send(("info", text)))
    except BaseException as exc:  # noqa: BLE001 - reported to the node, which raises it
        send(("failed", _sendable(exc)))
        return
    send(("ready", str(mapper.device), float(mapper.cfg["mapper"]["switch_interval_ms"])))
    cancels: dict = {}

    def add_frame(frame):
        """The node's intake in the child: a frame that cannot be a keyframe is turned away
        without the map lock (``screen_frame``), so 30 Hz of them do not make training yield."""
        reason = mapper.screen_frame(frame)
        return FrameDecision(False, reason) if reason is not None else mapper.add_frame(frame)

    def run(call_id: int, method: str, args: tuple, kwargs: dict) -> None:
        try:
            result = add_frame(*args) if method == "add_frame" else getattr(mapper, method)(*args, **kwargs)
            reply = ("result", call_id, result)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = ("error", call_id, _sendable(exc))
        finally:
            cancels.pop(call_id, None)
        try:
            send(reply)
        except Exception as exc:  # noqa: BLE001 - a result that does not pickle
            send(("error", call_id, RuntimeError(f"the engine's reply to {method} could not be sent: {exc}")))

    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="semnerf-engine-call")
    try:
        while True:
            try:
                msg = channel.recv()
            except (EOFError, OSError):   # the node's process is gone
                break
            if msg[0] == "close":
                break
            if msg[0] == "cancel":
                flag = cancels.get(msg[1])
                if flag is not None:
                    flag.set()
                continue
            _, call_id, method, args, kwargs = msg
            if method not in METHODS:
                send(("error", call_id, AttributeError(f"the engine process serves no method {method!r}")))
                continue
            if method == "extract_mesh":
                flag = cancels[call_id] = threading.Event()
                kwargs["cancel"] = flag.is_set
                if kwargs.pop("progress", False):
                    kwargs["progress"] = (lambda i: lambda stage, done, total:
                                          send(("progress", i, stage, done, total)))(call_id)
            pool.submit(run, call_id, method, args, kwargs)
    finally:
        for flag in list(cancels.values()):
            flag.set()
        try:
            mapper.stop(timeout=CLOSE_TIMEOUT_S / 2)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


class _Call:
    __slots__ = ("done", "result", "error", "progress")

    def __init__(self, progress: Optional[Callable] = None):
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.progress = progress


class EngineProcess:
    """The node's engine (a :class:`~semnerf_ros.bridge.mapper_api.MapperAPI`) running in a child
    process; see the module docstring.  ``factory`` builds it there from the other arguments
    (:func:`~semnerf_ros.bridge.engine_setup.make_mapper`: a module-level function, so the child
    can import it); ``info`` receives the child's start-up lines.  Raises what ``factory`` raises
    (e.g. ``ParameterValueError``) or :class:`EngineProcessError` when the child cannot start."""

    def __init__(self, factory: Callable, values: dict, num_classes: int, class_names: Optional[list],
                 info: Callable[[str], object], start_timeout: float = START_TIMEOUT_S):
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(target=serve, args=(child_conn, factory, dict(values), num_classes, class_names),
                                 name="semnerf-engine", daemon=True)
        self._proc.start()
        child_conn.close()
        self._conn = Channel(parent_conn)
        self._pending: dict = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False
        self._failure: Optional[str] = None
        device, switch_interval_ms = self._wait_ready(info, start_timeout)
        self.device = torch.device(device)
        if switch_interval_ms > 0 and self.device.type == "cuda":
            # The node's own threads (executor, intake, this reader) hand the interpreter lock to
            # each other as the engine's threads do in its process: at Python's 5 ms default, a
            # thread back from a system call waits for the lock behind whichever thread holds it.
            sys.setswitchinterval(switch_interval_ms / 1000.0)
        self.pid = self._proc.pid
        self._reader = threading.Thread(target=self._read, name="semnerf-engine-reader", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ plumbing
    def _wait_ready(self, info, timeout: float) -> tuple:
        """(device, switch_interval_ms) of the engine, once the child has built it."""
        while True:
            if not self._conn.poll(timeout):
                self._proc.terminate()
                raise EngineProcessError(f"the engine process did not start within {timeout:.0f} s")
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                self._proc.join(1.0)
                raise EngineProcessError(f"the engine process ended while starting (exit code "
                                         f"{self._proc.exitcode})") from None
            if msg[0] == "info":
                info(msg[1])
            elif msg[0] == "failed":
                self._proc.join(CLOSE_TIMEOUT_S)
                raise msg[1]
            elif msg[0] == "ready":
                return msg[1], msg[2]

    def _read(self) -> None:
        """Replies from the child to the waiting calls, until the pipe closes."""
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            kind, call_id = msg[0], msg[1]
            with self._pending_lock:   # a progress report leaves the call waiting, a reply ends it
                call = self._pending.get(call_id) if kind == "progress" else self._pending.pop(call_id, None)
            if call is None:
                continue
            if kind == "progress":
                if call.progress is not None:
                    try:
                        call.progress(*msg[2:])
                    except Exception:  # noqa: BLE001 - a progress display must not end the reader
                        log.debug("progress callback failed", exc_info=True)
                continue
            if kind == "error":
                call.error = msg[2]
            else:
                call.result = msg[2]
            call.done.set()
        self._proc.join(1.0)
        code = self._proc.exitcode
        failure = ("the engine process was closed" if self._closed else
                   f"the engine process ended unexpectedly (exit code {code})")
        if not self._closed:
            log.error("%s; the map it held is lost", failure)
        with self._pending_lock:   # set under the lock: a call either sees it or is answered below
            self._failure = failure
            pending, self._pending = list(self._pending.values()), {}
        for call in pending:
            call.error = EngineProcessError(self._failure)
            call.done.set()

    def _send(self, msg) -> None:
        try:
            self._conn.send(msg)
        except (OSError, ValueError) as exc:   # closed pipe
            raise EngineProcessError(self._failure or f"the engine process cannot be reached: {exc}") from exc

    def _call(self, method: str, *args, _cancel: Optional[Callable[[], bool]] = None,
              _progress: Optional[Callable] = None, **kwargs):
        """Run ``method`` in the child and wait for it; ``_cancel`` is polled meanwhile (a true
        answer is passed on once), ``_progress`` receives the child's progress reports."""
        call = _Call(_progress)
        call_id = next(self._ids)
        with self._pending_lock:   # the reader sets the failure under this lock: seen here, or answered there
            if self._failure is not None:
                raise EngineProcessError(self._failure)
            self._pending[call_id] = call
        try:
            self._send(("call", call_id, method, args, kwargs))
        except EngineProcessError:
            with self._pending_lock:
                self._pending.pop(call_id, None)
            raise
        while _cancel is not None and not call.done.wait(CANCEL_POLL_S):
            if _cancel():
                self._send(("cancel", call_id))
                _cancel = None
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    @property
    def alive(self) -> bool:
        return self._failure is None and self._proc.is_alive()

    # ------------------------------------------------------------------ MapperAPI
    def add_frame(self, frame):
        return self._call("add_frame", frame)

    def screen_frame(self, frame):
        """None: every frame goes on to :meth:`add_frame`, whose call in the child screens it first
        (without the map lock) and keeps it if it is a keyframe.  Screening here would cost the
        frame's transfer twice, and the node screens in its executor thread, which must not wait
        for the engine's process."""
        return None

    def render(self, pose, intrinsics, scale: float = 1.0, with_probs: bool = False):
        """A view; class probabilities (``probs``) only when asked for (a 320x240 view's are ~9 MB
        through the pipe, and the node publishes labels and entropy)."""
        return self._call("render", pose, intrinsics, scale, with_probs=bool(with_probs))

    def extract_mesh(self, resolution: int = 256, density_threshold: Optional[float] = None, *,
                     cancel: Optional[Callable[[], bool]] = None, chunk: Optional[int] = None,
                     progress: Any = False, observed_only: bool = False):
        callback = progress if callable(progress) else None
        options = {"chunk": chunk} if chunk else {}
        return self._call("extract_mesh", resolution, density_threshold, _cancel=cancel, _progress=callback,
                          progress=callback is not None, observed_only=observed_only, **options)

    def stats(self) -> dict:
        return self._call("stats")

    def warmup(self) -> float:
        return self._call("warmup")

    def start(self) -> None:
        self._call("start")

    def pause(self) -> None:
        self._call("pause")

    def resume(self) -> None:
        self._call("resume")

    def stop(self, timeout: float = 5.0) -> bool:
        if self._failure is not None:
            return True   # nothing runs any more
        return self._call("stop", timeout)

    def save(self, path):
        return self._call("save", path)

    def load_state(self, path):
        return self._call("load_state", path)

    def reset(self) -> None:
        self._call("reset")

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the child (training stopped, its GPU memory released with it); idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._conn.send(("close",))
        except (OSError, ValueError):
            pass
        self._proc.join(timeout)
        if self._proc.is_alive():
            log.warning("the engine process did not end within %.0f s; terminating it", timeout)
            self._proc.terminate()
            self._proc.join(2.0)
        self._conn.close()
