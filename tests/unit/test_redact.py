"""`redact`: credentials in URLs never reach an error text, however a library quoted them."""

from __future__ import annotations

import pytest

from bridge.redact import MASK, redact, redact_url


@pytest.mark.parametrize(("url", "secret"), [
    ("redis://:hunter2pw@127.0.0.1:6379/0", "hunter2pw"),
    ("redis://default:hunter2pw@127.0.0.1:6379/0", "hunter2pw"),
    ("https://alice:k3y-s3cret@rpc.example/", "k3y-s3cret"),
    ("https://rpc.example/v3/0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ("https://rpc.example/?apikey=tok3n-value&x=1", "tok3n-value"),
    ("https://rpc.example?token=tok3n-value", "tok3n-value"),
    ("postgresql+psycopg://cod:dbpassw0rd@127.0.0.1:5432/cod", "dbpassw0rd"),
])
def test_a_credential_in_a_url_is_masked(url: str, secret: str) -> None:
    text = f"no RPC at {url}: start a node"
    assert secret not in redact(text)
    assert secret not in redact_url(url)
    assert MASK in redact(text)


def test_a_secret_quoted_without_its_url_is_masked_when_the_url_is_known() -> None:
    rpc = "https://alice:pa55word-x@rpc.example/v3/0123456789abcdef0123456789abcdef?apikey=qu3ry-key"
    text = ("HTTPSConnectionPool(host='rpc.example', port=443): Max retries exceeded with url: "
            "/v3/0123456789abcdef0123456789abcdef?apikey=qu3ry-key (auth pa55word-x)")
    cleaned = redact(text, rpc)
    for secret in ("pa55word-x", "0123456789abcdef0123456789abcdef", "qu3ry-key"):
        assert secret not in cleaned
    assert "rpc.example" in cleaned  # the host stays: the operator needs to know which service


def test_ordinary_text_and_cids_are_left_alone() -> None:
    text = ("job 7 failed: image not found; see http://127.0.0.1:8080/ipfs/"
            "bafybeigukcwrtswvvsqqg36lbjvd62i7gbpox4p4md7djxr4ffa7uaces4/stdout")
    assert redact(text, "http://127.0.0.1:8545", None) == text
