"""Coverage-guided fuzzing (atheris / libFuzzer) of the parsers that read a stranger's bytes.

Targets, and the only outcomes each may have:
- `spec`: `protocol.spec.parse_spec(text)` → a JobSpec or a SpecError.
- `jobfile`: `cod.jobfile.parse_job_document(text)` then `finish` → a spec, or a JobFileError /
  SpecError.
- `logs`: `bridge.events` decoding of a raw `JobRequested` log → a NewJob or an
  UndecodableRequest, never an exception.

Each input picks a mode from its first byte: the raw bytes as text (invalid UTF-8 becomes lone
surrogates), a generated document (random shapes and types, 5,000-digit integers, 3,000-deep
nesting, `\\ud800` escapes, YAML aliases and tags), or a mutated valid document. libFuzzer's
mutations and coverage feedback do the rest.

    python -m bench.fuzz --target all --runs 1000000
    python -m bench.fuzz --target spec --reproduce crash-file

Anything else a target raises is a crash: counted, its input saved, its traceback printed once per
place; the run goes on. The exit status is 1 if any target crashed (or libFuzzer stopped on a
timeout or out of memory), else 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS = ("spec", "jobfile", "logs")
_STATS = struct.Struct("<QQ")  # inputs run, crashes — shared with the parent through an mmap
_SPEC_KEYS = ("engine", "image", "entrypoint", "env", "workdir", "inputs", "outputs", "resources",
              "network", "timeout", "queue_timeout", "cache", "source", "target", "name", "path",
              "cpu", "memory", "disk", "gpu")
_BACALHAU_KEYS = ("Type", "Count", "Tasks", "Engine", "Params", "Image", "Entrypoint", "Parameters",
                  "EnvironmentVariables", "WorkingDirectory", "InputSources", "Source", "Target",
                  "CID", "URL", "Path", "ResultPaths", "Name", "Resources", "CPU", "Memory", "GPU",
                  "Network", "Domains", "Timeouts", "ExecutionTimeout", "Publisher", "Env", "Meta",
                  "Job", "EntryModule", "Constraints", "Labels")
_SEED_SPEC = {"engine": "docker", "image": "cod/busybox:latest", "entrypoint": ["sh", "-c", "echo"],
              "env": {"A": "1"}, "inputs": [{"source": "ipfs://bafkqaaa", "target": "/inputs/a"}],
              "outputs": [{"name": "outputs", "path": "/outputs"}],
              "resources": {"cpu": 0.5, "memory": "64Mi", "disk": "1Gi", "gpu": 0},
              "network": "none", "timeout": 60, "queue_timeout": 30, "cache": False}
_SEED_BACALHAU = """Type: batch
Count: 1
Tasks:
  - Name: main
    Engine:
      Type: docker
      Params:
        Image: cod/busybox:latest
        Entrypoint: [sh, -c]
        Parameters: [echo hi]
        EnvironmentVariables: [A=1]
    InputSources:
      - Target: /inputs/a
        Source: {Type: ipfs, Params: {CID: bafkqaaa}}
    ResultPaths: [{Name: outputs, Path: /outputs}]
    Resources: {CPU: 500m, Memory: 64Mi}
    Network: {Type: None}
    Timeouts: {ExecutionTimeout: 60}
