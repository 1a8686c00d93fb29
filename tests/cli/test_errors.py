"""Every error is one line with the fix and a documented exit code; nothing is sent on a local
error."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.images import BUSYBOX_IMAGE
from tests.cli.conftest import Cod
from tests.e2e.client import Requester

RUN = ("docker", "run", BUSYBOX_IMAGE, "--", "true")


@pytest.mark.parametrize(("args", "env", "code", "message"), [
    (("job", "list"), {"COD_RPC_URL": "http://127.0.0.1:9"}, 3,
     "no RPC at http://127.0.0.1:9: start a node or set COD_RPC_URL"),
    (("job", "describe", "1"), {"COD_CONTRACT": None}, 3, "no JobManager address: set COD_CONTRACT"),
    (RUN, {"COD_PRIVATE_KEY": None}, 3, "no signing key: set COD_PRIVATE_KEY"),
    (("docker", "run", "-i", "data.txt", BUSYBOX_IMAGE, "--", "true"),
     {"COD_IPFS_API": "http://127.0.0.1:9"}, 3,
     "no IPFS API at http://127.0.0.1:9: start Kubo or set COD_IPFS_API"),
    (("node", "list"), {"COD_BROKER_URL": "redis://127.0.0.1:9/0"}, 3,
     "no broker at redis://127.0.0.1:9/0: start Redis or set COD_BROKER_URL"),
    (("docker", "run", "--memory", "lots", BUSYBOX_IMAGE), {}, 2,
     "invalid spec: field 'resources.memory': not a size: 'lots'"),
    (("docker", "run", "--network", "host", BUSYBOX_IMAGE), {}, 2,
     "invalid spec: field 'network'"),
    (("docker", "run", "-i", "missing.txt", BUSYBOX_IMAGE), {}, 2,
     "input missing.txt: no such file or directory"),
    (("docker", "run", "-e", "NOEQUALS", BUSYBOX_IMAGE), {}, 2, "-e/--env expects NAME=VALUE"),
    (("docker", "run", "-i", "ipfs://bafkreidvkskpsgfvnp5qdoeschlih3sd4xx2apdawiyjrawhrf4f46njoi",
      "-i", "ipfs://bafkreidvkskpsgfvnp5qdoeschlih3sd4xx2apdawiyjrawhrf4f46njoi", BUSYBOX_IMAGE),
     {}, 2, "two inputs mount at /inputs"),
    (("docker", "run", "--fee", "5", BUSYBOX_IMAGE), {}, 4,
     "fee 5 wei is below the JobManager's minimum of 1000000000000000 wei"),
    (("docker", "run", "--fee", "lots", BUSYBOX_IMAGE), {}, 2, "not a fee: 'lots'"),
    (("job", "describe", "999999"), {}, 2, "job 999999 does not exist"),
    (("job", "logs", "999999"), {}, 2, "job 999999 does not exist"),
    (("job", "list", "--since", "yesterday"), {}, 2, "not a time: 'yesterday'"),
    (("job", "list", "--status", "done"), {}, 2, "unknown status 'done'"),
    (("job", "run", "nope.yaml"), {}, 2, "no such job file: nope.yaml"),
    (("job", "run", "bad.yaml"), {}, 2, "not valid YAML or JSON"),
    (("job", "run", "templated.yaml"), {}, 2, "template variable 'who' has no value"),
    (("job", "run", "count.yaml"), {}, 2, "Count: 8: the replicas of a job are a whole number 1..7"),
    (("job", "run", "s3.yaml"), {}, 2, "InputSources[0].Source.Type: 's3'"),
])
def test_error_line_and_exit_code(cod: Cod, tmp_path: Path, requester: Requester,
                                  args: tuple[str, ...], env: dict[str, str | None], code: int,
                                  message: str) -> None:
    (tmp_path / "data.txt").write_text("x\n")
    (tmp_path / "bad.yaml").write_text("image: [unclosed\n")
    (tmp_path / "templated.yaml").write_text("image: {{.who}}\n")
    (tmp_path / "count.yaml").write_text(
        "Type: batch\nCount: 8\nTasks: [{Engine: {Type: docker, Params: {Image: x}}}]\n")
    (tmp_path / "s3.yaml").write_text(
        "Type: batch\nTasks:\n- Engine: {Type: docker, Params: {Image: x}}\n"
        "  InputSources: [{Target: /in, Source: {Type: s3, Params: {Bucket: b}}}]\n")
    before = int(requester.manager.functions.nextJobId().call())
    ran = cod(*args, env=env)
    assert ran.code == code, ran
    assert message in ran.error_line()
    assert int(requester.manager.functions.nextJobId().call()) == before  # nothing was sent


def test_usage_errors_are_click_usage(cod: Cod) -> None:
    ran = cod("job", "list", "--output", "xml")
    assert ran.code == 2 and "Traceback" not in ran.stderr
