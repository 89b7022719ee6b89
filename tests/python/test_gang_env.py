"""Which job a process is a rank of (acb._gang), from the environment torchrun gives its ranks."""

import pytest

from acb._gang import Gang, gang_of, unnamed_job_warning

TORCHRUN_RANK = {"LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "RANK": "1",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("environ, setting, expected", [
    # torchrun --standalone: a fresh run id per job
    ({**TORCHRUN_RANK, "TORCHELASTIC_RUN_ID": "5c1e-77"}, "auto", Gang("5c1e-77", 2, 1)),
    # torchrun without --rdzv-id: every such job's run id is "none"; the rendezvous address tells them apart
    ({**TORCHRUN_RANK, "TORCHELASTIC_RUN_ID": "none"}, "auto", Gang("127.0.0.1:29500", 2, 1)),
    (TORCHRUN_RANK, "auto", Gang("127.0.0.1:29500", 2, 1)),
    (TORCHRUN_RANK, "", Gang("127.0.0.1:29500", 2, 1)),
    # a key of the user's own, sizes still from the environment
    (TORCHRUN_RANK, "sweep-3", Gang("sweep-3", 2, 1)),
    ({**TORCHRUN_RANK, "LOCAL_RANK": "x"}, "auto", Gang("127.0.0.1:29500", 2, -1)),
    ({**TORCHRUN_RANK, "LOCAL_RANK": "2"}, "auto", Gang("127.0.0.1:29500", 2, -1)),  # not below the size
    # no gang: opted out, one rank on this node, no size, no key
    (TORCHRUN_RANK, "off", None),
    ({**TORCHRUN_RANK, "LOCAL_WORLD_SIZE": "1"}, "auto", None),
    ({k: v for k, v in TORCHRUN_RANK.items() if k != "LOCAL_WORLD_SIZE"}, "auto", None),
    ({"LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "0"}, "auto", None),
    ({"LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "h", "TORCHELASTIC_RUN_ID": "none"}, "auto", None),
    ({}, "auto", None),
    ({}, "sweep-3", None),
])
def test_gang_of_reads_torchrun_environment(environ, setting, expected):
    assert gang_of(environ, setting) == expected


def test_a_rank_of_a_job_that_names_no_job_is_told_why_it_is_no_gang():
    unnamed = {"LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "0"}
    warning = unnamed_job_warning(unnamed)
    assert "LOCAL_WORLD_SIZE=4" in warning and "ACB_GANG" in warning
    assert unnamed_job_warning(unnamed, "off") == ""
    assert unnamed_job_warning(unnamed, "my-job") == ""  # a key of its own: it is a gang
    assert unnamed_job_warning(TORCHRUN_RANK) == ""
    assert unnamed_job_warning({}) == ""