"""


# ------------------------------------------------------------------------------- input generation

def _value(fdp: Any, keys: tuple[str, ...], depth: int = 0) -> Any:
    """A random JSON-able value: mostly small, sometimes pathological."""
    kind = fdp.ConsumeIntInRange(0, 11 if depth < 6 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 16))
    if kind == 3:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.PickValueInList(
            [float("nan"), float("inf"), -float("inf"), 1e308, 5e-324, -0.0])
    if kind in (4, 5):
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    if kind == 6:
        return fdp.PickValueInList(["ipfs://bafkqaaa", "https://127.0.0.1/x", "data:,hi", "/x/../y",
                                    "512Mi", "1e999", "9" * 5000, "\x00", "docker", "wasm",
                                    "full", "none", "cod/busybox:latest", "-1"])
    if kind in (7, 8):
        return [_value(fdp, keys, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return {(fdp.PickValueInList(list(keys)) if fdp.ConsumeProbability() < 0.8
             else fdp.ConsumeUnicode(8)): _value(fdp, keys, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 6))}


def _pathological(fdp: Any, yaml_flavour: bool) -> str:
    """The shapes that broke parsers before: huge numbers, deep nesting, surrogates, bombs."""
    depth: int = fdp.ConsumeIntInRange(500, 6000)
    field = fdp.PickValueInList(["timeout", "cpu", "gpu", "env", "inputs", "resources", "image"])
    choice = fdp.ConsumeIntInRange(0, 9 if yaml_flavour else 6)
    if choice == 0:
        return f'{{"image": "x", "{field}": {"9" * fdp.ConsumeIntInRange(4000, 6000)}}}'
    if choice == 1:
        return f'{{"image": "x", "{field}": {"[" * depth}{"]" * depth}}}'
    if choice == 2:
        return "[" * depth + "]" * depth if fdp.ConsumeBool() else '{"a":' * depth + "1" + "}" * depth
    if choice == 3:
        return '{"image": "\\ud800", "env": {"A": "\\udfff\\ud800"}, "entrypoint": ["\\udc00"]}'
    if choice == 4:
        return f'{{"image": "x", "{field}": 1e{"9" * fdp.ConsumeIntInRange(1, 400)}}}'
    if choice == 5:
        return f'{{"image": "x", "timeout": -{"1" * fdp.ConsumeIntInRange(1, 30)}}}'
    if choice == 6:
        return '{"image": "x", "resources": {"memory": "' + "9" * depth + 'Ti"}}'
    if choice == 7:  # a billion laughs: aliases that expand exponentially
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
        return "\n".join(lines) + "\nimage: *a11\n"
    if choice == 8:
        return str(fdp.PickValueInList(["image: 2020-13-45\n", "image: !!binary aGVsbG8=\n",
                                    "image: !!set {a, b}\n", "image: !!python/object:os.system x\n",
                                    "? [a, b]\n: x\n", "1: a\nb: c\n", "image: !!timestamp x\n"]))
    return "- " * min(depth, 3000) + "x\n"


def _mutate(fdp: Any, text: str) -> str:
    data = bytearray(text.encode())
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        if not data:
            break
        at = fdp.ConsumeIntInRange(0, len(data) - 1)
        op = fdp.ConsumeIntInRange(0, 2)
        if op == 0:
            data[at] = fdp.ConsumeInt(1) & 0xFF
        elif op == 1:
            del data[at: at + fdp.ConsumeIntInRange(1, 16)]
        else:
            data[at:at] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
    return data.decode("utf-8", "surrogateescape")


def _text(data: bytes, keys: tuple[str, ...], seed: str, yaml_flavour: bool) -> str:
    import atheris

    mode = data[0] % 4 if data else 0
    if mode == 0:  # the bytes themselves: invalid UTF-8 turns into lone surrogates
        return data[1:].decode("utf-8", "surrogateescape")
    fdp = atheris.FuzzedDataProvider(data[1:])
    if mode == 1:
        document = _value(fdp, keys)
        if fdp.ConsumeBool() and isinstance(document, dict):
            document = {**(json.loads(seed) if seed.startswith("{") else {}), **document}
        if yaml_flavour and fdp.ConsumeBool():
            import yaml

            return yaml.safe_dump(document, allow_unicode=fdp.ConsumeBool())
        return json.dumps(document, ensure_ascii=fdp.ConsumeBool())
    if mode == 2:
        return _pathological(fdp, yaml_flavour)
    return _mutate(fdp, seed)


# ----------------------------------------------------------------------------------------- targets

def _spec_target() -> tuple[Callable[[bytes], None], tuple[type[BaseException], ...]]:
    from protocol.spec import SpecError, parse_spec

    seed = json.dumps(_SEED_SPEC)

    def one(data: bytes) -> None:
        parse_spec(_text(data, _SPEC_KEYS, seed, yaml_flavour=False))
    return one, (SpecError,)


def _jobfile_target() -> tuple[Callable[[bytes], None], tuple[type[BaseException], ...]]:
    from cod.jobfile import JobFileError, finish, parse_job_document
    from protocol.spec import SpecError

    def one(data: bytes) -> None:
        seed = _SEED_BACALHAU if data[-1:] != b"c" else json.dumps(_SEED_SPEC)
        draft = parse_job_document(_text(data, _BACALHAU_KEYS + _SPEC_KEYS, seed, True),
                                   {"name": "value"})
        draft.local_inputs()
        finish(draft)
    return one, (JobFileError, SpecError)


def _logs_target() -> tuple[Callable[[bytes], None], tuple[type[BaseException], ...]]:
    import atheris
    from eth_abi.abi import encode

    from bridge import events
    from bridge.chain import load_artifact

    abi = load_artifact("JobManager")["abi"]
    decoder = events.RequestDecoder.from_abi(abi)
    decode: Callable[[dict[str, Any]], object] = decoder.decode
    if hasattr(events, "decode_request"):  # the module's own entry point, once it has one
        from web3 import Web3

        contract = Web3().eth.contract(address=Web3.to_checksum_address("0x" + "11" * 20), abi=abi)
        decode = lambda raw: events.decode_request(contract, raw)  # noqa: E731

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        topics = [decoder.topic if fdp.ConsumeProbability() < 0.9 else fdp.ConsumeBytes(32)]
        topics += [fdp.ConsumeBytes(32).rjust(32, b"\0")
                   for _ in range(fdp.PickValueInList([3, 3, 3, 0, 1, 2, 4]))]
        if fdp.ConsumeBool():  # a well-formed encoding of hostile values, maybe cut or patched
            values = [_abi_value(fdp, t) for t in decoder.types]
            payload = bytearray(encode(list(decoder.types), values))
            for _ in range(fdp.ConsumeIntInRange(0, 3)):
                if payload:
                    payload[fdp.ConsumeIntInRange(0, len(payload) - 1)] = fdp.ConsumeInt(1) & 0xFF
            payload = payload[: fdp.ConsumeIntInRange(0, len(payload))] if fdp.ConsumeBool() \
                else payload
        else:
            payload = bytearray(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600)))
        raw = {"address": "0x" + "11" * 20, "topics": topics, "data": bytes(payload),
               "blockNumber": fdp.ConsumeIntInRange(0, 2**40), "blockHash": fdp.ConsumeBytes(32),
               "transactionHash": fdp.ConsumeBytes(32), "logIndex": fdp.ConsumeIntInRange(0, 999),
               "removed": False}
        decode(raw)
    return one, ()


def _abi_value(fdp: Any, kind: str) -> Any:
    """A value of ABI type `kind` at the edges of its range (a tuple `(a,b,…)` field by field)."""
    if kind.startswith("(") and kind.endswith(")"):
        return tuple(_abi_value(fdp, inner) for inner in _split_tuple(kind[1:-1]))
    if kind in ("bytes", "string"):
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    if kind.startswith(("uint", "int")):
        bits = int(kind.lstrip("uint") or 256)
        top = 2**bits - 1 if kind.startswith("uint") else 2 ** (bits - 1) - 1
        low = 0 if kind.startswith("uint") else -top - 1
        return fdp.PickValueInList([low, top, fdp.ConsumeIntInRange(low, top)])
    if kind.startswith("bytes"):
        size = int(kind.removeprefix("bytes"))
        return fdp.ConsumeBytes(size).ljust(size, b"\0")
    if kind == "address":
        return "0x" + fdp.ConsumeBytes(20).ljust(20, b"\0").hex()
    if kind == "bool":
        return fdp.ConsumeBool()
    raise ValueError(f"the fuzzer does not generate ABI type {kind}: add it")


def _split_tuple(inner: str) -> list[str]:
    """The component types of a tuple's inside, split at its top-level commas."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(inner[start:index])
            start = index + 1
    parts.append(inner[start:])
    return [part for part in parts if part]


