from __future__ import annotations

import pytest

from cod.templates import CID_MARK, split_template
from devstack.fanout import (
    MAX_INPUTS,
    combine_entries,
    combine_template,
    fanout_templates,
    sum_combine_spec,
    word_count_map_spec,
)
from protocol.spec import InputSource, JobSpec, parse_spec

# CIDv1 strings as Kubo prints them (the contract accepts [A-Za-z0-9]{10,100})
CIDS = [
    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    "bafybeie5gq4jxvzmsym6hjlwxej4rwdoxt7wadqvmmwbqi7r27fclha2va",
    "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
]


@pytest.mark.parametrize("n", [1, 3])
def test_combine_prefix_entries_suffix_parse_as_a_spec(n: int) -> None:
    templates = fanout_templates(word_count_map_spec(), sum_combine_spec())
    assert templates.combine_prefix.endswith('"inputs":[')
    assert templates.combine_suffix.startswith("]")

    # what FanOutConsumer._requestCombine concatenates
    text = templates.combine_prefix + combine_entries(CIDS[:n]) + templates.combine_suffix
    spec = parse_spec(text)

    assert [(i.source, i.target) for i in spec.inputs] == [
        (f"ipfs://{cid}", f"/inputs/{i}") for i, cid in enumerate(CIDS[:n])
    ]
    expected = sum_combine_spec().model_copy(update={"inputs": spec.inputs})
    assert spec == expected
    assert templates.combine_spec(CIDS[:n]) == text


def test_entries_match_the_contracts_format() -> None:
    assert combine_entries(CIDS[:2]) == (
        f'{{"source":"ipfs://{CIDS[0]}","target":"/inputs/0"}},'
        f'{{"source":"ipfs://{CIDS[1]}","target":"/inputs/1"}}'
    )
    assert combine_entries([]) == ""


def test_split_template_renders_the_map_spec_for_any_cid() -> None:
    templates = fanout_templates(word_count_map_spec(), sum_combine_spec())
    for cid in CIDS:
        assert parse_spec(templates.map_spec(cid)) == word_count_map_spec(cid)


def test_combine_template_works_at_the_contracts_maximum_fan_out() -> None:
    prefix, suffix = combine_template(sum_combine_spec())
    spec = parse_spec(prefix + combine_entries([CIDS[0]] * MAX_INPUTS) + suffix)
    assert len(spec.inputs) == MAX_INPUTS


def test_combine_spec_with_its_own_inputs_is_refused() -> None:
    spec = sum_combine_spec().model_copy(
        update={"inputs": [InputSource(source=f"ipfs://{CIDS[0]}", target="/inputs/extra")]}
    )
    with pytest.raises(ValueError, match="leave `inputs` empty"):
        combine_template(spec)


def test_placeholder_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        split_template(sum_combine_spec())  # no placeholder
    with pytest.raises(ValueError, match="must not contain"):
        combine_template(JobSpec(image="x", env={"CID": CID_MARK}))
