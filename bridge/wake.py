"""What wakes the bridge's loop: a new head on the chain, a task's result in Redis, or work one
step left for the next. Without them the loop would sleep a fixed interval between passes, and
every job would wait out those sleeps at each stage.

- `Wakeup`: the flag the loop waits on (with its poll interval as the timeout, so a lost push
  costs at most one interval), and the set of task ids whose results were pushed since the last
  pass, so the dispatcher collects those and not every dispatched job (`changed_tasks`).
- `HeadWatcher`: `eth_subscribe("newHeads")` over the RPC's websocket (ws:// of the same host
  and port, as anvil and geth serve it), falling back to polling `eth_blockNumber`.
- `ResultWatcher`: `PSUBSCRIBE celery-task-meta-*` on Celery's Redis result backend, which
  publishes every state it stores (STARTED, SUCCESS, FAILURE) on the result's key.

The watchers are daemon threads that only poke: every decision stays in the loop, which reads the
ledger and the chain as before, so a watcher that dies or misses a message delays, never loses.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import redis

log = logging.getLogger(__name__)

RESULT_KEY_PREFIX = "celery-task-meta-"  # Celery's Redis backend: key and channel of a result
MAX_PUSHED = 1000  # pushed task ids kept between passes; past that, the pass looks at all of them
SWEEP_S = 5.0  # and it looks at all of them this often anyway (a missed push costs this at most)
RETRY_S = 2.0  # a watcher that lost its connection tries again after this long


class Wakeup:
    """Set by the watchers, waited on by the loop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._tasks: set[str] = set()
        self._flooded = False
        self._swept_at = float("-inf")  # the first pass looks at every job
        self.pushes_on = False  # a ResultWatcher is subscribed: results are pushed

    def poke(self) -> None:
        self._event.set()

    def task_changed(self, task_id: str) -> None:
        with self._lock:
            if len(self._tasks) < MAX_PUSHED:
                self._tasks.add(task_id)
            else:
                self._flooded = True
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Until poked or `timeout`; True when poked."""
        poked = self._event.wait(timeout)
        self._event.clear()
        return poked

    def changed_tasks(self) -> set[str] | None:
        """The task ids pushed since the last call, or None: look at every dispatched job (no
        pushes, too many of them, or the periodic sweep is due)."""
        with self._lock:
            tasks, self._tasks = self._tasks, set()
            flooded, self._flooded = self._flooded, False
        now = time.monotonic()
        if not self.pushes_on or flooded or now - self._swept_at >= SWEEP_S:
            self._swept_at = now
            return None
        return tasks


class _Watcher:
    name = "watcher"

    def __init__(self, wake: Wakeup) -> None:
        self._wake = wake
        self._halt = threading.Event()  # not `_stop`: threading.Thread has a method of that name
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                self._watch()
            except Exception as exc:  # an outage: the loop's own poll keeps the bridge going
                log.debug("%s: %s: %s", self.name, type(exc).__name__, exc)
            self._halt.wait(RETRY_S)

    def _watch(self) -> None:
        raise NotImplementedError


def ws_url_of(rpc_url: str) -> str | None:
    """ws:// (wss://) of an http(s) RPC URL: the same host and port, as anvil and geth serve it."""
    parts = urlsplit(rpc_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme)) if scheme else None


class HeadWatcher(_Watcher):
    """Pokes on every new head: by subscription when the node serves one, else by polling."""

    name = "head-watcher"

    def __init__(self, wake: Wakeup, rpc_url: str, ws_url: str | None, poll_s: float) -> None:
        super().__init__(wake)
        self._rpc_url = rpc_url
        self._ws_url = ws_url if ws_url is not None else ws_url_of(rpc_url)
        self._poll_s = poll_s
        self.subscribed = False

    def _watch(self) -> None:
        if self._ws_url:
            try:
                self._subscribe(self._ws_url)
            except Exception as exc:
                log.info("no newHeads subscription at %s (%s); polling every %.2f s instead",
                         self._ws_url, type(exc).__name__, self._poll_s)
                self._ws_url = None  # don't try again: poll from here on
        if not self._ws_url:
            self._poll()

    def _subscribe(self, url: str) -> None:
        from websockets.sync.client import connect

        with connect(url, open_timeout=5, close_timeout=1) as ws:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                "params": ["newHeads"]}))
            reply = json.loads(ws.recv(timeout=5))
            if "result" not in reply:
                raise ConnectionError(f"eth_subscribe: {reply.get('error')}")
            self.subscribed = True
            log.info("new heads by subscription at %s", url)
            try:
                while not self._halt.is_set():
                    try:
                        ws.recv(timeout=1.0)
                    except TimeoutError:
                        continue
                    self._wake.poke()
            finally:
                self.subscribed = False

    def _poll(self) -> None:
        import httpx

        last = None
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
        with httpx.Client(timeout=10) as client:
            while not self._halt.is_set():
                head = client.post(self._rpc_url, json=payload).json().get("result")
                if head != last:
                    last = head
                    self._wake.poke()
                self._halt.wait(self._poll_s)


class ResultWatcher(_Watcher):
    """Pokes (with the task id) whenever a worker stores a task state in the result backend."""

    name = "result-watcher"

    def __init__(self, wake: Wakeup, redis_url: str) -> None:
        super().__init__(wake)
        self._redis_url = redis_url

    def _watch(self) -> None:
        client = redis.Redis.from_url(self._redis_url, socket_connect_timeout=5)
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.psubscribe(f"{RESULT_KEY_PREFIX}*")
            self._wake.pushes_on = True
            while not self._halt.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                channel = message.get("channel", b"")
                if isinstance(channel, bytes):
                    channel = channel.decode("utf-8", "replace")
                if channel.startswith(RESULT_KEY_PREFIX):
                    self._wake.task_changed(channel[len(RESULT_KEY_PREFIX):])
        finally:
            self._wake.pushes_on = False  # until we are back, every pass looks at every job
            pubsub.close()
            client.close()