_FACTORIES = {"spec": _spec_target, "jobfile": _jobfile_target, "logs": _logs_target}


def _seeds(target: str) -> list[bytes]:
    """Each mode once, plus the documented attacks as raw text (mode 0)."""
    raw = [json.dumps(_SEED_SPEC), '{"image": "x", "timeout": ' + "9" * 5000 + "}",
           "[" * 3000 + "]" * 3000, '{"image": "\\ud800"}', _SEED_BACALHAU]
    seeds = [b"\x00" + text.encode() for text in raw]
    seeds += [b"\x00" + b'{"image": "\xff\xfe"}', bytes(range(1, 64)), b"\x02" + bytes(64),
              b"\x03" + os.urandom(32)]
    return seeds if target != "logs" else [bytes(200), os.urandom(200), b"\xff" * 200]


# ------------------------------------------------------------------------------------- the child

def _child(target: str, runs: int, stats_path: Path, crash_dir: Path, timeout_s: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["protocol.spec", "cod.jobfile", "bridge.events"]):
        one, allowed = _FACTORIES[target]()
    stats = mmap.mmap(os.open(stats_path, os.O_RDWR), _STATS.size)
    counters = [0, 0]
    places: set[str] = set()

    def test_one(data: bytes) -> None:
        counters[0] += 1
        try:
            one(data)
        except allowed:
            pass
        except Exception as exc:
            counters[1] += 1
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            place = f"{type(exc).__name__} at {frame.filename}:{frame.lineno}"
            if place not in places and len(places) < 20:
                places.add(place)
                path = crash_dir / f"{target}-{hashlib.sha1(data).hexdigest()[:16]}"
                path.write_bytes(data)
                print(f"CRASH {target}: {place}: {str(exc)[:300]}\n  reproduce: "
                      f"{sys.executable} -m bench.fuzz --target {target} --reproduce {path}",
                      flush=True)
        _STATS.pack_into(stats, 0, counters[0], counters[1])

    corpus = Path(tempfile.mkdtemp(prefix=f"cod-fuzz-{target}-"))
    for i, seed in enumerate(_seeds(target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-timeout={timeout_s}", "-rss_limit_mb=3072",
                   "-max_len=8192", "-print_final_stats=0", f"-artifact_prefix={crash_dir}/",
                   str(corpus)], test_one)
    atheris.Fuzz()


def _reproduce(target: str, path: Path) -> int:
    one, allowed = _FACTORIES[target]()
    try:
        one(path.read_bytes())
    except allowed as exc:
        print(f"no crash: {type(exc).__name__}: {str(exc)[:300]}")
        return 0
    print("no crash: accepted")
    return 0


# ------------------------------------------------------------------------------------ the parent

def _run(target: str, runs: int, crash_dir: Path, timeout_s: int) -> tuple[int, int, float, int]:
    """Fuzz one target in a child process; (inputs, crashes, seconds, exit status)."""
    fd, name = tempfile.mkstemp(prefix="cod-fuzz-stats-")
    os.write(fd, bytes(_STATS.size))
    os.close(fd)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bench.fuzz", "--target", target, "--runs",
                           str(runs), "--child", name, "--crash-dir", str(crash_dir),
                           "--timeout", str(timeout_s)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.monotonic() - started
    inputs, crashes = _STATS.unpack(Path(name).read_bytes()[: _STATS.size])
    os.unlink(name)
    for line in done.stdout.splitlines():
        if line.startswith(("CRASH", "  reproduce", "==", "SUMMARY", "artifact_prefix")) or \
                "deadly signal" in line or "Test unit written" in line:
            print(line)
    if done.returncode != 0:  # libFuzzer stopped: a timeout or out of memory is a crash too
        crashes += 1
        print(f"{target}: libFuzzer exited with {done.returncode}; its output:\n"
              + "\n".join(done.stdout.splitlines()[-15:]))
    return inputs, crashes, elapsed, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs in total (all targets)")
    parser.add_argument("--crash-dir", type=Path, default=Path("bench/results/fuzz-crashes"))
    parser.add_argument("--timeout", type=int, default=20, help="seconds one input may take")
    parser.add_argument("--reproduce", type=Path, help="run one saved input and show what it does")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reproduce:
        return _reproduce(args.target, args.reproduce)
    args.crash_dir = args.crash_dir.resolve()
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    if args.child:
        _child(args.target, args.runs, Path(args.child), args.crash_dir, args.timeout)
        return 0
    targets = TARGETS if args.target == "all" else (args.target,)
    share = -(-args.runs // len(targets))
    total_inputs, total_crashes, total_s = 0, 0, 0.0
    for target in targets:
        inputs, crashes, elapsed, _status = _run(target, share, args.crash_dir, args.timeout)
        total_inputs, total_crashes, total_s = (total_inputs + inputs, total_crashes + crashes,
                                                total_s + elapsed)
        print(f"{target:8} inputs {inputs:>9,}  {inputs / elapsed:>8,.0f} inputs/s  "
              f"{elapsed:7.1f} s  crashes {crashes}", flush=True)
    print(f"{'total':8} inputs {total_inputs:>9,}  {total_inputs / total_s:>8,.0f} inputs/s  "
          f"{total_s:7.1f} s  crashes {total_crashes}")
    print(f"reproduce: {sys.executable} -m bench.fuzz --target {args.target} --runs {args.runs}")
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
